"""Acceptance: the live event stream (WebSocket /api/v1/events), long-polls that end with
their credential, and dashboard sessions (sign-in cookie, CSRF, Host and Origin checks) on a
real master."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from tests.integration import harness
from tests.integration.harness import Cluster, shared_cluster
from tests.integration.raw_http import answer
from titan import TitanJob
from titan.errors import Unauthorized

cluster = shared_cluster()  # one `titan up` for the module (see harness.py)


@contextmanager
def stream(cluster: Cluster, query: str = "", **headers: str) -> Iterator[ClientConnection]:
    headers.setdefault("Authorization", f"Bearer {cluster.admin_token}")
    with connect(f"ws://127.0.0.1:{cluster.port}/api/v1/events{query}",
                 additional_headers=headers, open_timeout=10) as ws:
        assert json.loads(ws.recv(timeout=10)) == {"type": "hello", "ping": 20.0}
        yield ws


def collect(ws: ClientConnection, until: Any, timeout: float = 30) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    deadline = time.time() + timeout
    while not until(events):
        assert time.time() < deadline, f"gave up waiting; got {events}"
        event = json.loads(ws.recv(timeout=deadline - time.time()))
        if event["type"] != "ping":  # the master's keep-alive after a quiet spell
            events.append(event)
    return events


def test_job_and_dag_events_arrive_as_they_commit(cluster: Cluster) -> None:
    # agent_run_updated said its stage's status as "status": a listener read COMPLETED the
    # moment the stage completed, while the run (its driver, this process, still going) ran
    # on. "status" is the run's now (GET /agent-runs/{id}'s), the stage's is "stage_status".
    script = cluster.script("hello.py", "print('hello')\n")
    with stream(cluster, "?types=job_updated,dag_updated,agent_run_updated") as ws:
        cluster.client().submit_dag("live_RUN1_PLAN", [TitanJob(job_id="a", filename=script)],
                                    agent_run_id="live_RUN1")
        events = collect(ws, lambda ev: any(
            e["type"] == "agent_run_updated"
            and e["data"].get("stage_status", e["data"]["status"]) == "COMPLETED" for e in ev))
        states = [e["data"]["state"] for e in events if e["type"] == "job_updated"]
        assert states[-1] == "COMPLETED" and "RUNNING" in states
        [dag] = [e["data"] for e in events
                 if e["type"] == "dag_updated" and e["data"]["status"] == "COMPLETED"]
        assert dag["name"] == "live_RUN1_PLAN" and dag["agent_run_id"] == "live_RUN1"
        runs = [e["data"] for e in events if e["type"] == "agent_run_updated"]
        assert runs[0]["stage_status"] == "WAITING" and runs[0]["dag_id"] == dag["id"]
        assert runs[0]["status"] in ("WAITING", "RUNNING")
        assert runs[-1] == {"id": "live_RUN1", "dag_id": dag["id"], "status": "RUNNING",
                            "stage_status": "COMPLETED"}
        assert cluster.api("GET", "/agent-runs/live_RUN1")["status"] == "RUNNING"
        # Its driver ends it: the run's own change, no stage's.
        cluster.api("PATCH", "/runs/live_RUN1", {"status": "ended"})
        events += collect(ws, lambda ev: any(
            e["type"] == "agent_run_updated" and e["data"]["status"] == "COMPLETED" for e in ev))
    runs = [e["data"] for e in events if e["type"] == "agent_run_updated"]
    assert runs[-1] == {"id": "live_RUN1", "dag_id": None, "status": "COMPLETED",
                        "stage_status": None}
    assert cluster.api("GET", "/agent-runs/live_RUN1")["status"] == "COMPLETED"
    assert {e["type"] for e in events} <= {"job_updated", "dag_updated", "agent_run_updated"}


def test_evaluation_events_arrive(cluster: Cluster) -> None:
    # An evaluation created, seeded and deleted says so (the Evaluations and Projects pages
    # re-read themselves on it); eval_run_updated, documented as published, was refused as an
    # unknown type.
    agent = {"name": "bot", "version": "1", "kind": "http", "url": "https://example.com/a",
             "tools": []}
    with stream(cluster, "?types=evaluation_updated,eval_run_updated") as ws:
        cluster.api("PUT", "/evaluations/ev-live", {"agent": agent})
        cluster.api("POST", "/evaluations/ev-live/tasks",
                    {"tasks": [{"id": "t1", "user_instruction": "hi"}]})
        events = collect(ws, lambda ev: any(e["type"] == "eval_run_updated" for e in ev))
        cluster.api("DELETE", "/evaluations/ev-live?force=true")
        events += collect(ws, lambda ev: any(e["data"].get("op") == "deleted" for e in ev))
    changes = [e["data"] for e in events if e["type"] == "evaluation_updated"]
    assert changes == [{"id": "ev-live", "op": "put"}, {"id": "ev-live", "op": "tasks"},
                       {"id": "ev-live", "op": "deleted"}]
    run = next(e["data"] for e in events if e["type"] == "eval_run_updated")
    assert run["evaluation_id"] == "ev-live" and run["task_id"] == "t1"


def test_dag_name_adds_the_other_runs_of_a_dag(cluster: Cluster) -> None:
    # The visualizer of run 1 hears run 2's status (its run picker said "#2 · new" for ever),
    # and nothing of a DAG of another name, nor run 2's jobs.
    script = cluster.script("hello.py", "print('hello')\n")
    client = cluster.client()
    first = client.submit_dag("named", [TitanJob("a", script)], wait=True, timeout=60)
    with stream(cluster, f"?types=dag_updated,job_updated&dag={first['id']}&dag_name=named") as ws:
        client.submit_dag("named-other", [TitanJob("a", script)], wait=True, timeout=60)
        second = client.submit_dag("named", [TitanJob("a", script)], wait=True, timeout=60)
        events = collect(ws, lambda ev: any(e["data"].get("status") == "COMPLETED" for e in ev))
    assert {(e["type"], e["data"]["name"], e["data"]["run"]) for e in events} == {
        ("dag_updated", "named", 2)}
    assert events[-1]["data"]["id"] == second["id"]


def test_run_scope_takes_in_the_runs_replays(cluster: Cluster) -> None:
    # run=X hears the run events of X's replays (its page lists them), not their actions,
    # nor another run's.
    cluster.api("POST", "/runs", {"id": "scoped", "agent_id": "a"})
    cluster.api("PATCH", "/runs/scoped", {"status": "completed"})
    with stream(cluster, "?types=run_created,run_completed,action_created&run=scoped") as ws:
        cluster.api("POST", "/runs", {"id": "scoped-other", "agent_id": "a"})
        cluster.api("POST", "/runs", {"id": "scoped-replay", "agent_id": "a",
                                      "replay_of": "scoped"})
        cluster.api("POST", "/runs/scoped-replay/actions", {"actions": [{
            "id": "sr1", "name": "n", "actor": "a", "started_at": time.time(),
            "outcome": "replayed"}]})
        cluster.api("PATCH", "/runs/scoped-replay", {"status": "completed"})
        events = collect(ws, lambda ev: any(e["type"] == "run_completed" for e in ev))
    assert [(e["type"], e["data"]["id"], e["data"]["replay_of"]) for e in events] == [
        ("run_created", "scoped-replay", "scoped"), ("run_completed", "scoped-replay", "scoped")]

def test_log_lines_only_for_the_followed_job(cluster: Cluster) -> None:
    chatty = cluster.script("chatty.py", "import sys, time\nfor i in range(5):\n"
                            "    print('line', i, flush=True)\n    time.sleep(0.2)\n")
    client = cluster.client()
    client.submit_dag("logs", [TitanJob(job_id="one", filename=chatty),
                               TitanJob(job_id="two", filename=chatty)])
    one = client.get_job("logs/one")["id"]
    with stream(cluster, f"?types=log_lines,job_updated&job={one}") as ws:
        events = collect(ws, lambda ev: sum(
            len(e["data"]["lines"]) for e in ev if e["type"] == "log_lines") >= 3)
    logs = [e["data"] for e in events if e["type"] == "log_lines"]
    assert {d["job"] for d in logs} == {one}
    assert all(line["line"].startswith("line ") for d in logs for line in d["lines"])


def closed_with(cluster: Cluster, query: str = "", **headers: str) -> tuple[int, str]:
    """The close code and reason the socket ends with before any frame (the handshake
    succeeds, so a client learns why: docs/api.md's 4400/4401/4403)."""
    with connect(f"ws://127.0.0.1:{cluster.port}/api/v1/events{query}",
                 additional_headers=headers, open_timeout=10) as ws:
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=10)
    rcvd = closed.value.rcvd
    assert rcvd is not None
    return rcvd.code, rcvd.reason


def test_bad_requests_are_refused_with_clear_codes(cluster: Cluster) -> None:
    auth = {"Authorization": f"Bearer {cluster.admin_token}"}
    code, reason = closed_with(cluster, "?types=nope", **auth)
    assert code == 4400 and "nope" in reason
    assert closed_with(cluster, "?job=abc", **auth)[0] == 4400
    assert closed_with(cluster, "", Authorization="Bearer wrong")[0] == 4401
    assert closed_with(cluster)[0] == 4401  # no credentials at all
    # A Host naming another site is refused before any route (DNS rebinding): the upgrade
    # is never accepted. Spoken by hand, so the request carries that one Host line only.
    for host in ("evil.example:80", f"evil.example:{cluster.port}"):
        status = _upgrade_status(cluster, [f"Host: {host}", *_bearer(cluster)])
        assert status in (400, 403), status
    assert _upgrade_status(cluster, ["Host: 127.0.0.1", *_bearer(cluster)]) == 101
    # Two Host lines are refused whatever they say: parsers and proxies disagree on which
    # one counts (websockets sends its own first, then the one asked for).
    with pytest.raises(InvalidStatus), stream(cluster, "", Host="evil.example:80"):
        pass


def _bearer(cluster: Cluster) -> list[str]:
    return [f"Authorization: Bearer {cluster.admin_token}"]


def _upgrade_status(cluster: Cluster, headers: list[str]) -> int:
    """The status a WebSocket upgrade request gets (101: accepted)."""
    with socket.create_connection(("127.0.0.1", cluster.port), timeout=10) as sock:
        sock.sendall(("\r\n".join([
            "GET /api/v1/events HTTP/1.1", *headers, "Upgrade: websocket",
            "Connection: Upgrade", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
            "Sec-WebSocket-Version: 13"]) + "\r\n\r\n").encode())
        return answer(sock)[0]


@contextmanager
def sign_in(cluster: Cluster) -> Iterator[tuple[httpx.Client, str]]:
    """A signed-in client, and the session's write key its sign-in was handed."""
    with httpx.Client(base_url=f"http://127.0.0.1:{cluster.dashboard_port}", timeout=10) as http:
        key = harness.sign_in(http, cluster.admin_token, "/dags")
        assert "titan_session" in http.cookies
        yield http, key


def test_session_cookie_needs_the_csrf_token_to_change_anything(cluster: Cluster) -> None:
    slow = cluster.script("slow.py", "import time\ntime.sleep(60)\n")
    cluster.client().submit_dag("csrf", [TitanJob(job_id="s", filename=slow)])
    with sign_in(cluster) as (http, key):
        assert http.get("/api/v1/jobs/csrf/s").json()["job_id"] == "s"  # reads need no CSRF
        refused = http.post("/api/v1/jobs/csrf/s/cancel")
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "csrf_failed"
        assert http.get("/api/v1/jobs/csrf/s").json()["state"] != "CANCELLED"
        ok = http.post("/api/v1/jobs/csrf/s/cancel", headers={"X-CSRF-Token": key})
        assert ok.status_code == 200 and ok.json()["state"] == "CANCELLED"


def test_session_socket_refuses_another_origin(cluster: Cluster) -> None:
    with sign_in(cluster) as (http, _):
        cookie = f"titan_session={http.cookies['titan_session']}"
    host = f"127.0.0.1:{cluster.port}"
    with connect(f"ws://{host}/api/v1/events", additional_headers={
            "Cookie": cookie, "Origin": f"http://{host}"}, open_timeout=10) as ok:
        assert json.loads(ok.recv(timeout=10))["type"] == "hello"
    # Another site, or this host and port under another scheme: the cookie is not honoured.
    for origin in ("http://evil.example", f"https://{host}", "null"):
        assert closed_with(cluster, "", Cookie=cookie, Origin=origin)[0] == 4401, origin


def test_revoking_a_token_ends_its_sessions(cluster: Cluster) -> None:
    made = cluster.api("POST", "/tokens", {"role": "viewer", "name": "dave"})
    http = httpx.Client(base_url=f"http://127.0.0.1:{cluster.dashboard_port}", timeout=10)
    with http:
        harness.sign_in(http, made["token"])
        assert http.get("/api/v1/dags").status_code == 200
        cluster.api("DELETE", f"/tokens/{made['id']}")
        deadline = time.time() + 15  # the token cache may hold it for a few seconds
        while http.get("/api/v1/dags").status_code == 200:
            assert time.time() < deadline, "a revoked token's session still works"
            time.sleep(0.5)
        assert http.get("/api/v1/dags").status_code == 401


def closes_within(ws: ClientConnection, seconds: float) -> tuple[int, str]:
    """The code and reason ``ws`` is closed with, events and pings before it ignored."""
    deadline = time.time() + seconds
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            assert time.time() < deadline, "the socket stayed open"
            ws.recv(timeout=deadline - time.time())
    rcvd = closed.value.rcvd
    assert rcvd is not None
    return rcvd.code, rcvd.reason


def test_an_open_socket_ends_with_its_credential(cluster: Cluster) -> None:
    """Revoking a token, or the end of a job's attempt, closes the sockets it opened (4401,
    with the reason), as it fails its requests: a stream is not a way around either."""
    made = cluster.api("POST", "/tokens", {"role": "viewer", "name": "erin"})
    with stream(cluster, Authorization=f"Bearer {made['token']}") as ws:
        cluster.api("DELETE", f"/tokens/{made['id']}")
        code, reason = closes_within(ws, 20)  # the token cache may hold it a few seconds
    assert code == 4401 and "revoked" in reason
    # A job hands its token out, then ends: the socket it opened closes soon after.
    leaker = cluster.script("leak_token.py", """
        import os
        from titan import TitanClient
        client = TitanClient()
        client.store_put("wsend/token", os.environ["TITAN_TOKEN"])
        client.store_wait("wsend/go", timeout=60)
    """)
    client = cluster.client()
    dag = client.submit_job(TitanJob(job_id="wsend", filename=leaker))
    token = client.store_wait("wsend/token", timeout=60)
    with stream(cluster, Authorization=f"Bearer {token}") as ws:
        client.store_put("wsend/go", "1")
        assert client.wait_dag(dag["id"], timeout=60)["status"] == "COMPLETED"
        code, reason = closes_within(ws, 10)
    assert code == 4401 and "no longer runs" in reason


def test_a_parked_long_poll_ends_with_its_credential(cluster: Cluster) -> None:
    """A token revoked while its long-polls are parked on the master gets 401 from each, not
    what is written after the revocation: a revoked viewer's ``store_wait`` was answered with
    a value stored 25 s later, an operator's ``submit_dag(wait=True)`` with the finished DAG
    (a QA pass)."""
    gated = cluster.script("gated.py", """
        from titan import TitanClient
        TitanClient().store_wait("lpend/go", timeout=120)
    """)
    admin = cluster.client()
    viewer = cluster.api("POST", "/tokens", {"role": "viewer", "name": "lp-viewer"})
    operator = cluster.api("POST", "/tokens", {"role": "operator", "name": "lp-operator"})
    seen, op = cluster.client(viewer["token"]), cluster.client(operator["token"])
    with ThreadPoolExecutor(3) as pool:
        stored = pool.submit(seen.store_wait, "lpend/secret", 120)
        submitted = pool.submit(op.submit_dag, "lpend", [TitanJob(job_id="g", filename=gated)],
                                wait=True, timeout=120)
        deadline = time.time() + 60  # its job running: the submission's request is parked
        while not admin.list_dags(name="lpend") or \
                admin.get_job("lpend/g")["state"] != "RUNNING":
            assert time.time() < deadline, "the gated job never started"
            time.sleep(0.1)
        finished = pool.submit(seen.wait_job, "lpend/g", 120)
        # The viewer's job wait is parked too when its token goes (or refused, if not yet).
        time.sleep(0.5)
        cluster.api("DELETE", f"/tokens/{viewer['id']}")
        cluster.api("DELETE", f"/tokens/{operator['id']}")
        admin.store_put("lpend/secret", "written after the revocation")
        admin.store_put("lpend/go", "1")
        assert admin.wait_dag("lpend", timeout=60)["status"] == "COMPLETED"
        for waited in (stored, submitted, finished):
            with pytest.raises(Unauthorized, match="unknown or revoked token"):
                waited.result(timeout=60)


def test_a_plain_form_post_carries_its_csrf_token_as_a_field(cluster: Cluster) -> None:
    slow = cluster.script("slow.py", "import time\ntime.sleep(60)\n")
    cluster.client().submit_dag("form", [TitanJob(job_id="s", filename=slow)])
    with sign_in(cluster) as (http, key):
        refused = http.post("/api/v1/jobs/form/s/cancel", data={"csrf_token": "forged"})
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "csrf_failed"
        ok = http.post("/api/v1/jobs/form/s/cancel", data={"csrf_token": key})
        assert ok.status_code == 200 and ok.json()["state"] == "CANCELLED"
