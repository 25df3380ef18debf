"""What the evaluation pages and their JSON twins show: the data explorer's rows and one
run's Agent Trace (header, warning banner, judge card, seed, multi-agent card, timeline,
coding panels, debug panel). Pure reads; nothing here writes.
"""

from __future__ import annotations

import json
import time
from typing import Any

from titan.evals.agent_config import public_view
from titan.evals.failures import ERROR_CLASSES, FAILURE_MODES, PALETTES
from titan.evals.findings import ODYSSEY, SOURCES
from titan.evals.handoffs import ROOT_ACTOR
from titan.evals.handoffs import problem as handoff_problem
from titan.evals.structure import reconstruct
from titan.master.evaluations.dispatch import JOB_ROOT_ACTOR
from titan.master.evaluations.judging import trajectory
from titan.status import EVAL_ACTIVE
from titan.storage.base import ActionQuery, Row, RunQuery, Transaction

#: Each source's badge as seed 003 names it: the source's own word, but for
#: ``transport_error`` ("transport error") and a tool call the proxy never saw ("agent").
SOURCE_BADGES = {ODYSSEY: "odyssey", "injected": "injected", "passthrough": "passthrough",
                 "error": "error", "transport_error": "transport error",
                 "agent": "not proxied"}
#: What each badge means (seed 003's Tool-call sources table), for its hover text.
SOURCE_MEANINGS = {
    ODYSSEY: "simulated against the seeded world",
    "injected": "a failure rule fired",
    "passthrough": "forwarded to the registered tool endpoint, which answered",
    "error": "the simulator could not produce a valid response",
    "transport_error": "the passthrough hop failed (endpoint missing, refused or erroring)",
    "agent": "made by the agent without the proxy: Titan never saw it"}
PREVIEW = 400


def chip(error_class: str | None) -> Row | None:
    if not error_class:
        return None
    ec = ERROR_CLASSES.get(error_class)
    if ec is None:
        return {"error_class": error_class, "label": error_class, "palette": "danger",
                "hint": "", "meaning": PALETTES["danger"], "docs": FAILURE_MODES}
    return {"error_class": ec.name, "label": ec.chip, "palette": ec.palette, "hint": ec.hint,
            "meaning": PALETTES[ec.palette], "docs": ec.docs}


def row_verdict(run: Row) -> str:
    """The explorer's verdict: a run not judged (yet, or not judgeable) shows PENDING, and so
    does one that did not complete, whatever a judge said of it before Titan stopped judging
    those (a crashed agent that had answered showed PASS)."""
    if run.get("status") != "completed":
        return "PENDING"
    verdict = (run.get("judge") or {}).get("verdict")
    return verdict if verdict in ("PASS", "FAIL") else "PENDING"


def costs(run: Row, agent_run: Row | None) -> Row:
    """What the run cost: each part's priced calls in dollars, and how many of its LLM calls
    had no known price (``*_unpriced``): the figures are then lower bounds, written
    "≥ $X" (or "unknown" with nothing priced) as an agent run's cost is — never $0."""
    agent = float((agent_run or {}).get("cost_usd") or 0.0)
    sim = float(run.get("simulator_cost_usd") or 0.0)
    judge = float(run.get("judge_cost_usd") or 0.0)
    unpriced = {"agent_unpriced": int((agent_run or {}).get("unpriced_calls") or 0),
                "simulator_unpriced": int(run.get("simulator_unpriced_calls") or 0),
                "judge_unpriced": int(run.get("judge_unpriced_calls") or 0)}
    return {"agent_usd": agent, "simulator_usd": sim, "judge_usd": judge,
            "total_usd": round(agent + sim + judge, 10), **unpriced,
            "unpriced_calls": sum(unpriced.values())}


def latency_s(run: Row) -> float | None:
    if run.get("started_at") is None:
        return None
    end = run.get("ended_at") or time.time()
    return round(float(end) - float(run["started_at"]), 3)


def run_row(run: Row, agent_run: Row | None) -> Row:
    agent = run.get("agent") or {}
    judge = run.get("judge") or {}
    return {
        "id": run["id"], "status": run["status"], "chip": chip(run.get("error_class")),
        "error_class": run.get("error_class"), "error_detail": run.get("error_detail"),
        "agent": {"name": agent.get("name"), "version": agent.get("version")},
        "verdict": row_verdict(run), "judge_verdict": judge.get("verdict"),
        # Settled but not scored yet: what a client waiting for verdicts waits on.
        "judge_pending": (run["status"] == "completed" and (
            (not judge and bool(agent.get("judge", True)))
            or (bool(agent.get("criteria")) and run.get("criteria") is None))),
        # The llm_judge criteria's verdicts (seed 003's downstream custom scoring).
        "criteria": [{k: c.get(k) for k in ("name", "verdict", "score", "scale")}
                     for c in run.get("criteria") or []],
        "failure_mode": judge.get("failure_mode"), "judge_model": judge.get("model"),
        # Why a judged run has no verdict (no final response, the judge model failed...).
        "judge_unscored": (judge.get("reasoning") or "not judged")
        if judge.get("verdict") == "NOT_APPLICABLE" else None,
        "tool_calls": run.get("tool_calls") or 0,
        "by_source": {s: (run.get("by_source") or {}).get(s, 0) for s in SOURCES},
        "violations": run.get("violations") or 0,
        "latency_s": latency_s(run), "cost": costs(run, agent_run),
        "created_at": run["created_at"], "started_at": run.get("started_at"),
        "ended_at": run.get("ended_at"), "source_run": run.get("source_run"),
        "redispatch_of": run.get("redispatch_of"),
    }


def explorer(tx: Transaction, evaluation: Row) -> Row:
    """One row per task, showing its most recent run."""
    tasks = tx.list_tasks(evaluation["id"])
    runs: dict[str, list[Row]] = {}
    for r in tx.eval_runs(evaluation["id"]):
        runs.setdefault(r["task_id"], []).append(r)
    agent_runs = _agent_runs(tx, [h[-1]["id"] for h in runs.values()])
    rows = []
    for task in tasks:
        seed = task["seed"]
        history = runs.get(task["id"], [])
        latest = history[-1] if history else None
        rows.append({
            "task_id": task["id"], "kind": seed.get("kind") or "ledger",
            "user_instruction": seed.get("user_instruction"),
            "behavior_instructions": seed.get("behavior_instructions"),
            # Seed 003's name for the same value (its Behavior config column).
            "odyssey_seed": {"behavior_instructions": seed.get("behavior_instructions")},
            "expected_outcome": seed.get("expected_outcome"), "run_count": len(history),
            "run": run_row(latest, agent_runs.get(latest["id"])) if latest else None,
        })
    return {"evaluation": {k: evaluation.get(k) for k in ("id", "project", "description",
                                                          "created_at", "updated_at")}
            | {"agent": public_view(evaluation["agent"])}, "tasks": rows,
            "summary": _summary(rows)}


#: Agent runs read in one query each this many: one read per task made a 3,000-task
#: explorer 3,000 queries.
_RUNS_AT_ONCE = 500


def _agent_runs(tx: Transaction, run_ids: list[str]) -> dict[str, Row]:
    found: dict[str, Row] = {}
    for i in range(0, len(run_ids), _RUNS_AT_ONCE):
        chunk = tuple(run_ids[i:i + _RUNS_AT_ONCE])
        for r in tx.list_runs(RunQuery(ids=chunk), len(chunk), 0)[0]:
            found[r["id"]] = r
    return found


def _summary(rows: list[Row]) -> Row:
    verdicts = [r["run"]["verdict"] for r in rows if r["run"]]
    statuses = [r["run"]["status"] for r in rows if r["run"]]
    return {"tasks": len(rows), "runs": sum(r["run_count"] for r in rows),
            "pass": verdicts.count("PASS"), "fail": verdicts.count("FAIL"),
            # A cancelled run has no verdict (seed 003: PENDING) and is not waiting for one.
            "pending": sum(v == "PENDING" and s != "cancelled"
                           for v, s in zip(verdicts, statuses, strict=True)),
            "cancelled": statuses.count("cancelled"),
            "in_flight": sum(s in EVAL_ACTIVE for s in statuses),
            "cost_usd": round(sum(r["run"]["cost"]["total_usd"] for r in rows if r["run"]), 10),
            # LLM calls of no known price among them: cost_usd is then a lower bound.
            "unpriced_calls": sum(r["run"]["cost"]["unpriced_calls"] for r in rows if r["run"])}


def _json(text: Any) -> Any:
    if text is None or not isinstance(text, str):
        return text
    try:
        return json.loads(text)
    except ValueError:
        return text


def _timeline(tx: Transaction, run_id: str, calls: dict[int, Row]) -> list[Row]:
    """Agent turns (its LLM calls), proxied tool calls and live events, in order."""
    items = []
    for a in tx.list_actions(run_id, ActionQuery(), 5000, 0, preview=20_000)[0]:
        base = {"seq": a["seq"], "actor": a["actor"], "at": a["started_at"],
                "duration_ms": round(a["duration_ns"] / 1e6, 3)}
        if a["channel"] == "llm":
            inputs = _json(a["inputs"]) or {}
            messages = inputs.get("messages") if isinstance(inputs, dict) else None
            last = messages[-1].get("content") if messages and isinstance(messages[-1],
                                                                             dict) else None
            out = _json(a["outputs"])
            items.append(base | {"type": "turn", "model": a.get("model"),
                                 "prompt": str(last or "")[-PREVIEW:],
                                 "reply": (out.get("text") if isinstance(out, dict) else out),
                                 "tokens": {"input": a.get("input_tokens"),
                                            "output": a.get("output_tokens")},
                                 "cost_usd": a.get("cost_usd"), "outcome": a["outcome"]})
        elif a["channel"] == "tool":
            call = calls.get(a["seq"])
            items.append(base | {
                "type": "tool", "tool": a["name"],
                "source": call["source"] if call else "agent",
                "badge": SOURCE_BADGES.get(call["source"] if call else "agent"),
                "latency_ms": round(call["latency_ms"], 3) if call else base["duration_ms"],
                "arguments": _json(a["inputs"]), "response": _json(a["outputs"]),
                "error": a.get("error_message"), "ops": call["ops"] if call else None,
                "violations": call["violations"] if call else None,
                "state": call["state"] if call else None, "proxied": call is not None})
        elif a["channel"] == "custom":
            tags = _json(a.get("tags")) if isinstance(a.get("tags"), str) else a.get("tags")
            agent_clock = isinstance(tags, dict) and tags.get("clock") == "agent"
            items.append(base | {"type": "event", "kind": a["name"],
                                 "data": _json(a["inputs"]),
                                 "__occurred_at": a["started_at"] if agent_clock else None})
    # Seed 003: the three kinds interleave in time; an event by its __occurred_at (the
    # agent's clock) when it gave one, else by its arrival at the proxy.
    items.sort(key=lambda item: (item["at"], item["seq"]))
    return items


def _structure(calls: list[Row], timeline: list[Row], topology: Row | None,
               root: str) -> Row | None:
    """The multi-agent graph, with actor paths relative to the agent itself (``root``: a
    job agent's own actor path, an HTTP agent's ``agent``), so node ids are the sub-agents'
    names the topology and ``evals.handoff(to)`` use. A malformed handoff (recorded before
    the proxy refused them) is left out."""

    def rel(actor: Any) -> str:
        actor = str(actor or "")
        if actor in (root, ROOT_ACTOR):  # the proxy's name for an agent that names no actor
            return ""
        return str(actor[len(root) + 1:] if root and actor.startswith(root + "/") else actor)

    handoffs = []
    for ev in timeline:
        if ev["type"] == "event" and ev["kind"] == "handoff" and \
                handoff_problem(ev["data"]) is None:
            handoffs.append({"seq": ev["seq"], "from": rel(ev["data"].get("from") or ev["actor"]),
                             "to": rel(ev["data"].get("to")), "at": ev["at"],
                             "reason": ev["data"].get("reason")})
    return reconstruct([{"seq": c["seq"], "actor": rel(c["actor"]), "tool": c["tool"],
                         "at": c["at"]} for c in calls], handoffs, topology)


def trace(tx: Transaction, evaluation: Row, task: Row, run: Row) -> Row:
    """Everything the Agent Trace tab shows for one run."""
    agent_run = tx.get_run(run["id"])
    calls = trajectory(tx, run["id"])
    timeline = _timeline(tx, run["id"], {c["seq"]: c for c in calls})
    agent = run.get("agent") or {}
    seed = task["seed"]
    warning = None
    # Not for a task that expects a refusal or no step at all: no call is what it asks for.
    expects_none = seed.get("expected_outcome") == "refusal" or seed.get("expected_steps") == 0
    if run["status"] == "completed" and agent.get("tools") and not calls and not expects_none:
        warning = ("The run completed, but the agent declared tools and made no tool calls "
                   "through the proxy. The proxy was probably unreachable from the agent, or "
                   "its framework swallowed the tool errors (see the debug panel).")
    history = tx.eval_runs(evaluation["id"], task["id"])
    return {
        "evaluation": evaluation["id"], "task_id": task["id"],
        "header": run_row(run, agent_run) | {"live": run["status"] in EVAL_ACTIVE},
        "completion_warning": warning,
        "judge": run.get("judge"), "criteria": run.get("criteria") or [],
        "seed": {k: seed.get(k) for k in ("user_instruction", "behavior_instructions",
                                          "initial_state", "failure_rules",
                                          "expected_outcome", "expected_steps", "kind")}
        | {"odyssey_seed": {k: seed.get(k) for k in ("behavior_instructions", "initial_state",
                                                     "failure_rules")}},
        # The agent itself is the card's root: a job agent's actions are AGENT/agent's, an
        # HTTP agent's own (no actor named) the proxy's "agent".
        "structure": _structure(calls, timeline, agent.get("topology"),
                                JOB_ROOT_ACTOR if agent.get("kind") == "job" else ROOT_ACTOR),
        "timeline": timeline, "messages": run.get("messages"),
        "world": run.get("world"), "final_response": run.get("final_response"),
        "coding": run.get("coding"),
        "debug": {"raw_response": run.get("raw_response"),
                  "soft_warnings": run.get("soft_warnings") or [],
                  "proxy_refusals": run.get("proxy_refusals") or 0,
                  "error_detail": run.get("error_detail")},
        "runs": [{"id": r["id"], "status": r["status"], "verdict": row_verdict(r),
                  "created_at": r["created_at"], "source_run": r.get("source_run"),
                  "redispatch_of": r.get("redispatch_of")} for r in reversed(history)],
        "live": any(r["status"] in EVAL_ACTIVE for r in history),
    }
