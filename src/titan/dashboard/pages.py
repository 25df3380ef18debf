"""The dashboard's routes: one function per page, each also served as ``<path>.json``.

The master adds ``router.routes`` to its app after the API's, flat, like the API modules.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles

from titan.dashboard import (
    builder,
    docs_pages,
    eval_pages,
    ledger,
    login,
    queries,
    runs_pages,
    schedules,
)
from titan.dashboard.render import STATIC, Data, int_param, twin
from titan.errors import NotFound, ValidationFailed
from titan.master.auth import tokens as auth
from titan.master.context import Ctx
from titan.storage.base import Transaction

router = APIRouter()
PAGE_SIZE = 50
#: What Agent Runs lists: runs with a stage (the default), or every run.
AGENT_STAGES = ("with", "all")


@twin(router, ["/workers", "/"], "cluster.html", "cluster")
async def cluster_page(request: Request, c: Ctx, p: auth.Principal) -> Data:
    return await queries.cluster(c, p, request.headers.get("host"))


@twin(router, ["/dags"], "dags.html", "dags")
async def dags_page(request: Request, c: Ctx, p: auth.Principal) -> Data:
    q = request.query_params
    limit = int_param(request, "limit", PAGE_SIZE, 1, 500)
    offset = int_param(request, "offset", 0, 0, 2**62)
    return await c.engine.read(
        lambda tx: queries.dag_list(tx, q.get("status"), q.get("name"), limit, offset))


# The DAG builder, before the visualizer: /dags/new would otherwise read as the DAG "new"
# (which keeps its own address, /dags/DAG-new, the one every link uses).
router.routes.extend(builder.router.routes)


@twin(router, ["/dags/{name}"], "dag.html", "dag")
async def dag_page(request: Request, c: Ctx, p: auth.Principal) -> Data:
    # Links say /dags/DAG-<name>; a bare /dags/<name> works too. A DAG really named
    # "DAG-x" is /dags/DAG-DAG-x (one prefix is stripped, as the API's refs do).
    name: str = request.path_params["name"]
    if name.startswith("DAG-"):
        name = name[4:]
    run = int_param(request, "run", 0, 1, 2**62) or None
    return await c.engine.read(lambda tx: queries.dag_detail(tx, name, run))


@twin(router, ["/agents"], "agents.html", "agents")
async def agents_page(request: Request, c: Ctx, p: auth.Principal) -> Data:
    limit = int_param(request, "limit", PAGE_SIZE, 1, 500)
    offset = int_param(request, "offset", 0, 0, 2**62)
    # ?run=ID: the page that holds that run (a DAG links back to its agent run this way; an
    # anchor alone pointed at the first page, where an older run is not).
    run_id = request.query_params.get("run")
    # ?stages=all: runs without a stage too (recorded with titan.trace alone); by default
    # only those that submitted one, as seed 000's view of stages shows them.
    stages = request.query_params.get("stages") or "with"
    if stages not in AGENT_STAGES:
        raise ValidationFailed(f"stages must be one of {', '.join(AGENT_STAGES)}",
                               details={"field": "stages"})

    def read(tx: Transaction) -> Data:
        start, shown = offset, stages
        if run_id:
            position = tx.agent_run_position(run_id, staged=shown == "with")
            if position is None and shown == "with":  # a run without stages: shown with them
                shown, position = "all", tx.agent_run_position(run_id)
            if position is None:
                raise NotFound(f"no agent run {run_id!r}")
            start = position - position % limit
        return dict(queries.agent_runs(tx, limit, start, shown), focus=run_id or None)

    return await c.engine.read(read)


@twin(router, ["/jobs/{job_id:int}"], "job.html", "job")
async def job_page(request: Request, c: Ctx, p: auth.Principal) -> Data:
    job_id: int = request.path_params["job_id"]
    return await c.engine.read(lambda tx: queries.job_detail(tx, job_id))


@twin(router, ["/store"], "store.html", "store")
async def store_page(request: Request, c: Ctx, p: auth.Principal) -> Data:
    prefix = request.query_params.get("prefix", "")
    limit = int_param(request, "limit", 100, 1, 1000)
    after = request.query_params.get("after") or None  # the last key of the page before
    return await c.engine.read(lambda tx: queries.store(tx, prefix, limit, after))


router.routes.extend(runs_pages.router.routes)
router.routes.extend(ledger.router.routes)
router.routes.extend(schedules.router.routes)
router.routes.extend(eval_pages.router.routes)
router.routes.extend(docs_pages.router.routes)
router.routes.extend(login.router.routes)
# Assets carry no data: served without auth, so the sign-in page can use them too.
router.routes.append(Mount("/static", app=StaticFiles(directory=STATIC), name="dashboard-static"))
