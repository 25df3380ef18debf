"""SQL for DAGs and jobs (part of :class:`SQLTransaction`); writing a submission's is
:mod:`titan.storage.sql_submissions`'s, their attempts and log lines
:mod:`titan.storage.sql_attempts`'s, the agent runs grouping them
:mod:`titan.storage.sql_agent_runs`'s."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from functools import partial
from typing import Any

from sqlalchemy import Connection, Table, bindparam, func, select

from titan.storage import compiled
from titan.storage import schema as t
from titan.storage.base import Row, iter_chunks
from titan.storage.sql_submissions import JOB_JSON, JOB_JSON_NULLABLE, job_in


def _job_out(row: Any) -> Row:
    return _job_decoded(dict(row._mapping))


def _job_decoded(out: Row) -> Row:
    for key in JOB_JSON:
        out[key] = json.loads(out[key])
    for key in JOB_JSON_NULLABLE:
        if out.get(key) is not None:
            out[key] = json.loads(out[key])
    return out


def _joined(*tables: Table) -> list[Any]:
    """Every column of ``tables`` in order, each labelled with its table: one row of a join
    splits back into the tables' rows by position (see :func:`_split`)."""
    return [c.label(f"{table.name}_{c.name}") for table in tables for c in table.c]


def _split(row: Any, *tables: Table) -> list[Row]:
    out, at = [], 0
    for table in tables:
        names = _NAMES.get(table)
        if names is None:  # table.c.keys() builds its list anew, on every row of every view
            names = _NAMES[table] = tuple(table.c.keys())
        out.append(dict(zip(names, row[at:at + len(names)], strict=True)))
        at += len(names)
    return out


_NAMES: dict[Table, tuple[str, ...]] = {}


def _by_shape(changes: Iterable[tuple[int, Row]]) -> Iterable[tuple[tuple[str, ...], list[Row]]]:
    """Updates by the columns they set, each as the parameters of one statement: a scheduler
    step's changes go to the driver as one executemany per shape (one round trip on
    PostgreSQL, whose driver pipelines it), not a statement per row."""
    shapes: dict[tuple[str, ...], list[Row]] = {}
    for pk, fields in changes:
        shapes.setdefault(tuple(sorted(fields)), []).append(
            {"pk": pk, **{"v_" + k: v for k, v in fields.items()}})
    return shapes.items()


def _update_by_pk(table: Table, keys: tuple[str, ...]) -> Any:
    return table.update().where(table.c.id == bindparam("pk")) \
        .values({k: bindparam("v_" + k) for k in keys})


class JobsSQL:
    conn: Connection
    insert: Any  # the dialect's insert() with ON CONFLICT support

    # -- DAGs ---------------------------------------------------------------------------------
    def update_dags(self, changes: Mapping[int, Row]) -> None:
        for keys, params in _by_shape((dag_id, fields) for dag_id, fields in changes.items()):
            compiled.write(
                self.conn, ("update_dag", keys),
                partial(_update_by_pk, t.dags, keys),
                params,
            )

    def get_dag(self, dag_id: int) -> Row | None:
        row = compiled.execute(self.conn, "get_dag",
                               lambda: select(t.dags).where(t.dags.c.id == bindparam("pk")),
                               {"pk": dag_id}).first()
        return dict(row._mapping) if row else None

    def find_dag(self, name: str, run: int | None = None) -> Row | None:
        q = select(t.dags).where(t.dags.c.name == name)
        q = q.where(t.dags.c.run == run) if run is not None else q.order_by(t.dags.c.run.desc())
        row = self.conn.execute(q.limit(1)).first()
        return dict(row._mapping) if row else None

    def list_dags(
        self,
        *,
        status: str | None = None,
        name: str | None = None,
        exact_name: str | None = None,
        agent_run_id: str | None = None,
        limit: int = 50,
        offset: int = 0,
        newest_first: bool = True,
    ) -> tuple[list[Row], int]:
        conds = []
        if status:
            conds.append(t.dags.c.status == status)
        if name:
            escaped = name.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            conds.append(t.dags.c.name.ilike(f"%{escaped}%", escape="\\"))
        if exact_name is not None:
            conds.append(t.dags.c.name == exact_name)
        if agent_run_id:
            conds.append(t.dags.c.agent_run_id == agent_run_id)
        total = self.conn.execute(select(func.count()).select_from(t.dags).where(*conds)).scalar_one()
        order = t.dags.c.id.desc() if newest_first else t.dags.c.id
        rows = self.conn.execute(select(t.dags).where(*conds).order_by(order).limit(limit).offset(offset))
        return [dict(r._mapping) for r in rows], int(total)

    def job_counts(self, dag_ids: Iterable[int]) -> dict[int, dict[str, int]]:
        ids = list(dag_ids)
        out: dict[int, dict[str, int]] = {i: {} for i in ids}
        for chunk in iter_chunks(ids, 500):
            rows = self.conn.execute(
                select(t.jobs.c.dag_id, t.jobs.c.state, func.count())
                .where(t.jobs.c.dag_id.in_(chunk))
                .group_by(t.jobs.c.dag_id, t.jobs.c.state)
            )
            for dag_id, state, n in rows:
                out[int(dag_id)][state] = int(n)
        return out

    def run_job_counts(self, run_ids: Iterable[str]) -> dict[str, dict[str, int]]:
        ids = list(dict.fromkeys(run_ids))
        out: dict[str, dict[str, int]] = {i: {} for i in ids}
        d, newer = t.dags.c, t.dags.alias("newer")
        for chunk in iter_chunks(ids, 500):
            rows = self.conn.execute(
                select(d.agent_run_id, t.jobs.c.state, func.count())
                .select_from(t.jobs.join(t.dags, t.jobs.c.dag_id == d.id))
                .where(d.agent_run_id.in_(chunk),
                       # each stage's latest run: one it replaced is history, not progress
                       ~select(newer.c.id).where(newer.c.agent_run_id == d.agent_run_id,
                                                 newer.c.name == d.name,
                                                 newer.c.run > d.run).exists())
                .group_by(d.agent_run_id, t.jobs.c.state)
            )
            for run_id, state, n in rows:
                out[str(run_id)][state] = int(n)
        return out

    def unfinished_dags(self) -> list[Row]:
        rows = self.conn.execute(
            select(t.dags).where(t.dags.c.status.in_(("WAITING", "RUNNING"))).order_by(t.dags.c.id)
        )
        return [dict(r._mapping) for r in rows]

    # -- jobs ---------------------------------------------------------------------------------
    def get_job(self, job: int) -> Row | None:
        row = compiled.execute(self.conn, "get_job",
                               lambda: select(t.jobs).where(t.jobs.c.id == bindparam("pk")),
                               {"pk": job}).first()
        return _job_out(row) if row else None

    def job_dag_attempts(self, job: int) -> tuple[Row, Row, list[Row]] | None:
        # One statement, not three: a finished job's view is read in the transaction that
        # finished it when someone waits for it, and on PostgreSQL each statement is a round
        # trip on that path (and on the writer's, which holds its transaction meanwhile).
        rows = compiled.execute(
            self.conn, "job_dag_attempts",
            lambda: select(*_joined(t.jobs, t.dags, t.attempts))
            .select_from(t.jobs.join(t.dags, t.dags.c.id == t.jobs.c.dag_id)
                         .outerjoin(t.attempts, t.attempts.c.job == t.jobs.c.id))
            .where(t.jobs.c.id == bindparam("pk")).order_by(t.attempts.c.attempt),
            {"pk": job}).all()
        if not rows:
            return None
        job_row, dag, first = _split(rows[0], t.jobs, t.dags, t.attempts)
        attempts = [a for a in [first, *(_split(r, t.jobs, t.dags, t.attempts)[2]
                                        for r in rows[1:])] if a["job"] is not None]
        return _job_decoded(job_row), dag, attempts

    def find_job(self, job_id: str, dag_name: str | None = None, run: int | None = None) -> Row | None:
        if dag_name is None:
            row = compiled.execute(
                self.conn, "find_job",
                lambda: select(t.jobs).where(t.jobs.c.job_id == bindparam("j"))
                .order_by(t.jobs.c.id.desc()).limit(1),
                {"j": job_id},
            ).first()
            return _job_out(row) if row else None
        q = select(t.jobs).where(t.jobs.c.job_id == job_id)
        if dag_name is not None:
            dag = self.find_dag(dag_name, run)
            if dag is None:
                return None
            q = q.where(t.jobs.c.dag_id == dag["id"])
        row = self.conn.execute(q.order_by(t.jobs.c.id.desc()).limit(1)).first()
        return _job_out(row) if row else None

    def dag_and_jobs(self, dag_id: int) -> tuple[Row, list[Row]] | None:
        # One statement, not two (see job_dag_attempts): a DAG's row comes with each job's.
        rows = compiled.execute(
            self.conn, "dag_and_jobs",
            lambda: select(*_joined(t.dags, t.jobs))
            .select_from(t.dags.outerjoin(t.jobs, t.jobs.c.dag_id == t.dags.c.id))
            .where(t.dags.c.id == bindparam("d")).order_by(t.jobs.c.position),
            {"d": dag_id}).all()
        if not rows:
            return None
        dag = _split(rows[0], t.dags, t.jobs)[0]
        jobs = [_job_decoded(j) for j in (_split(r, t.dags, t.jobs)[1] for r in rows)
                if j["id"] is not None]
        return dag, jobs

    def jobs_of_dags(self, dag_ids: Iterable[int]) -> list[Row]:
        ids = list(dag_ids)
        if len(ids) == 1:  # a DAG's view, on every wait's answer: compiled once
            rows = compiled.execute(
                self.conn, "jobs_of_dag",
                lambda: select(t.jobs).where(t.jobs.c.dag_id == bindparam("d"))
                .order_by(t.jobs.c.position),
                {"d": ids[0]})
            return [_job_out(r) for r in rows]
        out: list[Row] = []
        for chunk in iter_chunks(ids, 500):
            rows = self.conn.execute(
                select(t.jobs).where(t.jobs.c.dag_id.in_(chunk)).order_by(t.jobs.c.dag_id, t.jobs.c.position)
            )
            out.extend(_job_out(r) for r in rows)
        return out

    def dag_jobs_page(self, dag_id: int, states: Sequence[str] | None, limit: int,
                      offset: int) -> tuple[list[Row], int]:
        c = t.jobs.c
        where = [c.dag_id == dag_id] + ([c.state.in_(list(states))] if states else [])
        total = int(self.conn.execute(select(func.count()).where(*where)).scalar_one())
        rows = self.conn.execute(select(t.jobs).where(*where).order_by(c.position)
                                 .limit(limit).offset(offset))
        return [_job_out(r) for r in rows], total

    def graph_of_dag(self, dag_id: int) -> list[Row]:
        c = t.jobs.c
        rows = self.conn.execute(
            select(c.id, c.job_id, c.parents, c.state, c.job_type)
            .where(c.dag_id == dag_id).order_by(c.position))
        loads = json.loads
        return [{"id": r[0], "job_id": r[1], "parents": loads(r[2]), "state": r[3],
                 "job_type": r[4]} for r in rows]

    def update_jobs(self, changes: Mapping[int, Row]) -> None:
        for keys, params in _by_shape((job, job_in(fields)) for job, fields in changes.items()):
            compiled.write(
                self.conn, ("update_job", keys),
                partial(_update_by_pk, t.jobs, keys),
                params,
            )
