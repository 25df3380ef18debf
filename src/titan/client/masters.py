"""Several masters, one leader: which one a client talks to now, and where it turns next.

Titan may run standby masters beside the leader, all on one PostgreSQL database. A standby
answers every request with ``503 not_leader``, naming the leader when it knows it (the
``X-Titan-Leader`` header and ``details.leader``), and refuses WebSocket upgrades; a master
that is down refuses connections. Neither applied anything, so the request may go to another
master whatever its method. The SDK's :class:`~titan.client.transport.Transport`, the worker's
:class:`~titan.worker.connection.MasterConnection` and its channel all turn here, so they turn
the same way; this module exists so that the rule is written once and tested once.

* :class:`Masters` is the configured list and the master in use, shared by all of a client's
  threads: the master found to lead stays in use for the calls that follow, and a failure
  seen by several threads at once moves it once, not once per thread.
* **A named leader is followed only when it is on the list.** Nothing vouches for the address
  a standby names: a misconfigured or compromised one, or whatever answers today on an
  address that used to be a master, could name any host, and the client would hand that host
  its bearer token and its data. The configured list is the trust boundary. A standby naming
  a leader that is not on it is answered by turning to the next configured master, which
  reaches the leader anyway when the list names it under another spelling (a host name
  instead of an address); the error raised when none leads says which leader was named.
* :class:`Tour` is one logical call's way around the list. It moves on at once while there
  are masters it has not tried since its last pause, and asks for the backoff's pause when it
  comes back to one, so two standbys naming each other (an election in progress) cost one
  pause per round, not a busy loop. :meth:`Tour.summary` says what each master answered.

With one configured master nothing changes: every failure is followed by the backoff's pause.
"""

from __future__ import annotations

import threading
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from titan import errors
from titan.client.urls import same_master

#: The header in which a standby names the leader (also in its body's ``details.leader``).
LEADER_HEADER = "X-Titan-Leader"


def not_leader(status: int, headers: Mapping[str, str], body: Any) -> errors.NotLeader | None:
    """The standby's refusal in an HTTP answer, or None when the answer is not one.

    The leader is taken from the body, else from the ``X-Titan-Leader`` header.
    """
    if status != errors.NotLeader.status:
        return None
    exc = errors.from_response(status, body)
    if not isinstance(exc, errors.NotLeader):
        return None
    if exc.leader is None and headers.get(LEADER_HEADER):
        exc.details["leader"] = headers[LEADER_HEADER]
    return exc


def standby_reason(exc: errors.NotLeader, masters: Masters) -> str:
    """What a standby's answer means, for logs and errors."""
    leader = exc.leader
    if leader is None:
        return "a standby that does not know the leader"
    if masters.listed(leader) is None:
        return (f"a standby naming the leader {leader}, which is not a configured master "
                "(not followed: add it to the master URLs if it is yours)")
    return f"a standby (the leader is {leader})"


class Masters:
    """The configured master URLs, in order, and the one in use now (thread-safe)."""

    def __init__(self, urls: Sequence[str], current: str | None = None) -> None:
        if not urls:
            raise errors.ConfigError("no Titan master URL was given")
        unique: list[str] = []
        for url in urls:  # each master once, in its first place: a round tries it once
            if not any(same_master(url, seen) for seen in unique):
                unique.append(url)
        self.urls: tuple[str, ...] = tuple(unique)
        self._lock = threading.Lock()
        self._index = self._find(current) or 0

    def _find(self, url: str | None) -> int | None:
        if url:
            for i, candidate in enumerate(self.urls):
                if same_master(candidate, url):
                    return i
        return None

    @property
    def current(self) -> str:
        """The master calls go to now."""
        return self.urls[self._index]

    def ordered(self) -> list[str]:
        """Every configured master, the one in use first, the others in their order."""
        current = self._index
        return [self.urls[current], *(u for i, u in enumerate(self.urls) if i != current)]

    def listed(self, url: str | None) -> str | None:
        """The configured URL naming the same master as ``url``, or None."""
        found = self._find(url)
        return None if found is None else self.urls[found]

    def move_on(self, failed: str, leader: str | None = None,
                tried: Collection[str] = ()) -> bool:
        """``failed`` cannot serve (it refused the connection, or it is a standby naming
        ``leader``): turn to ``leader`` when it is configured, else to the next master,
        skipping those in ``tried`` (already tried in this round) while others remain.

        Nothing moves when another thread turned away from ``failed`` already, so a failure
        seen by many threads moves the list once: True when this call moved it.
        """
        with self._lock:
            if self.urls[self._index] != failed:
                return False
            n, before = len(self.urls), self._index
            named = self._find(leader)
            if named is not None and named != self._index and self.urls[named] not in tried:
                self._index = named
            else:
                ahead = [(self._index + step) % n for step in range(1, n + 1)]
                self._index = next((i for i in ahead if self.urls[i] not in tried), ahead[0])
            return self._index != before


class Tour:
    """One logical call's way around the masters: what each said, and when to pause."""

    def __init__(self, masters: Masters) -> None:
        self._masters = masters
        #: Masters tried since the last pause.
        self._round: set[str] = set()
        #: What each master tried answered, last answer kept, in the order first tried.
        self.answers: dict[str, str] = {}
        self.tries = 0
        #: The master the last :meth:`failed` turned the list to, None if it did not move it.
        self.turned: str | None = None

    def failed(self, url: str, reason: str, *, move: bool, leader: str | None = None) -> bool:
        """Note that the try on ``url`` failed for ``reason``; with ``move`` (``url`` cannot
        serve: refused, a standby, a gateway's "down") turn the masters on to the next one.

        True when the backoff's pause is due before the next try: the master to try next was
        already tried since the last pause (always so with a single master, or without
        ``move``).
        """
        self.tries += 1
        self._round.add(url)
        self.answers[url] = reason
        moved = move and self._masters.move_on(url, leader, self._round)
        upcoming = self._masters.current
        self.turned = upcoming if moved else None
        if upcoming in self._round:
            self._round.clear()
            return True
        return False

    def summary(self) -> str:
        """``URL: what it answered`` for each master tried, then those never tried."""
        parts = [f"{url}: {reason}" for url, reason in self.answers.items()]
        untried = [u for u in self._masters.urls if u not in self.answers]
        if untried:
            parts.append("not tried in time: " + ", ".join(untried))
        return "; ".join(parts)
