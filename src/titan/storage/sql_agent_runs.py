"""SQL for agent runs as DAG submissions name them (seed 000's ``agent_run_id``): one made when
its first stage is submitted, and the Agent Runs view's list (part of
:class:`SQLTransaction`; a run's recorded telemetry is :mod:`titan.storage.sql_runs`)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, and_, exists, func, or_, select, true

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

    def list_agent_runs(self, limit: int, offset: int,
                        staged: bool = False) -> tuple[list[Row], int]:
        where = _has_stage() if staged else true()
        total = self.conn.execute(select(func.count()).select_from(t.agent_runs)
                                  .where(where)).scalar_one()
        rows = self.conn.execute(
            select(t.agent_runs)
            .where(where)
            .order_by(t.agent_runs.c.created_at.desc(), t.agent_runs.c.id)
            .limit(limit)
            .offset(offset)
        )
        return [dict(r._mapping) for r in rows], int(total)

    def get_agent_run(self, run_id: str) -> Row | None:
        row = self.conn.execute(select(t.agent_runs).where(t.agent_runs.c.id == run_id)).first()
        return dict(row._mapping) if row else None

    def agent_run_position(self, run_id: str, staged: bool = False) -> int | None:
        run = self.get_agent_run(run_id)
        if run is None:
            return None
        if staged and self.conn.execute(
                select(t.dags.c.id).where(t.dags.c.agent_run_id == run_id).limit(1)).first() \
                is None:
            return None
        c = t.agent_runs.c
        before = or_(c.created_at > run["created_at"],
                     and_(c.created_at == run["created_at"], c.id < run_id))
        return int(self.conn.execute(select(func.count()).select_from(t.agent_runs)
                                     .where(before, _has_stage() if staged else true()))
                   .scalar_one())


def _has_stage() -> Any:
    """An agent run a DAG was submitted with (the index on dags.agent_run_id answers it)."""
    return exists().where(t.dags.c.agent_run_id == t.agent_runs.c.id)
