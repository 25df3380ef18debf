"""Every schema version upgrades to the shape a fresh database gets.

A fresh database is built in one step from ``schema/``; an existing one runs the migrations
newer than its stamp. The two paths must end in the same tables, columns (type, nullability,
default) and indexes, on SQLite and PostgreSQL, from every version Titan ever released: this
builds a database as each version left it, opens it (which migrates it), and compares it with a
fresh one. A migration that forgets a column, an index or a table fails here.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from tests.conftest import fresh_postgres_database
from titan.errors import ConfigError
from titan.storage import open_storage
from titan.storage import schema as t
from titan.storage.migrations import LATEST, MIGRATIONS

#: What each migration adds, so that a database can be built as the version before it left
#: it: columns by table, whole tables, and indexes by name. Kept next to the migrations'
#: history, not derived from them: it is the independent record the test checks them against.
ADDED: dict[int, dict[str, Any]] = {
    2: {"columns": {"jobs": ("approval_deadline", "decided_by", "decided_at",
                             "decision_comment")}},
    3: {"columns": {"agent_runs": ("agent_id", "agent_version", "status", "started_at",
                                   "ended_at", "error", "tags", "code_version", "replay_of",
                                   "budget_usd", "over_budget_at", "blocked", "cost_usd",
                                   "action_count", "success_count", "error_count",
                                   "blocked_count", "replayed_count", "last_action_at")},
        "tables": ("agents", "actions"),
        "indexes": ("ix_agent_runs_started", "ix_agent_runs_agent")},
    4: {"columns": {"agent_runs": ("replay", "code"), "actions": ("replay_status",)},
        "indexes": ("ix_agent_runs_replay_of",)},
    5: {"tables": ("evaluations", "eval_tasks", "eval_runs", "eval_calls")},
    6: {"tables": ("idempotency_keys",)},
    7: {"tables": ("ended_sessions",)},
    8: {"columns": {"evaluations": ("project",)}, "indexes": ("ix_evaluations_project",)},
    9: {"columns": {"agent_runs": ("started_by", "retention_class", "pii", "archived_at"),
                    "actions": ("pii",)},
        "indexes": ("ix_agent_runs_archived",)},
    10: {"columns": {"eval_runs": ("criteria",)}},
    11: {"tables": ("leader",)},
    12: {"tables": ("blob_chunks",)},
    13: {"types": {("blobs", "size"): sa.Integer, ("files", "size"): sa.Integer}},
    14: {"columns": {"agent_runs": ("chain_head", "chain_start"),
                     "actions": ("chain_hash",)},
         "indexes": ("ix_actions_started",)},
    15: {"columns": {"dags": ("schedule",)}, "tables": ("schedules", "schedule_fires")},
    16: {"columns": {"jobs": ("service", "service_status")}},
    17: {"columns": {"agent_runs": ("alive_at",)}, "indexes": ("ix_agent_runs_alive",)},
    18: {"columns": {"agent_runs": ("unarchived_at",)}},
    19: {"columns": {"agent_runs": ("unpriced_calls",)}},
    20: {"columns": {"log_lines": ("continues",)}},
    21: {"columns": {"blobs": ("used_at",)}},
    22: {},  # data only: a simulated call's source becomes "odyssey"
    23: {"columns": {"jobs": ("decisions",)}},
    24: {"columns": {"tokens": ("created_by",)}},
    25: {"types": {("actions", column): sa.Integer for column in (
        "input_tokens", "output_tokens", "cached_tokens", "reasoning_tokens")}},
    26: {"columns": {"eval_runs": ("simulator_unpriced_calls", "judge_unpriced_calls")}},
    27: {"columns": {"schedules": ("agent_run_id",)}},
    28: {"columns": {"files": ("created_by",), "workers": ("version",)}},
}

#: Differences that are the migration's intent, each with its reason.
INTENDED = {
    # Runs recorded before telemetry existed had ended: migration 3 gives them 'completed'.
    # Titan always writes a run's status, so the column default is never what a new run gets.
    ("agent_runs", "status", "default"),
}


#: Differences on SQLite only: its INTEGER already holds 64 bits, so migrations 13 and 25
#: widen PostgreSQL's sizes and token counts and leave SQLite's columns as they were declared.
SQLITE_KEEPS = {("blobs", "size", "type"), ("files", "size", "type")} | {
    ("actions", column, "type") for column in (
        "input_tokens", "output_tokens", "cached_tokens", "reasoning_tokens")}


def schema_at(version: int) -> sa.MetaData:
    """The tables as ``version`` had them: today's, less what later migrations added."""
    later = [ADDED[v] for v in ADDED if v > version]
    dropped_tables = {name for step in later for name in step.get("tables", ())}
    dropped_columns = {(table, col) for step in later
                       for table, cols in step.get("columns", {}).items() for col in cols}
    dropped_indexes = {name for step in later for name in step.get("indexes", ())}
    # The earliest later migration that changed a column's type says what it was before.
    old_types = {key: kind for step in reversed(later)
                 for key, kind in step.get("types", {}).items()}
    md = sa.MetaData()
    for table in t.metadata.sorted_tables:
        if table.name in dropped_tables:
            continue
        columns = [c._copy() for c in table.columns
                   if (table.name, c.name) not in dropped_columns]
        kept = {c.name for c in columns}
        for c in columns:
            if (table.name, c.name) in old_types:
                c.type = old_types[(table.name, c.name)]()
            c.index = None  # rebuilt below from table.indexes, which lists these too
        # Indexes and unique constraints go with the columns they name.
        extras: list[Any] = [
            sa.Index(i.name, *[c.name for c in i.columns], unique=bool(i.unique))
            for i in table.indexes
            if i.name not in dropped_indexes and {c.name for c in i.columns} <= kept]
        extras += [sa.UniqueConstraint(*[c.name for c in u.columns], name=u.name)
                   for u in table.constraints if isinstance(u, sa.UniqueConstraint)
                   and {c.name for c in u.columns} <= kept]
        sa.Table(table.name, md, *columns, *extras)
    return md


def describe(url: str) -> dict[str, Any]:
    """Tables, columns (type, nullability, default) and indexes, comparable across paths."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            insp = sa.inspect(conn)
            out: dict[str, Any] = {}
            for table in sorted(insp.get_table_names()):
                columns = {}
                for c in insp.get_columns(table):
                    default = c.get("default")
                    columns[c["name"]] = {
                        "type": str(c["type"]).upper(), "nullable": c["nullable"],
                        "default": _default(default),
                    }
                indexes = {i["name"]: (tuple(i["column_names"]), bool(i["unique"]))
                           for i in insp.get_indexes(table)}
                out[table] = {"columns": columns, "indexes": indexes}
            return out
    finally:
        engine.dispose()


def _default(raw: Any) -> str | None:
    """A column default as written by either path and dialect, in one spelling: FALSE and 0
    are one boolean default; PostgreSQL's casts (``'x'::character varying``) are dropped."""
    if raw is None:
        return None
    text = str(raw).split("::", 1)[0].strip("'() ").lower()
    text = {"false": "0", "true": "1"}.get(text, text)
    try:
        return repr(float(text))
    except ValueError:
        return text


@pytest.fixture(params=["sqlite", "postgres"])
def database(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[Any]:
    """A factory of empty databases of one dialect."""
    made: list[Any] = []

    def make(name: str) -> str:
        if request.param == "sqlite":
            return f"sqlite:///{tmp_path / (name + '.db')}"
        ctx = fresh_postgres_database(f"titan_mig_{name}")
        made.append(ctx)
        return ctx.__enter__()

    yield make
    for ctx in made:
        ctx.__exit__(None, None, None)


def at_version(url: str, version: int) -> None:
    """Make the empty database at ``url`` what Titan left at schema ``version``."""
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        schema_at(version).create_all(conn)
        conn.execute(t.schema_migrations.insert(),
                     [{"version": v, "name": name, "applied_at": 1.0}
                      for v, name, _ in MIGRATIONS if v <= version])
    engine.dispose()


def test_the_history_of_additions_covers_every_migration() -> None:
    assert sorted(ADDED) == [v for v, _, _ in MIGRATIONS if v > 1]
    assert schema_at(LATEST).tables.keys() == t.metadata.tables.keys()


def test_every_version_upgrades_to_the_fresh_schema(database: Any) -> None:
    fresh_url = database("fresh")
    open_storage(fresh_url).close()
    fresh = describe(fresh_url)
    for version in range(1, LATEST):
        url = database(f"v{version}")
        at_version(url, version)
        # Some versions differ from the latest by a column, not a table: compare them whole
        # (unless every later migration changed data only).
        if any(ADDED[v] for v in ADDED if v > version):
            assert describe(url) != fresh, f"version {version} is built as the latest"
        storage = open_storage(url)  # migrates
        try:
            assert storage.migrate() == LATEST
        finally:
            storage.close()
        migrated = describe(url)
        assert migrated.keys() == fresh.keys(), f"from version {version}: tables differ"
        for table, want in fresh.items():
            got = migrated[table]
            assert got["indexes"] == want["indexes"], f"from version {version}: {table} indexes"
            assert got["columns"].keys() == want["columns"].keys(), (
                f"from version {version}: {table} columns")
            for name, spec in want["columns"].items():
                for aspect, value in spec.items():
                    if (table, name, aspect) in INTENDED or (
                            url.startswith("sqlite") and (table, name, aspect) in SQLITE_KEEPS):
                        continue
                    assert got["columns"][name][aspect] == value, (
                        f"from version {version}: {table}.{name} {aspect}: "
                        f"{got['columns'][name][aspect]!r} after migrating, {value!r} fresh")


def test_a_database_a_newer_titan_upgraded_is_refused_with_what_to_do(database: Any) -> None:
    url = database("newer")
    open_storage(url).close()
    engine = sa.create_engine(url)
    with engine.begin() as conn:  # as a later release leaves it
        conn.execute(t.schema_migrations.insert().values(
            version=LATEST + 1, name="a later release", applied_at=1.0))
    engine.dispose()
    with pytest.raises(ConfigError, match=f"schema version {LATEST + 1}, newer than this "
                                          f"Titan knows \\({LATEST}\\).*pip install -U"):
        open_storage(url)


def test_an_upgrade_says_which_migrations_it_applies(
        database: Any, caplog: pytest.LogCaptureFixture) -> None:
    url = database("older")
    at_version(url, LATEST - 1)
    with caplog.at_level("WARNING", logger="titan.storage"):
        open_storage(url).close()
    said = [r.getMessage() for r in caplog.records if "schema" in r.getMessage()]
    assert said == [f"upgrading the database schema from version {LATEST - 1} to {LATEST}: "
                    f"{MIGRATIONS[-1][1]}"], said
    caplog.clear()
    with caplog.at_level("WARNING", logger="titan.storage"):
        open_storage(url).close()  # nothing to do: nothing said
    assert not [r for r in caplog.records if "schema" in r.getMessage()]


def test_the_schema_is_not_upgraded_under_another_master() -> None:
    """A rolling upgrade on PostgreSQL: the upgraded master would change the schema under the
    older leader still writing to it; it refuses until every master is stopped."""
    with fresh_postgres_database("titan_mig_rolling") as url:
        at_version(url, LATEST - 1)
        old_leader = sa.create_engine(
            url, connect_args={"application_name": "titan-master-0123456789ab"})
        with old_leader.connect() as held:
            held.execute(sa.text("SELECT 1"))
            with pytest.raises(ConfigError, match=f"from version {LATEST - 1} to {LATEST}, but "
                                                  "other Titan masters are connected.*"
                                                  "titan-master-0123456789ab.*stop every master"):
                open_storage(url)
        old_leader.dispose()
        storage = open_storage(url)  # alone now: upgraded
        try:
            assert storage.migrate() == LATEST
        finally:
            storage.close()


def test_simulated_calls_are_renamed_odyssey_as_seed_003_names_them(database: Any) -> None:
    """Calls and per-source counts stored before migration 22 read ``odyssey``, the seed's
    word the API and pages serve; the other sources are untouched."""
    url = database("odyssey")
    at_version(url, 21)
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(t.eval_runs.insert().values(
            id="r1", evaluation_id="ev", task_id="t1", status="completed", agent="{}",
            by_source='{"simulated": 2, "injected": 1}', token_hash="h" * 64, created_at=1.0))
        conn.execute(t.eval_calls.insert(), [
            {"run_id": "r1", "seq": seq, "source": source, "ops": "[]", "violations": "[]",
             "state": "{}", "latency_ms": 1.0}
            for seq, source in ((1, "simulated"), (2, "injected"), (3, "simulated"))])
    engine.dispose()
    storage = open_storage(url)  # migrates
    try:
        with storage.transaction() as tx:
            run = tx.get_eval_run("r1")
            calls = tx.eval_calls("r1")
    finally:
        storage.close()
    assert run is not None and run["by_source"] == {"odyssey": 2, "injected": 1}
    assert [c["source"] for c in calls] == ["odyssey", "injected", "odyssey"]


def test_a_database_holding_another_applications_tables_is_left_alone(database: Any) -> None:
    """An application's own ``jobs`` and ``meta``: Titan created its other tables beside them
    (a foreign key to the application's jobs), stamped its version, then failed on a missing
    column, at this start and every later one."""
    url = database("foreign")
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE jobs (id INTEGER PRIMARY KEY, payload TEXT)"))
        conn.execute(sa.text("CREATE TABLE meta (k VARCHAR(10) PRIMARY KEY, v TEXT)"))
        conn.execute(sa.text("CREATE TABLE invoices (id INTEGER PRIMARY KEY)"))
    for _ in range(2):  # refused again, the same way: nothing was changed the first time
        with pytest.raises(ConfigError, match=r"already holds tables Titan would create "
                                              r"\(jobs, meta\).*Titan changes nothing.*"
                                              r"of its own") as info:
            open_storage(url)
        assert "\n" not in str(info.value)
    with engine.connect() as conn:
        assert sorted(sa.inspect(conn).get_table_names()) == ["invoices", "jobs", "meta"]
    engine.dispose()


def test_a_first_start_cut_short_is_finished(database: Any) -> None:
    """Titan's own tables without a stamp (a first start killed while SQLite made its tables,
    outside the transaction) are not another application's: the next start finishes them."""
    url = database("partial")
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        t.metadata.create_all(conn, tables=t.metadata.sorted_tables[:5])
        conn.execute(sa.text("CREATE TABLE invoices (id INTEGER PRIMARY KEY)"))
    engine.dispose()
    storage = open_storage(url)
    try:
        assert storage.migrate() == LATEST
    finally:
        storage.close()
