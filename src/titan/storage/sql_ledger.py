"""SQL for the run ledger: a batch chained as it is appended, and the Activity Ledger's
actions across runs, newest first (part of SQLTransaction).

The Activity Ledger is one keyset query over the ``ix_actions_started`` index, ``(started_at, run_id, seq)``: a page
reads its own rows and the next page starts where it ended, however many millions of actions
lie behind it. A run or an agent narrows the query through the run's key (the planner reads
that run's actions, or the agent's runs', and sorts them); a filter on the action's own
columns (actor, name, outcome, cost) is checked along the index, so a page of a filter that
matches rarely would walk the whole table: with ``scan``, such a walk stops after that many
index entries and says where (``searched_to``), for the next page to go on from.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import Connection, select, tuple_, update

from titan import ledger
from titan.storage import schema as t
from titan.storage.base import Row
from titan.storage.base_ledger import LedgerQuery

_FIRST_SCAN = 5_000  # index entries a bounded page tries before its whole `scan`
_COLUMNS = ("run_id", "seq", "id", "actor", "channel", "name", "outcome", "model", "cost_usd",
            "started_at", "duration_ns", "error_type")


def chain_batch(conn: Connection, run_id: str, rows: Sequence[Row], now: float,
                values: dict[str, Any], seen: Row | None,
                read_run: Callable[[str], Row | None]) -> tuple[list[Row], Any]:
    """Number a batch after the run's last action, chain it after the run's head, and move
    the run's totals (``values``) and head in one statement: the append's ledger part
    (``insert_actions``). Returns the numbered rows and the run's new (count, cost).

    The update holds only while the count is the one the seqs and links were computed from
    (``seen``: the run's row as the transaction read it): on PostgreSQL two masters appending
    to one run are ordered by the row lock, and the second finds the count moved, reads the
    row again and numbers and links after the first."""
    c = t.agent_runs.c
    while True:
        assert seen is not None, run_id
        first = int(seen["action_count"]) + 1
        encoded = [dict(r, run_id=run_id, seq=first + i, recorded_at=now)
                   for i, r in enumerate(rows)]
        head, start = ledger.extend(run_id, seen["chain_head"], seen["chain_start"], encoded)
        total = conn.execute(
            update(t.agent_runs).where(c.id == run_id, c.action_count == first - 1)
            .values(**values, chain_head=head, chain_start=start)
            .returning(c.action_count, c.cost_usd)).first()
        if total is not None:
            return encoded, total
        seen = read_run(run_id)


#: The schema version that began chaining actions (storage/migrations.py).
LEDGER_MIGRATION = 14


class LedgerSQL:
    conn: Connection

    def chained_since(self) -> float | None:
        m = t.schema_migrations.c
        found = self.conn.execute(select(m.applied_at).where(
            m.version == LEDGER_MIGRATION)).scalar()
        return None if found is None else float(found)

    def ledger_actions(self, q: LedgerQuery, limit: int, scan: int | None = None) -> Row:
        a, r = t.actions.c, t.agent_runs.c
        key = (a.started_at, a.run_id, a.seq)
        newer = q.after is not None  # a page newer than a row: walk upwards, then reverse
        walk: list[Any] = []  # what bounds the index walk itself
        if q.since is not None:
            walk.append(a.started_at >= q.since)
        if q.until is not None:
            walk.append(a.started_at < q.until)
        if q.before is not None:
            walk.append(tuple_(*key) < tuple_(*q.before))
        if q.after is not None:
            walk.append(tuple_(*key) > tuple_(*q.after))
        checks: list[Any] = []  # what is checked on each entry the walk reads
        if q.actor is not None:
            checks.append(a.actor == q.actor)
        if q.name is not None:
            checks.append(a.name == q.name)
        if q.outcomes:
            checks.append(a.outcome.in_(list(q.outcomes)))
        if q.min_cost is not None:
            checks.append(a.cost_usd >= q.min_cost)
        order = [k.asc() if newer else k.desc() for k in key]
        bounded = bool(scan and checks and q.run is None and q.agent is None)
        if q.run is not None:
            checks.append(a.run_id == q.run)
        if q.agent is not None:
            checks.append(r.agent_id == q.agent)
        # A filter that matches often fills its page within a few thousand entries: try that
        # bound first, and walk up to `scan` only when it did not.
        for size in dict.fromkeys((min(scan or 0, _FIRST_SCAN), scan or 0) if bounded
                                  else (0,)):
            bound, where = None, list(walk)
            if size:
                # Index-only: the key `size` entries along the walk; nothing past it is read.
                bound = self.conn.execute(select(*key).where(*walk).order_by(*order)
                                          .offset(size - 1).limit(1)).first()
                if bound is not None:
                    where.append(tuple_(*key) <= tuple_(*bound) if newer
                                 else tuple_(*key) >= tuple_(*bound))
            stmt = (select(*[getattr(a, k) for k in _COLUMNS], r.agent_id)
                    .join(t.agent_runs, r.id == a.run_id).where(*where, *checks)
                    .order_by(*order).limit(limit))
            rows = [dict(row._mapping) for row in self.conn.execute(stmt)]
            if bound is None or len(rows) >= limit:
                break
        searched_to = tuple(bound) if bound is not None and len(rows) < limit else None
        return {"actions": rows[::-1] if newer else rows, "searched_to": searched_to}
