"""Two Titan clusters in two schemas of one PostgreSQL database are independent.

Each cluster's tables live in its own schema (``?options=-csearch_path%3Ds1``); the leader
lock, the migration lock and the names of the masters' connections were database-wide, so
the second cluster's master waited for good as a "standby" of the first, and the first's
upgrade waited for the second's masters to stop.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from tests.conftest import fresh_postgres_database
from tests.contract.test_migrations import at_version
from titan.errors import ConfigError
from titan.storage import Storage, open_storage
from titan.storage.cluster_scope import lock_key
from titan.storage.migrations import LATEST
from titan.storage.schema_upgrade import _PG_LOCK_KEY


@pytest.fixture
def schemas() -> Iterator[tuple[str, str]]:
    with fresh_postgres_database("titan_schemas") as url:
        engine = sa.create_engine(url)
        with engine.begin() as conn:
            conn.execute(sa.text("CREATE SCHEMA s1"))
            conn.execute(sa.text("CREATE SCHEMA s2"))
        engine.dispose()
        yield (f"{url}?options=-csearch_path%3Ds1", f"{url}?options=-csearch_path%3Ds2")


def opened(url: str) -> Storage:
    """open_storage, in a thread: on a lock the other schema holds it would wait for good."""
    got: list[Storage | BaseException] = []

    def run() -> None:
        try:
            got.append(open_storage(url))
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            got.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(20)
    assert got, f"opening {url} waited on another schema's lock"
    if isinstance(got[0], BaseException):
        raise got[0]
    return got[0]


def test_each_schema_has_its_own_leader(schemas: tuple[str, str]) -> None:
    s1, s2 = (opened(url) for url in schemas)
    try:
        s1.claim_scheduler()
        s2.claim_scheduler()  # was: "another Titan master is already scheduling"
        assert s1.leadership is not None and s2.leadership is not None
        assert (s1.leadership.epoch, s2.leadership.epoch) == (1, 1)
        with s1.engine.connect() as conn:
            assert conn.execute(sa.text("SELECT current_setting('application_name')")
                                ).scalar() == f"titan-master-{s1.leadership.node}@s1"
        # Within a schema, still one leader.
        again = opened(schemas[0])
        try:
            with pytest.raises(ConfigError, match="already scheduling"):
                again.claim_scheduler()
        finally:
            again.close()
        # A standby of s2 ending a silent leader's connections ends only its own cluster's.
        s2.leadership._terminate(s1.leadership.node)
        with s1.transaction() as tx:
            assert tx.get_meta("nothing") is None
        assert s1.leadership.holds_lock()
    finally:
        s1.close()
        s2.close()


def test_one_schemas_migration_neither_waits_for_nor_stops_another(
        schemas: tuple[str, str]) -> None:
    s1 = opened(schemas[0])
    try:
        s1.claim_scheduler()
        at_version(schemas[1], LATEST - 1)
        # s1's masters are connected: s2 upgrades all the same (its own masters are none).
        opened(schemas[1]).close()
        engine = sa.create_engine(schemas[0])
        with engine.begin() as conn:  # a migration of s1 under way
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"),
                         {"k": lock_key(_PG_LOCK_KEY, "s1")})
            opened(schemas[1]).close()
        engine.dispose()
    finally:
        s1.close()
