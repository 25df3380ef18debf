"""SQL for agent runs' telemetry: runs, agents and actions (part of :class:`SQLTransaction`).

Runs carry running totals (cost, action counts by outcome) updated in the same transaction as
each batch of actions, so the registry and its filters never scan the actions table.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from typing import Any

from sqlalchemy import (
    Connection,
    Float,
    and_,
    bindparam,
    case,
    delete,
    func,
    or_,
    select,
    text,
    update,
)

from titan.retention import DELETABLE
from titan.storage import compiled
from titan.storage import schema as t
from titan.storage.base import ActionQuery, Row, RunQuery, iter_chunks
from titan.storage.sql_ledger import chain_batch

_RUN_JSON = ("tags", "replay", "code", "started_by", "pii")
_OUTCOME_COUNTER = {"success": "success_count", "error": "error_count",
                    "blocked": "blocked_count", "replayed": "replayed_count"}
# Columns of the action list: everything but the full payloads' tails (previews are cut by
# the caller's query when they are long).
ACTION_ROW_KEYS = tuple(c.key for c in t.actions.columns)


_KNOWN_IDS_PG = text("SELECT a.id FROM unnest(CAST(:ids AS VARCHAR[])) AS u(id) "
                     "JOIN actions a ON a.run_id = :run_id AND a.id = u.id")
_COPY_ACTIONS = "COPY actions ({}) FROM STDIN".format(", ".join(ACTION_ROW_KEYS))


def _copy_actions(conn: Any, rows: list[Row]) -> None:
    """PostgreSQL: append action rows with COPY, in the caller's transaction. A batch of
    actions is the master's largest write; COPY takes it about three times as fast as a
    multi-row INSERT (the issue 17 measurement: 20.6k against 6.9k rows/s)."""
    raw = conn.connection.driver_connection  # the psycopg connection under this transaction
    with raw.cursor() as cur, cur.copy(_COPY_ACTIONS) as copy:
        for r in rows:
            copy.write_row([r.get(k) for k in ACTION_ROW_KEYS])


def _like(text: str) -> str:
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _run_out(row: Any) -> Row:
    out = dict(row._mapping)
    for key in _RUN_JSON:
        out[key] = json.loads(out[key]) if out.get(key) else None
    out["blocked"] = bool(out.get("blocked"))
    return out


def _action_out(row: Any) -> Row:
    out = dict(row._mapping)
    out["tags"] = json.loads(out["tags"]) if out.get("tags") else None
    out["pii"] = json.loads(out["pii"]) if out.get("pii") else None
    out["inputs_blob"] = bool(out["inputs_blob"])
    out["outputs_blob"] = bool(out["outputs_blob"])
    return out



def _run_order(sort: str) -> list[Any]:
    """ORDER BY for a registry sort (``RUN_SORTS``); every order ends on (started_at, id) so
    pages never overlap. ``duration`` is what the Runs page shows: up to now while running,
    else to the end (or the last action)."""
    c = t.agent_runs.c
    started = func.coalesce(c.started_at, c.created_at)
    newest = [c.started_at.desc(), c.id.desc()]
    if sort == "oldest":
        return [c.started_at.asc(), c.id.asc()]
    if sort == "cost":
        return [c.cost_usd.desc(), *newest]
    if sort == "duration":
        now = bindparam("now", time.time(), type_=Float)
        end = case((and_(c.ended_at.is_(None), c.status == "running"), now),
                   else_=func.coalesce(c.ended_at, c.last_action_at, started))
        return [(end - started).desc(), *newest]
    return newest

class RunsSQL:
    conn: Connection
    insert: Any

    # -- runs ---------------------------------------------------------------------------------
    def create_run(self, row: Row) -> bool:
        values = dict(row)
        for key in _RUN_JSON:
            if key in values and values[key] is not None:
                values[key] = json.dumps(values[key])
        result = self.conn.execute(
            self.insert(t.agent_runs).values(**values).on_conflict_do_nothing()
            .returning(t.agent_runs.c.id))
        return result.first() is not None

    def update_run(self, run_id: str, fields: Row) -> None:
        values = dict(fields)
        for key in _RUN_JSON:
            if key in values and values[key] is not None:
                values[key] = json.dumps(values[key])
        self.conn.execute(t.agent_runs.update().where(t.agent_runs.c.id == run_id).values(**values))

    def get_run(self, run_id: str) -> Row | None:
        row = compiled.execute(
            self.conn, "get_run",
            lambda: select(t.agent_runs).where(t.agent_runs.c.id == bindparam("pk")),
            {"pk": run_id}).first()
        return _run_out(row) if row else None

    def _run_conditions(self, q: RunQuery) -> list[Any]:
        c = t.agent_runs.c
        conds: list[Any] = []
        if q.statuses:
            conds.append(c.status.in_(list(q.statuses)))
        if q.min_cost is not None:
            conds.append(c.cost_usd >= q.min_cost)
        if q.since is not None:
            conds.append(c.started_at >= q.since)
        if q.before is not None:
            conds.append(c.started_at < q.before)
        if q.agent:
            conds.append(c.agent_id == q.agent)
        if q.search:
            pattern = _like(q.search)
            conds.append(or_(c.id.like(pattern, escape="\\"),
                             c.agent_id.like(pattern, escape="\\")))
        if q.ids is not None:
            conds.append(c.id.in_(list(q.ids)))
        elif q.archived is not None:
            conds.append(c.archived_at.isnot(None) if q.archived else c.archived_at.is_(None))
        return conds

    def list_runs(self, q: RunQuery, limit: int, offset: int) -> tuple[list[Row], int]:
        conds = self._run_conditions(q)
        total = self.conn.execute(
            select(func.count()).select_from(t.agent_runs).where(*conds)).scalar_one()
        rows = self.conn.execute(
            select(t.agent_runs).where(*conds)
            .order_by(*_run_order(q.sort)).limit(limit).offset(offset))
        return [_run_out(r) for r in rows], int(total)

    def iter_runs(self, q: RunQuery, batch: int = 500) -> Iterator[Row]:
        """Every matching run, newest first, a page at a time (keyset: no OFFSET rescans)."""
        c = t.agent_runs.c
        conds = self._run_conditions(q)
        after: tuple[float, str] | None = None
        while True:
            where = list(conds)
            if after is not None:
                where.append(or_(c.started_at < after[0],
                                 and_(c.started_at == after[0], c.id < after[1])))
            rows = [_run_out(r) for r in self.conn.execute(
                select(t.agent_runs).where(*where)
                .order_by(c.started_at.desc(), c.id.desc()).limit(batch))]
            yield from rows
            if len(rows) < batch:
                return
            after = (rows[-1]["started_at"], rows[-1]["id"])

    def intercepts(self, since: float | None, min_rate: float, limit: int) -> list[Row]:
        """Runs that need a look: failed, over budget, or with a high share of blocked and
        replayed actions; most recent first. Replays are not among them: serving recorded
        actions is what a replay is for, and its result is read in its Simulation tab; nor
        are archived runs, which are past needing a look."""
        c = t.agent_runs.c
        interventions = (c.blocked_count + c.replayed_count) * 1.0
        conds: list[Any] = [c.replay_of.is_(None), c.archived_at.is_(None),
                            or_(c.status == "failed", c.over_budget_at.isnot(None),
                                and_(c.action_count > 0,
                                     interventions >= c.action_count * min_rate))]
        if since is not None:
            conds.append(c.started_at >= since)
        recency = func.coalesce(c.ended_at, c.last_action_at, c.started_at)
        rows = self.conn.execute(select(t.agent_runs).where(*conds)
                                 .order_by(recency.desc(), c.id.desc()).limit(limit))
        return [_run_out(r) for r in rows]

    def agent_ids(self, prefix: str, limit: int) -> list[str]:
        c = t.agent_runs.c
        q = select(c.agent_id).where(c.agent_id.isnot(None)).distinct().order_by(c.agent_id)
        if prefix:
            q = q.where(c.agent_id.like(_like(prefix), escape="\\"))
        return [r[0] for r in self.conn.execute(q.limit(limit))]

    def finished_runs_before(self, before: float, limit: int,
                             among: Sequence[str] | None = None) -> list[str]:
        c = t.agent_runs.c
        conds = [c.status != "running", c.started_at < before,
                 c.retention_class.in_(DELETABLE)]
        if among is None:
            rows = self.conn.execute(select(c.id).where(*conds).order_by(c.started_at, c.id)
                                     .limit(limit))
            return [r[0] for r in rows]
        found: list[tuple[float, str]] = []
        for chunk in iter_chunks(list(among), 500):  # drivers cap a statement's parameters
            found.extend((r[0], r[1]) for r in self.conn.execute(
                select(c.started_at, c.id).where(*conds, c.id.in_(chunk))))
        return [i for _, i in sorted(found)[:limit]]

    def archivable_runs(self, before: float, limit: int) -> list[str]:
        c = t.agent_runs.c
        rows = self.conn.execute(
            select(c.id).where(c.archived_at.is_(None), c.status != "running",
                               c.started_at < before)
            .order_by(c.started_at, c.id).limit(limit))
        return [r[0] for r in rows]

    def set_archived(self, run_ids: Sequence[str], archived_at: float | None) -> list[str]:
        c = t.agent_runs.c
        changed: set[str] = set()
        for chunk in iter_chunks(list(dict.fromkeys(run_ids)), 500):
            state = c.archived_at.is_(None) if archived_at is not None \
                else c.archived_at.isnot(None)
            rows = self.conn.execute(update(t.agent_runs).where(c.id.in_(chunk), state)
                                     .values(archived_at=archived_at).returning(c.id))
            changed.update(r[0] for r in rows)
        return [i for i in dict.fromkeys(run_ids) if i in changed]

    def delete_runs(self, run_ids: Sequence[str]) -> int:
        """Delete runs and their actions; their DAGs stay, no longer grouped under a run."""
        deleted = 0
        for chunk in iter_chunks(list(run_ids), 200):
            self.conn.execute(delete(t.actions).where(t.actions.c.run_id.in_(chunk)))
            # An evaluation run is its agent run seen from the evaluation: they go together.
            self.conn.execute(delete(t.eval_calls).where(t.eval_calls.c.run_id.in_(chunk)))
            self.conn.execute(delete(t.eval_runs).where(t.eval_runs.c.id.in_(chunk)))
            self.conn.execute(update(t.dags).where(t.dags.c.agent_run_id.in_(chunk))
                              .values(agent_run_id=None))
            deleted += self.conn.execute(
                delete(t.agent_runs).where(t.agent_runs.c.id.in_(chunk))).rowcount
        return deleted

    def replays_of(self, run_id: str, limit: int) -> list[Row]:
        c = t.agent_runs.c
        rows = self.conn.execute(select(t.agent_runs).where(c.replay_of == run_id)
                                 .order_by(c.created_at.desc()).limit(limit))
        return [_run_out(r) for r in rows]

    def run_scripts(self, run_id: str) -> list[tuple[str, str]]:
        """(filename, sha256) of every script the run's stages ran, sorted."""
        rows = self.conn.execute(
            select(t.jobs.c.filename, t.jobs.c.script_sha256).distinct()
            .join(t.dags, t.dags.c.id == t.jobs.c.dag_id)
            .where(t.dags.c.agent_run_id == run_id, t.jobs.c.script_sha256.isnot(None)))
        return sorted((r[0], r[1]) for r in rows)

    # -- agents -------------------------------------------------------------------------------
    def get_agent(self, agent_id: str) -> Row | None:
        row = self.conn.execute(select(t.agents).where(t.agents.c.id == agent_id)).first()
        return dict(row._mapping) if row else None

    def set_agent_budget(self, agent_id: str, budget_usd: float | None, now: float) -> None:
        stmt = self.insert(t.agents).values(id=agent_id, budget_usd=budget_usd, created_at=now)
        self.conn.execute(stmt.on_conflict_do_update(index_elements=["id"],
                                                     set_={"budget_usd": budget_usd}))

    def agent_runs_series(self, agent_id: str, limit: int) -> list[Row]:
        c = t.agent_runs.c
        rows = self.conn.execute(
            select(c.id, c.status, c.started_at, c.ended_at, c.cost_usd, c.action_count,
                   c.success_count)
            .where(c.agent_id == agent_id).order_by(c.started_at.desc()).limit(limit))
        return [dict(r._mapping) for r in rows][::-1]

    # -- actions ------------------------------------------------------------------------------
    def known_action_ids(self, run_id: str, ids: Sequence[str]) -> set[str]:
        found: set[str] = set()
        if self.conn.dialect.name == "postgresql":
            # One array parameter joined as a set, not `id = ANY(:ids)`: PostgreSQL hashes an
            # IN list only when it is a constant, so with a parameter each of the run's rows
            # was compared with every id of the batch (140 ms for 1,000 ids against a
            # 30,000-action run: ingestion stalled near 7,000 actions/s); the join hashes the
            # batch whatever plan the young table's statistics give.
            rows = self.conn.execute(_KNOWN_IDS_PG, {"ids": list(ids), "run_id": run_id})
            return {r[0] for r in rows}
        for chunk in iter_chunks(list(ids), 500):
            rows = self.conn.execute(select(t.actions.c.id).where(
                t.actions.c.run_id == run_id, t.actions.c.id.in_(chunk)))
            found.update(r[0] for r in rows)
        return found

    def insert_actions(self, run_id: str, rows: Sequence[Row], now: float,
                       run: Row | None = None) -> Row:
        """Append actions to a run, numbering them after its last one, and add them to the
        run's totals. Returns the run's new totals and the first seq given out."""
        if not rows:
            return {"first_seq": None}
        counts = {"action_count": len(rows)}
        for r in rows:
            key = _OUTCOME_COUNTER[r["outcome"]]
            counts[key] = counts.get(key, 0) + 1
        cost = sum(r["cost_usd"] or 0.0 for r in rows)
        last = max(r["started_at"] + r["duration_ns"] / 1e9 for r in rows)
        c = t.agent_runs.c
        values: dict[str, Any] = {k: getattr(c, k) + v for k, v in counts.items()}
        values["cost_usd"] = c.cost_usd + cost
        values["last_action_at"] = func.max(func.coalesce(c.last_action_at, 0.0), last) \
            if self.conn.dialect.name == "sqlite" else \
            func.greatest(func.coalesce(c.last_action_at, 0.0), last)
        encoded, total = chain_batch(self.conn, run_id, rows, now, values,
                                     run or self.get_run(run_id), self.get_run)
        first = encoded[0]["seq"]
        for row in encoded:
            row["tags"] = json.dumps(row["tags"]) if row.get("tags") is not None else None
            row["pii"] = json.dumps(row["pii"]) if row.get("pii") else None
        if self.conn.dialect.name == "postgresql":
            _copy_actions(self.conn, encoded)
        else:
            compiled.execute(
                self.conn, "insert_actions",
                lambda: t.actions.insert().values({k: bindparam(k) for k in ACTION_ROW_KEYS}),
                [{k: r.get(k) for k in ACTION_ROW_KEYS} for r in encoded])
        return {"first_seq": first, "action_count": int(total[0]), "cost_usd": float(total[1])}

    def _action_conditions(self, run_id: str, q: ActionQuery) -> list[Any]:
        a = t.actions.c
        conds: list[Any] = [a.run_id == run_id]
        if q.outcomes:
            conds.append(a.outcome.in_(list(q.outcomes)))
        if q.search:
            pattern = _like(q.search)
            conds.append(or_(a.name.like(pattern, escape="\\"),
                             a.actor.like(pattern, escape="\\"),
                             a.inputs.like(pattern, escape="\\"),
                             a.outputs.like(pattern, escape="\\"),
                             a.error_message.like(pattern, escape="\\")))
        if q.actor:
            conds.append(a.actor == q.actor)
        if q.channel:
            conds.append(a.channel == q.channel)
        return conds

    def list_actions(self, run_id: str, q: ActionQuery, limit: int,
                     offset: int = 0, preview: int = 0) -> tuple[list[Row], int]:
        """Actions in seq order, and how many match. ``preview`` > 0 cuts inputs and outputs
        to that many characters in the database (a page of a long run ships no payloads)."""
        a = t.actions.c
        conds = self._action_conditions(run_id, q)
        matched = self.conn.execute(
            select(func.count()).select_from(t.actions).where(*conds)).scalar_one()
        if q.after is not None:
            conds.append(a.seq > q.after)
        cols: list[Any] = list(t.actions.columns)
        if preview:
            cols = [func.substr(col, 1, preview).label(col.key)
                    if col.key in ("inputs", "outputs", "error_message") else col
                    for col in cols]
        rows = self.conn.execute(select(*cols).where(*conds).order_by(a.seq)
                                 .limit(limit).offset(offset))
        return [_action_out(r) for r in rows], int(matched)

    def iter_actions(self, run_id: str, batch: int = 1000, after: int = 0) -> Iterator[Row]:
        a = t.actions.c
        while True:
            rows = [_action_out(r) for r in self.conn.execute(
                select(t.actions).where(a.run_id == run_id, a.seq > after)
                .order_by(a.seq).limit(batch))]
            yield from rows
            if len(rows) < batch:
                return
            after = rows[-1]["seq"]

    def recorded_actions(self, run_id: str, actor: str, after: int, limit: int) -> list[Row]:
        a = t.actions.c
        rows = self.conn.execute(
            select(t.actions).where(a.run_id == run_id, a.seq > after, or_(
                a.actor == actor, a.actor.like(_like(actor + "/")[1:], escape="\\")))
            .order_by(a.seq).limit(limit))
        return [_action_out(r) for r in rows]

    def get_action(self, run_id: str, seq: int) -> Row | None:
        row = self.conn.execute(select(t.actions).where(
            t.actions.c.run_id == run_id, t.actions.c.seq == seq)).first()
        return _action_out(row) if row else None

    def action_breakdown(self, run_id: str) -> list[Row]:
        """Per actor and channel: action count, cost, time, errors — the run's cost by actor
        and (actors being ``STAGE/job``) by stage."""
        a = t.actions.c
        rows = self.conn.execute(
            select(a.actor, a.channel, func.count(), func.sum(a.cost_usd),
                   func.sum(a.duration_ns),
                   func.sum(func.coalesce(a.input_tokens, 0)),
                   func.sum(func.coalesce(a.output_tokens, 0)))
            .where(a.run_id == run_id).group_by(a.actor, a.channel).order_by(a.actor, a.channel))
        return [{"actor": r[0], "channel": r[1], "actions": int(r[2]),
                 "cost_usd": float(r[3] or 0.0), "duration_ns": int(r[4] or 0),
                 "input_tokens": int(r[5] or 0), "output_tokens": int(r[6] or 0)}
                for r in rows]
