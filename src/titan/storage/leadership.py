"""Which master leads a PostgreSQL database, and proof of it on every write.

On SQLite one master owns the file (a lock on ``<db>.lock``): there is nothing to elect. On
PostgreSQL several masters may share one database: one leads, the others wait as hot standbys.

**Leading** is two things held together:

- a session advisory lock on a dedicated connection. PostgreSQL frees it the moment that
  connection ends, so a leader killed with ``kill -9`` (the kernel resets its sockets) frees it
  at once and a standby polling the lock takes over within one poll;
- the current *epoch* in the ``leader`` row, raised by one at every change of leader, with a
  heartbeat the leader refreshes through its writer.

A leader that is paused (SIGSTOP, a long GC, a VM frozen) or cut off from the database keeps
its lock, because the server notices a silent client only after TCP keepalive gives up (hours
by default). So a standby also reads the heartbeat: once it is older than the leader timeout
(by the *database's* clock, so skewed hosts agree), the standby terminates the old leader's
server processes — every connection of a master is tagged ``titan-master-<node>@<schema>``
in ``application_name`` — which frees the lock. The lock's key and those names carry the
schema, so clusters in different schemas of one database are independent
(:mod:`.cluster_scope`).

**Fencing.** Every write transaction of a leader starts with
``UPDATE leader SET commit_mark = <random> WHERE id = 1 AND epoch = <mine>`` (sent with its
BEGIN, its writes and its COMMIT in one query, as a statement that fails where it updated
nothing: :mod:`titan.storage.deferred`), and promotion
updates that row too. The row lock orders the two: an old leader's transaction that checked first commits
before the promotion does (so it is in the database before the new leader recovers from it);
one that checks after sees the new epoch and fails with :class:`~titan.errors.NotLeader`.
A paused leader holding the row lock in an open transaction would stall promotion, so
promotion waits at most ``lock_timeout``, terminates the old node's processes and tries again.
Reads are not fenced: a paused leader that wakes may answer a read or two before its next
heartbeat finds it replaced (at most one heartbeat interval).
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError, OperationalError

from titan.errors import ConfigError, NotLeader
from titan.storage.cluster_scope import APP_PREFIX, app_name, lock_key

log = logging.getLogger("titan.master")

# Session-level advisory lock naming "the scheduler of this database" (of its public
# schema; another schema's is derived from it: cluster_scope.lock_key).
SCHEDULER_LOCK = 0x7469746E  # "titn"
_NOW = "EXTRACT(EPOCH FROM clock_timestamp())"


def new_node() -> str:
    """A name for this master process, unique enough to tell masters apart in pg_stat_activity."""
    return secrets.token_hex(6)


@dataclass(frozen=True)
class LeaderInfo:
    """The ``leader`` row as a standby sees it."""

    epoch: int
    node: str
    url: str
    since: float
    #: Seconds since the leader's last heartbeat, by the database's clock.
    silent_for: float


class Leadership:
    """This master's claim on one PostgreSQL database.

    Blocking methods talk to the database: call them off the event loop.
    """

    def __init__(self, engine: Engine, node: str, *, url: str = "",
                 timeout: float = 5.0, schema: str = "public") -> None:
        self.engine = engine
        self.node = node
        #: The schema of this master's tables: its cluster's lock and connection names.
        self.schema = schema
        self._lock_key = lock_key(SCHEDULER_LOCK, schema)
        #: The URL other masters and clients are told to use while this master leads.
        self.url = url
        #: A leader silent this long (heartbeat age) is taken for dead.
        self.timeout = timeout
        #: The epoch this master leads in; None while it does not lead.
        self.epoch: int | None = None
        #: Once this master has led, its writes are fenced for good (a replaced leader must
        #: not write); tools that open the database without leading are not.
        self.has_led = False
        self._lock_conn: Connection | None = None
        self._mutex = threading.Lock()
        #: Called (from whichever thread found out) once a write finds this master replaced.
        self.on_lost: Callable[[NotLeader], None] | None = None
        #: Since when (monotonic) this leader could not confirm its lock because the database
        #: was unreachable (0 while confirmed), and why: ``GET /health`` answers 503 meanwhile,
        #: as a standby may be taking over.
        self.unconfirmed_since = 0.0
        self.unconfirmed_reason = ""

    # -- standby side ---------------------------------------------------------------------------
    def try_lead(self) -> bool:
        """One attempt to become the leader; True when this master now leads.

        Takes the advisory lock if it is free; if a leader holds it but its heartbeat is stale,
        ends that leader's connections (the lock is free on the next attempt)."""
        with self._mutex:
            if self.epoch is not None:
                return True
            try:
                return self._try_lead()
            except DBAPIError as exc:  # the database away: a standby waits it out
                log.warning("standby: cannot reach the database (%s); trying again",
                            str(exc).splitlines()[0])
                self._drop_lock()
                return False

    def _try_lead(self) -> bool:
        conn = self._lock_connection()
        if not conn.execute(text("SELECT pg_try_advisory_lock(:k)"),
                            {"k": self._lock_key}).scalar():
            conn.commit()
            current = self.leader()
            if current is not None and current.silent_for > self.timeout:
                log.warning("the leader %s (epoch %d, %s) has been silent for %.1fs: "
                            "taking over", current.node, current.epoch, current.url,
                            current.silent_for)
                self._terminate(current.node)
            return False
        conn.commit()
        try:
            self.epoch = self._promote()
        except BaseException:
            self._drop_lock()
            raise
        self.has_led = True
        return True

    def leader(self) -> LeaderInfo | None:
        """The leader on record (None before any master led this database)."""
        with self.engine.connect() as conn:
            row = conn.execute(text(
                f"SELECT epoch, node, url, since, {_NOW} - heartbeat_at FROM leader "
                "WHERE id = 1")).first()
        if row is None:
            return None
        return LeaderInfo(int(row[0]), str(row[1]), str(row[2]), float(row[3]), float(row[4]))

    def _promote(self) -> int:
        """Raise the epoch and name this master in the row; fence out the previous leader."""
        for _ in range(10):
            try:
                with self.engine.begin() as conn:
                    conn.execute(text("SET LOCAL lock_timeout = '2s'"))
                    old = conn.execute(text(
                        "SELECT epoch, node FROM leader WHERE id = 1 FOR UPDATE")).first()
                    epoch = int(old[0]) + 1 if old is not None else 1
                    params = {"e": epoch, "n": self.node, "u": self.url}
                    if old is None:
                        conn.execute(text(
                            f"INSERT INTO leader (id, epoch, node, url, since, heartbeat_at) "
                            f"VALUES (1, :e, :n, :u, {_NOW}, {_NOW})"), params)
                    else:
                        conn.execute(text(
                            f"UPDATE leader SET epoch = :e, node = :n, url = :u, "
                            f"since = {_NOW}, heartbeat_at = {_NOW} WHERE id = 1"), params)
            except OperationalError as exc:
                if "lock timeout" not in str(exc) and "lock_timeout" not in str(exc):
                    raise
                # A paused old leader holds the row in an open transaction: end it.
                current = self.leader()
                if current is not None and current.node != self.node:
                    self._terminate(current.node)
                continue
            if old is not None and str(old[1]) != self.node:
                # Its readers too: nothing of the old leader talks to the database any more.
                self._terminate(str(old[1]))
            log.info("leading this database as epoch %d (node %s)", epoch, self.node)
            return epoch
        raise ConfigError("could not take the leadership: the leader row stayed locked")

    def _terminate(self, node: str) -> None:
        with self.engine.connect() as conn:
            killed = conn.execute(text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND application_name IN (:app, :old) "
                "AND pid <> pg_backend_pid()"),
                # :old, a Titan from before schemas counted: the node is random either way.
                {"app": app_name(node, self.schema), "old": APP_PREFIX + node}).scalar()
            conn.commit()
        log.info("ended %s connection(s) of master %s", killed, node)

    # -- leader side ----------------------------------------------------------------------------
    def fence(self, mark: int) -> WriteFence | None:
        """What starts every write transaction of a leader: still the leader, or NotLeader
        (:mod:`titan.storage.deferred` sends it ahead of everything else). It also leaves
        ``mark`` in the row, so a commit whose answer was lost can be looked up. None for a
        tool that opened the database without leading."""
        if not self.has_led:
            return None
        epoch = self.epoch
        if epoch is None:
            raise NotLeader("this master no longer leads its database")
        return WriteFence(self, epoch, int(mark))

    def committed(self, mark: int) -> bool:
        """Whether the write transaction that set ``mark`` committed (its COMMIT's answer was
        lost with the connection)."""
        if not self.has_led:
            return False
        with self.engine.connect() as conn:
            found = conn.execute(text("SELECT commit_mark FROM leader WHERE id = 1")).scalar()
        return bool(found == mark)

    def heartbeat(self, conn: Connection) -> None:
        """Refresh the heartbeat (inside a fenced write transaction)."""
        conn.execute(text(f"UPDATE leader SET heartbeat_at = {_NOW} "
                          "WHERE id = 1 AND epoch = :e"), {"e": self.epoch})

    def holds_lock(self) -> bool:
        """Whether the advisory lock is still this master's (its connection may have been ended
        by a server restart: then it is taken again if nobody else took it)."""
        with self._mutex:
            if self.epoch is None:
                return False
            conn = self._lock_conn
            try:
                if conn is not None:
                    conn.execute(text("SELECT 1")).scalar()
                    conn.commit()
                    self.unconfirmed_since = 0.0
                    return True
            except DBAPIError:
                self._drop_lock()
            try:
                conn = self._lock_connection()
                got = bool(conn.execute(text("SELECT pg_try_advisory_lock(:k)"),
                                        {"k": self._lock_key}).scalar())
                conn.commit()
            except DBAPIError as exc:
                # The database away (a restart): nothing can be written meanwhile, and once it
                # is back either the lock is taken again here or a standby took over, and then
                # the epoch check refuses this master's next write.
                # Not confirmed either: GET /health says so until it is (master/api/admin.py).
                said = str(exc).splitlines()[0]
                if not self.unconfirmed_since:  # once an outage: it is tried every heartbeat
                    log.warning("leader: cannot reach the database (%s)", said)
                self._drop_lock()
                self.unconfirmed_since = self.unconfirmed_since or time.monotonic()
                self.unconfirmed_reason = said[:300]
                return True
            if not got:
                self._drop_lock()
            else:
                self.unconfirmed_since = 0.0
            return got

    def lost(self) -> NoReturn:
        """This master was found replaced: it leads no more, and says who does."""
        try:
            current = self.leader()
        except DBAPIError:  # the database went away meanwhile: the epoch check was enough
            current = None
        where = (f"the leader at {current.url or '?'} (epoch {current.epoch})"
                 if current is not None else "another master")
        err = NotLeader(f"this master (epoch {self.epoch}) was replaced by {where}",
                        details={"leader": current.url if current else None,
                                 "epoch": current.epoch if current else None})
        self.epoch = None
        hook = self.on_lost
        if hook is not None:
            hook(err)
        raise err

    # -- both -----------------------------------------------------------------------------------
    def _lock_connection(self) -> Connection:
        if self._lock_conn is None:
            self._lock_conn = self.engine.connect()
        return self._lock_conn

    def _drop_lock(self) -> None:
        conn, self._lock_conn = self._lock_conn, None
        if conn is None:
            return
        try:
            # Unlocked explicitly: closing frees the lock only once the server process has
            # ended, a moment after close() returns, and a master started right after could
            # find it still held.
            conn.execute(text("SELECT pg_advisory_unlock_all()"))
            conn.commit()
        except Exception:  # noqa: BLE001 - a broken connection frees the lock as it ends
            pass
        try:
            conn.close()
        except Exception:  # noqa: BLE001
            pass

    def release(self) -> None:
        """Give the leadership up (on shutdown): a standby takes over at its next poll."""
        with self._mutex:
            self.epoch = None
            self._drop_lock()

    def claim_or_refuse(self) -> None:
        """One attempt; ConfigError naming the leader when another master leads."""
        if self.try_lead():
            return
        current = self.leader()
        where = f" (the leader is {current.url}, epoch {current.epoch})" if current else ""
        raise ConfigError(
            "another Titan master is already scheduling on this PostgreSQL database"
            f"{where}; stop it first, or start this one as a standby (`titan master` on "
            "PostgreSQL waits as a standby unless --no-standby)"
        )


@dataclass(frozen=True)
class WriteFence:
    """One write transaction's proof of leadership (:class:`titan.storage.deferred.Fence`).

    An UPDATE of the leader row, not a SELECT ... FOR SHARE: the same row lock against a
    promotion, and the commit mark in the same statement."""

    leadership: Leadership
    epoch: int
    mark: int

    @property
    def statement(self) -> str:
        # Sent in one query with the transaction's writes and COMMIT, it must fail where it
        # updates nothing, or the rest would run: the CAST of a text that is no number fails
        # (on the count of updated rows, so the planner cannot fold it into a constant).
        # Only Titan's two integers go in the text.
        return (f"WITH fence AS (UPDATE leader SET commit_mark = {self.mark:d} WHERE id = 1 "
                f"AND epoch = {self.epoch:d} RETURNING 1) SELECT CASE count(*) WHEN 1 THEN 1 "
                "ELSE CAST('titan: this master no longer leads, rows ' || count(*) AS integer) "
                "END FROM fence")

    def alone(self, cursor: Any) -> None:
        cursor.execute(f"UPDATE leader SET commit_mark = {self.mark:d} WHERE id = 1 "
                       f"AND epoch = {self.epoch:d}", prepare=False)
        if not cursor.rowcount:
            self.leadership.lost()


def describe(info: LeaderInfo | None) -> dict[str, Any]:
    """The leader on record, for a standby's answers."""
    if info is None:
        return {"leader": None, "epoch": None}
    return {"leader": info.url or None, "epoch": info.epoch}
