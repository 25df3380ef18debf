"""The engine's side of workers: finding one, losing a silent one, its leases, fencing tokens.

Part of :class:`~titan.master.scheduling.engine.Engine` (a mixin). A worker is looked up (and
seen) on every call it makes; one silent for a whole lease period is lost by the sweeper,
which also prunes idempotency keys and forgets workers stopped or lost a week ago. Jobs leased to a worker go out with a job token, and a job
token may write only while its attempt still owns the job.
"""

from __future__ import annotations

import asyncio
import logging
import time
from functools import partial
from typing import Any

from titan.errors import NotFound, StaleAttempt
from titan.master.auth.tokens import Principal
from titan.master.idempotency import prune
from titan.master.scheduling.engine_core import EngineCore
from titan.master.scheduling.leasing import STALL_SECONDS
from titan.master.scheduling.state import Changes, WorkerRec, assignment

log = logging.getLogger("titan.master")

#: A worker stopped or lost this long ago (seconds) leaves the list: its jobs keep its id.
FORGET_WORKERS_AFTER = 7 * 86400.0


class EngineWorkers:
    # -- fencing ------------------------------------------------------------------------------
    def check_fence(self: EngineCore, principal: Principal) -> None:
        """A job token (or an evaluation agent's, of an attempt too) may write only while its
        attempt still owns the job."""
        if principal.role not in ("job", "agent"):
            return
        assert principal.job is not None and principal.attempt is not None
        if not self.sched.is_current(principal.job, principal.attempt):
            raise StaleAttempt(
                f"attempt {principal.attempt} of job {principal.job} no longer owns the job",
                details={"job": principal.job, "attempt": principal.attempt},
            )

    # -- workers ------------------------------------------------------------------------------
    def worker(self: EngineCore, worker_id: str) -> WorkerRec:
        worker = self.sched.workers.get(worker_id)
        if worker is None or worker.state == "lost":
            raise NotFound(f"unknown worker {worker_id}; register again",
                           code="unknown_worker", details={"worker_id": worker_id})
        worker.last_seen = time.time()
        return worker

    async def _sweep_workers(self: EngineCore) -> None:
        """Housekeeping: a worker silent for a whole lease period is lost."""
        period = max(0.2, self.config.lease_seconds / 3)
        next_prune = 0.0
        while True:
            slept, was = time.monotonic(), time.time()
            await asyncio.sleep(period)
            now, elapsed = time.time(), time.monotonic() - slept
            if elapsed - period > STALL_SECONDS or abs(now - was - elapsed) > STALL_SECONDS:
                # The master stood still (SIGSTOP, a paused VM): its workers spoke to no one
                # meanwhile. Each gets a whole lease period to be heard again, as after a
                # restart, rather than being lost (and its running jobs run twice). So too
                # when the wall clock stepped (NTP): when each was last seen, read on that
                # clock, says nothing now — a step forward lost every worker at once, one
                # back kept a dead worker live for the whole step.
                # A worker already lost or stopped keeps when it was last heard: the list
                # would say a dead host was seen when the master resumed.
                for worker in self.sched.workers.values():
                    if worker.state in ("live", "draining"):
                        worker.last_seen = now
                continue
            if now >= next_prune:  # forget idempotency keys no client can still retry with
                next_prune = now + 60.0
                pruned = self.writer.submit(prune(self.config.idempotency_ttl))
                pruned.add_done_callback(_log_prune_failure)
                # ... and workers long gone: every restart and --burst run registers a new
                # one, and the list (the API's, the Cluster page's) grew for ever.
                forgotten = self.writer.submit(
                    partial(_forget_workers, before=now - FORGET_WORKERS_AFTER))
                forgotten.add_done_callback(partial(_drop_forgotten, self.sched.workers))
            for worker in list(self.sched.workers.values()):
                # A draining worker too: one killed while it drained said nothing more. A
                # worker parked in a poll too: it heartbeats all the same, and one frozen
                # (SIGSTOP) keeps its connection, and so its poll, open for ever.
                if worker.state in ("live", "draining") \
                        and now - worker.last_seen > self.config.lease_seconds:
                    self.lose_worker_now(worker.id, "it missed its heartbeats")

    def lose_worker_now(self: EngineCore, worker_id: str, why: str, *,
                        distrusted: bool = False) -> None:
        """Count a worker lost now, not after a silent lease period (its credential ended).
        ``distrusted`` (its token was revoked): its attempts end now too, their job tokens
        stale at once, rather than at their leases' end."""
        worker = self.sched.workers.get(worker_id)
        if worker is None or worker.state not in ("live", "draining"):
            return
        log.warning("worker %s (%s) is lost: %s", worker.id, worker.name, why)
        ch = Changes()
        if distrusted:
            self.sched.end_attempts_of(worker.id, f"is lost: {why}", ch)
        self.sched.lose_worker(worker, ch)
        ch.events.append(("worker_updated", {"id": worker.id, "state": "lost"}))
        self.submit(ch)

    def replace_worker(self: EngineCore, worker_id: str, why: str) -> None:
        """A new process registered under ``worker_id``'s name while it no longer answered
        (or, since this master started, never came back): its successor. It is lost now,
        and the attempts it held end now and run again, spending no retry: left to their
        leases, a job stayed RUNNING on a dead process for a whole lease after a supervisor
        restarted its worker, or after `titan up` was killed and started again."""
        worker = self.sched.workers.get(worker_id)
        ch = Changes()
        ended = self.sched.end_attempts_of(worker_id, f"was replaced: {why}", ch)
        if worker is not None and worker.state in ("live", "draining"):
            self.sched.lose_worker(worker, ch)
            ch.events.append(("worker_updated", {"id": worker_id, "state": "lost"}))
        elif not ended:
            return
        log.warning("worker %s is lost: %s%s", worker_id, why,
                    f"; its {ended} running attempt(s) run again now" if ended else "")
        self.submit(ch)

    def assignments(self: EngineCore, worker: WorkerRec) -> list[dict[str, Any]]:
        out = []
        tokens = self.job_tokens
        assert tokens is not None
        for job_id in dict.fromkeys(worker.assigned):  # each job once: credit is spent per job
            job = self.sched.jobs.get(job_id)
            if job is None or job.state != "RUNNING" or job.worker_id != worker.id:
                continue  # cancelled between lease and delivery
            dag = self.sched.dags[job.dag_id]
            # An evaluation's agent under test gets its run's agent token, not a job token
            # (operator rights: it would read its task's answer key, docs/security.md).
            under_test = self.agent_under_test is not None and self.agent_under_test(job, dag)
            token = tokens.issue_agent(job.id, job.attempt) if under_test \
                else tokens.issue(job.id, job.attempt)
            out.append(assignment(job, token, dag))
        worker.assigned.clear()
        return out


def _forget_workers(tx: Any, before: float) -> list[str]:
    return list(tx.forget_workers(before))


def _drop_forgotten(workers: dict[str, WorkerRec], fut: asyncio.Future[Any]) -> None:
    """The scheduler forgets them too (on the event loop, where it runs)."""
    if fut.cancelled() or fut.exception() is not None:
        _log_prune_failure(fut)
        return
    for worker_id in fut.result():
        worker = workers.get(worker_id)
        if worker is not None and worker.state not in ("live", "draining"):
            del workers[worker_id]


def _log_prune_failure(fut: asyncio.Future[Any]) -> None:
    if not fut.cancelled() and fut.exception() is not None:
        log.warning("housekeeping failed: %r", fut.exception())
