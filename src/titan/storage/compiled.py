"""Hot statements compiled once and handed straight to the driver.

SQLAlchemy Core builds, caches and binds a statement on every call; for the few statements
the master runs thousands of times a second (a job's state change, a log line, a store read)
that bookkeeping costs more than SQLite's own work. Each statement here is built once per
dialect and shape, compiled to the driver's parameter style, and run on a DB-API cursor of
the connection the way SQLAlchemy runs a statement (its hooks, its wrapping of driver
errors), but without the result SQLAlchemy builds from the cursor's description on every
``exec_driver_sql``: per column, and a job's view has 67 (issue 17). Several rows at once
(an executemany) and a connection outside a transaction still go through
``exec_driver_sql``. Values must already be plain driver types (str, int, float, bool, None).

The driver's values come back as they are, without SQLAlchemy's result processing; the one
type that needs it is Boolean on a database without booleans (SQLite stores 0/1): the
columns a statement selects of that type are turned back into bools here, so a row read
this way is the row ``conn.execute`` would have handed out, on either database.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import Boolean, Connection, Result
from sqlalchemy.engine import IteratorResult
from sqlalchemy.engine.result import SimpleResultMetaData

from titan.storage import deferred

Params = dict[str, Any]
#: A statement's SQL, its parameters' order (positional drivers), the binds it fixed itself,
#: and the positions of the Boolean columns it selects (on a database without booleans).
Entry = tuple[str, list[str] | None, Params, tuple[int, ...]]
_CACHE: dict[tuple[str, Any], Entry] = {}
#: The column names of the statements whose Booleans are converted, by the same key: built
#: once (a job row's 45 names took longer than the conversion itself).
_KEYS: dict[tuple[str, Any], SimpleResultMetaData] = {}


def execute(conn: Connection, key: Any, build: Callable[[], Any],
            params: Params | Sequence[Params]) -> Result[Any]:
    """Run the statement ``build()`` makes (cached under ``key``) with named ``params``."""
    sql, order, fixed, booleans = _entry(conn, key, build)
    rows = [params] if isinstance(params, dict) else params
    if fixed:
        rows = [{**fixed, **p} for p in rows]
    args: Any = [tuple(p[k] for k in order) for p in rows] if order is not None else list(rows)
    if len(args) == 1 and conn.in_transaction():
        return _on_cursor(conn, key, sql, args[0], booleans)
    # Several rows go as one executemany; outside a transaction exec_driver_sql begins one
    # (or refuses a transaction that failed), as SQLAlchemy does for any statement.
    result = conn.exec_driver_sql(sql, args[0] if isinstance(params, dict) else args)
    if not booleans:
        return result
    names = _names(conn, key, list(result.keys()))
    converted = [tuple(_as_bools(row, booleans)) for row in result]
    return IteratorResult(names, iter(converted))


def _on_cursor(conn: Connection, key: Any, sql: str, args: Any,
               booleans: tuple[int, ...]) -> Result[Any]:
    """One statement on a DB-API cursor of ``conn``, as SQLAlchemy runs one (the
    connection's ``before_cursor_execute`` hooks — :mod:`deferred`'s among them — first, then
    the driver, its errors wrapped by SQLAlchemy, which also invalidates a connection the
    server dropped), without building a result from the cursor's description on every
    call: a job's joined view (67 columns) cost 185 µs that way on SQLite, 28 µs of it
    SQLite's own (issue 17). Rows are read whole.

    A leader's first statement in a write transaction goes with the transaction's BEGIN and
    fence, as one query (:func:`deferred.lead`)."""
    led = deferred.lead(conn, sql, args) if deferred.active(conn) else None
    if led is not None:
        if not led[0]:  # a write without RETURNING
            return IteratorResult(_NO_ROWS, iter(()))
        return IteratorResult(_names(conn, key, led[0]), iter(led[1]))
    cursor = conn.connection.cursor()
    try:
        # Outside the try below, as in SQLAlchemy's own path: what a hook raises (NotLeader
        # from the fence) reaches the caller as it is, not wrapped as a statement's error.
        for hook in conn.dispatch.before_cursor_execute:
            sql, args = hook(conn, cursor, sql, args, None, False)
        try:
            conn.dialect.do_execute(cursor, sql, args, None)
            description = cursor.description
            rows = cursor.fetchall() if description is not None else ()
        except BaseException as exc:
            if isinstance(exc, Exception) and not isinstance(exc, conn.dialect.loaded_dbapi.Error):
                raise
            conn._handle_dbapi_exception(exc, sql, args, cursor, None)
            raise  # not reached: the line above raises its wrapped error
        conn.dispatch.after_cursor_execute(conn, cursor, sql, args, None, False)
    finally:
        cursor.close()
    if description is None:  # a write without RETURNING: nothing to read
        return IteratorResult(_NO_ROWS, iter(()))
    names = _names(conn, key, [d[0] for d in description])
    if booleans:
        rows = [tuple(_as_bools(row, booleans)) for row in rows]
    return IteratorResult(names, iter(rows))


def _names(conn: Connection, key: Any, keys: Sequence[str]) -> SimpleResultMetaData:
    names = _KEYS.get((conn.dialect.name, key))
    if names is None:
        names = _KEYS[(conn.dialect.name, key)] = SimpleResultMetaData(list(keys))
    return names


_NO_ROWS = SimpleResultMetaData([])


def _as_bools(row: Any, positions: tuple[int, ...]) -> list[Any]:
    values = list(row)
    for i in positions:
        if values[i] is not None:  # NULL stays NULL (an outer join's missing row)
            values[i] = bool(values[i])
    return values


def write(conn: Connection, key: Any, build: Callable[[], Any],
          params: Params | Sequence[Params]) -> None:
    """:func:`execute` for a write whose result nobody reads: on PostgreSQL, inside a write
    transaction, it goes with the transaction's next round trip (:mod:`deferred`)."""
    rows = [params] if isinstance(params, dict) else params
    if len(rows) <= deferred.MAX_ROWS and deferred.active(conn):
        sql, order, fixed, _ = _entry(conn, key, build)
        if order is None:  # named parameters, as psycopg's are
            deferred.queue(conn, sql, [{**fixed, **p} for p in rows] if fixed else rows)
            return
    execute(conn, key, build, params)


def _entry(conn: Connection, key: Any, build: Callable[[], Any]) -> Entry:
    entry = _CACHE.get((conn.dialect.name, key))
    if entry is None:
        statement = build()
        compiled = statement.compile(dialect=conn.dialect)
        order = list(compiled.positiontup or []) if compiled.positional else None
        # Binds the statement fixed itself (a LIMIT, a literal in a WHERE) keep their values.
        fixed = {k: v for k, v in compiled.params.items() if v is not None}
        booleans: tuple[int, ...] = ()
        if not conn.dialect.supports_native_boolean:
            columns = getattr(statement, "exported_columns", ())  # a SELECT's, a RETURNING's
            booleans = tuple(i for i, c in enumerate(columns) if isinstance(c.type, Boolean))
        entry = _CACHE[(conn.dialect.name, key)] = (str(compiled), order, fixed, booleans)
    return entry
