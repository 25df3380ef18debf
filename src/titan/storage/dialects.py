"""The two backends: what differs between SQLite and PostgreSQL, and nothing else."""

from __future__ import annotations

import fcntl
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, create_engine, event
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.pool import NullPool

from titan.errors import ConfigError, MasterAlreadyRunning
from titan.storage import deferred
from titan.storage.cluster_scope import app_name, current_schema
from titan.storage.leadership import Leadership, new_node
from titan.storage.sql import SQLStorage


def sqlite_storage(url: str, *, synchronous: str = "NORMAL") -> SQLStorage:
    """SQLite in WAL mode.

    ``synchronous=NORMAL`` with WAL keeps every committed transaction across a crash of the
    process (``kill -9``), which is the durability contract; only an OS crash or power loss
    can drop the last transactions. Set ``TITAN_SQLITE_SYNCHRONOUS=FULL`` to cover that too.
    """
    path = url.split("///", 1)[1] if "///" in url else ""
    if path and path != ":memory:":
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    # hide_parameters: a failed statement's text must not carry its values (a secret in a job's
    # env, a store value) into the master's log or a 500's message.
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30},
                           hide_parameters=True)
    # Empty is unset, as for every setting. OFF is refused: an OS crash or a power loss could
    # then corrupt the database, not merely lose its last commits.
    sync = (os.environ.get("TITAN_SQLITE_SYNCHRONOUS", "").strip() or synchronous).upper()
    if sync not in ("NORMAL", "FULL", "EXTRA"):
        raise ConfigError(f"TITAN_SQLITE_SYNCHRONOUS must be NORMAL, FULL or EXTRA, not {sync!r}")

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute(f"PRAGMA synchronous={sync}")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()
        # A case-insensitive search (ILIKE) is lower(x) LIKE lower(y) on SQLite, whose lower()
        # folds ASCII letters only: "ÜNÏCODE" missed "ünïcode", which PostgreSQL's ILIKE finds.
        # Python's folds every letter (a search over 100,000 actions: ~0.3 s → ~0.55 s).
        dbapi_conn.create_function("lower", 1, _lower, deterministic=True)

    return SQLStorage(url, engine, sqlite_insert, lambda: _flock(path),
                      unavailable=_sqlite_unavailable, reads=_sqlite_reads,
                      writes=_HeldWrites(engine))


def _lower(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


class _HeldWrites:
    """SQLite's write transactions, one after the other on one connection kept for them.

    Taken from the pool and given back for every transaction, a connection cost the writer
    thread as much as the transaction's statement and commit (a Connection built, the pool's
    checkout, its reset on return: a one-insert transaction took 53 µs, 28 µs on a held
    connection; a trivial job is two transactions, issue 17), and the pool, which
    hands its connections out in turn, gave the writer a connection whose page cache the
    last commit, on another, had made stale. A write transaction that finds the held one
    busy (a second writing thread: a test, a maintenance command) takes one from the pool
    as before; one that fails lets its connection go, so the next starts on a fresh one
    whatever the failure left behind. SQLite only: on PostgreSQL the pool checks a
    connection that sat idle before handing it out (``_ping_after_idle``)."""

    def __init__(self, engine: Any) -> None:
        self._engine = engine
        self._lock = threading.Lock()
        self._conn: Connection | None = None

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        if not self._lock.acquire(blocking=False):
            with self._engine.begin() as conn:
                yield conn
            return
        try:
            conn = self._conn
            if conn is None:
                conn = self._conn = self._engine.connect()
            try:
                with conn.begin():
                    yield conn
            except BaseException:
                self._conn = None
                conn.close()
                raise
        finally:
            self._lock.release()

    def close(self) -> None:
        # Not for ever: a transaction stuck in the database must not hang the shutdown (its
        # connection then goes with the process, as the pool's checked-out ones do).
        if self._lock.acquire(timeout=5):
            try:
                if self._conn is not None:
                    self._conn.close()
                    self._conn = None
            finally:
                self._lock.release()


@contextmanager
def _sqlite_reads(conn: Connection) -> Iterator[Connection]:
    """A read on SQLite: refused any write (``query_only``), so a read that writes fails
    here, in every test, rather than half-committing on PostgreSQL (whose reads run
    without a transaction: :func:`_postgres_reads`)."""
    raw: Any = conn.connection.dbapi_connection
    raw.execute("PRAGMA query_only = ON")
    try:
        yield conn
    finally:
        raw.execute("PRAGMA query_only = OFF")


@contextmanager
def _postgres_reads(conn: Connection) -> Iterator[Connection]:
    """A read on PostgreSQL, each statement on its own (autocommit): at READ COMMITTED, the
    isolation Titan runs at, every statement takes a fresh snapshot in a transaction too, so
    a transaction around reads adds only its BEGIN and COMMIT, two round trips on the path
    of every page, wait and view."""
    yield conn.execution_options(isolation_level="AUTOCOMMIT")


#: SQLite's answers that mean "not now" rather than "not this": the disk full or failing,
#: the file locked past busy_timeout or gone. Other OperationalErrors (no such table, a
#: syntax error) are bugs and must not be retried forever.
_SQLITE_AWAY = ("database or disk is full", "disk i/o error", "database is locked",
                "unable to open database file")


def _sqlite_unavailable(exc: BaseException) -> bool:
    return isinstance(exc, OperationalError) and any(
        m in str(exc.orig).lower() for m in _SQLITE_AWAY)


def _postgres_unavailable(exc: BaseException) -> bool:
    """psycopg raises OperationalError (or a subclass) for exactly the conditions to wait out:
    no connection, a connection lost (SQLSTATE class 08), the server shutting down or starting
    (57P01-57P03), out of disk or memory (class 53), a serialization failure or deadlock
    (class 40), a lock timeout (55P03). Wrong SQL or data are ProgrammingError/DataError."""
    if isinstance(exc, DisconnectionError) or getattr(exc, "connection_invalidated", False):
        return True
    if not isinstance(exc, OperationalError | InterfaceError):
        return False
    import psycopg

    return isinstance(exc.orig, psycopg.OperationalError | psycopg.InterfaceError)


def _flock(db_path: str) -> Callable[[], None]:
    """An exclusive lock on ``<db>.lock``, held while the master runs; the kernel drops it
    when the process dies, so a kill -9 never leaves a stale lock behind."""
    if not db_path or db_path == ":memory:":
        return lambda: None
    lock_path = os.path.abspath(db_path) + ".lock"
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 64, 0).decode(errors="replace").strip()
        os.close(fd)
        raise MasterAlreadyRunning(int(holder) if holder.isdigit() else None,
                                   db_path) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)

    def release() -> None:
        os.close(fd)

    return release


def postgres_storage(url: str) -> SQLStorage:
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        # Domain code never names a driver; the URL may omit it. psycopg 3 is the one we ship.
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
    node = new_node()
    try:
        schema = _schema_of(url)
        # Every connection says which master, of which schema's cluster, it belongs to: a
        # standby taking over from a silent leader ends that leader's connections by this
        # name (storage/leadership.py, storage/cluster_scope.py).
        engine = create_engine(url, pool_size=10, max_overflow=10, hide_parameters=True,
                               connect_args={"application_name": app_name(node, schema)})
    except ModuleNotFoundError as exc:  # pragma: no cover - depends on the install
        raise ConfigError(
            f"PostgreSQL support needs psycopg: pip install 'titan-agents[postgres]' ({exc})"
        ) from exc
    _ping_after_idle(engine)
    deferred.install(engine)
    leadership = Leadership(engine, node, schema=schema)

    def claim() -> Callable[[], None]:
        leadership.claim_or_refuse()
        return leadership.release

    return SQLStorage(url, engine, pg_insert, claim, leadership=leadership,
                      unavailable=_postgres_unavailable, reads=_postgres_reads)


def _schema_of(url: str) -> str:
    """The schema the URL's user and search_path put Titan's tables in, asked once before
    the master's connections are named after it (this one is not a master's)."""
    probe = create_engine(url, poolclass=NullPool, hide_parameters=True,
                          connect_args={"application_name": "titan-schema-probe"})
    try:
        with probe.connect() as conn:
            return current_schema(conn)
    finally:
        probe.dispose()


#: A pooled connection idle longer than this is checked (``SELECT 1``) before it is used.
PING_AFTER_IDLE = 0.1


def _ping_after_idle(engine: Any) -> None:
    """Check a pooled connection before use only when it sat idle.

    SQLAlchemy's ``pool_pre_ping`` pings on every checkout: a round trip to the server before
    every transaction, read or commit (~9 % of the master's time under load, on the path of
    every job). After a server restart every pooled connection has been idle at least as
    long as the server was away — far longer than this threshold — so checking only idle
    ones catches what the per-checkout ping caught, and a connection in steady use is not
    pinged. A dead one raises DisconnectionError, and the pool opens a fresh connection.
    What it does not catch, as the per-checkout ping did: a link cut less than this long
    before its next use fails that transaction, like one cut in the middle of it always did.
    """
    @event.listens_for(engine, "checkin")
    def checkin(_dbapi: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def checkout(dbapi: Any, record: Any, _proxy: Any) -> None:
        since = record.info.get("idle_since")
        if since is None or time.monotonic() - since < PING_AFTER_IDLE:
            return
        try:
            engine.dialect.do_ping(dbapi)
        except Exception as exc:
            raise DisconnectionError(f"a pooled connection is gone: {exc}") from exc
