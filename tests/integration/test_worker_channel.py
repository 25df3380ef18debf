"""The worker channel (WS /api/v1/workers/{id}/channel) against a real `titan up`: the local
worker uses it, a `--transport http` worker still long-polls, and the protocol itself —
credit, pushes, acks, re-delivery after a reconnect, refusals — spoken frame by frame by a
hand-made worker."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from tests.integration.harness import Cluster, shared_cluster
from titan_sdk import TitanJob

cluster = shared_cluster()

WAIT = 30.0
#: Messages received but not read yet, per connection (a frame may hold several).
_pending: dict[int, list[dict[str, Any]]] = {}


def channel_url(c: Cluster, worker_id: str) -> str:
    return f"ws://127.0.0.1:{c.port}/api/v1/workers/{worker_id}/channel"


@contextmanager
def channel(c: Cluster, worker_id: str, token: str | None) -> Iterator[ClientConnection]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with connect(channel_url(c, worker_id), additional_headers=headers, compression=None,
                 proxy=None, open_timeout=10) as ws:
        try:
            yield ws
        finally:
            _pending.pop(id(ws), None)


def send(ws: ClientConnection, frame: dict[str, Any]) -> None:
    ws.send(json.dumps(frame))


def recv(ws: ClientConnection, timeout: float = WAIT) -> dict[str, Any]:
    """The next message; a frame may hold several (a JSON array of them)."""
    queued = _pending.setdefault(id(ws), [])
    if not queued:
        frame = json.loads(ws.recv(timeout=timeout))
        queued.extend(frame if isinstance(frame, list) else [frame])
    message = queued.pop(0)
    assert isinstance(message, dict)
    return message


def hello(ws: ClientConnection, credit: int) -> None:
    """Say hello; the master answers that it takes freed slots with results in reports."""
    send(ws, {"t": "hello", "credit": credit, "running": []})
    assert recv(ws) == {"t": "welcome", "credit_in_reports": True}


def closed_with(ws: ClientConnection) -> tuple[int | None, str | None]:
    with pytest.raises(ConnectionClosed):
        ws.recv(timeout=WAIT)
    return ws.close_code, ws.close_reason


def register(c: Cluster, capability: str, slots: int = 4) -> tuple[str, str]:
    """A hand-made worker joins with a capability of its own; (worker id, its credential)."""
    token = (c.data / "worker.token").read_text().strip()
    reply = c.api("POST", "/workers/register",
                  {"name": f"hand-{capability}", "capabilities": [capability], "slots": slots},
                  token=token)
    return reply["worker_id"], reply["credential"]


def worker_row(c: Cluster, worker_id: str) -> dict[str, Any]:
    return next(w for w in c.api("GET", "/workers")["workers"] if w["id"] == worker_id)


def test_the_local_worker_takes_its_jobs_over_the_channel(cluster: Cluster) -> None:
    client = cluster.client()
    script = cluster.script("chan_hello.py", "print('over the channel')\n")
    client.submit_dag("chan_local", [TitanJob(job_id=f"j{i}", filename=script)
                                     for i in range(6)])
    dag = client.wait_dag("chan_local", timeout=WAIT)
    assert dag["status"] == "COMPLETED"
    assert [w["transport"] for w in cluster.live_workers()] == ["channel"]
    assert client.fetch_logs("chan_local/j3").strip() == "over the channel"


def test_an_http_worker_still_long_polls(cluster: Cluster) -> None:
    proc = cluster.add_worker(capabilities="CHAN_HTTP", slots=2, name="http-worker",
                              extra=["--transport", "http"])
    try:
        client = cluster.client()
        script = cluster.script("chan_http.py", "print('polled')\n")
        client.submit_dag("chan_http", [TitanJob(job_id="a", filename=script,
                                                 requirement="CHAN_HTTP")])
        assert client.wait_dag("chan_http", timeout=WAIT)["status"] == "COMPLETED"
        row = next(w for w in cluster.live_workers() if w["name"] == "http-worker")
        assert row["transport"] == "http"
        assert client.get_job("chan_http/a")["worker_id"] == row["id"]
    finally:
        proc.terminate()
        proc.wait(timeout=WAIT)


def test_credit_pushes_acks_and_redelivery(cluster: Cluster) -> None:
    worker_id, credential = register(cluster, "CHAN_CREDIT")
    client = cluster.client()
    script = cluster.script("chan_credit.py", "pass\n")
    client.submit_dag("chan_credit", [TitanJob(job_id=f"c{i}", filename=script,
                                               requirement="CHAN_CREDIT") for i in range(3)])
    with channel(cluster, worker_id, credential) as ws:
        hello(ws, 1)
        first = recv(ws)
        assert first["t"] == "jobs" and len(first["jobs"]) == 1, first  # one credit, one job
        job = first["jobs"][0]
        assert job["token"] and job["attempt"] == 1
        with pytest.raises(TimeoutError):
            ws.recv(timeout=0.5)  # no credit left: nothing more is pushed
        assert worker_row(cluster, worker_id)["transport"] == "channel"

        # The result and a freed slot: acked once committed, and the next job comes.
        send(ws, {"t": "report", "id": 7,
                  "logs": [{"id": job["id"], "attempt": 1, "seq": 1, "stream": "stdout",
                            "ts": 1.0, "line": "done by hand"}],
                  "results": [{"id": job["id"], "attempt": 1, "exit_code": 0}]})
        send(ws, {"t": "credit", "n": 1})
        frames = [recv(ws), recv(ws)]
        ack = next(f for f in frames if f["t"] == "ack")
        assert ack == {"t": "ack", "id": 7, "rejected": []}
        second = next(f for f in frames if f["t"] == "jobs")["jobs"][0]
        assert second["id"] != job["id"]
        assert client.get_job(f"chan_credit/{job['job_id']}")["state"] == "COMPLETED"
        assert client.fetch_logs(f"chan_credit/{job['job_id']}").strip() == "done by hand"

        # A result for an attempt that is not the job's current one is rejected, not applied.
        send(ws, {"t": "report", "id": 8, "logs": [],
                  "results": [{"id": second["id"], "attempt": 99, "exit_code": 0}]})
        assert recv(ws) == {"t": "ack", "id": 8,
                            "rejected": [{"id": second["id"], "attempt": 99}]}

    # The connection dropped with `second` pushed and not reported: a hello that does not
    # list it gets it again, as the same attempt (not a second one after the lease expires).
    with channel(cluster, worker_id, credential) as ws:
        hello(ws, 1)
        again = recv(ws)["jobs"]
        assert [(j["id"], j["attempt"]) for j in again] == [(second["id"], second["attempt"])]
        send(ws, {"t": "report", "id": 1, "logs": [], "results": [
            {"id": second["id"], "attempt": second["attempt"], "exit_code": 0}]})
        send(ws, {"t": "credit", "n": 1})
        frames = [recv(ws), recv(ws)]
        third = next(f for f in frames if f["t"] == "jobs")["jobs"][0]
        send(ws, {"t": "report", "id": 2, "logs": [], "results": [
            {"id": third["id"], "attempt": third["attempt"], "exit_code": 0}]})
        assert recv(ws)["t"] == "ack"
    dag = client.wait_dag("chan_credit", timeout=WAIT)
    assert dag["status"] == "COMPLETED"
    assert all(j["attempt"] == 1 for j in dag["jobs"])


def test_a_report_returns_the_slots_its_results_freed(cluster: Cluster) -> None:
    worker_id, credential = register(cluster, "CHAN_REPORT_CREDIT", slots=1)
    client = cluster.client()
    script = cluster.script("chan_report_credit.py", "pass\n")
    client.submit_dag("chan_report_credit", [
        TitanJob(job_id=f"r{i}", filename=script, requirement="CHAN_REPORT_CREDIT")
        for i in range(2)])
    with channel(cluster, worker_id, credential) as ws:
        hello(ws, 1)
        job = recv(ws)["jobs"][0]
        # No credit frame: the result brings its slot back, and the commit that applies it
        # leases the next job (pushed with the ack, often in one frame).
        send(ws, {"t": "report", "id": 1, "logs": [], "credit": 1,
                  "results": [{"id": job["id"], "attempt": job["attempt"], "exit_code": 0}]})
        frames = [recv(ws), recv(ws)]
        assert {f["t"] for f in frames} == {"ack", "jobs"}, frames
        second = next(f for f in frames if f["t"] == "jobs")["jobs"][0]
        assert second["id"] != job["id"]
        # Credit is capped at the worker's slots whatever a report claims.
        send(ws, {"t": "report", "id": 2, "logs": [], "credit": 5,
                  "results": [{"id": second["id"], "attempt": second["attempt"],
                               "exit_code": 0}]})
        assert recv(ws)["t"] == "ack"
    dag = client.wait_dag("chan_report_credit", timeout=WAIT)
    assert dag["status"] == "COMPLETED"


def test_a_worker_that_registers_again_with_its_channel_open_still_gets_jobs(
        cluster: Cluster) -> None:
    """In a failover the worker's channel reaches the new leader while its heartbeat there is
    refused (the worker counted lost), so it registers again with the channel open: the
    channel served the record of its hello, the dispatcher the new one, and the worker, live
    with every slot free, was sent nothing again (a fleet QA pass)."""
    worker_id, credential = register(cluster, "CHAN_REJOIN", slots=2)
    client = cluster.client()
    script = cluster.script("chan_rejoin.py", "pass\n")
    with channel(cluster, worker_id, credential) as ws:
        hello(ws, 2)
        cluster.api("POST", "/workers/register",
                    {"worker_id": worker_id, "name": "hand-CHAN_REJOIN",
                     "capabilities": ["CHAN_REJOIN"], "slots": 2, "running": []},
                    token=credential)
        client.submit_dag("chan_rejoin", [TitanJob(job_id="r", filename=script,
                                                   requirement="CHAN_REJOIN")])
        job = recv(ws)["jobs"][0]
        assert job["job_id"] == "r" and job["attempt"] == 1
        assert worker_row(cluster, worker_id)["transport"] == "channel"
        send(ws, {"t": "report", "id": 1, "logs": [], "credit": 1,
                  "results": [{"id": job["id"], "attempt": 1, "exit_code": 0}]})
        assert recv(ws)["t"] == "ack"
    assert client.wait_dag("chan_rejoin", timeout=WAIT)["status"] == "COMPLETED"


def test_a_draining_channel_gets_cancels_but_no_jobs(cluster: Cluster) -> None:
    worker_id, credential = register(cluster, "CHAN_DRAIN")
    client = cluster.client()
    script = cluster.script("chan_drain.py", "pass\n")
    client.submit_dag("chan_drain", [TitanJob(job_id=f"d{i}", filename=script,
                                              requirement="CHAN_DRAIN") for i in range(2)])
    with channel(cluster, worker_id, credential) as ws:
        hello(ws, 1)
        job = recv(ws)["jobs"][0]
        send(ws, {"t": "drain"})
        # Every job leased to it has been pushed: the worker may leave once they end.
        assert recv(ws) == {"t": "drained"}
        send(ws, {"t": "credit", "n": 3})
        client.cancel(f"chan_drain/{job['job_id']}")
        pushed = recv(ws)
        assert pushed == {"t": "jobs", "jobs": [],
                          "cancel": [{"id": job["id"], "attempt": job["attempt"],
                                      "why": "cancelled"}]}
        assert worker_row(cluster, worker_id)["state"] == "draining"
        with pytest.raises(TimeoutError):
            ws.recv(timeout=0.5)  # the other job stays queued for someone else


def test_refusals_close_with_a_code_that_says_why(cluster: Cluster) -> None:
    worker_id, credential = register(cluster, "CHAN_REFUSE")
    other_id, _ = register(cluster, "CHAN_REFUSE")
    worker_token = (cluster.data / "worker.token").read_text().strip()

    with channel(cluster, worker_id, None) as ws:
        assert closed_with(ws)[0] == 4401
    with channel(cluster, worker_id, "not-a-token") as ws:
        assert closed_with(ws)[0] == 4401
    with channel(cluster, worker_id, worker_token) as ws:  # a bare worker token only registers
        code, reason = closed_with(ws)
        assert code == 4403 and "worker_credential_required" in (reason or "")
    with channel(cluster, other_id, credential) as ws:  # another worker's id
        assert closed_with(ws)[0] == 4403
    viewer = cluster.client().create_token("viewer", "chan-viewer")["token"]
    with channel(cluster, worker_id, viewer) as ws:
        assert closed_with(ws)[0] == 4403
    with channel(cluster, "w-nobody", cluster.admin_token) as ws:
        send(ws, {"t": "hello", "credit": 1, "running": []})
        code, reason = closed_with(ws)
        assert code == 4404 and "unknown_worker" in (reason or "")
    with channel(cluster, worker_id, credential) as ws:
        send(ws, {"t": "credit", "n": 1})  # the first frame must be the hello
        assert closed_with(ws)[0] == 4400
    with channel(cluster, worker_id, credential) as ws:
        ws.send("{not json")
        assert closed_with(ws)[0] == 4400
    with channel(cluster, worker_id, credential) as ws:  # nested past any parser's depth
        ws.send("[" * 100_000 + "]" * 100_000)
        code, reason = closed_with(ws)
        assert code == 4400 and "deeply" in (reason or "")
    with channel(cluster, worker_id, credential) as ws:
        send(ws, {"t": "hello", "credit": 1, "running": [{"id": "x", "attempt": 1}]})
        code, reason = closed_with(ws)
        assert code == 4400 and "running[].id" in (reason or "")
    with channel(cluster, worker_id, credential) as ws:
        send(ws, {"t": "hello", "credit": -1, "running": []})
        code, reason = closed_with(ws)
        assert code == 4400 and "credit" in (reason or "")

    # A malformed report is refused whole with the HTTP route's error body; the channel
    # stays open and a good report after it is acked.
    with channel(cluster, worker_id, credential) as ws:
        hello(ws, 0)
        send(ws, {"t": "report", "id": 3, "logs": "nope", "results": []})
        error = recv(ws)
        assert error["t"] == "error" and error["id"] == 3 and error["status"] == 400
        assert error["error"]["details"] == {"field": "logs"}
        send(ws, {"t": "report", "id": 4, "logs": [], "results": []})
        assert recv(ws) == {"t": "ack", "id": 4, "rejected": []}
        send(ws, {"t": "report", "id": 5, "logs": [], "results": [], "credit": -2})
        code, reason = closed_with(ws)
        assert code == 4400 and "credit" in (reason or "")
    with channel(cluster, worker_id, credential) as ws:
        hello(ws, 0)
        send(ws, {"t": "shout"})
        code, reason = closed_with(ws)
        assert code == 4400 and "shout" in (reason or "")
