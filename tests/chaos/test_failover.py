"""Chaos: three masters on one PostgreSQL database, the leader killed with ``kill -9`` ten times
while a 300-job DAG runs (issue 19's target; `make test` runs 3 kills under 60 jobs).

A worker and the SDK know all three URLs and follow the leader by themselves; each killed
master is started again at once and rejoins as a standby. Nothing acknowledged may be lost
(every job's store writes are there, the counter is exactly 300), no job may run twice
without an expired lease (every job completes as attempt 1; leases are long), and the DAG
completes. Prints the takeover times (the time from the kill until a master answers as leader).
"""

from __future__ import annotations

import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.chaos.conftest import Report, scale
from tests.conftest import fresh_postgres_database
from tests.integration.test_standby_masters import Master
from titan.client import TitanClient
from titan_sdk import TitanJob

pytestmark = pytest.mark.slow

KILLS = scale(3, 10)
LAYERS, WIDTH = 6, scale(10, 50)

JOB = """
import os, sys, time
from titan import TitanClient

marker, pause = sys.argv[1], float(sys.argv[2])
job, attempt = os.environ["TITAN_JOB_ID"], os.environ["TITAN_ATTEMPT"]
fd = os.open(marker, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
os.write(fd, f"{job} {attempt}\\n".encode())
os.close(fd)
client = TitanClient()
client.store_incr("failover-counter")
time.sleep(pause)
client.store_put(f"failover-out/{job}", f"attempt {attempt}")
"""


def layered(script: str, marker: Path, pause: float) -> list[TitanJob]:
    jobs: list[TitanJob] = []
    for layer in range(LAYERS):
        for i in range(WIDTH):
            parents = [] if layer == 0 else [f"l{layer - 1}_{i}", f"l{layer - 1}_{(i + 1) % WIDTH}"]
            jobs.append(TitanJob(job_id=f"l{layer}_{i}", filename=script, parents=sorted(set(parents)),
                                 args=[str(marker), str(pause)], retries=0))
    return jobs


def leader_of(masters: list[Master]) -> Master | None:
    for m in masters:
        if m.proc.poll() is None:
            status, body = m.health()
            if status == 200 and body.get("role") == "leader":
                return m
    return None


def test_leader_kills_with_three_masters(tmp_path: Path, chaos_report: Report) -> None:
    with fresh_postgres_database("titan_failover") as url:
        env: dict[str, Any] = {"TITAN_LEASE_SECONDS": "60", "TITAN_BLOB_STORE": "database",
                               "PYTHONUNBUFFERED": "1"}
        env = dict(os.environ, **env)
        masters = [Master(tmp_path, f"m{i}", url, env) for i in range(3)]
        workers: list[Any] = []
        try:
            for m in masters:
                m.wait_answering()
            first = leader_of(masters)
            assert first is not None
            urls = [m.url for m in masters]
            token = first.token
            client = TitanClient(url=urls, token=token)
            worker_token = (first.data / "worker.token").read_text().strip()
            wlog = open(tmp_path / "worker.log", "ab")  # noqa: SIM115
            args = [sys.executable, "-m", "titan", "worker", "--slots", "6",
                    "--workdir", str(tmp_path / "wd")]
            for u in urls:
                args += ["--master", u]
            (tmp_path / "wd").mkdir()
            workers.append(subprocess.Popen(args, stdout=wlog, stderr=subprocess.STDOUT,
                                            env=dict(env, TITAN_TOKEN=worker_token),
                                            cwd=tmp_path, start_new_session=True))
            marker = tmp_path / "started.txt"
            script = tmp_path / "failover_job.py"
            script.write_text(JOB)
            jobs = layered(str(script), marker, pause=0.3)
            dag = client.submit_dag("failover", jobs)
            rng = random.Random(19)
            takeovers: list[float] = []
            for _ in range(KILLS):
                time.sleep(rng.uniform(1.0, 2.5))
                leader = leader_of(masters)
                assert leader is not None, [m.log() for m in masters]
                leader.proc.kill()
                killed_at = time.monotonic()
                leader.proc.wait()
                while leader_of(masters) is None:
                    assert time.monotonic() - killed_at < 30, [m.log() for m in masters]
                    time.sleep(0.02)
                takeovers.append(time.monotonic() - killed_at)
                # The killed master comes back, as a standby.
                i = masters.index(leader)
                masters[i] = Master(tmp_path, leader.name, url, env, port=leader.port)
                masters[i].wait_answering()
            done = client.wait_dag(dag["id"], timeout=300)
            assert done["status"] == "COMPLETED", done
            assert done["counts"].get("COMPLETED") == LAYERS * WIDTH, done["counts"]
            for job in client.get_dag(dag["id"])["jobs"]:
                assert job["state"] == "COMPLETED" and job["attempt"] == 1, job
            ran = [tuple(line.split()) for line in marker.read_text().splitlines()]
            assert sorted(ran) == sorted((j.job_id, "1") for j in jobs)  # each ran once
            assert client.store_get("failover-counter") == str(LAYERS * WIDTH)
            assert all(client.store_get(f"failover-out/{j.job_id}") == "attempt 1" for j in jobs)
            chaos_report("kill -9 of the leader, 3 masters on PostgreSQL (failover)",
                         faults=KILLS, attempted=f"{LAYERS * WIDTH} jobs",
                         acknowledged=f"{LAYERS * WIDTH} jobs", lost=0, duplicated=0,
                         recovery=f"takeover median {statistics.median(takeovers):.2f}s, "
                                  f"max {max(takeovers):.2f}s")
        finally:
            for w in workers:
                w.kill()
                w.wait()
            for m in masters:
                m.stop()
