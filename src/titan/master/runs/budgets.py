"""Run budgets: the budget a run answers to, and blocking or releasing it as its spend moves.

A run whose spend crosses its budget is blocked in the same transaction that recorded the
spend (:func:`check_budget`); the run service then has the scheduler hold its READY jobs
(``scheduling/holds.py``) until an operator raises the budget.
"""

from __future__ import annotations

from titan.storage.base import Row, Transaction


def effective_budget(tx: Transaction, run: Row) -> float | None:
    if run.get("budget_usd") is not None:
        return float(run["budget_usd"])
    if run.get("agent_id"):
        agent = tx.get_agent(run["agent_id"])
        if agent is not None and agent["budget_usd"] is not None:
            return float(agent["budget_usd"])
    return None


def check_budget(tx: Transaction, run: Row, now: float) -> Row:
    """Block the run if its spend is past its budget, release it if no longer; returns the
    fields changed."""
    budget = effective_budget(tx, run)
    over = budget is not None and run["cost_usd"] > budget
    changed: Row = {}
    if over and not run["blocked"]:
        changed = {"blocked": True, "over_budget_at": run.get("over_budget_at") or now}
    elif not over and run["blocked"]:
        changed = {"blocked": False}
    if changed:
        tx.update_run(run["id"], changed)
        run.update(changed)
    return changed


def budget_state(run: Row) -> Row:
    return {"id": run["id"], "status": run["status"], "cost_usd": run["cost_usd"],
            "unpriced_calls": run.get("unpriced_calls") or 0, "budget_usd": run["budget_usd"], "blocked": run["blocked"],
            "over_budget_at": run["over_budget_at"], "action_count": run["action_count"]}
