"""SQL for agent runs as DAG submissions name them (seed 000's ``agent_run_id``): one made when
its first stage is submitted, and the Agent Runs view's list (part of
:class:`SQLTransaction`; a run's recorded telemetry is :mod:`titan.storage.sql_runs`)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, and_, func, or_, select

from titan.storage import schema as t
from titan.storage.base import Row


class AgentRunsSQL:
    conn: Connection
    insert: Any  # the dialect's insert() with ON CONFLICT support

    def ensure_agent_run(self, run_id: str, now: float, agent_id: str | None = None) -> bool:
        result = self.conn.execute(
            self.insert(t.agent_runs).values(id=run_id, created_at=now, started_at=now,
                                             status="running", agent_id=agent_id)
            .on_conflict_do_nothing().returning(t.agent_runs.c.id))
        return result.first() is not None

    def list_agent_runs(self, limit: int, offset: int) -> tuple[list[Row], int]:
        total = self.conn.execute(select(func.count()).select_from(t.agent_runs)).scalar_one()
        rows = self.conn.execute(
            select(t.agent_runs)
            .order_by(t.agent_runs.c.created_at.desc(), t.agent_runs.c.id)
            .limit(limit)
            .offset(offset)
        )
        return [dict(r._mapping) for r in rows], int(total)

    def get_agent_run(self, run_id: str) -> Row | None:
        row = self.conn.execute(select(t.agent_runs).where(t.agent_runs.c.id == run_id)).first()
        return dict(row._mapping) if row else None

    def agent_run_position(self, run_id: str) -> int | None:
        run = self.get_agent_run(run_id)
        if run is None:
            return None
        c = t.agent_runs.c
        before = or_(c.created_at > run["created_at"],
                     and_(c.created_at == run["created_at"], c.id < run_id))
        return int(self.conn.execute(select(func.count()).select_from(t.agent_runs)
                                     .where(before)).scalar_one())
