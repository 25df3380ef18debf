"""The storage interface: everything the master keeps durably, method by method.

A :class:`Storage` hands out transactions. Everything happens inside one::

    with storage.transaction() as tx:
        dag_id = tx.insert_dag({...})
        tx.insert_jobs([...])
    # committed here; an exception inside the block rolls it all back

The master's group-commit writer (``titan.storage.writer``) runs many small operations in one
transaction, which is what makes durable state changes cheap. Rows come back as plain dicts;
JSON columns (``args``, ``parents``, ``env``, ``capabilities``) come back decoded. Domain code
only ever sees this interface — never a database driver.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

from titan.storage.base_evals import EvalTransaction

Row = dict[str, Any]


@dataclass(frozen=True)
class RunQuery:
    """Filters of the run registry (every field optional)."""

    statuses: tuple[str, ...] = ()
    min_cost: float | None = None
    since: float | None = None  # started at or after (epoch seconds)
    before: float | None = None  # started before
    agent: str | None = None  # exact agent id
    search: str | None = None  # substring of the run id or agent id
    ids: tuple[str, ...] | None = None


@dataclass(frozen=True)
class ActionQuery:
    """Filters of a run's action list."""

    outcomes: tuple[str, ...] = ()
    search: str | None = None  # substring of name, actor, inputs, outputs or error
    actor: str | None = None
    channel: str | None = None
    after: int | None = None  # seq greater than this


class Transaction(EvalTransaction):
    """One database transaction. Not thread-safe: use it from the thread that opened it."""

    # -- meta ---------------------------------------------------------------------------------
    @abc.abstractmethod
    def get_meta(self, key: str) -> str | None:
        """The value stored under an internal settings key, or None."""

    @abc.abstractmethod
    def set_meta(self, key: str, value: str) -> None:
        """Store an internal settings key (insert or replace)."""

    # -- tokens -------------------------------------------------------------------------------
    @abc.abstractmethod
    def add_token(self, row: Row) -> None:
        """Insert a token row: id, token_hash (sha256 hex), role, name, created_at."""

    @abc.abstractmethod
    def token_by_hash(self, token_hash: str) -> Row | None:
        """The token row with that hash, revoked or not, or None."""

    @abc.abstractmethod
    def token_by_id(self, token_id: str) -> Row | None:
        """The token row with that id, revoked or not, or None."""

    @abc.abstractmethod
    def list_tokens(self) -> list[Row]:
        """All token rows (without hashes' meaning), oldest first."""

    @abc.abstractmethod
    def revoke_token(self, token_id: str, now: float) -> bool:
        """Mark a token revoked; False if there is no such live token."""

    # -- agent runs, DAGs, jobs ---------------------------------------------------------------
    @abc.abstractmethod
    def ensure_agent_run(self, run_id: str, now: float, agent_id: str | None = None) -> bool:
        """Create the agent run row (running, started now) if it does not exist yet; True
        when it was created."""

    @abc.abstractmethod
    def list_agent_runs(self, limit: int, offset: int) -> tuple[list[Row], int]:
        """Agent runs, most recently created first, and the total count."""

    @abc.abstractmethod
    def get_agent_run(self, run_id: str) -> Row | None:
        """One agent run row or None."""

    # -- agent telemetry ----------------------------------------------------------------------
    @abc.abstractmethod
    def create_run(self, row: Row) -> bool:
        """Insert a run row (id, created_at, started_at, status, agent_id, ...); False if a
        run with that id already exists (it is left as it was)."""

    @abc.abstractmethod
    def update_run(self, run_id: str, fields: Row) -> None:
        """Set some columns of a run."""

    @abc.abstractmethod
    def get_run(self, run_id: str) -> Row | None:
        """One run with its totals (tags decoded), or None."""

    @abc.abstractmethod
    def list_runs(self, q: RunQuery, limit: int, offset: int) -> tuple[list[Row], int]:
        """Runs matching ``q``, most recently started first, and how many match."""

    @abc.abstractmethod
    def iter_runs(self, q: RunQuery, batch: int = 500) -> Iterator[Row]:
        """Every run matching ``q`` in list order, read a page at a time."""

    @abc.abstractmethod
    def intercepts(self, since: float | None, min_rate: float, limit: int) -> list[Row]:
        """Failed runs, runs over budget and runs whose blocked+replayed share of actions is
        at least ``min_rate``; most recent first; never replays."""

    @abc.abstractmethod
    def agent_ids(self, prefix: str, limit: int) -> list[str]:
        """Distinct agent ids containing ``prefix``, sorted."""

    @abc.abstractmethod
    def finished_runs_before(self, before: float, limit: int,
                             among: Sequence[str] | None = None) -> list[str]:
        """Ids of runs no longer running that started before ``before`` (only those in
        ``among`` when given), oldest first."""

    @abc.abstractmethod
    def delete_runs(self, run_ids: Sequence[str]) -> int:
        """Delete runs and their actions (their DAGs stay, ungrouped); how many were deleted."""

    @abc.abstractmethod
    def replays_of(self, run_id: str, limit: int) -> list[Row]:
        """The runs that replay ``run_id``, newest first."""

    @abc.abstractmethod
    def run_scripts(self, run_id: str) -> list[tuple[str, str]]:
        """(filename, sha256) of the scripts the run's stages ran, sorted."""

    @abc.abstractmethod
    def get_agent(self, agent_id: str) -> Row | None:
        """The agent's settings row (id, budget_usd, created_at), or None."""

    @abc.abstractmethod
    def set_agent_budget(self, agent_id: str, budget_usd: float | None, now: float) -> None:
        """Set (or clear, with None) the budget each run of the agent gets by default."""

    @abc.abstractmethod
    def agent_runs_series(self, agent_id: str, limit: int) -> list[Row]:
        """The agent's latest runs, oldest first: id, status, started_at, ended_at, cost_usd,
        action_count, success_count (its success-rate and cost over time)."""

    @abc.abstractmethod
    def known_action_ids(self, run_id: str, ids: Sequence[str]) -> set[str]:
        """Which of these action ids the run already holds (a resent batch)."""

    @abc.abstractmethod
    def insert_actions(self, run_id: str, rows: Sequence[Row], now: float) -> Row:
        """Append actions (numbered after the run's last) and add them to its totals;
        returns first_seq, action_count and cost_usd."""

    @abc.abstractmethod
    def list_actions(self, run_id: str, q: ActionQuery, limit: int,
                     offset: int = 0, preview: int = 0) -> tuple[list[Row], int]:
        """A page of the run's actions in seq order, and how many match ``q`` in all."""

    @abc.abstractmethod
    def iter_actions(self, run_id: str, batch: int = 1000) -> Iterator[Row]:
        """Every action of the run in order, read a page at a time."""

    @abc.abstractmethod
    def recorded_actions(self, run_id: str, actor: str, after: int, limit: int) -> list[Row]:
        """Actions of ``actor`` and of its sub-actors (``actor/...``) after seq ``after``, in
        order, at most ``limit``: what a replay of that actor is served from."""

    @abc.abstractmethod
    def get_action(self, run_id: str, seq: int) -> Row | None:
        """One action, or None."""

    @abc.abstractmethod
    def action_breakdown(self, run_id: str) -> list[Row]:
        """Per (actor, channel): actions, cost_usd, duration_ns, input/output tokens."""

    @abc.abstractmethod
    def next_dag_run(self, name: str) -> int:
        """The run number the next submission of DAG ``name`` gets (1 for a new name)."""

    @abc.abstractmethod
    def insert_dag(self, row: Row) -> int:
        """Insert a DAG row; returns its id."""

    @abc.abstractmethod
    def insert_jobs(self, rows: Sequence[Row]) -> list[int]:
        """Insert job rows (JSON fields given as Python values); returns their ids in order."""

    @abc.abstractmethod
    def update_dag(self, dag_id: int, fields: Row) -> None:
        """Set some columns of a DAG."""

    @abc.abstractmethod
    def get_dag(self, dag_id: int) -> Row | None:
        """One DAG row or None."""

    @abc.abstractmethod
    def find_dag(self, name: str, run: int | None = None) -> Row | None:
        """DAG ``name`` at ``run``, or its latest run when run is None."""

    @abc.abstractmethod
    def list_dags(
        self,
        *,
        status: str | None = None,
        name: str | None = None,
        agent_run_id: str | None = None,
        limit: int = 50,
        offset: int = 0,
        newest_first: bool = True,
    ) -> tuple[list[Row], int]:
        """DAGs matching the filters (name: substring), and the total count before paging."""

    @abc.abstractmethod
    def job_counts(self, dag_ids: Iterable[int]) -> dict[int, dict[str, int]]:
        """For each DAG id, how many of its jobs are in each state."""

    @abc.abstractmethod
    def unfinished_dags(self) -> list[Row]:
        """DAGs whose status is WAITING or RUNNING: what a restarted master must resume."""

    @abc.abstractmethod
    def get_job(self, job: int) -> Row | None:
        """One job row by numeric id, or None."""

    @abc.abstractmethod
    def find_job(self, job_id: str, dag_name: str | None = None, run: int | None = None) -> Row | None:
        """The latest job with that user job id (within DAG name/run when given)."""

    @abc.abstractmethod
    def jobs_of_dags(self, dag_ids: Iterable[int]) -> list[Row]:
        """All jobs of these DAGs, in DAG then submission order."""

    @abc.abstractmethod
    def graph_of_dag(self, dag_id: int) -> list[Row]:
        """A DAG's jobs as its graph needs them, in submission order: ``id``, ``job_id``,
        ``parents``, ``state``, ``job_type`` only (a 10,000-job page reads no more)."""

    @abc.abstractmethod
    def update_job(self, job: int, fields: Row) -> None:
        """Set some columns of a job."""

    # -- attempts and logs --------------------------------------------------------------------
    @abc.abstractmethod
    def insert_attempt(self, row: Row) -> None:
        """Record an attempt starting: job, attempt, worker_id, started_at, state."""

    @abc.abstractmethod
    def finish_attempt(self, job: int, attempt: int, fields: Row) -> None:
        """Set the outcome of an attempt (state, exit_code, error, finished_at)."""

    @abc.abstractmethod
    def attempts_of(self, job: int) -> list[Row]:
        """Every attempt of a job, first first."""

    @abc.abstractmethod
    def add_log_lines(self, rows: Sequence[Row]) -> None:
        """Append log lines (job, attempt, seq, stream, ts, line); a repeated (job, attempt,
        seq) is ignored, so a worker may resend a batch it is unsure about."""

    @abc.abstractmethod
    def log_lines(self, job: int, attempt: int, after: int = 0, limit: int = 10_000) -> list[Row]:
        """Lines of one attempt with seq > after, in order, at most ``limit``."""

    # -- idempotency keys ---------------------------------------------------------------------
    @abc.abstractmethod
    def idempotent_result(self, key: str) -> tuple[str, str] | None:
        """(scope, result JSON) recorded under an Idempotency-Key, or None."""

    @abc.abstractmethod
    def record_idempotent(self, key: str, scope: str, result: str, now: float) -> None:
        """Record a write's result under its key (in the write's own transaction)."""

    @abc.abstractmethod
    def prune_idempotency(self, before: float) -> int:
        """Forget keys recorded before ``before``; how many went."""

    # -- dashboard sessions -------------------------------------------------------------------
    @abc.abstractmethod
    def end_session(self, session_id: str, expires_at: float, now: float) -> None:
        """Record a signed-out session (idempotent) and forget those expired before ``now``."""

    @abc.abstractmethod
    def session_ended(self, session_id: str) -> bool:
        """Whether this session was signed out."""

    # -- store --------------------------------------------------------------------------------
    @abc.abstractmethod
    def store_get(self, key: str) -> str | None:
        """The string value at key, or None."""

    @abc.abstractmethod
    def store_put(self, key: str, value: str, now: float) -> None:
        """Set the string value at key."""

    @abc.abstractmethod
    def store_delete(self, key: str) -> bool:
        """Delete the value and the set at key; True if anything was there."""

    @abc.abstractmethod
    def store_incr(self, key: str, by: int, now: float) -> int:
        """Atomically add ``by`` to the integer at key (missing counts as 0); the new value.
        Raises ValidationFailed when the current value is not an integer."""

    @abc.abstractmethod
    def store_sadd(self, key: str, member: str, now: float) -> int:
        """Add a member to the set at key: 1 if it was new, 0 if already present."""

    @abc.abstractmethod
    def store_smembers(self, key: str) -> list[str]:
        """Members of the set at key, sorted (empty when missing)."""

    @abc.abstractmethod
    def store_keys(self, prefix: str, limit: int) -> list[Row]:
        """Keys starting with prefix, sorted: key, kind ('value' or 'set'), updated_at."""

    # -- blobs and files ----------------------------------------------------------------------
    @abc.abstractmethod
    def blobs_present(self, shas: Iterable[str]) -> set[str]:
        """Which of these content hashes are recorded as stored."""

    @abc.abstractmethod
    def add_blob(self, sha256: str, size: int, now: float) -> None:
        """Record a stored blob (idempotent)."""

    @abc.abstractmethod
    def add_file(self, row: Row) -> int:
        """Bind a name to a blob: name, sha256, size, store_key, dag_id, job, created_at."""

    @abc.abstractmethod
    def latest_file(self, *, name: str | None = None, store_key: str | None = None) -> Row | None:
        """The newest file with that name, or published under that store key."""

    @abc.abstractmethod
    def list_files(self, *, dag_id: int | None = None, limit: int = 100) -> list[Row]:
        """Files, newest first, optionally only those a DAG's jobs produced."""

    # -- workers ------------------------------------------------------------------------------
    @abc.abstractmethod
    def upsert_worker(self, row: Row) -> None:
        """Insert or replace a worker row."""

    @abc.abstractmethod
    def update_worker(self, worker_id: str, fields: Row) -> None:
        """Set some columns of a worker."""

    @abc.abstractmethod
    def list_workers(self) -> list[Row]:
        """All workers ever registered, newest first."""


class Storage(abc.ABC):
    """A database holding Titan's state. Thread-safe: each transaction uses its own connection."""

    url: str

    @abc.abstractmethod
    def migrate(self) -> int:
        """Bring the schema to the current version; returns that version. Safe to repeat."""

    @abc.abstractmethod
    def transaction(self) -> AbstractContextManager[Transaction]:
        """Open a read-write transaction, committed when the block exits cleanly."""

    @abc.abstractmethod
    def claim_scheduler(self) -> None:
        """Become the one master scheduling over this database, for as long as this storage
        stays open. Raises ConfigError if another live master holds it: two schedulers on
        one database would both start the same jobs."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release every connection (and the scheduler claim)."""


def iter_chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    """Split a long IN list so no statement exceeds the driver's parameter limits."""
    for i in range(0, len(items), size):
        yield items[i : i + size]
