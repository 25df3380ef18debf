"""What the scheduler's parts use of the scheduler: one Protocol for all of them.

Leasing (:mod:`.leasing`), results, cancels and retries (:mod:`.outcomes`), a DAG's progress
(:mod:`.progress`), gates (:mod:`.gates`), services (:mod:`.services`), budget holds
(:mod:`.holds`) and worker membership (:mod:`.membership`) are pieces of
:class:`~titan.master.scheduling.scheduler.Scheduler`'s state machine kept in their own modules.
They take the scheduler as this Protocol rather than as the class, so none of them imports
the scheduler (which imports them): the dependency points one way, and what a part may touch
of the scheduler is written down here.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from typing import Protocol

from titan.master.scheduling.state import Changes, DagRec, JobRec, WorkerRec
from titan.storage.base import Row


class SchedulerCore(Protocol):
    jobs: dict[int, JobRec]
    dags: dict[int, DagRec]
    workers: dict[str, WorkerRec]
    queues: defaultdict[str, list[tuple[int, int]]]
    unschedulable: defaultdict[str, set[int]]
    blocked_runs: set[str]  # agent runs over budget
    held: defaultdict[str, list[int]]  # their READY jobs set aside, by run
    # Services whose address is published, by (DAG name, job id): services.py
    published: defaultdict[tuple[str, str], set[int]]
    # Attempts lost and run again: their worker, the reason given for its late result
    superseded: dict[tuple[int, int], tuple[str | None, Row]]
    now: Callable[[], float]
    leases_held: Callable[[], bool]  # the database is away: no lease expires
    lease_seconds: float
    retry_backoff: float
    retry_backoff_max: float

    def capable(self, requirement: str) -> bool: ...
    def is_current(self, job_id: int, attempt: int, worker_id: str | None = None) -> bool: ...
    def _dequeue(self, job: JobRec) -> None: ...
    def _enqueue(self, job: JobRec, ch: Changes, *, already_ready: bool = False) -> None: ...
    def _push(self, job: JobRec) -> None: ...
    def _runnable(self, job: JobRec, ch: Changes) -> None: ...
    def _set(self, job: JobRec, state: str, ch: Changes, **fields: object) -> None: ...
    def _final_failure(self, job: JobRec, state: str, ch: Changes, *,
                       exit_code: int | None = None, error: str | None = None,
                       finished_at: float | None = None) -> None: ...
    def held_back(self, job: JobRec, ch: Changes) -> bool: ...
    def lose_worker(self, worker: WorkerRec, ch: Changes, state: str = "lost") -> None: ...
    def requeue_unspent(self, job: JobRec, ch: Changes, reason: str) -> None: ...
    def cancel_job(self, job: JobRec, ch: Changes, reason: str = "cancelled") -> None: ...
    def release_children(self, job: JobRec, ch: Changes) -> None: ...
    def skip_descendants_of(self, job: JobRec, ch: Changes,
                            include: list[JobRec] | None = None) -> None: ...
