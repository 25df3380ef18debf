"""The storage interface's schedules part: cron schedules and what each of their ticks did
(contract: tests/contract/test_storage_schedules.py).

A schedule row holds the DAG it submits (its jobs as the submission validated them) and where
it stands (``next_fire_at``); a fire row records one tick dealt with. (schedule, tick) is
unique: the fire is inserted in the transaction that submits its DAG, so a tick that was
already recorded aborts that transaction instead of starting a second run.
"""

from __future__ import annotations

import abc

from titan.storage.rows import Row

#: What a tick did.
SUBMITTED, SKIPPED, QUEUED, FAILED = "submitted", "skipped", "queued", "failed"


class SchedulesTransaction(abc.ABC):
    """What the schedule service keeps durably."""

    @abc.abstractmethod
    def insert_schedule(self, row: Row) -> int | None:
        """Insert a schedule (``jobs`` as a list of job specs); its id, or None when a
        schedule of that name exists already (nothing is written then)."""

    @abc.abstractmethod
    def get_schedule(self, name: str) -> Row | None:
        """One schedule by name (``jobs`` decoded), or None."""

    @abc.abstractmethod
    def list_schedules(self) -> list[Row]:
        """Every schedule, by name (``jobs`` decoded)."""

    @abc.abstractmethod
    def update_schedule(self, schedule_id: int, fields: Row) -> None:
        """Set some columns of a schedule (``jobs`` given as Python values, as inserted)."""

    @abc.abstractmethod
    def delete_schedule(self, schedule_id: int) -> bool:
        """Delete a schedule and its fire records (the DAGs it started stay, naming it);
        True if it existed."""

    @abc.abstractmethod
    def record_fire(self, row: Row) -> int | None:
        """Record what a tick did: ``schedule_id``, ``tick`` (None for a run by hand),
        ``fired_at``, ``outcome``, ``dag_id``, ``error``. Its id, or None when that
        schedule's tick is recorded already (nothing is written then)."""

    @abc.abstractmethod
    def start_queued_fire(self, fire_id: int, dag_id: int) -> bool:
        """A queued fire became a run: it is ``submitted`` with ``dag_id`` now. False (and
        nothing changed) when that fire is no longer queued."""

    @abc.abstractmethod
    def fail_queued_fire(self, fire_id: int, error: str) -> bool:
        """A queued fire's run could not start: it is ``failed`` with ``error``. False (and
        nothing changed) when that fire is no longer queued. The schedule's other queued
        fires stay queued (a backfill's later ticks are still tried)."""

    @abc.abstractmethod
    def drop_queued_fires(self, schedule_id: int, why: str) -> int:
        """The schedule's queued fires become ``skipped`` (``error``: why); how many."""

    @abc.abstractmethod
    def schedule_fires(self, schedule_id: int, limit: int, *,
                       started: bool = False) -> list[Row]:
        """A schedule's latest fires, newest first, each with the name, run and status of
        the DAG it started (``dag_name``, ``dag_run``, ``dag_status``; None without one).
        ``started``: only those whose DAG is still there, the run started last first (the
        highest DAG id: a queued fire keeps its older id when it becomes a run)."""

    @abc.abstractmethod
    def schedule_states(self) -> dict[int, Row]:
        """For each schedule with fires: ``last_dag_id`` (the DAG it started last, tick or
        by hand: the highest DAG id), ``live`` (the ids of the DAGs it started that are not
        finished, oldest first) and ``queued`` (its queued fires as ``{"id", "tick"}``, oldest
        tick first: one, or a backfill's) — what a restarted master needs to apply the
        overlap policy."""
