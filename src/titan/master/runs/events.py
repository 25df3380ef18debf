"""The events a run publishes: the one its end sends, and the run card's fields each carries."""

from __future__ import annotations

from titan.status import RunStatus
from titan.storage.base import Row

#: The event a run ending in each status publishes (a cancel is an ordinary update).
TERMINAL_RUN = {RunStatus.COMPLETED: "run_completed", RunStatus.FAILED: "run_failed",
                RunStatus.CANCELLED: "run_updated"}


def success_rate(run: Row) -> float | None:
    """A run's share of successful actions (None before its first). In a replay a served
    ('replayed') call is the replay working: it counts as a success. The one rule: the API,
    the pages and the events that patch them all carry this number."""
    n = run.get("action_count") or 0
    if not n:
        return None
    served = run.get("replayed_count") or 0 if run.get("replay_of") else 0
    return round(((run.get("success_count") or 0) + served) / n, 4)


def run_summary(run: Row) -> Row:
    """The fields live pages patch from an event (the run card's)."""
    keys = ("id", "agent_id", "status", "started_at", "ended_at", "cost_usd", "unpriced_calls",
            "action_count", "success_count", "error_count", "blocked_count", "replayed_count",
            "blocked", "over_budget_at", "budget_usd", "last_action_at", "replay_of")
    return {**{k: run.get(k) for k in keys}, "success_rate": success_rate(run)}
