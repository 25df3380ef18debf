"""A job its worker kills is killed once: a job that ignores SIGTERM outlives a heartbeat or
several during the kill grace, and each heartbeat's answer named it again (the master still
saw it running on a worker that no longer held its lease)."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.integration.harness import Cluster
from tests.integration.processes import wait_dead
from tests.integration.test_telemetry_sdk import wait_for
from titan_sdk import TitanJob

if sys.platform != "linux":  # pragma: no cover - process groups
    pytestmark = pytest.mark.skip("process groups need Linux")

#: Ignores SIGTERM, noting each one it gets in argv[1]; writes its pid to argv[2] when ready.
STUBBORN = """
import os, signal, sys, time
def noted(*_):
    with open(sys.argv[1], "a") as f:
        f.write("TERM\\n")
signal.signal(signal.SIGTERM, noted)
with open(sys.argv[2] + ".tmp", "w") as f:
    f.write(str(os.getpid()))
os.replace(sys.argv[2] + ".tmp", sys.argv[2])
while True:
    time.sleep(0.05)
"""


def test_a_cancelled_job_that_ignores_sigterm_is_told_and_logged_once(
        make_cluster: Callable[..., Cluster], tmp_path: Path) -> None:
    # Heartbeats every 0.5 s: six of them or so within the worker's 3 s kill grace.
    cluster = make_cluster(lease_seconds=1.5).start_master()
    cluster.add_worker(slots=1)
    terms, ready = tmp_path / "terms", tmp_path / "ready"
    script = cluster.script("stubborn.py", STUBBORN)
    client = cluster.client()
    client.submit_job(TitanJob(job_id="stubborn", filename=script,
                               args=[str(terms), str(ready)]))
    pid = int(wait_for(lambda: ready.exists() and ready.read_text(), timeout=60))
    started = time.monotonic()
    assert client.cancel("stubborn")["state"] == "CANCELLED"
    assert wait_dead(pid, timeout=30)
    # SIGKILLed after the grace, not before: the heartbeats had time to name it again.
    assert time.monotonic() - started >= 2.5
    time.sleep(1.0)  # a heartbeat after its end names it no more
    log = (cluster.root / "worker-0.log").read_text()
    assert log.count("the master ended job") == 1, log
    # Said as what it was, though the cancelled job has left the master's memory by then.
    assert "(cancelled): killing it" in log and "ended meanwhile" not in log, log
    # One SIGTERM: a second one cut a graceful stop short (a handler that stops on the
    # first and cleans up would be interrupted by the next).
    assert terms.read_text() == "TERM\n"
