"""DAG retention against a retry on a real engine and SQLite file: whichever comes first,
the scheduler's memory and the database agree afterwards.

A retry brings a finished DAG back into memory from its rows. A prune that chose the DAG
before and deleted it after that read left the scheduler holding a DAG the database no longer
had: its commits failed (a foreign key, once a worker took the job) and the master stopped
handing out jobs (a QA pass on retention)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from tests.contract.test_storage import dag_row, job_row

from titan.errors import NotFound
from titan.master.config import MasterConfig
from titan.master.events import EventHub
from titan.master.scheduling.dag_retention import prune_dags
from titan.master.scheduling.engine import Engine
from titan.storage import open_storage

DAY = 86_400.0


def old_failed_runs(url: str) -> tuple[int, int]:
    """Two finished runs of ``etl`` (the second the latest): the first's (dag, job) ids."""
    storage = open_storage(url)
    old = time.time() - 3 * DAY
    with storage.transaction() as tx:
        ids = []
        for run in (1, 2):
            dag_id = tx.insert_dag(dag_row("etl", run))
            (job,) = tx.insert_jobs([job_row(dag_id, "extract")])
            tx.update_dags({dag_id: {"status": "FAILED", "finished_at": old}})
            tx.update_jobs({job: {"state": "FAILED", "finished_at": old}})
            ids.append((dag_id, job))
    storage.close()
    return ids[0]


@pytest.mark.parametrize("first", ["prune", "retry"])
def test_a_retry_and_a_prune_of_the_same_dag_leave_memory_and_database_agreeing(
        tmp_path: Path, first: str) -> None:
    url = f"sqlite:///{tmp_path / 'titan.db'}"
    dag_id, job = old_failed_runs(url)
    storage = open_storage(url)

    async def run() -> None:
        engine = Engine(MasterConfig(), storage, EventHub())
        await engine.start()
        try:
            prune = lambda: prune_dags(engine, time.time() - DAY)  # noqa: E731
            retry = lambda: engine.retry_job(job, dag_id)  # noqa: E731
            tasks = [asyncio.create_task(f()) for f in ((prune, retry) if first == "prune"
                                                        else (retry, prune))]
            results = await asyncio.gather(*tasks, return_exceptions=True)
            pruned, retried = results if first == "prune" else results[::-1]
            row = await engine.read(lambda tx: tx.get_dag(dag_id))
            if first == "prune":  # the retry finds the DAG gone, cleanly
                assert pruned == [dag_id] and row is None
                assert isinstance(retried, NotFound), retried
                assert dag_id not in engine.sched.dags
            else:  # the DAG is back in memory before the prune chooses: it stays
                assert pruned == [] and retried is None
                assert row is not None and dag_id in engine.sched.dags
                job_row_now = await engine.read(lambda tx: tx.get_job(job))
                assert job_row_now is not None and job_row_now["state"] in ("PENDING", "READY")
        finally:
            await engine.stop()
            storage.close()

    asyncio.run(run())


def test_a_prune_stopped_half_way_is_finished_by_the_next_start(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A master killed while a batch's log lines went (they go 20,000 a transaction, before
    # the rows) left every DAG of it listed as finished with part of its log, and nothing
    # came back to it (a QA pass on the engine's contracts).
    from titan.master.scheduling import dag_retention

    url = f"sqlite:///{tmp_path / 'titan.db'}"
    dag_id, job = old_failed_runs(url)
    storage = open_storage(url)
    with storage.transaction() as tx:
        tx.add_log_lines([{"job": job, "attempt": 1, "seq": i, "stream": "stdout", "ts": 1.0,
                           "line": f"line {i}"} for i in range(1, 26)])
    storage.close()
    monkeypatch.setattr(dag_retention, "LOG_ROWS", 10)

    class Killed(Exception):
        pass

    async def first_master() -> None:
        engine = Engine(MasterConfig(), open_storage(url), EventHub())
        await engine.start()
        real_run, calls = engine.run, []

        async def dies_after_the_first_lines(fn):  # type: ignore[no-untyped-def]
            calls.append(fn)
            if len(calls) == 2:
                raise Killed  # what a kill -9 leaves: the first lines gone, nothing more
            return await real_run(fn)

        engine.run = dies_after_the_first_lines  # type: ignore[method-assign]
        try:
            with pytest.raises(Killed):
                await dag_retention.prune_dags(engine, time.time() - DAY)
        finally:
            engine.run = real_run  # type: ignore[method-assign]
            await engine.stop()
            engine.storage.close()

    asyncio.run(first_master())
    storage = open_storage(url)
    with storage.transaction() as tx:  # half done: the DAG listed, its log cut
        assert tx.get_dag(dag_id) is not None
        assert len(tx.log_lines(job, 1)) == 15
        assert tx.get_meta(dag_retention.PENDING) == f"[{dag_id}]"
    storage.close()

    async def next_master() -> None:
        engine = Engine(MasterConfig(), open_storage(url), EventHub())
        await engine.start()
        try:
            assert await dag_retention.finish_interrupted(engine) == [dag_id]
            row = await engine.read(lambda tx: tx.get_dag(dag_id))
            lines = await engine.read(lambda tx: tx.log_lines(job, 1))
            pending = await engine.read(lambda tx: tx.get_meta(dag_retention.PENDING))
            assert row is None and lines == [] and pending == "[]"
            assert await dag_retention.finish_interrupted(engine) == []  # nothing left to do
        finally:
            await engine.stop()
            engine.storage.close()

    asyncio.run(next_master())
