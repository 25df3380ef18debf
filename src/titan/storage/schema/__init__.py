"""The tables, as SQLAlchemy Core metadata (the one place that names columns).

Times are float seconds since the epoch in UTC: portable across SQLite and PostgreSQL and cheap
to compare. Lists and maps are JSON text, so both dialects store them the same way.

One ``metadata`` (``core.py``) holds every table; each module of this package adds one
concept's tables to it, and this package names them all, so callers write
``from titan.storage import schema as t`` and ``t.jobs`` whichever module defines it.
"""

from __future__ import annotations

from titan.storage.schema.core import (
    ended_sessions,
    idempotency_keys,
    leader,
    meta,
    metadata,
    schema_migrations,
    tokens,
    workers,
)
from titan.storage.schema.cron import schedule_fires, schedules
from titan.storage.schema.evals import eval_calls, eval_runs, eval_tasks, evaluations
from titan.storage.schema.runs import actions, agent_runs, agents
from titan.storage.schema.scheduling import attempts, dags, jobs, log_lines
from titan.storage.schema.store import blob_chunks, blobs, files, store_sets, store_values

__all__ = [
    "actions", "agent_runs", "agents", "attempts", "blob_chunks", "blobs", "dags",
    "ended_sessions", "eval_calls", "eval_runs", "eval_tasks", "evaluations", "files",
    "idempotency_keys", "jobs", "leader", "log_lines", "meta", "metadata", "schedule_fires",
    "schedules", "schema_migrations", "store_sets", "store_values", "tokens", "workers",
]
