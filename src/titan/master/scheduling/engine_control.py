"""Work stopped or restarted by hand: cancels, a service's stop, retries, gate decisions.

Part of :class:`~titan.master.scheduling.engine.Engine` (a mixin). Each checks the request
against the scheduler's memory (Conflict when the job or DAG has already ended), lets the
scheduler decide, commits, and only then wakes the workers that hold a job to cancel and
leases what the change made ready (:func:`_commit`).

The scheduler decides in memory before the commit. A commit that fails (a value the database
refuses that no check caught) must not leave memory ahead of the database: a gate read
WAITING_APPROVAL but was APPROVED in memory, so every later decision was refused until a
restart. The DAGs the change touched are then read back from storage (:func:`_put_back`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from titan.errors import Conflict
from titan.master.auth.tokens import Principal
from titan.master.scheduling import gates, services
from titan.master.scheduling.engine_core import EngineCore
from titan.master.scheduling.engine_recovery import dag_rec, job_rec
from titan.master.scheduling.scheduler import Scheduler
from titan.master.scheduling.state import SUCCEEDED, TERMINAL, Changes, WorkerRec
from titan.services import is_service
from titan.storage.base import Row, Transaction

log = logging.getLogger(__name__)

#: A kill a change queued for a worker: the worker, and its (job, attempt) entry.
Queued = list[tuple[WorkerRec, tuple[int, int]]]


class EngineControl:
    async def cancel_job(self: EngineCore, job_id: int, state_in_db: str,
                         ref: str | None = None) -> None:
        """``ref``: how the caller named the job, for the message (else its id)."""
        job = self.sched.jobs.get(job_id)
        if job is None or job.state in TERMINAL:
            raise Conflict(f"job {ref or job_id!r} already ended "
                           f"{job.state if job else state_in_db}",
                           details={"state": job.state if job else state_in_db})
        ch, before = Changes(), _cancel_counts(self.sched)
        self.sched.cancel_job(job, ch)
        await _commit(self, ch, _queued_since(self.sched, before))

    async def stop_service(self: EngineCore, job_id: int, state_in_db: str,
                           grace: float | None, ref: str | None = None,
                           job_type: str | None = None) -> None:
        """Stop a service gracefully (:func:`services.stop`); Conflict once it has ended, or
        for a job that is no service (``job_type``: the stored one, for a job whose DAG has
        finished)."""
        job = self.sched.jobs.get(job_id)
        if job is None and job_type is not None and not is_service(job_type):
            raise services.not_a_service(ref or str(job_id), state_in_db, job_type)
        if job is None:
            raise Conflict(f"job {ref or job_id!r} already ended {state_in_db}",
                           details={"state": state_in_db})
        ch, before = Changes(), _cancel_counts(self.sched)
        services.stop(self.sched, job, grace, ch)
        await _commit(self, ch, _queued_since(self.sched, before))

    async def cancel_dag(self: EngineCore, dag_id: int, status_in_db: str,
                         ref: str | None = None) -> None:
        dag = self.sched.dags.get(dag_id)
        if dag is None:
            raise Conflict(f"DAG {ref or dag_id!r} already ended {status_in_db}",
                           details={"status": status_in_db})
        ch, before = Changes(), _cancel_counts(self.sched)
        self.sched.cancel_dag(dag, ch)
        await _commit(self, ch, _queued_since(self.sched, before))

    async def cancel_stages_of(self: EngineCore, *agent_run_ids: str) -> int:
        """Cancel every stage (DAG) of the agent runs that still has jobs to run, in one
        commit; how many."""
        ch, before = Changes(), _cancel_counts(self.sched)
        ids = set(agent_run_ids)
        stages = [d for d in self.sched.dags.values() if d.agent_run_id in ids
                  and any(self.sched.jobs[j].state not in TERMINAL for j in d.jobs)]
        for dag in stages:
            self.sched.cancel_dag(dag, ch)
        if stages:
            await _commit(self, ch, _queued_since(self.sched, before))
        return len(stages)

    async def retry_dag(self: EngineCore, dag_id: int, ref: str | None = None,
                        by: str | None = None) -> int:
        """Run a finished DAG's unsuccessful jobs again (Conflict while it runs, or when every
        job succeeded); how many were retried. ``by``: who asked."""
        revived = dag_id not in self.sched.dags
        dag = await self.revive(dag_id)
        jobs = [self.sched.jobs[j] for j in dag.jobs]
        problem = None
        if any(j.state not in TERMINAL for j in jobs):
            problem = f"DAG {ref or dag_id!r} is still running: retry it once it has finished"
        elif all(j.state in SUCCEEDED for j in jobs):
            problem = f"every job of DAG {ref or dag_id!r} succeeded: nothing to retry"
        if problem is not None:
            if revived:
                self.sched.forget_if_finished(dag_id)
            raise Conflict(problem, details={"status": dag.status})
        ch = Changes()
        retried = self.sched.retry_dag(dag, ch, by)
        await _commit(self, ch)
        return len(retried)

    async def retry_job(self: EngineCore, job_id: int, dag_id: int,
                        by: str | None = None) -> None:
        revived = dag_id not in self.sched.dags
        await self.revive(dag_id)
        try:
            job = self.sched.jobs[job_id]
            if job.state not in TERMINAL or job.state in SUCCEEDED:
                raise Conflict(f"only a failed, cancelled, skipped or timed-out job can be "
                               f"retried; this one is {job.state}", details={"state": job.state})
            # A job below a parent that ended badly could never run: it would sit PENDING for
            # ever. The parent is what must be retried (that revives this job too).
            for parent in (self.sched.jobs[p] for p in job.parents):
                if parent.state in TERMINAL and parent.state not in SUCCEEDED:
                    raise Conflict(f"job {job.job_id!r} cannot run while its parent "
                                   f"{parent.job_id!r} is {parent.state}; retry "
                                   f"{parent.job_id!r}",
                                   details={"state": job.state, "parent": parent.job_id})
        except Conflict:
            if revived:  # refused: the finished DAG goes back to being only a row
                self.sched.forget_if_finished(dag_id)
            raise
        ch = Changes()
        self.sched.retry_job(job, ch, by)
        await _commit(self, ch)

    async def decide(self: EngineCore, job_id: int, state_in_db: str, approve: bool,
                     principal: Principal, comment: str | None, name: str | None = None) -> None:
        """Approve or reject a waiting gate (Conflict if it is not waiting); ``name``: how
        the caller named it, for the message."""
        job = self.sched.jobs.get(job_id)
        if job is None:
            raise Conflict(f"job {name or job_id!r} is {state_in_db}: not waiting for approval",
                           details={"state": state_in_db})
        ch = Changes()
        who = principal.name or principal.role
        gates.decide(self.sched, job, approve, who, comment, ch)
        await _commit(self, ch)


async def _commit(engine: EngineCore, ch: Changes, queued: Queued | None = None) -> None:
    """Commit a change made by hand, then tell the workers: the kills it queued (``queued``)
    and the jobs it made ready go out once it is durable, never for a change that failed.
    Its leases commit on their own (they rode with the change: a parked worker's poll
    failed with, say, the 400 of someone's comment). A failure puts back what memory held."""
    dispatch, ch.dispatch = ch.dispatch, False
    dag_ids = set(ch.touched_dags) | set(ch.dags)
    try:
        await engine.submit(ch)
    except Exception:
        await _put_back(engine, dag_ids, queued or [])
        raise
    _wake_cancels(engine.sched)
    if dispatch:
        lease = Changes()
        lease.dispatch = True
        engine.submit(lease)


async def _put_back(engine: EngineCore, dag_ids: Iterable[int], queued: Queued) -> None:
    """Memory as the database has it after a change to these DAGs failed to commit: their
    records read again (through the writer, so after every change queued before), the kills
    the change queued taken back."""
    for worker, entry in queued:
        if entry in worker.cancels:
            worker.cancels.remove(entry)
            worker.kill_reasons.pop(entry, None)
    ids = sorted(dag_ids)

    def load(tx: Transaction) -> list[tuple[Row | None, list[Row]]]:
        return [(tx.get_dag(dag_id), tx.jobs_of_dags([dag_id])) for dag_id in ids]

    ch = Changes()
    try:
        async with engine.revivals:  # retention deletes none of these rows meanwhile
            found = await engine.run(load)
            for dag_id, (row, jobs) in zip(ids, found, strict=True):
                engine.sched.drop(dag_id)
                if row is None:
                    continue
                engine.sched.load(dag_rec(row), [job_rec(j) for j in jobs], ch)
                engine.sched.forget_if_finished(dag_id)  # it had ended: only a row again
    except Exception as exc:  # noqa: BLE001 - the failure itself is the caller's answer
        log.error("DAGs %s could not be read back after a failed commit: %r", ids, exc)
        return
    engine.submit(ch)


def _cancel_counts(sched: Scheduler) -> dict[str, int]:
    return {worker.id: len(worker.cancels) for worker in sched.workers.values()}


def _queued_since(sched: Scheduler, before: dict[str, int]) -> Queued:
    """The kills queued since ``before`` (:func:`_cancel_counts`), in the same loop step."""
    return [(worker, entry) for worker in sched.workers.values()
            for entry in worker.cancels[before.get(worker.id, 0):]]


def _wake_cancels(sched: Scheduler) -> None:
    for worker in sched.workers.values():
        if worker.cancels and worker.poll is not None and not worker.poll.done():
            worker.poll.set_result(None)
