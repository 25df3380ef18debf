"""A retry that comes while the failure it answers is still on its way to the database, on a
real engine and SQLite file (the scheduler lets a finished DAG go at once, its rows say so only
once the writer has committed)."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest
from tests.unit.test_engine_fast_path import jobs_of, parked, scenario, specs

from titan.errors import Conflict
from titan.master.scheduling import worker_protocol as proto
from titan.master.scheduling.engine import Engine
from titan.master.scheduling.state import Changes


def test_a_retry_while_the_failure_commits_waits_for_it_and_runs_the_job_again(
        tmp_path: Path) -> None:
    async def test(engine: Engine, queued: list[Changes]) -> None:
        poll = await parked(engine, "w1", 1)
        dag_id = await engine.submit_dag("step", specs(("a", 0)), None)
        [job] = (await asyncio.wait_for(poll, 5))["jobs"]
        gate = threading.Event()
        busy = asyncio.ensure_future(engine.run(lambda tx: gate.wait(10)))
        report = asyncio.create_task(proto.report(engine, "w1", {"results": [
            {"id": job["id"], "attempt": 1, "exit_code": 3}]}))
        while dag_id in engine.sched.dags:  # failed and let go in memory; not yet committed
            await asyncio.sleep(0.005)
        assert (await jobs_of(engine, dag_id))["a"]["state"] == "RUNNING"
        retry = asyncio.create_task(engine.retry_job(job["id"], dag_id))
        await asyncio.sleep(0.1)
        assert not retry.done(), "the retry read the database before the failure was in it"
        gate.set()
        await asyncio.wait_for(retry, 5)
        await report
        await busy
        rows = await jobs_of(engine, dag_id)
        assert rows["a"]["state"] == "READY", rows["a"]
        assert engine.sched.jobs[job["id"]].attempt == 1  # its next run is attempt 2
        attempts = await engine.read(lambda tx: tx.attempts_of(job["id"]))
        assert [(a["attempt"], a["state"]) for a in attempts] == [(1, "FAILED")]

    scenario(tmp_path, test)


def test_a_refused_retry_of_a_finished_dag_leaves_nothing_behind_in_memory(
        tmp_path: Path) -> None:
    async def test(engine: Engine, queued: list[Changes]) -> None:
        poll = await parked(engine, "w1", 1)
        dag_id = await engine.submit_dag("step", specs(("a", 0)), None)
        [job] = (await asyncio.wait_for(poll, 5))["jobs"]
        await proto.report(engine, "w1", {"results": [
            {"id": job["id"], "attempt": 1, "exit_code": 0}]})
        with pytest.raises(Conflict, match="this one is COMPLETED"):
            await engine.retry_job(job["id"], dag_id)
        assert dag_id not in engine.sched.dags and not engine.retiring

    scenario(tmp_path, test)
