"""Schema versions: each migration, numbered, and what it changes.

A fresh database gets the current schema in one step (``metadata.create_all``) and is stamped
with every version below, the way squashed migrations work. An existing database runs, in
order, each migration newer than its stamp (:mod:`titan.storage.schema_upgrade` applies
them). To change the schema: edit ``schema/`` AND append a migration that brings an existing
database to the same shape. Never edit a released one.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Connection, inspect, text

from titan.storage import schema as t

Migration = tuple[int, str, Callable[[Connection], None]]


def _initial(conn: Connection) -> None:
    t.metadata.create_all(conn)


def _gate_decisions(conn: Connection) -> None:
    for column, kind in (("approval_deadline", "FLOAT"), ("decided_by", "VARCHAR(200)"),
                         ("decided_at", "FLOAT"), ("decision_comment", "TEXT")):
        conn.execute(text(f"ALTER TABLE jobs ADD COLUMN {column} {kind}"))


def _agent_telemetry(conn: Connection) -> None:
    for column, kind in (
        ("agent_id", "VARCHAR(200)"), ("agent_version", "VARCHAR(200)"),
        ("status", "VARCHAR(20) NOT NULL DEFAULT 'completed'"), ("started_at", "FLOAT"),
        ("ended_at", "FLOAT"), ("error", "TEXT"), ("tags", "TEXT"),
        ("code_version", "VARCHAR(64)"), ("replay_of", "VARCHAR(200)"), ("budget_usd", "FLOAT"),
        ("over_budget_at", "FLOAT"), ("blocked", "BOOLEAN NOT NULL DEFAULT FALSE"),
        ("cost_usd", "FLOAT NOT NULL DEFAULT 0"), ("action_count", "INTEGER NOT NULL DEFAULT 0"),
        ("success_count", "INTEGER NOT NULL DEFAULT 0"),
        ("error_count", "INTEGER NOT NULL DEFAULT 0"),
        ("blocked_count", "INTEGER NOT NULL DEFAULT 0"),
        ("replayed_count", "INTEGER NOT NULL DEFAULT 0"), ("last_action_at", "FLOAT"),
    ):
        conn.execute(text(f"ALTER TABLE agent_runs ADD COLUMN {column} {kind}"))
    # Runs from before telemetry: their stages are all they have; they count as finished.
    conn.execute(text("UPDATE agent_runs SET started_at = created_at"))
    for table in (t.agents, t.actions):
        table.create(conn)
    # The current metadata's indexes, less those on columns a later migration adds (that
    # migration creates its index with its column).
    have = {c["name"] for c in inspect(conn).get_columns("agent_runs")}
    for index in t.agent_runs.indexes:
        if {c.name for c in index.columns} <= have:
            index.create(conn)


def _replay(conn: Connection) -> None:
    # Migration 3 builds from the current metadata, so a database that ran it after this
    # change already has some of these: add only what is missing.
    found = inspect(conn)
    for table, column, kind in (("agent_runs", "replay", "TEXT"), ("agent_runs", "code", "TEXT"),
                                ("actions", "replay_status", "VARCHAR(20)")):
        if column not in {c["name"] for c in found.get_columns(table)}:
            conn.execute(text(f"ALTER TABLE {table} ADD COLUMN {column} {kind}"))
    if "ix_agent_runs_replay_of" not in {i["name"] for i in found.get_indexes("agent_runs")}:
        conn.execute(text("CREATE INDEX ix_agent_runs_replay_of ON agent_runs (replay_of)"))


def _evaluations(conn: Connection) -> None:
    found = inspect(conn)
    for table in (t.evaluations, t.eval_tasks, t.eval_runs, t.eval_calls):
        if not found.has_table(table.name):
            table.create(conn)


def _idempotency_keys(conn: Connection) -> None:
    if not inspect(conn).has_table(t.idempotency_keys.name):
        t.idempotency_keys.create(conn)


def _ended_sessions(conn: Connection) -> None:
    if not inspect(conn).has_table(t.ended_sessions.name):
        t.ended_sessions.create(conn)


def _evaluation_projects(conn: Connection) -> None:
    # Every evaluation made before projects existed lands in "default", the project a spec
    # that names none gets. Migration 5 builds its tables from the current metadata, so a
    # database that ran it after this change already has the column and index.
    columns = {c["name"] for c in inspect(conn).get_columns("evaluations")}
    if "project" not in columns:
        conn.execute(text("ALTER TABLE evaluations ADD COLUMN project VARCHAR(100) NOT NULL "
                          "DEFAULT 'default'"))
    if "ix_evaluations_project" not in {i["name"] for i in inspect(conn).get_indexes(
            "evaluations")}:
        conn.execute(text("CREATE INDEX ix_evaluations_project ON evaluations "
                          "(project, updated_at)"))


def _compliance(conn: Connection) -> None:
    # Runs recorded before this change were started by someone no longer known, hold the
    # default class, found no PII (none was looked for) and are not archived. Migration 3
    # builds the actions table from the current metadata: add only what is missing.
    found = inspect(conn)
    columns = {table: {c["name"] for c in found.get_columns(table)}
               for table in ("agent_runs", "actions")}
    for table, column, kind in (
            ("agent_runs", "started_by", "TEXT"),
            ("agent_runs", "retention_class", "VARCHAR(20) NOT NULL DEFAULT 'standard'"),
            ("agent_runs", "pii", "TEXT"), ("agent_runs", "archived_at", "FLOAT"),
            ("actions", "pii", "TEXT")):
        if column not in columns[table]:
            conn.execute(text(f"ALTER TABLE {table} ADD COLUMN {column} {kind}"))
    index = next(i for i in t.agent_runs.indexes if i.name == "ix_agent_runs_archived")
    if index.name not in {i["name"] for i in found.get_indexes("agent_runs")}:
        index.create(conn)


def _criteria_results(conn: Connection) -> None:
    # Runs scored before custom criteria existed have none (NULL), as a new run has until
    # it is judged.
    if "criteria" not in {c["name"] for c in inspect(conn).get_columns("eval_runs")}:
        conn.execute(text("ALTER TABLE eval_runs ADD COLUMN criteria TEXT"))


def _eval_unpriced(conn: Connection) -> None:
    # Judge and simulator calls of a model with no known price: counted apart, so a run's
    # cost reads as a lower bound, never as $0. Runs scored before are unknown to it (0).
    have = {c["name"] for c in inspect(conn).get_columns("eval_runs")}
    for column in ("simulator_unpriced_calls", "judge_unpriced_calls"):
        if column not in have:
            conn.execute(text(f"ALTER TABLE eval_runs ADD COLUMN {column} INTEGER "
                              "NOT NULL DEFAULT 0"))


def _leader(conn: Connection) -> None:
    t.leader.create(conn, checkfirst=True)  # migration 1 builds from the current metadata


def _blob_chunks(conn: Connection) -> None:
    t.blob_chunks.create(conn, checkfirst=True)  # migration 1 builds from the current metadata


def _big_sizes(conn: Connection) -> None:
    # TITAN_MAX_UPLOAD_BYTES allows 4 GiB, past PostgreSQL's 32-bit INTEGER. SQLite's INTEGER
    # already holds 64 bits: nothing to do there.
    if conn.dialect.name == "postgresql":
        for table in ("blobs", "files"):
            conn.execute(text(f"ALTER TABLE {table} ALTER COLUMN size TYPE BIGINT"))


def _ledger(conn: Connection) -> None:
    # Runs and actions recorded before the ledger stay unchained (NULL hashes): a run's chain
    # starts at the first action recorded after this migration (titan/ledger.py). Migration 3
    # builds the actions table from the current metadata: add only what is missing. The
    # index is built here over every existing action (a one-off, seconds per million rows).
    found = inspect(conn)
    columns = {table: {c["name"] for c in found.get_columns(table)}
               for table in ("agent_runs", "actions")}
    for table, column, kind in (
            ("agent_runs", "chain_head", "VARCHAR(64)"), ("agent_runs", "chain_start", "INTEGER"),
            ("actions", "chain_hash", "VARCHAR(64)")):
        if column not in columns[table]:
            conn.execute(text(f"ALTER TABLE {table} ADD COLUMN {column} {kind}"))
    index = next(i for i in t.actions.indexes if i.name == "ix_actions_started")
    if index.name not in {i["name"] for i in found.get_indexes("actions")}:
        index.create(conn)


def _schedules(conn: Connection) -> None:
    # DAGs submitted before schedules existed were started by no schedule (NULL). Migration 1
    # builds from the current metadata: add only what is missing.
    if "schedule" not in {c["name"] for c in inspect(conn).get_columns("dags")}:
        conn.execute(text("ALTER TABLE dags ADD COLUMN schedule VARCHAR(200)"))
    for table in (t.schedules, t.schedule_fires):
        table.create(conn, checkfirst=True)


def _services(conn: Connection) -> None:
    # Jobs from before services had settings of their own: a SERVICE job submitted then keeps
    # NULL settings, which the worker reads as the defaults. Migration 1 builds from the
    # current metadata: add only what is missing.
    have = {c["name"] for c in inspect(conn).get_columns("jobs")}
    for column in ("service", "service_status"):
        if column not in have:
            conn.execute(text(f"ALTER TABLE jobs ADD COLUMN {column} TEXT"))


def _run_liveness(conn: Connection) -> None:
    # Runs from before: no process heartbeats for them (NULL), so none is ever reaped.
    if "alive_at" not in {c["name"] for c in inspect(conn).get_columns("agent_runs")}:
        conn.execute(text("ALTER TABLE agent_runs ADD COLUMN alive_at FLOAT"))
    index = next(i for i in t.agent_runs.indexes if i.name == "ix_agent_runs_alive")
    if index.name not in {i["name"] for i in inspect(conn).get_indexes("agent_runs")}:
        index.create(conn)


def _unarchived(conn: Connection) -> None:
    # Runs from before were never unarchived by hand (NULL): the sweep treats them as ever.
    if "unarchived_at" not in {c["name"] for c in inspect(conn).get_columns("agent_runs")}:
        conn.execute(text("ALTER TABLE agent_runs ADD COLUMN unarchived_at FLOAT"))


def _unpriced_calls(conn: Connection) -> None:
    # Counted from the runs' recorded actions, so a run from before that called a model with
    # no known price reads as a lower bound too, not as the $0 it showed.
    if "unpriced_calls" not in {c["name"] for c in inspect(conn).get_columns("agent_runs")}:
        conn.execute(text("ALTER TABLE agent_runs ADD COLUMN unpriced_calls INTEGER "
                          "NOT NULL DEFAULT 0"))
    conn.execute(text(
        "UPDATE agent_runs SET unpriced_calls = (SELECT count(*) FROM actions"
        " WHERE actions.run_id = agent_runs.id AND actions.channel = 'llm'"
        " AND actions.cost_usd IS NULL)"
        " WHERE id IN (SELECT run_id FROM actions WHERE channel = 'llm' AND cost_usd IS NULL)"))


def _continued_lines(conn: Connection) -> None:
    if "continues" not in {c["name"] for c in inspect(conn).get_columns("log_lines")}:
        conn.execute(text("ALTER TABLE log_lines ADD COLUMN continues BOOLEAN NOT NULL "
                          "DEFAULT FALSE"))


def _blob_use(conn: Connection) -> None:
    # Blobs from before: NULL, read as their created_at (when they were first stored).
    if "used_at" not in {c["name"] for c in inspect(conn).get_columns("blobs")}:
        conn.execute(text("ALTER TABLE blobs ADD COLUMN used_at FLOAT"))


def _odyssey_source(conn: Connection) -> None:
    # Seed 003 names a call the simulator answered "odyssey"; Titan stored "simulated". The
    # proxied calls and each run's per-source counts take the seed's word, so the API, the
    # pages and the stored rows say one thing. ``by_source`` is JSON of {source: count}: the
    # quoted name occurs there only as a key. The recorded actions' tags are left as they
    # were: the run ledger hashes them (titan/ledger.py), so rewriting one would read as
    # tampering; nothing reads a source from them.
    conn.execute(text("UPDATE eval_calls SET source = 'odyssey' WHERE source = 'simulated'"))
    conn.execute(text(
        "UPDATE eval_runs SET by_source = replace(by_source, '\"simulated\"', '\"odyssey\"')"
        " WHERE by_source LIKE '%\"simulated\"%'"))


def _gate_history(conn: Connection) -> None:
    # Checked first, as every later migration is: a database brought up from an older stamp
    # may have this table made by an earlier step from the current schema.
    if "decisions" not in {c["name"] for c in inspect(conn).get_columns("jobs")}:
        conn.execute(text("ALTER TABLE jobs ADD COLUMN decisions TEXT"))


def _token_makers(conn: Connection) -> None:
    if "created_by" not in {c["name"] for c in inspect(conn).get_columns("tokens")}:
        conn.execute(text("ALTER TABLE tokens ADD COLUMN created_by VARCHAR(300)"))


def _schedule_run_ids(conn: Connection) -> None:
    # Schedules from before give their runs no agent run id (NULL), as they did.
    if "agent_run_id" not in {c["name"] for c in inspect(conn).get_columns("schedules")}:
        conn.execute(text("ALTER TABLE schedules ADD COLUMN agent_run_id VARCHAR(200)"))


def _big_token_counts(conn: Connection) -> None:
    # Ingestion allows 10^15 tokens an action (MAX_TOKENS), past PostgreSQL's 32-bit INTEGER:
    # a count over 2^31-1 failed the whole batch with a 500. One statement, so the table is
    # rewritten once. SQLite's INTEGER already holds 64 bits: nothing to do there.
    if conn.dialect.name == "postgresql":
        conn.execute(text("ALTER TABLE actions " + ", ".join(
            f"ALTER COLUMN {column} TYPE BIGINT" for column in (
                "input_tokens", "output_tokens", "cached_tokens", "reasoning_tokens"))))


def _authors_and_versions(conn: Connection) -> None:
    # Files and workers from before: NULL, nobody recorded who uploaded one nor which Titan
    # a worker ran (a live one says it again when it registers).
    for table, column, kind in (("files", "created_by", "VARCHAR(300)"),
                                ("workers", "version", "VARCHAR(64)")):
        if column not in {c["name"] for c in inspect(conn).get_columns(table)}:
            conn.execute(text(f"ALTER TABLE {table} ADD COLUMN {column} {kind}"))


MIGRATIONS: list[Migration] = [
    (1, "initial schema", _initial),
    (2, "approval gate decisions", _gate_decisions),
    (3, "agent telemetry: runs, agents, actions", _agent_telemetry),
    (4, "replay: settings, recorded code, per-action replay status", _replay),
    (5, "evaluations: tasks, runs, proxied tool calls", _evaluations),
    (6, "idempotency keys of retried writes", _idempotency_keys),
    (7, "dashboard sessions ended by signing out", _ended_sessions),
    (8, "evaluation projects", _evaluation_projects),
    (9, "run compliance: started by, retention class, PII found, archived", _compliance),
    (10, "evaluation runs: llm_judge criteria results", _criteria_results),
    (11, "master leadership: epoch, leader URL, heartbeat", _leader),
    (12, "blob bodies in the database (TITAN_BLOB_STORE=database)", _blob_chunks),
    (13, "blob and file sizes past 2 GiB", _big_sizes),
    (14, "run ledger: action chain hashes, run chain heads", _ledger),
    (15, "schedules: cron schedules, their fires, the schedule that started a DAG",
     _schedules),
    (16, "services: readiness, restart and stop settings; reported health and address",
     _services),
    (17, "agent runs: the last sign of life of the process recording them", _run_liveness),
    (18, "agent runs: when an operator last took one out of the archive", _unarchived),
    (19, "agent runs: LLM calls of unknown price", _unpriced_calls),
    (20, "log lines: a line cut at 64 KiB says it goes on in the next", _continued_lines),
    (21, "blobs: when each was last stored or vouched for (garbage collection)", _blob_use),
    (22, "evaluations: a simulated tool call's source is seed 003's odyssey", _odyssey_source),
    (23, "approval gates: the decisions a retry asked again, kept as history", _gate_history),
    (24, "tokens: who made each one", _token_makers),
    (25, "actions: token counts past 2^31", _big_token_counts),
    (26, "evaluation runs: judge and simulator calls of unknown price", _eval_unpriced),
    (27, "schedules: an agent run id for each fire, from a template with {tick}",
     _schedule_run_ids),
    (28, "files: who uploaded each version; workers: the Titan version each runs",
     _authors_and_versions),
]

LATEST = max(v for v, _, _ in MIGRATIONS)
