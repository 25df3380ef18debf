"""The Evaluations pages: the list (``/evaluations``), one evaluation's Data Explorer
(``/evaluations/<id>``) and one task with its Agent Trace (``/evaluations/<id>/tasks/<task>``,
``?run=<run id>`` for an earlier run), each also served as ``<path>.json``.

``pages.py`` adds ``router.routes`` to its own. The data is the API's own views
(:mod:`titan.master.evaluations.views`), read in one transaction, so a page shows exactly what
``GET /api/v1/evaluations/...`` answers; the trace of a task page *is* the API's trace.
While a run is in flight, the pages' scripts re-read them every 3 s until it is terminal.
"""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request

from titan.dashboard.render import Data, env, int_param, twin
from titan.errors import NotFound
from titan.evals.agent_config import public_view
from titan.master.auth import tokens as auth
from titan.master.context import Ctx
from titan.master.evaluations import views as eval_views
from titan.status import EVAL_TERMINAL
from titan.storage.base import Row, Transaction

router = APIRouter()
LISTED = 200
SEED_KEYS = ("user_instruction", "behavior_instructions", "initial_state", "failure_rules",
             "expected_outcome", "expected_steps", "kind")
#: The tool-call sources' badge labels (eval_views.SOURCES, plus calls the proxy never saw).
#: A terminal run waits for its verdict (the judge runs after the run ends); past this long
#: without one, the judge is taken to have given up and the page stops re-reading itself.
JUDGE_GRACE_S = 300.0
SOURCE_LABELS = {"simulated": "simulated", "injected": "injected", "passthrough": "passthrough",
                 "error": "error", "transport_error": "transport error", "agent": "not proxied"}


# -- links and formatting (template globals and filters) --------------------------------------
def eval_href(evaluation_id: str) -> str:
    return "/evaluations/" + quote(evaluation_id, safe="")


def task_href(evaluation_id: str, task_id: str, run_id: str | None = None) -> str:
    href = f"{eval_href(evaluation_id)}/tasks/{quote(task_id, safe='')}"
    return f"{href}?run={quote(run_id, safe='')}" if run_id else href


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


env.globals.update(eval_href=eval_href, task_href=task_href, SOURCE_LABELS=SOURCE_LABELS)
env.filters.update(pretty=pretty, compact=compact, diff_lines=diff_lines,
                   short_actor=short_actor, source_counts=source_counts)


# -- data --------------------------------------------------------------------------------------
def _evaluation(tx: Transaction, evaluation_id: str) -> Row:
    found = tx.get_evaluation(evaluation_id)
    if found is None:
        raise NotFound(f"no evaluation {evaluation_id!r}", details={"id": evaluation_id})
    return found


def awaiting_verdict(status: str, judged: bool, judge_on: bool, ended_at: float | None) -> bool:
    """A run that ended moments ago and will get a verdict soon: still worth re-reading."""
    return (status in EVAL_TERMINAL and not judged and judge_on and ended_at is not None
            and time.time() - ended_at < JUDGE_GRACE_S)


def explorer_page(tx: Transaction, evaluation_id: str) -> Data:
    """The API's explorer, plus ``polling``: whether a run is in flight or awaits its verdict
    (the page re-reads itself every 3 s while it is true)."""
    evaluation = _evaluation(tx, evaluation_id)
    view = eval_views.explorer(tx, evaluation)
    judge_on = bool(public_view(evaluation["agent"]).get("judge", True))
    runs = [t["run"] for t in view["tasks"] if t["run"]]
    view["polling"] = bool(view["summary"]["in_flight"]) or any(
        awaiting_verdict(r["status"], r["judge_verdict"] is not None, judge_on, r["ended_at"])
        for r in runs)
    return view


def _awaiting(run: Row) -> bool:
    return awaiting_verdict(run["status"], run.get("judge") is not None,
                            bool((run.get("agent") or {}).get("judge", True)),
                            run.get("ended_at"))


def evaluation_list(tx: Transaction, limit: int) -> Data:
    return {"evaluations": [r | {"agent": public_view(r["agent"])}
                            for r in tx.list_evaluations(limit)]}


def task_page(tx: Transaction, evaluation_id: str, task_id: str, run_id: str | None) -> Data:
    """One task: its seed, and the Agent Trace of ``run_id`` (default: its latest run)."""
    evaluation = _evaluation(tx, evaluation_id)
    task = tx.get_task(evaluation_id, task_id)
    if task is None:
        raise NotFound(f"evaluation {evaluation_id!r} has no task {task_id!r}",
                       details={"task_id": task_id})
    history = tx.eval_runs(evaluation_id, task_id)
    run: Row | None = history[-1] if history else None
    if run_id:
        run = tx.get_eval_run(run_id)
        if run is None or run["evaluation_id"] != evaluation_id or run["task_id"] != task_id:
            raise NotFound(f"task {task_id!r} has no run {run_id!r}", details={"run": run_id})
    agent = public_view(evaluation["agent"])
    seed = task["seed"]
    trace = eval_views.trace(tx, evaluation, task, run) if run else None
    return {
        "evaluation": {"id": evaluation["id"], "description": evaluation.get("description"),
                       "agent": {k: agent.get(k) for k in ("name", "version", "kind")}},
        "task": {"id": task_id, "seed": {k: seed.get(k) for k in SEED_KEYS},
                 "run_count": len(history)},
        "run_id": run["id"] if run else None,
        # The shown run ended and its verdict is on its way; polling: re-read every 3 s.
        "judging": bool(run and _awaiting(run)),
        "polling": bool(trace and trace["live"]) or any(_awaiting(r) for r in history),
        "trace": trace,
    }


# -- routes ------------------------------------------------------------------------------------
@twin(router, ["/evaluations"], "evaluations.html", "evaluations")
async def evaluations_page(request: Request, c: Ctx, p: auth.Principal) -> Data:
    limit = int_param(request, "limit", LISTED, 1, 1000)
    return await c.engine.read(lambda tx: evaluation_list(tx, limit))


@twin(router, ["/evaluations/{evaluation_id}"], "evaluation.html", "evaluation")
async def evaluation_page(request: Request, c: Ctx, p: auth.Principal) -> Data:
    evaluation_id: str = request.path_params["evaluation_id"]
    return await c.engine.read(lambda tx: explorer_page(tx, evaluation_id))


@twin(router, ["/evaluations/{evaluation_id}/tasks/{task_id}"], "eval_task.html", "eval_task")
async def eval_task_page(request: Request, c: Ctx, p: auth.Principal) -> Data:
    evaluation_id: str = request.path_params["evaluation_id"]
    task_id: str = request.path_params["task_id"]
    run_id = request.query_params.get("run") or None
    return await c.engine.read(lambda tx: task_page(tx, evaluation_id, task_id, run_id))
