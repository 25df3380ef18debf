"""The JSON shapes of agent runs and their actions (the API's, the dashboard's, the exports')."""

from __future__ import annotations

import json
import time
from collections.abc import Collection, Sequence
from typing import Any

from titan.errors import ValidationFailed
from titan.formats import cut_text, dollars
from titan.master.runs.budgets import effective_budget
from titan.master.runs.compliance import started_by_label, total
from titan.master.runs.events import success_rate
from titan.master.runs.stages import code_version
from titan.master.scheduling.state import TERMINAL
from titan.master.scheduling.views import agent_run_view
from titan.retention import DEFAULT_CLASS
from titan.status import RUN_STATUSES
from titan.storage.base import Row, RunQuery, Transaction
from titan.storage.base_runs import RUN_SORTS
from titan.trace.naming import DRIVER_STAGE, run_aliases, stage_label
from titan.windows import check_window, deletion_cutoff

LIST_PREVIEW = 400  # characters of inputs/outputs a page of actions carries
#: The most runs one export names (``run=`` repeated).
MAX_IDS = 1000
INTERVENTION_ALERT = 0.2  # blocked + replayed share of actions that makes a run an intercept


def run_view(run: Row, budget: float | None = None, now: float | None = None) -> Row:
    started, ended = run.get("started_at") or run["created_at"], run.get("ended_at")
    if run.get("status") == "running":
        # Its ended_at may be set while it runs: when its driver finished, kept until its
        # last stage ends it (master/runs/service.py). A running run has not ended.
        ended = None
        duration = max(0.0, (now or time.time()) - started)
    else:
        duration = max(0.0, (ended or run.get("last_action_at") or started) - started)
    n = run.get("action_count") or 0
    interventions = (run.get("blocked_count") or 0) + (
        0 if run.get("replay_of") else run.get("replayed_count") or 0)  # a replay serves by design
    effective = run.get("budget_usd") if run.get("budget_usd") is not None else budget
    return {
        "id": run["id"], "agent_id": run.get("agent_id"),
        "agent_version": run.get("agent_version"), "status": run.get("status", "running"),
        "started_at": started, "ended_at": ended, "duration_s": round(duration, 3),
        "action_count": n, "cost_usd": round(float(run.get("cost_usd") or 0.0), 8),
        # LLM calls of unknown price: with any, cost_usd is what the priced ones cost.
        "unpriced_calls": run.get("unpriced_calls") or 0,
        "success_count": run.get("success_count") or 0,
        "error_count": run.get("error_count") or 0,
        "blocked_count": run.get("blocked_count") or 0,
        "replayed_count": run.get("replayed_count") or 0,
        "success_rate": success_rate(run),
        "intervention_rate": round(interventions / n, 4) if n else None,
        "budget_usd": effective, "run_budget_usd": run.get("budget_usd"),
        "over_budget": bool(run.get("over_budget_at")), "over_budget_at": run.get("over_budget_at"),
        "blocked": bool(run.get("blocked")), "error": run.get("error"),
        "tags": run.get("tags"), "code_version": run.get("code_version"),
        "replay_of": run.get("replay_of"), "last_action_at": run.get("last_action_at"),
        # Compliance (seed 004): who started it, its retention class, PII redaction found.
        "started_by": run.get("started_by"),
        "started_by_label": started_by_label(run.get("started_by")),
        "retention_class": run.get("retention_class") or DEFAULT_CLASS,
        "pii": run.get("pii") or {}, "archived": run.get("archived_at") is not None,
        "archived_at": run.get("archived_at"),
        # The run ledger (titan/ledger.py): its last action's chain hash, and where the
        # chain starts (None for a run recorded before the ledger existed).
        "chain_head": run.get("chain_head"), "chain_start": run.get("chain_start"),
    }


def progress(counts: dict[str, int]) -> Row | None:
    """How far a run's stages are: jobs settled of all its jobs (seed 004's completion %).
    None for a run that submitted no stage: nothing says how much of it is left."""
    total = sum(counts.values())
    if not total:
        return None
    done = sum(n for state, n in counts.items() if state in TERMINAL)
    return {"done": done, "total": total, "percent": round(100 * done / total)}


def runs_view(tx: Transaction, rows: list[Row], whole_error: bool = False) -> list[Row]:
    """Runs as a list shows them: a run's error (up to 100,000 characters) cut to
    :data:`~titan.formats.ERROR_SHOWN`, saying how much more there is, unless
    ``whole_error`` (one run, an export): a page of runs carried each whole."""
    budgets: dict[str, float | None] = {}
    running = [r["id"] for r in rows if r.get("status") == "running"]
    counts = tx.run_job_counts(running) if running else {}
    out = []
    for r in rows:
        agent = r.get("agent_id")
        if r.get("budget_usd") is None and agent and agent not in budgets:
            found = tx.get_agent(agent)
            budgets[agent] = found["budget_usd"] if found else None
        view = run_view(r, budgets.get(agent or ""))
        view["progress"] = progress(counts[r["id"]]) if r["id"] in counts else None
        if view["error"] and not whole_error:
            view["error"] = cut_text(view["error"])
        out.append(view)
    return out


def intercept_reasons(run: Row) -> list[str]:
    reasons = []
    if run["status"] == "failed":
        reasons.append("failed" + (f": {run['error']}" if run.get("error") else ""))
    if run["over_budget"] and not run["blocked"]:
        # It went over, then its budget was raised (which released it): still an intercept,
        # worded as what is true now, not "over budget ($0.01 of $5.00)".
        reasons.append(f"went over budget (since raised to {dollars(run['budget_usd'] or 0.0)}; "
                       f"spent {dollars(run['cost_usd'])})")
    elif run["over_budget"]:
        # As every cost is written (formats.dollars): a budget of $0.00002 read $0.0000.
        reasons.append(f"over budget ({dollars(run['cost_usd'])} of "
                       f"{dollars(run['budget_usd'] or 0.0)})")
    rate = run.get("intervention_rate")
    if rate is not None and rate >= INTERVENTION_ALERT:
        reasons.append(f"high intervention rate ({rate:.0%} of actions blocked or replayed)")
    return reasons


def run_detail(tx: Transaction, run: Row) -> Row:
    """A run with its stages and its cost broken down by stage, actor and channel."""
    out = run_view(run, effective_budget(tx, run) if run.get("budget_usd") is None else None)
    staged = agent_run_view(tx, run)
    stages = staged["stages"]
    out["stages"] = stages
    total: dict[str, int] = {}
    latest = {s["name"]: s for s in stages}  # a stage submitted again: its latest run counts
    for s in latest.values():
        for state, n in s["counts"].items():
            total[state] = total.get(state, 0) + n
    out["progress"] = progress(total)
    out["stage_status"] = staged["status"] if stages else None
    rows = tx.action_breakdown(run["id"])
    by_actor: dict[str, Row] = {}
    by_channel: dict[str, Row] = {}
    by_stage: dict[str, Row] = {}
    labels = [s["label"] for s in stages]
    # A replay runs its original's driver (the orchestrator) as its DRIVER stage's job: what
    # no other stage's job recorded, that job did (it showed as "(no stage)" beside a strip
    # that said DRIVER).
    stage_rule = run_stages(labels, bool(run.get("replay_of")))
    for r in rows:
        # Only a stage the run has: a sub-agent's actor (support-bot/refunds, an OTLP span
        # tree's) is no stage, and showed as one.
        stage = stage_rule.of(r["actor"])
        for table, key in ((by_actor, r["actor"]), (by_channel, r["channel"]),
                           (by_stage, stage or "")):
            acc = table.setdefault(key, {"actions": 0, "cost_usd": 0.0, "duration_ns": 0,
                                         "input_tokens": 0, "output_tokens": 0,
                                         "unpriced_calls": 0})
            for k in acc:
                acc[k] += r[k]
    out["by_actor"] = [{"actor": k, **v} for k, v in sorted(by_actor.items())]
    out["by_channel"] = [{"channel": k, **v} for k, v in sorted(by_channel.items())]
    out["by_stage"] = [{"stage": k or None, **v} for k, v in sorted(
        by_stage.items(), key=lambda kv: (labels.index(kv[0]) if kv[0] in labels else 1 << 30,
                                          kv[0]))]
    for s in stages:
        s["cost_usd"] = by_stage.get(s["label"], {}).get("cost_usd", 0.0)
        s["actions"] = by_stage.get(s["label"], {}).get("actions", 0)
        s["unpriced_calls"] = by_stage.get(s["label"], {}).get("unpriced_calls", 0)
    scripts = tx.run_scripts(run["id"])
    out["scripts"] = [{"filename": f, "sha256": s} for f, s in scripts]
    out["code_version"] = run.get("code_version") or code_version(scripts)
    out["replay"] = run.get("replay")
    out["code"] = run.get("code")
    out["tokens"] = {"input": sum(r["input_tokens"] for r in rows),
                     "output": sum(r["output_tokens"] for r in rows)}
    return out


def stage_of(actor: str) -> str | None:
    """Job actors are ``STAGE/job``: the stage is the first part."""
    return actor.split("/", 1)[0] if "/" in actor else None


class Stages(frozenset[str]):
    """A run's stage labels (ITER1), and ``rest``: the stage of an action no stage's job
    recorded — a replay's DRIVER (it runs the original's orchestrator), else none."""

    rest: str | None = None

    def of(self, actor: str) -> str | None:
        """The stage an action of ``actor`` belongs to (``by_stage`` and each action agree)."""
        stage = stage_of(actor)
        return stage if stage in self else self.rest


def run_stages(labels: Collection[str], replay: bool) -> Stages:
    stages = Stages(labels)
    stages.rest = DRIVER_STAGE if replay and DRIVER_STAGE in stages else None
    return stages


def stage_labels(tx: Transaction, run: Row) -> Stages:
    """The labels of the run's stages, as its actions' actors begin with them (ITER1)."""
    dags, _ = tx.list_dags(agent_run_id=run["id"], limit=10_000, newest_first=False)
    aliases = run_aliases(run)
    return run_stages([stage_label(d["name"], run["id"], aliases) for d in dags],
                      bool(run.get("replay_of")))


def _payload(text: str | None, size: int, blob: bool) -> tuple[Any, bool]:
    """(value, complete): the parsed JSON when the text read is all of it (not a blob's
    preview, not cut short by a page's preview length), else the text as a preview."""
    if text is None:
        return None, True
    if not blob and len(text.encode()) >= size:
        try:
            return json.loads(text), True
        except ValueError:
            return text, False
    return text, False


def action_view(a: Row, stages: Collection[str]) -> Row:
    """``stages``: the run's stage labels (:func:`stage_labels`). Only one of them is an
    action's stage: a sub-agent's actor (support-bot/critic) is none, as in ``by_stage``."""
    stage = stages.of(a["actor"]) if isinstance(stages, Stages) else stage_of(a["actor"])
    stage = stage if stage in stages else None
    inputs, inputs_complete = _payload(a["inputs"], a["inputs_size"], a["inputs_blob"])
    outputs, outputs_complete = _payload(a["outputs"], a["outputs_size"], a["outputs_blob"])
    error = ({"type": a["error_type"], "message": a["error_message"]}
             if a["error_type"] or a["error_message"] else None)
    if error and error["message"] and (a.get("error_length") or 0) > len(error["message"]):
        # A page's preview of it (list_actions): said so, as for a run's error in a list.
        error["message"] = cut_text(error["message"], len(error["message"]), a["error_length"])
    usage = {k: a[k] for k in ("input_tokens", "output_tokens", "cached_tokens",
                               "reasoning_tokens") if a.get(k) is not None}
    return {
        "seq": a["seq"], "id": a["id"], "parent_id": a["parent_id"], "actor": a["actor"],
        "stage": stage, "channel": a["channel"], "name": a["name"],
        # Seed 004's spelling of the name (its example action is {"action": "call_llm",
        # ...}, taken as written): what is posted in that shape reads back in it.
        "action": a["name"], "ordinal": a["ordinal"], "outcome": a["outcome"], "model": a["model"], "usage": usage,
        "cost_usd": a["cost_usd"], "cost_source": a["cost_source"],
        "started_at": a["started_at"], "duration_ns": a["duration_ns"],
        "duration_ms": round(a["duration_ns"] / 1e6, 3), "tags": a["tags"], "error": error,
        "inputs": inputs, "inputs_complete": inputs_complete, "inputs_hash": a["inputs_hash"],
        "inputs_size": a["inputs_size"],
        "outputs": outputs, "outputs_complete": outputs_complete,
        "outputs_hash": a["outputs_hash"], "outputs_size": a["outputs_size"],
        "recorded_at": a["recorded_at"], "replay_status": a.get("replay_status"),
        # What PII redaction replaced before storage: counts by pattern, all fields, and by
        # field (inputs, outputs, error); the matched values are never kept.
        "pii": total(a.get("pii")), "pii_fields": a.get("pii") or {},
        "chain_hash": a.get("chain_hash"),
    }


def csv_choices(value: str | list[str] | None, allowed: tuple[str, ...],
                name: str) -> tuple[str, ...]:
    """A filter of several values, comma-separated (``?status=failed,cancelled``), repeated
    (``?status=failed&status=cancelled``: a list) or both; each one of ``allowed``, in any
    case: jobs' and DAGs' states are upper case everywhere else (``--status FAILED``)."""
    if not value:
        return ()
    values = [value] if isinstance(value, str) else value
    by_case = {a.lower(): a for a in allowed}
    items = tuple(dict.fromkeys(by_case.get(v.strip().lower(), v.strip())
                                for text in values for v in text.split(",") if v.strip()))
    bad = [v for v in items if v not in allowed]
    if bad:
        raise ValidationFailed(f"{name} must be among {', '.join(allowed)}, got {bad[0]!r}",
                               details={"field": name})
    return items


#: Seed 004's words for an order ("Sort by recency", "Sort by cost (descending)") and the
#: usual descending spellings, each one of RUN_SORTS.
_SORT_ALIASES = {"recency": "recent", "newest": "recent", "latest": "recent",
                 "-cost": "cost", "cost_desc": "cost", "cost-desc": "cost",
                 "-duration": "duration", "duration_desc": "duration",
                 "duration-desc": "duration", "longest": "duration"}


def canonical_sort(value: str | None) -> str:
    """The registry's order (one of RUN_SORTS, ``recent`` when none is asked), in any case
    and in seed 004's words (``recency``; ``-cost`` or ``cost_desc``, cost descending being
    the only cost order); anything else is refused, naming ``sort``."""
    text = (value or "").strip().lower() or "recent"
    text = _SORT_ALIASES.get(text, text)
    if text not in RUN_SORTS:
        raise ValidationFailed(f"sort must be one of {', '.join(RUN_SORTS)}, got "
                               f"{str(value)[:40]!r}", details={"field": "sort"})
    return text


def archived_choice(value: str | None) -> bool | None:
    """``?archived=``: ``false`` (the default: runs not archived), ``true`` (archived ones
    only) or ``all`` — RunQuery.archived's False, True and None."""
    choice = (value or "false").strip().lower()
    if choice not in ("false", "true", "all"):
        raise ValidationFailed(f"archived must be true, false or all, got {choice[:20]!r}",
                               details={"field": "archived"})
    return None if choice == "all" else choice == "true"


def one_agent(agent: str | None, agent_id: str | None) -> str | None:
    """The agent filter, given as ``agent`` or as seed 004's ``agent_id`` ("Filter by
    agent_id"); both given must agree."""
    if agent and agent_id and agent.strip() != agent_id.strip():
        raise ValidationFailed("agent_id is another spelling of agent, and differs from it: "
                               "give one", details={"field": "agent_id"})
    return (agent or agent_id or "").strip() or None


def run_query(status: str | list[str] | None = None, min_cost: float | None = None,
              window: str | None = None, agent: str | None = None,
              q: str | None = None, older_than: str | None = None,
              sort: str | None = None, archived: str | None = None,
              prunable: bool = False, ids: Sequence[str] | None = None) -> RunQuery:
    """The registry's filters and order, from query parameters (shared with the Runs page);
    ``ids``: only these runs (an export of named runs), whether archived or not."""
    if ids is not None and not 1 <= len(ids) <= MAX_IDS:
        raise ValidationFailed(f"run may be given 1 to {MAX_IDS} times, got {len(ids)}",
                               details={"field": "run"})
    if ids is not None and any(not i or len(i) > 200 for i in ids):
        raise ValidationFailed("run must be a run id: 1 to 200 characters",
                               details={"field": "run"})
    if min_cost is not None and not 0 <= min_cost <= 1e9:
        # NaN and infinities too: they matched nothing, a silently empty export. The same
        # rule and words as the Runs page's (dashboard/run_queries.py).
        raise ValidationFailed(f"min_cost must be a number of USD from 0 to 1e9, got "
                               f"{min_cost!r}", details={"field": "min_cost"})
    sort = canonical_sort(sort)
    # As a prune reads it (an export of what a prune will delete): 3m, read as minutes by
    # the export, was refused by the prune as minutes-or-months.
    before = deletion_cutoff(older_than, "older_than") if older_than else None
    return RunQuery(statuses=csv_choices(status, RUN_STATUSES, "status"), min_cost=min_cost,
                    since=check_window(window), before=before, agent=agent or None,
                    search=q or None, sort=sort,
                    archived=None if ids else archived_choice(archived), prunable=prunable,
                    ids=tuple(dict.fromkeys(ids)) if ids else None)


def agent_view(agent_id: str, agent: Row | None, series: list[Row]) -> Row:
    points = [{
        "run_id": r["id"], "status": r["status"], "started_at": r["started_at"],
        "cost_usd": r["cost_usd"], "unpriced_calls": r["unpriced_calls"],
        "action_count": r["action_count"],
        "success_rate": (r["success_count"] / r["action_count"]) if r["action_count"] else None,
    } for r in series]
    n = sum(r["action_count"] for r in series)
    return {
        "agent_id": agent_id, "budget_usd": agent["budget_usd"] if agent else None,
        "runs": len(series), "cost_usd": round(sum(r["cost_usd"] for r in series), 8),
        "unpriced_calls": sum(r["unpriced_calls"] for r in series),
        "action_count": n,
        "success_rate": (sum(r["success_count"] for r in series) / n) if n else None,
        "failed_runs": sum(1 for r in series if r["status"] == "failed"),
        "series": points,
    }
