"""Registering an evaluation: its spec put (``PUT /api/v1/evaluations/{e}``, ``titan eval
create``) and its tasks seeded (``POST …/tasks``), checked and written; dispatching the runs
of the tasks seeded is the service's (:mod:`~titan.master.evaluations.service`).

An agent config is checked beyond its own shape (:mod:`titan.evals.agent_config`): against
the egress policy for the URLs it names, and that every model it names can be called from
this master.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from titan.errors import LLMError, NotFound, ValidationFailed
from titan.evals.agent_config import check_task_tools, parse_agent
from titan.evals.tasks import parse_tasks
from titan.formats import check_eval_id
from titan.master.egress import EgressPolicy
from titan.storage.base import Row, Transaction

if TYPE_CHECKING:
    from titan.master.scheduling.engine import Engine

async def put_evaluation(engine: Engine, egress: EgressPolicy, evaluation_id: str,
                         body: Any) -> Row:
    """Create or update an evaluation: its agent, description, project and tasks (added to
    those it has; none is dispatched)."""
    check_eval_id(evaluation_id, "evaluation")  # and projects: one rule with the client's
    if not isinstance(body, dict):
        raise ValidationFailed("the body must be a JSON object {agent, description, "
                               "project, tasks}")
    unknown = set(body) - {"agent", "description", "project", "tasks"}
    if unknown:
        raise ValidationFailed(f"unknown field {sorted(unknown)[0]!r} (known: agent, "
                               "description, project, tasks)",
                               details={"field": sorted(unknown)[0]})
    # Left out, the project stays what it was (a new evaluation's is "default"): applying
    # a spec that names none again must not move a workflow between projects.
    project = check_eval_id(body["project"], "project") if body.get("project") is not None \
        else None
    agent = parse_agent(body.get("agent"))
    check_egress(egress, agent)
    await check_models(agent)
    tasks = parse_tasks(body["tasks"], "tasks") if body.get("tasks") is not None else []
    check_task_tools(tasks, agent)
    description = body.get("description")
    if description is not None and not isinstance(description, str):
        raise ValidationFailed(f"description must be a string, got {type(description).__name__}",
                               details={"field": "description"})
    if description is not None and "\x00" in description:  # SQLite kept it; PostgreSQL refused
        raise ValidationFailed("description may not contain NUL characters (U+0000)",
                               details={"field": "description"})
    now = time.time()

    def op(tx: Transaction) -> Row:
        # Refused here, not when a run is dispatched (it failed there as a 500); used now,
        # in the transaction that names it (garbage collection: see use_scripts).
        sha = agent.get("script_sha256")
        if sha and not tx.use_blobs({sha}, now):
            raise ValidationFailed(f"agent.script_sha256 {sha[:12]}… was not uploaded (PUT "
                                   "/api/v1/blobs/{sha256} first, or `titan eval run` "
                                   "uploads it)", details={"field": "agent.script_sha256"})
        existing = tx.get_evaluation(evaluation_id)
        row: Row = {"id": evaluation_id, "description": description, "agent": agent,
                    "created_at": existing["created_at"] if existing else now,
                    "updated_at": now}
        tx.put_evaluation(row if project is None else row | {"project": project})
        added = tx.put_tasks(evaluation_id, [{"id": t.id, "seed": t.to_dict()}
                                             for t in tasks], now)
        found = tx.get_evaluation(evaluation_id)
        assert found is not None
        return found | {"tasks_added": added, "created": existing is None}

    return await engine.run(op)


async def seed_tasks(engine: Engine, evaluation_id: str, body: Any, *,
                     run: bool) -> tuple[Row, bool]:
    """Seed tasks (an existing id is replaced, its runs kept), committed; with whether their
    runs are to be dispatched: ``run``, unless the body says ``"run": false``."""
    raw = body.get("tasks") if isinstance(body, dict) else body
    if raw is None:
        raise ValidationFailed('the body must be {"tasks": [...]} or a list of tasks')
    if isinstance(body, dict) and "run" in body:
        if not isinstance(body["run"], bool):
            raise ValidationFailed("run must be true or false", details={"field": "run"})
        run = run and body["run"]
    source = body.get("source", "tasks") if isinstance(body, dict) else "tasks"
    tasks = parse_tasks(raw, str(source))
    if not tasks:
        # Said as what it is: dispatching nothing answered 409 "has no tasks to run; add
        # some first" to an evaluation that had tasks.
        raise ValidationFailed(f"{source}: the list holds no task, so nothing was seeded",
                               details={"field": "tasks"})
    now = time.time()

    def op(tx: Transaction) -> Row:
        evaluation = tx.get_evaluation(evaluation_id)
        if evaluation is None:
            raise NotFound(f"no evaluation {evaluation_id!r}")
        check_task_tools(tasks, evaluation["agent"])
        added = tx.put_tasks(evaluation_id, [{"id": t.id, "seed": t.to_dict()}
                                             for t in tasks], now)
        return {"added": added, "updated": len(tasks) - added,
                "tasks": [t.id for t in tasks]}

    return await engine.run(op), run


def check_egress(egress: EgressPolicy, agent: Row) -> None:
    """Refuse at registration a URL whose host is an address the policy forbids (names
    are resolved and checked at every call)."""
    targets = [("agent.url", agent.get("url"))] + [
        (f"agent.tools[{i}].endpoint", t.get("endpoint"))
        for i, t in enumerate(agent.get("tools") or [])]
    for where, url in targets:
        why = egress.check_url(url) if url else None
        if why is not None:
            raise ValidationFailed(f"{where}: the egress policy refuses it: {why}",
                                   details={"field": where})


async def check_models(agent: Row) -> None:
    """Refuse a judge or simulator model no call can reach (an unknown provider, a hosted
    one whose key this master lacks), as ``titan eval calibrate --judge-model`` does:
    accepted, it made every run NOT APPLICABLE with LiteLLM's raw error."""
    from titan import llm

    named = [(f"agent.{key}", agent.get(key)) for key in ("judge_model", "simulator_model")]
    named += [(f"agent.criteria[{i}].model", c.get("model"))
              for i, c in enumerate(agent.get("criteria") or [])]
    loop = asyncio.get_running_loop()
    for where, model in named:
        if not model:
            continue
        try:
            await loop.run_in_executor(None, llm.usable, model)
        except LLMError as exc:
            raise ValidationFailed(f"{where}: {exc}", details={"field": where}) from None
