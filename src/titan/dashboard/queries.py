"""The data behind each page: plain dicts, returned as they are by the pages' JSON twins.

Reads go through the storage interface inside one transaction per page (``engine.read``);
the cluster page reads the scheduler's memory like ``GET /api/v1/workers`` does, since
workers, queues and leases live there.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from typing import Any

from titan.dashboard.layout import layout
from titan.errors import NotFound, ValidationFailed
from titan.master.auth import tokens as auth
from titan.master.context import Ctx
from titan.master.runs.stages import stage_jobs_ended
from titan.master.scheduling import worker_views
from titan.master.scheduling.state import WAITING_APPROVAL
from titan.master.scheduling.views import (
    current_counts,
    current_stages,
    dag_view,
    job_view,
    pending_hints,
    run_status,
    stage_view,
    stages_started,
)
from titan.status import DAG_STATUSES
from titan.storage.base import Row, Transaction
from titan.storage.base_store import whole_keys

Data = dict[str, Any]
_ITER = re.compile(r"ITER(\d+)")
VALUE_PREVIEW = 200
VALUE_SHOWN = 64 * 1024  # the page shows at most this much of a value; the API has the rest
MEMBERS_SHOWN = 200
RUNS_LISTED = 1000


def _duration(row: Row, now: float) -> float | None:
    start = row.get("started_at")
    if start is None:
        return None
    end = row.get("finished_at")
    return max(0.0, float(end if end is not None else now) - float(start))


def file_view(row: Row) -> Row:
    return {"id": row["id"], "name": row["name"], "sha256": row["sha256"], "size": row["size"],
            "key": row["store_key"], "dag_id": row["dag_id"], "job": row["job"],
            "created_at": row["created_at"], "created_by": row.get("created_by")}


def paging(total: int, limit: int, offset: int) -> Data:
    """A paged list's links and range text, for the one pager every paged page shows (DAG
    Pipelines, Agent Runs, Runs). An offset past the end (an old link, a list that shrank)
    is a page that says so and links the last page: /dags?offset=1000 read "1001–3 of 3"
    over a blank list, its "← Newer" going to offset 950, as blank."""
    last = (total - 1) // limit * limit if total else 0
    past_end = offset > 0 and offset >= total
    if past_end:
        shown = f"past the end: {total} in all"
    elif total:
        shown = f"{offset + 1}–{min(offset + limit, total)} of {total}"
    else:
        shown = "0 of 0"
    return {"total": total, "limit": limit, "offset": offset, "range": shown,
            "past_end": past_end, "last_offset": last,
            "prev_offset": last if past_end else max(0, offset - limit) if offset > 0 else None,
            "next_offset": offset + limit if offset + limit < total else None}


# -- cluster -----------------------------------------------------------------------------------
async def cluster(c: Ctx, p: auth.Principal, host: str | None = None) -> Data:
    """What ``GET /api/v1/workers`` answers, plus names for the job ids it lists (from the
    scheduler's memory: running and unschedulable jobs belong to unfinished DAGs), and the
    master's URL for a worker elsewhere (``host``: the page's Host header)."""
    base = await worker_views.workers_view(c.engine)
    sched = c.engine.sched

    def named(job_id: int) -> Row:
        job = sched.jobs.get(job_id)
        dag = sched.dags.get(job.dag_id) if job is not None else None
        return {"id": job_id, "job_id": job.job_id if job else None,
                "dag": dag.name if dag else None, "run": dag.run if dag else None}

    workers = []
    for w in base["workers"]:
        workers.append(dict(w, slots_used=len(w["running"]),
                            running_jobs=[named(j) for j in w["running"]]))
    unschedulable = []
    for u in base["unschedulable"]:
        dag = sched.dags.get(u["dag_id"])
        unschedulable.append(dict(u, dag=dag.name if dag else None, run=dag.run if dag else None))
    caps: set[str] = set(base["queues"]) | {u["requirement"] for u in unschedulable}
    for w in workers:
        if w["state"] == "live":
            caps.update(w["capabilities"])
    blocked: Counter[str] = Counter(base["unschedulable_counts"])
    queues = [{
        "capability": cap, "queued": base["queues"].get(cap, 0), "unschedulable": blocked[cap],
        "workers": sum(1 for w in workers if w["state"] == "live" and cap in w["capabilities"]),
    } for cap in sorted(caps)]
    names = {w["id"]: w["name"] for w in workers}
    services = [dict(s, worker=names.get(s["worker_id"], s["worker_id"]))
                for s in base["services"]]
    missing = sorted(blocked)
    return {"workers": workers, "queues": queues, "unschedulable": unschedulable,
            "unschedulable_total": sum(blocked.values()), "missing": missing,
            "unlisted": {cap: n - worker_views.UNSCHEDULABLE_LISTED
                         for cap, n in blocked.items()
                         if n > worker_views.UNSCHEDULABLE_LISTED},
            "master_url": c.config.public_url_as_seen(host), "services": services,
            "version": base["version"]}


# -- DAG list ----------------------------------------------------------------------------------
def dag_list(tx: Transaction, status: str | None, name: str | None, limit: int,
             offset: int) -> Data:
    if status and status.upper() not in DAG_STATUSES:
        raise ValidationFailed(f"status must be one of {', '.join(DAG_STATUSES)}",
                               details={"status": status})
    status = status.upper() if status else None
    rows, total = tx.list_dags(status=status, name=name or None, limit=limit, offset=offset)
    counts = tx.job_counts([r["id"] for r in rows])
    now = time.time()
    dags = [dict(dag_view(r, counts[r["id"]]), duration=_duration(r, now)) for r in rows]
    return {"dags": dags, "status": status or "", "name": name or "",
            **paging(total, limit, offset)}


# -- one DAG -----------------------------------------------------------------------------------
def dag_detail(tx: Transaction, name: str, run: int | None) -> Data:
    dag = tx.find_dag(name, run)
    if dag is None:
        what = f"DAG-{name}" + (f" run {run}" if run is not None else "")
        raise NotFound(f"no {what}", details={"name": name, "run": run})
    jobs = tx.graph_of_dag(dag["id"])  # the lean read: most of a 10,000-job page's time
    graph = layout([j["job_id"] for j in jobs], [j["parents"] or [] for j in jobs])
    graph.update(id=[j["id"] for j in jobs], job=[j["job_id"] for j in jobs],
                 state=[j["state"] for j in jobs])
    # Its own runs: a substring match kept the exact names of the newest 1,000 matches, and
    # 1,000 newer DAGs named "etl-<n>" left "etl" with only its newest run to pick.
    same, _ = tx.list_dags(exact_name=name, limit=RUNS_LISTED)
    runs = [{"run": r["run"], "status": r["status"], "submitted_at": r["submitted_at"]}
            for r in same]
    if not any(r["run"] == dag["run"] for r in runs):
        runs.append({"run": dag["run"], "status": dag["status"], "submitted_at": dag["submitted_at"]})
        runs.sort(key=lambda r: -r["run"])
    gates = [job_view(full, dag) for j in jobs if j["state"] == WAITING_APPROVAL
             and (full := tx.get_job(j["id"])) is not None]
    view = dag_view(dag, dict(Counter(j["state"] for j in jobs)))
    view["duration"] = _duration(dag, time.time())
    return {"dag": view, "runs": runs, "layout": graph,
            "approvals": [{k: g.get(k) for k in ("id", "job_id", "hitl_message",
                                                  "approval_deadline", "max_wait_seconds")}
                          for g in gates],
            "files": [file_view(f) for f in tx.list_files(dag_id=dag["id"], limit=500)]}


# -- agent runs --------------------------------------------------------------------------------
def agent_runs(tx: Transaction, limit: int, offset: int, stages: str = "with") -> Data:
    """Agent runs with their stages. The per-run DAG lists are one query each (50 on a page);
    the job counts of all their DAGs are one query, not one per run. ``stages``: "with"
    lists only runs that submitted a stage (seed 000's view of stages: seventy runs recorded
    with ``titan.trace.run`` alone pushed the one multi-stage run to page 2), "all" every
    run; ``stageless`` counts the runs "with" leaves out."""
    staged = stages == "with"
    rows, total = tx.list_agent_runs(limit, offset, staged=staged)
    everything = tx.list_agent_runs(1, 0)[1] if staged else total
    per_run = [tx.list_dags(agent_run_id=r["id"], limit=10_000, newest_first=False)[0]
               for r in rows]
    counts = tx.job_counts([d["id"] for dags in per_run for d in dags])
    waiting = pending_hints(tx, [d for dags in per_run for d in dags], counts)
    runs = [_agent_run(run, dags, counts, waiting)
            for run, dags in zip(rows, per_run, strict=True)]
    return {"runs": runs, "stages": stages, "stageless": everything - total if staged else None,
            **paging(total, limit, offset)}


def _agent_run(run: Row, dags: list[Row], counts: dict[int, dict[str, int]],
               waiting: dict[int, str]) -> Row:
    stages = [stage_view(d, run, counts.get(d["id"], {}), waiting.get(d["id"])) for d in dags]
    total = current_counts(dags, counts)
    current = current_stages(dags)
    iterations = [int(m.group(1)) for s in stages if (m := _ITER.search(s["label"]))]
    # Each current stage that did not complete, with how many of its jobs did not, in the
    # Runs page's words ("1 of 1 job cancelled"): a run whose last stage was cancelled ends
    # FAILED, and its row says why.
    failed = [{"label": s["label"], "status": s["status"], "name": s["name"], "run": s["run"],
               "failed_jobs": sum(s["counts"].get(k, 0) for k in
                                  ("FAILED", "TIMED_OUT", "REJECTED", "EXPIRED")),
               "jobs": sum(s["counts"].values()), "why": stage_jobs_ended(s["counts"])}
              for s in stages if s["status"] in ("FAILED", "PARTIAL", "CANCELLED")
              and s["dag_id"] in current]  # a stage submitted again since: recovered
    status = run_status(run, total, stages_started(dags))
    return {"id": run["id"], "created_at": run["created_at"], "status": status,
            "stages": stages, "stages_note": None if dags else (
                "no stage submitted yet" if status in ("WAITING", "RUNNING")
                else "no stages: recorded with titan.trace"),
            "iteration": max(iterations) if iterations else None, "failed": failed}


# -- one job -----------------------------------------------------------------------------------
def job_detail(tx: Transaction, job_id: int) -> Data:
    # The page's {job_id:int} has no upper bound; past 64 bits it is no row, not an overflow.
    job = tx.get_job(job_id) if job_id < 2**63 else None
    if job is None:
        raise NotFound(f"no job {job_id}", details={"id": job_id})
    dag = tx.get_dag(job["dag_id"])
    assert dag is not None
    view = job_view(job, dag)
    view["attempts"] = tx.attempts_of(job_id)
    return {"job": view, "dag": {"id": dag["id"], "name": dag["name"], "run": dag["run"],
                                 "status": dag["status"]}}


# -- store -------------------------------------------------------------------------------------
def store(tx: Transaction, prefix: str, limit: int, after: str | None = None) -> Data:
    page, more = whole_keys(tx.store_keys(prefix, limit + 2, after), limit)
    # The whole page's values, sets and artifacts in a few reads, not three per key (a page
    # of 1,000 keys made 2,000 queries).
    values = tx.store_values_cut([r["key"] for r in page if r["kind"] == "value"],
                                 VALUE_SHOWN)
    sets = tx.store_members_cut([r["key"] for r in page if r["kind"] == "set"], MEMBERS_SHOWN)
    # A key publish_artifact set names a file: the page links its download (GET
    # /artifacts?key=, the newest published under the key; ix_files_key).
    files = tx.latest_files_by_key(list(values))
    keys = []
    for row in page:
        item: Row = {"key": row["key"], "kind": row["kind"], "updated_at": row["updated_at"]}
        if row["kind"] == "value":
            value, size = values.get(row["key"], ("", 0))
            item.update(value=value, size=size, truncated=size > VALUE_SHOWN)
            published = files.get(row["key"])
            item["artifact"] = None if published is None else {
                "name": published["name"], "size": published["size"]}
        else:
            members, count = sets.get(row["key"], ([], 0))
            item.update(members=members, member_count=count)
        keys.append(item)
    return {"prefix": prefix, "limit": limit, "keys": keys, "more": more, "after": after,
            "next_after": keys[-1]["key"] if more and keys else None,
            "preview": VALUE_PREVIEW}
