"""Recording actions: ``trace.action(...)`` and ``@titan.tool``.

The hot path does what must happen on the caller's thread and nothing else: take the clock,
number the call (its ordinal per actor, channel and name), snapshot inputs and outputs as
canonical JSON (they may be mutated afterwards) and append to the recorder's queue. Everything
with a network in it happens on the recorder's thread. The recorded clock and random values
(``trace.now/uuid/random``) are :mod:`titan.trace.ambient`'s.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import time
from collections.abc import Callable
from typing import Any, TypeVar, overload

from titan import errors
from titan.trace import canonical, context, forks, netguard, replay
from titan.trace.canonical import bytes_as_before
from titan.trace.emit import emit
from titan.trace.recorded import Decision, Recorded
from titan.trace.replayed_errors import cancelled_again, replayed_error

F = TypeVar("F", bound=Callable[..., Any])
CHANNELS = ("llm", "tool", "clock", "random", "custom", "network")


class Action:
    """``with titan.trace.action("search", inputs={...}) as a: a.outputs = ...``

    Set ``outputs`` (and, if you know them, ``cost_usd``, ``usage``, ``model``, ``tags``)
    inside the block. An exception leaving the block is recorded (outcome ``error``) and
    re-raised. Actions recorded inside the block name this one as their parent. Outside any
    agent run the block runs and nothing is recorded.

    In a replay the block still runs (a ``with`` block cannot be skipped), but ``a.outputs``
    starts as the recorded output and ``a.replayed`` is true, so expensive work can be skipped:
    ``if not a.replayed: a.outputs = compute()``. ``pure=True`` marks an action whose outputs
    depend only on its inputs: a ``--verify`` replay compares them with the recording."""

    __slots__ = ("name", "inputs", "outputs", "channel", "tags", "cost_usd", "usage", "model",
                 "id", "pure", "replayed", "_run", "_started", "_t0", "_token", "_actor",
                 "_ordinal", "_decision", "_through", "awaited", "cancelled")

    def __init__(self, name: str, inputs: Any = None, *, kind: str = "custom",
                 tags: Any = None, pure: bool = False) -> None:
        if kind not in CHANNELS:
            raise ValueError(f"kind must be one of {', '.join(CHANNELS)}, got {kind!r}")
        self.name, self.inputs, self.channel, self.tags = name, inputs, kind, tags
        self.outputs: Any = None
        self.cost_usd: float | None = None
        self.usage: dict[str, int] | None = None
        self.model: str | None = None
        self.id: str | None = None
        self.pure = pure
        self.replayed = False
        self._decision: Decision | None = None
        self._through: Any = None
        #: An async tool's call (its wrapper says), and its recorded cancellation in a replay.
        self.awaited = False
        self.cancelled: Recorded | None = None

    def __enter__(self) -> Action:
        self._run = run = context.current_run()
        self._started = time.time()
        if run is not None:
            self.id = context.new_action_id()
            self._actor = context.current_actor(run)
            session = replay.active()
            if session is None:
                self._ordinal = run.next_ordinal(self._actor, self.channel, self.name)
            else:
                self._replay_enter(session, run)
            self._token = context.set_parent(self.id)
        self._t0 = time.perf_counter_ns()
        return self

    def _replay_enter(self, session: replay.Session, run: context.RunHandle) -> None:
        inputs = {} if self.inputs is None else self.inputs
        d = self._decision = session.decide(run, self._actor, self.channel, self.name, inputs,
                                            pure=self.pure)
        self._ordinal = d.ordinal
        if d.recorded is not None:  # a forked process's call may answer a sibling's
            self._actor = d.recorded.actor
        if d.status in ("stopped", "refused"):
            exc = session.refusal(d, self.channel, self.name, self._actor)
            self._emit(run, 0, "error" if d.status == "stopped" else "blocked", exc)
            forks.stopped(exc)
            raise exc
        if d.serves:
            recorded = d.recorded
            if d.status == "served" and recorded is not None and self.awaited \
                    and recorded.error_type == "CancelledError":
                # Cut off while awaited (wait_for's timeout): raised at once, its caller saw
                # a CancelledError, not its timeout. It waits to be cut off again instead.
                self.outputs, self.replayed, self.cancelled = d.outputs, True, recorded
                return
            if d.status == "served" and recorded is not None and recorded.outcome in (
                    "error", "blocked"):
                # Served, and a failure as recorded: its outcome stays one (as "replayed" a
                # replayed failure read as a 100 % success).
                exc = replayed_error(recorded)
                self.outputs = d.outputs  # as recorded (what rebuilt the exception, if any)
                self._emit(run, 0, recorded.outcome, exc)
                session.pass_over(run, recorded)
                raise exc
            self.outputs, self.replayed = d.outputs, True
        elif d.live:  # it runs for real: its own connections are the call, not leaks
            self._through = netguard.through()

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        duration = time.perf_counter_ns() - self._t0
        run = self._run
        if run is None:
            return
        context.reset_parent(self._token)
        if self._through is not None:
            netguard.end_through(self._through)
            self._through = None
        outcome = "success" if exc is None else "error"
        if self.replayed and exc is None:
            outcome = "replayed"
        diverged = self._output_mismatch(exc)
        if diverged is None:
            self._emit(run, duration, outcome, exc)
        else:  # recorded as where the strict replay stopped: what follows is not reached
            self._emit(run, duration, "error", diverged, replay_status="stopped")
            forks.stopped(diverged)
        d = self._decision
        if d is not None and d.serves and d.recorded is not None:
            session = replay.active()
            if session is not None:
                session.pass_over(run, d.recorded)
        if diverged is not None:
            raise diverged

    def _output_mismatch(self, exc: BaseException | None) -> errors.ReplayDiverged | None:
        """A strict replay's stop at this call: a pure call re-run (verify mode) must answer
        as recorded; so must a served block, whose code runs again with the recorded outputs
        in hand: one that sets others (a fresh timestamp, a new uuid4()) behaves differently
        from the recording."""
        d = self._decision
        session = replay.active() if d is not None and d.status in ("verified", "served") \
            else None
        if d is None or session is None or session.mode != "strict" or exc is not None \
                or d.recorded is None:
            return None
        with bytes_as_before() if d.legacy_bytes else contextlib.nullcontext():
            same = d.recorded.outputs == canonical.outputs(
                session.as_recorded(d.recorded, "outputs", self.outputs))
        if same:
            return None
        why = "(verify mode)" if d.status == "verified" else (
            "(the block set outputs other than the recorded ones; guard the work that "
            "makes them with `if not a.replayed:`)")
        return errors.ReplayDiverged(
            f"replay of {session.original} stopped at {self.channel} call "
            f"{self.name!r} #{self._ordinal} of {self._actor}: same inputs, different "
            f"outputs {why}", kind="output_mismatch")

    def _emit(self, run: context.RunHandle, duration: int, outcome: str,
              exc: BaseException | None, replay_status: str | None = None) -> None:
        d = self._decision
        served = d is not None and d.serves
        # Replaying a run recorded before bytes were kept: its inputs as it hashed them.
        with bytes_as_before() if d is not None and d.legacy_bytes else contextlib.nullcontext():
            self._emit_as(run, duration, outcome, exc, replay_status, served)

    def _emit_as(self, run: context.RunHandle, duration: int, outcome: str,
                 exc: BaseException | None, replay_status: str | None, served: bool) -> None:
        d = self._decision
        emit(run, channel=self.channel, name=self.name,
             inputs={} if self.inputs is None else self.inputs, outputs=self.outputs,
             started_at=self._started, duration_ns=duration, outcome=outcome, error=exc,
             action_id=self.id, actor=self._actor, model=self.model, usage=self.usage,
             cost_usd=0.0 if served else self.cost_usd,
             cost_source="replay" if served else None, tags=self.tags,
             ordinal=self._ordinal,
             replay_status=replay_status or (d.status if d is not None else None))


def action(name: str, inputs: Any = None, *, kind: str = "custom", tags: Any = None,
           pure: bool = False) -> Action:
    return Action(checked_name(name), inputs, kind=kind, tags=tags, pure=pure)


#: The longest action name the master stores (master/runs/ingest.py).
MAX_ACTION_NAME = 200


def checked_name(name: Any) -> str:
    """``name`` when the master would store it as an action's name; else ValueError now, in
    the caller's code: refused at the master, the action was lost with a line on stderr while
    the run ended completed without it (a QA pass)."""
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"an action's name must be a non-empty string, not {name!r}")
    if len(name) > MAX_ACTION_NAME:
        raise ValueError(f"an action's name is at most {MAX_ACTION_NAME} characters; this one "
                         f"has {len(name)}: {name[:40]!r}...")
    if "\x00" in name:
        raise ValueError(f"an action's name may not hold a NUL character: {name[:40]!r}")
    return name


def _simple(sig: inspect.Signature | None) -> tuple[list[str], dict[str, Any]] | None:
    """Parameter names and defaults when every parameter is plain positional-or-keyword:
    then binding is a zip, not ``Signature.bind`` (measured ~9 µs a call)."""
    if sig is None or any(p.kind is not p.POSITIONAL_OR_KEYWORD
                          for p in sig.parameters.values()):
        return None
    names = [n for n in sig.parameters if n not in ("self", "cls")]
    skip = len(sig.parameters) - len(names)
    if skip and next(iter(sig.parameters)) not in ("self", "cls"):
        return None
    defaults = {n: p.default for n, p in sig.parameters.items()
                if p.default is not p.empty and n in names}
    return names, {"__skip__": skip, **defaults}


def _inputs(fast: tuple[list[str], dict[str, Any]] | None, sig: inspect.Signature | None,
            args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    if fast is None:
        return _bind(sig, args, kwargs)
    names, defaults = fast
    skip = defaults["__skip__"]
    if len(args) - skip > len(names) or any(k not in names for k in kwargs):
        return _bind(sig, args, kwargs)  # a TypeError is coming; let the function raise it
    out = dict(zip(names, args[skip:], strict=False))
    out.update(kwargs)
    for name in names:
        if name not in out and name in defaults:
            out[name] = defaults[name]
    return out


def _bind(sig: inspect.Signature | None, args: tuple[Any, ...],
          kwargs: dict[str, Any]) -> dict[str, Any]:
    if sig is None:
        return {"args": list(args), **kwargs}
    try:
        bound = sig.bind(*args, **kwargs)
    except TypeError:
        return {"args": list(args), **kwargs}
    bound.apply_defaults()
    out = dict(bound.arguments)
    out.pop("self", None)
    out.pop("cls", None)
    return out


@overload
def tool(fn: F) -> F: ...
@overload
def tool(fn: None = None, *, name: str | None = None, tags: Any = None,
         pure: bool = False, simulated: bool = False) -> Callable[[F], F]: ...


def tool(fn: F | None = None, *, name: str | None = None, tags: Any = None,
         pure: bool = False, simulated: bool = False) -> Any:
    """Record every call of a tool function: inputs from its arguments (by parameter name),
    outputs from its return value; an exception is recorded (outcome ``error``) and re-raised.
    Works on plain and ``async`` functions, bare (``@titan.tool``) or with options
    (``@titan.tool(name="web_search", pure=True)``).

    In a replay the function is not called: the recorded result is returned (as JSON gives it
    back: tuples become lists, dataclasses dicts) or the recorded exception raised. ``pure``
    says the result depends only on the arguments, so a ``--verify`` replay runs it again and
    compares.

    ``simulated=True``: inside an evaluation run (``TITAN_EVAL_RUN`` set) the function is not
    called — the call goes to Titan's tool proxy, which answers it (simulated against the
    seeded world, an injected failure, or a passthrough) and records it; outside one, the
    function runs as usual."""

    def wrap(f: F) -> F:
        if isinstance(f, classmethod | staticmethod):
            # Wrapped as a plain function the result is no longer a descriptor: every call
            # through the class or an instance failed ("'classmethod' object is not callable",
            # or the instance taken as the first argument).
            kind = type(f).__name__
            raise TypeError(f"@titan.tool cannot wrap a {kind} ({f.__func__.__name__!r}): put "
                            f"@titan.tool below @{kind}, next to the function")
        label = checked_name(name or f.__name__)
        if inspect.isgeneratorfunction(f) or inspect.isasyncgenfunction(f):
            # Its call returns a generator: the items come later, outside the call, so the
            # recording would hold the generator's repr and a replay hand back a string.
            raise TypeError(f"@titan.tool cannot record the generator function {label!r}: "
                            "a call returns its items later, outside the call. Return a list "
                            "(or record each item with titan.trace.action)")
        try:
            sig: inspect.Signature | None = inspect.signature(f)
        except (TypeError, ValueError):
            sig = None
        fast = _simple(sig)
        if simulated:
            return _proxied(f, label, sig, fast)

        if inspect.iscoroutinefunction(f):
            @functools.wraps(f)
            async def arun(*args: Any, **kwargs: Any) -> Any:
                if context.current_run() is None:
                    outside = _outside()
                    if outside is None:
                        return await f(*args, **kwargs)
                    token = context.enter_run(outside)
                    try:
                        return await arun(*args, **kwargs)
                    finally:
                        context.leave_run(token)
                a = Action(label, _inputs(fast, sig, args, kwargs), kind="tool", tags=tags,
                           pure=pure)
                a.awaited = True
                with a:
                    if a.cancelled is not None:
                        await cancelled_again(a.cancelled)
                    if not a.replayed:
                        a.outputs = await f(*args, **kwargs)
                    return a.outputs
            return arun  # type: ignore[return-value]

        @functools.wraps(f)
        def run(*args: Any, **kwargs: Any) -> Any:
            if context.current_run() is None:
                outside = _outside()
                if outside is None:
                    return f(*args, **kwargs)
                token = context.enter_run(outside)
                try:
                    return run(*args, **kwargs)
                finally:
                    context.leave_run(token)
            with Action(label, _inputs(fast, sig, args, kwargs), kind="tool", tags=tags,
                        pure=pure) as a:
                if not a.replayed:
                    a.outputs = f(*args, **kwargs)
                return a.outputs
        return run  # type: ignore[return-value]

    return wrap(fn) if fn is not None else wrap


def _outside() -> context.RunHandle | None:
    """Where a tool called outside any run is recorded: nowhere (it just runs), except in a
    replay, where it runs live (nothing recorded it in the original) and is recorded in the
    replay's run as such (:func:`titan.trace.context.outside_run`), never as a free call."""
    return context.outside_run() if replay.active() is not None else None


def _proxied(f: F, label: str, sig: inspect.Signature | None,
             fast: tuple[list[str], dict[str, Any]] | None) -> F:
    """A simulated tool: through the evaluation's proxy (which records the call) when this
    process is an agent under test and not replaying; the function itself otherwise."""
    from titan import evals

    def routed() -> bool:
        return evals.in_evaluation() and replay.active() is None

    recorded = tool(name=label)(f)
    if inspect.iscoroutinefunction(f):
        @functools.wraps(f)
        async def arun(*args: Any, **kwargs: Any) -> Any:
            if routed():
                arguments = _inputs(fast, sig, args, kwargs)
                return await asyncio.to_thread(evals.call_tool, label, arguments)
            return await recorded(*args, **kwargs)
        return arun  # type: ignore[return-value]

    @functools.wraps(f)
    def run(*args: Any, **kwargs: Any) -> Any:
        if routed():
            return evals.call_tool(label, _inputs(fast, sig, args, kwargs))
        return recorded(*args, **kwargs)
    return run  # type: ignore[return-value]
