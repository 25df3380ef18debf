"""An agent run whose end was under way when the master died ends after the restart
(issue 16: a run could stay `running` for good).

A run's driver may finish while its last stage still runs; the run then ends when the stage
does, in a second commit after the stage's. A `kill -9` between the two commits leaves the
stage ended and the run `running` with its `ended_at` set, and no later change of the stage
would ever come to finish it. The test makes that crash window by hand: it lets the run end
normally, kills the master, and puts the run back in the state the window leaves.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

from tests.integration.harness import Cluster
from titan import TitanJob


def wait_status(c: Cluster, run_id: str, want: str, timeout: float = 30) -> dict:
    deadline = time.time() + timeout
    while True:
        run = c.api("GET", f"/runs/{run_id}")
        if run["status"] == want or time.time() > deadline:
            return run
        time.sleep(0.05)


def test_a_run_interrupted_while_ending_ends_after_a_restart(
        make_cluster: Callable[..., Cluster], tmp_path: Path) -> None:
    c = make_cluster()
    c.up(slots=1)
    client = c.client()
    c.api("POST", "/runs", {"id": "r1"})
    gate = tmp_path / "release"
    stage = c.script("stage.py", f"""
        import os, time
        while not os.path.exists({str(gate)!r}):
            time.sleep(0.02)
    """)
    client.submit_dag("r1_stage", [TitanJob(job_id="s", filename=stage)], agent_run_id="r1")
    # The driver finishes while its stage runs: the run waits for the stage.
    c.api("PATCH", "/runs/r1", {"status": "ended"})
    waiting = c.api("GET", "/runs/r1")
    # Still running, so not ended (its driver's end is kept inside, not shown as the run's).
    assert waiting["status"] == "running" and waiting["ended_at"] is None
    gate.touch()
    assert wait_status(c, "r1", "completed")["status"] == "completed"

    # The crash window: the stage's commit landed, the run's did not.
    c.kill_master()
    with sqlite3.connect(c.data / "titan.db") as db:
        db.execute("UPDATE agent_runs SET status = 'running' WHERE id = 'r1'")
    c.up(slots=1)
    run = wait_status(c, "r1", "completed")
    assert run["status"] == "completed", run
