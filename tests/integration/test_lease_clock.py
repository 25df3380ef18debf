"""A lease written by a master whose clock ran ahead does not strand its job (a QA pass).

Leases are stored as wall-clock deadlines. A master on a host whose clock was an hour ahead
(or a clock NTP later stepped back) stored one an hour out; restarted with the right clock,
it loaded that deadline back unchanged, so when the job's worker died the job stayed RUNNING
on a lost worker for the hour instead of running again after ``TITAN_LEASE_SECONDS``. The
test writes such a deadline into the database of the stopped master, as the skewed master
would have left it.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

from tests.integration.harness import Cluster
from titan import TitanJob

LEASE = 2.0

STUCK_FIRST = """
    import os, sys, time
    open(sys.argv[1], "a").write(f"start {os.environ['TITAN_ATTEMPT']}\\n")
    if os.environ["TITAN_ATTEMPT"] == "1":
        time.sleep(300)
"""


def test_a_lease_from_a_clock_an_hour_ahead_expires_after_one_lease(
        make_cluster: Callable[..., Cluster], tmp_path: Path) -> None:
    c = make_cluster(lease_seconds=LEASE)
    c.start_master()
    doomed = c.add_worker(slots=1, name="doomed")
    marker = tmp_path / "markers.txt"
    client = c.client()
    client.submit_job(TitanJob(job_id="skewed", filename=c.script("stuck.py", STUCK_FIRST),
                               args=[str(marker)]))
    deadline = time.monotonic() + 30
    while not (marker.exists() and "start 1" in marker.read_text()):
        assert time.monotonic() < deadline, c.log()
        time.sleep(0.05)

    c.kill_master()
    doomed.kill()  # SIGKILL: only the lease can tell
    doomed.wait()
    hour_ahead = time.time() + 3600
    with sqlite3.connect(c.data / "titan.db") as db:
        changed = db.execute(
            "UPDATE jobs SET lease_expires_at = ?, started_at = ?, submitted_at = ?"
            " WHERE job_id = 'skewed' AND state = 'RUNNING'",
            (hour_ahead, hour_ahead - 5, hour_ahead - 6)).rowcount
    assert changed == 1

    c.start_master()
    c.add_worker(slots=1, name="rescuer")
    began = time.monotonic()
    job = client.wait("skewed", timeout=10 * LEASE)
    assert job["state"] == "COMPLETED" and job["attempt"] == 2, (job, c.log())
    # One lease after the restart (its worker gone), plus the sweep's and a poll's latency.
    assert time.monotonic() - began < 5 * LEASE, job
    first = job["attempts"][0]
    assert first["state"] == "LOST" and "expired" in first["error"], job
