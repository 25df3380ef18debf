"""A schedule and its fires as the API, the CLI and the dashboard show them."""

from __future__ import annotations

from typing import Any

from titan.errors import ValidationFailed
from titan.master.schedules.rules import CronRule
from titan.master.scheduling.validation import as_submitted
from titan.storage.base import Row

#: Upcoming ticks listed with a schedule.
NEXT_FIRES = 5


def fire_view(fire: Row) -> Row:
    """One tick dealt with (or a run by hand: ``manual``), with the run it started."""
    dag = None
    if fire.get("dag_id") is not None and fire.get("dag_name") is not None:
        dag = {"id": fire["dag_id"], "name": fire["dag_name"], "run": fire["dag_run"],
               "ref": f"{fire['dag_name']}#{fire['dag_run']}", "status": fire["dag_status"]}
    return {"id": fire["id"], "tick": fire["tick"], "manual": fire["tick"] is None,
            "fired_at": fire["fired_at"], "outcome": fire["outcome"], "error": fire["error"],
            "dag": dag}


#: What a job's ``env`` value reads as to a principal who may not manage schedules.
HIDDEN = "***"


def schedule_view(row: Row, fires: list[Row] | None = None, *, now: float,
                  jobs: bool = False, next_fires: int = NEXT_FIRES, env_values: bool = True,
                  last_run: Row | None = None) -> Row:
    """A schedule row as shown: its rule in words and its next ticks; its latest ``fires``
    (newest first) when given; its jobs when asked — their ``env`` values as :data:`HIDDEN`
    unless ``env_values``: a job's env holds its API keys, which a DAG's views never serve,
    and a viewer or any job's token may read a schedule. Who manages schedules sees them, to
    send the jobs back as shown. ``last_run``: the fire of the run it started last, shown
    whether or not it is among ``fires`` (a long run's skipped ticks push it out of them).

    ``next_fires`` are the ticks after ``now``, never one gone by: a schedule that is behind
    (its ``next_fire_at`` passed, not yet dealt with: a master away, a backfill under way)
    listed that past tick as its next, and ``due_since`` says since when it is due (None when
    it is not behind, or paused)."""
    out: dict[str, Any] = {k: row[k] for k in (
        "id", "name", "dag_name", "cron", "timezone", "catchup", "overlap", "paused",
        "next_fire_at", "last_fire_at", "created_at", "created_by", "updated_at")}
    out["agent_run_id"] = row.get("agent_run_id")  # the template (None: runs get none)
    out["job_count"] = len(row["jobs"])
    try:
        rule: CronRule | None = CronRule.parse(row["cron"], row["timezone"])
    except ValidationFailed:  # the time zone left this machine's database since
        rule = None
    out["description"] = rule.describe() if rule is not None else row["cron"]
    first = row["next_fire_at"]
    behind = first is not None and first <= now
    out["due_since"] = first if behind else None
    if first is None or rule is None:
        out["next_fires"] = []
    elif behind:
        out["next_fires"] = rule.upcoming(now, next_fires)
    else:
        out["next_fires"] = [first, *rule.upcoming(first, next_fires - 1)]
    if fires is not None:
        out["fires"] = [fire_view(f) for f in fires]
        out["last_run"] = None if last_run is None else fire_view(last_run)
    if jobs:
        out["jobs"] = as_submitted(row["jobs"])
        if not env_values:
            for job in out["jobs"]:
                job["env"] = dict.fromkeys(job.get("env") or {}, HIDDEN)
    return out
