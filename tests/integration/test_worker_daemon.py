"""The whole worker against a small in-process stand-in for the master's worker API.

The stand-in implements the routes of docs/api.md a worker uses (register, poll, heartbeat,
report, deregister, blobs, files) with real HTTP on a free loopback port, so the worker under
test is the real one: real threads, real zygote, real job processes.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import re
import socket
import threading
import time
import zipfile
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.fake_masters import answer_proof
from titan import master_proof
from titan.worker import Worker

WAIT = 30.0
TOKEN = "worker-token"


class FakeMaster:
    """Just enough master for a worker: a ready queue, cancels, and a record of everything."""

    def __init__(self, port: int = 0, *, heartbeat_seconds: float = 5.0) -> None:
        self.cond = threading.Condition()
        self.queue: list[dict[str, Any]] = []
        self.cancels: list[dict[str, Any]] = []
        self.events: list[tuple[str, Any]] = []  # (route, body) in arrival order
        self.logs: list[dict[str, Any]] = []
        self.results: list[dict[str, Any]] = []
        self.blobs: dict[str, bytes] = {}
        self.files: dict[str, bytes] = {}
        self.heartbeat_seconds = heartbeat_seconds
        self.forget = False  # answer the next worker call with 404 unknown_worker
        self.fail_reports = 0  # answer this many reports with `fail_status`
        self.fail_status = 503
        self._next_id = 0
        self._kick = 0
        self._polls = 0
        self._parked = 0
        self._stale = False
        self.connections: set[socket.socket] = set()
        master = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                # Headers and body go out in two writes: without this, Nagle's algorithm
                # and delayed ACKs add 40 ms to every exchange.
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                with master.cond:
                    master.connections.add(self.connection)

            def finish(self) -> None:
                with master.cond:
                    master.connections.discard(self.connection)
                super().finish()

            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, status: int, body: Any, headers: dict[str, str] | None = None
                      ) -> None:
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def _authorized(self) -> bool:
                if self.headers.get("Authorization") == f"Bearer {TOKEN}":
                    return True
                self._send(401, {"error": {"code": "unauthorized", "message": "no",
                                           "details": {}}})
                return False

            def do_GET(self) -> None:
                if self.path.startswith(master_proof.PATH + "?"):  # before the token comes
                    self._send(*answer_proof(self.path, (TOKEN,)))
                    return
                if not self._authorized():
                    return
                if m := re.fullmatch(r"/api/v1/blobs/([0-9a-f]{64})", self.path):
                    body = master.blobs.get(m.group(1))
                    if body is None:
                        self._send(404, {"error": {"code": "not_found", "message": "no blob",
                                                   "details": {}}})
                    else:
                        self._send(200, body)
                elif m := re.fullmatch(r"/api/v1/files/([^/]+)", self.path):
                    body = master.files[m.group(1)]
                    self._send(200, body, {"X-Titan-Sha256": hashlib.sha256(body).hexdigest()})
                else:
                    self._send(404, {"error": {"code": "not_found", "message": self.path,
                                               "details": {}}})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                if not self._authorized():
                    return
                if self.path == "/api/v1/workers/register":
                    with master.cond:
                        master.events.append(("register", body))
                        master.cond.notify_all()
                    self._send(200, {"worker_id": body.get("worker_id") or "w-1",
                                     "lease_seconds": 30,
                                     "heartbeat_seconds": master.heartbeat_seconds})
                    return
                m = re.fullmatch(r"/api/v1/workers/([^/]+)/(\w+)", self.path)
                assert m, self.path
                action = m.group(2)
                with master.cond:
                    if master.forget:
                        master.forget = False
                        master.events.append(("forgotten", action))
                        master.cond.notify_all()
                        self._send(404, {"error": {"code": "unknown_worker", "message": "?",
                                                   "details": {}}})
                        return
                    if action == "report" and master.fail_reports:
                        master.fail_reports -= 1
                        master.events.append(("report-failed", body))
                        master.cond.notify_all()
                        self._send(master.fail_status, b"master failing")
                        return
                    master.events.append((action, body))
                    master.cond.notify_all()
                self._send(200, getattr(master, f"on_{action}")(body))

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.kick()  # parked polls answer now, so no worker thread outlives its test long
        self.server.shutdown()
        self.server.server_close()

    def die(self) -> None:
        """Go away as a killed master does: the port closed, open connections cut."""
        self.close()
        with self.cond:
            connections, self.connections = self.connections, set()
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    # ------------------------------------------------------------------ routes

    def on_poll(self, body: dict[str, Any]) -> dict[str, Any]:
        # docs/api.md: a new poll answers a parked one at once; a `wait: 0` poll that finds
        # none parked makes the next long-poll answer at once too.
        free, wait = int(body["free_slots"]), float(body["wait"])
        with self.cond:
            self._polls += 1
            me, kick = self._polls, self._kick
            if wait == 0 and not self._parked:
                self._stale = True
            elif wait > 0 and self._stale:
                self._stale, wait = False, 0
            self.cond.notify_all()
            self._parked += 1
            try:
                self.cond.wait_for(lambda: (self.queue and free > 0) or self.cancels
                                   or self._kick != kick or self._polls != me, timeout=wait)
            finally:
                self._parked -= 1
            jobs, self.queue = self.queue[:free], self.queue[free:]
            cancels, self.cancels = self.cancels, []
        return {"jobs": jobs, "cancel": cancels}

    def on_heartbeat(self, body: dict[str, Any]) -> dict[str, Any]:
        return {"cancel": []}

    def on_report(self, body: dict[str, Any]) -> dict[str, Any]:
        with self.cond:
            self.logs.extend(body["logs"])
            self.results.extend(body["results"])
            self.cond.notify_all()
        return {"rejected": []}

    def on_deregister(self, body: dict[str, Any]) -> dict[str, Any]:
        return {}

    # ------------------------------------------------------------------ test helpers

    def add_blob(self, body: bytes) -> str:
        sha = hashlib.sha256(body).hexdigest()
        self.blobs[sha] = body
        return sha

    def add_job(self, filename: str, source: str | None = None, **fields: Any) -> dict[str, Any]:
        with self.cond:
            self._next_id += 1
            job = {"id": self._next_id, "attempt": 1, "job_id": f"job{self._next_id}",
                   "ref": f"dag#1/job{self._next_id}", "dag": "dag", "dag_id": 1,
                   "agent_run_id": None, "filename": filename,
                   "script_sha256": self.add_blob(source.encode()) if source else None,
                   "args": [], "env": {}, "job_type": "RUN_PAYLOAD", "is_archive": False,
                   "port": 0, "runner": "auto", "timeout": None,
                   "token": f"job-token-{self._next_id}"}
            job.update(fields)
            self.queue.append(job)
            self.cond.notify_all()
        return job

    def cancel(self, job: dict[str, Any]) -> None:
        with self.cond:
            self.cancels.append({"id": job["id"], "attempt": job["attempt"]})
            self.cond.notify_all()

    def kick(self) -> None:
        """Make parked polls return at once (empty)."""
        with self.cond:
            self._kick += 1
            self.cond.notify_all()

    def wait_for(self, pred: Callable[[], bool], timeout: float = WAIT) -> None:
        with self.cond:
            assert self.cond.wait_for(pred, timeout), f"timed out; events: {self.events}"

    def lines(self, job: dict[str, Any]) -> list[str]:
        with self.cond:
            entries = sorted((e for e in self.logs if e["id"] == job["id"]),
                             key=lambda e: e["seq"])
        return [e["line"] for e in entries]

    def result(self, job: dict[str, Any]) -> dict[str, Any]:
        self.wait_for(lambda: any(r["id"] == job["id"] for r in self.results))
        return next(r for r in self.results if r["id"] == job["id"])


@pytest.fixture
def master() -> Iterator[FakeMaster]:
    m = FakeMaster()
    yield m
    m.close()


def _worker(master: FakeMaster, tmp_path: Path, **kw: Any) -> Worker:
    kw.setdefault("kill_grace", 1.0)
    return Worker(master.url, TOKEN, kw.pop("capabilities", ["general", "gpu"]),
                  kw.pop("slots", 2), str(tmp_path), **kw)


class Running:
    """A worker running in a background thread (so the test thread can drive the master)."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.code: int | None = None
        self.done = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        try:
            self.code = self.worker.run()
        finally:
            self.done.set()

    def stop(self, *, hard: bool = False) -> int | None:
        self.worker.request_stop(hard=hard)
        assert self.done.wait(WAIT)
        return self.code


ENV_SCRIPT = """
import os, sys
for name in ("TITAN_HOST", "TITAN_PORT", "TITAN_TOKEN", "TITAN_JOB_ID", "TITAN_JOB_REF",
             "TITAN_JOB_UID", "TITAN_ATTEMPT", "TITAN_DAG", "TITAN_WORKSPACE",
             "TITAN_MASTER_URL", "TITAN_AGENT_RUN_ID", "TITAN_SERVICE_PORT", "MINE", "PWD",
             "OLDPWD"):
    print(name, os.environ.get(name))
print("cwd", os.getcwd())
print("args", sys.argv[1:])
"""


def test_burst_runs_the_queue_and_exits(master: FakeMaster, tmp_path: Path) -> None:
    env_job = master.add_job("etl/env.py", ENV_SCRIPT, args=["--day", "1"], env={"MINE": "yes"},
                             agent_run_id="run-7", port=8123)
    failing = master.add_job("fail.py", "import sys\nprint('oops', file=sys.stderr)\nsys.exit(2)")
    shell = master.add_job("hello.sh", "echo shell $1", args=["x"])
    missing = master.add_job("gone.py", None, script_sha256="f" * 64)
    assert _worker(master, tmp_path, burst=True).run() == 0

    shared = tmp_path / "titan_workspace" / "shared"
    lines = dict(line.split(" ", 1) for line in master.lines(env_job))
    host, port = master.url.removeprefix("http://").split(":")
    assert lines["TITAN_HOST"] == host and lines["TITAN_PORT"] == port
    assert lines["TITAN_TOKEN"] == env_job["token"]
    assert lines["TITAN_JOB_ID"] == env_job["job_id"]
    assert lines["TITAN_JOB_REF"] == env_job["ref"]
    assert lines["TITAN_JOB_UID"] == str(env_job["id"])
    assert lines["TITAN_ATTEMPT"] == "1" and lines["TITAN_DAG"] == "dag"
    assert lines["TITAN_WORKSPACE"] == str(shared)
    assert lines["TITAN_MASTER_URL"] == master.url
    assert lines["TITAN_AGENT_RUN_ID"] == "run-7" and lines["TITAN_SERVICE_PORT"] == "8123"
    assert lines["MINE"] == "yes"
    assert lines["cwd"] == str(shared)
    # PWD says where the job is, not where the worker was started; OLDPWD is not the worker's.
    assert lines["PWD"] == str(shared) and lines["OLDPWD"] == "None"
    assert lines["args"] == "['--day', '1']"
    assert (shared / "etl" / "env.py").read_text() == ENV_SCRIPT

    assert master.result(env_job)["exit_code"] == 0
    assert master.result(failing)["exit_code"] == 2
    assert master.result(failing)["error"] == "exit code 2: oops"
    assert master.lines(shell) == ["shell x"]
    assert master.result(missing)["exit_code"] is None
    assert "not found" in master.result(missing)["error"]

    register = master.events[0]
    assert register[0] == "register"
    assert register[1]["capabilities"] == ["GENERAL", "GPU"]
    assert register[1]["slots"] == 2 and register[1]["pid"] == os.getpid()
    assert register[1]["hostname"] == socket.gethostname()
    assert master.events[-1][0] == "deregister"
    # Every result reached the master before the worker said goodbye.
    routes = [route for route, _ in master.events]
    assert routes.index("deregister") > max(
        i for i, (route, body) in enumerate(master.events)
        if route == "report" and body["results"]
    )


def test_log_lines_precede_their_result(master: FakeMaster, tmp_path: Path) -> None:
    job = master.add_job("many.py", "for i in range(3000): print(i)")
    assert _worker(master, tmp_path, burst=True).run() == 0
    assert master.lines(job) == [str(i) for i in range(3000)]
    seen_result = False
    for route, body in master.events:
        if route != "report":
            continue
        assert not (seen_result and any(e["id"] == job["id"] for e in body["logs"]))
        seen_result = seen_result or any(r["id"] == job["id"] for r in body["results"])
    assert seen_result


def test_archive_job_runs_from_its_extracted_project(master: FakeMaster, tmp_path: Path
                                                     ) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("app/main.py", "import os, sibling, pkg.mod\n"
                                   "print(sibling.X, pkg.mod.Y, os.environ['TITAN_PROJECT_DIR'])\n"
                                   "print(os.getcwd())\n")
        zf.writestr("app/sibling.py", "X = 'sib'\n")
        zf.writestr("pkg/__init__.py", "")
        zf.writestr("pkg/mod.py", "Y = 'root'\n")
    master.files["proj.zip"] = buf.getvalue()
    jobs = [master.add_job("proj/app/main.py", None, is_archive=True, runner=runner)
            for runner in ("auto", "subprocess")]
    assert _worker(master, tmp_path, burst=True).run() == 0
    sha = hashlib.sha256(buf.getvalue()).hexdigest()
    root = tmp_path / "titan_workspace" / "projects" / f"proj-{sha[:12]}"
    for job in jobs:
        assert master.lines(job) == [f"sib root {root}",
                                     str(tmp_path / "titan_workspace" / "shared")]


def test_a_pinned_archive_job_runs_its_upload_fetched_as_a_blob(master: FakeMaster,
                                                                 tmp_path: Path) -> None:
    # The job names the upload it was submitted with (script_sha256): the worker fetches that
    # blob, not the latest file of the name, which someone replaced since.
    def project(said: str) -> bytes:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            zf.writestr("main.py", f"print({said!r})\n")
        return buf.getvalue()

    sha = master.add_blob(project("the submitted upload"))
    master.files["proj.zip"] = project("uploaded after the submission")
    jobs = [master.add_job("proj/main.py", None, is_archive=True, script_sha256=sha)
            for _ in range(2)]
    assert _worker(master, tmp_path, burst=True).run() == 0
    for job in jobs:
        assert master.lines(job) == ["the submitted upload"]
    assert (tmp_path / "titan_workspace" / ".cache" / "files" / f"{sha}.zip").is_file()


def test_cancel_from_a_poll_kills_the_job(master: FakeMaster, tmp_path: Path) -> None:
    running = Running(_worker(master, tmp_path))
    job = master.add_job("long.py", "print('ready', flush=True)\nimport time\ntime.sleep(120)")
    master.wait_for(lambda: "ready" in master.lines(job))
    master.cancel(job)
    result = master.result(job)
    assert result["error"] == "cancelled" and result["timed_out"] is False
    assert running.stop() == 0


def test_timeout_is_reported(master: FakeMaster, tmp_path: Path) -> None:
    job = master.add_job("slow.py", "import time\ntime.sleep(120)", timeout=0.5)
    assert _worker(master, tmp_path, burst=True).run() == 0
    result = master.result(job)
    assert result["timed_out"] is True and result["exit_code"] is not None


def test_forgotten_worker_registers_again_with_its_running_jobs(master: FakeMaster,
                                                                tmp_path: Path) -> None:
    running = Running(_worker(master, tmp_path))
    job = master.add_job("long.py", "print('ready', flush=True)\nimport time\ntime.sleep(120)")
    master.wait_for(lambda: "ready" in master.lines(job))
    with master.cond:
        master.forget = True
    master.kick()
    master.wait_for(lambda: sum(route == "register" for route, _ in master.events) == 2)
    again = [body for route, body in master.events if route == "register"][1]
    assert again["worker_id"] == "w-1"
    assert again["running"] == [{"id": job["id"], "attempt": 1}]
    master.cancel(job)
    assert master.result(job)["error"] == "cancelled"
    assert running.stop() == 0


def test_nothing_is_lost_while_the_master_is_away(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    running = Running(Worker(f"http://127.0.0.1:{port}", TOKEN, ["general"], 1, str(tmp_path),
                             burst=True))
    master = FakeMaster(port)  # the master comes up after the worker
    try:
        master.fail_reports = 3  # and then drops a few reports on the floor
        job = master.add_job("chatty.py", "for i in range(100): print(i)")
        assert running.done.wait(WAIT) and running.code == 0
        assert master.lines(job) == [str(i) for i in range(100)]
        assert master.result(job)["exit_code"] == 0
    finally:
        master.close()


def test_a_report_that_crashes_the_master_is_dropped_not_retried_for_ever(
        master: FakeMaster, tmp_path: Path) -> None:
    running = Running(_worker(master, tmp_path, slots=1))
    with master.cond:
        master.fail_reports, master.fail_status = 5, 500  # a bug: the same batch fails 5 times
    first = master.add_job("first.py", "print('first')")
    master.wait_for(lambda: sum(route == "report-failed" for route, _ in master.events) == 5)
    second = master.add_job("second.py", "print('second')")
    assert master.result(second)["exit_code"] == 0  # the queue behind it moves on
    assert master.lines(second) == ["second"]
    assert running.stop() == 0
    del first


def test_drain_finishes_running_jobs_then_deregisters(master: FakeMaster, tmp_path: Path
                                                      ) -> None:
    fifo = tmp_path / "go"
    os.mkfifo(fifo)
    running = Running(_worker(master, tmp_path))
    job = master.add_job("wait.py", f"print('ready', flush=True)\nopen({str(fifo)!r}).read()\n"
                                    "print('finished')")
    master.wait_for(lambda: "ready" in master.lines(job))
    running.worker.request_stop()
    # Draining: the next long-poll offers no slots, and the worker is still there.
    master.wait_for(lambda: any(route == "poll" and body["free_slots"] == 0
                                and body["wait"] > 0 for route, body in master.events))
    assert not running.done.is_set()
    with open(fifo, "w") as fh:
        fh.write("go")
    assert running.done.wait(WAIT) and running.code == 0
    assert master.lines(job) == ["ready", "finished"]
    assert master.result(job)["exit_code"] == 0
    assert master.events[-1][0] == "deregister"


def test_second_stop_kills_running_jobs(master: FakeMaster, tmp_path: Path,
                                        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="titan")
    running = Running(_worker(master, tmp_path))
    job = master.add_job("long.py", "print('ready', flush=True)\nimport time\ntime.sleep(120)")
    master.wait_for(lambda: "ready" in master.lines(job))
    running.worker.request_stop()
    # The first request is said before the second comes (both at once stop hard at once).
    deadline = time.monotonic() + 30
    while "draining: waiting for" not in caplog.text:  # logged, not told to the master
        assert time.monotonic() < deadline, caplog.text
        time.sleep(0.02)
    assert running.stop() == 1  # the second request
    # One job is one job ("killing 1 running jobs").
    assert "draining: waiting for 1 running job (signal again to kill it)" in caplog.text
    assert "stopping now: killing 1 running job\n" in caplog.text + "\n"
    assert master.result(job)["error"] == "the worker stopped"
    # Not the job's failure: the master starts it again elsewhere, spending no retry.
    assert master.result(job)["released"] is True


def test_heartbeats_list_running_attempts(tmp_path: Path) -> None:
    master = FakeMaster(heartbeat_seconds=0.1)
    try:
        running = Running(_worker(master, tmp_path))
        job = master.add_job("long.py", "print('ready', flush=True)\nimport time\n"
                                        "time.sleep(120)")
        master.wait_for(lambda: any(
            route == "heartbeat" and body["running"] == [{"id": job["id"], "attempt": 1}]
            for route, body in master.events))
        master.cancel(job)
        master.result(job)
        assert running.stop() == 0
    finally:
        master.close()


def test_an_absurd_heartbeat_period_from_the_master_is_bounded_not_fatal(
        tmp_path: Path) -> None:
    # A master that took TITAN_LEASE_SECONDS=1e300 said "heartbeat every 3.3e299 s": the
    # wait overflowed, the heartbeat thread died with a traceback, and the worker ran on
    # without heartbeats (its jobs then leased elsewhere).
    master = FakeMaster(heartbeat_seconds=1e300)
    try:
        running = Running(_worker(master, tmp_path))
        job = master.add_job("hi.py", "print('hi')")
        assert master.result(job)["exit_code"] == 0
        assert running.worker.heartbeat_seconds == 1200.0
        assert "titan-lease" in [t.name for t in threading.enumerate()]
        assert not running.done.is_set()
        assert running.stop() == 0
    finally:
        master.close()


def test_a_lease_thread_that_fails_stops_the_worker_and_says_why(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # Its thread died with a traceback and the worker ran on without heartbeats.
    master = FakeMaster(heartbeat_seconds=0.1)
    master.on_heartbeat = lambda body: {"cancel": 5}  # type: ignore[method-assign]
    try:
        running = Running(_worker(master, tmp_path))
        assert running.done.wait(WAIT) and running.code == 1
        assert "the lease thread failed" in caplog.text and "TypeError" in caplog.text
    finally:
        master.close()


def test_bad_token_stops_the_worker(master: FakeMaster, tmp_path: Path) -> None:
    worker = Worker(master.url, "wrong", ["general"], 1, str(tmp_path), burst=True)
    assert worker.run() == 1


MASTERS_SCRIPT = """
import os
print(os.environ["TITAN_MASTER_URL"])
print(os.environ["TITAN_MASTER_URLS"])
"""


def test_the_worker_finds_the_leader_among_its_masters(master: FakeMaster,
                                                       tmp_path: Path) -> None:
    """Given a master that refuses connections and a standby before the leader, the worker
    registers with the leader, and its jobs get every master, the one in use first."""
    from tests.fake_masters import FakeMaster as Standby
    from tests.fake_masters import refusing_url

    down, standby = refusing_url(), Standby("standby", master.url)
    try:
        job = master.add_job("masters.py", MASTERS_SCRIPT)
        worker = Worker([down, standby.url, master.url], TOKEN, ["general"], 1, str(tmp_path),
                        burst=True, kill_grace=1.0)
        assert worker.run() == 0
        assert master.result(job)["exit_code"] == 0
        assert master.lines(job) == [master.url, f"{master.url},{down},{standby.url}"]
        # The standby was asked to prove it holds the worker's token, and named the leader.
        assert standby.seen("POST") == [] and len(standby.proofs) == 1
    finally:
        standby.close()


def test_a_new_leader_is_joined_like_a_restarted_master(tmp_path: Path) -> None:
    """The leader dies with a job running; the worker turns to the next master, which does
    not know it yet: it registers again there, saying what it holds, and delivers the
    result there (the same attempt, not a second one)."""
    old, new = FakeMaster(), FakeMaster()
    running = Running(Worker([old.url, new.url], TOKEN, ["general"], 1, str(tmp_path),
                             kill_grace=1.0, transport="http"))
    try:
        job = old.add_job("slow.py", "import time\nprint('start', flush=True)\n"
                                     "time.sleep(1.0)\nprint('end')")
        old.wait_for(lambda: old.lines(job) == ["start"])
        new.forget = True  # the new leader answers the worker's next call: unknown_worker
        old.die()
        assert new.result(job)["exit_code"] == 0
        assert "end" in new.lines(job)
        joined = [body for route, body in new.events if route == "register"]
        assert joined and joined[0]["worker_id"] == "w-1"
        assert joined[0]["running"] == [{"id": job["id"], "attempt": 1}]
        assert running.stop() == 0
    finally:
        old.close()
        new.close()
