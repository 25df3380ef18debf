"""Seed 003's routes: projects → workflows → tasks → agent runs, under ``/api/projects``.

The second family of the evaluation routes (``api/evaluations.py`` is the first): a workflow
is an evaluation, its agent runs are its evaluation runs. Each handler is the ``/api/v1``
route's own read or service call (:mod:`titan.master.evaluations.hierarchy`,
``Evaluations.rerun``) with the project named, so the two families answer with the same data;
a workflow of another project is a 404 like an unknown one. Same auth as the ``/api/v1``
routes: a bearer token or the dashboard's session, and re-run needs the operator role.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Body, Query

from titan.master.api.body import JSONRoute, no_body
from titan.master.api.deps import CtxDep, EvalManager, Reader
from titan.master.evaluations import hierarchy
from titan.storage.base import Row, Transaction

PREFIX = "/api/projects"
router = APIRouter(prefix=PREFIX, route_class=JSONRoute, tags=["projects"])
_WORKFLOW = "/{project_id}/workflows/{workflow_id}"
_TASK = _WORKFLOW + "/tasks/{task_id}"


@router.get("", summary="Projects, each with how many workflows it holds")
async def list_projects(c: CtxDep, p: Reader) -> Row:
    return await c.engine.read(hierarchy.projects)


@router.get("/{project_id}/workflows", summary="A project's workflows (evaluations), most "
                                                "recently changed first")
async def list_workflows(c: CtxDep, p: Reader, project_id: str,
                         limit: int = Query(100, ge=1, le=1000)) -> Row:
    return await c.engine.read(lambda tx: hierarchy.workflows(tx, project_id, limit))


@router.get(_WORKFLOW, summary="The Data Explorer: one row per task with its latest agent run "
                               "(GET /api/v1/evaluations/{e})")
async def get_workflow(c: CtxDep, p: Reader, project_id: str, workflow_id: str) -> Row:
    return await c.engine.read(lambda tx: hierarchy.explorer(tx, workflow_id, project_id))


@router.get(_WORKFLOW + "/tasks", summary="A workflow's tasks in load order, each with its "
                                          "latest agent run")
async def list_tasks(c: CtxDep, p: Reader, project_id: str, workflow_id: str) -> Row:
    def read(tx: Transaction) -> Row:
        view = hierarchy.explorer(tx, workflow_id, project_id)
        return {"project": project_id, "workflow": workflow_id, "tasks": view["tasks"]}

    return await c.engine.read(read)


@router.post(_WORKFLOW + "/tasks", summary="Seed tasks and dispatch their first agent runs "
                                           "(?run=false: seed only)")
async def seed_tasks(c: CtxDep, p: EvalManager, project_id: str, workflow_id: str,
                     body: Any = Body(...), run: bool = True) -> Row:
    await c.engine.read(lambda tx: hierarchy.workflow(tx, workflow_id, project_id))
    return await c.evals.add_tasks(workflow_id, body, run=run)


@router.get(_TASK, summary="One task's seed and agent runs, newest first")
async def get_task(c: CtxDep, p: Reader, project_id: str, workflow_id: str,
                   task_id: str) -> Row:
    return await c.engine.read(
        lambda tx: hierarchy.task_detail(tx, workflow_id, task_id, project_id))


@router.get(_TASK + "/agent-runs", summary="A task's agent runs, newest first")
async def list_agent_runs(c: CtxDep, p: Reader, project_id: str, workflow_id: str,
                          task_id: str) -> Row:
    return await c.engine.read(
        lambda tx: hierarchy.runs_of(tx, workflow_id, task_id, project_id))


@router.get(_TASK + "/agent-runs/{run_id}", summary="One agent run's trace: judge card, seed, "
                                                     "multi-agent card, timeline, ledger, debug")
async def get_agent_run(c: CtxDep, p: Reader, project_id: str, workflow_id: str, task_id: str,
                        run_id: str) -> Row:
    return await c.engine.read(
        lambda tx: hierarchy.trace(tx, workflow_id, task_id, run_id, project_id))


@router.post(_TASK + "/agent-runs/{run_id}/re-run", status_code=202,
             summary="Dispatch the task again with the current workflow config; the source "
                     "run stays in history")
async def rerun(c: CtxDep, p: EvalManager, project_id: str, workflow_id: str, task_id: str,
                run_id: str, body: Any = Body(None)) -> Row:
    no_body(body, "a re-run (it dispatches the task with the current workflow config)")
    # The project is checked first: the service knows evaluations, not where they live.
    await c.engine.read(
        lambda tx: hierarchy.check_run(tx, workflow_id, task_id, run_id, project_id))
    started = await c.evals.rerun(workflow_id, task_id, run_id)
    runs = "/".join(quote(x, safe="") for x in (project_id, "workflows", workflow_id, "tasks",
                                                 task_id, "agent-runs"))
    # Where to poll for the new run, as the seed tells a script to.
    return started | {"project": project_id, "workflow": workflow_id, "task_id": task_id,
                      "agent_runs": f"{PREFIX}/{runs}"}
