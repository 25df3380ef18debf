"""Old DAG runs deleted with their jobs, attempts and log lines: ``titan dags prune``,
``POST /api/v1/dags/prune`` and, hourly, ``TITAN_DAG_RETENTION``.

Without it the database only grew: every job, attempt and log line ever run stayed, and a
master running a busy schedule for months carried all of it. What may go is storage's rule
(:mod:`titan.storage.sql_dag_retention`: finished before the cutoff, in no agent run, not the
latest run of its name); the engine adds that a DAG it holds in memory (one a retry just
brought back) stays. Each batch is its own transaction through the group-commit writer, so a
large prune never holds the writer long: submissions and results go on between batches.
"""

from __future__ import annotations

import asyncio
import logging

from titan.master.scheduling.engine_core import EngineCore
from titan.storage.base import Transaction
from titan.windows import deletion_cutoff

log = logging.getLogger("titan.master")

#: DAG runs deleted per transaction (each with all its jobs' attempts and log lines).
BATCH = 50
SWEEP_SECONDS = 3600.0
ENV = "TITAN_DAG_RETENTION"


async def prune_dags(engine: EngineCore, before: float, dry_run: bool = False) -> list[int]:
    """Delete the DAG runs retention may delete that finished before ``before``; their ids
    (with ``dry_run``: the ids that would go, nothing deleted)."""
    if dry_run:
        held = set(engine.sched.dags)
        found: list[int] = await engine.read(
            lambda tx: tx.prunable_dags(before, 1 << 30, held))
        return found
    deleted: list[int] = []
    while True:
        held = set(engine.sched.dags)  # read on the loop, between batches

        def op(tx: Transaction, held: set[int] = held) -> list[int]:
            ids = tx.prunable_dags(before, BATCH, held)
            tx.delete_dags(ids)
            return ids

        ids: list[int] = await engine.run(op)
        if not ids:
            break
        deleted.extend(ids)
    if deleted:
        log.info("retention: deleted %d finished DAG run(s) with their jobs and logs",
                 len(deleted))
    return deleted


async def keep_pruning(engine: EngineCore, window: str) -> None:
    """Forever (a task of the master): prune DAG runs older than ``window``, at start and
    hourly."""
    deletion_cutoff(window, ENV)  # checked at start too (config)
    while True:
        try:
            await prune_dags(engine, deletion_cutoff(window, ENV))
        except Exception:
            log.exception("retention: pruning DAG runs failed")
        await asyncio.sleep(SWEEP_SECONDS)
