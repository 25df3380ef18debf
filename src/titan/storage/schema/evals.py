"""Evaluations: their tasks, runs and proxied tool calls."""

from __future__ import annotations

from sqlalchemy import (
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
)

from titan.storage.schema.core import metadata

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
    # Calls of a model with no known price, not in the costs above (migration 26).
    Column("simulator_unpriced_calls", Integer, nullable=False, server_default="0"),
    Column("judge_unpriced_calls", Integer, nullable=False, server_default="0"),
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
