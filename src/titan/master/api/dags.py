"""DAG submission, listing, waiting and cancelling."""

from __future__ import annotations

import asyncio
from graphlib import TopologicalSorter
from typing import Any

from fastapi import APIRouter, Body, Query, Request

from titan import services
from titan.errors import Forbidden, InvalidDAG, ValidationFailed, WaitTimeout
from titan.formats import run_id_problem
from titan.master.api.body import JSONRoute, check_fields
from titan.master.api.deps import API_PREFIX, CtxDep, Pruner, Reader, Writer, still_valid
from titan.master.api.params import Offset
from titan.master.auth.tokens import Principal
from titan.master.context import Ctx
from titan.master.events import Guard
from titan.master.idempotency import key_of, scope_of
from titan.master.otel.ids import is_imported_run
from titan.master.runs.compliance import started_by
from titan.master.scheduling.dag_retention import prune_dags
from titan.master.scheduling.lending import lending
from titan.master.scheduling.refs import find_dag, id_form
from titan.master.scheduling.state import JOB_STATES
from titan.master.scheduling.validation import DAG_FIELDS, check_name, unknown_field, validate_dag
from titan.master.scheduling.views import dag_view, dag_with_jobs, job_view
from titan.status import DAG_STATUSES
from titan.storage.base import Row, Transaction
from titan.windows import deletion_cutoff

router = APIRouter(prefix=API_PREFIX, route_class=JSONRoute, tags=["dags"])

#: ``?jobs=false``: a DAG's answer without its jobs (a 100,000-job DAG's are 77 MB of JSON;
#: ``GET /dags/{ref}/jobs`` pages through them).
JOBS = Query(True, alias="jobs", description="Include the DAG's jobs (false: its counts only)")


def _delays_bounded(c: Ctx, p: Principal, specs: list[Row]) -> None:
    """A job's token delays what it submits at most ``TITAN_JOB_MAX_DELAY`` seconds, counted
    along each chain of the DAG (a job waits for its parents, then its own delay): with a
    year's delay a job left a copy of itself to run long after it ended, which is what a
    schedule is, and schedules are refused to job tokens for that reason."""
    bound = c.config.job_max_delay
    if p.role != "job" or sum(spec["delay"] for spec in specs) <= bound:
        return
    specs_by_id = {spec["job_id"]: spec for spec in specs}
    waited: dict[str, float] = {}
    # Validated already: parents name jobs of the DAG, without a cycle.
    order = TopologicalSorter({s["job_id"]: s["parents"] for s in specs}).static_order()
    for job_id in order:
        spec = specs_by_id[job_id]
        waited[job_id] = spec["delay"] + max((waited.get(q, 0.0) for q in spec["parents"]),
                                             default=0.0)
        if waited[job_id] > bound:
            raise Forbidden(
                f"job {job_id!r}: a job's token may delay what it submits at most {bound:g}s "
                f"(TITAN_JOB_MAX_DELAY), counted along its parents; this job would wait "
                f"{waited[job_id]:g}s: a job must not outlive itself. To run it later, create "
                "a schedule with an operator's token (titan schedule create)",
                details={"job_id": job_id, "field": "delay", "max": bound})


#: Jobs past which a submission is validated on a thread of its own.
VALIDATE_OFF_LOOP = 2_000


@router.post("/dags", status_code=201, summary="Submit a DAG (atomic, validated as a whole)")
async def submit_dag(c: CtxDep, p: Writer, request: Request, body: dict[str, Any] = Body(...),
                     wait: float = Query(0, ge=0, le=300, description=(
                         "Seconds to hold the answer until the DAG has finished (its view "
                         "with its jobs, as /wait gives); still running then, the answer is "
                         "the DAG as submitted")), with_jobs: bool = JOBS) -> Row:
    unknown = unknown_field(body, DAG_FIELDS)
    if unknown is not None:
        raise InvalidDAG(unknown[1], details={"field": unknown[0]})
    jobs = body.get("jobs")
    if isinstance(jobs, list) and len(jobs) > VALIDATE_OFF_LOOP:
        # A big DAG's validation off the event loop: 100,000 jobs held every other client
        # (a store_get, a worker's report) for seconds (a scale QA pass). A small one stays:
        # the hop to a thread costs more than it checks.
        name, specs = await asyncio.to_thread(validate_dag, body.get("name"), jobs,
                                              max_jobs=c.config.max_dag_jobs)
    else:
        name, specs = validate_dag(body.get("name"), jobs, max_jobs=c.config.max_dag_jobs)
    _delays_bounded(c, p, specs)
    if p.role == "job":  # its services: their run's key alone (titan/services.py)
        for spec in specs:
            if spec.get("service") is not None:
                spec["service"] = {**spec["service"], services.RUN_KEY_ONLY: True}
    agent_run_id = body.get("agent_run_id")
    if agent_run_id is not None:
        problem = run_id_problem(agent_run_id)
        if problem is not None:  # the run's own id rule: it must be readable back as a run
            raise ValidationFailed(f"agent_run_id {str(agent_run_id)[:100]!r} {problem}",
                                   details={"field": "agent_run_id"})
        if is_imported_run(agent_run_id):
            # The receiver's (api/runs.py refuses POST /runs of one): a stage made it first,
            # started by its submitter, who then owned the trace's run as its spans came in.
            raise ValidationFailed(
                "agent_run_id: run ids of the form otel-<32 hex digits> are the runs of "
                "OpenTelemetry traces the master imports (docs/opentelemetry.md); choose "
                "another id", details={"field": "agent_run_id"})
        await c.runs.check_stage(agent_run_id, p)
    agent_id = body.get("agent_id")
    if agent_id is not None:
        agent_id = check_name(agent_id, "agent_id")
    if agent_run_id is not None:
        alias = body.get("run_alias")
        if alias is not None:
            alias = check_name(alias, "run_alias")
        env = await c.replays.job_env(agent_run_id, alias)
        if env is not None:  # a stage of a replay: its jobs replay too
            for spec in specs:
                spec["env"] = {**spec["env"], **env}
    by = started_by(p, c.engine.sched) if agent_run_id is not None else None
    dag_id = await c.engine.submit_dag(name, specs, agent_run_id, agent_id,
                                       idempotency_key=key_of(request),
                                       scope=await scope_of(request, p),
                                       started_by=by)
    if p.role == "job" and p.job is not None and agent_run_id is not None:
        c.runs.stage_opened_by_job(p.job, agent_run_id)
    if wait > 0:
        # Submit and wait in one request: an agent's step costs one round trip, not two.
        with lending(c.engine, p):
            finished, _status = await _finished(c, dag_id, wait, still_valid(request))
        if finished is not None:
            return _without_jobs(finished, with_jobs)
    live = c.engine.sched.dags.get(dag_id)
    if live is None:  # already finished (every job was cancelled meanwhile): read it back
        return _without_jobs(await c.engine.read(lambda tx: dag_with_jobs(tx, dag_id)), with_jobs)
    return dag_view(live.as_row(), dict(live.counts))


@router.get("/dags", summary="List DAG runs, newest first")
async def list_dags(
    c: CtxDep, p: Reader, status: str | None = None, name: str | None = None,
    agent_run_id: str | None = None, limit: int = Query(50, ge=1, le=1000),
    offset: Offset = 0,
) -> Row:
    if status is not None and status.upper() not in DAG_STATUSES:
        raise ValidationFailed(f"status must be one of {', '.join(DAG_STATUSES)}",
                               details={"field": "status"})

    def q(tx: Transaction) -> Row:
        rows, total = tx.list_dags(status=status.upper() if status else None, name=name,
                                   agent_run_id=agent_run_id, limit=limit, offset=offset)
        counts = tx.job_counts([r["id"] for r in rows])
        return {"dags": [dag_view(r, counts[r["id"]]) for r in rows], "total": total,
                "limit": limit, "offset": offset}

    return await c.engine.read(q)


@router.post("/dags/prune", summary="Delete finished DAG runs older than a window, with "
             "their jobs and logs (retention)")
async def prune(c: CtxDep, p: Pruner, body: Any = Body(...)) -> Row:
    if isinstance(body, dict):
        check_fields(body, frozenset({"older_than", "dry_run"}))
    if not isinstance(body, dict) or not isinstance(body.get("older_than"), str):
        raise ValidationFailed('the body must be {"older_than": "30d", "dry_run": false}',
                               details={"field": "older_than"})
    dry_run = body.get("dry_run", False)
    if not isinstance(dry_run, bool):
        raise ValidationFailed("dry_run must be true or false", details={"field": "dry_run"})
    before = deletion_cutoff(body["older_than"], "older_than")
    ids = await prune_dags(c.engine, before, dry_run=dry_run)
    if ids and not dry_run:
        c.blob_gc.soon()  # the scripts only those DAGs ran go too
    reply = {"pruned": len(ids), "dry_run": dry_run, "dag_ids": ids[:1000], "before": before}
    if dry_run:
        # What a user recognises a run by (`nightly#3`), not its row id alone: a dry run's
        # list was bare numbers (a QA pass). (A prune's runs are gone when it answers.)
        def named(tx: Any) -> list[dict[str, Any]]:
            rows = [tx.get_dag(i) for i in ids[:1000]]
            return [{"id": r["id"], "ref": f"{r['name']}#{r['run']}", "name": r["name"],
                     "run": r["run"], "finished_at": r["finished_at"]}
                    for r in rows if r is not None]

        reply["dags"] = await c.engine.read(named)
    return reply


async def _finished(c: Ctx, dag_id: int, timeout: float,
                    guard: Guard) -> tuple[Row | None, str | None]:
    """The DAG's view (with its jobs) once it has finished, or ``(None, status)`` when it is
    still running after ``timeout`` seconds."""
    topic = ("dag", dag_id)
    waiter = c.hub.waiter(topic)
    try:
        # A DAG the scheduler still holds has not finished (it is retired when it settles,
        # before that commit's notice): park at once. Otherwise read what committed.
        live = c.engine.sched.dags.get(dag_id)
        status = live.status if live is not None else None
        if live is None:
            view = await c.engine.read(lambda tx: dag_with_jobs(tx, dag_id))
            if view["status"] not in ("WAITING", "RUNNING"):
                return view, None
            status = view["status"]
        try:
            await c.hub.until(waiter, timeout=timeout, guard=guard)
            view = waiter.result()
        except TimeoutError:
            if (live := c.engine.sched.dags.get(dag_id)) is not None:
                status = live.status
            return None, status
        if isinstance(view, dict) and view.get("id") == dag_id:
            return view, None  # read in the commit that finished it
        return await c.engine.read(lambda tx: dag_with_jobs(tx, dag_id)), None
    finally:
        c.hub.discard(topic, waiter)


@router.get("/dags/{ref:path}/wait", summary="Long-poll until the DAG has finished")
async def wait_dag(c: CtxDep, p: Reader, request: Request, ref: str,
                   timeout: float = Query(30, ge=0, le=300),
                   with_jobs: bool = JOBS) -> Row:
    # A DAG named by its id alone (``#17``) that the scheduler holds is found without a read
    # (a waiting client names it so: submit_dag's answer carries the id). Bare digits may be
    # a DAG's name too: find_dag reads which.
    number = id_form(ref)
    live = c.engine.sched.dags.get(number) if number is not None else None
    dag = live.as_row() if live is not None else await c.engine.read(lambda tx: find_dag(tx, ref))
    with lending(c.engine, p):
        finished, status = await _finished(c, dag["id"], timeout, still_valid(request))
    if finished is None:
        raise WaitTimeout(f"DAG {dag['name']}#{dag['run']} is still {status} after {timeout:g}s",
                          details={"status": status})
    return _without_jobs(finished, with_jobs)


@router.get("/dags/{ref:path}/jobs", summary="A page of a DAG run's jobs")
async def dag_jobs(
    c: CtxDep, p: Reader, ref: str,
    state: list[str] | None = Query(None, description=(
        "Only jobs in these states: comma-separated, or the parameter repeated")),
    limit: int = Query(1000, ge=1, le=10000), offset: Offset = 0,
) -> Row:
    states = _states(state)

    def q(tx: Transaction) -> Row:
        dag = find_dag(tx, ref)
        jobs, total = tx.dag_jobs_page(dag["id"], states, limit, offset)
        return {"jobs": [job_view(j, dag) for j in jobs], "total": total, "limit": limit,
                "offset": offset}

    return await c.engine.read(q)


@router.get("/dags/{ref:path}", summary="One DAG run with its jobs")
async def get_dag(c: CtxDep, p: Reader, ref: str, with_jobs: bool = JOBS) -> Row:
    if with_jobs:
        return await c.engine.read(lambda tx: dag_with_jobs(tx, find_dag(tx, ref)["id"]))

    def q(tx: Transaction) -> Row:
        dag = find_dag(tx, ref)
        return dag_view(dag, tx.job_counts([dag["id"]])[dag["id"]])

    return await c.engine.read(q)


def _states(state: list[str] | None) -> list[str] | None:
    """``?state=failed,timed_out`` (or ``?state=failed&state=timed_out``: a query built from
    a list, where only the last one counted) as the job states it names; a state that is
    none is a 400."""
    states = [s.strip().upper() for given in state or () for s in given.split(",") if s.strip()]
    if not states:
        return None
    unknown = [s for s in states if s not in JOB_STATES]
    if unknown:
        raise ValidationFailed(f"state {unknown[0].lower()[:40]!r} is not a job state; one of "
                               f"{', '.join(JOB_STATES)}", details={"field": "state"})
    return states


def _without_jobs(view: Row, jobs: bool) -> Row:
    """A finished DAG's answer without its jobs when the caller asked (``?jobs=false``)."""
    if not jobs:
        view = {k: v for k, v in view.items() if k != "jobs"}
    return view


@router.post("/dags/{ref:path}/retry", summary="Run a finished DAG's unsuccessful jobs again")
async def retry_dag(c: CtxDep, p: Writer, ref: str) -> Row:
    dag = await c.engine.read(lambda tx: find_dag(tx, ref))
    await c.engine.retry_dag(dag["id"], ref, p.name or p.role)
    if dag.get("agent_run_id"):  # its agent run, ended with the stage, goes on too
        await c.runs.stage_retried(dag["agent_run_id"])
    return await c.engine.read(lambda tx: dag_with_jobs(tx, dag["id"]))


@router.post("/dags/{ref:path}/cancel", summary="Cancel every unfinished job of a DAG")
async def cancel_dag(c: CtxDep, p: Writer, ref: str) -> Row:
    dag = await c.engine.read(lambda tx: find_dag(tx, ref))
    await c.engine.cancel_dag(dag["id"], dag["status"], ref)
    return await c.engine.read(lambda tx: dag_with_jobs(tx, dag["id"]))
