"""Shared fixtures: fresh data dirs, free ports, a fresh PostgreSQL database per run."""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
from collections.abc import Iterator
from typing import Any

import pytest

PG_ADMIN_URL = os.environ.get(
    "TITAN_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(autouse=True)
def _isolated_user_config(tmp_path_factory: pytest.TempPathFactory,
                          monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Never read or write the developer's ~/.titan, nor inherit a TITAN_* setting."""
    for key in list(os.environ):
        if key.startswith("TITAN_") and key != "TITAN_TEST_POSTGRES_URL":
            monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("TITAN_CONFIG_DIR", str(tmp_path_factory.mktemp("user-config")))
    yield
    # A test that submitted a stage of an agent run made this process the run's driver, and
    # one that recorded in-process left actions for its master; that master is gone by the
    # time pytest exits, so there is nothing to report to then.
    from titan.trace.recorder import RECORDER

    RECORDER.driven.clear()
    RECORDER.queue.clear()


@contextlib.contextmanager
def fresh_postgres_database(prefix: str = "titan_test",
                            template: str | None = None) -> Iterator[str]:
    """Create a database of its own on the test server (a copy of ``template`` when given);
    drop it afterwards.

    Skips when no server answers, except in CI (CI=true), where PostgreSQL is mandatory."""
    import sqlalchemy as sa

    try:
        admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except Exception as exc:
        message = (f"PostgreSQL not reachable at {PG_ADMIN_URL} ({type(exc).__name__}); "
                   "start one or set TITAN_TEST_POSTGRES_URL to run the PostgreSQL tests")
        if IN_CI:
            pytest.fail(message + " — mandatory in CI")
        pytest.skip(message)
    name = f"{prefix}_{os.getpid()}_{secrets.token_hex(4)}"
    with admin.connect() as conn:
        copy = f' TEMPLATE "{template}"' if template else ""
        conn.execute(sa.text(f'CREATE DATABASE "{name}"{copy}'))
    try:
        yield f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def postgres_template() -> Iterator[str]:
    """The name of a PostgreSQL database holding the latest schema, migrated once per run:
    each module's database is copied from it instead of migrated again."""
    from titan.storage import open_storage

    with fresh_postgres_database("titan_template") as url:
        open_storage(url).close()  # closed: a template may have no open connection
        yield url.rsplit("/", 1)[1]


@pytest.fixture(scope="module")
def postgres_url(postgres_template: str) -> Iterator[str]:
    """A PostgreSQL database of this test module's own, with the latest schema (its tests
    start from empty tables: the storage contract's fixture empties every one)."""
    with fresh_postgres_database("titan_test", template=postgres_template) as url:
        yield url


@pytest.fixture
def calls() -> Iterator[list[Any]]:
    """Every ``titan.llm.LLMCall`` recorded while the test runs."""
    from titan import llm

    seen: list[Any] = []
    remove = llm.add_listener(seen.append)
    yield seen
    remove()


@pytest.fixture
def prices(monkeypatch: pytest.MonkeyPatch) -> None:
    """A fresh LLM price registry for the test (the module's is process-wide)."""
    from titan.llm import pricing

    monkeypatch.setattr(pricing, "_registered", {})
    monkeypatch.setattr(pricing, "_env_loaded", None)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Modules holding a test marked ``slow`` run first, in their collection order.

    `make test` spreads modules over two processes (pytest-xdist, ``--dist loadscope``: a
    module's tests, and the cluster they share, stay in one process) in the order they are
    collected (``--no-loadscope-reorder``: xdist would put the modules with most tests first);
    a long module picked last would leave one process working alone at the end.
    """
    slow_modules = {getattr(item, "module", None) for item in items
                    if item.get_closest_marker("slow")}
    items.sort(key=lambda item: getattr(item, "module", None) not in slow_modules)


@pytest.fixture(autouse=True)
def _no_run_driven_from_before() -> Iterator[None]:
    """A test that submits a stage with an ``agent_run_id`` from this process makes it that
    run's driver (its calls are the run's from then on, as in a user's script): every test
    starts, and leaves, a process that drives nothing."""
    from titan.trace import context, runs

    context._driven = None
    runs._driving.clear()
    yield
    context._driven = None
    runs._driving.clear()
