"""Writes whose answer nobody reads, sent along with the transaction's next round trip.

A scheduler step's changes (a job's new state, its attempt's end, its DAG's status, a log
line) and the record of an idempotent request are written but never read back by the code
that writes them. On PostgreSQL each statement is a round trip to the server, and on the path
of one job there were thirteen: a trivial job's submit-to-result took 1.55-1.75 times as long
as on SQLite on a fast machine, most of it waiting on the network stack (issue 17).

Inside a write transaction on PostgreSQL such a write is therefore not sent at once. Its
values are bound on the client (psycopg's own quoting, :class:`psycopg.ClientCursor`) and the
statement text is queued on the connection; the queue goes to the server as one
simple-protocol query, with whatever needs the server next:

* before any other statement of the transaction (a read, a write whose result is read, a
  COPY): a ``before_cursor_execute`` hook sends the queue first, on the same cursor, so
  every statement still sees everything written before it;
* with the COMMIT itself (``...; COMMIT`` in one query), which is where most of it goes.

A leader's write transaction starts with its fence (:mod:`titan.storage.leadership`), and
psycopg sends a transaction's BEGIN as a round trip of its own. Both go ahead of the queue, in
the same query: ``BEGIN; <fence>; <queued writes>; COMMIT`` is one round trip for a step that
reads nothing. A step that does read goes the same way up to its first read: ``BEGIN;
<fence>; <queued writes>; <the read>`` is one query, whose last answer is the read's
(:func:`lead`). A submission's idempotency lookup cost a round trip of its own after its
BEGIN's. The fence sent this way is a statement that *fails* unless this master still
leads, so the server runs nothing after it: no write and no COMMIT of a replaced leader. Where
that one query fails, for whatever reason, it was rolled back whole and the transaction is sent
the usual way (the fence alone, then the rest), which raises what went wrong as it always did.

A step's changes and the COMMIT that makes them durable cost one round trip instead of one
each. What it does not change: the order of statements, the transaction's boundaries, what
is acknowledged when (after the COMMIT's answer), and the errors — a write that fails fails
its transaction, raised from the statement it went with or from the commit, wrapped by
SQLAlchemy as any driver error is (so a lost connection still reads as "the database is
away" to the group-commit writer, which then looks its commit mark up).

Large writes (more than :data:`MAX_ROWS` rows in one call) are not queued: as an executemany
psycopg pipelines them over one prepared statement, which the server parses once, while
literal text is parsed statement by statement. SQLite, in process, has no round trip to save:
there every write runs at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from sqlalchemy import Connection, Engine, event

#: The queue of statement texts on a connection's ``info``, present only while deferring.
_QUEUE = "titan.deferred"
#: The connection's client-side binding cursor (it only quotes; it never executes).
_BIND = "titan.deferred.bind"
#: The transaction's fence, on ``info`` until it was sent.
_FENCE = "titan.deferred.fence"
#: Set once sending the fence with its BEGIN failed: the usual way from then on.
_ALONE = "titan.deferred.fence-alone"
#: Writes of more rows than this go as an executemany (above).
MAX_ROWS = 8


class Fence(Protocol):
    """What proves, first thing in a write transaction, that this master may still write."""

    @property
    def statement(self) -> str:
        """One statement that fails unless this master still leads (so nothing after it in
        the same query runs); it leaves the transaction's commit mark."""

    def alone(self, cursor: Any) -> None:
        """The fence as a statement of its own on a DB-API cursor; raises NotLeader."""


def install(engine: Engine) -> None:
    """Send a connection's queued writes before any other statement runs on it."""
    event.listen(engine, "before_cursor_execute", _send_before)


def begin(conn: Connection, fence: Fence | None = None) -> None:
    """Defer this write transaction's deferrable writes, and its ``fence``, which goes ahead
    of every other statement (PostgreSQL only)."""
    if conn.dialect.name == "postgresql":
        conn.info[_QUEUE] = []
        if fence is not None:
            conn.info[_FENCE] = fence


def end(conn: Connection) -> None:
    """Stop deferring; whatever is still queued is dropped (the transaction failed)."""
    try:
        for key in (_QUEUE, _FENCE, _ALONE):
            conn.info.pop(key, None)
    except Exception:  # noqa: BLE001 - an invalidated connection: its info went with it
        pass


def active(conn: Connection) -> bool:
    """Whether writes on ``conn`` are deferred now."""
    return _QUEUE in conn.info


def queue(conn: Connection, sql: str, rows: Sequence[dict[str, Any]]) -> None:
    """Queue ``sql`` (in the driver's ``%(name)s`` style) once per row of values, on a
    connection that defers (:func:`active`)."""
    queued: list[str] = conn.info[_QUEUE]
    bind = _binder(conn)
    queued.extend(bind.mogrify(sql, row) for row in rows)


def _binder(conn: Connection) -> Any:
    bind = conn.info.get(_BIND)
    if bind is None:  # one per connection, kept with it
        import psycopg

        driver: Any = conn.connection.driver_connection
        bind = conn.info[_BIND] = psycopg.ClientCursor(driver)
    return bind


def lead(conn: Connection, sql: str, args: Any) -> tuple[list[str], list[tuple[Any, ...]]] | None:
    """Run ``sql`` with ``args`` (one row of the driver's parameters) as the transaction's
    first statement, in one query with its BEGIN, its fence and the writes queued so far; its
    column names and rows. None where the transaction began already, has no fence to send,
    or the query failed (rolled back whole): the caller then runs the statement the usual
    way, after the fence alone, which raises what went wrong."""
    fence: Fence | None = conn.info.get(_FENCE)
    queued: list[str] | None = conn.info.get(_QUEUE)
    if fence is None or queued is None or conn.info.get(_ALONE):
        return None
    statement = _binder(conn).mogrify(sql, args)
    result = _with_begin(conn, [fence.statement, *queued, statement])
    if result is None:
        return None
    del conn.info[_FENCE]
    queued.clear()
    from psycopg.adapt import Transformer

    # The rows as the driver's cursor would have loaded them (its types, by column oid).
    raw: Any = conn.connection.dbapi_connection
    loader = Transformer(raw)
    loader.set_pgresult(result)
    names = [(result.fname(i) or b"").decode() for i in range(result.nfields)]
    return names, loader.load_rows(0, result.ntuples, tuple)


def send(conn: Connection, *, commit: bool = False) -> None:
    """Send the queued writes now (and, with ``commit``, the COMMIT in the same query)."""
    queue: list[str] | None = conn.info.get(_QUEUE)
    fence: Fence | None = conn.info.get(_FENCE)
    if not queue and fence is None:
        return  # a COMMIT alone is the transaction's own, sent as usual
    parts = [*(queue or ()), "COMMIT"] if commit else list(queue or ())
    if fence is not None and _with_begin(conn, [fence.statement, *parts]) is not None:
        del conn.info[_FENCE]
        if queue:
            queue.clear()
        return
    if queue:
        queue.clear()  # before executing: the hook below then finds nothing to send
    # no_parameters: the text is sent as it is, never scanned for placeholders (a value may
    # hold a '%'); without parameters psycopg uses the simple protocol, which runs several.
    # After a COMMIT in it, the transaction's own commit finds the server's idle and sends
    # nothing (psycopg commits only a transaction that is open). A fence not sent yet goes
    # ahead of it, from the hook below.
    conn.execution_options(no_parameters=True).exec_driver_sql(
        ";\n".join(parts) if parts else "SELECT 1")


def _send_before(conn: Connection, cursor: Any, statement: str, parameters: Any,
                 context: Any, executemany: bool) -> None:
    queue: list[str] | None = conn.info.get(_QUEUE)
    if queue is None:
        return
    fence: Fence | None = conn.info.pop(_FENCE, None)
    if fence is not None:
        if not conn.info.get(_ALONE) \
                and _with_begin(conn, [fence.statement, *queue]) is not None:
            queue.clear()
            return
        # On the statement's own cursor, inside SQLAlchemy's handling of driver errors.
        fence.alone(cursor)
    if queue:
        text = ";\n".join(queue)
        queue.clear()
        cursor.execute(text, prepare=False)


def _with_begin(conn: Connection, statements: list[str]) -> Any:
    """Send the transaction's BEGIN and ``statements`` as one query: the last statement's
    result (a ``psycopg.pq`` result) once all ran.

    None where this cannot be done (not psycopg, a pipeline, a transaction already open) or
    failed; then nothing of it is left in the database, and the caller sends the usual way,
    which raises what went wrong through SQLAlchemy's handling of driver errors (a lost
    connection there reads as "the database is away"). Only Titan's own statements go in the
    text, and the BEGIN is the one psycopg would send (the connection's isolation level,
    read-only and deferrable settings)."""
    conn.info[_ALONE] = True  # one try per transaction, whatever happens below
    raw: Any = conn.connection.dbapi_connection
    pgconn = getattr(raw, "pgconn", None)
    if pgconn is None or raw.autocommit or getattr(raw, "_pipeline", None) is not None:
        return None
    from psycopg import IsolationLevel, pq

    if pgconn.transaction_status != pq.TransactionStatus.IDLE:
        return None
    begin = ["BEGIN"]
    if raw.isolation_level is not None:
        begin.append("ISOLATION LEVEL " + IsolationLevel(raw.isolation_level).name.replace("_", " "))
    if raw.read_only is not None:
        begin.append("READ ONLY" if raw.read_only else "READ WRITE")
    if raw.deferrable is not None:
        begin.append("DEFERRABLE" if raw.deferrable else "NOT DEFERRABLE")
    query = ";\n".join([" ".join(begin), *statements])
    with raw.lock:
        result = pgconn.exec_(query.encode(raw.info.encoding))
        if result.status in (pq.ExecStatus.COMMAND_OK, pq.ExecStatus.TUPLES_OK):
            return result
        if pgconn.status == pq.ConnStatus.OK \
                and pgconn.transaction_status != pq.TransactionStatus.IDLE:
            pgconn.exec_(b"ROLLBACK")
    return None
