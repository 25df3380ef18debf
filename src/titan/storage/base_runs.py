"""The storage interface's telemetry part: agent runs, agents and their recorded actions
(contract: tests/contract/test_storage_runs.py)."""

from __future__ import annotations

import abc
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from titan.storage.rows import Row


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
    #: The order of ``list_runs`` (one of RUN_SORTS): newest first by default; ``cost`` and
    #: ``duration`` largest first, ties newest first; ``iter_runs`` (exports) follows it too.
    sort: str = "recent"
    #: Archived runs: left out (False, the registry's default), only them (True), or both
    #: (None). A query by ``ids`` is not filtered by this.
    archived: bool | None = False
    #: Replays (runs with ``replay_of``): listed (True, the registry's default) or left out.
    replays: bool = True
    #: Only the runs a prune may delete (True): finished, of a class retention deletes, used
    #: by no stage or replay (as :meth:`RunStore.finished_runs_before` picks them).
    prunable: bool = False


#: The orders of the run registry.
RUN_SORTS: tuple[str, ...] = ("recent", "oldest", "cost", "duration")


@dataclass(frozen=True)
class ActionQuery:
    """Filters of a run's action list."""

    outcomes: tuple[str, ...] = ()
    search: str | None = None  # substring of name, actor, inputs, outputs or error
    actor: str | None = None
    channel: str | None = None
    after: int | None = None  # seq greater than this
    ids: tuple[str, ...] | None = None  # only these action ids (a few hundred at most)



class RunsTransaction(abc.ABC):
    """What agent telemetry keeps durably."""

    # -- agent telemetry ----------------------------------------------------------------------
    @abc.abstractmethod
    def create_run(self, row: Row) -> bool:
        """Insert a run row (id, created_at, started_at, status, agent_id, ...); False if a
        run with that id already exists (it is left as it was)."""

    @abc.abstractmethod
    def update_run(self, run_id: str, fields: Row) -> None:
        """Set some columns of a run."""

    @abc.abstractmethod
    def mark_runs_alive(self, run_ids: Sequence[str], now: float) -> list[str]:
        """Record a sign of life of the process recording these runs, on those still
        running; their ids."""

    @abc.abstractmethod
    def silent_runs(self, before: float) -> list[str]:
        """Running runs whose recording process last showed a sign of life before
        ``before`` (never for a run no process watches)."""

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
        at least ``min_rate``; most recent first; never replays, never archived runs."""

    @abc.abstractmethod
    def count_intercepts(self, since: float | None, min_rate: float) -> int:
        """How many runs :meth:`intercepts` would list with no limit."""

    @abc.abstractmethod
    def agent_ids(self, prefix: str, limit: int) -> list[str]:
        """Distinct agent ids containing ``prefix`` in either case, sorted."""

    @abc.abstractmethod
    def finished_runs_before(self, before: float, limit: int,
                             among: Sequence[str] | None = None) -> list[str]:
        """Ids of runs no longer running that started before ``before`` and whose retention
        class retention may delete (``titan.retention.DELETABLE``; only those in ``among``
        when given), oldest first. Never a run with a stage still waiting or running, nor one
        a running replay reads."""

    @abc.abstractmethod
    def archivable_runs(self, before: float, limit: int) -> list[str]:
        """Ids of runs not archived, no longer running, that started before ``before``,
        oldest first (every retention class: archiving deletes nothing); as for
        :meth:`finished_runs_before`, none that a stage or a replay still uses, and none
        taken out of the archive by hand since ``before``."""

    @abc.abstractmethod
    def unsettled_runs(self, run_ids: Sequence[str]) -> list[str]:
        """Those of ``run_ids`` that are running, have a stage still waiting or running, or
        are read by a running replay (in the order given)."""

    @abc.abstractmethod
    def set_archived(self, run_ids: Sequence[str], archived_at: float | None,
                     unarchived_at: float | None = None) -> list[str]:
        """Archive these runs at ``archived_at`` (or unarchive them, with None, by hand at
        ``unarchived_at`` when given); those not already in that state are changed, and
        their ids returned in the order given. An archived run keeps its first
        ``archived_at``."""

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
        action_count, success_count (its success-rate and cost over time). Replays are left
        out: Titan re-ran a recorded run at no cost, the agent did no new work (their served
        calls are not successes of the agent's, nor a diverged replay its failure)."""

    @abc.abstractmethod
    def known_action_ids(self, run_id: str, ids: Sequence[str]) -> set[str]:
        """Which of these action ids the run already holds (a resent batch)."""

    @abc.abstractmethod
    def insert_actions(self, run_id: str, rows: Sequence[Row], now: float,
                       run: Row | None = None) -> Row:
        """Append actions (numbered after the run's last) and add them to its totals;
        returns first_seq, action_count and cost_usd. Each is chained after the run's chain
        head (:func:`titan.ledger.extend`; its ``_content`` is used when given), and the head
        moves to the last one. ``run``: the run's row as this transaction read it, when the
        caller has it (else it is read here)."""

    @abc.abstractmethod
    def list_actions(self, run_id: str, q: ActionQuery, limit: int,
                     offset: int = 0, preview: int = 0) -> tuple[list[Row], int]:
        """A page of the run's actions in seq order, and how many match ``q`` in all.
        ``preview`` > 0 cuts inputs, outputs and the error message to that many characters,
        and adds ``error_length``: the whole message's."""

    @abc.abstractmethod
    def iter_actions(self, run_id: str, batch: int = 1000, after: int = 0) -> Iterator[Row]:
        """Every action of the run in order (those after seq ``after``), read a page at a
        time."""

    @abc.abstractmethod
    def recorded_actions(self, run_id: str, actor: str, after: int, limit: int) -> list[Row]:
        """Actions of ``actor`` and of its sub-actors (``actor/...``) after seq ``after``, in
        order, at most ``limit``: what a replay of that actor is served from."""

    @abc.abstractmethod
    def get_action(self, run_id: str, seq: int) -> Row | None:
        """One action, or None."""

    @abc.abstractmethod
    def action_breakdown(self, run_id: str) -> list[Row]:
        """Per (actor, channel): actions, cost_usd, duration_ns, input/output tokens and
        unpriced_calls (LLM calls of no known price, not in cost_usd)."""
