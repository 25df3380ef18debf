"""What the OTLP receiver knows of each trace it was sent — its run, the actor path under each
recorded span, the spans it holds — and how one request's traces are recorded side by side.

Each trace has its own lock: opening its run and resolving and recording its spans happen
under it, so two requests for the same trace take turns, and requests for different traces
do not wait for each other (one lock for the whole receiver made a Collector's batch of
thousands of traces hold every other sender up past its exporter's timeout). The traces of
one request go :data:`PARALLEL` at a time: their commits share the group-commit writer's
transactions (a request of 2,000 single-span traces made 6,000 commits one after the other),
and another sender's trace waits behind at most that many, not the whole batch.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import TypeVar

from titan.master.auth.tokens import Principal
from titan.master.otel.holding import Held
from titan.master.otel.wire import Span

#: Traces of one request (or one release of held spans) recorded at once.
PARALLEL = 32
A = TypeVar("A")


@dataclass(eq=False)  # one per trace: compared and hashed by identity
class Trace:
    run_id: str
    agent: str
    #: span id -> the actor path of its children, for every span recorded.
    actors: dict[str, str] = field(default_factory=dict)
    held: dict[str, Held] = field(default_factory=dict)
    #: Ordinals per (actor, channel, name); None when the run existed before this process
    #: knew it (a restart): then the run service numbers them after what it holds.
    ordinals: Counter[tuple[str, str, str]] | None = None
    created: bool = False
    ended: bool = False  # by a root span this process recorded
    seen: float = 0.0
    #: Held while its run is opened and its spans resolved and recorded.
    lock: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False)
    #: Requests and releases working on it: never forgotten meanwhile (a second Trace of
    #: the same run would number its actions apart from this one).
    busy: int = 0


@dataclass
class Ready:
    """A span whose actor is known, to be recorded."""
    span: Span
    actor: str
    who: Principal


@dataclass
class Tally:
    """What the run service refused of one request's spans, and why (the first reason)."""
    refused: int = 0
    why: str = ""


async def each_trace(items: Iterable[tuple[Trace, A]],
                     work: Callable[[Trace, A], Awaitable[None]]) -> None:
    """``work`` for each trace, :data:`PARALLEL` at once. Every one is tried — a trace that
    fails holds back no other — then the first failure is raised."""
    todo = list(items)
    for trace, _ in todo:
        trace.busy += 1
    pending = iter(todo)
    failures: list[Exception] = []

    async def worker() -> None:
        for trace, arg in pending:
            try:
                await work(trace, arg)
            except Exception as exc:  # noqa: BLE001 - raised below, once all were tried
                failures.append(exc)
            finally:
                trace.busy -= 1

    try:
        await asyncio.gather(*(worker() for _ in range(min(PARALLEL, len(todo)))))
    finally:
        for trace, _ in pending:  # cancelled: those never started are no longer busy
            trace.busy -= 1
    if failures:
        raise failures[0]
