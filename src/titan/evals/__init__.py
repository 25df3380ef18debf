"""Agent evaluation: seeded tasks, simulated tools with a world ledger, failure injection,
an LLM judge, multi-agent structure and coding runs (see docs/evaluations.md).

What an agent under test uses, when Titan runs it as a job::

    import titan
    from titan import evals

    @titan.tool(simulated=True)          # answered by Titan's tool proxy during an evaluation
    def get_order(order_id: str) -> dict: ...

    task = evals.task()                  # {"id", "user_instruction", "tools"}
    answer = my_agent(task["user_instruction"])
    evals.respond(answer)                # the run's final_response

Imports stay light: the master imports the pure modules of this package.
"""

from __future__ import annotations

from typing import Any

from titan.evals.proxy_client import Proxy, in_evaluation, task

__all__ = ["Proxy", "call_tool", "event", "handoff", "in_evaluation", "respond", "task"]


def _actor() -> str | None:
    from titan.trace import context

    run = context.current_run()
    return context.current_actor(run) if run is not None else None


def call_tool(name: str, arguments: dict[str, Any] | None = None) -> Any:
    """Call a declared tool through the proxy (what ``@titan.tool(simulated=True)`` does)."""
    from titan.evals.proxy_client import default_proxy

    return default_proxy().call(name, arguments, actor=_actor())


def respond(final_response: str, messages: list[Any] | None = None) -> None:
    """Give the run its final response (and, optionally, the conversation's messages)."""
    from titan.evals.proxy_client import default_proxy

    default_proxy().respond(final_response, messages)


def event(kind: str, data: Any = None, *, occurred_at: float | None = None) -> None:
    """A live trace event: ``assistant_message``, ``thinking``, ``system_prompt``,
    ``handoff`` or ``custom``. ``occurred_at`` (epoch seconds) is sent as seed 003's
    ``__occurred_at`` and the timeline orders the event by it; without it, by its arrival
    at the proxy (the master's clock, the one tool calls are timed by: an agent's clock may
    be skewed, so give it only for events reported after the fact)."""
    from titan.evals.proxy_client import default_proxy

    default_proxy().event(kind, data, actor=_actor(), occurred_at=occurred_at)


def handoff(to: str, reason: str | None = None) -> bool:
    """Record a transfer of control from the current actor to the sub-agent named ``to``
    (its name in the topology and in ``titan.trace.actor``; a peer or cyclic edge of the
    multi-agent graph, delegation edges come from actor paths). Whether it was recorded: a
    malformed one is refused, said on the run and logged, and the agent carries on."""
    from titan.evals.proxy_client import default_proxy

    return default_proxy().handoff(to, reason, actor=_actor())
