"""Agent runs, their agents, and the actions recorded inside them."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from titan.storage.schema.core import metadata

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
    # LLM calls whose price nobody knows (cost_usd NULL: a hosted model in no price list, an
    # imported span without one), migration 19: with any, cost_usd is a lower bound and pages
    # say so instead of showing a paid run as $0.
    Column("unpriced_calls", Integer, nullable=False, server_default="0"),
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
    # The last sign of life of the process that opened or drives the run (migration 17,
    # master/runs/liveness.py): None for runs no such process watches (the API's, OTLP's)
    # and once the run has ended, so the reaper's index holds only open watched runs.
    Column("alive_at", Float),
    # When an operator last took the run out of the archive (migration 18): the archiver's
    # sweep leaves it out for a whole archive window from then (it was archived again at
    # the next hourly sweep).
    Column("unarchived_at", Float),
    Index("ix_agent_runs_started", "started_at"),
    Index("ix_agent_runs_agent", "agent_id", "started_at"),
    Index("ix_agent_runs_replay_of", "replay_of"),
    Index("ix_agent_runs_archived", "archived_at"),
    Index("ix_agent_runs_alive", "alive_at"),
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
    # Up to ingest's MAX_TOKENS (10^15), past PostgreSQL's 32-bit INTEGER (migration 25).
    Column("input_tokens", BigInteger),
    Column("output_tokens", BigInteger),
    Column("cached_tokens", BigInteger),
    Column("reasoning_tokens", BigInteger),
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
