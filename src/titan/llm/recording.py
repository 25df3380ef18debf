"""The one place every LLM call passes through once it has ended, successfully or not.

:func:`record` is the seam between the LLM layer and what observes it: it keeps the
process's running totals (:func:`totals`), writes one line per call to the job's log when
running inside a Titan job (so ``titan logs`` shows what the model was asked, how long it
took and what it cost), and hands the call to every registered listener — the telemetry
recorder attaches there to turn calls into actions of the current agent run. A listener
that raises is logged and dropped from that call, never allowed to fail the caller.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Protocol

from titan.errors import ModelIntegrityError, ModelUnavailable

from .types import Completion, Message, Usage

log = logging.getLogger("titan.llm")


@dataclass(frozen=True)
class LLMCall:
    """One finished :func:`titan.llm.complete` call."""

    model: str
    provider: str
    messages: list[Message]
    params: dict[str, Any]
    started_at: float
    duration_s: float
    completion: Completion | None = None
    error: BaseException | None = None
    agent_run_id: str | None = field(default_factory=lambda: os.environ.get("TITAN_AGENT_RUN_ID"))
    #: The model as asked for (``model=``, else TITAN_LLM_MODEL, else local), before any
    #: provider resolved it: what the call's recorded inputs name, so a replay can match them.
    requested: str = ""
    #: In a replay, how the call was answered (a :class:`titan.trace.recorded.Decision`).
    replay: Any = None
    #: Outside a replay, the call's number among its actor's LLM calls, taken as it started
    #: (:meth:`Replayer.number`), None when no run records it.
    ordinal: int | None = None
    #: What a failed call spent before it failed: the usage of the answers a provider gave
    #: it (an invalid answer and its repair), their cost and its source. None when no
    #: provider answered. A completed call's are its completion's.
    usage: Usage | None = None
    cost_usd: float | None = None
    cost_source: str | None = None


@dataclass
class Totals:
    calls: int = 0
    errors: int = 0
    usage: Usage = field(default_factory=Usage)
    seconds: float = 0.0
    cost_usd: float = 0.0
    unknown_cost_calls: int = 0


Listener = Callable[[LLMCall], None]
# A guard runs before a call reaches its provider and may refuse it by raising (the budget
# guard raises BudgetExceeded); the refusal is recorded like any failed call.
Guard = Callable[[str, list[Message], dict[str, Any]], None]


class Replayer(Protocol):
    """Answers calls from a recording when this process replays an agent run (registered by
    :mod:`titan.trace`; titan.llm knows nothing of recordings)."""

    def number(self) -> int | None:
        """The next call's number among its actor's LLM calls (None outside a run). Taken
        when a call starts, in a recording as in its replay, so calls made side by side are
        numbered in the order they were made, not the order they finished."""

    def decide(self, requested: str, messages: list[Message], params: dict[str, Any],
               ordinal: int | None = None) -> Any:
        """How this call is answered in the replay (a decision), or None: ask a model.
        ``ordinal``: the number :meth:`number` gave the call, if it was taken already."""

    def model(self) -> str | None:
        """The model the live part of a forked replay asks instead, if one was given."""

    def answer(self, decision: Any) -> Completion:
        """The recorded (or overriding) answer of a decided call; raises its refusal, or
        the recorded error of a call that failed."""

    def live(self, decision: Any) -> AbstractContextManager[None]:
        """Where a call the replay let through live asks its model: its connections are
        that call, not leaks."""


_listeners: list[Listener] = []
_guards: list[Guard] = []
_replayer: Replayer | None = None
_totals = Totals()
_lock = threading.Lock()
#: Set while a provider is asked (a live call): a process started meanwhile is the provider
#: library's (the OpenAI SDK runs ``uname -p`` once for its headers), made only where the call
#: runs live, never where a replay answers it, so titan.trace gives it no helper number.
asking: ContextVar[bool] = ContextVar("titan_llm_asking", default=False)


def add_listener(listener: Listener) -> Callable[[], None]:
    """Call ``listener`` with every finished call; returns a function that removes it."""
    with _lock:
        _listeners.append(listener)

    def remove() -> None:
        with _lock:
            if listener in _listeners:
                _listeners.remove(listener)

    return remove


def add_guard(guard: Guard) -> None:
    """Run ``guard(model, messages, params)`` before every call; raising refuses the call."""
    with _lock:
        if guard not in _guards:
            _guards.append(guard)


def set_replayer(replayer: Replayer) -> None:
    """Answer calls through ``replayer`` from now on (it decides per call whether to)."""
    global _replayer
    _replayer = replayer


def replayer() -> Replayer | None:
    return _replayer


def check(model: str, messages: list[Message], params: dict[str, Any]) -> None:
    for guard in list(_guards):
        guard(model, messages, params)


def totals() -> Totals:
    """A copy of this process's running totals."""
    with _lock:
        return Totals(**vars(_totals))


def _log_line(call: LLMCall) -> str:
    if call.replay is not None and call.replay.serves and call.error is None:
        return f"[titan.llm] {call.model}: replayed from the recording (no inference, $0)"
    if call.error is not None:
        spent = "" if call.usage is None else (
            f" ({call.usage.input_tokens} in / {call.usage.output_tokens} out tokens, "
            + ("cost unknown" if call.cost_usd is None else f"${call.cost_usd:.6f}") + ")")
        return (f"[titan.llm] {call.model} failed after {call.duration_s:.2f}s{spent}: "
                f"{type(call.error).__name__}: {call.error}")
    c = call.completion
    assert c is not None
    cost = "cost unknown" if c.cost_usd is None else f"${c.cost_usd:.6f} ({c.cost_source})"
    retry = f", {c.attempts} attempts" if c.attempts > 1 else ""
    return (f"[titan.llm] {c.model}: {c.usage.input_tokens} in / {c.usage.output_tokens} out "
            f"tokens in {call.duration_s:.2f}s, {cost}{retry}")


def record(call: LLMCall) -> None:
    with _lock:
        _totals.calls += 1
        _totals.seconds += call.duration_s
        if call.error is not None:
            _totals.errors += 1
        c = call.completion
        usage, cost = (c.usage, c.cost_usd) if c is not None else (call.usage, call.cost_usd)
        if usage is not None:  # a failed call that a provider answered was billed too
            _totals.usage = _totals.usage + usage
            if cost is None:
                _totals.unknown_cost_calls += 1
            else:
                _totals.cost_usd += cost
        listeners = list(_listeners)
    if os.environ.get("TITAN_JOB_ID") or os.environ.get("TITAN_LLM_LOG") == "1":
        sys.stderr.write(_log_line(call) + "\n")
        sys.stderr.flush()
    for listener in listeners:
        try:
            listener(call)
        except Exception:
            log.exception("LLM call listener %r failed", listener)


def unsent(error: BaseException) -> bool:
    """Whether a call failed before any model was asked — the model is not on this machine
    (llama-cpp-python or the model file missing, LiteLLM not installed) or its file failed
    its check — so it cost exactly $0 (``cost_source`` ``unavailable``), rather than an
    unknown amount: a provider that failed mid-call may have billed it."""
    return isinstance(error, ModelUnavailable | ModelIntegrityError)
