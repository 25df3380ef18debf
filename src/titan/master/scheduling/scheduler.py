"""The scheduler: a synchronous state machine over in-memory records.

It decides in microseconds and never does I/O. Each public method mutates records and writes
what it did into a :class:`~titan.master.scheduling.state.Changes`; the engine commits that and only
then tells the outside world. Ready queues are one heap per capability, ordered by priority
(higher first) then submission order; a job whose capability no live worker offers is parked
as PENDING with a reason and costs the other queues nothing.
"""

from __future__ import annotations

import heapq
import time
from collections import defaultdict
from collections.abc import Callable, Iterable

from titan.master.scheduling import gates, services
from titan.master.scheduling.holds import RunHolds
from titan.master.scheduling.membership import WorkerMembership
from titan.master.scheduling.state import (
    ACTIVE,
    CANCELLED,
    COMPLETED,
    FAILED,
    PENDING,
    READY,
    RUNNING,
    SKIPPED,
    SUCCEEDED,
    TERMINAL,
    TIMED_OUT,
    WAITING_APPROVAL,
    Changes,
    DagRec,
    JobRec,
    WorkerRec,
    dag_status,
    job_event,
)

MAX_LEASE_LOSSES = 5


class Scheduler(WorkerMembership, RunHolds):
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

    def settle_dags(self, ch: Changes) -> None:
        """Recompute the status of every DAG this step touched; retire finished ones."""
        for dag_id in ch.touched_dags:
            dag = self.dags.get(dag_id)
            if dag is None:
                continue
            status = dag_status(dag.counts)
            if status == dag.status:
                continue
            fields: dict[str, object] = {"status": status}
            if dag.started_at is None and status != "WAITING":
                dag.started_at = fields["started_at"] = self.now()
            dag.status = status
            if status not in ("WAITING", "RUNNING"):
                fields["finished_at"] = self.now()
                ch.finished_dags.append(dag_id)
                self._retire(dag)
            ch.dags[dag_id].update(fields)
            ch.events.append(("dag_updated", {"id": dag_id, "name": dag.name, "run": dag.run,
                                              "status": status, "agent_run_id": dag.agent_run_id}))
            if dag.agent_run_id:
                ch.events.append(("agent_run_updated", {"id": dag.agent_run_id, "dag_id": dag_id,
                                                        "status": status}))

    def _retire(self, dag: DagRec) -> None:
        for job_id in dag.jobs:
            job = self.jobs.pop(job_id, None)
            if job is not None and job.queued_on is not None:
                self.unschedulable[job.requirement].discard(job.id)
        del self.dags[dag.id]

    # -- loading ------------------------------------------------------------------------------
    def load(self, dag: DagRec, jobs: list[JobRec], ch: Changes) -> None:
        """Adopt a DAG (new, recovered or revived) and start whatever can start."""
        self.dags[dag.id] = dag
        by_name = {j.job_id: j for j in jobs}
        for job in jobs:
            self.jobs[job.id] = job
            dag.jobs.append(job.id)
            dag.counts[job.state] += 1
        for job in jobs:
            parent_names = job.row["parents"]
            job.parents = [by_name[p].id for p in parent_names]
            for p in job.parents:
                self.jobs[p].children.append(job.id)
        for job in jobs:
            self._reconsider(job, ch)
        ch.touched_dags.add(dag.id)

    def _reconsider(self, job: JobRec, ch: Changes) -> None:
        """Put a job loaded from storage where its state says it belongs."""
        parents = [self.jobs[p] for p in job.parents]
        job.waiting_parents = sum(1 for p in parents if p.state not in SUCCEEDED)
        if job.state == READY:
            self._enqueue(job, ch, already_ready=True)
        elif job.state == RUNNING:
            # Keep the lease (never start twice what may still run); a worker that is gone
            # lets it expire, and the job is re-queued then.
            job.lease_expires = max(job.lease_expires or 0.0, self.now() + self.lease_seconds)
            ch.timers.append((job.lease_expires, "lease", job.id))
            worker = self.workers.get(job.worker_id or "")
            if worker is not None:
                worker.running.add(job.id)
        elif job.state == PENDING:
            if any(p.state in TERMINAL and p.state not in SUCCEEDED for p in parents):
                bad = next(p for p in parents if p.state in TERMINAL and p.state not in SUCCEEDED)
                self.skip_descendants_of(bad, ch, include=[job])
            elif job.waiting_parents == 0:
                self._runnable(job, ch)
        elif job.state == WAITING_APPROVAL:
            gates.rearm(self, job, ch)

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
                      reason=f"waiting for a worker with capability {job.requirement}")
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

    # -- leasing ------------------------------------------------------------------------------
    def take(self, worker: WorkerRec, n: int, ch: Changes) -> list[JobRec]:
        """Lease up to ``n`` jobs to a worker: its affinity jobs first, then the best heads."""
        taken: list[JobRec] = []
        while len(taken) < n and worker.private:
            job = self.jobs.get(worker.private.popleft())
            if job is not None and job.state == READY and not self.held_back(job, ch):
                self._lease(job, worker, ch)
                taken.append(job)
        while len(taken) < n:
            best_cap, best = None, None
            for cap in worker.capabilities:
                heap = self.queues.get(cap)
                while heap:
                    job = self.jobs.get(heap[0][1])
                    if (job is not None and job.state == READY and job.queued_on == cap
                            and not self.held_back(job, ch)):
                        break
                    heapq.heappop(heap)  # stale (cancelled, leased, re-queued) or held
                if heap and (best is None or heap[0] < best):
                    best_cap, best = cap, heap[0]
            if best_cap is None:
                break
            heapq.heappop(self.queues[best_cap])
            job = self.jobs[best[1]]  # type: ignore[index]
            self._lease(job, worker, ch)
            taken.append(job)
        return taken

    def _lease(self, job: JobRec, worker: WorkerRec, ch: Changes) -> None:
        now = self.now()
        job.queued_on = None
        expires = now + self.lease_seconds
        self._set(job, RUNNING, ch, attempt=job.attempt + 1, worker_id=worker.id,
                  lease_expires=expires, started_at=now, reason=None)
        worker.running.add(job.id)
        ch.new_attempts.append({"job": job.id, "attempt": job.attempt, "worker_id": worker.id,
                                "started_at": now, "state": RUNNING})
        ch.timers.append((expires, "lease", job.id))

    def renew(self, worker: WorkerRec, running: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
        """Heartbeat: extend the leases the worker still holds; list attempts it must kill."""
        kill: list[tuple[int, int]] = []
        expires = self.now() + self.lease_seconds
        for job_id, attempt in running:
            job = self.jobs.get(job_id)
            if job and job.state == RUNNING and job.attempt == attempt and job.worker_id == worker.id:
                job.lease_expires = expires
                worker.running.add(job_id)
            else:
                kill.append((job_id, attempt))
        return kill

    def _lease_timer(self, job: JobRec, ch: Changes) -> None:
        if job.state != RUNNING or job.lease_expires is None:
            return
        if job.lease_expires > self.now():
            ch.timers.append((job.lease_expires, "lease", job.id))  # renewed meanwhile
            return
        worker = self.workers.get(job.worker_id or "")
        if worker is not None:
            worker.running.discard(job.id)
        job.lease_losses += 1
        reason = f"lease of attempt {job.attempt} expired on worker {job.worker_id}"
        ch.done_attempts.append((job.id, job.attempt, {"state": "LOST", "error": reason,
                                                       "finished_at": self.now()}))
        if job.is_service and services.lost(self, job, reason, ch):
            return
        if job.lease_losses >= MAX_LEASE_LOSSES:
            self._final_failure(job, FAILED, ch, error=f"{reason} ({job.lease_losses} times)")
            return
        # A lost worker is not the job's fault: re-queue without spending a retry.
        self._set(job, PENDING, ch, reason=reason, worker_id=None, lease_expires=None)
        self._enqueue(job, ch)

    # -- results ------------------------------------------------------------------------------
    def is_current(self, job_id: int, attempt: int, worker_id: str | None = None) -> bool:
        """The attempt is the job's running one (and, given a worker, is leased to it)."""
        job = self.jobs.get(job_id)
        return (job is not None and job.state == RUNNING and job.attempt == attempt
                and (worker_id is None or job.worker_id == worker_id))

    def finish(self, job_id: int, attempt: int, exit_code: int | None, error: str | None,
               timed_out: bool, ch: Changes, worker_id: str | None = None,
               released: bool = False) -> bool:
        """Apply a result; False (refused) when the attempt is stale or not ``worker_id``'s.
        ``released``: a draining worker handed the job (a service) back."""
        if not self.is_current(job_id, attempt, worker_id):
            return False
        job = self.jobs[job_id]
        worker = self.workers.get(job.worker_id or "")
        if worker is not None:
            worker.running.discard(job_id)
        if job.is_service and services.settle(self, job, exit_code, error, released, ch):
            return True
        now = self.now()
        if exit_code == 0 and not timed_out:
            ch.done_attempts.append((job_id, attempt, {"state": COMPLETED, "exit_code": 0,
                                                       "finished_at": now}))
            self._set(job, COMPLETED, ch, exit_code=0, error=None, lease_expires=None,
                      finished_at=now)
            self.release_children(job, ch)
            return True
        outcome = TIMED_OUT if timed_out else FAILED
        if error is None:
            error = "timed out" if timed_out else f"exit code {exit_code}"
        ch.done_attempts.append((job_id, attempt, {"state": outcome, "exit_code": exit_code,
                                                   "error": error, "finished_at": now}))
        if job.attempt < job.max_attempts:
            backoff = min(self.retry_backoff * 2 ** (job.attempt - 1), self.retry_backoff_max)
            job.not_before = now + backoff
            self._set(job, PENDING, ch, exit_code=exit_code, error=error, lease_expires=None,
                      worker_id=None, not_before=job.not_before,
                      reason=f"retry {job.attempt + 1}/{job.max_attempts} in {backoff:g}s after: {error}")
            ch.timers.append((job.not_before, "ready", job.id))
        else:
            self._final_failure(job, outcome, ch, exit_code=exit_code, error=error)
        return True

    def release_children(self, job: JobRec, ch: Changes) -> None:
        """A job succeeded (completed, or a gate approved): children it held may run."""
        for child_id in job.children:
            child = self.jobs[child_id]
            child.waiting_parents -= 1
            if child.waiting_parents == 0 and child.state == PENDING:
                self._runnable(child, ch)

    def _final_failure(self, job: JobRec, state: str, ch: Changes, *,
                       exit_code: int | None = None, error: str | None = None) -> None:
        self._set(job, state, ch, exit_code=exit_code, error=error, lease_expires=None,
                  reason=None, finished_at=self.now())
        self.skip_descendants_of(job, ch)

    def skip_descendants_of(self, job: JobRec, ch: Changes, include: list[JobRec] | None = None) -> None:
        """Every not-yet-finished descendant of a job that failed for good becomes SKIPPED now:
        nothing may wait forever on a parent that will never complete."""
        reason = f"upstream job {job.job_id!r} ended {job.state}"
        stack = list(include or []) + [self.jobs[c] for c in job.children]
        while stack:
            child = stack.pop()
            if child.state in TERMINAL:
                continue
            if child.state == RUNNING:
                # Only reachable after a manual retry of an ancestor; leave running work alone.
                continue
            self._dequeue(child)
            self._set(child, SKIPPED, ch, reason=reason, finished_at=self.now())
            stack.extend(self.jobs[c] for c in child.children)

    def _dequeue(self, job: JobRec) -> None:
        self.unschedulable[job.requirement].discard(job.id)
        if job.queued_on and job.queued_on.startswith("worker:"):
            worker = self.workers.get(job.queued_on[7:])
            if worker is not None and job.id in worker.private:
                worker.private.remove(job.id)
        job.queued_on = None  # heap entries are dropped lazily when they surface

    # -- cancel and retry ---------------------------------------------------------------------
    def cancel_job(self, job: JobRec, ch: Changes, reason: str = "cancelled") -> None:
        if job.state in TERMINAL:
            return
        if job.state == RUNNING:
            worker = self.workers.get(job.worker_id or "")
            if worker is not None:
                worker.running.discard(job.id)
                worker.cancels.append((job.id, job.attempt))
            ch.done_attempts.append((job.id, job.attempt, {"state": CANCELLED, "error": reason,
                                                           "finished_at": self.now()}))
        self._dequeue(job)
        self._set(job, CANCELLED, ch, reason=reason, lease_expires=None, finished_at=self.now())
        self.skip_descendants_of(job, ch)

    def cancel_dag(self, dag: DagRec, ch: Changes) -> None:
        dag.cancelled = True
        ch.dags[dag.id]["cancelled"] = True
        for job_id in dag.jobs:
            job = self.jobs[job_id]
            if job.state in ACTIVE:
                self.cancel_job(job, ch, reason="DAG cancelled")

    def retry_job(self, job: JobRec, ch: Changes) -> None:
        """Run a finished, unsuccessful job again; its SKIPPED descendants wait for it."""
        job.max_attempts = max(job.max_attempts, job.attempt + 1)
        job.not_before = None
        self._set(job, PENDING, ch, max_attempts=job.max_attempts, reason="retried by a user",
                  exit_code=None, error=None, finished_at=None, not_before=None,
                  **(gates.CLEARED if job.is_gate else {}))
        stack = [self.jobs[c] for c in job.children]
        while stack:
            child = stack.pop()
            if child.state == SKIPPED:
                child.not_before = None
                self._set(child, PENDING, ch, reason=None, finished_at=None, not_before=None)
                stack.extend(self.jobs[c] for c in child.children)
        for j in [job, *[self.jobs[c] for c in self._descendants(job)]]:
            j.waiting_parents = sum(1 for p in j.parents if self.jobs[p].state not in SUCCEEDED)
        if job.waiting_parents == 0:
            self._runnable(job, ch)

    def _descendants(self, job: JobRec) -> set[int]:
        seen: set[int] = set()
        stack = list(job.children)
        while stack:
            j = stack.pop()
            if j not in seen:
                seen.add(j)
                stack.extend(self.jobs[j].children)
        return seen
