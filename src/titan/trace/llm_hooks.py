"""Every ``titan.llm.complete`` call becomes a ``call_llm`` action of the current run, and a
run over its budget gets no more LLM calls.

Installed when :mod:`titan.trace` loads (titan.llm knows nothing of runs: it only calls the
listeners and guards registered with :mod:`titan.llm.recording`); a job of an agent run loads
it on its own, so an agent that only uses ``titan.llm`` is recorded with no change to its code. The budget guard runs before the provider is asked: when the run is known
to be over budget it raises :class:`~titan.errors.BudgetExceeded`, which the call's own
recording turns into an action with outcome ``blocked``. While blocked, the guard asks the
master again (at most every two seconds) whether an operator has raised the budget; the first
LLM call of a job process asks once what its run's budget is. Those are the only network waits
on the caller's path, and both are on the way to a call that takes far longer.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Iterator
from typing import Any

from titan.errors import BudgetExceeded
from titan.formats import dollars
from titan.llm import recording
from titan.llm.types import Completion, Usage
from titan.trace import context, forks, netguard, replay
from titan.trace.emit import emit
from titan.trace.recorder import RECORDER, learn
from titan.trace.replayed_errors import replayed_error
from titan.url_paths import quote_ref

log = logging.getLogger("titan.trace")
_REFRESH_BLOCKED = 2.0
_installed = False


def _refresh(run: context.RunHandle) -> None:
    try:
        state = RECORDER.client(run).call("GET", f"/runs/{quote_ref(run.id)}", read_timeout=2.0)
    except Exception as exc:  # budget state unknown: the call goes ahead
        log.debug("titan.trace: could not read run %s's budget: %s", run.id, exc)
        run.known_at = time.monotonic()
        return
    if isinstance(state, dict):
        learn(run, state)


def guard(model: str, messages: Any, params: dict[str, Any]) -> None:
    """Raise BudgetExceeded if the current run may not make another LLM call."""
    run = context.current_run()
    if run is None:
        return
    if run.known_at == 0.0:
        _refresh(run)
    elif run.over_budget and time.monotonic() - run.known_at > _REFRESH_BLOCKED:
        RECORDER.flush(2.0)  # what this process spent must be counted before asking
        _refresh(run)
    if run.over_budget:
        spent = run.cost_usd + run.unsent_cost
        budget = run.budget_usd
        # Written as every cost is (formats.dollars): with four places a run of cheap calls
        # read "$0.0000 spent of $0.0000", as if within its budget.
        raise BudgetExceeded(
            f"agent run {run.id} is over its budget ({dollars(spent)} spent of "
            f"{dollars(budget if budget is not None else 0.0)}); LLM calls are blocked until an "
            f"operator raises it (titan runs budget {run.id} USD)",
            run_id=run.id, budget_usd=budget, cost_usd=spent)


def llm_inputs(requested: str, messages: Any, params: dict[str, Any]) -> dict[str, Any]:
    """A call's recorded inputs: what was asked, before any provider answered (so a replay,
    which asks no provider, computes the same ones)."""
    return {"model": requested, "messages": messages,
            "params": {k: v for k, v in params.items() if v is not None}}


def replay_decision(requested: str, messages: Any, params: dict[str, Any],
                    ordinal: int | None = None) -> Any:
    """In a replay, how this LLM call is answered (a :class:`titan.trace.recorded.Decision`); else None."""
    session = replay.active()
    run = (context.current_run() or context.outside_run()) if session is not None else None
    if session is None or run is None:
        return None
    actor = context.current_actor(run)
    return session.decide(run, actor, "llm", "call_llm",
                          llm_inputs(requested, messages, params), ordinal=ordinal)


def call_number() -> int | None:
    """The number of an LLM call starting now among its actor's (None outside a run)."""
    run = context.current_run()
    if run is None:
        return None
    return run.next_ordinal(context.current_actor(run), "llm", "call_llm")


def replay_model() -> str | None:
    """A fork's ``--model``: the model the live part of a replay asks instead."""
    session = replay.active()
    return session.model if session is not None else None


def refusal(decision: Any) -> BaseException:
    session = replay.active()
    run = context.current_run()
    assert session is not None and run is not None
    return session.refusal(decision, "llm", "call_llm", context.current_actor(run))


def answer(decision: Any) -> Completion:
    """The answer of a decided call: raises its refusal when the recording has none."""
    if not decision.serves:
        raise refusal(decision)
    return served_completion(decision)


def served_completion(decision: Any) -> Completion:
    """The recorded answer of a served call, as a Completion that cost nothing; raises the
    recorded error when the original call failed."""
    recorded = decision.recorded
    if decision.status == "served" and recorded.outcome in ("error", "blocked"):
        raise replayed_error(recorded)
    out = decision.outputs if isinstance(decision.outputs, dict) else {"text": decision.outputs}
    data = out.get("data")
    text = out.get("text")
    if text is None:  # an override may give only the structured answer
        text = json.dumps(data) if data is not None else ""
    return Completion(text=str(text), usage=Usage(), model=recorded.model or "replay",
                      cost_usd=0.0, cost_source="replay", provider="replay",
                      finish_reason=out.get("finish_reason"), attempts=out.get("attempts") or 1,
                      data=data, tool_calls=_calls(out.get("tool_calls")),
                      provider_model=out.get("provider_model") if isinstance(
                          out.get("provider_model"), str) else None)


def _calls(recorded: Any) -> list[dict[str, Any]]:
    """A recorded (or overriding) answer's tool calls, as a Completion carries them."""
    return [c for c in recorded if isinstance(c, dict)] if isinstance(recorded, list) else []


class _Replayer:
    """titan.llm's view of a replay (:class:`titan.llm.recording.Replayer`)."""

    def number(self) -> int | None:
        return call_number()

    def decide(self, requested: str, messages: Any, params: dict[str, Any],
               ordinal: int | None = None) -> Any:
        return replay_decision(requested, messages, params, ordinal)

    def model(self) -> str | None:
        return replay_model()

    def answer(self, decision: Any) -> Completion:
        return answer(decision)

    @contextlib.contextmanager
    def live(self, decision: Any) -> Iterator[None]:
        token = netguard.through()
        try:
            yield
        finally:
            netguard.end_through(token)


def on_call(call: Any) -> None:
    """Record one finished LLM call (a :class:`titan.llm.LLMCall`) as an action."""
    d = call.replay
    run = context.current_run()
    if run is None and d is not None and d.status == "unrecorded":
        run = context.outside_run()  # a replay's live call outside any run: counted there
    if run is None:
        return
    inputs = llm_inputs(call.requested or call.model, call.messages, call.params)
    extra: dict[str, Any] = {"ordinal": d.ordinal, "replay_status": d.status} if d else (
        {} if call.ordinal is None else {"ordinal": call.ordinal})
    if d is not None and d.recorded is not None:  # a forked process's may answer a sibling's
        extra["actor"] = d.recorded.actor
    served = d is not None and d.serves
    c = call.completion
    if call.error is not None:
        blocked = isinstance(call.error, BudgetExceeded) or (
            d is not None and d.status == "refused")
        # A call refused before any provider was asked — over budget, or by a replay, strict
        # (stopped) or not (refused) — cost exactly $0, and leaving its cost out would count
        # it as unpriced (the run's cost a lower bound). So did a replay's recorded error,
        # raised again without asking anyone.
        if blocked or (d is not None and d.status == "stopped"):
            extra.update(cost_usd=0.0, cost_source="blocked")
        elif served:
            extra.update(cost_usd=0.0, cost_source="replay")
        elif recording.unsent(call.error):
            extra.update(cost_usd=0.0, cost_source="unavailable")  # no model was asked
        elif call.usage is not None:
            # It failed after a provider answered (an invalid answer and its repair): those
            # answers were billed, so the run's cost and its budget count them.
            extra.update(usage=_tokens(call.usage), cost_usd=call.cost_usd,
                         cost_source=call.cost_source)
        emit(run, channel="llm", name="call_llm", inputs=inputs, outputs=None,
             started_at=call.started_at, duration_ns=int(call.duration_s * 1e9),
             outcome="blocked" if blocked else "error", error=call.error,
             model=call.model, **extra)  # served or not: failed
        if d is not None and d.status == "stopped":
            forks.stopped(call.error)
        return
    outputs: dict[str, Any] = {"text": c.text, "finish_reason": c.finish_reason}
    if c.data is not None:
        outputs["data"] = c.data
    if c.attempts > 1:
        outputs["attempts"] = c.attempts
    if c.tool_calls:
        outputs["tool_calls"] = c.tool_calls
    if c.provider_model:
        outputs["provider_model"] = c.provider_model
    if served:
        emit(run, channel="llm", name="call_llm", inputs=inputs, outputs=outputs,
             started_at=call.started_at, duration_ns=int(call.duration_s * 1e9),
             outcome="replayed", model=c.model, cost_usd=0.0, cost_source="replay", **extra)
        return
    emit(run, channel="llm", name="call_llm", inputs=inputs, outputs=outputs,
         started_at=call.started_at, duration_ns=int(call.duration_s * 1e9),
         model=c.model, usage=_tokens(c.usage),
         cost_usd=c.cost_usd, cost_source=c.cost_source, **extra)


def _tokens(usage: Usage) -> dict[str, int] | None:
    """A call's usage as recorded: none at all when the provider reported none (all zeros),
    rather than a made-up count of 0 tokens."""
    return usage.to_dict() if usage.total_tokens else None


def install() -> None:
    global _installed
    if _installed:
        return
    recording.add_listener(on_call)
    recording.add_guard(guard)
    recording.set_replayer(_Replayer())
    _installed = True
