"""Leasing jobs to workers: the best queue heads taken, leases renewed, a lease that expires.

Part of :class:`~titan.master.scheduling.scheduler.Scheduler` (a mixin). A worker with free
slots takes its affinity jobs first, then the best heads of the queues of its capabilities
(stale and held entries are dropped as they surface); each lease is an attempt, renewed by
heartbeats, and one that expires puts the job back in its queue without spending a retry.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable

from titan.master.scheduling import services
from titan.master.scheduling.protocol import SchedulerCore
from titan.master.scheduling.state import (
    FAILED,
    PENDING,
    READY,
    RUNNING,
    Changes,
    JobRec,
    WorkerRec,
)

MAX_LEASE_LOSSES = 5
#: Lost attempts remembered for the refusal of their late results (the latest so many).
MAX_SUPERSEDED = 10_000
#: A lease timer this late (seconds) says the master stood still, not that the worker went.
STALL_SECONDS = 3.0


class Leasing:
    # -- leasing ------------------------------------------------------------------------------
    def take(self: SchedulerCore, worker: WorkerRec, n: int, ch: Changes) -> list[JobRec]:
        """Lease up to ``n`` jobs to a worker: its affinity jobs first, then the best heads."""
        taken: list[JobRec] = []
        while len(taken) < n and worker.private:
            job = self.jobs.get(worker.private.popleft())
            if job is not None and job.state == READY and not self.held_back(job, ch):
                _lease(self, job, worker, ch)
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
            _lease(self, job, worker, ch)
            taken.append(job)
        return taken

    def queued_for(self: SchedulerCore, worker: WorkerRec) -> bool:
        """Whether a job waits in a queue this worker takes from (its affinity jobs, the
        heads of its capabilities' queues): what :meth:`take` would lease before anything
        new. Stale heads are dropped on the way, as :meth:`take` drops them."""
        if worker.private:
            return True
        for cap in worker.capabilities:
            heap = self.queues.get(cap)
            while heap:
                job = self.jobs.get(heap[0][1])
                if job is not None and job.state == READY and job.queued_on == cap:
                    return True
                heapq.heappop(heap)
        return False

    def renew(self: SchedulerCore, worker: WorkerRec,
              running: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
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

    def _lease_timer(self: SchedulerCore, job: JobRec, ch: Changes) -> None:
        if job.state != RUNNING or job.lease_expires is None:
            return
        if job.lease_expires > self.now():  # renewed meanwhile
            # Never further out than a lease from now: the loop's timers are monotonic, so
            # this one fired on time, and a deadline beyond that says the wall clock stepped
            # back since it was set (NTP): waiting for it, a job whose worker died would
            # stay RUNNING for the whole step.
            job.lease_expires = min(job.lease_expires, self.now() + self.lease_seconds)
            ch.timers.append((job.lease_expires, "lease", job.id))
            return
        if self.now() - job.lease_expires > STALL_SECONDS or self.leases_held():
            # The timer fires this late only when the master itself stood still (SIGSTOP, a
            # paused VM, a stalled disk): its workers could not renew the lease meanwhile.
            # Nor could they while the database is away (a failover past the lease: their
            # heartbeats were refused, and every running job ran again once it was back).
            # Expired now, every running job ran again; given a fresh lease instead, as a
            # restarted master gives them, its worker renews it or lets it run out.
            job.lease_expires = self.now() + self.lease_seconds
            ch.timers.append((job.lease_expires, "lease", job.id))
            return
        worker = self.workers.get(job.worker_id or "")
        if worker is not None:
            worker.running.discard(job.id)
            if worker.state in ("live", "draining") \
                    and self.now() - worker.last_seen > self.lease_seconds * 2 / 3:
                # Silent for two heartbeats, not merely forgetting this job: frozen (SIGSTOP,
                # a paused VM) with its connection still open. Lost now, so this job and
                # the next go to a worker that answers, not back into its socket's buffer.
                # Said here: the engine's sweep, which says it of an idle worker, finds this
                # one lost already.
                ch.warnings.append(f"worker {worker.id} ({worker.name}) is lost: silent for "
                                   f"{self.now() - worker.last_seen:.0f} s, it missed its "
                                   "heartbeats")
                self.lose_worker(worker, ch)
                ch.events.append(("worker_updated", {"id": worker.id, "state": "lost"}))
        attempt_lost(self, job, f"lease of attempt {job.attempt} expired on worker "
                      f"{job.worker_id}", ch)

    def end_attempts_of(self: SchedulerCore, worker_id: str, why: str, ch: Changes) -> int:
        """End every attempt leased to ``worker_id`` now, as its leases' expiry would (how
        many): a worker no longer trusted (its token revoked), or one replaced by a new
        process of its name (:mod:`.worker_names`), known to this master or only to the
        database (it held them before a restart). Their job tokens are stale at once (``409
        stale_attempt``), so a process the worker leaves running writes nothing more, and the
        jobs start again elsewhere without waiting out a lease, spending no retry. Left to
        expire, a job on a revoked worker wrote the store for up to a lease, then ran again:
        its effects landed twice (a fleet QA pass)."""
        worker = self.workers.get(worker_id)
        ended = [j for j in self.jobs.values() if j.state == RUNNING and j.worker_id == worker_id]
        for job in ended:
            if worker is not None:
                worker.running.discard(job.id)
            attempt_lost(self, job, f"attempt {job.attempt} ended: worker {worker_id} {why}",
                          ch)
        return len(ended)

    def requeue_unspent(self: SchedulerCore, job: JobRec, ch: Changes, reason: str) -> None:
        """Queue ``job`` again after an attempt that was not its fault (its worker lost it or
        handed it back): that attempt spends no retry, so the job may go one attempt further
        (``max_attempts`` grows by one, durably, as a user's retry makes it)."""
        job.unspent_attempts += 1
        job.max_attempts += 1
        self._set(job, PENDING, ch, reason=reason, worker_id=None, lease_expires=None,
                  max_attempts=job.max_attempts)
        self._enqueue(job, ch)


def attempt_lost(sched: SchedulerCore, job: JobRec, reason: str, ch: Changes) -> None:
    """The running attempt of ``job`` is lost with its worker: ended, and the job queued
    again without spending a retry (failed after MAX_LEASE_LOSSES such losses)."""
    job.lease_losses += 1
    ch.done_attempts.append((job.id, job.attempt, {"state": "LOST", "error": reason,
                                                   "finished_at": sched.now()}))
    # Said in the master's log, once per attempt: a job that runs again elsewhere (its first
    # attempt maybe still running on a host cut off from the master) was seen only on the
    # job's page before (a fleet QA pass).
    dag = sched.dags.get(job.dag_id)
    lost = (f"job {dag.name if dag else job.dag_id}#{dag.run if dag else '?'}/{job.job_id} "
            f"(id {job.id}): {reason}")
    if job.is_service and services.lost(sched, job, reason, ch):
        ch.warnings.append(f"{lost}; the service was stopping, so it ends there")
        return
    if job.lease_losses >= MAX_LEASE_LOSSES:
        ch.warnings.append(f"{lost}; failed: lost {job.lease_losses} times")
        sched._final_failure(job, FAILED, ch, error=f"{reason} ({job.lease_losses} times)")
        return
    ch.warnings.append(f"{lost}; queued to run again as attempt {job.attempt + 1}")
    # Its worker, cut off or paused past the lease, may still report the attempt's result:
    # refused, with this as the reason, its log says so (it said nothing above debug).
    sched.superseded[(job.id, job.attempt)] = (job.worker_id, {
        "why": "superseded", "next_attempt": job.attempt + 1,
        "job": f"{dag.name}#{dag.run}/{job.job_id}" if dag else job.job_id})
    if len(sched.superseded) > MAX_SUPERSEDED:
        del sched.superseded[next(iter(sched.superseded))]
    # A lost worker is not the job's fault: re-queued without spending a retry.
    sched.requeue_unspent(job, ch, reason)


def _lease(sched: SchedulerCore, job: JobRec, worker: WorkerRec, ch: Changes) -> None:
    now = sched.now()
    job.queued_on = None
    expires = now + sched.lease_seconds
    sched._set(job, RUNNING, ch, attempt=job.attempt + 1, worker_id=worker.id,
               lease_expires=expires, started_at=now, reason=None)
    worker.running.add(job.id)
    ch.new_attempts.append({"job": job.id, "attempt": job.attempt, "worker_id": worker.id,
                            "started_at": now, "state": RUNNING})
    ch.timers.append((expires, "lease", job.id))
