"""The tables, as SQLAlchemy Core metadata (the one place that names columns).

Times are float seconds since the epoch in UTC: portable across SQLite and PostgreSQL and cheap
to compare. Lists and maps are JSON text, so both dialects store them the same way.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
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
    Column("revoked_at", Float),
)

# An agent run: the DAG stages submitted for it (seed 000) and the actions recorded inside
# them (seed 004) are one thing. The counters are kept up to date as actions arrive, so the
# registry lists thousands of runs without touching the actions table (migration 3).
agent_runs = Table(
    "agent_runs",
    metadata,
    Column("id", String(200), primary_key=True),
    Column("created_at", Float, nullable=False),
    Column("agent_id", String(200)),
    Column("agent_version", String(200)),
    Column("status", String(20), nullable=False, server_default="running"),
    Column("started_at", Float),
    Column("ended_at", Float),
    Column("error", Text),
    Column("tags", Text),  # JSON list of strings or object
    Column("code_version", String(64)),
    Column("replay_of", String(200)),
    # A replay's settings (mode, code, fork, overrides, the run ids its driver used) and the
    # code a run can be replayed from (driver script, argv, files by sha256): JSON (migration 4).
    Column("replay", Text),
    Column("code", Text),
    Column("budget_usd", Float),
    Column("over_budget_at", Float),  # the intercept: when spend crossed the budget
    Column("blocked", Boolean, nullable=False, server_default="0"),
    Column("cost_usd", Float, nullable=False, server_default="0"),
    Column("action_count", Integer, nullable=False, server_default="0"),
    Column("success_count", Integer, nullable=False, server_default="0"),
    Column("error_count", Integer, nullable=False, server_default="0"),
    Column("blocked_count", Integer, nullable=False, server_default="0"),
    Column("replayed_count", Integer, nullable=False, server_default="0"),
    Column("last_action_at", Float),
    # Compliance (seed 004, migration 9): who started the run (JSON: the token's role and
    # name, or the job and worker whose token it was), its retention class, the PII patterns
    # redaction found in its actions (JSON {pattern: count}), and when it was archived.
    # Archiving is this flag, not a move: actions are only ever read by run id, so an
    # archived run's actions cost the live ones nothing where they are, and an archived run
    # stays openable and exportable through the same queries. The index serves the
    # registry's count and filter on archived_at (and the archiver's sweep).
    Column("started_by", Text),
    Column("retention_class", String(20), nullable=False, server_default="standard"),
    Column("pii", Text),
    Column("archived_at", Float),
    # The run ledger (migration 14, titan/ledger.py): the chain hash of its last action and
    # the seq its chain starts at (1, or for a run recorded before the ledger existed the
    # first action recorded after); both None until a chained action is recorded.
    Column("chain_head", String(64)),
    Column("chain_start", Integer),
    Index("ix_agent_runs_started", "started_at"),
    Index("ix_agent_runs_agent", "agent_id", "started_at"),
    Index("ix_agent_runs_replay_of", "replay_of"),
    Index("ix_agent_runs_archived", "archived_at"),
)

agents = Table(
    "agents",
    metadata,
    Column("id", String(200), primary_key=True),
    Column("budget_usd", Float),  # the default budget of each of its runs
    Column("created_at", Float, nullable=False),
)

# One recorded step of an agent run. ``seq`` is the master's order of arrival within the run;
# (actor, channel, name, ordinal) is the caller's own key, stable across re-executions, which
# is what replay matches on. Inputs/outputs are canonical JSON; past the inline limit the whole
# value lives in the blob store under its hash and the column keeps a preview.
actions = Table(
    "actions",
    metadata,
    Column("run_id", String(200), ForeignKey("agent_runs.id"), primary_key=True),
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("id", String(64), nullable=False),
    Column("parent_id", String(64)),
    Column("actor", String(500), nullable=False),
    Column("channel", String(20), nullable=False),
    Column("name", String(200), nullable=False),
    Column("ordinal", Integer, nullable=False),
    Column("inputs", Text, nullable=False),
    Column("inputs_hash", String(64), nullable=False),
    Column("inputs_size", Integer, nullable=False),
    Column("inputs_blob", Boolean, nullable=False),
    Column("outputs", Text),
    Column("outputs_hash", String(64)),
    Column("outputs_size", Integer, nullable=False),
    Column("outputs_blob", Boolean, nullable=False),
    Column("error_type", String(200)),
    Column("error_message", Text),
    Column("outcome", String(20), nullable=False),
    Column("model", String(200)),
    Column("input_tokens", Integer),
    Column("output_tokens", Integer),
    Column("cached_tokens", Integer),
    Column("reasoning_tokens", Integer),
    Column("cost_usd", Float),
    Column("cost_source", String(40)),
    Column("started_at", Float, nullable=False),
    Column("duration_ns", BigInteger, nullable=False),
    Column("tags", Text),  # JSON
    # In a replay: how the call was answered (served from the recording, verified, run live,
    # overridden, refused); None outside replays (migration 4).
    Column("replay_status", String(20)),
    Column("recorded_at", Float, nullable=False),
    # What redaction replaced, by field and pattern ({"inputs": {"email": 1}}); never the
    # values. None when nothing matched (migration 9).
    Column("pii", Text),
    # The run ledger (migration 14): the sha256 of the action's canonical content chained to
    # the action before it (titan/ledger.py); None for actions recorded before the ledger.
    Column("chain_hash", String(64)),
    UniqueConstraint("run_id", "id", name="uq_actions_run_id"),
    Index("ix_actions_outcome", "run_id", "outcome", "seq"),
    # The Activity Ledger lists actions across runs newest first, a keyset page at a time:
    # this index is that order, so a page (and a time range) reads only its own rows.
    Index("ix_actions_started", "started_at", "run_id", "seq"),
)

dags = Table(
    "dags",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(200), nullable=False),
    Column("run", Integer, nullable=False),
    Column("agent_run_id", String(200), ForeignKey("agent_runs.id")),
    Column("submitted_at", Float, nullable=False),
    Column("started_at", Float),
    Column("finished_at", Float),
    Column("status", String(20), nullable=False),
    Column("cancelled", Boolean, nullable=False, default=False),
    Column("job_count", Integer, nullable=False),
    # The schedule whose tick started this run (migration 15); None for a submission.
    Column("schedule", String(200)),
    UniqueConstraint("name", "run", name="uq_dags_name_run"),
    Index("ix_dags_agent_run", "agent_run_id", "id"),
    Index("ix_dags_status", "status", "id"),
)

jobs = Table(
    "jobs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("dag_id", Integer, ForeignKey("dags.id"), nullable=False),
    Column("job_id", String(200), nullable=False),
    Column("position", Integer, nullable=False),
    Column("filename", String(1000), nullable=False),
    Column("script_sha256", String(64)),
    Column("job_type", String(40), nullable=False),
    Column("args", Text, nullable=False),  # JSON list of str
    Column("parents", Text, nullable=False),  # JSON list of job ids within the DAG
    Column("env", Text, nullable=False),  # JSON object
    Column("port", Integer, nullable=False, default=0),
    Column("is_archive", Boolean, nullable=False, default=False),
    Column("priority", Integer, nullable=False),
    Column("delay", Float, nullable=False),
    Column("affinity", Boolean, nullable=False),
    Column("requirement", String(200), nullable=False),
    Column("max_attempts", Integer, nullable=False),
    Column("timeout", Float),
    Column("runner", String(20), nullable=False),
    Column("hitl_message", Text),
    Column("max_wait_seconds", Float),
    Column("approval_deadline", Float),  # a waiting gate expires then (migration 2)
    Column("decided_by", String(200)),  # who approved or rejected a gate
    Column("decided_at", Float),
    Column("decision_comment", Text),
    # Service jobs (migration 16): their settings (readiness check, restart cap, stop grace)
    # and what their worker last said of them (health, address, restarts, a stop asked
    # for), JSON objects; None for every other job.
    Column("service", Text),
    Column("service_status", Text),
    Column("state", String(20), nullable=False),
    Column("reason", Text),
    Column("attempt", Integer, nullable=False, default=0),
    Column("worker_id", String(80)),
    Column("lease_expires_at", Float),
    Column("not_before", Float),  # delay or retry backoff: not runnable before this time
    Column("exit_code", Integer),
    Column("error", Text),
    Column("submitted_at", Float, nullable=False),
    Column("ready_at", Float),
    Column("started_at", Float),
    Column("finished_at", Float),
    Index("ix_jobs_dag", "dag_id", "position"),
    Index("ix_jobs_job_id", "job_id", "id"),
    Index("ix_jobs_state", "state"),
)

attempts = Table(
    "attempts",
    metadata,
    Column("job", Integer, ForeignKey("jobs.id"), primary_key=True),
    Column("attempt", Integer, primary_key=True, autoincrement=False),
    Column("worker_id", String(80)),
    Column("started_at", Float, nullable=False),
    Column("finished_at", Float),
    Column("state", String(20), nullable=False),
    Column("exit_code", Integer),
    Column("error", Text),
)

log_lines = Table(
    "log_lines",
    metadata,
    Column("job", Integer, primary_key=True, autoincrement=False),
    Column("attempt", Integer, primary_key=True, autoincrement=False),
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("stream", String(6), nullable=False),
    Column("ts", Float, nullable=False),
    Column("line", Text, nullable=False),
)

store_values = Table(
    "store_values",
    metadata,
    Column("key", String(1024), primary_key=True),
    Column("value", Text, nullable=False),
    Column("updated_at", Float, nullable=False),
)

store_sets = Table(
    "store_sets",
    metadata,
    Column("key", String(1024), primary_key=True),
    Column("member", Text, primary_key=True),
    Column("added_at", Float, nullable=False),
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

blobs = Table(
    "blobs",
    metadata,
    Column("sha256", String(64), primary_key=True),
    Column("size", BigInteger, nullable=False),  # uploads may pass 2 GiB
    Column("created_at", Float, nullable=False),
)

# Blob bodies when TITAN_BLOB_STORE=database (storage/blobs/database.py): each blob in chunks
# of at most 1 MiB numbered from 0, all of them written in one transaction, so a blob is whole
# or absent. Chunk 0 exists for every blob, an empty one too: it is the blob's existence and
# the row concurrent writers of the same content meet on. Empty under the other stores.
blob_chunks = Table(
    "blob_chunks",
    metadata,
    Column("sha256", String(64), primary_key=True),
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("data", LargeBinary, nullable=False),
)

# Schedules (migration 15, master/schedules/): a DAG submitted again at each tick of a cron
# expression in a time zone. ``next_fire_at`` is the first tick not yet dealt with (fired,
# skipped or queued), written in the same commit as whatever dealt with the tick before it, so
# a restarted or promoted master starts from there; None while paused.
schedules = Table(
    "schedules",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(200), nullable=False),
    Column("dag_name", String(200), nullable=False),
    Column("cron", String(200), nullable=False),
    Column("timezone", String(100), nullable=False),
    Column("jobs", Text, nullable=False),  # JSON: the DAG's jobs, validated as POST /dags does
    Column("catchup", String(10), nullable=False),  # skip, all, latest
    Column("overlap", String(10), nullable=False),  # allow, skip, queue
    Column("paused", Boolean, nullable=False, default=False),
    Column("next_fire_at", Float),
    Column("last_fire_at", Float),  # the tick of the last fire (not of a run by hand)
    Column("created_at", Float, nullable=False),
    Column("created_by", String(200)),
    Column("updated_at", Float, nullable=False),
    UniqueConstraint("name", name="uq_schedules_name"),
)

# What each tick of a schedule did: submitted a DAG, was skipped (overlap) or queued behind
# the running one, or failed. (schedule, tick) is unique, and a fire is inserted in the same
# transaction as the DAG it submits: a tick fires once, whatever restarts or failovers happen
# around it. ``tick`` is None for a run started by hand ("run now").
schedule_fires = Table(
    "schedule_fires",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("schedule_id", Integer, ForeignKey("schedules.id"), nullable=False),
    Column("tick", Float),
    Column("fired_at", Float, nullable=False),
    Column("outcome", String(20), nullable=False),  # submitted, skipped, queued, failed
    Column("dag_id", Integer, ForeignKey("dags.id")),
    Column("error", Text),
    UniqueConstraint("schedule_id", "tick", name="uq_schedule_fires_tick"),
    Index("ix_schedule_fires_schedule", "schedule_id", "id"),
)

files = Table(
    "files",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(255), nullable=False),
    Column("sha256", String(64), ForeignKey("blobs.sha256"), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("store_key", String(1024)),
    Column("dag_id", Integer),
    Column("job", Integer),
    Column("created_at", Float, nullable=False),
    Index("ix_files_name", "name", "id"),
    Index("ix_files_key", "store_key", "id"),
    Index("ix_files_dag", "dag_id", "id"),
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
)


# Evaluations (migration 5): a named set of tasks, each seeded with a user instruction and a
# simulated world, run against an agent under test. The agent config (how to dispatch it, its
# tools, its declared topology, the simulator/judge models) lives on the evaluation, so a
# re-run picks up edits made since the original dispatch. Its project (migration 8) is the
# top of seed 003's hierarchy: projects -> workflows (evaluations) -> tasks -> agent runs; a
# project is nothing but the name its evaluations share, so it has no table of its own.
evaluations = Table(
    "evaluations",
    metadata,
    Column("id", String(100), primary_key=True),
    Column("description", Text),
    Column("agent", Text, nullable=False),  # JSON
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("project", String(100), nullable=False, server_default="default"),
    Index("ix_evaluations_project", "project", "updated_at"),
)

eval_tasks = Table(
    "eval_tasks",
    metadata,
    Column("evaluation_id", String(100), ForeignKey("evaluations.id"), primary_key=True),
    Column("id", String(100), primary_key=True),
    Column("position", Integer, nullable=False),
    Column("seed", Text, nullable=False),  # JSON: the task as loaded
    Column("created_at", Float, nullable=False),
)

# One dispatch of a task: its id is the agent run's id, so the actions (LLM calls, proxied
# tool calls) are the run's actions; what only an evaluation has lives here.
eval_runs = Table(
    "eval_runs",
    metadata,
    Column("id", String(200), primary_key=True),
    Column("evaluation_id", String(100), nullable=False),
    Column("task_id", String(100), nullable=False),
    Column("status", String(20), nullable=False),  # pending running completed failed cancelled
    Column("error_class", String(40)),
    Column("error_detail", Text),
    Column("agent", Text, nullable=False),  # JSON: the agent config this run used
    Column("final_response", Text),
    Column("messages", Text),  # JSON
    Column("raw_response", Text),
    Column("soft_warnings", Text),  # JSON list
    Column("world", Text),  # JSON: the ledger snapshot now
    Column("tool_calls", Integer, nullable=False, server_default="0"),
    Column("by_source", Text),  # JSON {source: count}
    Column("violations", Integer, nullable=False, server_default="0"),
    Column("proxy_refusals", Integer, nullable=False, server_default="0"),
    Column("judge", Text),  # JSON verdict
    Column("criteria", Text),  # JSON: the llm_judge criteria's results (migration 10)
    Column("coding", Text),  # JSON: diff, scorers, trajectory
    Column("simulator_cost_usd", Float, nullable=False, server_default="0"),
    Column("judge_cost_usd", Float, nullable=False, server_default="0"),
    Column("source_run", String(200)),  # a re-run: the run it re-ran
    Column("redispatch_of", String(200)),  # the automatic retry of a transient failure
    Column("token_hash", String(64), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("started_at", Float),
    Column("ended_at", Float),
    Index("ix_eval_runs_task", "evaluation_id", "task_id", "created_at"),
    Index("ix_eval_runs_status", "status"),
)

# What a proxied tool call did to the world, keyed by the call's action (run id, seq).
eval_calls = Table(
    "eval_calls",
    metadata,
    Column("run_id", String(200), primary_key=True),
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("source", String(20), nullable=False),
    Column("ops", Text, nullable=False),  # JSON: the operations applied
    Column("violations", Text, nullable=False),  # JSON: operations refused, with why
    Column("state", Text, nullable=False),  # JSON: the ledger after the call
    Column("latency_ms", Float, nullable=False),
)
