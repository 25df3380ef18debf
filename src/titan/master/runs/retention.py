"""Old runs: archived after ``TITAN_RUN_ARCHIVE_DAYS``, deleted only when retention says so.

Seed 004: "Runs older than 90 days may be archived". Archiving deletes nothing: an archived
run keeps its actions, leaves the Runs list (``?archived=true|all`` brings it back), stays
openable by id and exportable, and can be unarchived. It is the ``archived_at`` flag of the
run row, not a move to other tables: actions are only ever read by run id, so archived ones
cost the live runs nothing where they are, and every read path (the run page, exports,
replays) works unchanged. Deletion is retention's alone (``TITAN_RUN_RETENTION``, ``titan runs
prune``), and spares the retention classes that must outlive it (``titan.retention``).

Both sweeps are master tasks that run at start and hourly. The clock is injected, so the
90-day rule is tested with a clock set forward rather than by waiting.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any, NamedTuple, Protocol, TypeVar

from titan.errors import Conflict
from titan.master.runs.events import run_summary
from titan.master.runs.lookup import run_or_404
from titan.storage.base import Row, RunQuery, Transaction, iter_chunks
from titan.windows import deletion_cutoff

log = logging.getLogger("titan.master")
DAY = 86_400.0
SWEEP_SECONDS = 3600.0
_BATCH = 500
T = TypeVar("T")


class Pruned(NamedTuple):
    """What a prune of exported runs did: deleted ``run_ids``; kept the runs that
    ``changed`` since the export, and those it ``kept`` because they are no longer prunable."""

    run_ids: list[str]
    changed: list[str]
    kept: list[str]


class Committer(Protocol):
    """What Retention uses of the engine (a test hands it a storage of its own)."""

    hub: Any

    async def run(self, fn: Callable[[Transaction], T]) -> T: ...

    async def read(self, fn: Callable[[Transaction], T]) -> T: ...


class Retention:
    """Archiving and deleting old runs, through the engine's group-commit writer."""

    def __init__(self, engine: Committer, archive_days: float = 90.0,
                 clock: Callable[[], float] = time.time) -> None:
        self.engine = engine
        self.archive_days = archive_days
        self.clock = clock

    # -- archiving ----------------------------------------------------------------------------
    async def sweep(self) -> list[str]:
        """Archive every finished run that started more than ``archive_days`` ago (none when
        archiving is off); their ids. Running runs wait until they end."""
        if not self.archive_days:
            return []
        now = self.clock()
        before = now - self.archive_days * DAY

        def op(tx: Transaction) -> list[str]:
            done: list[str] = []
            while True:
                batch = tx.archivable_runs(before, _BATCH)
                if not batch:
                    return done
                done.extend(tx.set_archived(batch, now))

        ids: list[str] = await self.engine.run(op)
        if ids:
            log.info("archived %d agent run(s) older than %g days", len(ids), self.archive_days)
        return ids

    async def set_archived(self, run_id: str, archived: bool) -> Row:
        """Archive or unarchive one run by hand (an operator's call); the run after."""
        now = self.clock()

        def op(tx: Transaction) -> Row:
            run_or_404(tx, run_id)
            if archived and tx.unsettled_runs([run_id]):
                # Hidden from the registry and the intercepts, a running (even over-budget,
                # blocked) run left "nothing needs a look" on the dashboard.
                raise Conflict(f"run {run_id!r} is still running (or its stages or a replay "
                               "of it are): archive it once it has ended",
                               details={"run_id": run_id})
            # Taken out by hand, it stays out for a whole window (the hourly sweep archived
            # it again at once, the run being as old as before).
            tx.set_archived([run_id], now if archived else None,
                            unarchived_at=None if archived else now)
            return run_or_404(tx, run_id)

        run: Row = await self.engine.run(op)
        self.engine.hub.publish("run_updated", dict(run_summary(run),
                                                    archived_at=run.get("archived_at")))
        return run

    async def keep_archiving(self) -> None:
        """Forever (a task of the master): archive what has aged, at start and hourly."""
        while True:
            try:
                await self.sweep()
            except Exception:
                log.exception("archiving agent runs failed")
            await asyncio.sleep(SWEEP_SECONDS)

    # -- deleting -----------------------------------------------------------------------------
    async def prune(self, before: float, dry_run: bool = False,
                    among: list[str] | None = None) -> list[str]:
        """Delete finished runs started before ``before`` (only those in ``among`` when
        given: what an export just saved) whose class allows it, with their actions; ids."""
        def op(tx: Transaction) -> list[str]:
            if dry_run:
                return tx.finished_runs_before(before, 1 << 30, among)
            ids: list[str] = []
            while True:
                batch = tx.finished_runs_before(before, _BATCH, among)
                if not batch:
                    return ids
                tx.delete_runs(batch)
                ids.extend(batch)

        if dry_run:
            found: list[str] = await self.engine.read(op)
            return found
        ids: list[str] = await self.engine.run(op)
        if ids:
            log.info("retention: deleted %d finished agent run(s)", len(ids))
        return ids

    async def prune_exported(self, before: float, exported: dict[str, tuple[int, str | None]],
                             dry_run: bool = False) -> Pruned:
        """Delete the runs an export saved, each only as the export saved it: ``exported``
        maps a run id to the ``(action_count, chain_head)`` the export holds. A run that has
        since recorded an action (a finished run still accepts them: an SDK's late flush)
        is kept and named in ``changed``; its deletion lost that action, which the export
        never held. One no longer prunable (a stage or a replay took it up, its class
        changed) is named in ``kept``; one already gone is in neither."""
        def op(tx: Transaction) -> Pruned:
            done = Pruned([], [], [])
            for chunk in iter_chunks(list(exported), _BATCH):
                rows, _ = tx.list_runs(RunQuery(ids=tuple(chunk), archived=None), len(chunk), 0)
                now = {r["id"]: (r["action_count"], r["chain_head"]) for r in rows}
                prunable = set(tx.finished_runs_before(before, len(chunk), chunk))
                batch = []
                for run_id in chunk:
                    if run_id not in now:
                        continue
                    if run_id not in prunable:
                        done.kept.append(run_id)
                    elif now[run_id] != exported[run_id]:
                        done.changed.append(run_id)
                    else:
                        batch.append(run_id)
                if batch and not dry_run:
                    tx.delete_runs(batch)
                done.run_ids.extend(batch)
            return done

        if dry_run:
            found: Pruned = await self.engine.read(op)
            return found
        pruned: Pruned = await self.engine.run(op)
        if pruned.run_ids:
            log.info("retention: deleted %d exported agent run(s)", len(pruned.run_ids))
        return pruned

    async def keep_retention(self, window: str) -> None:
        """Forever (a task of the master): prune runs older than ``window`` every hour."""
        deletion_cutoff(window, "TITAN_RUN_RETENTION")  # checked at start too (config)
        while True:
            before = deletion_cutoff(window, "TITAN_RUN_RETENTION")
            try:
                await self.prune(before)
            except Exception:
                log.exception("retention: pruning agent runs failed")
            await asyncio.sleep(SWEEP_SECONDS)
