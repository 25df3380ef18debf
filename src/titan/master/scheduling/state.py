"""In-memory records the scheduler works on, and the change set it hands to storage.

The scheduler mutates these records synchronously on the event loop and writes down every
mutation in a :class:`Changes`; the engine commits the change set (group commit) before
anyone outside is told. Records exist only for DAGs that are not finished: history is read
from the database.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, defaultdict, deque
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from titan.master.scheduling.log_cap import AttemptLog
from titan.master.scheduling.worker_clock import WorkerClock
from titan.services import SERVICE_TYPES
from titan.storage.base import Row, Transaction

PENDING, READY, RUNNING = "PENDING", "READY", "RUNNING"
COMPLETED, FAILED, CANCELLED, SKIPPED, TIMED_OUT = (
    "COMPLETED", "FAILED", "CANCELLED", "SKIPPED", "TIMED_OUT",
)
# Approval gates: a gate waits for a person (occupying no worker slot), then is approved
# (its children run), rejected or expired (its descendants are SKIPPED).
WAITING_APPROVAL, APPROVED, REJECTED, EXPIRED = (
    "WAITING_APPROVAL", "APPROVED", "REJECTED", "EXPIRED",
)
TERMINAL = frozenset({COMPLETED, FAILED, CANCELLED, SKIPPED, TIMED_OUT, APPROVED, REJECTED, EXPIRED})
ACTIVE = frozenset({PENDING, READY, RUNNING, WAITING_APPROVAL})
# The ends only a job that started reaches (a job cancelled or skipped may never have run).
STARTED_ENDS = frozenset({COMPLETED, FAILED, TIMED_OUT, APPROVED, REJECTED, EXPIRED})
# What lets a child run.
SUCCEEDED = frozenset({COMPLETED, APPROVED})
JOB_STATES = (PENDING, READY, RUNNING, WAITING_APPROVAL, COMPLETED, APPROVED, FAILED, REJECTED,
              EXPIRED, CANCELLED, SKIPPED, TIMED_OUT)
APPROVAL = "APPROVAL"  # the job_type of a gate

# Columns copied verbatim into a worker's assignment (``requirement``: an executor may map
# it to resources, e.g. Ray's GPUs).
ASSIGNMENT_FIELDS = (
    "job_id", "filename", "script_sha256", "args", "env", "job_type", "is_archive", "port",
    "runner", "timeout", "requirement", "service",
)


#: How the reason of a job PENDING for want of a live worker offering its capability begins
#: (views tell it from a job waiting for its parents, a delay or a retry by this).
NO_WORKER = "waiting for a worker with capability "

class StoreWrite(NamedTuple):
    """A TitanStore write that commits with a change set (a service's address): ``key`` set
    to ``value``; or, with ``withdraw``, only while the key still holds ``value`` (a newer
    run's service may have taken it since): set to ``then`` (another run's service still
    live) or deleted when ``then`` is None."""

    key: str
    value: str
    withdraw: bool = False
    then: str | None = None


@dataclass(eq=False)
class JobRec:
    id: int
    dag_id: int
    job_id: str
    requirement: str
    priority: int
    delay: float
    affinity: bool
    max_attempts: int
    state: str
    attempt: int
    row: Row  # the static columns (filename, args, ...) for assignments
    parents: list[int] = field(default_factory=list)
    children: list[int] = field(default_factory=list)
    waiting_parents: int = 0
    reason: str | None = None
    worker_id: str | None = None
    lease_expires: float | None = None
    not_before: float | None = None
    queued_on: str | None = None  # the capability or "worker:<id>" queue holding it
    lease_losses: int = 0
    started_at: float | None = None  # when its running attempt was leased
    unspent_attempts: int = 0  # lost or handed back: no retry spent (scheduling/leasing.py)
    approval_deadline: float | None = None  # a gate with max_wait_seconds expires then
    # A gate's decision (master/scheduling/gates.py), and those a retry asked again.
    decided_by: str | None = None
    decided_at: float | None = None
    decision_comment: str | None = None
    decisions: list[Row] | None = None
    # A service's health and address as its worker reported them, and a stop asked for
    # (master/scheduling/services.py); None for other jobs and before a service first runs.
    service_status: Row | None = None
    # Its current attempt's log as the master counts it against TITAN_MAX_LOG_MB, and the
    # ending held past the cap (log_cap.py); None until a line comes with the cap set.
    log: AttemptLog | None = None

    @property
    def is_gate(self) -> bool:
        return bool(self.row.get("job_type") == APPROVAL)

    @property
    def is_service(self) -> bool:
        return self.row.get("job_type") in SERVICE_TYPES


@dataclass(eq=False)
class DagRec:
    id: int
    name: str
    run: int
    agent_run_id: str | None
    status: str
    started_at: float | None
    jobs: list[int] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)
    cancelled: bool = False
    submitted_at: float | None = None
    finished_at: float | None = None

    def as_row(self) -> Row:
        """The DAG as its database row would read (for answers that need no read)."""
        return {"id": self.id, "name": self.name, "run": self.run,
                "agent_run_id": self.agent_run_id, "status": self.status,
                "submitted_at": self.submitted_at, "started_at": self.started_at,
                "finished_at": self.finished_at, "job_count": len(self.jobs)}


@dataclass(eq=False)
class WorkerRec:
    id: str
    name: str
    hostname: str
    capabilities: frozenset[str]
    slots: int
    last_seen: float
    state: str = "live"  # live, draining, lost
    running: set[int] = field(default_factory=set)
    private: deque[int] = field(default_factory=deque)  # affinity jobs held for this worker
    cancels: list[tuple[int, int]] = field(default_factory=list)
    # Why a kill of ``cancels`` was asked, said with it: the job may be retired from
    # memory by the time the kill is sent (a cancelled DAG's), and its worker logged
    # 'its job has ended meanwhile' for a cancel.
    kill_reasons: dict[tuple[int, int], str] = field(default_factory=dict)
    poll: asyncio.Future[None] | None = None
    poll_free: int = 0
    # A quick poll (wait 0) found no long-poll parked: the long-poll on its way was offered
    # before those slots freed up, so it must answer at once rather than park on a stale offer.
    stale_offer: bool = False
    assigned: list[int] = field(default_factory=list)  # leased, not yet handed over
    # The commit carrying the newest lease in ``assigned``: no poll or push hands a job over
    # before it lands (the writer commits in order, so every earlier lease is in too).
    lease_commit: asyncio.Future[Any] | None = None
    # Slots promised to a submission whose leases commit with it (engine_submission.py):
    # counted as taken until that commit lands and the jobs are in ``assigned``.
    reserved: int = 0
    transport: str = "http"  # how its jobs travel: "channel" (the WebSocket) or "http" polls
    channel: object | None = None  # the worker channel that serves it (worker_channel.py)
    # Whether its executor may run more jobs than its slots while some of its jobs wait on
    # the master (lending.py): a local worker's processes can; a Ray worker's CPUs cannot.
    lends: bool = False
    # Its jobs parked in a wait on the master now: job id -> open waits (lending.py).
    waiting: dict[int, int] = field(default_factory=dict)
    # How far its wall clock is from the master's: its log lines' times are shifted by it.
    clock: WorkerClock = field(default_factory=WorkerClock)
    # The Titan version it runs, as it said at registration (None: it did not say).
    version: str | None = None

    @property
    def live(self) -> bool:
        return self.state == "live"


@dataclass
class Changes:
    """Everything one scheduler step changed, to be committed together."""

    jobs: defaultdict[int, Row] = field(default_factory=lambda: defaultdict(dict))
    dags: defaultdict[int, Row] = field(default_factory=lambda: defaultdict(dict))
    new_attempts: list[Row] = field(default_factory=list)
    done_attempts: list[tuple[int, int, Row]] = field(default_factory=list)
    workers: dict[str, Row] = field(default_factory=dict)
    log_lines: list[Row] = field(default_factory=list)
    events: list[tuple[str, Row]] = field(default_factory=list)
    finished_jobs: list[int] = field(default_factory=list)
    finished_dags: list[int] = field(default_factory=list)
    touched_dags: set[int] = field(default_factory=set)
    timers: list[tuple[float, str, int]] = field(default_factory=list)
    dispatch: bool = False
    # TitanStore writes that go with these changes (services' addresses).
    store: list[StoreWrite] = field(default_factory=list)
    # Lines for the master's log, written once these changes commit (a decision that did
    # not commit did not happen): what an operator must hear of, e.g. jobs run again.
    warnings: list[str] = field(default_factory=list)

    def empty(self) -> bool:
        return not (self.jobs or self.dags or self.new_attempts or self.done_attempts
                    or self.workers or self.log_lines or self.store)

    def apply(self, tx: Transaction) -> None:
        """Write the change set (runs in the writer thread, inside one transaction)."""
        if self.log_lines:
            tx.add_log_lines(self.log_lines)
        if self.new_attempts:
            tx.insert_attempts(self.new_attempts)
        if self.jobs:
            tx.update_jobs(self.jobs)
        if self.done_attempts:
            tx.finish_attempts(self.done_attempts)
        if self.dags:
            tx.update_dags(self.dags)
        for worker_id, fields in self.workers.items():
            tx.update_worker(worker_id, fields)
        for write in self.store:
            if not write.withdraw:
                tx.store_put(write.key, write.value, time.time())
            elif tx.store_get(write.key) != write.value:
                pass  # not if a newer run's service took the key
            elif write.then is not None:
                tx.store_put(write.key, write.then, time.time())
            else:
                tx.store_delete(write.key)


def dag_status(counts: Counter[str], cancelled: bool = True, started: bool = False) -> str:
    """A DAG's (or agent stage's) status from its job counts. ``cancelled``: whether the DAG
    was cancelled whole, which its cancelled jobs then say (CANCELLED); jobs cancelled one
    by one beside completed ones make a mixed result instead, seed 000's PARTIAL (a stage
    of four researchers with one cancelled read CANCELLED although three had finished).
    ``started``: a job of it has run (seed 000's WAITING is "no jobs have started yet": a
    stage whose only job waits out a retry's backoff went back to WAITING)."""
    if sum(counts[s] for s in ACTIVE):
        return "RUNNING" if started or has_started(counts) else "WAITING"
    bad = counts[FAILED] + counts[TIMED_OUT] + counts[REJECTED] + counts[EXPIRED]
    if bad:
        return "PARTIAL" if counts[COMPLETED] + counts[APPROVED] else "FAILED"
    if counts[CANCELLED] or counts[SKIPPED]:
        return "PARTIAL" if not cancelled and counts[COMPLETED] + counts[APPROVED] \
            else "CANCELLED"
    return "COMPLETED"


def has_started(counts: Counter[str]) -> bool:
    """Whether the counts show a job that has started: one running or at its gate, or one
    that ended in a state only a started job reaches. A job cancelled or skipped may never
    have run: cancelling one PENDING job of a DAG nothing had started made it RUNNING."""
    return any(counts[s] for s in (RUNNING, WAITING_APPROVAL, *STARTED_ENDS))


def capacity(worker: WorkerRec, offered: int) -> int:
    """How many more jobs a worker may get: what its poll offers, never more than its slots
    minus what it holds or was promised. An offer can be out of date (a poll parked before a
    job arrived by another poll's reply); the slot count is the guard that cannot be.

    The slots of its jobs that wait on the master are lent on top (lending.py): the worker
    counts them busy in its offer, the master knows they are idle."""
    lent = lent_slots(worker)
    return min(offered + lent - len(worker.assigned),
               worker.slots + lent - len(worker.running)) - worker.reserved


def lent_slots(worker: WorkerRec) -> int:
    """The slots a worker's waiting jobs lend it now: one per job that runs on it and waits.
    Not capped: a lent slot goes to the head of the queue, which may be another orchestrator
    that waits in turn (or a stage that is one), and a cap at the worker's slots deadlocked
    2x-slots orchestrators and any nested one. The jobs at work never exceed the slots."""
    if not worker.waiting:
        return 0
    return sum(1 for job_id in worker.waiting if job_id in worker.running)


def job_event(job: JobRec) -> Row:
    event = {"id": job.id, "job_id": job.job_id, "dag_id": job.dag_id, "state": job.state,
             "attempt": job.attempt, "worker_id": job.worker_id, "reason": job.reason}
    if job.service_status is not None:
        event["service"] = job.service_status
    return event


def assignment(job: JobRec, token: str, dag: DagRec) -> dict[str, Any]:
    out = {k: job.row[k] for k in ASSIGNMENT_FIELDS}
    out.update(
        id=job.id, attempt=job.attempt, ref=f"{dag.name}#{dag.run}/{job.job_id}", dag=dag.name,
        dag_id=dag.id, agent_run_id=dag.agent_run_id, token=token,
    )
    return out
