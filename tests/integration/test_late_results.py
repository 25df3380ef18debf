"""A worker whose result comes too late says so (DESIGN: a result from a stale attempt is
refused). Paused past its lease, its job goes again as the next attempt on another worker;
the first job finishes meanwhile, and once the worker wakes its result is refused. The
worker's log says, as one warning naming the job and the attempt, that the master had given
the job to another attempt; a cancelled job's refused result says nothing of the kind."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.integration.harness import Cluster
from titan import TitanJob

SUPERSEDED = "the master had already given the job to attempt"


def _wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.mark.parametrize("transport", ["channel", "http"])
def test_a_late_result_is_said_as_a_warning_on_the_worker(
        make_cluster: Callable[..., Cluster], tmp_path: Path, transport: str) -> None:
    c = make_cluster(lease_seconds=2)
    c.start_master()
    extra = ["--transport", transport]
    sleeper = c.add_worker(slots=1, name="sleeper", extra=extra)
    marker = tmp_path / "started"
    slow = c.script("slow.py", "import sys, time\n"
                    "open(sys.argv[1], 'a').write('start\\n')\n"
                    "time.sleep(3)\n")
    client = c.client()
    dag = client.submit_job(TitanJob(job_id="late", filename=slow, args=[str(marker)]))
    ref = f"{dag['ref']}/late"
    _wait_for(lambda: marker.exists(), 30, "the job to start")
    # The worker process alone stops (its job runs on and ends meanwhile): its lease
    # expires, and the job goes again, as attempt 2, on the worker that comes next.
    sleeper.send_signal(signal.SIGSTOP)
    try:
        c.add_worker(slots=1, name="rescuer", extra=extra, wait=False)
        _wait_for(lambda: client.get_job(ref)["attempt"] == 2, 30, "attempt 2")
        assert client.wait(ref, timeout=60)["state"] == "COMPLETED"
    finally:
        sleeper.send_signal(signal.SIGCONT)
    log = lambda: c.log("worker-0.log")  # noqa: E731
    _wait_for(lambda: SUPERSEDED in log(), 30, f"the worker's warning:\n{log()}")
    said = [x for x in log().splitlines() if SUPERSEDED in x]
    assert len(said) == 1, said
    assert "late" in said[0] and "attempt 1" in said[0] and "attempt 2" in said[0], said

    # A cancel: the killed job's result is refused too, and said as a cancel, not as this.
    hold = c.script("hold.py", "import time\ntime.sleep(60)\n")
    held = client.submit_job(TitanJob(job_id="held", filename=hold))
    held_ref = f"{held['ref']}/held"
    _wait_for(lambda: client.get_job_status(held_ref) == "RUNNING", 30, "held to run")
    client.cancel(held_ref)
    assert client.wait(held_ref, timeout=60)["state"] == "CANCELLED"
    time.sleep(1.5)  # the killed job's result reported and answered
    assert not any("held" in x for x in log().splitlines() + c.log("worker-1.log").splitlines()
                   if SUPERSEDED in x)
