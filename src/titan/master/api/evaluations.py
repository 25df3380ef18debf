"""Evaluations: their tasks, dispatching runs, the explorer and trace views, re-run, and the
tool proxy the agent under test calls."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Body, Header, Query

from titan.errors import ValidationFailed
from titan.formats import check_eval_id
from titan.master.api.body import JSONRoute, no_body
from titan.master.api.deps import API_PREFIX, CtxDep, EvalManager, Reader, Writer, token_principal
from titan.master.auth.tokens import Principal
from titan.master.context import Ctx
from titan.master.evaluations import deletion, hierarchy
from titan.storage.base import Row

router = APIRouter(prefix=API_PREFIX, route_class=JSONRoute, tags=["evaluations"])


@router.get("/evaluations", summary="List evaluations, most recently changed first")
async def list_evaluations(c: CtxDep, p: Reader, limit: int = Query(100, ge=1, le=1000),
                           project: str | None = None) -> Row:
    # ?project= narrows the list; unlike GET /api/projects/{p}/workflows, an empty result
    # is an empty list, not a 404 (a filter, not an address).
    rows = await c.engine.read(lambda tx: tx.list_evaluations(limit, project=project))
    return {"evaluations": [hierarchy.workflow_row(r) for r in rows]}


@router.put("/evaluations/{evaluation_id}", summary="Create or update an evaluation (its agent, "
                                                    "description, and optionally tasks)")
async def put_evaluation(c: CtxDep, p: EvalManager, evaluation_id: str,
                         body: Any = Body(...)) -> Row:
    return hierarchy.workflow_row(await c.evals.put_evaluation(evaluation_id, body))


# Last of the PUTs under /evaluations/: a name with '/' in it (or '../'), sent escaped, is
# more than one segment once the server decodes it and matched no route ("Not Found"); here
# it gets the naming rule, as "x y" does.
@router.put("/evaluations/{evaluation_id:path}", include_in_schema=False)
async def put_evaluation_with_a_slash(c: CtxDep, p: EvalManager, evaluation_id: str) -> Row:
    check_eval_id(evaluation_id, "evaluation")
    raise ValidationFailed(f"no evaluation route for {evaluation_id!r}")  # (never: it has '/')


@router.get("/evaluations/{evaluation_id}", summary="The data explorer: one row per task with "
                                                    "its latest run")
async def get_evaluation(c: CtxDep, p: Reader, evaluation_id: str) -> Row:
    return await c.engine.read(lambda tx: hierarchy.explorer(tx, evaluation_id))


@router.post("/evaluations/{evaluation_id}/tasks", summary="Seed tasks (an existing id is "
             "replaced, its runs kept) and dispatch their first runs (?run=false: seed only)")
async def add_tasks(c: CtxDep, p: EvalManager, evaluation_id: str, body: Any = Body(...),
                    run: bool = True) -> Row:
    return await c.evals.add_tasks(evaluation_id, body, run=run)


@router.get("/evaluations/{evaluation_id}/tasks/{task_id}", summary="One task's seed and runs")
async def get_task(c: CtxDep, p: Reader, evaluation_id: str, task_id: str) -> Row:
    return await c.engine.read(lambda tx: hierarchy.task_detail(tx, evaluation_id, task_id))


@router.post("/evaluations/{evaluation_id}/runs", status_code=202,
             summary="Dispatch the tasks (all, or those named) against the agent")
async def dispatch(c: CtxDep, p: EvalManager, evaluation_id: str, body: Any = Body(None)) -> Row:
    tasks = (body or {}).get("tasks") if isinstance(body, dict) or body is None else None
    if tasks is not None and (not isinstance(tasks, list)
                              or not all(isinstance(t, str) for t in tasks)):
        raise ValidationFailed('tasks must be a list of task ids (or omitted for every task)',
                               details={"field": "tasks"})
    for i, task in enumerate(tasks or []):
        # A task id the rule refuses names no task: a NUL in one was a 404 on SQLite and a
        # 400 naming nothing on PostgreSQL (its text holds none).
        check_eval_id(task, f"tasks[{i}]")
    if tasks == []:  # not "no tasks to run; add some first": the evaluation may have many
        raise ValidationFailed("tasks is an empty list, so there is nothing to run: name the "
                               "tasks, or leave tasks out to run every task",
                               details={"field": "tasks"})
    return {"runs": await c.evals.dispatch(evaluation_id, tasks)}


@router.post("/evaluations/{evaluation_id}/cancel",
             summary="Cancel every run of the evaluation (or of the tasks named) still pending "
                     "or running; the runs it cancelled")
async def cancel(c: CtxDep, p: EvalManager, evaluation_id: str, body: Any = Body(None)) -> Row:
    tasks = (body or {}).get("tasks") if isinstance(body, dict) or body is None else None
    if (not isinstance(body, dict | None) or tasks is not None and (
            not isinstance(tasks, list) or not tasks or not all(isinstance(t, str)
                                                                for t in tasks))):
        raise ValidationFailed('the body is {"tasks": [task ids]} or nothing (every task)',
                               details={"field": "tasks"})
    return await c.evals.cancel(evaluation_id, tasks)


@router.delete("/evaluations/{evaluation_id}",
               summary="Delete an evaluation with its tasks and runs (?force=true: cancel its "
                       "runs still going first; else 409 while any is)")
async def delete_evaluation(c: CtxDep, p: EvalManager, evaluation_id: str,
                            force: bool = False) -> Row:
    return await deletion.delete_evaluation(c.evals, evaluation_id, force=force)


@router.get("/evaluations/{evaluation_id}/tasks/{task_id}/runs",
            summary="A task's runs, newest first")
async def task_runs(c: CtxDep, p: Reader, evaluation_id: str, task_id: str) -> Row:
    return await c.engine.read(lambda tx: hierarchy.runs_of(tx, evaluation_id, task_id))


@router.get("/evaluations/{evaluation_id}/tasks/{task_id}/runs/{run_id}",
            summary="One run's Agent Trace: judge card, seed, multi-agent card, timeline, "
                    "ledger, coding diff and scorers, debug")
async def run_trace(c: CtxDep, p: Reader, evaluation_id: str, task_id: str,
                    run_id: str) -> Row:
    return await c.engine.read(lambda tx: hierarchy.trace(tx, evaluation_id, task_id, run_id))


@router.post("/evaluations/{evaluation_id}/tasks/{task_id}/runs/{run_id}/re-run",
             status_code=202, summary="Dispatch the task again with the current agent "
                                      "settings; the original stays in history")
async def rerun(c: CtxDep, p: EvalManager, evaluation_id: str, task_id: str, run_id: str,
                body: Any = Body(None)) -> Row:
    no_body(body, "a re-run (it dispatches the task with the current agent settings)")
    return await c.evals.rerun(evaluation_id, task_id, run_id)


# -- what the agent under test calls (authorised by the run's token, not a user's) ------------
def _user(c: Ctx) -> Callable[[str], Awaitable[Principal]]:
    """How the proxy checks a bearer that is not the run's own: as any API token."""
    return lambda token: token_principal(c, token)


@router.post("/runs/{run_id}/tools/{tool}", summary="The tool proxy: call a tool of an "
                                                    "evaluation run")
async def call_tool(c: CtxDep, run_id: str, tool: str, body: Any = Body(None),
                    authorization: str | None = Header(None),
                    x_titan_actor: str | None = Header(None)) -> Row:
    return await c.evals.proxy.call(run_id, tool, body, authorization, x_titan_actor,
                                   _user(c))


@router.post("/runs/{run_id}/eval/response", summary="The agent's final response")
async def respond(c: CtxDep, run_id: str, body: Any = Body(...),
                  authorization: str | None = Header(None)) -> Row:
    return await c.evals.proxy.respond(run_id, body, authorization, _user(c))


@router.post("/runs/{run_id}/eval/events", summary="Live trace events of an evaluation run")
async def events(c: CtxDep, run_id: str, body: Any = Body(...),
                 authorization: str | None = Header(None),
                 x_titan_actor: str | None = Header(None)) -> Row:
    return await c.evals.proxy.events(run_id, body, authorization, x_titan_actor,
                                     _user(c))


@router.post("/runs/{run_id}/eval/agent-token", summary="The token of a coding run's agent "
                                                        "under test (its job's token only)")
async def agent_token(c: CtxDep, run_id: str, p: Writer, body: Any = Body(None)) -> Row:
    no_body(body, "the agent's token (the job asking is all it needs)")
    return c.evals.proxy.agent_token(run_id, p)


@router.post("/runs/{run_id}/eval/coding", summary="A coding run's diff, scorers and "
                                                   "trajectory (posted by its job)")
async def coding(c: CtxDep, run_id: str, body: Any = Body(...),
                 authorization: str | None = Header(None)) -> Row:
    return await c.evals.proxy.coding(run_id, body, authorization, _user(c))
