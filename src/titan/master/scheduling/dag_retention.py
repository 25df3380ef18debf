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
  The batch is recorded (``meta`` :data:`PENDING`) with its first lines, so a master stopped
  in the middle finishes it when it starts again (:func:`finish_interrupted`).

Files the pruned runs' jobs published stay when they are the newest of their name or store
key; their older versions go after the runs (:func:`titan.master.file_retention.prune_files`).
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging

from titan.master.file_retention import prune_files
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
#: The ``meta`` key holding the batch being deleted (a JSON list of DAG ids; ``[]``: none).
PENDING = "dag_prune_pending"


async def prune_dags(engine: EngineCore, before: float, dry_run: bool = False) -> list[int]:
    """Delete the DAG runs retention may delete that finished before ``before``; their ids
    (with ``dry_run``: the ids that would go, nothing deleted). A batch a stopped master
    left half deleted is finished first."""
    if dry_run:
        held = set(engine.sched.dags)
        found: list[int] = await engine.read(
            lambda tx: tx.prunable_dags(before, 1 << 30, held))
        return found
    deleted: list[int] = []
    first = True
    while True:
        async with engine.revivals:
            if first:  # in the same hold of the lock as the first choice
                deleted, first = await _finish_interrupted(engine), False
            held = set(engine.sched.dags)

            def choose(tx: Transaction, held: set[int] = held) -> list[int]:
                return tx.prunable_dags(before, BATCH, held)

            ids = await engine.read(choose)
            if not ids:
                break
            await _delete(engine, ids)
        deleted.extend(ids)
    if deleted:
        log.info("retention: deleted %d finished DAG run(s) with their jobs and logs",
                 len(deleted))
    # The old versions of files their jobs published go too (the newest of each name and
    # store key stay); those of runs pruned before as well, and of a batch a stop cut short.
    await prune_files(engine, orphaned=True)
    return deleted


async def finish_interrupted(engine: EngineCore) -> list[int]:
    """Finish the batch a master stopped in the middle of (its log lines partly deleted):
    at start, and before a prune. Its ids."""
    async with engine.revivals:
        return await _finish_interrupted(engine)


async def _finish_interrupted(engine: EngineCore) -> list[int]:
    record: str | None = await engine.read(lambda tx: tx.get_meta(PENDING))
    found = json.loads(record or "[]")
    if not found:
        return []
    # A DAG retried since is in memory: it stays (its log is what is left of it).
    ids = [i for i in found if i not in engine.sched.dags]
    log.info("retention: finishing the deletion of %d DAG run(s) a stopped master left "
             "half done", len(ids))
    await _delete(engine, ids)  # (an empty batch clears the record)
    return ids


async def finish_at_start(engine: EngineCore) -> None:
    """A task of the master at start: :func:`finish_interrupted`, logged if it fails."""
    try:
        await finish_interrupted(engine)
    except Exception:
        log.exception("retention: finishing an interrupted prune failed")


async def _delete(engine: EngineCore, ids: list[int]) -> None:
    """Delete a batch: recorded first, in the transaction of its first log lines, so a master
    stopped before its rows go finishes it when it starts again (a DAG listed with half its
    log was what such a stop left)."""
    def lines(tx: Transaction, first: bool) -> int:
        if first:
            tx.set_meta(PENDING, json.dumps(ids))
        return tx.delete_log_lines(ids, LOG_ROWS) if ids else 0

    def rows(tx: Transaction) -> int:
        tx.set_meta(PENDING, "[]")
        return tx.delete_dags(ids) if ids else 0

    if ids:
        first = True
        while await engine.run(functools.partial(lines, first=first)) >= LOG_ROWS:
            first = False
    await engine.run(rows)


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
