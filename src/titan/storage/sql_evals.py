"""SQL for evaluations, their tasks, runs and proxied tool calls (part of SQLTransaction)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, delete, func, select

from titan.status import EVAL_ACTIVE
from titan.storage import schema as t
from titan.storage.rows import Row

_JSON = {
    "evaluations": ("agent",),
    "eval_tasks": ("seed",),
    "eval_runs": ("agent", "messages", "soft_warnings", "world", "by_source", "judge", "coding",
                  "criteria"),
    "eval_calls": ("ops", "violations", "state"),
}


def _encode(table: str, row: Row) -> Row:
    out = dict(row)
    for key in _JSON[table]:
        if key in out and out[key] is not None:
            out[key] = json.dumps(out[key])
    return out


def _decode(table: str, row: Any) -> Row:
    out = dict(row._mapping)
    for key in _JSON[table]:
        out[key] = json.loads(out[key]) if out.get(key) else None
    return out


class EvalsSQL:
    conn: Connection

    def delete_evaluation(self, evaluation_id: str) -> int:
        runs = select(t.eval_runs.c.id).where(t.eval_runs.c.evaluation_id == evaluation_id)
        self.conn.execute(delete(t.eval_calls).where(t.eval_calls.c.run_id.in_(runs)))
        gone = self.conn.execute(
            delete(t.eval_runs).where(t.eval_runs.c.evaluation_id == evaluation_id)).rowcount
        self.conn.execute(delete(t.eval_tasks).where(t.eval_tasks.c.evaluation_id == evaluation_id))
        self.conn.execute(delete(t.evaluations).where(t.evaluations.c.id == evaluation_id))
        return int(gone or 0)
    insert: Any

    # -- evaluations --------------------------------------------------------------------------
    def put_evaluation(self, row: Row) -> None:
        values = _encode("evaluations", row)
        keep = {k: v for k, v in values.items() if k not in ("id", "created_at")}
        self.conn.execute(self.insert(t.evaluations).values(**values)
                          .on_conflict_do_update(index_elements=["id"], set_=keep))

    def get_evaluation(self, evaluation_id: str) -> Row | None:
        row = self.conn.execute(select(t.evaluations)
                                .where(t.evaluations.c.id == evaluation_id)).first()
        return _decode("evaluations", row) if row else None

    def list_evaluations(self, limit: int, project: str | None = None) -> list[Row]:
        counts = (select(t.eval_tasks.c.evaluation_id, func.count().label("n"))
                  .group_by(t.eval_tasks.c.evaluation_id).subquery())
        query = (select(t.evaluations, func.coalesce(counts.c.n, 0).label("task_count"))
                 .outerjoin(counts, counts.c.evaluation_id == t.evaluations.c.id))
        if project is not None:
            query = query.where(t.evaluations.c.project == project)
        rows = self.conn.execute(query.order_by(t.evaluations.c.updated_at.desc(),
                                                t.evaluations.c.id).limit(limit))
        return [_decode("evaluations", r) for r in rows]

    def list_projects(self) -> list[Row]:
        c = t.evaluations.c
        rows = self.conn.execute(
            select(c.project.label("id"), func.count().label("workflow_count"),
                   func.max(c.updated_at).label("updated_at"))
            .group_by(c.project).order_by(c.project))
        return [dict(r._mapping) for r in rows]

    # -- tasks --------------------------------------------------------------------------------
    def put_tasks(self, evaluation_id: str, tasks: Sequence[Row], now: float) -> int:
        c = t.eval_tasks.c
        existing = {r.id: r.position for r in self.conn.execute(
            select(c.id, c.position).where(c.evaluation_id == evaluation_id))}
        position = max(existing.values(), default=0)
        new = 0
        for task in tasks:
            seed = json.dumps(task["seed"])
            if task["id"] in existing:
                self.conn.execute(t.eval_tasks.update().where(
                    c.evaluation_id == evaluation_id, c.id == task["id"]).values(seed=seed))
                continue
            position += 1
            new += 1
            self.conn.execute(t.eval_tasks.insert().values(
                evaluation_id=evaluation_id, id=task["id"], position=position, seed=seed,
                created_at=now))
        return new

    def get_task(self, evaluation_id: str, task_id: str) -> Row | None:
        c = t.eval_tasks.c
        row = self.conn.execute(select(t.eval_tasks).where(
            c.evaluation_id == evaluation_id, c.id == task_id)).first()
        return _decode("eval_tasks", row) if row else None

    def list_tasks(self, evaluation_id: str) -> list[Row]:
        c = t.eval_tasks.c
        rows = self.conn.execute(select(t.eval_tasks).where(c.evaluation_id == evaluation_id)
                                 .order_by(c.position))
        return [_decode("eval_tasks", r) for r in rows]

    # -- runs ---------------------------------------------------------------------------------
    def insert_eval_run(self, row: Row) -> None:
        self.conn.execute(t.eval_runs.insert().values(**_encode("eval_runs", row)))

    def update_eval_run(self, run_id: str, fields: Row) -> None:
        self.conn.execute(t.eval_runs.update().where(t.eval_runs.c.id == run_id)
                          .values(**_encode("eval_runs", fields)))

    def get_eval_run(self, run_id: str) -> Row | None:
        row = self.conn.execute(select(t.eval_runs).where(t.eval_runs.c.id == run_id)).first()
        return _decode("eval_runs", row) if row else None

    def eval_runs(self, evaluation_id: str, task_id: str | None = None) -> list[Row]:
        c = t.eval_runs.c
        conds = [c.evaluation_id == evaluation_id]
        if task_id is not None:
            conds.append(c.task_id == task_id)
        rows = self.conn.execute(select(t.eval_runs).where(*conds)
                                 .order_by(c.created_at, c.id))
        return [_decode("eval_runs", r) for r in rows]

    def unfinished_eval_runs(self) -> list[Row]:
        c = t.eval_runs.c
        rows = self.conn.execute(select(t.eval_runs).where(c.status.in_(EVAL_ACTIVE))
                                 .order_by(c.created_at))
        return [_decode("eval_runs", r) for r in rows]

    # -- tool calls ---------------------------------------------------------------------------
    def insert_eval_call(self, row: Row) -> None:
        self.conn.execute(t.eval_calls.insert().values(**_encode("eval_calls", row)))

    def eval_calls(self, run_id: str) -> list[Row]:
        c = t.eval_calls.c
        rows = self.conn.execute(select(t.eval_calls).where(c.run_id == run_id).order_by(c.seq))
        return [_decode("eval_calls", r) for r in rows]
