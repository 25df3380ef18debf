"""A wait's ``timeout`` bounds the call when the master goes away: killed or frozen mid-wait,
the SDK gives control back near the timeout (ConnectionFailed: the master could not be
reached), not after TITAN_MASTER_RESTART_GRACE; a master back within the timeout answers the
rest of the wait; a wait without a timeout still rides out a restart."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from tests.integration.harness import Cluster
from titan.client.signals import wait_for_signal
from titan.errors import ConnectionFailed, WaitTimeout
from titan_sdk import TitanJob


@pytest.fixture
def cl(tmp_path_factory: pytest.TempPathFactory,
       monkeypatch: pytest.MonkeyPatch) -> Iterator[Cluster]:
    # The default grace, set so that a shell's shorter one cannot hide what is tested.
    monkeypatch.setenv("TITAN_MASTER_RESTART_GRACE", "60")
    c = Cluster(tmp_path_factory.mktemp("wait-bounds"))
    try:
        yield c.start_master()
    finally:
        c.stop()


def timed(call: Callable[[], object]) -> tuple[BaseException | None, float]:
    started = time.monotonic()
    try:
        call()
    except BaseException as exc:  # noqa: BLE001 - the test asserts on it
        return exc, time.monotonic() - started
    return None, time.monotonic() - started


def later(seconds: float, action: Callable[[], None]) -> threading.Timer:
    timer = threading.Timer(seconds, action)
    timer.start()
    return timer


def test_a_wait_ends_near_its_timeout_when_the_master_is_killed_or_frozen(
        cl: Cluster) -> None:
    client = cl.client()
    client.health()  # reached: from now on an unreachable master is a restart to ride out
    script = cl.script("noop.py", "pass\n")
    client.upload_blobs([b"pass\n"])  # the first submission below goes straight to POST
    later(1.0, cl.kill_master)
    got, took = timed(lambda: client.store_wait("never-set", timeout=4))
    assert isinstance(got, ConnectionFailed), got
    assert "within the wait's timeout, waiting for store key 'never-set'" in str(got)
    assert "Connection refused" in str(got)
    assert 3.5 < took < 6, took  # was 60 s: the whole restart grace

    # The same bound for the submission that waits, and for wait() on a numeric id (its
    # lookups come before the wait).
    got, took = timed(lambda: client.submit_dag(
        "bounded", [TitanJob("j", script)], wait=True, timeout=2))
    assert isinstance(got, ConnectionFailed) and 1.5 < took < 4, (got, took)
    assert "submitting DAG 'bounded' (whether it was submitted is unknown: " \
        "list_dags(name='bounded') says)" in str(got)
    other = cl.script("other.py", "print('other')\n")
    got, took = timed(lambda: client.submit_dag(
        "unsent", [TitanJob("j", other)], wait=True, timeout=2))
    assert isinstance(got, ConnectionFailed) and 1.5 < took < 4, (got, took)
    assert "uploading the scripts of DAG 'unsent' (nothing was submitted)" in str(got)
    got, took = timed(lambda: client.wait(12345, timeout=2))
    assert isinstance(got, ConnectionFailed) and 1.5 < took < 4, (got, took)
    for wait in (client.wait_job, client.wait_dag):
        got, took = timed(lambda: wait("someday", timeout=2))  # noqa: B023 - called at once
        assert isinstance(got, ConnectionFailed) and 1.5 < took < 4, (got, took)
        assert "within the wait's timeout, waiting for " in str(got)

    # Frozen (SIGSTOP, a paused VM): the socket is open and nothing answers. Given up
    # DEADLINE_MARGIN (5 s) past the timeout, not WAIT_MARGIN (15 s).
    cl.start_master()
    assert cl.master is not None
    pid = cl.master.pid
    later(1.0, lambda: os.kill(pid, signal.SIGSTOP))
    try:
        got, took = timed(lambda: client.store_wait("never-set", timeout=3))
    finally:
        os.kill(pid, signal.SIGCONT)
    assert isinstance(got, ConnectionFailed), got
    assert "within the wait's timeout" in str(got) and "ReadTimeout" in str(got)
    assert 7 < took < 10, took  # was 18 s


def test_a_master_back_within_the_timeout_answers_the_rest_of_the_wait(cl: Cluster) -> None:
    client = cl.client()
    client.health()

    def restart(then: Callable[[], object] = lambda: None) -> None:
        cl.kill_master()
        cl.start_master()
        then()

    timer = later(0.5, restart)
    # The retry after the restart asks the master to hold what is left, not 12 s again.
    got, took = timed(lambda: client.store_wait("never-set", timeout=12))
    timer.join()
    assert isinstance(got, WaitTimeout), got
    assert 11.5 < took < 14, took

    timer = later(0.5, lambda: restart(lambda: cl.client().store_put("comes-back", "yes")))
    assert client.store_wait("comes-back", timeout=30) == "yes"
    timer.join()


def test_a_signal_wait_without_a_timeout_rides_out_a_restart(cl: Cluster) -> None:
    # wait_for_signal waits in 2 s steps while a stage it submitted runs: a step's end
    # must not cut the restart grace of a wait that has no timeout.
    cl.add_worker()
    client = cl.client()
    script = cl.script("signal.py", """
        import time
        from titan import TitanClient
        time.sleep(4)
        TitanClient().store_put("stage-done", "ok")
    """)
    client.submit_dag("signaller", [TitanJob("s", script)])

    def away_for_3s() -> None:
        cl.kill_master()
        time.sleep(3)
        cl.start_master()

    timer = later(0.5, away_for_3s)
    assert wait_for_signal(client, "stage-done") == "ok"
    timer.join()


def test_submit_wait_rides_out_a_restart_across_its_steps(cl: Cluster) -> None:
    # `titan submit --wait` waits in steps (3 s, then 30 s): a restart across a step's end
    # made it give up within 3 s ("no answer ... within the wait's timeout, waiting for DAG
    # 1") although no --timeout was given and the DAG completed (a QA pass).
    cl.add_worker()
    script = cl.script("slow.py", "import time\ntime.sleep(7)\n")
    env = dict(cl.env, TITAN_HOST="127.0.0.1", TITAN_PORT=str(cl.port),
               TITAN_TOKEN=cl.admin_token)

    def away_for_3s() -> None:
        cl.kill_master()
        time.sleep(3)
        cl.start_master()

    cli = subprocess.Popen([sys.executable, "-m", "titan", "submit", script, "--wait"],
                           env=env, cwd=cl.root, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    time.sleep(2)
    away_for_3s()  # down from ~2 s to ~5 s: across the first step's end (3 s into the wait)
    out, err = cli.communicate(timeout=60)
    assert cli.returncode == 0, out + err
    assert out.splitlines() == ["slow#1", "COMPLETED (COMPLETED 1)"], out + err

    # With a --timeout, that bounds it, and the error names the DAG as the user saw it.
    cli = subprocess.Popen([sys.executable, "-m", "titan", "submit", script, "--wait",
                            "--timeout", "4"], env=env, cwd=cl.root,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(2)
    cl.kill_master()
    started = time.monotonic()
    out, err = cli.communicate(timeout=60)
    assert cli.returncode == 1 and time.monotonic() - started < 5, out + err
    assert "within the wait's timeout, waiting for DAG slow#2: cannot reach" in err, err
