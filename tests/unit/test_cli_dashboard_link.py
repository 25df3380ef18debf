"""`titan dashboard`'s sign-in link carries the token: it names the master the CLI asked, on
the dashboard's port the master reports, and never a host or scheme a reply put there."""

from __future__ import annotations

from titan.cli.dashboard import _same_host


def test_the_dashboard_port_of_the_same_master_is_taken() -> None:
    assert _same_host("http://127.0.0.1:5000", "http://127.0.0.1:9090") == "http://127.0.0.1:5000"
    assert _same_host("http://127.0.0.1:5000/", "http://127.0.0.1:9090") == "http://127.0.0.1:5000"
    assert _same_host("https://m.example:5000", "https://M.example:9090") == \
        "https://m.example:5000"


def test_another_host_scheme_or_shape_is_not() -> None:
    own = "http://127.0.0.1:9090"
    for site in ("http://evil.example:5000", "https://127.0.0.1:5000", "http://127.0.0.1",
                 "http://127.0.0.1:5000/x", "http://127.0.0.1:5000?a=1",
                 "http://u@127.0.0.1:5000", "http://127.0.0.1:99999", None, 5000, ""):
        assert _same_host(site, own) is None, site
