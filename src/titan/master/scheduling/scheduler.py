"""The scheduler: a synchronous state machine over in-memory records.

It decides in microseconds and never does I/O. Each public method mutates records and writes
what it did into a :class:`~titan.master.scheduling.state.Changes`; the engine commits that and only
then tells the outside world. Ready queues are one heap per capability, ordered by priority
(higher first) then submission order; a job whose capability no live worker offers is parked
as PENDING with a reason and costs the other queues nothing.

This module is the records' bookkeeping and the ready queues; the rest of the state machine
are mixins that see the scheduler only as :class:`~.protocol.SchedulerCore`: leasing
(:mod:`.leasing`), results, cancels and retries (:mod:`.outcomes`), a DAG's progress
(:mod:`.progress`), worker membership (:mod:`.membership`) and budget holds (:mod:`.holds`),
beside the rules of gates (:mod:`.gates`) and services (:mod:`.services`).
"""

from __future__ import annotations

import heapq
import time
from collections import defaultdict
from collections.abc import Callable

from titan.master.scheduling import gates, services
from titan.master.scheduling.holds import RunHolds
from titan.master.scheduling.leasing import Leasing
from titan.master.scheduling.membership import WorkerMembership
from titan.master.scheduling.outcomes import JobOutcomes
from titan.master.scheduling.progress import DagProgress
from titan.master.scheduling.state import (
    NO_WORKER,
    PENDING,
    READY,
    RUNNING,
    TERMINAL,
    Changes,
    DagRec,
    JobRec,
    WorkerRec,
    job_event,
)
from titan.storage.base import Row


class Scheduler(Leasing, JobOutcomes, DagProgress, WorkerMembership, RunHolds):
    def __init__(self, *, lease_seconds: float, affinity_wait: float, retry_backoff: float,
                 retry_backoff_max: float, clock: Callable[[], float] = time.time) -> None:
        self.lease_seconds = lease_seconds
        self.affinity_wait = affinity_wait
        self.retry_backoff = retry_backoff
        self.retry_backoff_max = retry_backoff_max
        self.now = clock
        self.jobs: dict[int, JobRec] = {}
        self.dags: dict[int, DagRec] = {}
        self.workers: dict[str, WorkerRec] = {}
        self.queues: defaultdict[str, list[tuple[int, int]]] = defaultdict(list)
        self.unschedulable: defaultdict[str, set[int]] = defaultdict(set)
        self.blocked_runs: set[str] = set()  # agent runs over budget (see holds.py)
        self.held: defaultdict[str, list[int]] = defaultdict(list)
        #: The services whose address is published, by (DAG name, job id): which run's
        #: service the key ``services/<dag>/<job_id>`` names (services.py).
        self.published: defaultdict[tuple[str, str], set[int]] = defaultdict(set)
        #: Attempts whose lease was lost and whose job went again, by (job, attempt): the
        #: worker that held it, and what the refusal of its late result tells that worker
        #: (leasing.py; a restart forgets them).
        self.superseded: dict[tuple[int, int], tuple[str | None, Row]] = {}
        #: While this says so (the database is away), a lease that runs out is renewed rather
        #: than expired: workers could not renew it, their heartbeats refused (leasing.py).
        self.leases_held: Callable[[], bool] = lambda: False

    # -- state bookkeeping --------------------------------------------------------------------
    def _set(self, job: JobRec, state: str, ch: Changes, **fields: object) -> None:
        dag = self.dags[job.dag_id]
        if job.is_service and (state == RUNNING) != (job.state == RUNNING):
            services.moved(self, job, state, ch)
        if state != job.state:
            dag.counts[job.state] -= 1
            dag.counts[state] += 1
            job.state = state
        for k, v in fields.items():
            setattr(job, k, v)
        row = ch.jobs[job.id]
        row["state"] = state
        for k, v in fields.items():
            row["lease_expires_at" if k == "lease_expires" else k] = v
        if state in TERMINAL:
            row.setdefault("finished_at", self.now())
            ch.finished_jobs.append(job.id)
        ch.touched_dags.add(job.dag_id)
        ch.events.append(("job_updated", job_event(job)))

    # -- becoming runnable --------------------------------------------------------------------
    def _runnable(self, job: JobRec, ch: Changes) -> None:
        if job.is_gate:
            gates.open_gate(self, job, ch)
            return
        now = self.now()
        if job.not_before is None and job.delay > 0:
            job.not_before = now + job.delay
            self._set(job, PENDING, ch, not_before=job.not_before,
                      reason=f"delay: runnable {job.delay:g}s after its parents finished")
        if job.not_before is not None and job.not_before > now:
            ch.timers.append((job.not_before, "ready", job.id))
            return
        self._enqueue(job, ch)

    def timer(self, kind: str, job_id: int, ch: Changes) -> None:
        job = self.jobs.get(job_id)
        if job is None:
            return
        if kind == "ready" and job.state == PENDING and job.waiting_parents == 0:
            if job.not_before is not None and job.not_before <= self.now():
                self._enqueue(job, ch)
            elif job.not_before is not None:
                # The loop's monotonic clock fired a hair before the wall clock got there:
                # dropping the timer would leave the job PENDING for ever.
                ch.timers.append((job.not_before, "ready", job.id))
        elif kind == "affinity" and job.state == READY and (job.queued_on or "").startswith("worker:"):
            worker = self.workers.get(job.queued_on[7:])  # type: ignore[index]
            if worker is not None and job.id in worker.private:
                worker.private.remove(job.id)
            self._push(job)
            ch.dispatch = True
        elif kind == "lease":
            self._lease_timer(job, ch)
        elif kind == "approval":
            gates.expire_if_due(self, job, ch)

    def _enqueue(self, job: JobRec, ch: Changes, *, already_ready: bool = False) -> None:
        if not self.capable(job.requirement) and not already_ready:
            self.unschedulable[job.requirement].add(job.id)
            job.queued_on = None
            self._set(job, PENDING, ch,
                      reason=f"{NO_WORKER}{job.requirement}")
            return
        self.unschedulable[job.requirement].discard(job.id)
        if not already_ready:
            self._set(job, READY, ch, reason=None, ready_at=self.now())
        preferred = self._preferred_worker(job)
        if preferred is not None:
            job.queued_on = f"worker:{preferred.id}"
            preferred.private.append(job.id)
            ch.timers.append((self.now() + self.affinity_wait, "affinity", job.id))
        else:
            self._push(job)
        ch.dispatch = True

    def _push(self, job: JobRec) -> None:
        job.queued_on = job.requirement
        heapq.heappush(self.queues[job.requirement], (-job.priority, job.id))

    def _preferred_worker(self, job: JobRec) -> WorkerRec | None:
        if not job.affinity or not job.parents:
            return None
        parent = self.jobs.get(job.parents[0])
        worker = self.workers.get(parent.worker_id or "") if parent else None
        if worker and worker.live and job.requirement in worker.capabilities:
            return worker
        return None

    def _dequeue(self, job: JobRec) -> None:
        self.unschedulable[job.requirement].discard(job.id)
        if job.queued_on and job.queued_on.startswith("worker:"):
            worker = self.workers.get(job.queued_on[7:])
            if worker is not None and job.id in worker.private:
                worker.private.remove(job.id)
        job.queued_on = None  # heap entries are dropped lazily when they surface
