"""The two backends: what differs between SQLite and PostgreSQL, and nothing else."""

from __future__ import annotations

import os
from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

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

    return SQLStorage(url, engine, sqlite_insert)


def postgres_storage(url: str) -> SQLStorage:
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        # Domain code never names a driver; the URL may omit it. psycopg 3 is the one we ship.
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
    try:
        engine = create_engine(url, pool_size=10, max_overflow=10, pool_pre_ping=True)
    except ModuleNotFoundError as exc:  # pragma: no cover - depends on the install
        raise ConfigError(
            f"PostgreSQL support needs psycopg: pip install 'titan[postgres]' ({exc})"
        ) from exc
    return SQLStorage(url, engine, pg_insert)
