"""The data behind the Evaluations and Projects pages: the lists, a Data Explorer, one task.

Each builder reads inside one transaction through the lookups and views the API uses
(:mod:`titan.master.evaluations.hierarchy`, :mod:`titan.master.evaluations.views`), so a
page shows exactly what the API answers. A workflow's pages are reached by two routes — its
evaluation's (``/evaluations/<id>``) and seed 003's (``/projects/<p>/workflows/<id>``) — and
are the same pages; ``links`` says which family one was opened through, so its links (tasks,
runs, re-run) stay in that family.
"""

from __future__ import annotations

import time
from urllib.parse import quote

from titan.dashboard.queries import paging
from titan.evals.agent_config import public_view
from titan.master.evaluations import hierarchy
from titan.master.evaluations import views as eval_views
from titan.status import EVAL_TERMINAL
from titan.storage.base import Row, Transaction

SEED_KEYS = ("user_instruction", "behavior_instructions", "initial_state", "failure_rules",
             "expected_outcome", "expected_steps", "kind")
#: A terminal run waits for its verdict (the judge runs after the run ends); past this long
#: without one, the judge is taken to have given up and the page stops re-reading itself.
JUDGE_GRACE_S = 300.0


def q(part: str) -> str:
    return quote(part, safe="")


def evaluation_path(evaluation_id: str) -> str:
    return "/evaluations/" + q(evaluation_id)


def project_path(project: str) -> str:
    return "/projects/" + q(project)


def workflow_path(project: str, evaluation_id: str) -> str:
    return f"{project_path(project)}/workflows/{q(evaluation_id)}"


def links(evaluation_id: str, project: str | None) -> Row:
    """Where a workflow's pages and API routes are, in the family the page was opened through
    (``project`` None: the evaluation's own; given: seed 003's, whose runs are agent-runs).
    Each page's API route is ``/api/v1`` or ``/api`` before the page's own path."""
    if project is None:
        page = evaluation_path(evaluation_id)
        return {"project": None, "page": page, "api": "/api/v1" + page, "runs": "runs"}
    page = workflow_path(project, evaluation_id)
    return {"project": project, "page": page, "api": "/api" + page, "runs": "agent-runs"}


def awaiting_verdict(status: str, judged: bool, judge_on: bool, ended_at: float | None) -> bool:
    """A run that ended moments ago and will get a verdict soon: still worth re-reading."""
    return (status in EVAL_TERMINAL and not judged and judge_on and ended_at is not None
            and time.time() - ended_at < JUDGE_GRACE_S)


def _awaiting(run: Row) -> bool:
    return awaiting_verdict(run["status"], run.get("judge") is not None,
                            bool((run.get("agent") or {}).get("judge", True)),
                            run.get("ended_at"))


def explorer_page(tx: Transaction, evaluation_id: str, project: str | None = None, *,
                  limit: int, offset: int | None, focus: str | None = None) -> Row:
    """The API's explorer with a page of its tasks (the summary counts them all: 3,000 rows
    made a 2.7 MB page Chromium took 2-3 s to show), plus ``polling`` (a run is in flight or
    awaits its verdict: the page re-reads itself every 3 s while it is true), ``links`` and
    the pager's fields. With no ``offset``, the page holding task ``focus`` (a deep link's
    ``?task=``: its modal opens from its row), else the first."""
    evaluation = hierarchy.workflow(tx, evaluation_id, project)
    view = eval_views.explorer(tx, evaluation)
    judge_on = bool(public_view(evaluation["agent"]).get("judge", True))
    runs = [t["run"] for t in view["tasks"] if t["run"]]
    view["polling"] = bool(view["summary"]["in_flight"]) or any(
        awaiting_verdict(r["status"], r["judge_verdict"] is not None, judge_on, r["ended_at"])
        for r in runs)
    view["links"] = links(evaluation_id, project)
    if offset is None:
        position = next((i for i, t in enumerate(view["tasks"]) if t["task_id"] == focus), 0)
        offset = position - position % limit
    view.update(paging(len(view["tasks"]), limit, offset))
    view["tasks"] = view["tasks"][offset:offset + limit]
    return view


def task_page(tx: Transaction, evaluation_id: str, task_id: str, run_id: str | None,
              project: str | None = None) -> Row:
    """One task: its seed, and the Agent Trace of ``run_id`` (default: its latest run)."""
    evaluation = hierarchy.workflow(tx, evaluation_id, project)
    task = hierarchy.task(tx, evaluation, task_id, project)
    history = tx.eval_runs(evaluation_id, task_id)
    run: Row | None = history[-1] if history else None
    if run_id:
        run = hierarchy.run(tx, evaluation, task, run_id, project)
    agent = public_view(evaluation["agent"])
    seed = task["seed"]
    trace = eval_views.trace(tx, evaluation, task, run) if run else None
    return {
        "evaluation": {"id": evaluation["id"], "project": evaluation["project"],
                       "description": evaluation.get("description"),
                       "agent": {k: agent.get(k) for k in ("name", "version", "kind")}},
        "task": {"id": task_id, "seed": {k: seed.get(k) for k in SEED_KEYS},
                 "run_count": len(history)},
        "run_id": run["id"] if run else None,
        # The shown run ended and its verdict is on its way; polling: re-read every 3 s.
        "judging": bool(run and _awaiting(run)),
        "polling": bool(trace and trace["live"]) or any(_awaiting(r) for r in history),
        "trace": trace,
        "links": links(evaluation_id, project),
    }


def evaluation_list(tx: Transaction, limit: int) -> Row:
    return {"evaluations": [hierarchy.workflow_row(r) for r in tx.list_evaluations(limit)]}


def projects_page(tx: Transaction, limit: int, project: str | None = None) -> Row:
    """Every project (or the one named) with its workflows, most recently changed first, at
    most ``limit`` each; a project none names is a 404."""
    if project is not None:
        workflows = hierarchy.workflows(tx, project, limit)["workflows"]  # 404s first
        listed = [p for p in tx.list_projects() if p["id"] == project]
        return {"project": project, "projects": [p | {"workflows": workflows}
                                                 for p in listed]}
    return {"project": None, "projects": [
        p | {"workflows": hierarchy.workflows(tx, p["id"], limit)["workflows"]}
        for p in tx.list_projects()]}
