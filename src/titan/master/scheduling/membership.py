"""Workers joining and leaving the scheduler, and what the cluster view asks of it.

Part of :class:`~titan.master.scheduling.scheduler.Scheduler` (a mixin, so the scheduler module stays
about scheduling): when a worker comes, jobs parked for its capabilities become READY; when
one drains, stops or goes silent, its affinity jobs go back to the shared queues and jobs
for a capability nobody offers any more are parked again, with the reason shown.
"""

from __future__ import annotations

from titan.master.scheduling.protocol import SchedulerCore
from titan.master.scheduling.state import NO_WORKER, PENDING, READY, Changes, WorkerRec


class WorkerMembership:
    def capable(self: SchedulerCore, requirement: str) -> bool:
        return any(w.live and requirement in w.capabilities for w in self.workers.values())

    def add_worker(self: SchedulerCore, worker: WorkerRec, ch: Changes) -> None:
        """A worker (re)joins: jobs waiting for one of its capabilities become READY."""
        self.workers[worker.id] = worker
        for cap in worker.capabilities:
            for job_id in sorted(self.unschedulable.pop(cap, set())):
                job = self.jobs.get(job_id)
                if job is not None and job.state == PENDING and job.waiting_parents == 0:
                    self._enqueue(job, ch)
        ch.dispatch = True

    def lose_worker(self: SchedulerCore, worker: WorkerRec, ch: Changes, state: str = "lost") -> None:
        """A worker stopped (drained) or went silent. Its leases expire on their own timers;
        its affinity jobs go back to the shared queues."""
        worker.state = state
        # When it was last heard from, kept: the row's was its registration time, which
        # `titan workers` showed for a worker gone since, after a master restart (QA).
        ch.workers[worker.id] = {"state": state, "last_seen_at": worker.last_seen}
        while worker.private:
            job = self.jobs.get(worker.private.popleft())
            if job is not None and job.state == READY:
                self._push(job)
        for cap in worker.capabilities:
            if self.capable(cap):
                continue
            heap = self.queues.pop(cap, [])
            for _, job_id in heap:
                job = self.jobs.get(job_id)
                if job is not None and job.state == READY and job.queued_on == cap:
                    job.queued_on = None
                    self.unschedulable[cap].add(job.id)
                    self._set(job, PENDING, ch, reason=f"{NO_WORKER}{cap}")
        ch.dispatch = True

    def queue_depths(self: SchedulerCore) -> dict[str, int]:
        depths: dict[str, int] = {}
        for job in self.jobs.values():
            if job.state == READY:
                depths[job.requirement] = depths.get(job.requirement, 0) + 1
        return depths
