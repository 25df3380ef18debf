"""Service jobs against real processes: a port allocated by the worker, an HTTP readiness
check, the address in the store and the API for another job to call, restarts with backoff
(every incarnation's log kept) up to the cap, a graceful stop that is not a cancel, a service
that ignores SIGTERM killed after its grace, two runs of one DAG each finding its own
service, a stop refused with the reason that matters, a draining or dead worker's service moved to
another, and a master restart that leaves the service's process alone."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.integration.harness import Cluster, shared_cluster
from tests.integration.processes import alive, wait_dead
from titan.client import TitanClient
from titan.errors import Conflict, Forbidden, ValidationFailed
from titan_sdk import TitanJob

MakeCluster = Callable[..., Cluster]
cluster = shared_cluster()

if sys.platform != "linux":  # pragma: no cover - process groups and /proc
    pytestmark = pytest.mark.skip("process checks need Linux")

#: A tiny model server. ``mode``: serve, crash-once (the first start dies before it is
#: ready), crash-always, ignore-term (SIGTERM is logged and ignored), deaf (never listens),
#: deaf-polite (never listens; a SIGTERM ends it with exit code 0, as servers do) or
#: with-helper (serves, and starts a helper that ignores SIGTERM, its output sent elsewhere).
SERVER = """
import os, signal, subprocess, sys, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

mode = sys.argv[1] if len(sys.argv) > 1 else "serve"
restarts = int(os.environ["TITAN_SERVICE_RESTARTS"])
print(f"incarnation {restarts} pid {os.getpid()} port {os.environ['PORT']}", flush=True)
if mode == "crash-always" or (mode == "crash-once" and restarts == 0):
    print("crashing on purpose", file=sys.stderr, flush=True)
    sys.exit(3 if mode == "crash-once" else 1)
if mode == "deaf-polite":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
if mode.startswith("deaf"):
    time.sleep(3600)
if mode == "with-helper":
    helper = subprocess.Popen(
        [sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, "
         "signal.SIG_IGN); print('ready', flush=True); time.sleep(3600)"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    helper.stdout.readline()
    print(f"helper {helper.pid}", flush=True)


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        body = f"prediction from pid {os.getpid()}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer((os.environ["TITAN_SERVICE_HOST"], int(os.environ["PORT"])),
                             Handler)


def on_term(signum, frame):
    if mode == "ignore-term":
        print("ignoring SIGTERM", flush=True)
        return
    print("got SIGTERM: shutting down", flush=True)
    threading.Thread(target=server.shutdown).start()


signal.signal(signal.SIGTERM, on_term)
server.serve_forever()
print("served my last request", flush=True)
"""

#: A job of the same DAG that finds the service through the store and calls it.
CALLER = """
import sys, urllib.request
from titan import TitanClient

address = TitanClient().store_wait(sys.argv[1], timeout=60)
with urllib.request.urlopen(f"http://{address}/predict", timeout=10) as reply:
    print("caller got:", reply.read().decode())
"""


def wait_for(what: str, check: Callable[[], Any], timeout: float = 60) -> Any:
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise TimeoutError(f"{what} within {timeout} s")


def ready(client: TitanClient, ref: str, attempt: int = 1) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        job = client.get_job(ref)
        assert job["state"] in ("READY", "PENDING", "RUNNING"), job
        ok = job["health"] == "ready" and job["attempt"] == attempt
        return job if ok else None
    return wait_for(f"{ref} ready (attempt {attempt})", check)  # type: ignore[no-any-return]


def service(c: Cluster, job_id: str, mode: str = "serve", **kw: Any) -> TitanJob:
    return TitanJob(job_id, c.script("server.py", SERVER), job_type="SERVICE", args=[mode],
                    readiness=kw.pop("readiness", "http:/health"), **kw)


def test_a_service_is_found_through_the_store_called_and_stopped(cluster: Cluster) -> None:
    client = cluster.client()
    caller = cluster.script("caller.py", CALLER)
    client.submit_dag("infer", [
        service(cluster, "model", stop_grace=5),
        TitanJob("caller", caller, args=["services/infer/model"]),
    ])
    job = ready(client, "infer/model")
    address = job["address"]
    host, port = address.rsplit(":", 1)
    assert host == "127.0.0.1" and int(port) > 0 and job["port"] == 0  # allocated
    assert job["state"] == "RUNNING" and job["service"]["restarts"] == 0
    assert client.store_get("services/infer/model") == address
    called = client.wait("infer/caller", timeout=60)
    assert called["state"] == "COMPLETED", client.fetch_logs("infer/caller")
    assert "caller got: prediction from pid" in client.fetch_logs("infer/caller")

    # The cluster's view lists it: address, uptime, restarts, health.
    listed = next(s for s in client.get_workers()["services"] if s["id"] == job["id"])
    assert listed["address"] == address and listed["health"] == "ready"
    assert listed["restarts"] == 0 and listed["uptime"] >= 0 and listed["dag"] == "infer"
    page = httpx.get(f"{cluster.url}/workers.json", timeout=30,
                     headers={"Authorization": f"Bearer {cluster.admin_token}"}).json()
    assert [s["address"] for s in page["services"] if s["id"] == job["id"]] == [address]
    html = httpx.get(f"{cluster.url}/workers", timeout=30,
                     headers={"Authorization": f"Bearer {cluster.admin_token}"}).text
    assert address in html and 'data-status="READY"' in html

    stopping = client.stop_service("infer/model")
    assert stopping["state"] == "RUNNING" and stopping["service"]["stopping"] is True
    done = client.wait("infer/model", timeout=30)
    assert done["state"] == "COMPLETED" and done["reason"] == "stopped on request", done
    assert done["health"] is None and done["address"] is None
    log = client.fetch_logs("infer/model")
    assert "got SIGTERM: shutting down" in log and "served my last request" in log
    assert client.store_get("services/infer/model") is None
    assert client.wait("infer", timeout=30)["status"] == "COMPLETED"


#: A job that tries to take over another DAG's service by rewriting its published address.
HIJACKER = """
import sys
from titan import TitanClient
from titan.errors import Forbidden

client = TitanClient()
key = sys.argv[1]
print("read:", client.store_get(key))
for name, attempt in (("put", lambda: client.store_put(key, "10.6.6.6:80")),
                      ("delete", lambda: client.store_delete(key)),
                      ("incr", lambda: client.store_incr(key)),
                      ("sadd", lambda: client.store_sadd(key, "x"))):
    try:
        attempt()
    except Forbidden as exc:
        print(name, "refused:", exc)
    else:
        print(name, "WENT THROUGH")
"""


def test_only_the_master_writes_services_addresses(cluster: Cluster, tmp_path: Any) -> None:
    """A job (or an operator) that could put ``services/<dag>/<job>`` would send every caller
    of that service to an address of its choosing, and one that could delete it would hide a
    live service: every write under ``services/`` is refused, reads are not."""
    client = cluster.client()
    client.submit_dag("guarded", [service(cluster, "model", stop_grace=5)])
    address = ready(client, "guarded/model")["address"]
    key = "services/guarded/model"
    client.submit_dag("hijack", [TitanJob("thief", cluster.script("hijack.py", HIJACKER),
                                          args=[key])])
    assert client.wait("hijack", timeout=60)["status"] == "COMPLETED"
    log = client.fetch_logs("hijack/thief")
    assert f"read: {address}" in log and "WENT THROUGH" not in log, log
    for op in ("put", "delete", "incr", "sadd"):
        assert f"{op} refused: store key {key!r} is under 'services/'" in log, log
    # The admin token is refused too: the master alone publishes and withdraws addresses.
    with pytest.raises(Forbidden, match="the master publishes services' addresses"):
        client.store_put("services/guarded#1/model", "10.6.6.6:80")
    artifact = tmp_path / "a.txt"
    artifact.write_text("x")
    with pytest.raises(Forbidden):
        client.publish_artifact("services/guarded/other", artifact)
    with pytest.raises(Forbidden):
        client.delete_artifact(key)
    assert client.store_get(key) == address
    client.store_put("servicesX/mine", "ok")  # only the prefix with its slash is reserved
    client.stop_service("guarded/model")
    assert client.wait("guarded", timeout=60)["status"] == "COMPLETED"
    assert client.store_get(key) is None


#: A job that submits a run of another DAG with a service of that name: its own server.
TAKEOVER = """
import sys
from titan import TitanClient, TitanJob

dag, server = sys.argv[1], sys.argv[2]
model = TitanJob("model", server, job_type="SERVICE", args=["serve"], readiness="http:/health")
print("submitted", TitanClient().submit_dag(dag, [model])["run"], flush=True)
"""


def test_a_job_cannot_take_a_dags_service_key_by_submitting_a_run_of_it(
        cluster: Cluster) -> None:
    """``services/<dag>/<job>`` follows the latest run's live service. A job that submitted
    a run of that DAG with a service of its own got the key, through the master, pointing
    every caller of ``service_address(job, dag=...)`` at its server. What a job submits is
    published under its run's key alone; the DAG's key stays the person's service, and goes
    with it rather than passing to the job's."""
    client = cluster.client()
    client.submit_dag("guarded2", [service(cluster, "model", stop_grace=5)])
    address = ready(client, "guarded2/model")["address"]
    key = "services/guarded2/model"
    server = cluster.script("server.py", SERVER)
    client.submit_dag("takeover", [TitanJob("thief", cluster.script("take.py", TAKEOVER),
                                            args=["guarded2", server])])
    assert client.wait("takeover/thief", timeout=60)["state"] == "COMPLETED", \
        client.fetch_logs("takeover/thief")
    theirs = ready(client, "guarded2#2/model")
    assert theirs["address"] != address
    assert client.store_get("services/guarded2#2/model") == theirs["address"]
    assert client.store_get(key) == address
    assert client.service_address("model", dag="guarded2", timeout=5) == address
    # Stopped (a job may stop any service), the person's service leaves the key empty.
    client.stop_service("guarded2#1/model")
    assert client.wait("guarded2#1", timeout=60)["status"] == "COMPLETED"
    assert client.store_get(key) is None
    assert client.store_get("services/guarded2#2/model") == theirs["address"]
    client.stop_service("guarded2#2/model")
    assert client.wait("guarded2#2", timeout=60)["status"] == "COMPLETED"
    assert client.store_get("services/guarded2#2/model") is None


#: A job that finds its own run's service with the SDK's helper and says where it is.
FINDER = """
from titan import TitanClient

print("found", TitanClient().service_address("model", timeout=60), flush=True)
"""


def test_two_runs_of_a_dag_each_find_their_own_service(cluster: Cluster) -> None:
    # Two runs of one DAG alive at once (overlapping ticks, a pipeline submitted twice)
    # shared services/<dag>/<job>: run 2's job got run 1's address while its own service was
    # still PENDING, and stopping run 2's service withdrew the key under run 1's.
    client = cluster.client()
    finder = cluster.script("finder.py", FINDER)
    first = client.submit_dag("twice", [service(cluster, "model")])
    one = ready(client, f"{first['ref']}/model")["address"]
    assert client.store_get("services/twice/model") == one
    second = client.submit_dag("twice", [service(cluster, "model", delay=3),
                                         TitanJob("user", finder)])
    found = client.wait(f"{second['ref']}/user", timeout=60)
    assert found["state"] == "COMPLETED", client.fetch_logs(f"{second['ref']}/user")
    two = ready(client, f"{second['ref']}/model")["address"]
    assert two != one
    assert f"found {two}" in client.fetch_logs(f"{second['ref']}/user")
    run1, run2 = (f"services/twice#{d['run']}/model" for d in (first, second))
    assert (client.store_get(run1), client.store_get(run2)) == (one, two)
    assert client.store_get("services/twice/model") == two  # the latest run's
    # Run 2's service stops while run 1's still runs: the DAG's key goes back to run 1's.
    client.stop_service(f"{second['ref']}/model")
    assert client.wait(f"{second['ref']}/model", timeout=30)["state"] == "COMPLETED"
    assert client.store_get(run2) is None
    assert client.store_get("services/twice/model") == one
    assert client.service_address("model", dag="twice", timeout=5) == one
    assert client.service_address("model", dag="twice", run=first["run"], timeout=5) == one
    with pytest.raises(ValidationFailed, match="needs dag="):  # outside a job: which DAG?
        client.service_address("model", timeout=5)
    client.stop_service(f"{first['ref']}/model")
    assert client.wait(f"{first['ref']}/model", timeout=30)["state"] == "COMPLETED"
    assert client.store_get(run1) is None and client.store_get("services/twice/model") is None


def test_a_stop_says_what_is_wrong_with_it(cluster: Cluster) -> None:
    client = cluster.client()
    ok = cluster.script("ok.py", "print('ran')\n")
    client.submit_dag("plain", [TitanJob("once", ok)])
    assert client.wait("plain", timeout=30)["status"] == "COMPLETED"
    # A finished run that is no service: that it is none is the news ("already ended" was said).
    with pytest.raises(Conflict, match="'plain/once' is not a service \\(it ended COMPLETED\\)"):
        client.stop_service("plain/once")
    # A grace of 0 is refused as a service's stop_grace of 0 is: a kill at once is a cancel.
    client.submit_dag("graceless", [service(cluster, "model", readiness="tcp")])
    ready(client, "graceless/model")
    with pytest.raises(ValidationFailed, match="grace must be more than 0"):
        client.stop_service("graceless/model", grace=0)
    assert client.stop_service("graceless/model", grace=0.5)["service"]["stopping"] is True
    assert client.wait("graceless/model", timeout=30)["state"] == "COMPLETED"


def test_a_crash_restarts_it_and_too_many_fail_it(cluster: Cluster) -> None:
    client = cluster.client()
    ok = cluster.script("ok.py", "print('ran')\n")
    client.submit_dag("flaky", [service(cluster, "once", "crash-once", readiness="tcp"),
                                service(cluster, "always", "crash-always", max_restarts=2),
                                service(cluster, "deaf", "deaf", max_restarts=1,
                                        ready_timeout=1),
                                service(cluster, "polite", "deaf-polite", max_restarts=1,
                                        ready_timeout=2),
                                TitanJob("after", ok, parents=["polite"])])
    # Starting, it has a port but no address yet: nothing may call it before it is ready.
    starting = wait_for("polite starting", lambda: (j := client.get_job("flaky/polite"))[
        "health"] == "starting" and j["service"]["port"] and j)
    assert starting["address"] is None, starting
    job = ready(client, "flaky/once")
    assert job["service"]["restarts"] == 1 and job["attempt"] == 1
    log = client.fetch_logs("flaky/once")
    first, second = log.index("incarnation 0"), log.index("incarnation 1")
    restart = log.index("titan worker: service exit code 3; restart 1 in 1 s")
    assert first < restart < second < log.index("titan worker: service ready at")

    failed = client.wait("flaky/always", timeout=60)
    assert failed["state"] == "FAILED" and failed["attempt"] == 1, failed
    assert failed["error"].startswith("crashed 3 times in 300 s; last exit code 1"), failed
    assert failed["error"].endswith("crashing on purpose")
    log = client.fetch_logs("flaky/always")
    assert [f"incarnation {n}" in log for n in range(3)] == [True, True, True]
    assert "restart 2 in 2 s" in log

    # Not ready in time counts as a crash; never ready, it gets a new port each start.
    deaf = client.wait("flaky/deaf", timeout=60)
    assert deaf["state"] == "FAILED", deaf
    assert deaf["error"].startswith("crashed 2 times in 300 s; last was not ready after 1 s "
                                    "(no connection to 127.0.0.1:"), deaf
    log = client.fetch_logs("flaky/deaf")
    ports = [line.rsplit(" ", 1)[1] for line in log.splitlines()
             if line.startswith("incarnation ")]
    assert len(ports) == 2 and ports[0] != ports[1], ports
    # The worker sent those SIGTERMs and says so: "killed by SIGTERM, not sent by Titan" was
    # the log's last word, and the end of the job's error.
    assert log.count("titan worker: stopping the service (SIGTERM, SIGKILL after") == 2, log
    last = log.rstrip().splitlines()[-1]
    assert last.startswith("titan worker: stopped by its worker: the service was not ready "
                           f"after 1 s (no connection to 127.0.0.1:{ports[1]} "), last
    assert last.endswith("; crashed 2 times in 300 s, more than max_restarts (1): "
                         "not restarted"), last
    assert "not sent by Titan" not in log and "titan worker" not in deaf["error"], deaf
    # A service that gives up failed, whatever the exit code of the process the worker
    # stopped (a SIGTERM handler's 0 made it COMPLETED, and its dependents ran).
    polite = client.wait("flaky/polite", timeout=60)
    assert polite["state"] == "FAILED", polite
    assert polite["error"].startswith("crashed 2 times in 300 s; last was not ready"), polite
    assert "not sent by Titan" not in client.fetch_logs("flaky/polite")
    assert client.get_job("flaky/after")["state"] == "SKIPPED"
    client.stop_service("flaky/once")
    assert client.wait("flaky/once", timeout=30)["state"] == "COMPLETED"


def test_a_stop_kills_a_service_that_ignores_sigterm_after_its_grace(cluster: Cluster) -> None:
    client = cluster.client()
    client.submit_job(service(cluster, "stubborn", "ignore-term", readiness="tcp",
                              stop_grace=1))
    ready(client, "stubborn")
    started = time.time()
    # `titan stop --wait`, as a user would: it returns once the service has gone.
    env = dict(cluster.env, TITAN_HOST="127.0.0.1", TITAN_PORT=str(cluster.port),
               TITAN_TOKEN=cluster.admin_token)
    out = subprocess.run([sys.executable, "-m", "titan", "stop", "stubborn", "--wait"], env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.strip().endswith(": COMPLETED"), out.stdout
    assert time.time() - started >= 1.0
    done = client.get_job("stubborn")
    assert done["state"] == "COMPLETED", done
    assert done["reason"] == "stopped on request; killed after a 1 s grace"
    assert done["exit_code"] == -9
    log = client.fetch_logs("stubborn")
    assert "ignoring SIGTERM" in log
    assert "Killed from outside Titan" not in log, log  # the stop's own SIGKILL


def test_a_stopped_service_leaves_nothing_of_its_group_behind(cluster: Cluster) -> None:
    # A helper the service started in its group, its output elsewhere, ran on for good once
    # the service had stopped: the stop's SIGKILL was called off when the service's own
    # process ended within the grace. What is left of the group gets it when the grace ends.
    client = cluster.client()
    # Not forked: the zygote, its subreaper, would catch the helper after the job itself.
    client.submit_job(service(cluster, "helped", "with-helper", stop_grace=1,
                              runner="subprocess"))
    ready(client, "helped")
    said = wait_for("the helper's pid", lambda: re.search(r"helper (\d+)",
                                                          client.fetch_logs("helped")))
    helper = int(said.group(1))
    assert alive(helper)
    client.stop_service("helped")
    assert client.wait("helped", timeout=30)["state"] == "COMPLETED"
    assert client.get_job("helped")["reason"] == "stopped on request"  # itself, in time
    try:
        assert wait_dead(helper, timeout=10), "the service's helper outlived its stop"
    finally:
        with contextlib.suppress(OSError):
            os.kill(helper, signal.SIGKILL)


def test_a_drained_or_dead_workers_service_starts_on_another(make_cluster: MakeCluster) -> None:
    c = make_cluster(lease_seconds=2)
    c.start_master()
    drained = c.add_worker(slots=1, name="drained")
    client = c.client()
    client.submit_dag("moving", [service(c, "model", readiness="tcp")])
    first = ready(client, "moving/model")
    # A worker told to stop hands its service back (a service never ends by itself, so a
    # drain would otherwise wait for it for ever): it starts on another worker.
    doomed = c.add_worker(slots=1, name="doomed")
    drained.send_signal(signal.SIGTERM)
    assert drained.wait(timeout=30) == 0
    second = ready(client, "moving/model", attempt=2)
    assert second["worker_id"] != first["worker_id"]
    assert [a["state"] for a in second["attempts"]] == ["RELEASED", "RUNNING"]
    assert "got SIGTERM: shutting down" in client.fetch_logs("moving/model", attempt=1)
    # A worker that dies takes its process with it: only the lease can tell.
    c.add_worker(slots=1, name="rescuer")
    doomed.kill()
    doomed.wait()
    third = ready(client, "moving/model", attempt=3)
    assert third["worker_id"] not in (first["worker_id"], second["worker_id"])
    assert [a["state"] for a in third["attempts"]] == ["RELEASED", "LOST", "RUNNING"]
    assert client.store_get("services/moving/model") == third["address"]
    client.stop_service("moving/model")
    assert client.wait("moving/model", timeout=30)["state"] == "COMPLETED"


def test_a_master_restart_leaves_the_service_running(make_cluster: MakeCluster) -> None:
    c = make_cluster(lease_seconds=30)
    c.start_master()
    c.add_worker(slots=2)
    client = c.client()
    client.submit_dag("steady", [service(c, "model")])
    before = ready(client, "steady/model")
    pid = before["service"]["pid"]
    assert pid and f"pid {pid}" in client.fetch_logs("steady/model")
    c.kill_master()
    c.start_master()
    c.wait_workers(1)
    client = c.client()
    after = ready(client, "steady/model")
    assert after["attempt"] == 1 and after["service"]["pid"] == pid
    assert after["address"] == before["address"]
    os.kill(pid, 0)  # the same process, never restarted
    log = client.fetch_logs("steady/model")
    assert log.count("incarnation ") == 1, log
    client.stop_service("steady/model")
    done = client.wait("steady/model", timeout=30)
    assert done["state"] == "COMPLETED" and done["attempt"] == 1


def test_a_port_another_program_holds_is_never_called_ready(cluster: Cluster) -> None:
    # The service asked for the master's own port: it cannot bind it, yet the readiness check
    # reached the master and called it ready there, publishing the master's address.
    client = cluster.client()
    client.submit_dag("taken", [service(cluster, "s", port=cluster.port, max_restarts=1,
                                        ready_timeout=2)])
    seen: set[Any] = set()

    def ended() -> dict[str, Any] | None:
        job = client.get_job("taken/s")
        seen.add(job.get("health"))
        return job if job["state"] not in ("READY", "PENDING", "RUNNING") else None

    job = wait_for("the service to fail", ended)
    assert job["state"] == "FAILED" and "ready" not in seen, (job, seen)
    log = client.fetch_logs("taken/s")
    assert f"port {cluster.port} was in use by another program" in log
    assert "not sent by Titan" not in log, log
    assert client.store_get("services/taken/s") is None
