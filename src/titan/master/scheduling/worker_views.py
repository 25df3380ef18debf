"""Workers as ``GET /workers`` and the dashboard's Cluster page show them: the registered
workers (the live ones as the scheduler knows them), queue depths, the jobs no live worker can
run and the running services."""

from __future__ import annotations

import heapq
import time

from titan.master.scheduling import services
from titan.master.scheduling.engine import Engine
from titan.master.scheduling.state import RUNNING, WorkerRec
from titan.storage.base import Row
from titan.version import __version__

#: Jobs listed per capability no live worker has (``unschedulable_counts`` has the totals).
UNSCHEDULABLE_LISTED = 100


async def workers_view(engine: Engine) -> Row:
    """Workers, queue depths, and jobs no worker can run: what ``GET /workers`` and the
    cluster page show."""
    rows = await engine.read(lambda tx: tx.list_workers())
    sched = engine.sched
    # The first LISTED of each capability, and how many there are: 10,000 jobs waiting for a
    # TPU made the answer (and the Cluster page, refreshed live) megabytes.
    counts = {cap: len(ids) for cap, ids in sched.unschedulable.items() if ids}
    waiting = [
        {"id": j.id, "job_id": j.job_id, "dag_id": j.dag_id, "dag": dag.name, "run": dag.run,
         "ref": f"{dag.name}#{dag.run}/{j.job_id}", "requirement": cap, "reason": j.reason}
        for cap, ids in sched.unschedulable.items()
        for jid in heapq.nsmallest(UNSCHEDULABLE_LISTED, ids)
        if (j := sched.jobs.get(jid)) is not None and (dag := sched.dags.get(j.dag_id))
    ]
    now = time.time()
    running = [
        dict(services.view(j.row.get("service"), j.service_status, now), id=j.id,
             job_id=j.job_id, dag=sched.dags[j.dag_id].name, run=sched.dags[j.dag_id].run,
             dag_id=j.dag_id, worker_id=j.worker_id, attempt=j.attempt,
             started_at=getattr(j, "started_at", None) or j.row.get("started_at"))
        for j in sched.jobs.values() if j.is_service and j.state == RUNNING
    ]
    return {"workers": [worker_view(engine, r) for r in rows], "version": __version__,
            "queues": sched.queue_depths(), "unschedulable": waiting,
            "unschedulable_counts": counts,
            "services": sorted(running, key=lambda s: s["id"])}


def _ref(engine: Engine, job_id: int) -> str:
    """``dag#run/job_id`` of a running job (in memory: its DAG is unfinished); its id if not."""
    job = engine.sched.jobs.get(job_id)
    dag = engine.sched.dags.get(job.dag_id) if job is not None else None
    return f"{dag.name}#{dag.run}/{job.job_id}" if job is not None and dag is not None \
        else str(job_id)


def worker_view(engine: Engine, row: Row) -> Row:
    live: WorkerRec | None = engine.sched.workers.get(row["id"])
    state = row["state"]
    if live is not None:
        state = live.state
    elif state in ("live", "draining"):
        # Recorded so by an earlier master run and not reconnected: not heard of since, for
        # longer than a lease, it is gone (it died while this master was down). A lease from
        # this master's start at least: after a failover the row's last sighting is the old
        # leader's, written seconds before, and live workers showed as lost while they came
        # over (an ops QA pass).
        silent = time.time() - max(row["last_seen_at"] or 0.0, engine.started_at)
        state = "lost" if silent > engine.config.lease_seconds else "unknown"
    running = sorted(live.running) if live else []
    return {
        "id": row["id"], "name": row["name"], "hostname": row["hostname"],
        "capabilities": row["capabilities"], "slots": row["slots"],
        "running": running, "running_refs": [_ref(engine, job_id) for job_id in running],
        # What it said at its last registration, to this master or (not connected here
        # since a restart) to an earlier run of it; None: it said nothing one could show.
        "version": live.version if live else row.get("version"),
        "state": state, "last_seen_at": live.last_seen if live else row["last_seen_at"],
        "transport": live.transport if live else None,
        # Master minus worker, seconds (0.0 within a second); None: not connected here.
        "clock_offset": round(live.clock.offset, 3) if live else None,
    }
