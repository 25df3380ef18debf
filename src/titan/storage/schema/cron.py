"""Cron schedules: a DAG submitted again at each tick, and what each tick did."""

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
    # Migration 27: the agent run id each fire's DAG gets, a template holding "{tick}".
    Column("agent_run_id", String(200)),
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
