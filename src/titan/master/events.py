"""The events hub: one place where state changes are announced after they commit.

Two kinds of listener: *waiters* (a future per topic, e.g. ``("job", 17)``, resolved the next
time that topic is published — what long-polls and ``store_wait`` sit on) and *subscribers*
(an unbounded queue of every event — what the dashboard's WebSocket will stream). Everything
runs on the master's event loop thread, so no locks.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Hashable
from typing import Any

Event = dict[str, Any]


class EventHub:
    def __init__(self) -> None:
        self._waiters: dict[Hashable, list[asyncio.Future[Any]]] = defaultdict(list)
        self._subscribers: set[asyncio.Queue[Event]] = set()

    def waiter(self, topic: Hashable) -> asyncio.Future[Any]:
        """A future resolved at the next publish on ``topic``. Register it BEFORE checking the
        current state, then check, then await: that order cannot miss a change."""
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiters[topic].append(fut)
        return fut

    def discard(self, topic: Hashable, fut: asyncio.Future[Any]) -> None:
        waiters = self._waiters.get(topic)
        if waiters is not None:
            try:
                waiters.remove(fut)
            except ValueError:
                pass
            if not waiters:
                del self._waiters[topic]

    def notify(self, topic: Hashable, value: Any = None) -> None:
        for fut in self._waiters.pop(topic, ()):
            if not fut.done():
                fut.set_result(value)

    def publish(self, kind: str, data: dict[str, Any]) -> None:
        """Announce an event to subscribers (the WebSocket feed)."""
        event = {"type": kind, "data": data}
        for q in self._subscribers:
            q.put_nowait(event)

    def subscribe(self) -> asyncio.Queue[Event]:
        q: asyncio.Queue[Event] = asyncio.Queue()
        self._subscribers.add(q)
        return q

    def unsubscribe(self, q: asyncio.Queue[Event]) -> None:
        self._subscribers.discard(q)
