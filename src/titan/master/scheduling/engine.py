"""The engine: the scheduler, its storage and its clock, on the master's event loop.

Rule of the house: the scheduler mutates memory, :meth:`Engine.submit` queues the change set
for the group-commit writer *in the same loop step* (so commit order is decision order), and
only when the commit lands are events published, waiters woken and workers answered. A crash
therefore leaves the database holding a prefix of the scheduler's decisions, from which
:meth:`Engine.recover` rebuilds the same picture.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol, TypeVar

from titan.errors import Conflict, InvalidDAG, NotFound, StaleAttempt
from titan.master.auth.tokens import JobTokens, Principal, WorkerCredentials
from titan.master.config import MasterConfig
from titan.master.events import EventHub
from titan.master.idempotency import once, prune
from titan.master.scheduling import gates, services
from titan.master.scheduling.scheduler import Scheduler
from titan.master.scheduling.state import (
    APPROVAL,
    PENDING,
    READY,
    SUCCEEDED,
    TERMINAL,
    Changes,
    DagRec,
    JobRec,
    WorkerRec,
    assignment,
)
from titan.storage.base import Row, Storage, Transaction
from titan.storage.writer import GroupCommitWriter

T = TypeVar("T")
log = logging.getLogger("titan.master")



class StageHooks(Protocol):
    """A stage (a DAG naming an agent run) in its submission's transaction. The engine knows
    nothing of runs: the run service implements this and sets ``Engine.stage_hooks``."""

    def stage_submitted(self, tx: Transaction, run_id: str, agent_id: str | None,
                        now: float, started_by: Row | None = None) -> list[tuple[str, Row]]:
        """Before the DAG row: the run row it points at exists and is running (a new one
        started by ``started_by``, the submitter as the run service records it); the
        events to publish after the commit."""

    def stage_stored(self, tx: Transaction, run_id: str) -> None:
        """After the jobs: what the run derives from its stages (its code version)."""

class Engine:
    def __init__(self, config: MasterConfig, storage: Storage, hub: EventHub) -> None:
        self.config = config
        self.storage = storage
        self.hub = hub
        self.writer = GroupCommitWriter(storage)
        self.sched = Scheduler(
            lease_seconds=config.lease_seconds, affinity_wait=config.affinity_wait,
            retry_backoff=config.retry_backoff, retry_backoff_max=config.retry_backoff_max,
        )
        self._readers = ThreadPoolExecutor(max_workers=4, thread_name_prefix="titan-db-read")
        self._sweeper: asyncio.Task[None] | None = None
        self.job_tokens: JobTokens | None = None
        self.worker_credentials: WorkerCredentials | None = None
        self.secret: str | None = None  # signs job tokens and dashboard sessions
        self.known_blobs: set[str] = set()  # blobs are never deleted: a hit needs no read
        #: Called with (agent run id, DAG status) when a run's stage changes status, after
        #: its commit: how agent runs learn that their last stage ended. The engine knows
        #: nothing of runs; whatever settles them subscribes here.
        self.dag_listeners: list[Callable[[str, str], None]] = []
        #: What a stage of an agent run writes in its DAG's submission transaction (the run
        #: row its DAG points at, the run's code version), set by the run service.
        self.stage_hooks: StageHooks | None = None

    # -- lifecycle ----------------------------------------------------------------------------
    async def start(self) -> None:
        self.writer.start()
        self.secret = secret = await self.run(lambda tx: _ensure_secret(tx))
        self.job_tokens = JobTokens(secret)
        self.worker_credentials = WorkerCredentials(secret)
        await self.recover()
        self._sweeper = asyncio.create_task(self._sweep_workers())

    async def stop(self) -> None:
        if self._sweeper:
            self._sweeper.cancel()
        for worker in self.sched.workers.values():
            if worker.poll and not worker.poll.done():
                worker.poll.set_result(None)
        self.writer.stop()
        self._readers.shutdown(wait=True)

    async def read(self, fn: Callable[[Transaction], T]) -> T:
        """Run a read in a pool thread (never on the event loop)."""
        def work() -> T:
            with self.storage.transaction() as tx:
                return fn(tx)
        return await asyncio.get_running_loop().run_in_executor(self._readers, work)

    async def run(self, fn: Callable[[Transaction], T]) -> T:
        """A write through the group-commit writer."""
        return await self.writer.run(fn)

    # -- committing ---------------------------------------------------------------------------
    def submit(self, ch: Changes, extra: Callable[[Transaction], Any] | None = None) -> asyncio.Future[Any]:
        """Queue a change set now; publish its events once it is durable.

        When the change made jobs ready (or freed a slot), workers parked in a long-poll
        take them in this same change set: the lease commits with the submission or result
        that made the job ready, so a job costs one commit less on its way to a worker.
        """
        woken = self._lease_to_parked(ch) if ch.dispatch else []
        self.sched.settle_dags(ch)
        loop = asyncio.get_running_loop()
        for when, kind, job_id in ch.timers:
            loop.call_at(loop.time() + max(0.0, when - time.time()), self._fire, kind, job_id)

        def op(tx: Transaction) -> Any:
            ch.apply(tx)
            return extra(tx) if extra else None

        fut = self.writer.submit(op)
        for worker in woken:
            assert worker.poll is not None
            worker.poll.set_result(fut)  # type: ignore[arg-type]
        fut.add_done_callback(lambda f: self._after_commit(ch, f))
        return fut

    def _after_commit(self, ch: Changes, fut: asyncio.Future[Any]) -> None:
        if fut.cancelled() or fut.exception() is not None:
            log.error("committing scheduler changes failed: %r", fut.exception())
            return
        for kind, data in ch.events:
            self.hub.publish(kind, data)
            if kind == "dag_updated" and data.get("agent_run_id"):
                for listener in self.dag_listeners:
                    listener(data["agent_run_id"], data["status"])
        for key, value, withdraw in ch.store:  # a service's address: store_wait returns
            if not withdraw:
                self.hub.notify(("store", key), value)
        for job_id in ch.finished_jobs:
            self.hub.notify(("job", job_id))
        for dag_id in ch.finished_dags:
            self.hub.notify(("dag", dag_id))

    def _fire(self, kind: str, job_id: int) -> None:
        ch = Changes()
        self.sched.timer(kind, job_id, ch)
        if not ch.empty() or ch.dispatch or ch.timers:
            self.submit(ch)

    def _lease_to_parked(self, ch: Changes) -> list[WorkerRec]:
        """Lease ready jobs to the workers parked in a long-poll, into ``ch``; returns the
        workers whose poll is to be answered once ``ch`` commits."""
        woken: list[WorkerRec] = []
        for worker in self.sched.workers.values():
            if worker.poll is None or worker.poll.done() or not worker.live:
                continue
            free = self.capacity(worker, worker.poll_free)
            jobs = self.sched.take(worker, free, ch) if free > 0 else []
            worker.assigned.extend(j.id for j in jobs)
            if worker.assigned or worker.cancels:
                woken.append(worker)
        return woken

    @staticmethod
    def capacity(worker: WorkerRec, offered: int) -> int:
        """How many more jobs a worker may get: what its poll offers, never more than its
        slots minus what it holds. An offer can be out of date (a poll parked before a job
        arrived by another poll's reply); the slot count is the guard that cannot be."""
        return min(offered - len(worker.assigned), worker.slots - len(worker.running))

    # -- recovery -----------------------------------------------------------------------------
    async def recover(self) -> None:
        def load(tx: Transaction) -> tuple[list[Row], list[Row]]:
            dags = tx.unfinished_dags()
            return dags, tx.jobs_of_dags([d["id"] for d in dags])

        dags, jobs = await self.read(load)
        by_dag: dict[int, list[Row]] = {}
        for row in jobs:
            by_dag.setdefault(row["dag_id"], []).append(row)
        ch = Changes()
        for row in dags:
            self.sched.load(dag_rec(row), [job_rec(j) for j in by_dag.get(row["id"], [])], ch)
        await self.submit(ch)
        if dags:
            log.info("recovered %d unfinished DAG(s) with %d job(s)", len(dags), len(jobs))

    async def revive(self, dag_id: int) -> DagRec:
        """Bring a finished DAG back into memory (a user retries one of its jobs)."""
        if dag_id in self.sched.dags:
            return self.sched.dags[dag_id]

        def load(tx: Transaction) -> tuple[Row | None, list[Row]]:
            return tx.get_dag(dag_id), tx.jobs_of_dags([dag_id])

        row, jobs = await self.read(load)
        if row is None:
            raise NotFound(f"no DAG with id {dag_id}")
        if dag_id in self.sched.dags:  # revived concurrently while we read
            return self.sched.dags[dag_id]
        ch = Changes()
        self.sched.load(dag_rec(row), [job_rec(j) for j in jobs], ch)
        await self.submit(ch)
        return self.sched.dags[dag_id]

    # -- submission ---------------------------------------------------------------------------
    async def check_scripts(self, specs: list[Row]) -> None:
        """InvalidDAG unless every script the validated ``specs`` name was uploaded."""
        shas = {s["script_sha256"] for s in specs if s["script_sha256"]} - self.known_blobs
        present = await self.read(lambda tx: tx.blobs_present(shas)) if shas else set()
        self.known_blobs.update(present)
        present |= self.known_blobs
        for spec in specs:
            if spec["script_sha256"] and spec["script_sha256"] not in present:
                raise InvalidDAG(
                    f"job {spec['job_id']!r}: script blob {spec['script_sha256'][:12]}… was not "
                    "uploaded (PUT /api/v1/blobs/{sha256} first)",
                    details={"job_id": spec["job_id"], "field": "script_sha256"},
                )

    async def submit_dag(self, name: str, specs: list[Row], agent_run_id: str | None,
                         agent_id: str | None = None, *, idempotency_key: str | None = None,
                         scope: str = "", started_by: Row | None = None,
                         schedule: str | None = None,
                         within: Callable[[Transaction, int], None] | None = None) -> int:
        """Validate, store and schedule a DAG; its id. A repeat of an ``idempotency_key``
        already committed returns that DAG's id and schedules nothing.

        ``schedule`` names the schedule whose tick this run is; ``within(tx, dag_id)`` runs in
        the submission's own transaction, after the DAG's rows (a schedule records its fire
        there, so the fire and the run commit together; raising aborts both)."""
        await self.check_scripts(specs)
        now = time.time()
        rows = [job_row(spec, i, now, self.config.default_retries) for i, spec in enumerate(specs)]
        for row in rows:
            # A job that can run at once is stored READY with its submission, so whoever reads
            # it after submit_dag returned sees READY (the commit that leases it does not make
            # the caller wait); the scheduler adopts a READY row without marking it again.
            if not row["parents"] and not row["delay"] and row["job_type"] != APPROVAL \
                    and self.sched.capable(row["requirement"]):
                row.update(state=READY, ready_at=now)

        run_events: list[tuple[str, Row]] = []

        def insert(tx: Transaction) -> list[Any]:
            run = tx.next_dag_run(name)
            hooks = self.stage_hooks if agent_run_id else None
            if hooks is not None and agent_run_id:
                run_events.extend(hooks.stage_submitted(tx, agent_run_id, agent_id, now,
                                                        started_by))
            dag_row: Row = {
                "name": name, "run": run, "agent_run_id": agent_run_id, "submitted_at": now,
                "status": "WAITING", "cancelled": False, "job_count": len(rows),
            }
            if schedule is not None:
                dag_row["schedule"] = schedule
            dag_id = tx.insert_dag(dag_row)
            for row in rows:
                row["dag_id"] = dag_id
            ids = tx.insert_jobs(rows)
            if hooks is not None and agent_run_id:
                hooks.stage_stored(tx, agent_run_id)
            if within is not None:
                within(tx, dag_id)
            return [run, dag_id, ids]

        (run, dag_id, ids), replayed = await self.run(once(idempotency_key, scope, insert))
        if replayed:
            return int(dag_id)
        for row, job_id in zip(rows, ids, strict=True):
            row["id"] = job_id
        dag = DagRec(id=dag_id, name=name, run=run, agent_run_id=agent_run_id, status="WAITING",
                     started_at=None, submitted_at=now)
        ch = Changes()
        ch.events.extend(run_events)
        ch.events.append(("dag_created", {"id": dag_id, "name": name, "run": run,
                                          "agent_run_id": agent_run_id, "schedule": schedule}))
        if agent_run_id:
            ch.events.append(("agent_run_updated", {"id": agent_run_id, "dag_id": dag_id,
                                                    "status": "WAITING"}))
        self.sched.load(dag, [job_rec(r) for r in rows], ch)
        # Not awaited: the submission is durable already and holds every READY that is known
        # now (recovery re-derives the rest), so the caller need not wait for this commit.
        self.submit(ch)
        return int(dag_id)

    # -- fencing ------------------------------------------------------------------------------
    def check_fence(self, principal: Principal) -> None:
        """A job token may write only while its attempt still owns the job."""
        if principal.role != "job":
            return
        assert principal.job is not None and principal.attempt is not None
        if not self.sched.is_current(principal.job, principal.attempt):
            raise StaleAttempt(
                f"attempt {principal.attempt} of job {principal.job} no longer owns the job",
                details={"job": principal.job, "attempt": principal.attempt},
            )

    # -- cancel and retry ---------------------------------------------------------------------
    async def cancel_job(self, job_id: int, state_in_db: str) -> None:
        job = self.sched.jobs.get(job_id)
        if job is None or job.state in TERMINAL:
            raise Conflict(f"job {job_id} already ended {job.state if job else state_in_db}",
                           details={"state": job.state if job else state_in_db})
        ch = Changes()
        self.sched.cancel_job(job, ch)
        self._wake_cancels()
        await self.submit(ch)

    async def stop_service(self, job_id: int, state_in_db: str, grace: float | None) -> None:
        """Stop a service gracefully (:func:`services.stop`); Conflict once it has ended."""
        job = self.sched.jobs.get(job_id)
        if job is None:
            raise Conflict(f"job {job_id} already ended {state_in_db}",
                           details={"state": state_in_db})
        ch = Changes()
        services.stop(self.sched, job, grace, ch)
        self._wake_cancels()
        await self.submit(ch)

    async def cancel_dag(self, dag_id: int, status_in_db: str) -> None:
        dag = self.sched.dags.get(dag_id)
        if dag is None:
            raise Conflict(f"DAG {dag_id} already ended {status_in_db}", details={"status": status_in_db})
        ch = Changes()
        self.sched.cancel_dag(dag, ch)
        self._wake_cancels()
        await self.submit(ch)

    async def retry_job(self, job_id: int, dag_id: int) -> None:
        await self.revive(dag_id)
        job = self.sched.jobs[job_id]
        if job.state not in TERMINAL or job.state in SUCCEEDED:
            raise Conflict(f"only a failed, cancelled, skipped or timed-out job can be retried; "
                           f"this one is {job.state}", details={"state": job.state})
        # A job below a parent that ended badly could never run: it would sit PENDING for
        # ever. The parent is what must be retried (that revives this job too).
        for parent in (self.sched.jobs[p] for p in job.parents):
            if parent.state in TERMINAL and parent.state not in SUCCEEDED:
                raise Conflict(f"job {job.job_id!r} cannot run while its parent "
                               f"{parent.job_id!r} is {parent.state}; retry {parent.job_id!r}",
                               details={"state": job.state, "parent": parent.job_id})
        ch = Changes()
        self.sched.retry_job(job, ch)
        await self.submit(ch)

    async def decide(self, job_id: int, state_in_db: str, approve: bool, principal: Principal,
                     comment: str | None) -> None:
        """Approve or reject a waiting gate (Conflict if it is not waiting)."""
        job = self.sched.jobs.get(job_id)
        if job is None:
            raise Conflict(f"gate {job_id} is {state_in_db}, not waiting for approval",
                           details={"state": state_in_db})
        ch = Changes()
        who = principal.name or principal.role
        gates.decide(self.sched, job, approve, who, comment, ch)
        await self.submit(ch)

    def _wake_cancels(self) -> None:
        for worker in self.sched.workers.values():
            if worker.cancels and worker.poll is not None and not worker.poll.done():
                worker.poll.set_result(None)

    # -- workers ------------------------------------------------------------------------------
    def worker(self, worker_id: str) -> WorkerRec:
        worker = self.sched.workers.get(worker_id)
        if worker is None or worker.state == "lost":
            raise NotFound(f"unknown worker {worker_id}; register again",
                           code="unknown_worker", details={"worker_id": worker_id})
        worker.last_seen = time.time()
        return worker

    async def _sweep_workers(self) -> None:
        """Housekeeping: a worker silent for a whole lease period is lost."""
        period = max(0.2, self.config.lease_seconds / 3)
        next_prune = 0.0
        while True:
            await asyncio.sleep(period)
            now = time.time()
            if now >= next_prune:  # forget idempotency keys no client can still retry with
                next_prune = now + 60.0
                pruned = self.writer.submit(prune(self.config.idempotency_ttl))
                pruned.add_done_callback(_log_prune_failure)
            for worker in list(self.sched.workers.values()):
                polling = worker.poll is not None and not worker.poll.done()
                if worker.live and not polling and now - worker.last_seen > self.config.lease_seconds:
                    log.warning("worker %s (%s) missed its heartbeats: lost", worker.id, worker.name)
                    ch = Changes()
                    self.sched.lose_worker(worker, ch)
                    ch.events.append(("worker_updated", {"id": worker.id, "state": "lost"}))
                    self.submit(ch)

    def assignments(self, worker: WorkerRec) -> list[dict[str, Any]]:
        out = []
        assert self.job_tokens is not None
        for job_id in worker.assigned:
            job = self.sched.jobs.get(job_id)
            if job is None or job.state != "RUNNING" or job.worker_id != worker.id:
                continue  # cancelled between lease and delivery
            out.append(assignment(job, self.job_tokens.issue(job.id, job.attempt),
                                  self.sched.dags[job.dag_id]))
        worker.assigned.clear()
        return out


def _log_prune_failure(fut: asyncio.Future[Any]) -> None:
    if not fut.cancelled() and fut.exception() is not None:
        log.warning("pruning idempotency keys failed: %r", fut.exception())


def _ensure_secret(tx: Transaction) -> str:
    secret = tx.get_meta("job_token_secret")
    if secret is None:
        secret = secrets.token_hex(32)
        tx.set_meta("job_token_secret", secret)
    return secret


def job_row(spec: Row, position: int, now: float, default_retries: int) -> Row:
    # A service restarts in place on its worker (its max_restarts): retrying it elsewhere
    # after it gave up is asked for explicitly.
    default = 0 if spec.get("service") is not None else default_retries
    retries = spec["retries"] if spec["retries"] is not None else default
    return {
        "job_id": spec["job_id"], "position": position, "filename": spec["filename"],
        "script_sha256": spec["script_sha256"], "job_type": spec["job_type"],
        "args": spec["args"], "parents": spec["parents"], "env": spec["env"],
        "port": spec["port"], "is_archive": spec["is_archive"], "priority": spec["priority"],
        "delay": spec["delay"], "affinity": spec["affinity"], "requirement": spec["requirement"],
        "max_attempts": retries + 1, "timeout": spec["timeout"], "runner": spec["runner"],
        "hitl_message": spec["hitl_message"], "max_wait_seconds": spec["max_wait_seconds"],
        "service": spec.get("service"), "state": PENDING, "attempt": 0, "submitted_at": now,
    }


def job_rec(row: Row) -> JobRec:
    return JobRec(
        id=row["id"], dag_id=row["dag_id"], job_id=row["job_id"],
        requirement=row["requirement"], priority=row["priority"], delay=row["delay"],
        affinity=bool(row["affinity"]), max_attempts=row["max_attempts"], state=row["state"],
        attempt=row.get("attempt") or 0, row=row, reason=row.get("reason"),
        worker_id=row.get("worker_id"), lease_expires=row.get("lease_expires_at"),
        not_before=row.get("not_before"), approval_deadline=row.get("approval_deadline"),
        service_status=row.get("service_status"),
    )


def dag_rec(row: Row) -> DagRec:
    return DagRec(id=row["id"], name=row["name"], run=row["run"],
                  agent_run_id=row["agent_run_id"], status=row["status"],
                  started_at=row["started_at"], cancelled=bool(row["cancelled"]),
                  submitted_at=row["submitted_at"])
