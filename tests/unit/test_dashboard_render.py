"""The dashboard's formatting filters and the sign-in redirect check."""

from __future__ import annotations

import pytest

from titan.dashboard.login import safe_next
from titan.dashboard.render import ago, dag_href, duration, env, iso, qs, size, thousands


def test_relative_times() -> None:
    assert ago(None) == "—"
    assert ago(100.0, now=102.0) == "just now"
    assert ago(100.0, now=130.0) == "30 s ago"
    assert ago(100.0, now=100.0 + 3 * 3600 + 5) == "3 h ago"
    assert ago(100.0 + 600, now=100.0) == "in 10 min"
    assert iso(0.0) == "1970-01-01T00:00:00.000Z"


def test_durations_and_sizes() -> None:
    assert [duration(s) for s in (None, 0.0123, 4.56, 125, 7322)] == [
        "—", "12 ms", "4.6 s", "2m 05s", "2h 02m"]
    assert [size(n) for n in (None, 12, 2048, 5 * 1024**3)] == ["—", "12 B", "2.0 KiB", "5.0 GiB"]


def test_counts_have_thousands_separators() -> None:
    assert [thousands(n) for n in (None, 0, 999, 1_234_567)] == ["—", "0", "999", "1,234,567"]
    counts = env.from_string('{% import "_macros.html" as m %}{{ m.counts(c) }}')
    assert "<b>10,000</b> completed" in counts.render(c={"COMPLETED": 10_000},
                                                        JOB_STATES=("COMPLETED",))


def test_links_quote_names() -> None:
    assert dag_href("a b?c%", 3) == "/dags/DAG-a%20b%3Fc%25?run=3"
    assert qs({"status": "", "name": "x y", "offset": 0}) == "?name=x+y&offset=0"


@pytest.mark.parametrize(("target", "expected"), [
    ("/dags?x=1", "/dags?x=1"), ("/", "/"), (None, "/"), ("", "/"), ("dags", "/"),
    ("//evil.example", "/"), ("/\\evil.example", "/"), ("https://evil.example/", "/"),
    ("/x\r\nSet-Cookie: a=b", "/"),
])
def test_sign_in_only_redirects_to_local_paths(target: str | None, expected: str) -> None:
    assert safe_next(target) == expected


def test_templates_escape_by_default() -> None:
    out = env.from_string("{{ v }}").render(v="<script>x</script>")
    assert out == "&lt;script&gt;x&lt;/script&gt;"


def test_a_page_without_an_event_feed_has_no_live_dot() -> None:
    # The sign-in page (and the docs) showed the dot stuck at "offline", which reads as the
    # master being down (dashboard.md: a page without a feed has no dot). A page's feed is
    # opened by a script of its own calling Titan.live; a page loading none empties the
    # header's `live` block, as error.html does.
    import re
    from pathlib import Path

    import titan.dashboard

    root = Path(titan.dashboard.__file__).parent
    feeds = {p.name for p in (root / "static").glob("*.js") if "T.live(" in p.read_text()}
    assert feeds  # what the check below relies on
    without = []
    for page in sorted((root / "templates").glob("[!_]*.html")):
        text = page.read_text()
        if page.name == "base.html" or '{% extends "base.html" %}' not in text:
            continue
        scripts = set(re.findall(r'src="/static/([\w.]+\.js)', text))
        if not scripts & feeds:
            without.append(page.name)
            assert "{% block live %}{% endblock %}" in text, page.name
    assert {"login.html", "docs.html", "error.html"} <= set(without), without
    html = env.get_template("login.html").render(
        c={"role": None, "csrf": "", "page": "login"}, d={"next": "/", "token": ""},
        static_version="1")
    assert 'id="live"' not in html and "Sign in to Titan" in html
