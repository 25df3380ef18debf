"""The spans the OTLP receiver holds until their parent is known: each with its deadline and
size, counted over all traces as they come and go; which are due, and the top of each chain
that waits on a missing ancestor.

Every step is linear in the spans held, and runs on the event loop under the receiver's lock:
a chain of 20,000 spans whose top never came, each span walking the chain up to find its top,
froze the master for ~111 s (``bench/telemetry.py`` measures it now).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from titan.master.auth.tokens import Principal
from titan.master.otel.wire import Span, size_of_value

#: Spans held waiting for a parent, over all traces; past it the oldest are recorded as is.
MAX_HELD = 20_000
#: The same, by their size (attribute and event text): a request of 64 MiB holds one span
#: of 60 MB as easily as a small one, and the count alone let a few such requests a second
#: hold gigabytes for TITAN_OTLP_HOLD.
MAX_HELD_BYTES = 64 * 1024 * 1024


@dataclass
class Held:
    span: Span
    deadline: float
    who: Principal
    size: int  # size_of(span)


class Holding:
    """How many spans are held over all traces (each trace keeps its own ``held``, span id
    -> :class:`Held`) and their size, kept as they change rather than summed over every
    held span on each request."""

    def __init__(self) -> None:
        self.count, self.size = 0, 0

    def hold(self, held: dict[str, Held], sid: str, h: Held) -> None:
        """Hold a span (one sent again while held replaces itself)."""
        self.unhold(held, sid)
        held[sid] = h
        self.count += 1
        self.size += h.size

    def unhold(self, held: dict[str, Held], sid: str) -> Held | None:
        h = held.pop(sid, None)
        if h is not None:
            self.count -= 1
            self.size -= h.size
        return h

    def over(self) -> bool:
        return self.count > MAX_HELD or self.too_large()

    def too_large(self) -> bool:
        return self.size > MAX_HELD_BYTES

    def due(self, traces: Iterable[tuple[str, dict[str, Held]]],
            now: float) -> tuple[dict[str, list[str]], float]:
        """The spans to record now, by run id — those past their deadline, and the oldest
        while too many (or too much) are held — and the earliest deadline of all."""
        held = sorted((h.deadline, run, sid, h.size) for run, spans in traces
                      for sid, h in spans.items())
        over, size = max(0, len(held) - MAX_HELD), self.size
        due: dict[str, list[str]] = {}
        for i, (deadline, run, sid, bytes_) in enumerate(held):  # the oldest first
            if deadline <= now or i < over or size > MAX_HELD_BYTES:
                due.setdefault(run, []).append(sid)
                size -= bytes_
        return due, held[0][0] if held else float("inf")


def size_of(span: Span) -> int:
    """About how much memory a span's text takes: its attributes', events' and resource's
    strings and bytes (numbers and the rest at a nominal 16 bytes; the resource as measured
    once for all of its spans)."""
    return 256 + len(span.name) + size_of_value(span.attributes) + span.resource_size \
        + size_of_value(span.events)


def tops(held: dict[str, Held], sids: list[str]) -> set[str]:
    """The highest held ancestor of each of these held spans, in one walk of the held forest:
    each span's top is remembered on the way, so a chain of N spans costs N steps, not N². A
    cycle of parents, which only a broken or hostile sender makes, stops where it closes."""
    top: dict[str, str] = {}
    for sid in sids:
        path: dict[str, None] = {}  # this walk's spans, in order (a cycle closes on one)
        node = sid
        while node not in top:
            path[node] = None
            parent = held[node].span.parent_id
            if parent is None or parent not in held or parent in path:
                found = node
                break
            node = parent
        else:
            found = top[node]
        for step in path:
            top[step] = found
    return {top[sid] for sid in sids}


def closing(held: dict[str, Held], sids: list[str]) -> set[str]:
    """Of these held spans, the tops of those whose parents loop back on themselves (a cycle
    among the held spans, a span its own parent): no parent still to come can resolve them."""
    return {t for t in tops(held, sids) if held[t].span.parent_id in held}
