"""The events hub: one place where state changes are announced after they commit.

Two kinds of listener: *waiters* (a future per topic, e.g. ``("job", 17)``, resolved the next
time that topic is published — what long-polls and ``store_wait`` sit on) and *subscribers*
(a bounded backlog of the events they accept — what the WebSocket ``/api/v1/events`` streams). Everything
runs on the master's event loop thread, so no locks.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable, Hashable
from typing import Any

from titan.errors import MasterStopping

Event = dict[str, Any]
#: Checks that a long-poll's credential still holds: returns while it does, raises (401, 409
#: stale_attempt) once it does not.
Guard = Callable[[], Awaitable[None]]
#: How often a guarded long-poll checks its credential again (a cache lookup), as an open
#: WebSocket does: a token revoked on another master (whose cache forgets it within 10 s)
#: ends its waits within this; one revoked here ends them at once (:meth:`EventHub.revoked`).
GUARD_SECONDS = 2.0


class EventHub:
    def __init__(self) -> None:
        self._waiters: dict[Hashable, list[asyncio.Future[Any]]] = defaultdict(list)
        self._subscribers: set[Subscription] = set()
        self.stopping = False
        self._stop: asyncio.Future[None] | None = None  # resolved when the master stops
        # Resolved (and replaced) when a credential ends on this master: guarded waits check
        # theirs again at once.
        self._revoked: asyncio.Future[None] | None = None

    def stop(self) -> None:
        """The master begins to stop: long-polls held in :meth:`until` end now, with
        :class:`~titan.errors.MasterStopping` (a 503 their clients ask again, the next master
        answering), rather than being cut when the server's grace runs out — a 500 that
        clients took for a bug and gave up on (a QA pass)."""
        self.stopping = True
        if self._stop is not None and not self._stop.done():
            self._stop.set_result(None)

    def revoked(self) -> None:
        """A credential ended here (a token revoked, a session signed out): every guarded
        long-poll checks its own again now, not at its next tick — a value published right
        after the revocation is not handed to the token it revoked."""
        if self._revoked is not None and not self._revoked.done():
            self._revoked.set_result(None)
        self._revoked = None

    async def until(self, *futures: asyncio.Future[Any], timeout: float,
                    guard: Guard | None = None) -> None:
        """Wait until one of ``futures`` is done: TimeoutError after ``timeout`` seconds,
        MasterStopping once the master stops. A request's long-poll waits here. ``guard``,
        when given, is awaited every :data:`GUARD_SECONDS` and whenever a credential is
        revoked here: what it raises ends the wait (a revoked token's parked ``store_wait``
        was answered, with a value written 25 s after the revocation — a QA pass)."""
        loop = asyncio.get_running_loop()
        if self._stop is None:
            self._stop = loop.create_future()
        stop = self._stop
        deadline = loop.time() + timeout
        if guard is not None:
            # Checked once as it parks: the request checked its credential on arrival and
            # then awaited (reading what it waits on), and a revocation meanwhile found
            # nothing parked to wake; a value published before the next tick went to the
            # revoked token. The revocation future is taken first, so one landing during
            # this check (an await: a read when the cache has forgotten the token) has it
            # checked again.
            while True:
                pending = self._revocation(loop)
                await guard()
                if not pending.done():
                    break
        while not self.stopping:
            step = deadline - loop.time()
            waits = [*futures, stop]
            revoked = None
            if guard is not None:
                step = min(step, GUARD_SECONDS)
                revoked = self._revocation(loop)
                waits.append(revoked)
            done, _ = await asyncio.wait(waits, timeout=max(step, 0.0),
                                         return_when=asyncio.FIRST_COMPLETED)
            if revoked is not None and revoked in done:
                assert guard is not None
                await guard()  # before a value published after the revocation is returned
            if any(f in done for f in futures):
                return
            if stop in done:
                break
            if loop.time() >= deadline:
                raise TimeoutError
            if guard is not None and revoked not in done:
                await guard()
        raise MasterStopping("this Titan master is stopping; ask again (the next master "
                             "answers)")

    def _revocation(self, loop: asyncio.AbstractEventLoop) -> asyncio.Future[None]:
        """The future the next :meth:`revoked` resolves."""
        if self._revoked is None:
            self._revoked = loop.create_future()
        return self._revoked

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

    def waited(self, topic: Hashable) -> bool:
        """Whether a waiter is registered on ``topic`` now."""
        return topic in self._waiters

    def notify(self, topic: Hashable, value: Any = None) -> None:
        for fut in self._waiters.pop(topic, ()):
            if not fut.done():
                fut.set_result(value)

    def publish(self, kind: str, data: dict[str, Any]) -> None:
        """Announce an event to subscribers (the WebSocket feed)."""
        if not self._subscribers:
            return
        event = {"type": kind, "data": data}
        for sub in self._subscribers:
            sub.offer(event)

    @property
    def watched(self) -> bool:
        """Whether anyone subscribes: lets a publisher skip building an event nobody reads."""
        return bool(self._subscribers)

    def subscribe(self, accept: Callable[[Event], bool] | None = None,
                  limit: int = 10_000) -> Subscription:
        sub = Subscription(accept, limit)
        self._subscribers.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        self._subscribers.discard(sub)


class Subscription:
    """One subscriber's backlog. Bounded: a client that stops reading (a browser tab asleep)
    must not grow the master's memory without end, so past ``limit`` queued events the
    backlog is dropped and the client told to resync from the JSON twins instead."""

    def __init__(self, accept: Callable[[Event], bool] | None, limit: int) -> None:
        self.accept = accept
        self.limit = limit
        self.items: deque[Event] = deque()
        self.overflowed = False
        self._ready = asyncio.Event()

    def offer(self, event: Event) -> None:
        if self.accept is not None and not self.accept(event):
            return
        if len(self.items) >= self.limit:
            self.items.clear()
            self.overflowed = True
        else:
            self.items.append(event)
        self._ready.set()

    async def next_batch(self) -> tuple[list[Event], bool]:
        """Everything queued since the last call (waiting for at least one), and whether
        events were dropped meanwhile."""
        await self._ready.wait()
        self._ready.clear()
        items, self.items = list(self.items), deque()
        overflowed, self.overflowed = self.overflowed, False
        return items, overflowed
