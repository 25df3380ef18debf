"""Clients of standby masters, end to end: real `titan master` processes on one PostgreSQL
database, the SDK and a worker each given every master's URL, and the leader killed while a
job runs. The SDK finds the leader behind a standby, the worker re-joins the new leader with
the attempt it holds, and the job's own SDK (TITAN_MASTER_URLS) reaches the new leader too."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import fresh_postgres_database
from tests.integration.test_standby_masters import Master
from titan.client import TitanClient, TitanJob
from titan.client.tls import fingerprint, self_signed
from titan.worker import Worker, lifeline

Start = Callable[..., Master]

JOB = """
import os, time
from pathlib import Path
from titan.client import TitanClient

go = Path(os.environ["GO_FILE"])
print("waiting", flush=True)
while not go.exists():
    time.sleep(0.05)
with TitanClient() as client:  # TITAN_MASTER_URLS: the leader it started under is dead now
    client.store_put("from-job", os.environ["TITAN_MASTER_URLS"])
    print("stored at", client.url, flush=True)
"""


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Start]:
    started: list[Master] = []
    with fresh_postgres_database("titan_standby_clients") as url:
        def run(name: str, tls: tuple[Path, Path] | None = None, **env: str) -> Master:
            m = Master(tmp_path, name, url, dict(os.environ, PYTHONUNBUFFERED="1",
                                                 TITAN_BLOB_STORE="database", **env), tls=tls)
            started.append(m)
            return m
        try:
            yield run
        finally:
            for m in started:
                m.stop()


def test_sdk_worker_and_job_follow_the_leader_through_a_kill_9(
        start: Start, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    a = start("a")
    a.wait_answering()
    b = start("b")
    b.wait_answering()
    urls = [b.url, a.url]  # the standby first: clients must find the leader behind it
    worker = Worker(urls, (a.data / "worker.token").read_text().strip(), ["general"], 1,
                    str(tmp_path / "w"), kill_grace=1.0)
    exit_code: list[int] = []
    runner = threading.Thread(target=lambda: exit_code.append(worker.run()), daemon=True)
    runner.start()
    go = tmp_path / "go"
    script = tmp_path / "job.py"
    script.write_text(JOB)
    try:
        with TitanClient(url=urls, token=a.token) as client:
            client.submit_dag("failover", [TitanJob("j", str(script), env={"GO_FILE": str(go)})])
            assert client.url == a.url
            # The job runs (its first line arrived) when the leader dies.
            first = next(iter(client.iter_logs("failover/j", follow=True)))
            assert first["line"] == "waiting"

            a.proc.kill()
            a.proc.wait()
            b.wait_leading(timeout=20)
            go.touch()

            final = client.wait_dag("failover", timeout=90)
            assert final["status"] == "COMPLETED", (final, b.log())
            assert client.url == b.url
            job = client.get_job("failover/j")
            assert job["attempt"] == 1  # the same attempt, reported to the new leader
            assert client.store_get("from-job") == f"{a.url},{b.url}"
            assert f"stored at {b.url}" in client.fetch_logs("failover/j")
        # The worker says the failover in words: whom it follows now, and b's refusals
        # while it was still a standby as a standby's, not as an unreachable master's.
        said = [r.getMessage() for r in caplog.records
                if r.name == "titan.worker" and r.levelno >= logging.WARNING]
        assert f"following the leader at {b.url} (was {a.url})" in said, said
        assert not [line for line in said if "rejected WebSocket connection" in line], said
    finally:
        worker.request_stop(hard=True)
        runner.join(30)



def test_a_call_in_flight_to_a_leader_that_froze_goes_to_the_new_leader_in_seconds(
        start: Start) -> None:
    """A leader paused (SIGSTOP, a frozen VM) while a call waits for its reply on a pooled
    connection: the kernel holds what was sent, nothing answers, and the call waited out the
    read timeout (60 s) before the standby that took over was asked. Silent for 5 s, the
    master is asked on a new connection whether it is there; frozen, it is not, and the call
    goes on to the new leader."""
    a = start("a", TITAN_LEADER_TIMEOUT="2")
    a.wait_answering()
    b = start("b", TITAN_LEADER_TIMEOUT="2")
    b.wait_answering()
    with TitanClient(url=[a.url, b.url], token=a.token) as client:
        waited: list[Any] = []

        def long_poll() -> None:  # a long-poll parked on a: silent by design, not a stall
            waited.append(client.store_wait("later", timeout=90))
        poller = threading.Thread(target=long_poll, daemon=True)
        poller.start()
        time.sleep(7)  # past the first stall check: a live master answers it, the wait goes on
        assert not waited
        client.store_put("k", "before the pause")  # a proven connection to a, pooled
        os.kill(a.proc.pid, signal.SIGSTOP)
        try:
            started = time.monotonic()
            value = client.store_get("k")  # sent on that connection: a never answers
            took = time.monotonic() - started
            assert value == "before the pause" and client.url == b.url
            assert took < 30, f"{took:.1f} s before the new leader was asked"
            client.store_put("later", "from b")
            poller.join(timeout=30)
            assert waited == ["from b"]  # the parked wait moved to b as well
        finally:
            os.kill(a.proc.pid, signal.SIGCONT)
    assert a.proc.wait(timeout=30) == 75, a.log()  # woken, it finds itself replaced


def test_a_worker_pinning_every_master_follows_a_failover_to_another_certificate(
        start: Start, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Masters each with a self-signed certificate of their own, as their banners suggest:
    the standby joined without a word, TITAN_TLS_FINGERPRINT took one pin only, and after the
    leader's kill -9 a pinned worker refused the new leader for ever (its job went back to
    PENDING, the DAG stalled). The standby now says which pins clients need, and a worker
    given them all follows the failover with its running job, which follows it too."""
    cert_a, key_a = self_signed(tmp_path / "tls-a", ["127.0.0.1"])
    cert_b, key_b = self_signed(tmp_path / "tls-b", ["127.0.0.1"])
    pin_a, pin_b = fingerprint(cert_a), fingerprint(cert_b)
    a = start("a", tls=(cert_a, key_a))
    a.wait_leading()
    b = start("b", tls=(cert_b, key_b))
    b.wait_answering()
    assert b.health()[0] == 503  # a standby all the same
    said = b.log()
    assert f"is not the one the leader serves ({pin_a}, at {a.url})" in said, said
    assert f"TITAN_TLS_FINGERPRINT={pin_a},{pin_b}" in said, said

    monkeypatch.setenv("TITAN_TLS_FINGERPRINT", f"{pin_a}, {pin_b}")  # before the worker's env
    urls = [a.url, b.url]
    worker = Worker(urls, (a.data / "worker.token").read_text().strip(), ["general"], 1,
                    str(tmp_path / "w"), kill_grace=1.0)
    exit_code: list[int] = []
    runner = threading.Thread(target=lambda: exit_code.append(worker.run()), daemon=True)
    runner.start()
    go = tmp_path / "go"
    script = tmp_path / "job.py"
    script.write_text(JOB)
    try:
        with TitanClient(url=urls, token=a.token) as client:
            client.submit_dag("pinned", [TitanJob("j", str(script), env={"GO_FILE": str(go)})])
            first = next(iter(client.iter_logs("pinned/j", follow=True)))
            assert first["line"] == "waiting"

            a.proc.kill()
            a.proc.wait()
            b.wait_leading(timeout=20)
            go.touch()

            final = client.wait_dag("pinned", timeout=90)
            assert final["status"] == "COMPLETED", (final, b.log())
            assert client.get_job("pinned/j")["attempt"] == 1  # reported to the new leader
            assert f"stored at {b.url}" in client.fetch_logs("pinned/j")  # the job's SDK too
        assert "now that it leads" in b.log()  # said again when it took over
    finally:
        worker.request_stop(hard=True)
        runner.join(30)


def test_a_worker_with_a_wrong_token_stops_and_one_given_a_standby_names_the_leader(
        start: Start, tmp_path: Path) -> None:
    # With a leader and a standby, a worker holding another cluster's token looped for ever
    # ("unreachable ... a standby; the leader is at <the leader itself>"); given only the
    # standby, it never said that the leader was missing from its list (a fleet QA pass).
    a = start("a")
    a.wait_leading()
    b = start("b")
    b.wait_answering()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TITAN_")}
    env.update(PYTHONUNBUFFERED="1", TITAN_CONFIG_DIR=str(tmp_path / "config"))

    def worker(urls: str, token: str, timeout: float) -> subprocess.CompletedProcess[str]:
        try:
            return subprocess.run(
                [sys.executable, "-m", "titan", "worker", "--master", urls,
                 "--workdir", str(tmp_path / "wd")],
                env={**env, "TITAN_TOKEN": token}, capture_output=True, text=True,
                timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            out = exc.stderr or b""
            return subprocess.CompletedProcess(exc.cmd, -1, "", out.decode() if
                                               isinstance(out, bytes) else out)

    wrong = worker(f"{a.url},{b.url}", "tt_" + "0" * 40, 30)
    # 77: its credential refused (lifeline.EXIT_REFUSED), which a supervisor does not restart.
    assert wrong.returncode == lifeline.EXIT_REFUSED, wrong.stderr[-2000:]
    assert "does not know this token" in wrong.stderr
    assert "unreachable" not in wrong.stderr

    lost = worker(b.url, (a.data / "worker.token").read_text().strip(), 6)
    assert lost.returncode == -1  # it waits: the standby may lead one day
    assert f"master {b.url} is a standby; the leader it names, {a.url}, is not one of this " \
           f"worker's masters: add it (--master {a.url}" in lost.stderr, lost.stderr[-2000:]
    assert "unreachable" not in lost.stderr
