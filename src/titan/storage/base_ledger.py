"""The storage interface's ledger part: actions across every run, for the Activity Ledger
(contract: tests/contract/test_storage_ledger.py).

A run's own chain is read through :meth:`RunsTransaction.iter_actions`; this part is the one
query that crosses runs, newest first, a keyset page at a time.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass

from titan.storage.rows import Row


@dataclass(frozen=True)
class LedgerQuery:
    """Filters of the Activity Ledger (every field optional; names and ids match exactly)."""

    agent: str | None = None
    run: str | None = None
    actor: str | None = None
    name: str | None = None
    outcomes: tuple[str, ...] = ()
    since: float | None = None  # started at or after (epoch seconds)
    until: float | None = None  # started before
    min_cost: float | None = None  # USD, at least
    #: Keyset: only actions older than this ``(started_at, run_id, seq)`` (the last row of
    #: the page before), or newer than ``after`` (the first row of the page after).
    before: tuple[float, str, int] | None = None
    after: tuple[float, str, int] | None = None


class LedgerTransaction(abc.ABC):
    """What the Activity Ledger reads."""

    @abc.abstractmethod
    def chained_since(self) -> float | None:
        """When this database began chaining actions (its ledger migration was applied):
        an action recorded after it without a chain hash had it removed."""

    @abc.abstractmethod
    def ledger_actions(self, q: LedgerQuery, limit: int, scan: int | None = None) -> Row:
        """Actions matching ``q`` across runs, newest first by ``(started_at, run_id, seq)``,
        at most ``limit`` (with ``q.after``: the ``limit`` oldest of those newer than it,
        still newest first), as ``{"actions": [...], "searched_to": key | None}``.

        Each action: ``run_id``, ``seq``, ``id``, ``agent_id`` (its run's), ``actor``,
        ``channel``, ``name``, ``outcome``, ``model``, ``cost_usd``, ``started_at``,
        ``duration_ns``, ``error_type``. A page reads only its own rows through the
        ``(started_at, run_id, seq)`` index, or, when a run or an agent is named, their
        actions. With ``scan``, a walk along that index checking the action's own columns
        (actor, name, outcomes, cost) reads at most ``scan`` entries; when it stopped before
        filling the page, ``searched_to`` is the key it stopped at (the next page goes on
        from it), else None."""
