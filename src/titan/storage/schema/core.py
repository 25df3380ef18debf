"""The one MetaData, and the master's own tables: leadership, tokens, workers, sessions.

The migrations applied, meta settings, the leader row, API tokens, registered workers,
idempotency keys and signed-out dashboard sessions. Every other module of the package
adds its tables to this ``metadata``.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

metadata = MetaData()

schema_migrations = Table(
    "schema_migrations",
    metadata,
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("name", String(200), nullable=False),
    Column("applied_at", Float, nullable=False),
)

meta = Table(
    "meta",
    metadata,
    Column("key", String(200), primary_key=True),
    Column("value", Text, nullable=False),
)

# Which master leads this database (one row, id 1). The epoch grows by one at every change of
# leader; every write transaction of a leader on PostgreSQL first checks that the row still
# holds its epoch (storage/leadership.py), so a leader that was paused or cut off and has been
# replaced cannot commit anything after it wakes. Times are the database server's clock, so
# masters on hosts whose clocks disagree still agree on when a heartbeat went stale.
leader = Table(
    "leader",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("epoch", BigInteger, nullable=False),
    Column("node", String(100), nullable=False),
    Column("url", String(500), nullable=False),
    Column("since", Float, nullable=False),
    Column("heartbeat_at", Float, nullable=False),
    # A random number each write transaction of the leader sets with its epoch check: when the
    # connection breaks during COMMIT, reading it back says whether that commit happened.
    Column("commit_mark", BigInteger, nullable=False, server_default="0"),
)

tokens = Table(
    "tokens",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("role", String(20), nullable=False),
    Column("name", String(200), nullable=False, default=""),
    Column("created_at", Float, nullable=False),
    # Who made it (audit.who: role, token name and id, token or session); None: the
    # master's own (admin.token, worker.token) or made before this was kept.
    Column("created_by", String(300)),
    Column("revoked_at", Float),
)

# Writes a client may retry after losing the reply (issue 15 item 7): the key it sent, the
# request it named, and the result, recorded in the same commit as the write itself, so a
# repeat answers from here instead of applying twice. Pruned after a TTL (see idempotency.py).
idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("key", String(100), primary_key=True),
    Column("scope", String(1200), nullable=False),
    Column("result", Text, nullable=False),
    Column("created_at", Float, nullable=False, index=True),
)

# Dashboard sessions ended by signing out (issue 15 item 8): the cookie is an HMAC and would
# otherwise stay valid until it expires. Rows go once the cookie would have expired anyway.
ended_sessions = Table(
    "ended_sessions",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("expires_at", Float, nullable=False, index=True),
)

workers = Table(
    "workers",
    metadata,
    Column("id", String(80), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("hostname", String(255), nullable=False),
    Column("capabilities", Text, nullable=False),  # JSON list
    Column("slots", Integer, nullable=False),
    Column("state", String(20), nullable=False),
    Column("registered_at", Float, nullable=False),
    Column("last_seen_at", Float, nullable=False),
    # The Titan version it said at its last registration (NULL: it said none one could show,
    # or registered before migration 28): what the Cluster page shows after a restart.
    Column("version", String(64)),
)
