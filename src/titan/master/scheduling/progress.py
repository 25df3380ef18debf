"""A DAG's progress: its jobs adopted, children released, descendants skipped, its status settled.

Part of :class:`~titan.master.scheduling.scheduler.Scheduler` (a mixin). A DAG is loaded
whole (new, recovered or revived) and each job put where its state says it belongs; a job
that succeeds releases its children, one that fails for good skips its descendants; at the
end of each step the status of every DAG it touched is recomputed, and a finished DAG leaves
memory.
"""

from __future__ import annotations

from titan.master.scheduling import gates, services
from titan.master.scheduling.protocol import SchedulerCore
from titan.master.scheduling.state import (
    PENDING,
    READY,
    RUNNING,
    SKIPPED,
    SUCCEEDED,
    TERMINAL,
    WAITING_APPROVAL,
    Changes,
    DagRec,
    JobRec,
    dag_status,
    has_started,
)


class DagProgress:
    # -- loading ------------------------------------------------------------------------------
    def load(self: SchedulerCore, dag: DagRec, jobs: list[JobRec], ch: Changes) -> None:
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
            _reconsider(self, job, ch)
        ch.touched_dags.add(dag.id)

    # -- parents and children -----------------------------------------------------------------
    def release_children(self: SchedulerCore, job: JobRec, ch: Changes) -> None:
        """A job succeeded (completed, or a gate approved): children it held may run."""
        for child_id in job.children:
            child = self.jobs[child_id]
            child.waiting_parents -= 1
            if child.waiting_parents == 0 and child.state == PENDING:
                self._runnable(child, ch)

    def skip_descendants_of(self: SchedulerCore, job: JobRec, ch: Changes,
                            include: list[JobRec] | None = None) -> None:
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

    # -- settling -----------------------------------------------------------------------------
    def forget_if_finished(self: SchedulerCore, dag_id: int) -> None:
        """Let go of a DAG brought back into memory for nothing (a retry that was refused):
        a finished DAG held here would count as running, and its waiters would never be
        answered."""
        dag = self.dags.get(dag_id)
        if dag is not None and dag_status(dag.counts) not in ("WAITING", "RUNNING"):
            _retire(self, dag)

    def drop(self: SchedulerCore, dag_id: int) -> None:
        """Let go of a DAG whatever its state: what memory holds of it is wrong (a change to
        it failed to commit) and is to be read again from storage."""
        dag = self.dags.get(dag_id)
        if dag is None:
            return
        for job_id in dag.jobs:
            job = self.jobs.get(job_id)
            if job is not None:
                self._dequeue(job)  # out of a worker's affinity queue too: loaded again
        _retire(self, dag)

    def settle_dags(self: SchedulerCore, ch: Changes) -> None:
        """Recompute the status of every DAG this step touched; retire finished ones."""
        for dag_id in ch.touched_dags:
            dag = self.dags.get(dag_id)
            if dag is None:
                continue
            status = dag_status(dag.counts, dag.cancelled, dag.started_at is not None)
            if status == dag.status:
                continue
            fields: dict[str, object] = {"status": status}
            # When a job first started: not when a DAG nothing had started was cancelled,
            # which a retry of it then showed RUNNING with every job only queued.
            if dag.started_at is None and has_started(dag.counts):
                dag.started_at = fields["started_at"] = self.now()
            dag.status = status
            if status not in ("WAITING", "RUNNING"):
                fields["finished_at"] = self.now()
                ch.finished_dags.append(dag_id)
                _retire(self, dag)
            ch.dags[dag_id].update(fields)
            # (A stage's run hears of it through the engine's stage hooks, and says so.)
            ch.events.append(("dag_updated", {"id": dag_id, "name": dag.name, "run": dag.run,
                                              "status": status, "agent_run_id": dag.agent_run_id}))


def _reconsider(sched: SchedulerCore, job: JobRec, ch: Changes) -> None:
    """Put a job loaded from storage where its state says it belongs."""
    parents = [sched.jobs[p] for p in job.parents]
    job.waiting_parents = sum(1 for p in parents if p.state not in SUCCEEDED)
    if job.state == READY:
        sched._enqueue(job, ch, already_ready=True)
    elif job.state == RUNNING:
        # Keep the lease (never start twice what may still run); a worker that is gone
        # lets it expire, and the job is re-queued then. One lease from now, whatever the
        # stored deadline says: it was at most that when written (heartbeats renew leases in
        # memory only), and one further out was written by a master whose clock ran ahead (a
        # skewed host, a clock stepped back since), which kept a job whose worker died
        # RUNNING for the whole skew.
        job.lease_expires = sched.now() + sched.lease_seconds
        ch.timers.append((job.lease_expires, "lease", job.id))
        worker = sched.workers.get(job.worker_id or "")
        if worker is not None:
            worker.running.add(job.id)
        services.adopt(sched, job)
    elif job.state == PENDING:
        if any(p.state in TERMINAL and p.state not in SUCCEEDED for p in parents):
            bad = next(p for p in parents if p.state in TERMINAL and p.state not in SUCCEEDED)
            sched.skip_descendants_of(bad, ch, include=[job])
        elif job.waiting_parents == 0:
            sched._runnable(job, ch)
    elif job.state == WAITING_APPROVAL:
        gates.rearm(sched, job, ch)


def _retire(sched: SchedulerCore, dag: DagRec) -> None:
    for job_id in dag.jobs:
        job = sched.jobs.pop(job_id, None)
        if job is not None and job.queued_on is not None:
            sched.unschedulable[job.requirement].discard(job.id)
    del sched.dags[dag.id]
