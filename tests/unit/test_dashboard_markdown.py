"""The docs pages' Markdown: GitHub's anchors, links between pages, hostile input shown as
text, and the page template around it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from titan.dashboard import docs_pages, markdown
from titan.dashboard.render import env
from titan.errors import NotFound

PAGES = frozenset({"api", "troubleshooting"})
HOSTILE = """# Notes <script>alert(1)</script>

<img src=x onerror="window.__xss=1">

<div onclick="steal()">a block of raw HTML</div>

[click](javascript:alert(1)) [data](data:text/html,<script>alert(2)</script>)
[vb](vbscript:msgbox) [file](file:///etc/passwd)

```html"><script>alert(3)</script>
<b>code</b>
```
"""


def test_anchors_follow_github() -> None:
    page = markdown.render(
        "# Title\n\n## Agent timeout\n\n## Can't find my run\n\n## `str` hash\n\n"
        "## Network I/O\n\n## Recording what an agent did (titan.trace)\n\n"
        "## Agent timeout\n\n## Agent timeout\n", PAGES)
    assert [h.anchor for h in page.headings] == [
        "title", "agent-timeout", "cant-find-my-run", "str-hash", "network-io",
        "recording-what-an-agent-did-titantrace", "agent-timeout-1", "agent-timeout-2"]
    assert '<h2 id="agent-timeout">Agent timeout <a class="anchor" href="#agent-timeout"' \
        in page.html
    assert page.title == "Title"


def test_links_between_pages_point_at_their_routes() -> None:
    page = markdown.render(
        "See [api](api.md#dashboard-sessions), [the table](./troubleshooting.md), "
        "[here](#local), [out](https://example.org/x.md), [root](/runs), "
        "[source](../src/titan/app.py) and [gone](missing.md#x).", PAGES)
    hrefs = re.findall(r'href="([^"]*)"', page.html)
    assert hrefs == ["/docs/api#dashboard-sessions", "/docs/troubleshooting", "#local",
                     "https://example.org/x.md", "/runs"]
    # A file of the source tree, or a page not shipped: the text stays, the link goes.
    assert "<span>source</span>" in page.html and "<span>gone</span>" in page.html


def test_raw_html_and_unsafe_links_are_text() -> None:
    out = markdown.render(HOSTILE, PAGES).html
    tags = re.findall(r"<[^>]*>", out)
    assert not [t for t in tags if re.search(r"^</?(script|img|div)|\son\w+=", t)]
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in out
    assert "&lt;img src=x onerror=" in out
    for scheme in ("javascript:", "data:text/html", "vbscript:", "file:"):
        assert f'href="{scheme}' not in out
    # A fence's info string is an attribute: escaped, never closing the tag.
    assert 'class="language-html&quot;&gt;&lt;script&gt;alert(3)&lt;/script&gt;"' in out
    assert "&lt;b&gt;code&lt;/b&gt;" in out
    # Only what markdown-it makes of Markdown: no tag the page did not ask for.
    assert set(re.findall(r"<([a-z0-9]+)", out)) <= {"h1", "p", "a", "pre", "code", "span"}


def test_tables_and_code_render() -> None:
    out = markdown.render("| a | b |\n|---|---|\n| `x` | 1 |\n\n```python\nx = 1\n```\n",
                          PAGES).html
    assert "<table>" in out and "<td><code>x</code></td>" in out
    assert '<pre><code class="language-python">x = 1\n</code></pre>' in out


def test_the_page_template_inserts_the_rendered_page_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Through docs_pages and the template: the hostile page is text, the chrome escapes."""
    (tmp_path / "hostile.md").write_text(HOSTILE)
    (tmp_path / "other.md").write_text("# Other\n\nSee [notes](hostile.md#notes).\n")
    (tmp_path / "Not A Page.md").write_text("# skipped: not a route's name\n")
    monkeypatch.setattr(docs_pages, "DOCS", tmp_path)
    assert docs_pages.page_names() == {"hostile", "other"}
    data = docs_pages.docs_page("hostile")
    c = {"page": "docs", "role": "", "user": "", "can_operate": False,
         "signed_in_by_cookie": False, "csrf": ""}
    page = env.get_template("docs.html").render(d=data, c=c)
    assert "<script" not in page.replace('<script src="/static/live.js', "")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&amp;lt;" not in page  # escaped once, not twice
    assert '<a href="/docs/other" data-page="other">Other</a>' in page
    assert data["headings"][0]["anchor"] == "notes-scriptalert1script"
    assert 'href="/docs/hostile#notes"' in docs_pages.docs_page("other")["html"]
    with pytest.raises(NotFound):
        docs_pages.docs_page("missing")
