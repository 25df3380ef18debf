"""The dashboard's pages and JSON twins against a real `titan up`: sign-in, auth on every
page, the data each twin returns, filters and paging, and escaping of what users named."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterator
from urllib.parse import quote, urlparse

import httpx
import pytest

from tests.integration.harness import (
    Cluster,
    isolated_cluster,
    next_of,
    sign_in,
    signed_in_reply,
)
from titan import TitanJob
from titan.master.auth import sessions

OK = "print('ok')\n"
FAILS = "import sys\nprint('failing on purpose')\nsys.exit(1)\n"
XSS = "<script>alert(1)<"  # a DAG name or job id may hold these (no '/' or '#')


@pytest.fixture(scope="module")
def cl(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """One `titan up` for the module, with work already done: a small DAG (run twice), an
    agent run PLAN → ITER1 (one job fails) → EVAL1 → SYNTH, a job no worker can run, store
    keys, and names that need escaping."""
    root = tmp_path_factory.mktemp("dashboard")
    c = isolated_cluster(root, slots=4)
    try:
        ok, fails = c.script("ok.py", OK), c.script("fails.py", FAILS)
        client = c.client()
        for _ in range(2):
            client.submit_dag("etl", [TitanJob("extract", ok),
                                      TitanJob("load", ok, parents=["extract"], args="--day 1")])
            client.wait_dag("etl", timeout=60)
        run_id = "RESEARCH_dash01"
        for label, scripts in (("PLAN", [ok]), ("ITER1", [ok, fails]), ("EVAL1", [ok]),
                               ("SYNTH", [ok])):
            client.submit_dag(f"{run_id}_{label}", [TitanJob(f"{label.lower()}_{i}", s, retries=0)
                                                    for i, s in enumerate(scripts)],
                              agent_run_id=run_id)
            client.wait_dag(f"{run_id}_{label}", timeout=60)
        client.submit_dag(XSS, [TitanJob(XSS, ok, args=["<b>bold</b>"])])
        client.wait_dag(XSS, timeout=60)
        client.submit_dag("stuck", [TitanJob("gpu_job", ok, requirement="DASH_NOWHERE")])
        client.store_put("dash:greeting", "hello <i>there</i>")
        client.store_put("dash:long", "y" * 500)
        client.store_sadd("dash:set", "member-1")
        client.store_sadd("dash:set", "member-2")
        yield c
    finally:
        c.stop()


def bearer(cl: Cluster) -> httpx.Client:
    return httpx.Client(base_url=cl.url, headers={"Authorization": f"Bearer {cl.admin_token}"},
                        timeout=30)


@contextlib.contextmanager
def signed_in(cl: Cluster) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=cl.url, timeout=30) as s:
        sign_in(s, cl.admin_token, "/dags")
        assert sessions.COOKIE in s.cookies
        yield s


def dag_page(name: str) -> str:
    return "/dags/DAG-" + quote(name, safe="")


PAGES = {"/": "cluster", "/workers": "cluster", "/dags": "dags", "/dags/DAG-etl": "dag",
         "/agents": "agents", "/store": "store"}
TWINS = ["/workers.json", "/dags.json", "/dags/DAG-etl.json", "/agents.json", "/store.json"]


# -- signing in --------------------------------------------------------------------------------
def test_pages_redirect_to_sign_in_and_twins_answer_401(cl: Cluster) -> None:
    with httpx.Client(base_url=cl.url, timeout=30) as s:
        for path in [*PAGES, "/jobs/1"]:
            r = s.get(path + "?x=1")
            assert r.status_code == 303, (path, r.status_code)
            assert r.headers["location"] == "/login?next=" + quote(path + "?x=1", safe="")
        for path in [*TWINS, "/jobs/1.json"]:
            r = s.get(path)
            assert r.status_code == 401, path
            assert r.json()["error"]["code"] == "unauthorized"
        r = s.get("/login")
        assert r.status_code == 200 and 'data-page="login"' in r.text
        assert 'name="token"' in r.text


def test_one_click_sign_in_link_sets_the_cookie_and_drops_the_token(cl: Cluster) -> None:
    with httpx.Client(base_url=cl.url, timeout=30) as s:
        r = s.get("/login", params={"token": cl.admin_token, "next": "/agents?offset=0"})
        key = signed_in_reply(r)
        assert next_of(r) == "/agents?offset=0" and cl.admin_token not in r.text
        cookie = r.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie
        page = s.get("/agents")
        assert page.status_code == 200 and 'data-page="agents"' in page.text
        # The write key is in the sign-in's reply only: never in a page the cookie fetches.
        assert key not in page.text and "csrf-token" not in page.text
        assert '<meta name="titan-role" content="admin">' in page.text
        assert cl.admin_token not in page.text


@pytest.mark.parametrize("target", ["//evil.example/x", "https://evil.example/", "evil",
                                    "/\\evil.example", ""])
def test_sign_in_never_redirects_off_site(cl: Cluster, target: str) -> None:
    with httpx.Client(base_url=cl.url, timeout=30) as s:
        r = s.get("/login", params={"token": cl.admin_token, "next": target})
        signed_in_reply(r)
        assert next_of(r) == "/"


def test_another_site_cannot_sign_a_visitor_in(cl: Cluster) -> None:
    # Login CSRF: a page elsewhere linking to /login?token=<its own token> signed the visitor
    # in silently, as someone else. A link from another site asks to confirm here; a form
    # posted from there is refused.
    # "same-site" is any other port of 127.0.0.1 (a notebook, a dev server), or any host of
    # the same domain; an old browser says where a form came from in Origin only.
    for away in ({"Sec-Fetch-Site": "cross-site"}, {"Sec-Fetch-Site": "same-site"}):
        with httpx.Client(base_url=cl.url, timeout=30) as s:
            r = s.get("/login", params={"token": cl.admin_token, "next": "/store"},
                      headers=away)
            assert r.status_code == 200 and "opened from another site" in r.text
            assert f'value="{cl.admin_token}"' in r.text and 'value="/store"' in r.text
            assert sessions.COOKIE not in s.cookies
    for away in ({"Sec-Fetch-Site": "cross-site"}, {"Sec-Fetch-Site": "same-site"},
                 {"Origin": "http://127.0.0.1:8888"}, {"Origin": "https://evil.example"}):
        with httpx.Client(base_url=cl.url, timeout=30) as s:
            r = s.post("/login", data={"token": cl.admin_token, "next": "/store"},
                       headers=away)
            assert r.status_code == 403 and sessions.COOKIE not in s.cookies, away
    with httpx.Client(base_url=cl.url, timeout=30) as s:  # its own page, by Origin alone
        signed_in_reply(s.post("/login", data={"token": cl.admin_token},
                               headers={"Origin": f"http://127.0.0.1:{cl.port}"}))
        # Confirmed on this site's own form (same-origin), or opened directly: signed in.
        signed_in_reply(s.post("/login", data={"token": cl.admin_token, "next": "/store"},
                               headers={"Sec-Fetch-Site": "same-origin"}))
    with httpx.Client(base_url=cl.url, timeout=30) as s:
        signed_in_reply(s.get("/login", params={"token": cl.admin_token},
                              headers={"Sec-Fetch-Site": "none"}))


def test_bad_tokens_get_the_form_again_with_401(cl: Cluster) -> None:
    worker_token = (cl.data / "worker.token").read_text().strip()
    with httpx.Client(base_url=cl.url, timeout=30) as s:
        for token in ("tt_not-a-real-token", worker_token, ""):
            r = s.get("/login", params={"token": token})
            assert r.status_code == 401, token
            assert 'class="error-box"' in r.text and 'name="token"' in r.text
            assert sessions.COOKIE not in s.cookies
        r = s.post("/login", data={"token": "nope", "next": "/store"})
        assert r.status_code == 401 and 'value="/store"' in r.text


def test_sign_in_form_and_sign_out(cl: Cluster) -> None:
    with httpx.Client(base_url=cl.url, timeout=30) as s:
        r = s.post("/login", data={"token": cl.admin_token, "next": "/store"})
        key = signed_in_reply(r)
        assert next_of(r) == "/store"
        assert s.get("/store").status_code == 200
        assert s.post("/logout").status_code == 403  # no write key: refused
        assert s.post("/logout", data={"csrf_token": "0" * 40}).status_code == 403
        r = s.post("/logout", data={"csrf_token": key})
        assert r.status_code == 303 and r.headers["location"] == "/login"
        assert sessions.COOKIE not in s.cookies
        assert s.get("/store").status_code == 303


def test_signing_out_ends_the_session_even_for_a_copied_cookie(cl: Cluster) -> None:
    """The cookie is an HMAC: without a server-side record, a copy taken before signing out
    would keep working for 30 days (issue 15 item 8)."""
    with httpx.Client(base_url=cl.url, timeout=30) as s:
        key = sign_in(s, cl.admin_token)
        copied = s.cookies[sessions.COOKIE]
        with httpx.Client(base_url=cl.url, timeout=30, cookies={sessions.COOKIE: copied}) as thief:
            assert thief.get("/store").status_code == 200
            assert thief.get("/api/v1/dags").status_code == 200
            r = s.post("/logout", data={"csrf_token": key})
            assert r.status_code == 303
            assert thief.get("/store").status_code == 303  # back to the sign-in page
            assert thief.get("/api/v1/dags").status_code == 401
        # Another session of the same token is not affected.
        sign_in(s, cl.admin_token)
        assert s.cookies[sessions.COOKIE] != copied
        assert s.get("/store").status_code == 200


def test_a_plain_http_session_ends_with_the_master_that_signed_it_in(make_cluster) -> None:  # type: ignore[no-untyped-def]
    """While a plain-HTTP master is down, anyone on the host may answer on its port, and a
    browser sends the cookie there: a cookie taken so must not open the master once it is
    back (stop 40's note)."""
    c = make_cluster().start_master()
    with httpx.Client(base_url=c.url, timeout=30) as s:
        sign_in(s, c.admin_token)
        taken = s.cookies[sessions.COOKIE]
        assert taken.split(".")[1].startswith(sessions.PROCESS_BOUND)
        assert s.get("/store").status_code == 200
    c.kill_master()
    c.start_master()
    with httpx.Client(base_url=c.url, timeout=30, cookies={sessions.COOKIE: taken}) as s:
        assert s.get("/api/v1/dags").status_code == 401
        r = s.get("/store")
        assert r.status_code == 303 and r.headers["location"].startswith("/login")
        page = s.get("/login")  # says why, and tells the browser to forget the dead cookie
        assert "Your session has ended" in page.text
        assert "max-age=0" in page.headers["set-cookie"].lower()
    with httpx.Client(base_url=c.url, timeout=30) as s:
        assert "Your session has ended" not in s.get("/login").text
        sign_in(s, c.admin_token)
        assert s.get("/store").status_code == 200


def test_another_masters_cookie_is_left_alone_and_a_garbled_one_refused(cl: Cluster) -> None:
    # Browsers keep one cookie per host, whatever the port: opening another master's
    # dashboard on the same host signed you out of this one (a QA pass).
    foreign = "tok-0123456789ab.p" + "0" * 24 + ".9999999999." + "a" * 40
    with httpx.Client(base_url=cl.url, timeout=30, cookies={sessions.COOKIE: foreign}) as s:
        page = s.get("/login")
        assert page.status_code == 200 and "Your session has ended" not in page.text
        assert "set-cookie" not in page.headers
    # A byte past ASCII in the cookie or the CSRF header: refused, never a 500.
    garbled = {b"Cookie": b"titan_session=tok-1.p00.9999999999.\xe9abc"}
    with httpx.Client(base_url=cl.url, timeout=30) as s:
        assert s.get("/api/v1/dags", headers=garbled).status_code == 401
        assert s.get("/login", headers=garbled).status_code == 200
        assert s.get("/store", headers=garbled).status_code == 303
    with signed_in(cl) as s:
        r = s.put("/api/v1/store/values/dash:garbled", json={"value": "x"},
                  headers={b"X-CSRF-Token": b"\xe9"})
        assert r.status_code == 403, r.text


def test_cookie_sessions_call_the_api_only_with_the_csrf_header(cl: Cluster) -> None:
    with signed_in(cl) as s:
        assert s.get("/api/v1/dags").status_code == 200
        url = "/api/v1/store/values/dash:csrf"
        assert s.put(url, json={"value": "x"}).status_code == 403
        key = sign_in(s, cl.admin_token)
        r = s.put(url, json={"value": "x"}, headers={"X-CSRF-Token": key})
        assert r.status_code == 200, r.text
        assert s.delete(url, headers={"X-CSRF-Token": key}).status_code == 200


def test_a_session_write_without_its_key_is_refused_before_its_body_is_read(cl: Cluster) -> None:
    # A cookie-only PUT with a bad body answered 400 'unknown field' (or a JSON error), not
    # csrf_failed: a cookie another port was sent learnt what a route takes, and the body was
    # parsed for a request that was never going to be allowed.
    bad_bodies: list[dict[str, object]] = [
        {"json": {"valeu": "x"}}, {"content": b"{not json", "headers": {
            "Content-Type": "application/json"}},
        {"content": b"value=x", "headers": {"Content-Type": "application/x-www-form-urlencoded"}}]
    with signed_in(cl) as s:
        for kwargs in bad_bodies:
            for method, url in (("PUT", "/api/v1/store/values/dash:first"),
                                ("POST", "/api/v1/tokens"),
                                ("POST", "/api/v1/dags/DAG-etl/cancel")):
                r = s.request(method, url, **kwargs)  # type: ignore[arg-type]
                assert r.status_code == 403, (method, url, kwargs, r.text)
                assert r.json()["error"]["code"] == "csrf_failed", r.text
        # With the key, the body is judged as before.
        key = sign_in(s, cl.admin_token)
        r = s.put("/api/v1/store/values/dash:first", json={"valeu": "x"},
                  headers={"X-CSRF-Token": key})
        assert r.status_code == 400 and "valeu" in r.text
        assert cl.client().store_get("dash:first") is None
    # A cookie that opens nothing is 401 before its body is looked at, as a bad token is.
    with httpx.Client(base_url=cl.url, timeout=30,
                      cookies={sessions.COOKIE: "tok-1.p0.9999999999." + "a" * 40}) as s:
        r = s.put("/api/v1/store/values/dash:first", json={"valeu": "x"})
        assert r.status_code == 401, r.text


# -- every page, both ways in ------------------------------------------------------------------
def test_every_page_and_twin_with_cookie_and_with_bearer(cl: Cluster) -> None:
    job = cl.api("GET", "/jobs/etl/load")
    pages = dict(PAGES, **{f"/jobs/{job['id']}": "job"})
    twins = [*TWINS, f"/jobs/{job['id']}.json"]
    for way in (signed_in, bearer):
        with way(cl) as s:
            for path, name in pages.items():
                r = s.get(path)
                assert r.status_code == 200, (path, r.text[:300])
                assert r.headers["content-type"].startswith("text/html")
                assert f'<body data-page="{name}">' in r.text
                assert 'id="live" data-state="closed"' in r.text
                assert "script-src 'self'" in r.headers["content-security-policy"]
            for path in twins:
                r = s.get(path)
                assert r.status_code == 200, (path, r.text[:300])
                assert isinstance(r.json(), dict)


def test_viewers_see_no_operator_buttons(cl: Cluster) -> None:
    viewer = cl.api("POST", "/tokens", {"role": "viewer", "name": "dash viewer"})["token"]
    job = cl.api("GET", "/jobs/etl/load")
    with httpx.Client(base_url=cl.url, timeout=30) as s:
        sign_in(s, viewer)
        for path in ("/dags/DAG-etl", f"/jobs/{job['id']}"):
            page = s.get(path).text
            assert '<meta name="titan-role" content="viewer">' in page
            assert "data-action=\"cancel-job\"" not in page and "data-action=\"retry-job\"" not in page
            assert "data-action=\"cancel-dag\"" not in page
    with signed_in(cl) as s:
        page = s.get(f"/jobs/{job['id']}").text
        assert 'data-action="retry-job"' in page and 'data-action="cancel-job"' in page


def test_one_error_handler_answers_a_page_with_a_page_and_the_rest_with_json(cl: Cluster) -> None:
    browser = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}
    with signed_in(cl) as s:
        bad = s.get("/dags", params={"status": "NOPE"})
        assert bad.status_code == 400 and bad.headers["content-type"].startswith("text/html")
        assert 'class="error-box"' in bad.text and "status must be one of" in bad.text
        assert 'data-page="dags"' in bad.text  # drawn inside the page's own navigation
        assert "Content-Security-Policy" in bad.headers
        twin = s.get("/dags.json", params={"status": "NOPE"})
        assert twin.status_code == 400 and twin.json()["error"]["code"] == "invalid_request"
        # A path no route serves: a browser gets the error page, a program the JSON body.
        lost = s.get("/no/such/page", headers=browser)
        assert lost.status_code == 404 and 'class="error-box"' in lost.text
        assert lost.headers["content-type"].startswith("text/html")
        # An error page keeps the signed-in header (QA: an unknown address dropped the user
        # and Sign out) and has no live dot: with no feed it read "offline", the master up.
        for page in (bad, lost, s.get("/jobs/abc", headers=browser),
                     s.get("/runs/no-such-run", headers=browser)):
            assert page.status_code in (400, 404) and 'class="error-box"' in page.text
            assert 'class="who"' in page.text and "Sign out" in page.text, page.url
            assert 'id="live"' not in page.text, page.url
        for path, headers in (("/no/such/page", {}), ("/api/v1/no/such", browser),
                              ("/no/such.json", browser)):
            r = s.get(path, headers=headers)
            assert r.status_code == 404 and r.json()["error"]["code"] == "not_found", path


def test_a_nul_in_a_page_address_is_answered_with_the_error_page(cl: Cluster) -> None:
    # /store?prefix=%00 answered a browser with the API's raw JSON: the NUL check runs before
    # routing, and knew only the JSON body. A page's address now gets its error page (the
    # route's format, as for any bad filter, whatever the Accept header); twins, the API and
    # an address no route serves keep the JSON.
    with signed_in(cl) as s:
        for path in ("/store?prefix=%00", "/runs/RESEARCH_dash01?q=%00", "/dags?name=a%00b",
                     "/agents?run=%FF"):
            r = s.get(path)
            assert r.status_code == 400, path
            assert r.headers["content-type"].startswith("text/html"), path
            assert "<h1>Cannot show this page</h1>" in r.text and 'class="error-box"' in r.text
            assert "a URL may not contain NUL" in r.text or "percent-escapes" in r.text
            assert 'class="who"' in r.text and "Content-Security-Policy" in r.headers
        for path in ("/store.json?prefix=%00", "/api/v1/runs?q=%00", "/no/such?q=%00"):
            r = s.get(path, headers={"Accept": "text/html"} if "api" in path else {})
            assert r.status_code == 400, path
            assert r.json()["error"]["code"] == "invalid_request", path


def test_every_answer_is_marked_nosniff(cl: Cluster) -> None:
    # /api/v1/jobs/<id>/logs.txt was text/plain without it: a browser may take a log that
    # prints HTML for a page. Every answer carries it now, once (the pages set it too).
    job = cl.api("GET", "/jobs/etl/load")
    with bearer(cl) as s:
        for path in (f"/api/v1/jobs/{job['id']}/logs.txt", "/api/v1/jobs/etl/load/logs.txt",
                     "/api/v1/runs/export?format=csv", "/api/v1/health", "/api/v1/no/such",
                     "/static/live.js", "/dags", "/dags.json", "/store?prefix=%00", "/login"):
            r = s.get(path)
            assert r.headers.get_list("x-content-type-options") == ["nosniff"], (
                path, r.status_code, r.headers)


# -- what the twins hold -----------------------------------------------------------------------
def test_cluster_twin(cl: Cluster) -> None:
    with bearer(cl) as s:
        d = s.get("/workers.json").json()
        api = s.get("/api/v1/workers").json()
        page = s.get("/").text
    assert [w["id"] for w in d["workers"]] == [w["id"] for w in api["workers"]]
    (local,) = [w for w in d["workers"] if w["name"] == "local"]
    assert local["state"] == "live" and local["capabilities"] == ["GENERAL"]
    assert local["slots"] == 4 and local["slots_used"] == len(local["running"])
    assert f'class="worker" data-worker-id="{local["id"]}" data-state="live"' in page
    queues = {q["capability"]: q for q in d["queues"]}
    assert queues["GENERAL"]["workers"] == 1
    assert queues["DASH_NOWHERE"]["unschedulable"] == 1 and queues["DASH_NOWHERE"]["workers"] == 0
    (stuck,) = d["unschedulable"]
    assert (stuck["job_id"], stuck["dag"], stuck["requirement"]) == ("gpu_job", "stuck", "DASH_NOWHERE")
    box = page.split('id="unschedulable"', 1)[1].split("</div>", 1)[0]
    assert not box.split(">", 1)[0].endswith(" hidden") and "DASH_NOWHERE" in box


def test_the_cluster_page_lists_a_hundred_unschedulable_jobs_a_capability(
        make_cluster: Callable[..., Cluster]) -> None:
    # 10,000 jobs waiting for a TPU made the page 2.6 MB, refreshed live (QA): 100 listed a
    # capability and the rest counted; the hint names every missing capability and this
    # master's address.
    c = make_cluster().up(slots=1)
    client = c.client()
    ok = c.script("m.py", "print(1)\n")
    client.submit_dag("one_stuck", [TitanJob("lone", ok, requirement="DASH_NOWHERE")])
    client.submit_dag("many_stuck", [TitanJob(f"m{i}", ok, requirement="DASH_MANY")
                                     for i in range(150)])
    with bearer(c) as s:
        d = s.get("/workers.json").json()
        page = s.get("/").text
    assert d["unschedulable_total"] == 151 and d["unlisted"] == {"DASH_MANY": 50}
    assert len(d["unschedulable"]) == 101
    box = page.split('id="unschedulable"', 1)[1].split("</div>", 1)[0]
    assert "151 jobs waiting" in box and "and 50 more needing <code>DASH_MANY</code>" in box
    assert f"titan worker --master {c.url} --capabilities DASH_MANY,DASH_NOWHERE" in box


def test_a_fleet_masters_worker_command_names_the_host_the_page_was_asked_on(
        make_cluster: Callable[..., Cluster]) -> None:
    # `titan master --host 0.0.0.0` (docs/deployment.md's fleet master) without
    # --advertise-url: the page's "start a worker" command and workers.json's master_url
    # said http://127.0.0.1:<port>, which no other machine can use, even on a page viewed over
    # the LAN (a fleet QA pass). The Host header is the client's to write: only a plain host
    # and port is taken.
    c = make_cluster()
    c.start_master(["--host", "0.0.0.0"])
    c.client().submit_dag("far", [TitanJob("j", c.script("far.py", OK),
                                           requirement="DASH_FAR")])
    api = f":{c.port}"
    seen = {"10.1.2.3:5000": f"http://10.1.2.3{api}", "titan-box": f"http://titan-box{api}",
            "[fd00::5]:5000": f"http://[fd00::5]{api}", "evil.example/x?<b>": c.url,
            "a b": c.url, "": c.url}
    with bearer(c) as s:
        for host, url in seen.items():
            d = s.get("/workers.json", headers={"Host": host}).json()
            assert d["master_url"] == url, (host, d["master_url"])
        page = s.get("/workers", headers={"Host": "10.1.2.3:5000"}).text
    assert f"titan worker --master http://10.1.2.3{api} --capabilities DASH_FAR" in page
    # The banner says what would name this master for other machines.
    assert "Other hosts   this master listens on every interface; set --advertise-url" \
        in c.log()


def test_an_advertised_url_is_the_worker_command_whatever_the_host(
        make_cluster: Callable[..., Cluster]) -> None:
    c = make_cluster()
    c.start_master(["--host", "0.0.0.0", "--advertise-url", "http://titan.internal:9090"])
    with bearer(c) as s:
        d = s.get("/workers.json", headers={"Host": "10.1.2.3:5000"}).json()
    assert d["master_url"] == "http://titan.internal:9090"
    assert "Other hosts" not in c.log()


def test_dags_twin_filters_and_pages(cl: Cluster) -> None:
    with bearer(cl) as s:
        everything = s.get("/dags.json").json()
        assert everything["total"] == 8 and everything["limit"] == 50
        ids = [g["id"] for g in everything["dags"]]
        assert ids == sorted(ids, reverse=True)  # newest first
        etl = s.get("/dags.json", params={"name": "etl"}).json()
        assert [(g["name"], g["run"]) for g in etl["dags"]] == [("etl", 2), ("etl", 1)]
        assert etl["dags"][0]["counts"]["COMPLETED"] == 2 and etl["dags"][0]["duration"] >= 0
        partial = s.get("/dags.json", params={"status": "partial"}).json()
        assert [g["name"] for g in partial["dags"]] == ["RESEARCH_dash01_ITER1"]
        assert partial["dags"][0]["agent_run_id"] == "RESEARCH_dash01"

        page1 = s.get("/dags.json", params={"limit": 3}).json()
        page3 = s.get("/dags.json", params={"limit": 3, "offset": 6}).json()
        assert [g["id"] for g in page1["dags"]] == ids[:3] and page1["next_offset"] == 3
        assert [g["id"] for g in page3["dags"]] == ids[6:] and page3["next_offset"] is None
        assert page3["prev_offset"] == 3

        html = s.get("/dags", params={"limit": 3, "offset": 3, "name": "e"}).text
        assert 'href="/dags?name=e&amp;offset=0&amp;limit=3"' in html  # the filter is kept
        assert 'href="/dags?name=e&amp;offset=6&amp;limit=3"' in html
        rows = re.findall(r'<tr class="dag-row" data-dag-id="(\d+)" data-status="([A-Z]+)">', html)
        assert len(rows) == 3
        agent_link = '<a class="agent-link" href="/agents?run=RESEARCH_dash01#run-RESEARCH_dash01">'
        assert agent_link in s.get("/dags", params={"name": "RESEARCH"}).text

        bad = s.get("/dags.json", params={"status": "SOMETIMES"})
        assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_request"
        assert s.get("/dags", params={"status": "SOMETIMES"}).status_code == 400
        assert s.get("/dags.json", params={"limit": "x"}).status_code == 400


@pytest.mark.parametrize("page", ["/dags", "/agents", "/runs"])
def test_a_page_past_the_end_says_so_and_links_the_last(cl: Cluster, page: str) -> None:
    # /dags?offset=1000 read "1001–3 of 3" over a blank list, "← Newer" going to offset 950.
    with bearer(cl) as s:
        total = s.get(f"{page}.json").json()["total"]
        assert total >= 1
        d = s.get(f"{page}.json", params={"offset": 1000, "limit": 1}).json()
        assert (d["past_end"], d["range"]) == (True, f"past the end: {total} in all")
        assert d["prev_offset"] == d["last_offset"] == total - 1 and d["next_offset"] is None
        html = s.get(page, params={"offset": 1000, "limit": 1}).text
        assert "1001–" not in html and f"past the end: {total} in all" in html
        assert "This page is past the end" in html
        last = re.search(r'<a class="last-page" href="([^"]+)">Go to the last page</a>', html)
        if total > 1:
            assert last and f"offset={total - 1}&amp;limit=1" in last.group(1), html
        assert re.search(r'<a class="first-page" href="[^"]*limit=1">', html)
        # the page's own "nothing yet" is not what this is
        assert "No DAG has been submitted yet" not in html
        assert '<div id="runs-empty" class="empty-state">' not in html
        assert '<div id="empty-state" class="empty-state">' not in html
        # the last page itself is a page like the others
        d = s.get(f"{page}.json", params={"offset": total - 1, "limit": 1}).json()
        assert not d["past_end"] and d["range"] == f"{total}–{total} of {total}"


def test_dag_twin_holds_the_layout_and_runs(cl: Cluster) -> None:
    with bearer(cl) as s:
        latest = s.get("/dags/DAG-etl.json").json()
        bare = s.get("/dags/etl.json").json()
        first = s.get("/dags/DAG-etl.json", params={"run": 1}).json()
        html = s.get("/dags/DAG-etl", params={"run": 1}).text
        missing = s.get("/dags/DAG-etl.json", params={"run": 7})
        missing_html = s.get("/dags/DAG-nothing-here")
    assert latest == bare
    assert latest["dag"]["run"] == 2 and first["dag"]["run"] == 1
    assert [r["run"] for r in latest["runs"]] == [2, 1]
    g = latest["layout"]
    assert g["job"] == ["extract", "load"] and g["state"] == ["COMPLETED", "COMPLETED"]
    assert (g["cols"], g["rows"], g["x"], g["y"], g["edges"]) == (2, 1, [0, 1], [0, 0], [0, 1])
    assert g["id"] != first["layout"]["id"]
    assert latest["approvals"] == [] and latest["files"] == []
    assert '<select id="run-select"' in html and '<option value="1" selected>' in html
    assert 'id="dag-status" data-status="COMPLETED"' in html
    assert 'id="approval-banner"' in html and 'id="files"' in html
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    assert missing_html.status_code == 404 and 'class="error-box"' in missing_html.text


def test_job_twin(cl: Cluster) -> None:
    job = cl.api("GET", "/jobs/etl/load")
    with bearer(cl) as s:
        d = s.get(f"/jobs/{job['id']}.json").json()
        html = s.get(f"/jobs/{job['id']}").text
        assert s.get("/jobs/999999.json").status_code == 404
        assert s.get("/jobs/999999").status_code == 404
    assert d["job"]["ref"] == "etl#2/load" and d["job"]["args"] == ["--day", "1"]
    assert [a["state"] for a in d["job"]["attempts"]] == ["COMPLETED"]
    assert d["dag"] == {"id": d["job"]["dag_id"], "name": "etl", "run": 2, "status": "COMPLETED"}
    assert 'id="log-lines"' in html and 'id="follow"' in html and "--day 1" in html


def test_agents_twin_groups_the_stages(cl: Cluster) -> None:
    with bearer(cl) as s:
        d = s.get("/agents.json").json()
        html = s.get("/agents").text
    assert d["total"] == 1 and d["limit"] == 50
    (run,) = d["runs"]
    # Its driver (the fixture's process) is alive: running, as /runs says, its PARTIAL stage
    # in its box and among its failures.
    assert run["id"] == "RESEARCH_dash01" and run["status"] == "RUNNING"
    assert cl.api("GET", "/runs/RESEARCH_dash01")["status"] == "running"
    assert [(st["label"], st["status"]) for st in run["stages"]] == [
        ("PLAN", "COMPLETED"), ("ITER1", "PARTIAL"), ("EVAL1", "COMPLETED"), ("SYNTH", "COMPLETED")]
    assert run["iteration"] == 1
    assert [(f["label"], f["failed_jobs"], f["jobs"]) for f in run["failed"]] == [("ITER1", 1, 2)]
    assert 'class="agent-run" id="run-RESEARCH_dash01" data-run-id="RESEARCH_dash01"' in html
    stages = re.findall(r'<a class="stage" data-label="(\w+)" data-status="(\w+)" '
                        r'data-executing="0" href="([^"]+)"', html)
    assert [(label, status) for label, status, _ in stages] == [
        (st["label"], st["status"]) for st in run["stages"]]
    for label, _, href in stages:
        target = urlparse(href.replace("&amp;", "&"))
        assert (target.path, target.query) == (f"/dags/DAG-RESEARCH_dash01_{label}", "run=1")
    assert html.index('data-label="PLAN"') < html.index("→") < html.index('data-label="ITER1"')
    # The seed's marks beside the words.
    assert '<span class="stage-symbol" aria-hidden="true">✓</span> COMPLETED' in html
    assert '<span class="stage-symbol" aria-hidden="true">◐</span> PARTIAL' in html
    assert [st["symbol"] for st in run["stages"]] == ["✓", "◐", "✓", "✓"]
    assert 'class="run-failure" data-status="PARTIAL"' in html  # marked ◐ as its stage, not ✗
    assert re.search(r'class="run-failure" data-status="PARTIAL"[^>]*>◐ ITER1 PARTIAL', html)
    assert re.search(r'<div id="empty-state" class="empty-state" hidden>', html)


def test_agents_empty_state(cluster: Cluster) -> None:
    with bearer(cluster) as s:
        d = s.get("/agents.json").json()
        html = s.get("/agents").text
    assert d["runs"] == [] and d["total"] == 0
    assert '<div id="empty-state" class="empty-state">' in html
    assert "agent_run_id=run_id" in html
    # (On this cluster of its own: the run made here changes no shared count.)
    browser = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}
    with bearer(cluster) as s:
        # A run whose own id ends in .json has its page at /runs/<id> (no run 'r1' there),
        # its twin at /runs/<id>.json; a twin of nothing is still a JSON 404.
        cluster.api("POST", "/runs", {"id": "r1.json", "agent_id": "dotted"})
        page = s.get("/runs/r1.json", headers=browser)
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        twin = s.get("/runs/r1.json.json").json()
        assert (twin.get("run") or twin)["id"] == "r1.json", twin
        gone = s.get("/runs/nothing.json", headers=browser)
        assert gone.status_code == 404 and gone.json()["error"]["code"] == "not_found"
        # A schedule that never fired names its DAG without linking to a page it lacks.
        cluster.client().schedule_dag("yearly", [TitanJob(job_id="j", filename=cluster.script(
            "y.py", "print(1)\n"))], cron="0 0 1 1 *")
        row = s.get("/schedules").text
        assert "DAG-yearly" in row and 'href="/dags/DAG-yearly' not in row


def test_store_twin(cl: Cluster) -> None:
    with bearer(cl) as s:
        d = s.get("/store.json", params={"prefix": "dash:"}).json()
        html = s.get("/store", params={"prefix": "dash:"}).text
        assert s.get("/store.json", params={"prefix": "nothing:"}).json()["keys"] == []
    keys = {k["key"]: k for k in d["keys"]}
    assert list(keys) == ["dash:greeting", "dash:long", "dash:set"]
    assert keys["dash:greeting"]["value"] == "hello <i>there</i>"
    assert keys["dash:long"]["size"] == 500 and not keys["dash:long"]["truncated"]
    assert keys["dash:set"]["members"] == ["member-1", "member-2"]
    assert '<tr class="store-key" data-key="dash:set" data-kind="set">' in html
    # Paged by key: the second page follows the first's last key, and says where it is.
    with bearer(cl) as s:
        first = s.get("/store", params={"prefix": "dash:", "limit": 2}).text
        second = s.get("/store", params={"prefix": "dash:", "limit": 2,
                                         "after": "dash:long"}).text
    assert 'class="next-page" href="/store?prefix=dash%3A&amp;limit=2&amp;after=dash%3Along"' \
        in first
    assert 'data-key="dash:set"' in second and 'data-key="dash:greeting"' not in second
    assert "Keys after <code>dash:long</code>" in second and "first page" in second
    # A long value's "whole value" link names its key as one path segment: a key with "/"
    # and a ".." segment linked to a 400, the key ".." to the key listing (QA).
    client = cl.client()
    client.store_put("odd/..", "z" * (70 * 1024))
    with bearer(cl) as s:
        page = s.get("/store", params={"prefix": "odd/"}).text
        assert 'href="/api/v1/store/values/odd%2F.."' in page
        assert s.get("/api/v1/store/values/odd%2F..").json()["value"].startswith("zzz")
    client.store_delete("odd/..")
    assert "<details data-key=\"dash:long\">" in html  # a long value is folded, expandable
    assert "hello &lt;i&gt;there&lt;/i&gt;" in html


def test_a_published_artifacts_key_links_its_download(cl: Cluster) -> None:
    # The Store showed the file name publish_artifact set and no way to fetch the file: a
    # reader now gets a link to GET /artifacts?key= (the key quoted as a query value).
    with bearer(cl) as s:
        r = s.post("/api/v1/artifacts", params={"key": "art:report #1", "name": "report.md"},
                   content=b"# findings\n")
        assert r.status_code == 201, r.text
    cl.client().store_put("art:plain", "report.md")  # names a file, published nothing
    viewer = cl.api("POST", "/tokens", {"role": "viewer", "name": "store viewer"})["token"]
    with httpx.Client(base_url=cl.url, timeout=30) as s:
        sign_in(s, viewer)
        page = s.get("/store", params={"prefix": "art:"}).text
        twin = s.get("/store.json", params={"prefix": "art:"}).json()
        href = "/api/v1/artifacts?key=art%3Areport+%231"
        assert f'<a class="artifact-download" href="{href}" download="report.md">' \
               "download report.md</a>" in page
        assert page.count('class="artifact-download"') == 1  # not for art:plain
        download = s.get(href)
        assert download.status_code == 200 and download.content == b"# findings\n"
    keys = {k["key"]: k for k in twin["keys"]}
    assert keys["art:report #1"]["artifact"] == {"name": "report.md", "size": 11}
    assert keys["art:plain"]["artifact"] is None


# -- escaping ----------------------------------------------------------------------------------
def test_user_names_and_values_are_escaped(cl: Cluster) -> None:
    job = cl.api("GET", "/jobs?ref=" + quote(f"{XSS}/{XSS}", safe=""))
    with bearer(cl) as s:
        pages = [s.get("/dags").text, s.get(dag_page(XSS)).text, s.get(f"/jobs/{job['id']}").text,
                 s.get("/store").text]
        twin = s.get(dag_page(XSS) + ".json").json()
    assert twin["dag"]["name"] == XSS and twin["layout"]["job"] == [XSS]
    for html in pages:
        assert "<script>alert" not in html and "<b>bold" not in html and "<i>there" not in html
    assert "&lt;script&gt;alert(1)&lt;" in pages[0]
    assert "&lt;b&gt;bold&lt;/b&gt;" in pages[2]
    # The graph's data is embedded as JSON that cannot close its <script> element.
    embedded = pages[1].split('<script type="application/json" id="dag-data">', 1)[1]
    assert embedded.split("</script>", 1)[0].count("\\u003cscript\\u003e") >= 2


def test_static_assets_are_served_without_auth(cl: Cluster) -> None:
    with httpx.Client(base_url=cl.url, timeout=30) as s:
        for name in ("live.js", "dag.js", "jobview.js", "agents.js", "pages.js", "job.js",
                     "style.css"):
            r = s.get(f"/static/{name}")
            assert r.status_code == 200 and len(r.content) > 100, name
        assert s.get("/static/../render.py").status_code == 404


def test_dashboard_port_serves_the_same_pages(cl: Cluster) -> None:
    with httpx.Client(base_url=f"http://127.0.0.1:{cl.dashboard_port}", timeout=30) as s:
        sign_in(s, cl.admin_token)
        assert s.get("/").status_code == 200


# -- the DAG builder ---------------------------------------------------------------------------
def test_dag_builder_page_twin_and_check(cl: Cluster) -> None:
    """``/dags/new`` offers the uploaded files and live capabilities; ``POST /dags/new/check``
    needs a credential, and a session's CSRF token, like every POST; a DAG named "new" keeps
    its visualizer at ``/dags/DAG-new``."""
    cl.client().upload_file(cl.script("builder_ok.py", OK))
    draft = {"name": "drawn", "jobs": [{"job_id": "a", "filename": "builder_ok.py"}]}
    with bearer(cl) as s:
        twin = s.get("/dags/new.json").json()
        assert "builder_ok.py" in [f["name"] for f in twin["files"]]
        assert "GENERAL" in twin["capabilities"]
        assert '<option value="builder_ok.py">' in s.get("/dags/new").text
        reply = s.post("/dags/new/check", json=draft).json()
        assert reply["problems"] == [] and reply["dag"]["jobs"][0]["script_sha256"]
        r = s.post("/dags/new/check", json={"name": "x", "yaml": "jobs: [1"})
        assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_pipeline"
        assert s.post("/dags/new/check", json=[1]).status_code == 400
        cl.client().submit_dag("new", [TitanJob("only", cl.script("builder_ok.py", OK))])
        assert s.get("/dags/DAG-new.json").json()["dag"]["name"] == "new"
    with httpx.Client(base_url=cl.url, timeout=30) as anonymous:
        assert anonymous.post("/dags/new/check", json=draft).status_code == 401
    with signed_in(cl) as s:
        r = s.post("/dags/new/check", json=draft)
        assert r.status_code == 403 and r.json()["error"]["code"] == "csrf_failed"
        key = sign_in(s, cl.admin_token)
        r = s.post("/dags/new/check", json=draft, headers={sessions.CSRF_HEADER: key})
        assert r.status_code == 200 and r.json()["dag"] is not None
