"""A worker whose wall clock is wrong (a VM restored from a snapshot, no NTP): its jobs'
durations and log times are read on the master's clock. A real master, and a real worker whose
``time.time()`` runs 60 s behind (a ``sitecustomize`` on its path, which its jobs inherit)."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from pathlib import Path

from tests.integration.harness import Cluster
from titan import TitanJob

SKEW = """
import time as _t
_real, _real_ns = _t.time, _t.time_ns
_t.time = lambda: _real() - 60
_t.time_ns = lambda: _real_ns() - 60 * 10**9
"""

JOB = """
    import time
    print("working", flush=True)
    time.sleep(2)
    print("done", flush=True)
"""


def test_a_worker_60_s_behind_gives_true_durations_and_log_times(
        make_cluster: Callable[..., Cluster], tmp_path: Path) -> None:
    # Every job of such a worker lasted 0.0 s (its ended_at, clamped to the master's start),
    # and its log lines were stamped a minute in the past (a fleet QA pass).
    skew = tmp_path / "skew"
    skew.mkdir()
    (skew / "sitecustomize.py").write_text(SKEW)
    c = make_cluster()
    c.start_master()
    path = os.pathsep.join(p for p in (str(skew), os.environ.get("PYTHONPATH")) if p)
    c.add_worker(capabilities="SKEW", slots=1, name="behind", env={"PYTHONPATH": path})
    client = c.client()
    before = time.time()
    client.submit_dag("skew", [TitanJob("j", c.script("two_seconds.py", JOB),
                                        requirement="SKEW")])
    assert client.wait_dag("skew", timeout=60)["status"] == "COMPLETED"
    after = time.time()
    job = client.get_job("skew/j")
    took = job["finished_at"] - job["started_at"]
    assert 2.0 <= took < after - before, job
    assert before <= job["started_at"] < job["finished_at"] <= after
    lines = list(client.iter_logs("skew/j"))
    assert [line["line"] for line in lines] == ["working", "done"]
    for line in lines:  # on the master's clock, within the attempt (a little latency aside)
        assert job["started_at"] - 1 <= line["ts"] <= job["finished_at"] + 1, (line, job)
    assert lines[1]["ts"] - lines[0]["ts"] >= 1.9
    (worker,) = [w for w in client.get_workers()["workers"] if w["name"] == "behind"]
    assert 59 <= worker["clock_offset"] <= 61, worker
    said = re.findall(r"\(behind\): its clock is (\d+\.\d) s behind the master's", c.log())
    assert len(said) == 1 and 59 <= float(said[0]) <= 61, c.log()  # once per worker


def test_a_master_restart_does_not_make_a_worker_on_its_host_late(
        make_cluster: Callable[..., Cluster]) -> None:
    # A worker started as its master was killed: its registration, retried until the master
    # was back 4 s later, carried the time of its first try, and the master warned "its clock
    # is 4.8 s behind the master's" (the worker on the master's own host: one clock), its log
    # lines shifted by as much (a durability QA pass).
    c = make_cluster(lease_seconds=3)  # a heartbeat every second
    c.start_master()
    c.add_worker(slots=1, name="here", wait=False)
    c.kill_master()  # before the worker, still starting, registers
    time.sleep(4)
    c.start_master()
    c.wait_workers(1)
    time.sleep(3)  # a few heartbeats
    (worker,) = [w for w in c.client().get_workers()["workers"] if w["name"] == "here"]
    assert worker["clock_offset"] == 0.0, worker
    assert "its clock is" not in (c.root / "master.log").read_text(), c.log()
