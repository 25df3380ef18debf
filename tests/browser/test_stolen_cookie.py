"""A session cookie the browser sent to another port of the host reads, and changes nothing.

Browsers keep cookies per host, not per port, and ``SameSite=Strict`` counts every port of a
host as the same site: an admin signed in to the dashboard who opens a job's service (listed
on the Cluster page) or another local user's dev server sends it the session cookie. With it,
a security QA pass fetched a dashboard page, read the CSRF token the page carried (a digest
of the cookie) and minted an admin token. The write key now lives only in the storage of the
dashboard's origin — scheme, host and port — where only the sign-in put it
(master/auth/sessions.py).
"""

from __future__ import annotations

import hashlib
import http.server
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.browser.conftest import Dashboard
from tests.browser.test_dashboard import WAIT_FOR_FLAG, node
from tests.conftest import free_port
from tests.integration.harness import Cluster
from titan import TitanJob
from titan.master.auth import sessions

KEY = "Titan.writeKey()"


class _Thief(http.server.BaseHTTPRequestHandler):
    """Any page on another port of 127.0.0.1: it keeps the cookies the browser sends it."""

    seen: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        self.seen.append(self.headers.get("Cookie") or "")
        body = b"<!doctype html><title>hello</title><h1>hello</h1>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: Any) -> None:
        pass


@pytest.fixture
def thief() -> Iterator[tuple[int, list[str]]]:
    port = free_port()
    seen: list[str] = []
    handler = type("Thief", (_Thief,), {"seen": seen})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield port, seen
    finally:
        server.shutdown()
        server.server_close()


def _held(cluster: Cluster, dag: str) -> None:
    """A DAG whose one job, ``hold``, runs until cancelled."""
    gate = cluster.script("wait_for_flag.py", WAIT_FOR_FLAG)
    flag = cluster.root / f"release-never-{dag}"
    cluster.client().submit_dag(dag, [TitanJob("hold", gate, args=[str(flag)], retries=0)])


def _cookie(header: str) -> str:
    for part in header.split(";"):
        name, _, value = part.strip().partition("=")
        if name == sessions.COOKIE:
            return value
    raise AssertionError(f"no {sessions.COOKIE} in {header!r}")


def test_a_cookie_sent_to_another_port_cannot_change_anything(
        cluster: Cluster, dash: Dashboard, thief: tuple[int, list[str]]) -> None:
    port, seen = thief
    page = dash.new_page()
    dash.sign_in(page)
    key = page.evaluate(KEY)
    assert key, "the sign-in left no write key in the origin's storage"
    # The admin opens a page on another port of the same host: Chromium sends it the cookie.
    page.goto(f"http://127.0.0.1:{port}/")
    page.wait_for_selector("h1")
    stolen = _cookie(seen[-1])
    assert stolen == dash.cookies()[sessions.COOKIE]

    with httpx.Client(base_url=dash.base, timeout=30, cookies={sessions.COOKIE: stolen}) as s:
        # Reads: still possible (a page navigation carries only the cookie: docs/security.md).
        assert s.get("/api/v1/whoami").json()["role"] == "admin"
        for path in ("/", "/workers", "/dags", "/dags/new", "/schedules", "/store", "/agents",
                     "/login", "/login?next=/", "/dags.json", "/api/v1/whoami"):
            r = s.get(path)
            assert r.status_code == 200, (path, r.status_code)
            assert key not in r.text, f"{path} served the write key to a cookie"
            assert "csrf-token" not in r.text and "titan-write-key" not in r.text, path
        # What the QA pass did, and what else the cookie gives: none is the write key.
        old_digest = hashlib.sha256(b"titan-csrf:" + stolen.encode()).hexdigest()[:40]
        for guess in (None, old_digest, stolen, stolen.rsplit(".", 1)[1]):
            headers = {} if guess is None else {"X-CSRF-Token": guess}
            r = s.post("/api/v1/tokens", json={"role": "admin", "name": "stolen-via-other-port"},
                       headers=headers)
            assert r.status_code == 403 and r.json()["error"]["code"] == "csrf_failed", r.text
            assert "sign in again" in r.json()["error"]["message"]
        # Nor may it sign the person out.
        assert s.post("/logout", data={"csrf_token": old_digest}).status_code == 403
    names = [t["name"] for t in cluster.api("GET", "/tokens")["tokens"]]
    assert "stolen-via-other-port" not in names

    # The browser that signed in still changes things, from any tab: a job cancelled with its
    # button in a new tab, a token minted by the dashboard's own API helper.
    _held(cluster, "stolen")
    tab = dash.new_page()
    tab.goto(dash.url("/dags/DAG-stolen"))
    tab.click(node("hold", "RUNNING"))
    tab.wait_for_selector("#job-panel", state="visible")
    assert tab.locator("#rekey").is_hidden()
    tab.click("#job-panel button[data-action=cancel-job]")
    tab.wait_for_selector(node("hold", "CANCELLED"))
    assert cluster.client().get_job("stolen/hold")["state"] == "CANCELLED"
    made = tab.evaluate("Titan.api('POST', '/api/v1/tokens', {role: 'viewer', name: 'minted'})")
    assert made["token"].startswith("tt_")


def test_a_browser_that_lost_the_key_is_told_to_sign_in_again(
        cluster: Cluster, dash: Dashboard) -> None:
    page = dash.new_page()
    dash.sign_in(page)
    _held(cluster, "lostkey")
    page.evaluate("localStorage.clear()")  # site data cleared; the cookie is still there
    page.goto(dash.url("/dags/DAG-lostkey"))
    rekey = page.locator("#rekey")
    rekey.wait_for(state="visible")
    assert "sign in again" in rekey.inner_text()
    page.click(node("hold", "RUNNING"))
    page.wait_for_selector("#job-panel", state="visible")
    page.click("#job-panel button[data-action=cancel-job]")
    toast = page.locator("#toast")
    toast.wait_for(state="visible")
    assert "sign in again" in toast.inner_text()
    assert cluster.client().get_job("lostkey/hold")["state"] == "RUNNING"
    # Signing out needs the key too: the page says what to do instead of failing silently.
    page.click("form.logout button")
    page.wait_for_function("document.getElementById('toast').textContent.includes('sign in again')")
    assert sessions.COOKIE in dash.cookies()
    # The way out: sign in again (the form the header's link opens), back where it was.
    before = dash.cookies()[sessions.COOKIE]
    rekey.click()
    page.wait_for_selector('body[data-page="login"]', state="attached")
    page.fill("#token", cluster.admin_token)
    page.click("form[action='/login'] button[type=submit]")
    page.wait_for_selector('body[data-page="dag"]', state="attached")
    assert page.evaluate(KEY) and page.locator("#rekey").is_hidden()
    page.click(node("hold", "RUNNING"))
    page.click("#job-panel button[data-action=cancel-job]")
    page.wait_for_selector(node("hold", "CANCELLED"))
    # The session whose key was lost ended when this browser signed in again.
    with httpx.Client(base_url=dash.base, timeout=30, cookies={sessions.COOKIE: before}) as s:
        assert s.get("/api/v1/whoami").status_code == 401
