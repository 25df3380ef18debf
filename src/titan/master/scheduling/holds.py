"""Holding back the jobs of agent runs that are over budget.

Part of :class:`~titan.master.scheduling.scheduler.Scheduler` (a mixin). A run over its USD budget may
not start more work until an operator raises the budget: its READY jobs stay READY but are
set aside as they reach the head of a queue (with the reason shown), and go back to their
queue, in their old order, when the run is released. Nothing already running is touched.
"""

from __future__ import annotations

from titan.master.scheduling.protocol import SchedulerCore
from titan.master.scheduling.state import READY, Changes, JobRec


class RunHolds:
    def held_back(self: SchedulerCore, job: JobRec, ch: Changes) -> bool:
        """True (and the job set aside) if the job's agent run is blocked."""
        if not self.blocked_runs:
            return False
        run = self.dags[job.dag_id].agent_run_id
        if run is None or run not in self.blocked_runs:
            return False
        job.queued_on = f"held:{run}"
        self.held[run].append(job.id)
        self._set(job, READY, ch, reason=f"held: agent run {run} is over its budget; raise it "
                                         f"with `titan runs budget {run} USD`")
        return True

    def block_run(self: SchedulerCore, run_id: str) -> None:
        self.blocked_runs.add(run_id)

    def release_run(self: SchedulerCore, run_id: str, ch: Changes) -> None:
        """The run's budget was raised: its held jobs go back to their queues."""
        self.blocked_runs.discard(run_id)
        for job_id in self.held.pop(run_id, []):
            job = self.jobs.get(job_id)
            if job is not None and job.state == READY and job.queued_on == f"held:{run_id}":
                self._set(job, READY, ch, reason=None)
                self._push(job)
                ch.dispatch = True
