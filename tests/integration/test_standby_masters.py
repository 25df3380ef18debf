"""Several masters on one PostgreSQL database: one leads, the others are hot standbys.

Real `titan master` processes on free ports and a database of their own: a standby answers
`503 not_leader` naming the leader and never data; `kill -9` of the leader hands over within
seconds with everything acknowledged kept; a leader paused with SIGSTOP is replaced once its
heartbeat goes stale and, woken with SIGCONT, cannot commit anything (fencing by epoch).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from tests.chaos.tcp_proxy import TcpProxy
from tests.conftest import PG_ADMIN_URL, free_port, fresh_postgres_database
from titan.client import TitanClient
from titan.master.auth.tokens import JobTokens
from titan.storage import open_storage
from titan_sdk import TitanJob


class Master:
    def __init__(self, root: Path, name: str, database_url: str, env: dict[str, str],
                 port: int | None = None, command: tuple[str, ...] = ("master",),
                 tls: tuple[Path, Path] | None = None) -> None:
        self.root = root
        self.name = name
        self.port = port or free_port()  # a restarted master: the same port
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        # The test's own probes do not verify the certificate: the clients under test do.
        self._context = ssl._create_unverified_context() if tls else None
        if tls:
            command = (*command, "--tls-cert", str(tls[0]), "--tls-key", str(tls[1]))
        self.data = root / name
        self.database_url = database_url
        self.log_path = root / f"{name}.log"
        log = open(self.log_path, "ab")  # noqa: SIM115 - closed with the process
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "titan", *command, "--port", str(self.port),
             "--dashboard-port", str(free_port()), "--data-dir", str(self.data),
             "--database-url", database_url],
            stdout=log, stderr=subprocess.STDOUT, env=env, cwd=root, start_new_session=True)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def call(self, method: str, path: str, body: Any = None,
             token: str | None = None, timeout: float = 10) -> tuple[int, Any, Any]:
        req = urllib.request.Request(
            f"{self.url}/api/v1{path}", method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Content-Type": "application/json",
                     **({"Authorization": f"Bearer {token}"} if token else {})})
        try:
            with urllib.request.urlopen(req, timeout=timeout, context=self._context) as r:
                return r.status, r.headers, json.loads(r.read())  # headers: any case
        except urllib.error.HTTPError as err:
            return err.code, err.headers, json.loads(err.read() or b"null")

    def health(self) -> tuple[int, Any]:
        try:
            status, _, body = self.call("GET", "/health")
        except OSError:
            return 0, None
        return status, body

    def wait_answering(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"{self.name} exited:\n{self.log()}"
            if self.health()[0]:
                return
            time.sleep(0.05)
        raise TimeoutError(f"{self.name} never answered:\n{self.log()}")

    def wait_leading(self, timeout: float = 30) -> float:
        began = time.monotonic()
        while time.monotonic() - began < timeout:
            status, body = self.health()
            if status == 200 and body.get("role") == "leader":
                return time.monotonic() - began
            time.sleep(0.02)
        raise TimeoutError(f"{self.name} did not take over:\n{self.log()}")

    @property
    def token(self) -> str:
        return (self.data / "admin.token").read_text().strip()

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait(timeout=10)


def _quietly(fn: Any, *args: Any, **kw: Any) -> Any:
    try:
        return fn(*args, **kw)
    except OSError:
        return None


def _host_port(url: str) -> str:
    return url.split("@", 1)[1].split("/", 1)[0]


@pytest.fixture
def pg_proxy() -> Iterator[TcpProxy]:
    """A TCP proxy to the test's PostgreSQL server that a test can cut or stall."""
    host, _, port = _host_port(PG_ADMIN_URL).partition(":")
    proxy = TcpProxy((host, int(port or 5432)))
    try:
        yield proxy
    finally:
        proxy.close()


def _proxied(url: str, proxy: TcpProxy) -> str:
    return url.replace(_host_port(url), f"127.0.0.1:{proxy.port}", 1)


@pytest.fixture
def masters(tmp_path: Path) -> Iterator[Any]:
    started: list[Master] = []
    with fresh_postgres_database("titan_standby") as url:
        def start(name: str, command: tuple[str, ...] = ("master",), *,
                  through: TcpProxy | None = None, **env: str) -> Master:
            # One blob store for all, as docs/deployment.md asks (master/blob_mark.py).
            # ``through``: this master reaches PostgreSQL by way of a proxy the test can cut.
            m = Master(tmp_path, name, _proxied(url, through) if through else url,
                       {**os.environ, "PYTHONUNBUFFERED": "1",
                        "TITAN_BLOB_STORE": "database", **env}, command=command)
            started.append(m)
            return m
        try:
            yield start
        finally:
            for m in started:
                m.stop()


def test_a_standby_names_the_leader_and_takes_over_after_kill_9(masters: Any) -> None:
    a = masters("a")
    a.wait_answering()
    assert a.health()[1]["role"] == "leader" and a.health()[1]["epoch"] == 1
    b = masters("b")
    b.wait_answering()
    # A standby answers every request with 503 not_leader naming the leader, never data.
    for method, path, body in (("GET", "/health", None), ("GET", "/dags", None),
                               ("PUT", "/store/values/k", {"value": "x"})):
        status, headers, answer = b.call(method, path, body, token=a.token)
        assert status == 503, (path, answer)
        assert answer["error"]["code"] == "not_leader"
        assert answer["error"]["details"] == {"leader": a.url, "epoch": 1}
        assert headers["X-Titan-Leader"] == a.url and headers["Retry-After"] == "1"
    # A worker's channel too: its upgrade gets the same 503, not a 403 a worker could take for
    # the leader refusing its credential (one did, in a failover, and stopped).
    ws_url = "ws://" + b.url.removeprefix("http://") + "/api/v1/workers/w-1/channel"
    with pytest.raises(InvalidStatus) as refused:
        connect(ws_url, additional_headers={"Authorization": f"Bearer {a.token}"},
                open_timeout=10)
    assert refused.value.response.status_code == 503
    body = json.loads(refused.value.response.body)
    assert body["error"]["code"] == "not_leader" and body["error"]["details"]["leader"] == a.url
    # `titan token create` on the standby's host said "no Titan master has run there" (QA):
    # it says a standby runs there and names the leader to run it against.
    made = subprocess.run(
        [sys.executable, "-m", "titan", "token", "create", "--role", "viewer"],
        env={**os.environ, "TITAN_DATA_DIR": str(b.data), "HOME": str(b.data.parent)},
        capture_output=True, text=True, timeout=60)
    assert made.returncode != 0 and not (b.data / "admin.token").exists(), made
    assert f"is the data dir of a standby master ({b.url}) that has not led yet" in made.stderr
    assert f"Run this against the leader, {a.url}:" in made.stderr, made.stderr
    # What the leader acknowledged is there after the takeover.
    assert a.call("PUT", "/store/values/k", {"value": "before"}, token=a.token)[0] == 200
    a.proc.kill()
    a.proc.wait()
    took = b.wait_leading(timeout=15)
    assert took < 5, f"takeover took {took:.1f}s"
    deadline = time.monotonic() + 10  # it leads: its master.json replaces its standby.json
    while not (b.data / "master.json").exists():
        assert time.monotonic() < deadline, b.log()
        time.sleep(0.05)
    assert not (b.data / "standby.json").exists()
    assert b.health()[1]["epoch"] == 2
    # The admin token a made is in the shared database: b accepts it.
    status, _, got = b.call("GET", "/store/values/k", token=a.token)
    assert status == 200 and got["value"] == "before", got
    # And the old leader, restarted, waits as a standby behind b.
    a2 = masters("a")
    a2.wait_answering()
    status, headers, answer = a2.call("GET", "/dags", token=a.token)
    assert status == 503 and answer["error"]["details"]["leader"] == b.url


def test_a_paused_leader_is_replaced_and_cannot_commit_when_it_wakes(masters: Any) -> None:
    a = masters("a", TITAN_LEADER_TIMEOUT="2")
    a.wait_answering()
    b = masters("b", TITAN_LEADER_TIMEOUT="2")
    b.wait_answering()
    token = a.token
    assert a.call("PUT", "/store/values/k", {"value": "by a"}, token=token)[0] == 200
    storage = open_storage(a.database_url)
    try:
        with storage.read_transaction() as tx:
            secret = tx.get_meta("job_token_secret")
    finally:
        storage.close()
    stale: list[Any] = []
    # A client's long-poll parked on the leader before its pause: once it finds itself
    # replaced, it is answered 503 (the SDK asks the next master), not cancelled at the end
    # of the graceful shutdown, which was a 500 (a QA pass).
    parked: list[Any] = []
    waiter = threading.Thread(target=lambda: parked.append(_quietly(
        a.call, "GET", "/store/wait/never?timeout=60", token=token, timeout=60)))
    waiter.start()
    time.sleep(0.5)
    os.kill(a.proc.pid, signal.SIGSTOP)  # paused: holds its lock, sends no heartbeat
    try:
        took = b.wait_leading(timeout=20)
        # A job's request reaches the paused leader and waits in its socket: woken, it is the
        # first thing that master does, from the memory of before its replacement.
        asker = threading.Thread(target=lambda: stale.append(_quietly(
            a.call, "GET", "/store/values/k", token=JobTokens(str(secret)).issue(999_999, 1))))
        asker.start()
        time.sleep(0.3)
    finally:
        os.kill(a.proc.pid, signal.SIGCONT)
    assert took >= 1.5, f"took over from a live leader after {took:.1f}s"
    asker.join(timeout=15)
    # It does not tell the job its attempt is over (a job the new leader runs failed on that):
    # it sends the job on to the leader.
    if stale and stale[0] is not None:  # None: the connection closed, nothing said
        status, _, answer = stale[0]
        assert status == 503 and answer["error"]["code"] == "not_leader", answer
    # Woken, the old leader refuses writes (its epoch is gone) and stops.
    try:
        status, _, answer = a.call("PUT", "/store/values/k", {"value": "by a after the pause"},
                                   token=token)
        assert status == 503 and answer["error"]["code"] == "not_leader", answer
    except OSError:
        pass  # already stopping: the connection was closed, also nothing applied
    assert a.proc.wait(timeout=30) == 75, a.log()
    assert "replaced" in a.log()
    waiter.join(timeout=30)
    assert parked and parked[0] is not None, "the parked wait's connection was dropped"
    status, _, answer = parked[0]
    assert status == 503 and answer["error"]["code"] == "master_stopping", answer
    assert "Exception in ASGI application" not in a.log(), a.log()
    status, _, got = b.call("GET", "/store/values/k", token=token)
    assert status == 200 and got["value"] == "by a", got
    assert b.call("PUT", "/store/values/k", {"value": "by b"}, token=token)[0] == 200


@pytest.mark.parametrize("command", [("master", "--no-standby"), ("up", "--slots", "1")])
def test_a_master_that_would_not_wait_still_beats_and_stops_once_replaced(
        masters: Any, command: tuple[str, ...]) -> None:
    """`titan up` and `titan master --no-standby` lead from the start instead of waiting.
    They beat nothing: a standby took one for dead after the leader timeout and took over
    while it ran on, both saying they led (a QA pass)."""
    a = masters("a", command, TITAN_LEADER_TIMEOUT="2")
    a.wait_leading()
    b = masters("b", TITAN_LEADER_TIMEOUT="2")
    b.wait_answering()
    time.sleep(5)  # well past the leader timeout: a live leader keeps its place
    assert b.health()[0] == 503, b.log()  # still a standby
    status, body = a.health()
    assert status == 200 and body.get("role") == "leader", body
    os.kill(a.proc.pid, signal.SIGSTOP)
    try:
        b.wait_leading(timeout=20)
    finally:
        os.kill(a.proc.pid, signal.SIGCONT)
    assert a.proc.wait(timeout=30) == 75, a.log()  # woken, it finds itself replaced
    assert "replaced" in a.log()


def test_a_standby_with_a_blob_store_of_its_own_refuses_to_start(masters: Any,
                                                                  tmp_path: Path) -> None:
    """A standby left on its own host's blob directory joined without a word, and at a
    failover led without the scripts and artifacts the leader had stored: every job whose
    script was not there failed. It now refuses to start, saying what to share."""
    a = masters("a", TITAN_BLOB_STORE="directory", TITAN_BLOB_DIR=str(tmp_path / "blobs-a"))
    a.wait_leading()
    b = masters("b", TITAN_BLOB_STORE="directory", TITAN_BLOB_DIR=str(tmp_path / "blobs-b"))
    assert b.proc.wait(timeout=60) != 0
    said = b.log()
    assert "is not the one the other masters of this database use" in said, said
    assert "TITAN_BLOB_STORE=database" in said and "Traceback" not in said
    # Given the leader's store, it joins as a standby.
    c = masters("c", TITAN_BLOB_STORE="directory", TITAN_BLOB_DIR=str(tmp_path / "blobs-a"))
    c.wait_answering()
    assert c.health()[0] == 503, c.log()
    # A master that leads on a store without the mark (the store moved) starts, says so on
    # its log, and marks its store.
    a.stop()
    c.stop()
    d = masters("d", TITAN_BLOB_STORE="directory", TITAN_BLOB_DIR=str(tmp_path / "blobs-d"))
    d.wait_leading()
    for _ in range(100):
        if "may be missing" in d.log():
            break
        time.sleep(0.05)
    assert "Scripts, artifacts and payloads recorded before may be missing" in d.log()


def test_a_standby_refused_for_its_store_names_the_leaders_store(masters: Any,
                                                                 tmp_path: Path) -> None:
    """The walk of docs/deployment.md: a master started as "A fleet of workers" shows (its
    blobs in its own data dir), then a standby started as "Standby masters" shows, with
    TITAN_BLOB_STORE=database. The standby was refused with "Give every master the same
    store: TITAN_BLOB_STORE=database, ..." — what it had already set: the odd one out was
    the leader, which the message never named. It now names the leader's store and host,
    and says the leader is restarted with the shared store too."""
    a = masters("a", TITAN_BLOB_STORE="directory")  # the default: <data-dir>/blobs
    a.wait_leading()
    b = masters("b")  # TITAN_BLOB_STORE=database, as the standby section's command sets
    assert b.proc.wait(timeout=60) != 0
    said = b.log()
    assert "is not the one the other masters of this database use" in said, said
    assert f"directory {a.data / 'blobs'} on host {socket.gethostname()}" in said, said
    assert "the leader too" in said and "Traceback" not in said, said


def test_a_standby_with_other_tls_settings_than_the_leader_refuses_to_start(
        masters: Any, tmp_path: Path) -> None:
    from titan.client.tls import self_signed

    cert, key = self_signed(tmp_path / "tls", ["127.0.0.1"])
    a = masters("a")
    a.wait_leading()
    b = masters("b", ("master", "--tls-cert", str(cert), "--tls-key", str(key)))
    assert b.proc.wait(timeout=60) != 0
    said = b.log()
    assert f"the leader serves {a.url}" in said and "same TLS settings" in said, said


def test_a_worker_says_which_leader_it_follows_through_a_pause(masters: Any,
                                                               tmp_path: Path) -> None:
    """A leader paused past its standby's patience: the worker's channel stops hearing from
    it and the worker turns to the new leader. Its log had the websockets library's traceback
    ("keepalive ping failed ... sent 1011 (internal error) keepalive ping timeout"), a standby's
    503 said as "master ... unreachable (server rejected WebSocket connection: HTTP 503)", and
    never which master it now followed (a durability QA pass)."""
    a = masters("a", TITAN_LEADER_TIMEOUT="12")
    a.wait_answering()
    b = masters("b", TITAN_LEADER_TIMEOUT="12")
    b.wait_answering()
    token = a.token
    said = tmp_path / "worker.log"

    def following(m: Master) -> bool:  # live there, its channel open
        status, _, body = m.call("GET", "/workers", token=token)
        return status == 200 and any(w["name"] == "follower" and w["state"] == "live"
                                     and w["transport"] == "channel" for w in body["workers"])

    def wait(what: Any, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not what():
            assert time.monotonic() < deadline, said.read_text(errors="replace")[-3000:]
            time.sleep(0.2)

    with open(said, "ab") as out:
        worker = subprocess.Popen(
            [sys.executable, "-m", "titan", "worker", "--master", f"{b.url},{a.url}",
             "--workdir", str(tmp_path / "w"), "--slots", "1", "--name", "follower"],
            stdout=out, stderr=subprocess.STDOUT, cwd=tmp_path, start_new_session=True,
            env={**os.environ, "TITAN_TOKEN": (a.data / "worker.token").read_text().strip()})
    try:
        wait(lambda: following(a), 30)
        os.kill(a.proc.pid, signal.SIGSTOP)  # its connections stay open, unanswered
        try:
            b.wait_leading(timeout=40)
            wait(lambda: following(b), 60)
        finally:
            os.kill(a.proc.pid, signal.SIGCONT)
        log = said.read_text(errors="replace")
        assert f"following the leader at {b.url} (was {a.url})" in log, log[-3000:]
        assert f"worker channel: lost master {a.url}: it stopped answering" in log, log[-3000:]
        assert "Traceback" not in log and "keepalive ping failed" not in log, log[-3000:]
        assert "rejected WebSocket connection: HTTP 503" not in log, log[-3000:]
    finally:
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(timeout=10)


def test_a_job_running_through_a_paused_leader_keeps_its_attempt(masters: Any,
                                                                  tmp_path: Path) -> None:
    """docs/reliability.md: with the default lease and leader timeout, the workers of a paused
    leader turn to the new one inside the lease it gives their jobs. The channel did, but the
    heartbeat sent to the leader as it froze waited out its 30 s: the new leader heard nothing
    for a lease, counted the worker lost and ran its job again (a fleet QA pass)."""
    a = masters("a")
    a.wait_answering()
    b = masters("b")
    b.wait_answering()
    go = tmp_path / "go"
    script = tmp_path / "held.py"
    script.write_text(f"import os, time\nwhile not os.path.exists({str(go)!r}):\n"
                      "    time.sleep(0.1)\nprint('held through the pause')\n")
    said = tmp_path / "held-worker.log"
    with open(said, "ab") as out:
        worker = subprocess.Popen(
            [sys.executable, "-m", "titan", "worker", "--master", f"{a.url},{b.url}",
             "--workdir", str(tmp_path / "w"), "--slots", "1", "--name", "held"],
            stdout=out, stderr=subprocess.STDOUT, cwd=tmp_path, start_new_session=True,
            env={**os.environ, "TITAN_TOKEN": (a.data / "worker.token").read_text().strip()})
    try:
        client = TitanClient(url=[b.url, a.url], token=a.token)
        client.submit_dag("held", [TitanJob(job_id="h", filename=str(script))])
        deadline = time.monotonic() + 60
        while client.get_job("held/h")["state"] != "RUNNING":
            assert time.monotonic() < deadline, said.read_text(errors="replace")[-3000:]
            time.sleep(0.2)
        time.sleep(1)  # a heartbeat or two on the leader, then it freezes between them
        os.kill(a.proc.pid, signal.SIGSTOP)
        paused = time.monotonic()
        try:
            b.wait_leading(timeout=30)
            # Past the lease the new leader gave the job at takeover (15 s), with a margin.
            time.sleep(max(0.0, 25 - (time.monotonic() - paused)))
            status, _, job = b.call("GET", "/jobs/held/h", token=a.token)
            assert (status, job["state"], job["attempt"]) == (200, "RUNNING", 1), (
                job, said.read_text(errors="replace")[-3000:], b.log())
        finally:
            os.kill(a.proc.pid, signal.SIGCONT)
        go.touch()
        dag = client.wait_dag("held", timeout=60)
        assert dag["status"] == "COMPLETED", dag
        assert [j["attempt"] for j in dag["jobs"]] == [1], dag
        assert client.fetch_logs("held/h").strip() == "held through the pause"
    finally:
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(timeout=10)


def _health_until(m: Master, status: int, timeout: float) -> tuple[Any, float]:
    """Poll ``m``'s /health until it answers ``status``: (its headers and body, seconds)."""
    began = time.monotonic()
    while time.monotonic() - began < timeout:
        try:
            got, headers, body = m.call("GET", "/health")
        except OSError:
            got, headers, body = 0, None, None
        if got == status:
            return (headers, body), time.monotonic() - began
        time.sleep(0.1)
    raise TimeoutError(f"{m.name}'s /health never answered {status}:\n{m.log()}")


def test_health_says_503_while_the_leader_cannot_reach_its_database(
        masters: Any, pg_proxy: TcpProxy) -> None:
    """/health was a constant 200 "ok": a leader whose database was away (every write waiting)
    looked healthy to a load balancer for minutes. It answers 503 with why and since when
    while its writes wait (the database refusing, or not answering at all), and 200 again once
    they commit."""
    a = masters("a", through=pg_proxy)
    a.wait_answering()
    status, body = a.health()
    assert status == 200 and body["status"] == "ok", body
    # Connections reset: the lock's check fails at the next heartbeat (said at once, the lock
    # is gone with its connection). Stalled: the beat hangs, said past the grace (3 s).
    for fault, heal, said, grace in (
            (lambda: pg_proxy.cut(down_for=6), lambda: None, "confirm the leadership", 0),
            (pg_proxy.stall, pg_proxy.resume, "no answer", 3)):
        fault()
        (headers, body), took = _health_until(a, 503, timeout=20)
        assert grace - 0.5 < took < 10, took
        assert body["status"] == "unavailable" and body["role"] == "leader", body
        assert said in body["reason"] and body["since_seconds"] >= grace, body
        # The master's own 503, as a client reads one: not a proxy's bare answer.
        assert body["error"]["code"] == "database_unavailable", body
        assert headers["Retry-After"] == "5"
        heal()
        (_, body), _ = _health_until(a, 200, timeout=30)
        assert body["status"] == "ok" and "reason" not in body, body
    assert "Exception in ASGI application" not in a.log()


def test_a_leader_cut_off_while_a_standby_takes_over_is_not_healthy(
        masters: Any, pg_proxy: TcpProxy) -> None:
    """Two masters answered /health 200 "role: leader" (QA): the old one cut off from
    PostgreSQL, the standby that took over. A load balancer must see one leader only: once
    partitioned (the server does not notice; the standby takes over when the heartbeat is 5 s
    stale) the old leader is 503 before the standby leads; connections reset (PostgreSQL frees
    the lock at once, the standby takes it within a poll), within a heartbeat."""
    a = masters("a", through=pg_proxy, TITAN_LEADER_TIMEOUT="5")
    a.wait_answering()
    b = masters("b", TITAN_LEADER_TIMEOUT="5")
    b.wait_answering()
    assert b.health()[0] == 503
    pg_proxy.stall()
    began = time.monotonic()
    a_unhealthy = b_leads = 0.0
    while not b_leads:  # both watched from the partition: a goes 503 before b answers 200
        assert time.monotonic() - began < 30, (a.log(), b.log())
        if not a_unhealthy and a.health()[0] in (0, 503):
            a_unhealthy = time.monotonic() - began
        if b.health()[0] == 200:
            b_leads = time.monotonic() - began
        time.sleep(0.05)
    assert 0 < a_unhealthy <= b_leads, (a_unhealthy, b_leads)
    status, body = a.health()
    assert status == 503 and body["status"] == "unavailable" and body["reason"], body
    for _ in range(10):  # from now on, only b says it is healthy
        assert a.health()[0] in (0, 503)
        assert b.health()[0] == 200
        time.sleep(0.2)


def test_a_leader_whose_connections_reset_is_unhealthy_within_a_heartbeat(
        masters: Any, pg_proxy: TcpProxy) -> None:
    a = masters("a", through=pg_proxy, TITAN_LEADER_TIMEOUT="5")
    a.wait_answering()
    b = masters("b", TITAN_LEADER_TIMEOUT="5")
    b.wait_answering()
    pg_proxy.cut(down_for=120)
    (_, body), took = _health_until(a, 503, timeout=20)
    assert took < 2.5, took  # one heartbeat (leader timeout / 5) and the lock's check
    assert "cannot confirm the leadership" in body["reason"], body
    b.wait_leading(timeout=30)
    for _ in range(10):
        assert a.health()[0] in (0, 503)
        time.sleep(0.2)
