"""The API's HTTP rules against a real `titan up`: write routes refuse fields they do not know
(a typo is an error, not silently lost), HEAD answers as GET without a body, and every error
has the documented shape, over raw HTTP."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import time
from typing import Any

from tests.integration.harness import Cluster, shared_cluster
from tests.integration.test_api_contract import assert_error, call

cluster = shared_cluster(slots=1)


def _gate(c: Cluster, name: str) -> str:
    """A DAG of one approval gate, waiting for its decision; its job's reference."""
    call(c, "POST", "/dags", {"name": name, "jobs": [
        {"job_id": "gate", "job_type": "APPROVAL", "hitl_message": "ok?"}]})
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        status, job = call(c, "GET", f"/jobs/{name}/gate")
        if status == 200 and job["state"] == "WAITING_APPROVAL":
            return f"{name}/gate"
        time.sleep(0.1)
    raise AssertionError(f"the gate never waited: {job}")


def test_write_routes_refuse_fields_they_do_not_know(cluster: Cluster) -> None:
    ref = _gate(cluster, "typo-gate")
    worker_token = (cluster.data / "worker.token").read_text().strip()
    cases: list[tuple[str, str, dict[str, Any], str]] = [
        ("POST", f"/jobs/{ref}/approve", {"commnet": "why"}, "commnet"),
        ("POST", f"/jobs/{ref}/reject", {"comment": "no", "reason": "x"}, "reason"),
        ("POST", f"/jobs/{ref}/stop", {"grace_s": 1}, "grace_s"),
        ("POST", "/tokens", {"role": "viewer", "nmae": "ci-bot"}, "nmae"),
        ("POST", "/store/incr/typo-k", {"step": 10}, "step"),
        ("PUT", "/store/values/typo-k", {"value": "v", "ttl": 5}, "ttl"),
        ("POST", "/store/sets/typo-s", {"member": "m", "members": ["n"]}, "members"),
        ("POST", "/blobs/missing", {"sha256": [], "sha": []}, "sha"),
        ("POST", "/workers/register", {"name": "w", "slot": 2}, "slot"),
    ]
    for method, path, body, field in cases:
        who = worker_token if path == "/workers/register" else "admin"
        err = assert_error(*call(cluster, method, path, body, token=who), 400, "invalid_request")
        assert err["details"]["field"] == field, (path, err)
        assert f"unknown field {field!r}" in err["message"], err
    err = assert_error(*call(cluster, "POST", f"/jobs/{ref}/approve", {"commnet": "why"}), 400)
    assert "did you mean 'comment'" in err["message"], err
    # Nothing was done: the gate still waits, the counter and the set were never made.
    assert call(cluster, "GET", f"/jobs/{ref}")[1]["state"] == "WAITING_APPROVAL"
    assert call(cluster, "GET", "/store/values/typo-k")[1]["value"] is None
    assert call(cluster, "GET", "/store/sets/typo-s")[1]["members"] == []
    # A route that takes no body refuses one ({} and no body at all are fine).
    status, dag = call(cluster, "POST", "/dags", {"name": "typo-cancel", "jobs": [
        {"job_id": "g", "job_type": "APPROVAL"}]})
    assert status == 201
    err = assert_error(*call(cluster, "POST", "/dags/typo-cancel/cancel", {"force": True}), 400,
                       "invalid_request")
    assert err["details"]["field"] == "body" and "takes no body" in err["message"], err
    assert call(cluster, "POST", "/dags/typo-cancel/cancel", {})[0] == 200
    # What the SDK sends still goes: a comment, a grace, a counter's step, a token's name.
    status, job = call(cluster, "POST", f"/jobs/{ref}/approve", {"comment": "fine"})
    assert status == 200 and job["state"] == "APPROVED", job
    client = cluster.client()
    assert client.store_incr("typo-k2", by=10) == 10
    assert client.create_token("viewer", "ci-bot")["name"] == "ci-bot"


def test_token_names_are_checked_not_coerced(cluster: Cluster) -> None:
    for body, field in [({"role": "viewer", "name": 5}, "name"),
                        ({"role": "viewer", "name": "x" * 201}, "name"),
                        ({"role": "viewer", "name": "line\nbreak"}, "name"),
                        ({"role": "viewer", "name": "a\x00b"}, "name"),
                        ({"role": "viewer", "name": "\u202egnp.exe"}, "name"),
                        ({"role": "viewer", "name": "  "}, "name"),
                        ({"role": "ADMIN", "name": "x"}, "role"),
                        ({"name": "x"}, "role")]:
        err = assert_error(*call(cluster, "POST", "/tokens", body), 400, "invalid_request")
        assert err["details"]["field"] == field, (body, err)
    status, made = call(cluster, "POST", "/tokens", {"role": "viewer"})
    assert status == 201 and made["name"] == "viewer"
    status, made = call(cluster, "POST", "/tokens", {"role": "viewer", "name": "team/ci #2"})
    assert status == 201 and made["name"] == "team/ci #2"


def raw(c: Cluster, method: str, path: str, *, body: bytes | None = None,
        headers: dict[str, str] | None = None, token: str | None = "admin"
        ) -> tuple[int, dict[str, str], bytes]:
    """One request; (status, headers with lower-case names, the body's bytes)."""
    conn = http.client.HTTPConnection("127.0.0.1", c.port, timeout=30)
    hdrs = dict(headers or {})
    if token is not None:
        hdrs["Authorization"] = f"Bearer {c.admin_token}"
    try:
        conn.request(method, path, body=body, headers=hdrs)
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
    finally:
        conn.close()


def test_head_answers_as_get_without_a_body(cluster: Cluster) -> None:
    blob = os.urandom(300_000)
    sha = hashlib.sha256(blob).hexdigest()
    assert raw(cluster, "PUT", f"/api/v1/blobs/{sha}", body=blob,
               headers={"Content-Type": "application/octet-stream"})[0] == 201
    for path in ("/api/v1/health", "/api/v1/dags", "/api/v1/workers", f"/api/v1/blobs/{sha}",
                 "/api/v1/openapi.json"):
        status, got, body = raw(cluster, "GET", path)
        h_status, h_got, h_body = raw(cluster, "HEAD", path)
        assert (h_status, h_body) == (status, b""), (path, h_status, h_body[:100])
        assert h_got.get("content-type") == got.get("content-type"), path
        # The GET's length, not the empty body's; /health's "time" may take a digit more or
        # less between the two requests, so its HEAD only has to say a length.
        if "content-length" in got and path != "/api/v1/health":
            assert h_got["content-length"] == got["content-length"] == str(len(body)), path
        elif "content-length" in got:
            assert int(h_got["content-length"]) > 0, path
    status, got, body = raw(cluster, "HEAD", f"/api/v1/blobs/{sha}",
                            headers={"Range": "bytes=100-199"})
    assert (status, got["content-length"], got["content-range"], body) == (
        206, "100", f"bytes 100-199/{len(blob)}", b"")
    # HEAD needs what GET needs.
    assert raw(cluster, "HEAD", "/api/v1/dags", token=None)[0] == 401


def test_405_says_which_methods_the_route_takes(cluster: Cluster) -> None:
    for method, path, allow in [("DELETE", "/api/v1/dags", "GET, HEAD, POST"),
                                ("HEAD", "/api/v1/tokens/tok-x", "DELETE"),
                                ("GET", "/api/v1/tokens/tok-x", "DELETE"),
                                ("PUT", "/api/v1/health", "GET, HEAD"),
                                # A fixed path is its route's, not a run's id: "batch" was
                                # read as /runs/{run_id} too (GET, HEAD, PATCH, POST).
                                ("PUT", "/api/v1/runs/batch", "POST"),
                                ("PUT", "/api/v1/runs/export", "GET, HEAD"),
                                ("PUT", "/api/v1/runs/some-run", "GET, HEAD, PATCH")]:
        status, got, body = raw(cluster, method, path)
        assert status == 405 and got.get("allow") == allow, (method, path, status, got)
        if method != "HEAD":
            assert_error(status, json.loads(body), 405, "method_not_allowed")


def test_a_range_past_the_end_is_416_with_the_error_body(cluster: Cluster) -> None:
    blob = b"0123456789" * 10
    sha = hashlib.sha256(blob).hexdigest()
    raw(cluster, "PUT", f"/api/v1/blobs/{sha}", body=blob,
        headers={"Content-Type": "application/octet-stream"})
    status, got, body = raw(cluster, "GET", f"/api/v1/blobs/{sha}",
                            headers={"Range": "bytes=500-"})
    assert got["content-range"] == "bytes */100"
    err = assert_error(status, json.loads(body), 416, "range_not_satisfiable")
    assert err["details"]["size"] == 100


def test_a_path_with_a_slash_added_names_the_route(cluster: Cluster) -> None:
    for path in ("/api/v1/runs/", "/api/v1/dags/", "/api/v1/store/", "/api/v1/runs/r1/"):
        status, got, body = raw(cluster, "GET", path)
        err = assert_error(status, json.loads(body), 404, "not_found")
        assert err["details"]["path"] == path[:-1] and "location" not in got, (path, err)
    # A page redirects, relative (an absolute http:// one was wrong behind TLS).
    status, got, _ = raw(cluster, "GET", "/runs/?status=failed", token=None)
    assert (status, got["location"]) == (307, "/runs?status=failed")
    # A store key may end with '/': its path is its own.
    assert call(cluster, "PUT", "/store/values/dir/", {"value": "v"})[0] == 200
    assert call(cluster, "GET", "/store/values/dir/")[1] == {"key": "dir/", "value": "v"}


def test_401_is_one_answer_on_every_route(cluster: Cluster) -> None:
    answers = set()
    for method, path in [("GET", "/api/v1/dags"), ("POST", "/api/v1/dags"), ("POST", "/mcp"),
                         ("POST", "/v1/traces")]:
        status, got, body = raw(cluster, method, path, token=None,
                                body=b"{}" if method == "POST" else None,
                                headers={"Content-Type": "application/json"})
        assert_error(status, json.loads(body), 401, "unauthorized")
        assert got.get("www-authenticate") == "Bearer", (path, got)
        answers.add(body)
    assert len(answers) == 1, answers


def test_a_websocket_path_over_http_is_426(cluster: Cluster) -> None:
    for path in ("/api/v1/events", "/api/v1/workers/w-x/channel"):
        status, got, body = raw(cluster, "GET", path)
        assert_error(status, json.loads(body), 426, "upgrade_required")
        assert got["upgrade"] == "websocket"


def test_event_filters_are_bounded_ids(cluster: Cluster) -> None:
    from tests.integration.test_live_events import closed_with

    auth = {"Authorization": f"Bearer {cluster.admin_token}"}
    for query in ("?dag=9223372036854775808", "?dag=-1", "?job=0"):
        assert closed_with(cluster, query, **auth)[0] == 4400, query


def test_worker_calls_are_checked_at_the_api(cluster: Cluster) -> None:
    token = (cluster.data / "worker.token").read_text().strip()
    status, reg = call(cluster, "POST", "/workers/register", {"name": "checked"}, token=token)
    assert status == 200
    wid, credential = reg["worker_id"], reg["credential"]
    cases = [("/workers/register", {"name": "x" * 100_000}, "name"),
             ("/workers/register", {"hostname": 5}, "hostname"),
             ("/workers/register", {"pid": "abc"}, "pid"),
             ("/workers/register", {"lend": "yes"}, "lend"),
             ("/workers/register", {"now": "yesterday"}, "now"),
             (f"/workers/{wid}/poll", {"wait": -1}, "wait"),
             (f"/workers/{wid}/poll", {"wait": 1e9}, "wait"),
             (f"/workers/{wid}/poll", {"draining": "no"}, "draining"),
             (f"/workers/{wid}/heartbeat", {"running": [], "now": "yesterday"}, "now")]
    for path, body, field in cases:
        who = token if path == "/workers/register" else credential
        err = assert_error(*call(cluster, "POST", path, body, token=who), 400, "invalid_request")
        assert err["details"]["field"] == field, (body, err)
    status, reply = call(cluster, "POST", f"/workers/{wid}/poll", {"wait": 0, "free_slots": 0},
                         token=credential)
    assert status == 200 and reply["jobs"] == []


def _two_credentials(cluster: Cluster, method: str, path: str, first: str,
                     second: str) -> tuple[int, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", cluster.port, timeout=30)
    try:
        conn.putrequest(method, path)
        conn.putheader("Authorization", f"Bearer {first}")
        conn.putheader("Authorization", f"Bearer {second}")
        conn.putheader("Content-Type", "application/json")
        conn.putheader("Content-Length", "2")
        conn.endheaders(b"{}")
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read() or b"null")
    finally:
        conn.close()


def test_two_authorization_headers_are_refused(cluster: Cluster) -> None:
    # The first was used, where a proxy or a log may take the second: neither is.
    viewer = cluster.client().create_token("viewer", "two-headers")["token"]
    for method, path in [("GET", "/api/v1/whoami"), ("POST", "/api/v1/store/incr/two-h"),
                         ("POST", "/mcp")]:
        for first, second in [(cluster.admin_token, viewer), (viewer, cluster.admin_token),
                              (cluster.admin_token, cluster.admin_token)]:
            err = assert_error(*_two_credentials(cluster, method, path, first, second), 400,
                               "invalid_request")
            assert err["details"] == {"header": "Authorization"}, err
            assert "one Authorization header" in err["message"], err
    assert call(cluster, "GET", "/store/values/two-h")[1]["value"] is None  # nothing was done
    assert call(cluster, "GET", "/whoami", token=viewer)[0] == 200
