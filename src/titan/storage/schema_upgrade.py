"""Bringing a database to this Titan's schema: a new one created and stamped with every
version, an older one upgraded migration by migration (:mod:`titan.storage.migrations`) with
no other master connected to it; a newer one, or another application's, refused untouched.
"""

from __future__ import annotations

import logging
import time

from sqlalchemy import Connection, Engine, inspect, select, text

from titan.errors import ConfigError
from titan.storage import schema as t
from titan.storage.cluster_scope import current_schema, lock_key, same_cluster
from titan.storage.migrations import LATEST, MIGRATIONS

log = logging.getLogger("titan.storage")

# Several masters may share one PostgreSQL database (schema) and start together.
_PG_LOCK_KEY = 0x7174616E  # "titan", in the public schema (cluster_scope.lock_key)


def migrate(engine: Engine) -> int:
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"),
                         {"k": lock_key(_PG_LOCK_KEY, current_schema(conn))})
        if not inspect(conn).has_table("schema_migrations"):
            _no_foreign_tables(conn)
            t.metadata.create_all(conn)
            now = time.time()
            conn.execute(
                t.schema_migrations.insert(),
                [{"version": v, "name": name, "applied_at": now} for v, name, _ in MIGRATIONS],
            )
            return LATEST
        applied = {r[0] for r in conn.execute(select(t.schema_migrations.c.version))}
        newer = applied - {v for v, _, _ in MIGRATIONS}
        if newer:
            # A newer Titan migrated this database (a rollback after an upgrade): this one
            # would write rows without what the newer one records and checks (a run's
            # ledger would then read as tampered with), so it does not start on it.
            raise ConfigError(
                f"this database has schema version {max(newer)}, newer than this Titan knows "
                f"({LATEST}): a newer Titan upgraded it. Run that version (pip install -U "
                "titan-agents) or restore the backup taken before the upgrade")
        pending = [(v, name, step) for v, name, step in MIGRATIONS if v not in applied]
        if pending and conn.dialect.name == "postgresql":
            _alone(conn, max(applied, default=0))
        if pending:
            log.warning("upgrading the database schema from version %d to %d: %s",
                        max(applied, default=0), LATEST,
                        "; ".join(name for _, name, _ in pending))
        for version, name, step in pending:
            step(conn)
            conn.execute(
                t.schema_migrations.insert().values(
                    version=version, name=name, applied_at=time.time()
                )
            )
        return max(applied | {LATEST})


def _no_foreign_tables(conn: Connection) -> None:
    """Refuse a database that already holds tables under Titan's names but was never Titan's
    (no ``schema_migrations``): ``create_all`` would skip those and create the rest beside them,
    foreign keys to an application's own ``jobs`` included, then fail on the first column that
    is not there, leaving the database altered and every later start failing. A table with
    exactly the columns of Titan's is Titan's own, from a first start cut short (SQLite makes
    tables outside the transaction): the rest are created as usual."""
    found = inspect(conn)
    # has_table, as create_all asks: a table anywhere on the search path counts.
    clashes = [table.name for table in t.metadata.sorted_tables if found.has_table(table.name)
               and {c["name"] for c in found.get_columns(table.name)}
               != {c.name for c in table.columns}]
    if not clashes:
        return
    where = ("a database file of its own (another --data-dir or sqlite:/// path)"
             if conn.dialect.name == "sqlite" else
             "a database of its own (createdb titan), or a schema of its own "
             "(?options=-csearch_path%3Dtitan in the URL, after CREATE SCHEMA titan)")
    raise ConfigError(
        f"this database already holds tables Titan would create ({', '.join(sorted(clashes))}) "
        f"and Titan never set it up (no schema_migrations table): it is another "
        f"application's, and Titan changes nothing in it. Give Titan {where}")


def _alone(conn: Connection, version: int) -> None:
    """Refuse to change the schema under other masters of this database: a leader of an
    older Titan would go on writing rows the new schema reads differently (and a standby of
    one would take over with them). Its connections carry ``titan-master-<node>@<schema>``
    as their ``application_name`` (storage/cluster_scope.py); this master's own have its own
    node's. Masters of another schema's cluster are not this schema's concern."""
    schema = current_schema(conn)
    others = sorted(str(name) for (name,) in conn.execute(text(
        "SELECT application_name FROM pg_stat_activity "
        "WHERE datname = current_database() AND application_name LIKE 'titan-master-%' "
        "AND application_name <> current_setting('application_name')"))
        if same_cluster(str(name), schema))
    if others:
        raise ConfigError(
            f"this Titan would upgrade the database schema from version {version} to {LATEST}, "
            f"but other Titan masters are connected to it ({len(others)} connections, e.g. "
            f"{others[0]}): stop every master of this database (leader and standbys), then "
            "start the upgraded ones")
