"""Chaos: ``kill -9`` the master ten times while a 30-job DAG runs with ``retries=0``.

Issue 15 item 7: jobs must ride out every restart (the SDK retries within
``TITAN_MASTER_RESTART_GRACE``), each job must run exactly once (attempt 1 only), and writes
retried after a lost reply must apply once (the store counter ends at exactly 30).
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.chaos.conftest import Report
from tests.conftest import fresh_postgres_database
from tests.integration.harness import Cluster
from titan_sdk import TitanJob

pytestmark = pytest.mark.slow

MakeCluster = Callable[..., Cluster]
KILLS = 10

JOB = """
    import os, sys, time
    from titan import TitanClient

    marker, pause = sys.argv[1], float(sys.argv[2])
    job, attempt = os.environ["TITAN_JOB_ID"], os.environ["TITAN_ATTEMPT"]
    fd = os.open(marker, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.write(fd, f"{job} {attempt}\\n".encode())
    os.close(fd)
    client = TitanClient()
    client.store_incr("chaos-counter")
    client.store_sadd("chaos-ran", f"{job}:{attempt}")
    time.sleep(pause)
    client.store_put(f"chaos-out/{job}", f"written by attempt {attempt}")
    print("done", job, attempt)
"""


def layered_dag(script: str, marker: Path, pause: float) -> list[TitanJob]:
    """Six layers of five jobs; each job of a layer waits for one or two of the layer above."""
    jobs: list[TitanJob] = []
    for layer in range(6):
        for i in range(5):
            parents = [] if layer == 0 else sorted({f"l{layer - 1}_{i}",
                                                    f"l{layer - 1}_{(i + 1) % 5}"})
            jobs.append(TitanJob(job_id=f"l{layer}_{i}", filename=script, parents=parents,
                                 args=[str(marker), str(pause)], retries=0))
    return jobs


def started(marker: Path) -> list[tuple[str, int]]:
    if not marker.exists():
        return []
    return [(j, int(a)) for j, a in (line.split() for line in marker.read_text().splitlines())]


def kill_master_ten_times(c: Cluster, tmp_path: Path, report: Report, scenario: str) -> None:
    began = time.monotonic()
    c.start_master()
    c.add_worker(slots=5, name="chaos")  # a layer at a time: the DAG outlasts the kills
    marker = tmp_path / "started.txt"
    jobs = layered_dag(c.script("chaos_job.py", JOB), marker, pause=4.0)
    assert len(jobs) == 30
    dag = c.client().submit_dag("chaos", jobs)
    rng = random.Random(15)
    kills = 0
    restarts: list[float] = []
    while kills < KILLS:
        time.sleep(rng.uniform(0.3, 1.2))
        assert len(started(marker)) < 30 or kills >= KILLS - 1, (
            f"the DAG ran ahead of the kills ({kills} so far): slow the jobs down")
        c.kill_master()
        killed_at = time.monotonic()
        kills += 1
        time.sleep(rng.uniform(0.0, 0.5))  # jobs and the worker find the port closed
        c.start_master()  # same data dir / database, same port
        restarts.append(time.monotonic() - killed_at)
    assert len({j for j, _ in started(marker)}) < 30, "every job had started before the last kill"
    client = c.client()
    done = client.wait_dag(dag["id"], timeout=120)
    runtime = time.monotonic() - began
    assert done["status"] == "COMPLETED", (done, c.log(), c.log("worker-0.log"))
    assert done["counts"].get("COMPLETED") == 30, done["counts"]
    for job in client.get_dag(dag["id"])["jobs"]:
        assert job["state"] == "COMPLETED" and job["attempt"] == 1, job
    runs = started(marker)
    assert sorted(runs) == sorted((j.job_id, 1) for j in jobs), runs  # each ran once
    members = client.store_smembers("chaos-ran")
    assert members == {f"{j.job_id}:1" for j in jobs}, members
    assert client.store_get("chaos-counter") == "30"  # no retried incr counted twice
    assert all(client.store_get(f"chaos-out/{j.job_id}") == "written by attempt 1"
               for j in jobs)
    report(scenario, faults=KILLS, attempted="30 jobs, 60 store writes",
           acknowledged="30 jobs, 60 store writes", lost=0, duplicated=0,
           recovery=f"restart to healthy median {statistics.median(restarts):.1f}s "
                    f"(incl. the test's 0-0.5 s pause), DAG {runtime:.0f}s")


def test_ten_master_kills_sqlite(make_cluster: MakeCluster, tmp_path: Path,
                                chaos_report: Report) -> None:
    kill_master_ten_times(make_cluster(lease_seconds=15), tmp_path, chaos_report,
                          "kill -9 of the master, SQLite (restart)")


def test_ten_master_kills_postgres(make_cluster: MakeCluster, tmp_path: Path,
                                  chaos_report: Report) -> None:
    with fresh_postgres_database("titan_chaos") as url:
        c = make_cluster(lease_seconds=15, database_url=url)
        try:
            kill_master_ten_times(c, tmp_path, chaos_report,
                                  "kill -9 of the master, PostgreSQL (restart)")
        finally:
            c.stop()  # before the database is dropped
