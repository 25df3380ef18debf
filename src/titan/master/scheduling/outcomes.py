"""How jobs end or start again: results and their retries, cancels, a user's retry.

Part of :class:`~titan.master.scheduling.scheduler.Scheduler` (a mixin). A result counts only
from the job's current attempt; a failure is retried with exponential backoff while attempts
remain, and a job that fails for good, or is cancelled, skips its descendants. A user's retry
runs a finished, unsuccessful job again, and its SKIPPED descendants wait for it.
"""

from __future__ import annotations

import math

from titan.master.scheduling import gates, services
from titan.master.scheduling.leasing import attempt_lost
from titan.master.scheduling.protocol import SchedulerCore
from titan.master.scheduling.state import (
    ACTIVE,
    CANCELLED,
    COMPLETED,
    FAILED,
    PENDING,
    RUNNING,
    SKIPPED,
    SUCCEEDED,
    TERMINAL,
    TIMED_OUT,
    Changes,
    DagRec,
    JobRec,
)


class JobOutcomes:
    # -- results ------------------------------------------------------------------------------
    def is_current(self: SchedulerCore, job_id: int, attempt: int,
                   worker_id: str | None = None) -> bool:
        """The attempt is the job's running one (and, given a worker, is leased to it)."""
        job = self.jobs.get(job_id)
        return (job is not None and job.state == RUNNING and job.attempt == attempt
                and (worker_id is None or job.worker_id == worker_id))

    def finish(self: SchedulerCore, job_id: int, attempt: int, exit_code: int | None,
               error: str | None, timed_out: bool, ch: Changes, worker_id: str | None = None,
               released: bool = False, ended_at: float | None = None,
               elapsed: float | None = None, lost: bool = False) -> bool:
        """Apply a result; False (refused) when the attempt is stale or not ``worker_id``'s.
        ``released``: a draining worker handed the job (a service) back; with ``lost``, the
        attempt was lost with what the worker ran it on (a Ray node died under it): ended
        ``LOST`` as a lost lease is, counted towards its limit. ``elapsed``: the
        seconds from the worker taking the attempt to its end, on the worker's monotonic
        clock; the attempt ends that long after it started (the master's lease), never past
        now. A result held while the master was away said the job ran for the whole outage.
        Without it (a worker of an earlier version), ``ended_at``: when its process ended by
        the worker's wall clock, within the attempt's start and now (a clock behind made
        every duration 0)."""
        if not self.is_current(job_id, attempt, worker_id):
            return False
        job = self.jobs[job_id]
        worker = self.workers.get(job.worker_id or "")
        if worker is not None:
            worker.running.discard(job_id)
        if job.is_service and services.settle(self, job, exit_code, error, ch):
            return True
        now = self.now()
        if released and lost:
            # Not the job's failure (docs/reliability.md): no retry spent, as when a worker
            # dies; but counted as a lost lease is, so a job that brings down every node it
            # runs on fails after MAX_LEASE_LOSSES instead of going round for ever.
            attempt_lost(self, job, f"attempt {attempt} lost on worker {job.worker_id}: "
                         f"{error or 'what it ran on is gone'}", ch)
            return True
        if released:
            # Its worker is going down and handed it back (a draining worker's service, any
            # job of a worker stopped hard): it starts again elsewhere, as its next attempt,
            # spending no retry, as when a worker dies.
            reason = f"released by worker {job.worker_id} (it stopped): starts again elsewhere"
            ch.done_attempts.append((job_id, attempt, {
                "state": "RELEASED", "exit_code": exit_code, "error": reason,
                "finished_at": now}))
            self.requeue_unspent(job, ch, reason)
            return True
        end = now
        if elapsed is not None and job.started_at is not None and math.isfinite(elapsed):
            # Both ends on the master's clock: its start, and a length no wall clock moved.
            end = min(now, job.started_at + max(0.0, elapsed))
        elif ended_at is not None and job.started_at is not None and math.isfinite(ended_at):
            # A worker's word, kept within what the master knows: not before the attempt's
            # start, not after now (a hostile or skewed clock moves nothing else).
            end = min(now, max(ended_at, job.started_at))
        if exit_code == 0 and not timed_out:
            ch.done_attempts.append((job_id, attempt, {"state": COMPLETED, "exit_code": 0,
                                                       "finished_at": end}))
            self._set(job, COMPLETED, ch, exit_code=0, error=None, lease_expires=None,
                      finished_at=end)
            self.release_children(job, ch)
            return True
        outcome = TIMED_OUT if timed_out else FAILED
        if error is None:
            error = "timed out" if timed_out else f"exit code {exit_code}"
        ch.done_attempts.append((job_id, attempt, {"state": outcome, "exit_code": exit_code,
                                                   "error": error, "finished_at": end}))
        if job.attempt < job.max_attempts:
            # Doubled per failure: attempts lost with a worker were no failure of the job's.
            failures = max(1, job.attempt - job.unspent_attempts)
            backoff = min(self.retry_backoff * 2 ** (failures - 1), self.retry_backoff_max)
            job.not_before = now + backoff
            self._set(job, PENDING, ch, exit_code=exit_code, error=error, lease_expires=None,
                      worker_id=None, not_before=job.not_before,
                      reason=f"retry {job.attempt + 1}/{job.max_attempts} in {backoff:g}s after: {error}")
            ch.timers.append((job.not_before, "ready", job.id))
        else:
            self._final_failure(job, outcome, ch, exit_code=exit_code, error=error,
                                finished_at=end)
        return True

    def _final_failure(self: SchedulerCore, job: JobRec, state: str, ch: Changes, *,
                       exit_code: int | None = None, error: str | None = None,
                       finished_at: float | None = None) -> None:
        self._set(job, state, ch, exit_code=exit_code, error=error, lease_expires=None,
                  reason=None, finished_at=self.now() if finished_at is None else finished_at)
        self.skip_descendants_of(job, ch)

    # -- cancel and retry ---------------------------------------------------------------------
    def cancel_job(self: SchedulerCore, job: JobRec, ch: Changes,
                   reason: str = "cancelled") -> None:
        if job.state in TERMINAL:
            return
        if job.state == RUNNING:
            worker = self.workers.get(job.worker_id or "")
            if worker is not None:
                worker.running.discard(job.id)
                worker.cancels.append((job.id, job.attempt))
                worker.kill_reasons[(job.id, job.attempt)] = reason
            ch.done_attempts.append((job.id, job.attempt, {"state": CANCELLED, "error": reason,
                                                           "finished_at": self.now()}))
        self._dequeue(job)
        self._set(job, CANCELLED, ch, reason=reason, lease_expires=None, finished_at=self.now())
        self.skip_descendants_of(job, ch)

    def cancel_dag(self: SchedulerCore, dag: DagRec, ch: Changes) -> None:
        dag.cancelled = True
        ch.dags[dag.id]["cancelled"] = True
        for job_id in dag.jobs:
            job = self.jobs[job_id]
            if job.state in ACTIVE:
                self.cancel_job(job, ch, reason="DAG cancelled")

    def retry_job(self: SchedulerCore, job: JobRec, ch: Changes, by: str | None = None) -> None:
        """Run a finished, unsuccessful job again; its SKIPPED descendants wait for it.
        ``by``: who asked (kept with a gate's earlier decision)."""
        job.max_attempts = max(job.max_attempts, job.attempt + 1)
        job.not_before = None
        self._set(job, PENDING, ch, max_attempts=job.max_attempts, reason="retried by a user",
                  exit_code=None, error=None, finished_at=None, not_before=None,
                  **(gates.asked_again(job, by, self.now()) if job.is_gate else {}))
        stack = [self.jobs[c] for c in job.children]
        while stack:
            child = stack.pop()
            if child.state == SKIPPED:
                child.not_before = None
                self._set(child, PENDING, ch, reason=None, finished_at=None, not_before=None)
                stack.extend(self.jobs[c] for c in child.children)
        for j in [job, *[self.jobs[c] for c in _descendants(self, job)]]:
            j.waiting_parents = sum(1 for p in j.parents if self.jobs[p].state not in SUCCEEDED)
        if job.waiting_parents == 0:
            self._runnable(job, ch)


    def retry_dag(self: SchedulerCore, dag: DagRec, ch: Changes,
                  by: str | None = None) -> list[JobRec]:
        """Run every unsuccessful job of a finished DAG again (failed, timed out, cancelled,
        skipped; a gate rejected or expired is asked again, its decision kept as history):
        each waits for its parents as at submission. ``by``: who asked. The jobs retried."""
        redo = [self.jobs[j] for j in dag.jobs
                if self.jobs[j].state in TERMINAL and self.jobs[j].state not in SUCCEEDED]
        for job in redo:
            job.not_before = None
            if job.state == SKIPPED:  # never ran: nothing of it to clear
                self._set(job, PENDING, ch, reason=None, finished_at=None, not_before=None)
                continue
            job.max_attempts = max(job.max_attempts, job.attempt + 1)
            self._set(job, PENDING, ch, max_attempts=job.max_attempts,
                      reason="retried by a user", exit_code=None, error=None, finished_at=None,
                      not_before=None,
                      **(gates.asked_again(job, by, self.now()) if job.is_gate else {}))
        if dag.cancelled:
            dag.cancelled = False
            ch.dags[dag.id]["cancelled"] = False
        for job in redo:
            job.waiting_parents = sum(1 for p in job.parents
                                      if self.jobs[p].state not in SUCCEEDED)
        for job in redo:
            if job.waiting_parents == 0:
                self._runnable(job, ch)
        return redo


def _descendants(sched: SchedulerCore, job: JobRec) -> set[int]:
    seen: set[int] = set()
    stack = list(job.children)
    while stack:
        j = stack.pop()
        if j not in seen:
            seen.add(j)
            stack.extend(sched.jobs[j].children)
    return seen
