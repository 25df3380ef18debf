"""Old DAG runs deleted with their jobs, attempts and log lines: ``titan dags prune``,
``POST /api/v1/dags/prune`` and, hourly, ``TITAN_DAG_RETENTION``.

Without it the database only grew: every job, attempt and log line ever run stayed, and a
master running a busy schedule for months carried all of it. What may go is storage's rule
(:mod:`titan.storage.sql_dag_retention`: finished before the cutoff, in no agent run, not the
latest run of its name); the engine adds that a DAG it holds in memory stays.

Two things keep a prune from getting in the way:

- **A retry of a DAG being pruned.** Bringing a finished DAG back into memory (a retry) and
  choosing a batch to delete both hold the engine's ``revivals`` lock, so either the DAG is
  in memory before the batch is chosen (and stays), or the batch is deleted before the retry
  reads it (a clean "no DAG"). A retry that read rows a batch then deleted made a commit that
  failed, and left the scheduler's memory apart from the database.
- **The writer.** Log lines go :data:`LOG_ROWS` at a time, each delete its own transaction
  through the group-commit writer, then the batch's attempts, jobs and DAG rows: a DAG of
  millions of lines never holds the writer long, and submissions and results go on between.
"""

from __future__ import annotations

import asyncio
import logging

from titan.master.scheduling.engine_core import EngineCore
from titan.storage.base import Transaction
from titan.windows import deletion_cutoff

log = logging.getLogger("titan.master")

#: DAG runs chosen per batch.
BATCH = 50
#: Log lines deleted per transaction (about 20 ms of the writer's time here).
LOG_ROWS = 20_000
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
        async with engine.revivals:
            held = set(engine.sched.dags)

            def choose(tx: Transaction, held: set[int] = held) -> list[int]:
                return tx.prunable_dags(before, BATCH, held)

            ids = await engine.read(choose)
            if not ids:
                break

            def lines(tx: Transaction, ids: list[int] = ids) -> int:
                return tx.delete_log_lines(ids, LOG_ROWS)

            def rows(tx: Transaction, ids: list[int] = ids) -> int:
                return tx.delete_dags(ids)

            while await engine.run(lines) >= LOG_ROWS:
                pass
            await engine.run(rows)
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
