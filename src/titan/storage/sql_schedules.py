"""SQL for schedules and their fires (part of :class:`SQLTransaction`)."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Connection, delete, func, select, update

from titan.storage import schema as t
from titan.storage.base import Row
from titan.storage.base_schedules import FAILED, QUEUED, SKIPPED, SUBMITTED


def _schedule_out(row: Any) -> Row:
    out = dict(row._mapping)
    out["jobs"] = json.loads(out["jobs"])
    out["paused"] = bool(out["paused"])
    return out


class SchedulesSQL:
    conn: Connection
    insert: Any  # the dialect's insert() with ON CONFLICT support

    def insert_schedule(self, row: Row) -> int | None:
        values = dict(row, jobs=json.dumps(row["jobs"]))
        found = self.conn.execute(
            self.insert(t.schedules).values(**values).on_conflict_do_nothing()
            .returning(t.schedules.c.id)).first()
        return None if found is None else int(found[0])

    def get_schedule(self, name: str) -> Row | None:
        row = self.conn.execute(select(t.schedules).where(t.schedules.c.name == name)).first()
        return _schedule_out(row) if row is not None else None

    def list_schedules(self) -> list[Row]:
        rows = self.conn.execute(select(t.schedules).order_by(t.schedules.c.name))
        return [_schedule_out(r) for r in rows]

    def update_schedule(self, schedule_id: int, fields: Row) -> None:
        if "jobs" in fields:
            fields = dict(fields, jobs=json.dumps(fields["jobs"]))
        self.conn.execute(t.schedules.update().where(t.schedules.c.id == schedule_id)
                          .values(**fields))

    def delete_schedule(self, schedule_id: int) -> bool:
        f = t.schedule_fires
        self.conn.execute(delete(f).where(f.c.schedule_id == schedule_id))
        gone = self.conn.execute(delete(t.schedules).where(t.schedules.c.id == schedule_id))
        return bool(gone.rowcount)

    def record_fire(self, row: Row) -> int | None:
        found = self.conn.execute(
            self.insert(t.schedule_fires).values(**row).on_conflict_do_nothing()
            .returning(t.schedule_fires.c.id)).first()
        return None if found is None else int(found[0])

    def start_queued_fire(self, fire_id: int, dag_id: int) -> bool:
        f = t.schedule_fires
        result = self.conn.execute(
            update(f).where(f.c.id == fire_id, f.c.outcome == QUEUED)
            .values(outcome=SUBMITTED, dag_id=dag_id).returning(f.c.id))
        return result.first() is not None  # rowcount is unreliable with RETURNING on psycopg

    def fail_queued_fire(self, fire_id: int, error: str) -> bool:
        f = t.schedule_fires
        result = self.conn.execute(
            update(f).where(f.c.id == fire_id, f.c.outcome == QUEUED)
            .values(outcome=FAILED, error=error).returning(f.c.id))
        return result.first() is not None

    def drop_queued_fires(self, schedule_id: int, why: str) -> int:
        f = t.schedule_fires
        result = self.conn.execute(
            update(f).where(f.c.schedule_id == schedule_id, f.c.outcome == QUEUED)
            .values(outcome=SKIPPED, error=why).returning(f.c.id))
        return len(result.all())

    def schedule_fires(self, schedule_id: int, limit: int, *,
                       started: bool = False) -> list[Row]:
        f, d = t.schedule_fires.c, t.dags.c
        q = (select(f.id, f.schedule_id, f.tick, f.fired_at, f.outcome, f.dag_id, f.error,
                    d.name.label("dag_name"), d.run.label("dag_run"),
                    d.status.label("dag_status"))
             .select_from(t.schedule_fires.outerjoin(t.dags, d.id == f.dag_id))
             .where(f.schedule_id == schedule_id))
        q = (q.where(d.id.isnot(None)).order_by(f.dag_id.desc()) if started
             else q.order_by(f.id.desc()))
        return [dict(r._mapping) for r in self.conn.execute(q.limit(limit))]

    def schedule_states(self) -> dict[int, Row]:
        f, d = t.schedule_fires.c, t.dags.c
        out: dict[int, Row] = {}

        def state(schedule_id: Any) -> Row:
            return out.setdefault(int(schedule_id), {"last_dag_id": None, "live": [],
                                                     "queued": []})
        # DAG ids grow with time: the highest is the run started last. Not the fire with the
        # highest id: a queued fire keeps its own (older) id when it becomes a run, and a run
        # by hand recorded meanwhile looked later than the run that was still going.
        rows = self.conn.execute(select(f.schedule_id, func.max(f.dag_id))
                                 .where(f.dag_id.isnot(None)).group_by(f.schedule_id))
        for schedule_id, dag_id in rows:
            state(schedule_id)["last_dag_id"] = int(dag_id)
        live = self.conn.execute(select(f.schedule_id, f.dag_id)
                                 .join(t.dags, d.id == f.dag_id)
                                 .where(d.status.in_(("WAITING", "RUNNING"))).order_by(f.dag_id))
        for schedule_id, dag_id in live:
            state(schedule_id)["live"].append(int(dag_id))
        queued = self.conn.execute(select(f.schedule_id, f.id, f.tick)
                                   .where(f.outcome == QUEUED).order_by(f.tick, f.id))
        for schedule_id, fire_id, tick in queued:  # a backfill's, oldest tick first
            state(schedule_id)["queued"].append({"id": int(fire_id), "tick": tick})
        return out
