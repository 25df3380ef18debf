"""The SQL implementation of the storage interface, shared by SQLite and PostgreSQL.

Both dialects speak the same SQLAlchemy Core; what differs (connection settings, the
``INSERT ... ON CONFLICT`` construct) lives in :mod:`titan.storage.dialects`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any, Protocol

from sqlalchemy import Connection, Engine, bindparam, delete, func, select
from sqlalchemy.exc import DataError

from titan.formats import file_name_forms
from titan.storage import compiled, deferred
from titan.storage import schema as t
from titan.storage.base import Row, Storage, Transaction, iter_chunks, read_safely
from titan.storage.id_blocks import Numbering
from titan.storage.leadership import Leadership
from titan.storage.schema_upgrade import migrate
from titan.storage.sql_actions import ActionsSQL
from titan.storage.sql_agent_runs import AgentRunsSQL
from titan.storage.sql_attempts import AttemptsSQL
from titan.storage.sql_blobs import BlobsSQL
from titan.storage.sql_dag_retention import DagRetentionSQL
from titan.storage.sql_evals import EvalsSQL
from titan.storage.sql_files import FilesSQL
from titan.storage.sql_jobs import JobsSQL
from titan.storage.sql_ledger import LedgerSQL
from titan.storage.sql_schedules import SchedulesSQL
from titan.storage.sql_store import CHUNK, StoreSQL
from titan.storage.sql_submissions import SubmissionsSQL

log = logging.getLogger("titan.storage")


def _past_a_limit(exc: BaseException) -> bool:
    """PostgreSQL's SQLSTATE class 54, program_limit_exceeded: an index row over its btree's
    ~2,700 bytes (a store key of 1,024 CJK characters, a long set member that does not
    compress). The request's fault, never transient — but psycopg raises it as an
    OperationalError, which the writer waited out as the database being away: for ever,
    with every later write queued behind it."""
    return str(getattr(getattr(exc, "orig", None), "sqlstate", None) or "").startswith("54")


def _driver_data_error(exc: BaseException) -> bool:
    """psycopg's DataError itself (a value bound on the client, before any SQL was sent: a NUL
    in text), which SQLAlchemy never saw to wrap; found by name so SQLite needs no psycopg."""
    return any(c.__name__ == "DataError" and c.__module__.startswith("psycopg")
               for c in type(exc).__mro__)


class SQLTransaction(AgentRunsSQL, SubmissionsSQL, JobsSQL, AttemptsSQL, DagRetentionSQL,
                     ActionsSQL, LedgerSQL, EvalsSQL, SchedulesSQL, StoreSQL, BlobsSQL, FilesSQL,
                     Transaction):
    def __init__(self, conn: Connection, insert: Any,
                 after: list[Callable[[Transaction], None]] | None = None,
                 numbering: Numbering | None = None) -> None:
        self.conn = conn
        self.insert = insert
        self.job_ids = numbering.job_ids if numbering is not None else None
        self.dag_ids = numbering.dag_ids if numbering is not None else None
        self.dag_runs = numbering.dag_runs if numbering is not None else None
        #: Reads to run once this transaction committed (None: run them now, inside it).
        self._after = after

    def after_commit(self, read: Callable[[Transaction], None]) -> None:
        if self._after is None:
            read_safely(read, self)
        else:
            self._after.append(read)

    def reads_due(self) -> None:
        if self._after:
            due = list(self._after)
            self._after.clear()
            for read in due:
                read_safely(read, self)

    # -- meta ---------------------------------------------------------------------------------
    def get_meta(self, key: str) -> str | None:
        return self.conn.execute(select(t.meta.c.value).where(t.meta.c.key == key)).scalar()

    def set_meta(self, key: str, value: str) -> None:
        stmt = self.insert(t.meta).values(key=key, value=value)
        self.conn.execute(stmt.on_conflict_do_update(index_elements=["key"], set_={"value": value}))

    # -- tokens -------------------------------------------------------------------------------
    def add_token(self, row: Row) -> None:
        self.conn.execute(t.tokens.insert().values(**row))

    def token_by_hash(self, token_hash: str) -> Row | None:
        row = self.conn.execute(select(t.tokens).where(t.tokens.c.token_hash == token_hash)).first()
        return dict(row._mapping) if row else None

    def token_by_id(self, token_id: str) -> Row | None:
        row = self.conn.execute(select(t.tokens).where(t.tokens.c.id == token_id)).first()
        return dict(row._mapping) if row is not None else None

    def list_tokens(self) -> list[Row]:
        rows = self.conn.execute(select(t.tokens).order_by(t.tokens.c.created_at))
        return [dict(r._mapping) for r in rows]

    def revoke_token(self, token_id: str, now: float) -> bool:
        result = self.conn.execute(
            t.tokens.update()
            .where(t.tokens.c.id == token_id, t.tokens.c.revoked_at.is_(None))
            .values(revoked_at=now)
        )
        return bool(result.rowcount)

    # -- idempotency keys ---------------------------------------------------------------------
    def idempotent_result(self, key: str, *, next_run_of: str | None = None
                          ) -> tuple[str, str] | None:
        if next_run_of is not None and self.dag_runs is not None \
                and not self.dag_runs.knows(next_run_of):
            # One statement (the transaction's first: it goes with BEGIN and the fence) for
            # the key and the name's last run; the DAG's insert then goes with the COMMIT.
            k = t.idempotency_keys.c
            both = compiled.execute(
                self.conn, "idempotent_result_and_run",
                lambda: select(
                    select(k.scope).where(k.key == bindparam("k")).scalar_subquery(),
                    select(k.result).where(k.key == bindparam("k")).scalar_subquery(),
                    select(func.coalesce(func.max(t.dags.c.run), 0))
                    .where(t.dags.c.name == bindparam("n")).scalar_subquery()),
                {"k": key, "n": next_run_of}).one()
            scope_, result_, last = tuple(both)
            self.dag_runs.note(next_run_of, int(last))
            return None if scope_ is None else (str(scope_), str(result_))
        row = compiled.execute(
            self.conn, "idempotent_result",
            lambda: select(t.idempotency_keys.c.scope, t.idempotency_keys.c.result)
            .where(t.idempotency_keys.c.key == bindparam("k")),
            {"k": key},
        ).first()
        if row is None:
            return None
        scope, result = tuple(row)
        return str(scope), str(result)

    def record_idempotent(self, key: str, scope: str, result: str, now: float) -> None:
        compiled.write(
            self.conn, "record_idempotent",
            lambda: t.idempotency_keys.insert().values(
                key=bindparam("k"), scope=bindparam("s"), result=bindparam("r"),
                created_at=bindparam("now")),
            {"k": key, "s": scope, "r": result, "now": now},
        )

    def prune_idempotency(self, before: float) -> int:
        return int(self.conn.execute(
            delete(t.idempotency_keys).where(t.idempotency_keys.c.created_at < before)
        ).rowcount or 0)

    # -- dashboard sessions -------------------------------------------------------------------
    def end_session(self, session_id: str, expires_at: float, now: float) -> None:
        ended = t.ended_sessions
        self.conn.execute(delete(ended).where(ended.c.expires_at < now))
        if not self.session_ended(session_id):
            self.conn.execute(ended.insert().values(id=session_id, expires_at=expires_at))

    def session_ended(self, session_id: str) -> bool:
        row = compiled.execute(
            self.conn, "session_ended",
            lambda: select(t.ended_sessions.c.id).where(t.ended_sessions.c.id == bindparam("i")),
            {"i": session_id},
        ).first()
        return row is not None

    # -- files ------------------------------------------------------------------------------
    def add_file(self, row: Row) -> int:
        return int(self.conn.execute(t.files.insert().values(**row).returning(t.files.c.id)).scalar_one())

    def latest_file(self, *, name: str | None = None, store_key: str | None = None,
                    sha256: str | None = None) -> Row | None:
        q = select(t.files)
        if name is not None:  # either form of a name: composed or not (formats.file_name)
            q = q.where(t.files.c.name.in_(file_name_forms(name)))
        if store_key is not None:
            q = q.where(t.files.c.store_key == store_key)
        if sha256 is not None:
            q = q.where(t.files.c.sha256 == sha256)
        row = self.conn.execute(q.order_by(t.files.c.id.desc()).limit(1)).first()
        return dict(row._mapping) if row else None

    def latest_files_by_key(self, keys: Sequence[str]) -> dict[str, Row]:
        f = t.files.c
        found: dict[str, Row] = {}
        for chunk in iter_chunks(sorted(set(keys)), CHUNK):
            # The newest id under each key along ix_files_key, then those rows.
            newest = (select(func.max(f.id)).where(f.store_key.in_(chunk))
                      .group_by(f.store_key).scalar_subquery())
            for row in self.conn.execute(select(t.files).where(f.id.in_(newest))):
                found[row.store_key] = dict(row._mapping)
        return found

    def list_files(self, *, dag_id: int | None = None, limit: int = 100,
                   before: int | None = None) -> list[Row]:
        q = select(t.files)
        if dag_id is not None:
            q = q.where(t.files.c.dag_id == dag_id)
        if before is not None:
            q = q.where(t.files.c.id < before)
        rows = self.conn.execute(q.order_by(t.files.c.id.desc()).limit(limit))
        return [dict(r._mapping) for r in rows]

    # -- workers ------------------------------------------------------------------------------
    def upsert_worker(self, row: Row) -> None:
        values = dict(row, capabilities=json.dumps(row["capabilities"]))
        stmt = self.insert(t.workers).values(**values)
        update = {k: v for k, v in values.items() if k not in ("id", "registered_at")}
        self.conn.execute(stmt.on_conflict_do_update(index_elements=["id"], set_=update))

    def update_worker(self, worker_id: str, fields: Row) -> None:
        self.conn.execute(t.workers.update().where(t.workers.c.id == worker_id).values(**fields))

    def list_workers(self) -> list[Row]:
        rows = self.conn.execute(select(t.workers).order_by(t.workers.c.registered_at.desc()))
        return [dict(r._mapping, capabilities=json.loads(r.capabilities)) for r in rows]

    def forget_workers(self, before: float) -> list[str]:
        c = t.workers.c
        gone = (c.state.in_(("stopped", "lost")), c.last_seen_at < before)
        ids = [r.id for r in self.conn.execute(select(c.id).where(*gone))]
        if ids:
            self.conn.execute(delete(t.workers).where(c.id.in_(ids), *gone))
        return ids


class Writes(Protocol):
    """Where a dialect's write transactions run, when not on a connection of the pool."""

    def begin(self) -> AbstractContextManager[Connection]:
        """A connection in a transaction, committed on leaving unless it raised."""

    def close(self) -> None:
        """Let go of what it holds (the storage closes)."""


class SQLStorage(Storage):
    """Storage over a SQLAlchemy engine; ``insert`` is the dialect's ON CONFLICT-capable insert."""

    def __init__(self, url: str, engine: Engine, insert: Any,
                 claim: Callable[[], Callable[[], None]],
                 leadership: Leadership | None = None,
                 unavailable: Callable[[BaseException], bool] = lambda exc: False,
                 reads: Callable[[Connection], AbstractContextManager[Connection]] | None = None,
                 writes: Writes | None = None,
                 ) -> None:
        self.url = url
        #: Where write transactions run (the dialect's; None: a connection of the pool, with
        #: writes deferred and fenced as :mod:`deferred` says).
        self._writes = writes
        #: How a read-only transaction uses its connection (the dialect's; None: as a write).
        self._reads = reads
        #: PostgreSQL: this master's claim among several (None on SQLite: one master per file).
        self.leadership = leadership
        self._unavailable = unavailable
        self.engine = engine
        self._insert = insert
        self._claim = claim
        self._release: Callable[[], None] | None = None
        #: PostgreSQL: job and DAG ids taken from their sequences ahead, and the run numbers
        #: of the names written (id_blocks.py), so that a submission's inserts need no
        #: answer and go with its commit.
        self._numbering = Numbering() if writes is None else None

    def migrate(self) -> int:
        return migrate(self.engine)

    def claim_scheduler(self) -> None:
        if self._release is None:
            self._release = self._claim()

    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        try:
            with self.engine.begin() as conn:
                yield SQLTransaction(conn, self._insert, None, self._numbering)
        except BaseException:
            self._failed()
            raise

    def _failed(self) -> None:
        """A write transaction failed: the run numbers it took may not be in the database."""
        if self._numbering is not None:
            self._numbering.dag_runs.forget()

    @contextmanager
    def read_transaction(self) -> Iterator[Transaction]:
        if self._reads is None:
            with self.transaction() as tx:
                yield tx
            return
        with self.engine.connect() as conn, self._reads(conn) as reading:
            yield SQLTransaction(reading, self._insert)

    @contextmanager
    def write_transaction(self, mark: int = 0) -> Iterator[Transaction]:
        if self._writes is not None:  # SQLite: nothing to defer, no fence, reads run inside
            with self._writes.begin() as conn:
                yield SQLTransaction(conn, self._insert)
            return
        after: list[Callable[[Transaction], None]] = []
        try:
            with self.engine.begin() as conn:
                deferred.begin(conn,
                               None if self.leadership is None else self.leadership.fence(mark))
                try:
                    yield SQLTransaction(conn, self._insert,
                                         after if deferred.active(conn) else None,
                                         self._numbering)
                    deferred.send(conn, commit=True)  # what is queued goes with the COMMIT
                finally:
                    deferred.end(conn)
        except BaseException:
            self._failed()
            raise
        if after:
            self._read_after(after)

    def _read_after(self, reads: list[Callable[[Transaction], None]]) -> None:
        """The reads a write transaction put off until it committed (``after_commit``). It
        did commit: nothing here may fail it (its writer would apply it again)."""
        try:
            with self.read_transaction() as tx:
                for read in reads:
                    read_safely(read, tx)
        except Exception as exc:  # noqa: BLE001 - the database away: the same
            log.warning("reads after a commit were dropped: %r", exc)

    def committed(self, mark: int) -> bool:
        return self.leadership is not None and self.leadership.committed(mark)

    def unavailable(self, exc: BaseException) -> bool:
        return self._unavailable(exc) and not _past_a_limit(exc) and self.cancelled(exc) is None

    def cancelled(self, exc: BaseException) -> str | None:
        # SQLSTATE 57014 query_canceled (statement_timeout, pg_cancel_backend) and 55P03
        # lock_not_available (lock_timeout): psycopg raises both as OperationalErrors, which
        # the writer waited out as the database being away — for ever, for a statement that
        # is too slow for the setting, with every later write queued behind it.
        orig = getattr(exc, "orig", None)
        if getattr(orig, "sqlstate", None) not in ("57014", "55P03"):
            return None
        said = str(orig).strip().splitlines()
        return said[0][:300] if said else "canceling statement"

    def corrupt(self, exc: BaseException) -> str | None:
        # SQLite's SQLITE_CORRUPT (11) and SQLITE_NOTADB (26), extended codes included;
        # PostgreSQL's SQLSTATE XX001 data_corrupted and XX002 index_corrupted.
        orig = getattr(exc, "orig", None) or exc
        code = getattr(orig, "sqlite_errorcode", None)
        if not ((isinstance(code, int) and code & 0xFF in (11, 26))
                or getattr(orig, "sqlstate", None) in ("XX001", "XX002")):
            return None
        said = str(orig).strip().splitlines()
        return said[0][:300] if said else type(orig).__name__

    def unstorable(self, exc: BaseException) -> str | None:
        # SQLSTATE class 22 (data exception): PostgreSQL refuses NUL in text and a string past
        # varchar(n), where SQLite stores both; API-level checks catch most, this the rest.
        # A write bound on the client (deferred.py) raises psycopg's own DataError, unwrapped.
        if not isinstance(exc, DataError) and not _past_a_limit(exc) \
                and not _driver_data_error(exc):
            return None
        said = str(getattr(exc, "orig", None) or exc).strip().splitlines()
        return said[0][:300] if said else "a value the database cannot store"

    def close(self) -> None:
        if self._release is not None:
            self._release()
            self._release = None
        if self.leadership is not None:  # led without a claim: a master that could wait
            self.leadership.release()
        if self._writes is not None:
            self._writes.close()
        self.engine.dispose()

