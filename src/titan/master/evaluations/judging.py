"""Scoring a settled evaluation run with the judge, off the event loop.

The judge (:mod:`titan.evals.judge`) sees the task, the trajectory — the proxied tool calls in
order, or a coding run's commands and diff — and the final response. Its cost is kept apart
from the agent's and the simulator's, and added to the run's total on every view.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from titan.evals import criteria
from titan.evals.judge import judge
from titan.storage.base import ActionQuery, Row, Transaction

if TYPE_CHECKING:
    from titan.master.scheduling.engine import Engine

DIFF_FOR_JUDGE = 6_000


def _outputs(action: Row) -> Any:
    text = action.get("outputs")
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


def workspace_calls(steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A coding run's trajectory as the judge reads tool calls: commands as ``shell``, edits
    as ``edit``, a harness's other tools by name; its agent turns are not calls."""
    calls: list[dict[str, Any]] = []
    for s in steps:
        kind = s.get("kind", "command")
        if kind == "message":
            continue
        tool, args = {"command": ("shell", {"command": s.get("command")}),
                      "edit": ("edit", {"path": s.get("path")})}.get(
            kind, (str(s.get("tool") or "tool"), s.get("input")))
        calls.append({"seq": len(calls) + 1, "tool": tool, "arguments": args,
                      "response": s.get("output"), "source": "workspace",
                      "error": s.get("error") or None})
    return calls


def trajectory(tx: Transaction, run_id: str) -> list[Row]:
    """The run's proxied tool calls in order, in the shape the judge and pages share."""
    calls = {c["seq"]: c for c in tx.eval_calls(run_id)}
    out = []
    for a in tx.list_actions(run_id, ActionQuery(channel="tool"), 5000, 0)[0]:
        call = calls.get(a["seq"])
        if call is None:
            continue
        try:
            arguments = json.loads(a["inputs"])
        except ValueError:
            arguments = a["inputs"]
        out.append({"seq": a["seq"], "actor": a["actor"], "tool": a["name"],
                    "arguments": arguments, "response": _outputs(a), "source": call["source"],
                    "error": a.get("error_message"), "latency_ms": call["latency_ms"],
                    "ops": call["ops"], "violations": call["violations"],
                    "state": call["state"], "at": a["started_at"]})
    return out


async def judge_run(engine: Engine, run_id: str, *, judge_model: str | None,
                    publish: Callable[[Row], None]) -> None:
    """Score the run — the built-in judge's verdict and any ``llm_judge`` criteria — and store
    the results; ``judge_model`` when its agent names none."""

    def read(tx: Transaction) -> tuple[Row, Row, list[Row]] | None:
        row = tx.get_eval_run(run_id)
        task = tx.get_task(row["evaluation_id"], row["task_id"]) if row else None
        if row is None or task is None:
            return None
        return row, task["seed"], trajectory(tx, run_id)

    found = await engine.read(read)
    if found is None:
        return
    row, seed, calls = found
    # Downstream criteria (seed 003's llm_judge): the workflow's, then the task's own.
    custom = list(row["agent"].get("criteria") or []) + [
        s for s in seed.get("scorers") or [] if s.get("type") == criteria.LLM_JUDGE]
    judged = row["agent"].get("judge", True)
    if not judged and not custom:
        return
    final = row.get("final_response")
    coding = row.get("coding") or {}
    if coding and row["status"] == "completed":
        # A coding run's trajectory is its commands; its outcome is the diff.
        calls = calls + workspace_calls(coding.get("trajectory") or [])
        diff = (coding.get("diff") or "")[:DIFF_FOR_JUDGE]
        final = f"{final or '(no message)'}\n\nFinal diff:\n{diff or '(no changes)'}"
    model = row["agent"].get("judge_model") or judge_model
    loop = asyncio.get_running_loop()
    fields: Row = {}
    cost = 0.0
    unpriced = 0  # model calls of no known price: not in ``cost``, and counted
    if judged:
        verdict = await loop.run_in_executor(None, lambda: judge(seed, {
            "final_response": final, "messages": row.get("messages"), "tool_calls": calls,
            "error_class": row.get("error_class"), "status": row["status"]}, model=model))
        fields["judge"] = verdict.to_dict()
        cost += float(verdict.cost_usd or 0.0)
        unpriced += verdict.cost_usd is None
    if custom:
        target = {"status": row["status"],
                  "final_response": row.get("final_response"), "messages": row.get("messages"),
                  "tool_calls": calls, "diff": coding.get("diff"),
                  "trajectory": coding.get("trajectory"), "raw_response": row.get("raw_response")}
        scored = await loop.run_in_executor(
            None, lambda: criteria.score_all(custom, seed, target, model=model))
        fields["criteria"] = scored
        cost += sum(float(c["cost_usd"] or 0.0) for c in scored)
        unpriced += sum(c["cost_usd"] is None for c in scored)
    # Criteria are judging too: their cost is the judge's share of the run's total.
    fields["judge_cost_usd"] = cost
    fields["judge_unpriced_calls"] = unpriced
    await engine.run(lambda tx: tx.update_eval_run(run_id, fields))
    publish(row | fields)
