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
from typing import Any

from sqlalchemy import Connection, Engine, event

#: The queue of statement texts on a connection's ``info``, present only while deferring.
_QUEUE = "titan.deferred"
#: The connection's client-side binding cursor (it only quotes; it never executes).
_BIND = "titan.deferred.bind"
#: Writes of more rows than this go as an executemany (above).
MAX_ROWS = 8


def install(engine: Engine) -> None:
    """Send a connection's queued writes before any other statement runs on it."""
    event.listen(engine, "before_cursor_execute", _send_before)


def begin(conn: Connection) -> None:
    """Defer this write transaction's deferrable writes (PostgreSQL only)."""
    if conn.dialect.name == "postgresql":
        conn.info[_QUEUE] = []


def end(conn: Connection) -> None:
    """Stop deferring; whatever is still queued is dropped (the transaction failed)."""
    try:
        conn.info.pop(_QUEUE, None)
    except Exception:  # noqa: BLE001 - an invalidated connection: its info went with it
        pass


def active(conn: Connection) -> bool:
    """Whether writes on ``conn`` are deferred now."""
    return _QUEUE in conn.info


def queue(conn: Connection, sql: str, rows: Sequence[dict[str, Any]]) -> None:
    """Queue ``sql`` (in the driver's ``%(name)s`` style) once per row of values, on a
    connection that defers (:func:`active`)."""
    queued: list[str] = conn.info[_QUEUE]
    bind = conn.info.get(_BIND)
    if bind is None:  # one per connection, kept with it
        import psycopg

        driver: Any = conn.connection.driver_connection
        bind = conn.info[_BIND] = psycopg.ClientCursor(driver)
    queued.extend(bind.mogrify(sql, row) for row in rows)


def send(conn: Connection, *, commit: bool = False) -> None:
    """Send the queued writes now (and, with ``commit``, the COMMIT in the same query)."""
    queue: list[str] | None = conn.info.get(_QUEUE)
    if not queue:
        return  # a COMMIT alone is the transaction's own, sent as usual
    text = ";\n".join([*queue, "COMMIT"] if commit else queue)
    queue.clear()  # before executing: the hook below then finds nothing to send
    # no_parameters: the text is sent as it is, never scanned for placeholders (a value may
    # hold a '%'); without parameters psycopg uses the simple protocol, which runs several.
    # After a COMMIT in it, the transaction's own commit finds the server's idle and sends
    # nothing (psycopg commits only a transaction that is open).
    conn.execution_options(no_parameters=True).exec_driver_sql(text)


def _send_before(conn: Connection, cursor: Any, statement: str, parameters: Any,
                 context: Any, executemany: bool) -> None:
    queue: list[str] | None = conn.info.get(_QUEUE)
    if queue:
        text = ";\n".join(queue)
        queue.clear()
        # On the statement's own cursor, inside SQLAlchemy's handling of driver errors.
        cursor.execute(text, prepare=False)
