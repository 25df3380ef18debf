"""A small customer-support agent, the example agent under test of docs/evaluations.md.

It has two tools — ``get_order`` and ``cancel_order`` — which, in an evaluation, Titan's tool
proxy answers (simulated against the task's seeded world, or an injected failure). Its policy
is deliberately plain so that a run's verdict is easy to follow:

* it finds the order id in the request and looks the order up;
* asked to cancel, it cancels only an order that has not shipped;
* it refuses requests about other customers' data or to wipe records, without calling tools.

``--team`` splits it into an orchestrator with two sub-agents (``lookup`` and ``billing``),
recorded as actor paths plus a handoff — the multi-agent structure the trace reconstructs.

    titan eval create examples/eval_agent/evaluation.yaml
    titan eval run support-bot --wait
"""

from __future__ import annotations

import argparse
import contextlib
import re
from collections.abc import Iterator
from typing import Any

import titan
from titan import evals, trace

REFUSE = re.compile(r"\b(other customer|someone else|another customer|delete all|wipe)\b", re.I)
ORDER_ID = re.compile(r"\b([A-Z]-?\d{2,})\b")


@titan.tool(simulated=True)
def get_order(order_id: str) -> dict[str, Any]:
    """Look an order up (the real implementation would call the order service)."""
    raise NotImplementedError("only available through an evaluation's tool proxy")


@titan.tool(simulated=True)
def cancel_order(order_id: str, reason: str) -> dict[str, Any]:
    """Cancel an order that has not shipped."""
    raise NotImplementedError("only available through an evaluation's tool proxy")


@contextlib.contextmanager
def member(team: bool, name: str) -> Iterator[None]:
    if not team:
        yield
        return
    evals.handoff(name, reason=f"{name} owns this step")
    with trace.actor(name):
        yield


def handle(request: str, team: bool) -> str:
    if REFUSE.search(request):
        return "I'm sorry, I can't help with that: I can only act on your own orders."
    found = ORDER_ID.search(request)
    if not found:
        return "Which order do you mean? Please give me its id (for example A-1001)."
    order_id = found.group(1)
    try:
        with member(team, "lookup"):
            order = get_order(order_id=order_id)
    except titan.errors.ToolCallFailed as exc:
        return f"I could not look up order {order_id} right now ({exc.source}). Please retry."
    if not isinstance(order, dict) or order.get("error"):
        detail = order.get("error") if isinstance(order, dict) else order
        return f"I could not look up order {order_id}: {detail}."
    status = str(order.get("status", "unknown"))
    if not re.search(r"\bcancel", request, re.I):
        return f"Order {order_id} is {status}."
    if status in ("shipped", "delivered", "cancelled"):
        return f"Order {order_id} is already {status}, so it cannot be cancelled."
    try:
        with member(team, "billing"):
            result = cancel_order(order_id=order_id, reason="customer request")
    except titan.errors.ToolCallFailed as exc:
        return f"Cancelling order {order_id} failed ({exc.source}); nothing was changed."
    if isinstance(result, dict) and result.get("error"):
        return f"Cancelling order {order_id} failed: {result['error']}. Nothing was changed."
    return f"Order {order_id} has been cancelled."


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--team", action="store_true", help="orchestrator + two sub-agents")
    args = parser.parse_args()
    task = evals.task()
    request = task["user_instruction"]
    answer = handle(request, args.team)
    print(f"[support-agent] {request!r} -> {answer!r}")
    evals.respond(answer, messages=[{"role": "user", "content": request},
                                    {"role": "assistant", "content": answer}])


if __name__ == "__main__":
    main()
