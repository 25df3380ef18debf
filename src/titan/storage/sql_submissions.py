"""SQL that writes a submission: a DAG's row as the next run of its name, and its jobs' rows
(part of :class:`SQLTransaction`). On PostgreSQL a leader's numbers come from
:mod:`titan.storage.id_blocks`, so these writes need no answer and go with the commit."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from operator import itemgetter
from typing import Any

from sqlalchemy import Connection, bindparam, func, select

from titan.storage import compiled, deferred, id_blocks
from titan.storage import schema as t
from titan.storage.base import Row

JOB_JSON = ("args", "parents", "env")
#: JSON columns that are NULL for most jobs (a service's settings and status, a retried
#: gate's earlier decisions).
JOB_JSON_NULLABLE = ("service", "service_status", "decisions")


def job_in(row: Row) -> Row:
    out = dict(row)
    for key in JOB_JSON_NULLABLE:
        if out.get(key) is not None and not isinstance(out[key], str):
            out[key] = json.dumps(out[key])
    for key in JOB_JSON:
        if key not in out:
            continue
        value = out[key]
        if isinstance(value, str):
            continue
        # Most jobs have no args or env: their JSON needs no encoder (json.dumps of 20,000
        # empty lists and dicts costs a 10,000-job DAG tens of milliseconds).
        if isinstance(value, list | dict) and not value:
            out[key] = "[]" if isinstance(value, list) else "{}"
        else:
            out[key] = _plain_strings(value) or json.dumps(value)
    return out


#: Text json.dumps writes as it is: printable ASCII without quotes or backslashes.
_PLAIN = re.compile(r'[ !#-\[\]-~]*')


def _plain_strings(value: Any) -> str | None:
    """json.dumps' text of a list of plain strings (a job's parents: job ids always are),
    written without the encoder; None for anything else."""
    if type(value) is not list or not value or not all(type(v) is str for v in value):
        return None
    if _PLAIN.fullmatch("".join(value)) is None:
        return None
    joined = '", "'.join(value)
    return f'["{joined}"]'


_DEFAULTS: dict[str, Any] = {}


def _job_defaults() -> dict[str, Any]:
    """The jobs columns' scalar defaults (port 0, attempt 0, ...), for rows that omit them."""
    if not _DEFAULTS:
        _DEFAULTS.update({c.key: c.default.arg for c in t.jobs.columns  # type: ignore[attr-defined]
                          if c.default is not None and c.default.is_scalar})
    return _DEFAULTS


_INSERTS: dict[tuple[str, tuple[str, ...]], tuple[str, list[str] | None]] = {}


def _compiled_insert(dialect: Any, keys: tuple[str, ...]) -> tuple[str, list[str] | None]:
    """The job INSERT for these columns in the driver's parameter style, compiled once."""
    cache_key = (dialect.name, keys)
    found = _INSERTS.get(cache_key)
    if found is None:
        if len(_INSERTS) >= 256:  # shapes are few in practice; never let odd ones pile up
            _INSERTS.clear()
        compiled = t.jobs.insert().compile(dialect=dialect, column_keys=list(keys))
        order = list(compiled.positiontup or []) if compiled.positional else None
        found = _INSERTS[cache_key] = (str(compiled), order)
    return found


class SubmissionsSQL:
    conn: Connection
    # PostgreSQL's write transactions: ids taken ahead, the run numbers of names written.
    job_ids: id_blocks.IdBlocks | None
    dag_ids: id_blocks.IdBlocks | None
    dag_runs: id_blocks.RunNumbers | None

    def insert_next_dag(self, row: Row) -> tuple[int, int]:
        # The run number in the insert itself: a round trip less than asking for the highest
        # first, on the path of every submission. Submissions are written by one writer, so
        # two never compute the same number (and (name, run) is unique besides).
        keys = tuple(sorted(k for k in row if k not in ("run", "id")))
        known = self.dag_runs.next(row["name"]) if self.dag_runs is not None else None
        if known is not None and self.dag_ids is not None:
            # PostgreSQL, a name this leader wrote: nothing to ask (id_blocks.py).
            dag_id = self.dag_ids.take(self.conn, 1)[0]
            compiled.write(self.conn, ("insert_dag_numbered", keys),
                           lambda: t.dags.insert().values(
                               {k: bindparam(k) for k in (*keys, "id", "run")}),
                           {**{k: row[k] for k in keys}, "id": dag_id, "run": known})
            return dag_id, known

        def statement() -> Any:
            last = select(func.coalesce(func.max(t.dags.c.run), 0) + 1) \
                .where(t.dags.c.name == bindparam("name")).scalar_subquery()
            return t.dags.insert().values({**{k: bindparam(k) for k in keys}, "run": last}) \
                .returning(t.dags.c.id, t.dags.c.run)

        inserted: Any = compiled.execute(self.conn, ("insert_next_dag", keys), statement,
                                         {k: row[k] for k in keys}).one()
        if self.dag_runs is not None:
            self.dag_runs.note(row["name"], int(inserted[1]))
        return int(inserted[0]), int(inserted[1])

    def insert_dag(self, row: Row) -> int:
        keys = tuple(sorted(row))
        result = compiled.execute(
            self.conn, ("insert_dag", keys),
            lambda: t.dags.insert().values({k: bindparam(k) for k in keys}).returning(t.dags.c.id),
            row,
        )
        return int(result.scalar_one())

    def insert_jobs(self, rows: Sequence[Row]) -> list[int]:
        # A plain executemany, then one SELECT for the ids: ordered RETURNING makes SQLite
        # insert row by row (a 10,000-job DAG took over a second). (dag_id, position) is
        # unique, so it maps each row back to its id.
        if not rows:
            return []
        defaults = _job_defaults()
        if self.job_ids is not None and len(rows) <= id_blocks.MOST:
            return self._insert_numbered(rows, defaults)
        if len(rows) == 1:
            # One job (an agent's single step, submit_job): its id comes back with the insert,
            # a round trip less on PostgreSQL than the insert and the SELECT below.
            row = {**defaults, **job_in(rows[0])}
            keys = tuple(sorted(row))
            inserted = compiled.execute(
                self.conn, ("insert_job", keys),
                lambda: t.jobs.insert().values({k: bindparam(k) for k in keys})
                .returning(t.jobs.c.id),
                row)
            return [int(inserted.scalar_one())]
        # Compiled once per shape and handed to the driver's executemany: SQLAlchemy's per-row
        # parameter processing cost more than the insert itself for large DAGs. Every value
        # here is already a plain str/int/float/bool/None, which both drivers take as is.
        # A row's NULL columns are left out of its statement (they are NULL by default): a
        # new job has a dozen, and binding them was a third of SQLite's insert. Rows are
        # grouped by the columns they set, so a DAG is one statement per shape.
        shapes: dict[tuple[str, ...], list[Row]] = {}
        for raw in rows:
            row = job_in(raw)
            if not row.keys() >= defaults.keys():
                row = {**defaults, **row}
            shape = tuple(k for k, v in row.items() if v is not None)
            group = shapes.get(shape)
            if group is None:
                group = shapes[shape] = []
            group.append(row)
        for shape, group in shapes.items():
            sql, order = _compiled_insert(self.conn.dialect, tuple(sorted(shape)))
            params: Any = group
            if order is not None:
                get = itemgetter(*order)  # a tuple per row, at C speed (for two keys or more)
                params = list(map(get, group)) if len(order) > 1 else [(get(r),) for r in group]
            self.conn.exec_driver_sql(sql, params)
        ids: dict[tuple[int, int], int] = {}
        for dag_id in sorted({r["dag_id"] for r in rows}):
            found: Any = compiled.execute(
                self.conn, "job_ids_of_dag",
                lambda: select(t.jobs.c.position, t.jobs.c.id).where(t.jobs.c.dag_id == bindparam("d")),
                {"d": dag_id},
            )
            ids.update(((dag_id, p), i) for p, i in found)
        return [int(ids[(r["dag_id"], r["position"])]) for r in rows]

    def _insert_numbered(self, rows: Sequence[Row], defaults: Row) -> list[int]:
        """PostgreSQL: the jobs written with ids taken ahead (:mod:`id_blocks`), so nothing
        needs their answer: a few go with the commit, more as one executemany. A large DAG
        takes the path above: its one SELECT of ids costs less than 10,000 ``nextval``s."""
        assert self.job_ids is not None
        ids = self.job_ids.take(self.conn, len(rows))
        shapes: dict[tuple[str, ...], list[Row]] = {}
        for raw, job_id in zip(rows, ids, strict=True):
            row = {**defaults, **job_in(raw), "id": job_id}
            shapes.setdefault(tuple(sorted(k for k, v in row.items() if v is not None)),
                              []).append(row)
        for shape, group in shapes.items():
            sql, order = _compiled_insert(self.conn.dialect, shape)
            if order is None and len(group) <= deferred.MAX_ROWS and deferred.active(self.conn):
                deferred.queue(self.conn, sql, [{k: r[k] for k in shape} for r in group])
            else:
                self.conn.exec_driver_sql(sql, [{k: r[k] for k in shape} for r in group])
        return ids
