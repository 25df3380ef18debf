"""The engine: the scheduler, its storage and its clock, on the master's event loop.

Rule of the house: the scheduler mutates memory, :meth:`Engine.submit` queues the change set
for the group-commit writer *in the same loop step* (so commit order is decision order), and
only when the commit lands are events published, waiters woken and workers answered. A crash
therefore leaves the database holding a prefix of the scheduler's decisions, from which
:meth:`Engine.recover` rebuilds the same picture.

This module is that rule (committing, and acting after the commit); the engine's other parts
are mixins that see it only as :class:`~.engine_core.EngineCore`: recovery
(:mod:`.engine_recovery`), submission (:mod:`.engine_submission`), cancel and retry
(:mod:`.engine_control`) and the workers' side (:mod:`.engine_workers`).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from titan.errors import statement_cancelled, unstorable
from titan.master.auth.tokens import JobTokens, WorkerCredentials
from titan.master.config import MasterConfig
from titan.master.events import EventHub
from titan.master.scheduling.blob_holds import BlobHolds
from titan.master.scheduling.engine_control import EngineControl
from titan.master.scheduling.engine_core import StageHooks
from titan.master.scheduling.engine_recovery import EngineRecovery
from titan.master.scheduling.engine_submission import EngineSubmission
from titan.master.scheduling.engine_workers import EngineWorkers
from titan.master.scheduling.refs import RecentJobNames
from titan.master.scheduling.scheduler import Scheduler
from titan.master.scheduling.state import Changes, DagRec, JobRec, WorkerRec, capacity
from titan.master.scheduling.views import finished_view
from titan.storage.base import Row, Storage, Transaction
from titan.storage.writer import GroupCommitWriter

T = TypeVar("T")
log = logging.getLogger("titan.master")


class Engine(EngineRecovery, EngineSubmission, EngineControl, EngineWorkers):
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
        self._read_away_at = -1e18  # when a read last found the database away (monotonic)
        self.sched.leases_held = self.database_away
        self._sweeper: asyncio.Task[None] | None = None
        #: When this master began to schedule (epoch seconds): workers another master (or this
        #: one's previous run) knew have a lease period from then to come back.
        self.started_at = time.time()
        #: The master is stopping (quiesce): no lease expires and no worker is lost from now on.
        self.stopping = False
        self.job_tokens: JobTokens | None = None
        self.agent_under_test: Callable[[JobRec, DagRec], bool] | None = None  # EngineCore's
        self.worker_credentials: WorkerCredentials | None = None
        self.secret: str | None = None  # signs job tokens and dashboard sessions
        self.blob_holds = BlobHolds()  # blobs known there, and held by writes in flight
        self.job_names = RecentJobNames()  # a wait on a job's name needs no read to find it
        self.revivals = asyncio.Lock()  # see EngineCore.revivals
        self.retiring: dict[int, asyncio.Future[Any]] = {}  # see EngineCore.retiring
        #: Called with (job id, state) when a job's state changes, after its commit: how the
        #: runs a job's process drove learn that the process is gone (see RunService).
        self.job_listeners: list[Callable[[int, str], None]] = []
        #: Called with a finished DAG's stored row when a retry reads it back into memory
        #: (it runs again): how a schedule learns that a run of its own goes again, which its
        #: overlap policy counts. The engine knows nothing of schedules.
        self.revive_listeners: list[Callable[[Row], None]] = []
        #: What a stage of an agent run writes in its DAG's submission transaction (the run
        #: row its DAG points at, the run's code version), and what the run hears once a
        #: stage is created or changes status (its end, its event): set by the run service.
        self.stage_hooks: StageHooks | None = None

    # -- lifecycle ----------------------------------------------------------------------------
    async def start(self) -> None:
        self.writer.start()
        self.secret = secret = await self.run(lambda tx: _ensure_secret(tx))
        self.job_tokens = JobTokens(secret)
        self.worker_credentials = WorkerCredentials(secret)
        await self.recover()
        self.started_at = time.time()
        self._sweeper = asyncio.create_task(self._sweep_workers())

    def quiesce(self) -> None:
        """The master begins to stop (SIGTERM): from now on no lease expires and no worker is
        lost, and parked polls are answered so their connections can close. uvicorn drains
        open requests first, with the port closed: the workers could not renew meanwhile, and
        their running jobs were LOST and ran again (QA). The next master (a restart, a
        standby) gives them a fresh lease, as after ``kill -9``."""
        self.stopping = True
        self.hub.stop()  # the long-polls of clients end now, and are asked again
        if self._sweeper:
            self._sweeper.cancel()
        for worker in self.sched.workers.values():
            if worker.poll and not worker.poll.done():
                worker.poll.set_result(None)

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
            try:
                with self.storage.read_transaction() as tx:
                    return fn(tx)
            except Exception as exc:
                said = self.storage.unstorable(exc)  # a NUL in what was asked for
                if said is not None:
                    raise unstorable(said) from exc
                said = self.storage.cancelled(exc)  # statement_timeout: not the database away
                if said is not None:
                    raise statement_cancelled(said) from exc
                if self.storage.unavailable(exc):
                    self._read_away_at = time.monotonic()
                raise
        return await asyncio.get_running_loop().run_in_executor(self._readers, work)

    def database_away(self) -> bool:
        """Whether the database is away now, or was within a lease's length: the writer
        waits for it, or a read found it gone. Workers' heartbeats are refused meanwhile (their
        credentials, their leases' writes), not silent: a lease is not to expire for that."""
        return self.writer.away_since > 0 \
            or time.monotonic() - self._read_away_at < self.sched.lease_seconds

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
        # Someone waits for a job or DAG this change finishes: its answer is read with this
        # transaction (inside it, or on PostgreSQL right after its COMMIT, which then carries
        # the change's writes in one round trip: Transaction.after_commit) and handed over
        # with the notice, instead of by a read of its own after.
        # Who waits is asked when the transaction runs (the writer's thread reads the hub's
        # table, a dict lookup), so a waiter that came while the change waited its turn in
        # the writer gets its answer too.
        finals = [*(("job", j) for j in ch.finished_jobs), *(("dag", d) for d in ch.finished_dags)]
        views: dict[tuple[str, int], Row | None] = {}
        waited = self.hub.waited

        def op(tx: Transaction) -> Any:
            ch.apply(tx)
            result = extra(tx) if extra else None
            wanted = [key for key in finals if waited(key)]
            if wanted:
                def read(rtx: Transaction) -> None:
                    for kind, ident in wanted:
                        views[(kind, ident)] = finished_view(rtx, kind, ident)
                tx.after_commit(read)
            return result

        # Nothing to write (a submission that leased its own jobs leaves only its notices):
        # no transaction, but the notices still wait for the commits queued before them.
        # Kept: memory holds these changes already, so the writer never fails them for a
        # statement the database cancelled (it tries them again, as while the database is away).
        fut = self.writer.after_queued() if ch.empty() and extra is None and not finals \
            else self.writer.submit(op, keep=True)
        for worker in woken:
            assert worker.poll is not None
            worker.poll.set_result(fut)  # type: ignore[arg-type]
            worker.lease_commit = fut
        fut.add_done_callback(lambda f: self._after_commit(ch, f, views))
        if ch.finished_dags:
            retired = tuple(ch.finished_dags)
            for dag_id in retired:
                self.retiring[dag_id] = fut
            fut.add_done_callback(lambda f: self._retired(retired, f))
        # Each caller gets a shield: a request handler cancelled while it waits (its client
        # went away, a channel closed) must not cancel the commit, whose notices — waiters'
        # answers, store_wait, events — go out when it completes.
        return asyncio.shield(fut)

    def _after_commit(self, ch: Changes, fut: asyncio.Future[Any],
                      views: dict[tuple[str, int], Row | None]) -> None:
        if fut.cancelled():
            # Awaited unshielded by a task that was cancelled: the writer commits all the
            # same, but its result (and so these notices) is lost. Callers get a shield.
            log.error("a commit's notices were lost: its future was cancelled")
            return
        if fut.exception() is not None:
            log.error("committing scheduler changes failed: %r", fut.exception())
            return
        for line in ch.warnings:
            log.warning("%s", line)
        for kind, data in ch.events:
            self.hub.publish(kind, data)
            if kind == "job_updated":
                for job_listener in self.job_listeners:
                    job_listener(data["id"], data["state"])
            if kind in ("dag_created", "dag_updated") and data.get("agent_run_id") \
                    and self.stage_hooks is not None:
                # A stage is created WAITING (its leases, if any, follow as dag_updated).
                self.stage_hooks.stage_changed(data["agent_run_id"], data["id"],
                                               data.get("status", "WAITING"))
        for write in ch.store:  # a service's address: store_wait returns (a withdrawal
            if not write.withdraw:  # only changes a key that is there: nobody waits for it)
                self.hub.notify(("store", write.key), write.value)
        for job_id in ch.finished_jobs:
            self.hub.notify(("job", job_id), views.get(("job", job_id)))
        for dag_id in ch.finished_dags:
            self.hub.notify(("dag", dag_id), views.get(("dag", dag_id)))

    def _retired(self, dag_ids: tuple[int, ...], fut: asyncio.Future[Any]) -> None:
        for dag_id in dag_ids:
            if self.retiring.get(dag_id) is fut:
                del self.retiring[dag_id]

    def _fire(self, kind: str, job_id: int) -> None:
        if self.stopping and kind == "lease":
            return  # stopping: its worker cannot reach this master to renew it (quiesce)
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
            free = capacity(worker, worker.poll_free)
            jobs = self.sched.take(worker, free, ch) if free > 0 else []
            worker.assigned.extend(j.id for j in jobs)
            if worker.assigned or worker.cancels:
                woken.append(worker)
        return woken


def _ensure_secret(tx: Transaction) -> str:
    secret = tx.get_meta("job_token_secret")
    if secret is None:
        secret = secrets.token_hex(32)
        tx.set_meta("job_token_secret", secret)
    return secret
