"""Hot statements compiled once and handed straight to the driver.

SQLAlchemy Core builds, caches and binds a statement on every call; for the few statements
the master runs thousands of times a second (a job's state change, a log line, a store read)
that bookkeeping costs more than SQLite's own work. Each statement here is built once per
dialect and shape, compiled to the driver's parameter style, and executed with
``exec_driver_sql``. Values must already be plain driver types (str, int, float, bool, None).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import Connection, CursorResult

from titan.storage import deferred

Params = dict[str, Any]
_CACHE: dict[tuple[str, Any], tuple[str, list[str] | None, Params]] = {}


def execute(conn: Connection, key: Any, build: Callable[[], Any],
            params: Params | Sequence[Params]) -> CursorResult[Any]:
    """Run the statement ``build()`` makes (cached under ``key``) with named ``params``."""
    sql, order, fixed = _entry(conn, key, build)
    rows = [params] if isinstance(params, dict) else params
    if fixed:
        rows = [{**fixed, **p} for p in rows]
    args: Any = [tuple(p[k] for k in order) for p in rows] if order is not None else list(rows)
    return conn.exec_driver_sql(sql, args[0] if isinstance(params, dict) else args)


def write(conn: Connection, key: Any, build: Callable[[], Any],
          params: Params | Sequence[Params]) -> None:
    """:func:`execute` for a write whose result nobody reads: on PostgreSQL, inside a write
    transaction, it goes with the transaction's next round trip (:mod:`deferred`)."""
    rows = [params] if isinstance(params, dict) else params
    if len(rows) <= deferred.MAX_ROWS and deferred.active(conn):
        sql, order, fixed = _entry(conn, key, build)
        if order is None:  # named parameters, as psycopg's are
            deferred.queue(conn, sql, [{**fixed, **p} for p in rows] if fixed else rows)
            return
    execute(conn, key, build, params)


def _entry(conn: Connection, key: Any,
           build: Callable[[], Any]) -> tuple[str, list[str] | None, Params]:
    entry = _CACHE.get((conn.dialect.name, key))
    if entry is None:
        compiled = build().compile(dialect=conn.dialect)
        order = list(compiled.positiontup or []) if compiled.positional else None
        # Binds the statement fixed itself (a LIMIT, a literal in a WHERE) keep their values.
        fixed = {k: v for k, v in compiled.params.items() if v is not None}
        entry = _CACHE[(conn.dialect.name, key)] = (str(compiled), order, fixed)
    return entry
