"""The Evaluations and Projects pages, each also served as ``<path>.json``.

Two families of routes to the same pages. The evaluation's: the list (``/evaluations``), one
evaluation's Data Explorer (``/evaluations/<id>``) and one task with its Agent Trace
(``/evaluations/<id>/tasks/<task>``, ``?run=<run id>`` for an earlier run). Seed 003's
hierarchy: the projects (``/projects``, ``/projects/<p>``), a workflow's Data Explorer
(``/projects/<p>/workflows/<id>``) and its task (``.../tasks/<task>``). A workflow is an
evaluation, so both reach the same builders (:mod:`titan.dashboard.eval_queries`) and
templates; the explorer opens a task in its modal (``?task=<task>``), the task page's own
markup.

``pages.py`` adds ``router.routes`` to its own. The data is the API's own views, read in one
transaction, so a page shows exactly what the API answers; the trace of a task page *is* the
API's trace. While a run is in flight, the pages' scripts re-read them every 3 s until it is
terminal.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request

from titan.dashboard import eval_queries
from titan.dashboard.eval_queries import q
from titan.dashboard.render import Data, env, int_param, twin
from titan.master.auth import tokens as auth
from titan.master.context import Ctx
from titan.master.evaluations import views
from titan.storage.base import Row

router = APIRouter()
LISTED = 200
#: The Data Explorer's tasks per page (``?limit=``, at most 1,000).
TASKS_SHOWN = 200
#: The tool-call sources' badge labels: seed 003's words (a simulated call is "odyssey").
SOURCE_LABELS = views.SOURCE_BADGES


# -- links and formatting (template globals and filters) --------------------------------------
def task_href(links: Row, task_id: str, run_id: str | None = None) -> str:
    """A task's page in the family of ``links`` (:func:`eval_queries.links`)."""
    href = f"{links['page']}/tasks/{q(task_id)}"
    return f"{href}?run={q(run_id)}" if run_id else href


def rerun_url(links: Row, task_id: str, run_id: str) -> str:
    """The API route that re-runs a run, in the family of ``links``."""
    return f"{links['api']}/tasks/{q(task_id)}/{links['runs']}/{q(run_id)}/re-run"


def pretty(value: Any) -> str:
    """Indented JSON for a <pre> (escaped by the template, like any text)."""
    if isinstance(value, str):
        return value
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


def compact(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False,
                                                           default=str)


def diff_lines(diff: str | None) -> list[tuple[str, str]]:
    """A unified diff as (class, line): added green, removed red, hunks and file heads."""
    out = []
    for line in (diff or "").splitlines():
        if line.startswith(("+++", "---", "diff ", "index ", "new file", "deleted file")):
            kind = "file"
        elif line.startswith("@@"):
            kind = "hunk"
        elif line.startswith("+"):
            kind = "add"
        elif line.startswith("-"):
            kind = "del"
        else:
            kind = "ctx"
        out.append((kind, line))
    return out


def short_actor(actor: str | None) -> str:
    """``AGENT/agent/billing`` → ``agent/billing``: a job agent's stage says nothing here.
    The multi-agent card's ids are already relative to the agent ("" is the agent itself)."""
    if not actor:
        return "(root)"
    head, _, rest = actor.partition("/")
    return rest if head == "AGENT" and rest else actor


def source_counts(by_source: dict[str, int]) -> str:
    return " · ".join(f"{SOURCE_LABELS.get(k, k)} {n}" for k, n in by_source.items())


env.globals.update(eval_href=eval_queries.evaluation_path, project_href=eval_queries.project_path,
                   workflow_href=eval_queries.workflow_path,
                   task_href=task_href, rerun_url=rerun_url, SOURCE_LABELS=SOURCE_LABELS,
                   SOURCE_MEANINGS=views.SOURCE_MEANINGS)
env.filters.update(pretty=pretty, compact=compact, diff_lines=diff_lines,
                   short_actor=short_actor, source_counts=source_counts)


# -- routes ------------------------------------------------------------------------------------
# A workflow's pages are registered at both families' paths, one builder each: ``project_id``
# is in the path params only on seed 003's, and the builders pass it on (None: the
# evaluation's own family).
@twin(router, ["/evaluations"], "evaluations.html", "evaluations")
async def evaluations_page(request: Request, c: Ctx, p: auth.Principal) -> Data:
    limit = int_param(request, "limit", LISTED, 1, 1000)
    return await c.engine.read(lambda tx: eval_queries.evaluation_list(tx, limit))


@twin(router, ["/projects"], "projects.html", "projects")
@twin(router, ["/projects/{project_id}"], "projects.html", "projects")
async def projects_page(request: Request, c: Ctx, p: auth.Principal) -> Data:
    project: str | None = request.path_params.get("project_id")
    limit = int_param(request, "limit", LISTED, 1, 1000)
    return await c.engine.read(lambda tx: eval_queries.projects_page(tx, limit, project))


@twin(router, ["/evaluations/{evaluation_id}"], "evaluation.html", "evaluation")
@twin(router, ["/projects/{project_id}/workflows/{evaluation_id}"], "evaluation.html",
      "evaluation")
async def explorer_page(request: Request, c: Ctx, p: auth.Principal) -> Data:
    project: str | None = request.path_params.get("project_id")
    evaluation_id: str = request.path_params["evaluation_id"]
    limit = int_param(request, "limit", TASKS_SHOWN, 1, 1000)
    # A deep link to a task (?task=) with no page of its own opens the page holding it.
    offset = int_param(request, "offset", 0, 0, 2**62) \
        if "offset" in request.query_params else None
    focus = request.query_params.get("task")
    return await c.engine.read(lambda tx: eval_queries.explorer_page(
        tx, evaluation_id, project, limit=limit, offset=offset, focus=focus))


@twin(router, ["/evaluations/{evaluation_id}/tasks/{task_id}"], "eval_task.html", "eval_task")
@twin(router, ["/projects/{project_id}/workflows/{evaluation_id}/tasks/{task_id}"],
      "eval_task.html", "eval_task")
async def task_page(request: Request, c: Ctx, p: auth.Principal) -> Data:
    project: str | None = request.path_params.get("project_id")
    evaluation_id: str = request.path_params["evaluation_id"]
    task_id: str = request.path_params["task_id"]
    run_id = request.query_params.get("run") or None
    return await c.engine.read(
        lambda tx: eval_queries.task_page(tx, evaluation_id, task_id, run_id, project))
