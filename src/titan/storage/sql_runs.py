"""SQL for agent runs' telemetry: runs and agents (part of :class:`SQLTransaction`; a run's
actions are :mod:`titan.storage.sql_actions`).

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
    exists,
    func,
    or_,
    select,
    update,
)

from titan.retention import DELETABLE
from titan.storage import compiled
from titan.storage import schema as t
from titan.storage.base import Row, RunQuery, iter_chunks
from titan.storage.rows import json_column

_RUN_JSON = ("tags", "replay", "code", "started_by", "pii")
#: What each JSON column of a run holds: anything else (a row edited by hand) reads as None.
_RUN_JSON_KINDS: dict[str, type | tuple[type, ...]] = {
    "tags": (list, dict), "replay": dict, "code": dict, "started_by": dict, "pii": dict}


def like(text: str) -> str:
    """A LIKE pattern that finds ``text`` anywhere, its wildcards escaped (with ``\\``)."""
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _run_out(row: Any) -> Row:
    out = dict(row._mapping)
    for key in _RUN_JSON:
        out[key] = json_column(out.get(key), f"the {key} of run {out.get('id')}",
                               _RUN_JSON_KINDS[key])
    out["blocked"] = bool(out.get("blocked"))
    return out


def _intercepted(since: float | None, min_rate: float) -> list[Any]:
    """What makes a run an intercept (see ``intercepts``)."""
    c = t.agent_runs.c
    interventions = (c.blocked_count + c.replayed_count) * 1.0
    conds: list[Any] = [c.replay_of.is_(None), c.archived_at.is_(None),
                        or_(c.status == "failed", c.over_budget_at.isnot(None),
                            and_(c.action_count > 0,
                                 interventions >= c.action_count * min_rate))]
    if since is not None:
        conds.append(c.started_at >= since)
    return conds


def _run_keys(sort: str, now: float) -> list[tuple[Any, bool]]:
    """The sort keys of a registry order (``RUN_SORTS``), each (expression, descending); every
    order ends on (started_at, id) so pages never overlap. ``duration`` is what the Runs page
    shows: up to ``now`` while running, else to the end (or the last action)."""
    c = t.agent_runs.c
    newest = [(c.started_at, True), (c.id, True)]
    if sort == "oldest":
        return [(c.started_at, False), (c.id, False)]
    if sort == "cost":
        return [(c.cost_usd, True), *newest]
    if sort == "duration":
        started = func.coalesce(c.started_at, c.created_at)
        # A running run's ended_at may be set: its driver's end, kept while a stage still
        # runs (master/runs/service.py). It runs until its status says otherwise.
        end = case((c.status == "running", bindparam("now", now, type_=Float)),
                   else_=func.coalesce(c.ended_at, c.last_action_at, started))
        return [(end - started, True), *newest]
    return newest


def _run_order(sort: str, now: float) -> list[Any]:
    """ORDER BY for a registry sort."""
    return [e.desc() if desc else e.asc() for e, desc in _run_keys(sort, now)]


def _after(keys: list[tuple[Any, bool]], values: Sequence[Any]) -> Any:
    """The keyset condition: rows that come after ``values`` (the last row's keys) in the
    order ``keys`` describes."""
    terms = []
    for i, (expr, desc) in enumerate(keys):
        beyond = expr < values[i] if desc else expr > values[i]
        terms.append(and_(*(k == v for (k, _), v in zip(keys[:i], values, strict=False)),
                          beyond))
    return or_(*terms)


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

    def mark_runs_alive(self, run_ids: Sequence[str], now: float) -> list[str]:
        c = t.agent_runs.c
        found: list[str] = []
        for chunk in iter_chunks(list(dict.fromkeys(run_ids)), 500):
            found.extend(str(r[0]) for r in self.conn.execute(
                t.agent_runs.update().where(c.id.in_(chunk), c.status == "running")
                .values(alive_at=now).returning(c.id)))
        return found

    def silent_runs(self, before: float) -> list[str]:
        c = t.agent_runs.c
        return [str(r[0]) for r in self.conn.execute(
            select(c.id).where(c.status == "running", c.alive_at.isnot(None),
                               c.alive_at < before).order_by(c.alive_at))]

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
        if not q.replays:
            conds.append(c.replay_of.is_(None))
        if q.agent:
            conds.append(c.agent_id == q.agent)
        if q.search:
            pattern = like(q.search)
            conds.append(or_(c.id.ilike(pattern, escape="\\"),
                             c.agent_id.ilike(pattern, escape="\\")))
        if q.prunable:
            conds.extend(_prunable(c))
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
            .order_by(*_run_order(q.sort, time.time())).limit(limit).offset(offset))
        return [_run_out(r) for r in rows], int(total)

    def iter_runs(self, q: RunQuery, batch: int = 500) -> Iterator[Row]:
        """Every matching run in the list's order (``q.sort``), a page at a time (keyset on
        the order's keys: no OFFSET rescans). A running run's duration is counted up to
        when the walk began, so it keeps its place from page to page."""
        keys = _run_keys(q.sort, time.time())
        labels = [f"_k{i}" for i in range(len(keys))]
        conds = self._run_conditions(q)
        after: list[Any] | None = None
        while True:
            where = list(conds)
            if after is not None:
                where.append(_after(keys, after))
            found = self.conn.execute(  # whole first: see iter_actions
                select(t.agent_runs, *(e.label(n) for (e, _), n in zip(keys, labels,
                                                                       strict=True)))
                .where(*where).order_by(*(e.desc() if d else e.asc() for e, d in keys))
                .limit(batch)).all()
            for r in found:
                row = _run_out(r)
                for n in labels:
                    row.pop(n, None)
                yield row
            if len(found) < batch:
                return
            after = [found[-1]._mapping[n] for n in labels]

    def intercepts(self, since: float | None, min_rate: float, limit: int) -> list[Row]:
        """Runs that need a look: failed, over budget, or with a high share of blocked and
        replayed actions; most recent first. Replays are not among them: serving recorded
        actions is what a replay is for, and its result is read in its Simulation tab; nor
        are archived runs, which are past needing a look."""
        c = t.agent_runs.c
        recency = func.coalesce(c.ended_at, c.last_action_at, c.started_at)
        rows = self.conn.execute(select(t.agent_runs).where(*_intercepted(since, min_rate))
                                 .order_by(recency.desc(), c.id.desc()).limit(limit)).all()
        return [_run_out(r) for r in rows]

    def count_intercepts(self, since: float | None, min_rate: float) -> int:
        return int(self.conn.execute(select(func.count()).select_from(t.agent_runs)
                                     .where(*_intercepted(since, min_rate))).scalar_one())

    def agent_ids(self, prefix: str, limit: int) -> list[str]:
        c = t.agent_runs.c
        q = select(c.agent_id).where(c.agent_id.isnot(None)).distinct().order_by(c.agent_id)
        if prefix:
            q = q.where(c.agent_id.ilike(like(prefix), escape="\\"))
        return [r[0] for r in self.conn.execute(q.limit(limit))]

    def finished_runs_before(self, before: float, limit: int,
                             among: Sequence[str] | None = None) -> list[str]:
        c = t.agent_runs.c
        conds = [c.started_at < before, *_prunable(c)]
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
                               c.started_at < before, *_settled(c),
                               or_(c.unarchived_at.is_(None), c.unarchived_at < before))
            .order_by(c.started_at, c.id).limit(limit))
        return [r[0] for r in rows]

    def unsettled_runs(self, run_ids: Sequence[str]) -> list[str]:
        c = t.agent_runs.c
        settled: set[str] = set()
        for chunk in iter_chunks(list(dict.fromkeys(run_ids)), 500):
            settled.update(r[0] for r in self.conn.execute(
                select(c.id).where(c.id.in_(chunk), c.status != "running", *_settled(c))))
        return [i for i in dict.fromkeys(run_ids) if i not in settled]

    def set_archived(self, run_ids: Sequence[str], archived_at: float | None,
                     unarchived_at: float | None = None) -> list[str]:
        c = t.agent_runs.c
        changed: set[str] = set()
        values: dict[str, Any] = {"archived_at": archived_at}
        if archived_at is None and unarchived_at is not None:
            values["unarchived_at"] = unarchived_at
        for chunk in iter_chunks(list(dict.fromkeys(run_ids)), 500):
            state = c.archived_at.is_(None) if archived_at is not None \
                else c.archived_at.isnot(None)
            rows = self.conn.execute(update(t.agent_runs).where(c.id.in_(chunk), state)
                                     .values(values).returning(c.id))
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
        """(filename, sha256) of every script the run's stages ran, sorted (an archive job's
        sha256 is its project's zip, no script: left out)."""
        rows = self.conn.execute(
            select(t.jobs.c.filename, t.jobs.c.script_sha256).distinct()
            .join(t.dags, t.dags.c.id == t.jobs.c.dag_id)
            .where(t.dags.c.agent_run_id == run_id, t.jobs.c.script_sha256.isnot(None),
                   t.jobs.c.is_archive.is_(False)))
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
            select(c.id, c.status, c.started_at, c.ended_at, c.cost_usd, c.unpriced_calls,
                   c.action_count, c.success_count)
            .where(c.agent_id == agent_id, c.replay_of.is_(None))
            .order_by(c.started_at.desc()).limit(limit))
        return [dict(r._mapping) for r in rows][::-1]


def _prunable(c: Any) -> list[Any]:
    """Conditions for a run a prune may delete: finished, of a class retention deletes, and
    settled."""
    return [c.status != "running", c.retention_class.in_(DELETABLE), *_settled(c)]


def _settled(c: Any) -> list[Any]:
    """Conditions for a run that nothing still uses: no stage of it still waiting or running
    (a run PATCHed completed, or ended "crashed:" while its driver was only cut off, has
    stages running on), and no replay of it running (a replay reads the original's
    recording as it goes, and ended failed "no agent run" once it was pruned)."""
    d, replay = t.dags.c, t.agent_runs.alias("replay").c
    return [
        ~exists().where(d.agent_run_id == c.id, d.status.in_(("WAITING", "RUNNING"))),
        ~exists().where(replay.replay_of == c.id, replay.status == "running"),
    ]
