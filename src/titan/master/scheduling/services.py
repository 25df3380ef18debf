"""Service jobs: the scheduler's rules for long-running jobs of type ``SERVICE``.

A service is leased like any job and is ``RUNNING`` from its lease on; its *health* says
more, as its worker reports it (:mod:`titan.worker.service`): ``starting`` (the process is up,
its readiness check has not passed yet), ``ready``, ``unhealthy`` (a health check failed),
``restarting`` (it crashed; its worker starts it again after a backoff). The worker restarts
it in place, so restarts cost the master nothing but a status; only when they pass the cap
does a result fail the job.

**Address.** The report that says ``ready`` publishes ``host:port`` in its own commit, so
``store_wait`` returns the moment the service can be called, under two keys: its run's,
``services/<dag>#<run>/<job_id>``, which no other run touches, and the DAG's,
``services/<dag>/<job_id>``: the live service of that name in the DAG's latest run (several
runs of one DAG can be alive at once — overlapping schedule ticks, a pipeline submitted
twice — and each run's jobs find their own service by the run's key). Whenever the service
leaves ``RUNNING`` — stopped, failed, cancelled, or lost with its worker — the commit that
says so withdraws both, each only while it still holds this service's address; the DAG's key
then names the latest other run's live service of that name, if one is, rather than none.

**Stop is not cancel.** A cancel ends the job at once and kills its process. A stop leaves it
``RUNNING`` while its worker stops the process (SIGTERM, ``stop_grace`` seconds, SIGKILL); the
result that follows completes it — ``COMPLETED``, "stopped on request", whatever the exit
status. The stop is kept in the job's ``service_status``, so it reaches the worker again with
every heartbeat until the result arrives: a lost message or a master restart cannot lose it.

**Moving.** A worker that drains hands its services back (``released`` results): they are
queued again as their next attempt without spending a retry, like a lost lease, and start
on another worker.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from titan import services
from titan.errors import Conflict, ValidationFailed
from titan.master.scheduling.protocol import SchedulerCore
from titan.master.scheduling.state import (
    COMPLETED,
    RUNNING,
    TERMINAL,
    Changes,
    JobRec,
    StoreWrite,
    WorkerRec,
    job_event,
)
from titan.storage.base import Row

HEALTH = ("starting", "ready", "unhealthy", "restarting")
#: What a worker's status entry may set, and how long a text field may be.
_REPORTED = ("health", "host", "port", "restarts", "up_since", "detail", "pid")
_MAX_TEXT = 500


def settings_of(job: JobRec) -> dict[str, Any]:
    """The service's settings (a job stored before services had any gets the defaults)."""
    return dict(services.DEFAULTS, **(job.row.get("service") or {}))


def _put_status(job: JobRec, status: Row, ch: Changes) -> None:
    job.service_status = status
    ch.jobs[job.id]["service_status"] = status
    ch.touched_dags.add(job.dag_id)
    ch.events.append(("job_updated", job_event(job)))


def address(host: Any, port: Any) -> str | None:
    if not host or not isinstance(port, int) or port <= 0:
        return None
    return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"


# -- the scheduler's hooks ----------------------------------------------------------------------
def moved(sched: SchedulerCore, job: JobRec, state: str, ch: Changes) -> None:
    """A service enters ``RUNNING`` (a new attempt: its status starts afresh) or leaves it
    (its address is withdrawn). Called by the scheduler before the state changes."""
    if state == RUNNING:
        _put_status(job, {"health": "starting", "restarts": 0}, ch)
        return
    status = dict(job.service_status or {})
    published = status.pop("published", None)
    if published and status.get("address"):
        _withdraw(sched, job, status["address"], ch)
    status.pop("stopping", None)  # done (stop_requested_at stays, for the record)
    status.update(health=None, address=None, up_since=None)
    _put_status(job, status, ch)


def settle(sched: SchedulerCore, job: JobRec, exit_code: int | None, error: str | None,
           ch: Changes) -> bool:
    """A service's result, when it means something a run's would not: a stop asked for
    (COMPLETED whatever the exit status). False for any other result, which ends the job as
    a run's would (a release included: see ``outcomes.finish``)."""
    now = sched.now()
    if (job.service_status or {}).get("stopping") is not None:
        ch.done_attempts.append((job.id, job.attempt, {
            "state": COMPLETED, "exit_code": exit_code, "error": None, "finished_at": now}))
        sched._set(job, COMPLETED, ch, exit_code=exit_code, error=None, lease_expires=None,
                   reason=error or "stopped on request", finished_at=now)
        sched.release_children(job, ch)
        return True
    return False


def lost(sched: SchedulerCore, job: JobRec, reason: str, ch: Changes) -> bool:
    """A service's lease expired: a stopping one ends there (its worker is gone, and with it
    the process; starting it elsewhere is the opposite of what was asked). False otherwise."""
    if (job.service_status or {}).get("stopping") is None:
        return False
    sched._set(job, COMPLETED, ch, lease_expires=None, worker_id=None, finished_at=sched.now(),
               reason=f"stopped on request ({reason} before it confirmed)")
    sched.release_children(job, ch)
    return True


# -- requests -----------------------------------------------------------------------------------
def stop(sched: SchedulerCore, job: JobRec, grace: float | None, ch: Changes) -> None:
    """Stop a service gracefully; Conflict if it is no service or has ended. A service not
    started yet simply ends (nothing runs to stop); asking again while it stops changes
    nothing."""
    if not job.is_service:
        raise not_a_service(job.job_id, job.state, job.row.get("job_type"))
    if job.state in TERMINAL:
        raise Conflict(f"service {job.job_id!r} already ended {job.state}",
                       details={"state": job.state})
    grace = settings_of(job)["stop_grace"] if grace is None else grace
    now = sched.now()
    if job.state != RUNNING:
        sched._dequeue(job)
        sched._set(job, COMPLETED, ch, reason="stopped on request before it started",
                   finished_at=now, not_before=None)
        sched.release_children(job, ch)
        return
    status = dict(job.service_status or {})
    if status.get("stopping") is not None:
        return
    status.update(stopping=grace, stop_requested_at=now)
    _put_status(job, status, ch)
    worker = sched.workers.get(job.worker_id or "")
    if worker is not None:
        worker.cancels.append((job.id, job.attempt))


def not_a_service(name: str, state: str, job_type: Any) -> Conflict:
    """A stop asked of a job that is no service: said first, ended or not (that it ended is
    beside the point; "cancel it instead" is advice for one still going)."""
    advice = f"it ended {state}" if state in TERMINAL else "cancel it instead"
    return Conflict(f"job {name!r} is not a service ({advice}): only a SERVICE job is stopped",
                    details={"state": state, "job_type": job_type})


def stop_grace(job: JobRec | None, attempt: int) -> float | None:
    """The grace of the stop asked for ``attempt`` of ``job``, or None: no stop (a cancel or
    a stale attempt, which its worker kills)."""
    if job is None or job.attempt != attempt or job.state != RUNNING:
        return None
    grace = (job.service_status or {}).get("stopping")
    return None if grace is None else float(grace)


def stopping(sched: SchedulerCore, worker: WorkerRec,
             held: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """Which of the attempts a worker holds are being stopped (a heartbeat sends their stops
    again: the worker ignores a repeat, and one it never received arrives this way)."""
    return [(j, a) for j, a in held
            if (job := sched.jobs.get(j)) is not None and job.worker_id == worker.id
            and stop_grace(job, a) is not None]


def report(sched: SchedulerCore, worker_id: str, entry: Row, ch: Changes) -> bool:
    """Apply a worker's status entry for one of its services; False when the attempt is not
    the job's current one on that worker (the entry is refused, like a stale result)."""
    job_id, attempt = entry["id"], entry["attempt"]
    if not sched.is_current(job_id, attempt, worker_id):
        return False
    job = sched.jobs[job_id]
    if not job.is_service:
        return True  # nothing to keep; refusing it would say the attempt is stale
    old = job.service_status or {}
    status = dict(old)
    status.update({k: entry[k] for k in _REPORTED if k in entry})
    status["address"] = address(status.get("host"), status.get("port"))
    status["reported_at"] = sched.now()
    # Published once per address: a service back from unhealthy or a restart on its port
    # is where the key already points.
    publish = status.get("health") == "ready" and status["address"] is not None \
        and (old.get("published") is None or old.get("address") != status["address"])
    if publish:
        dag = sched.dags[job.dag_id]
        status["published"] = services.run_store_key(dag.name, dag.run, job.job_id) \
            if _run_key_only(job) else services.store_key(dag.name, job.job_id)
    _put_status(job, status, ch)
    if publish:
        _publish(sched, job, status["address"], ch)
    return True


# -- the store keys -----------------------------------------------------------------------------
def adopt(sched: SchedulerCore, job: JobRec) -> None:
    """A running service loaded from storage (a restart): its published address counts."""
    if job.is_service and (job.service_status or {}).get("published") \
            and not _run_key_only(job):
        sched.published[(sched.dags[job.dag_id].name, job.job_id)].add(job.id)


def _publish(sched: SchedulerCore, job: JobRec, address: str, ch: Changes) -> None:
    """Put ``address`` under the run's key, and under the DAG's unless a newer run's
    service of that name is live (an older run's restarting elsewhere must not take it)."""
    dag = sched.dags[job.dag_id]
    keys = [services.run_store_key(dag.name, dag.run, job.job_id)]
    if not _run_key_only(job):
        sched.published[(dag.name, job.job_id)].add(job.id)
        if _latest(sched, dag.name, job.job_id) is job:
            keys.append(services.store_key(dag.name, job.job_id))
    for key in keys:
        ch.store.append(StoreWrite(key, address))
        ch.events.append(("store_updated", {"key": key, "op": "put"}))


def _withdraw(sched: SchedulerCore, job: JobRec, address: str, ch: Changes) -> None:
    """The service stops being reachable at ``address``: its run's key goes; the DAG's key,
    if it still holds this address, names the latest other run's live service instead, or
    goes too when there is none."""
    dag = sched.dags[job.dag_id]
    writes: list[tuple[str, str | None]] = [
        (services.run_store_key(dag.name, dag.run, job.job_id), None)]
    if not _run_key_only(job):  # (a job's service never held its DAG's key)
        sched.published[(dag.name, job.job_id)].discard(job.id)
        other = _latest(sched, dag.name, job.job_id)
        then = (other.service_status or {}).get("address") if other is not None else None
        writes.append((services.store_key(dag.name, job.job_id), then))
    for key, value in writes:
        ch.store.append(StoreWrite(key, address, withdraw=True, then=value))
        ch.events.append(("store_updated", {"key": key, "op": "delete" if value is None
                                            else "put"}))


def _run_key_only(job: JobRec) -> bool:
    """Whether a job's token submitted this service: published under its run's key alone,
    it never takes (nor inherits) its DAG's, which callers outside the run follow."""
    return bool((job.row.get("service") or {}).get(services.RUN_KEY_ONLY))


def _latest(sched: SchedulerCore, dag_name: str, job_id: str) -> JobRec | None:
    """The live published service ``job_id`` of the latest run of ``dag_name``, if any (ids
    left behind by a job no longer running are dropped on the way)."""
    ids = sched.published.get((dag_name, job_id))
    best: JobRec | None = None
    for jid in list(ids or ()):
        job = sched.jobs.get(jid)
        if job is None or job.state != RUNNING or not (job.service_status or {}).get("published"):
            ids.discard(jid)  # type: ignore[union-attr]
            continue
        if best is None or sched.dags[job.dag_id].run > sched.dags[best.dag_id].run:
            best = job
    if ids is not None and not ids:
        del sched.published[(dag_name, job_id)]
    return best


def check_entry(item: Row) -> Row:
    """A status entry as a worker sends it, checked whole (a 400 otherwise). Every field is
    kept, None when absent: a status says all it knows (a ``detail`` gone is cleared)."""
    health = item.get("health")
    if health not in HEALTH:
        raise ValidationFailed(f"services[].health must be one of {', '.join(HEALTH)}, "
                               f"got {health!r}", details={"field": "services[].health"})
    out: Row = {"id": item["id"], "attempt": item["attempt"], "health": health}
    for field in ("host", "detail"):
        value = out[field] = item.get(field)
        if value is not None:
            if not isinstance(value, str):
                raise ValidationFailed(f"services[].{field} must be a string",
                                       details={"field": f"services[].{field}"})
            out[field] = value[:_MAX_TEXT]
    for field, hi in (("port", 65535), ("restarts", 2**31), ("pid", 2**31)):
        value = out[field] = item.get(field)
        if value is not None:
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= hi:
                raise ValidationFailed(f"services[].{field} must be an integer 0-{hi}",
                                       details={"field": f"services[].{field}"})
            out[field] = value
    up = item.get("up_since")
    if up is not None:
        if isinstance(up, bool) or not isinstance(up, int | float):
            raise ValidationFailed("services[].up_since must be a number",
                                   details={"field": "services[].up_since"})
        out["up_since"] = float(up)
    else:
        out["up_since"] = None
    return out


# -- views --------------------------------------------------------------------------------------
def view(settings: Row | None, status: Row | None, now: float) -> Row:
    """A service as the API and the dashboard show it: its settings, then what its worker
    last reported, with its uptime (since the current process became ready)."""
    status = status or {}
    up = status.get("up_since")
    return {
        **dict(services.DEFAULTS, **(settings or {})),
        # The address where others reach it: what the store key holds, so only once it has
        # been ready (a client reading it while the service starts would connect too early).
        "health": status.get("health"),
        "address": status.get("address") if status.get("published") else None,
        "host": status.get("host"), "port": status.get("port"),
        "restarts": status.get("restarts") or 0, "up_since": up,
        "uptime": max(0.0, now - float(up)) if up is not None else None,
        "detail": status.get("detail"), "pid": status.get("pid"),
        "stopping": status.get("stopping") is not None,
        "reported_at": status.get("reported_at"),
    }
