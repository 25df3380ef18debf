"""Reports sent over the worker channel and not answered yet.

A report whose connection drops before its ack is sent again, in order, first thing on the
next connection (the master deduplicates log lines and rejects a result it already has, as
over HTTP); its ack or refusal reaches the reporter's ``done`` on the channel thread.
"""

from __future__ import annotations

import itertools
import threading
from typing import Any

from titan import errors
from titan.worker.channel_wire import report_frame
from titan.worker.reporter import Done


class UnansweredReports:
    """The reports in flight, by id, with what to call when each is answered."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._posted: dict[int, tuple[str, Done]] = {}

    def frame(self, body: dict[str, Any]) -> tuple[int, str]:
        """A report's id and its frame, as sent (and as sent again: it carries no credit)."""
        rid = next(self._ids)
        return rid, report_frame({"t": "report", "id": rid, **body})

    def keep(self, rid: int, frame: str, done: Done) -> None:
        with self._lock:
            self._posted[rid] = (frame, done)

    def in_order(self) -> list[str]:
        """The frames still unanswered, in the order they were first sent."""
        with self._lock:
            return [frame for _rid, (frame, _done) in sorted(self._posted.items())]

    def answered(self, message: dict[str, Any]) -> None:
        """An ``ack`` or ``error`` frame: its report's ``done`` is told. One answered on an
        earlier connection already (a re-sent report) is ignored."""
        with self._lock:
            posted = self._posted.pop(int(message.get("id") or 0), None)
        if posted is None:
            return
        if message.get("t") == "error":
            posted[1](None, errors.from_response(int(message.get("status") or 400), message))
        else:
            posted[1](message, None)

    def abandon(self) -> None:
        """The worker stops hard: every report still waiting for its ack ends unanswered."""
        with self._lock:
            posted, self._posted = self._posted, {}
        error = errors.ConnectionFailed("stopped before a report was acknowledged")
        for _frame, done in posted.values():
            done(None, error)
