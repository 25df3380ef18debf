"""The two backends: what differs between SQLite and PostgreSQL, and nothing else."""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import create_engine, event, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import DisconnectionError

from titan.errors import ConfigError
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
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
    sync = os.environ.get("TITAN_SQLITE_SYNCHRONOUS", synchronous).upper()
    if sync not in ("OFF", "NORMAL", "FULL", "EXTRA"):
        raise ConfigError(f"TITAN_SQLITE_SYNCHRONOUS must be NORMAL or FULL, not {sync!r}")

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute(f"PRAGMA synchronous={sync}")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    return SQLStorage(url, engine, sqlite_insert, lambda: _flock(path))


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
        holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise ConfigError(
            f"another Titan master (pid {holder}) is already running on {db_path}; "
            "stop it first, or give this one another --data-dir"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)

    def release() -> None:
        os.close(fd)

    return release


def postgres_storage(url: str) -> SQLStorage:
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        # Domain code never names a driver; the URL may omit it. psycopg 3 is the one we ship.
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
    try:
        engine = create_engine(url, pool_size=10, max_overflow=10)
    except ModuleNotFoundError as exc:  # pragma: no cover - depends on the install
        raise ConfigError(
            f"PostgreSQL support needs psycopg: pip install 'titan[postgres]' ({exc})"
        ) from exc
    _ping_after_idle(engine)
    return SQLStorage(url, engine, pg_insert, lambda: _advisory_lock(engine))


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


# Session-level advisory lock naming "the scheduler of this database".
_SCHEDULER_LOCK = 0x7469746E  # "titn"


def _advisory_lock(engine: Any) -> Callable[[], None]:
    """Hold a PostgreSQL advisory lock on a dedicated connection; PostgreSQL releases it
    when that connection ends, so a master that dies frees it for the next one."""
    conn = engine.connect()
    got = conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": _SCHEDULER_LOCK}).scalar()
    conn.commit()
    if not got:
        conn.close()
        raise ConfigError(
            "another Titan master is already scheduling on this PostgreSQL database; "
            "one master per database for now (stop the other first)"
        )

    def release() -> None:
        # Unlocked explicitly: closing the connection frees the lock only once its server
        # process has ended, a moment after close() returns, and a master started right
        # after this one stopped could find it still held.
        try:
            conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _SCHEDULER_LOCK})
            conn.commit()
        except Exception:  # noqa: BLE001 - a broken connection frees the lock as it ends
            pass
        conn.close()

    return release
