"""DAGs and their jobs, attempts and log lines: what the scheduler works through."""

from __future__ import annotations

from sqlalchemy import (
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
    # A retried gate's earlier decisions, first first (migration 23): JSON list of
    # {state, decided_by, decided_at, comment, retried_by, retried_at}; NULL until a retry.
    Column("decisions", Text),
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
    # The job printed no newline here: the line was longer than a log line may be (64 KiB)
    # and goes on in the next one (migration 20).
    Column("continues", Boolean, nullable=False, server_default="0"),
)
