"""Shipping log lines and results to the master, batched by the network itself.

One thread sends ``POST /workers/{id}/report`` as soon as anything is queued; whatever
accumulates while that request is in flight goes in the next one. Under light load every
line leaves at once; under heavy load batches grow on their own, with no timer anywhere.

Lines and results share one FIFO, so a job's result never leaves before its lines (it was
queued after them, and a batch is always a prefix of the queue). Nothing is dropped when the
master is away: the send retries (see :mod:`titan.worker.connection`) while the queue keeps
growing, and the whole backlog follows once the master is back.
"""

from __future__ import annotations

import collections
import logging
import threading
from collections.abc import Callable
from typing import Any

from titan import errors

log = logging.getLogger("titan.worker")

#: A batch stops growing at this many lines or this many bytes of line text, so one report
#: stays far below the master's body limit however chatty the jobs are.
MAX_BATCH_LINES = 5000
MAX_BATCH_BYTES = 2 << 20

Send = Callable[[dict[str, Any]], dict[str, Any]]
#: Called on the reporter thread after every acknowledged batch: (results, rejected).
Acked = Callable[[list[dict[str, Any]], list[dict[str, Any]]], None]


class Reporter:
    """The queue of outgoing logs and results, and the thread that drains it."""

    def __init__(self, send: Send, on_acked: Acked | None = None) -> None:
        self._send = send
        self._on_acked = on_acked
        self._queue: collections.deque[tuple[bool, dict[str, Any]]] = collections.deque()
        self._cond = threading.Condition()
        self._in_flight = 0
        self._results_pending = 0
        self._unacked: set[tuple[int, int]] = set()  # (job, attempt) of results not acked
        self._closing = False
        self._thread = threading.Thread(target=self._run, name="titan-report", daemon=True)

    # ------------------------------------------------------------------ producers

    def log(self, entry: dict[str, Any]) -> None:
        with self._cond:
            self._queue.append((False, entry))
            if len(self._queue) == 1:
                self._cond.notify_all()

    def result(self, entry: dict[str, Any]) -> None:
        with self._cond:
            self._queue.append((True, entry))
            self._results_pending += 1
            self._unacked.add((int(entry["id"]), int(entry["attempt"])))
            self._cond.notify_all()

    # ------------------------------------------------------------------ state

    @property
    def results_pending(self) -> int:
        """Results queued or in flight, not yet acknowledged by the master."""
        with self._cond:
            return self._results_pending

    def unacked(self) -> list[tuple[int, int]]:
        """(job, attempt) of the finished attempts whose results the master has not taken:
        a worker re-joining a restarted master lists them as held, so they are not sent again."""
        with self._cond:
            return list(self._unacked)

    def idle(self) -> bool:
        with self._cond:
            return not self._queue and not self._in_flight

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything queued so far has been acknowledged; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._queue and not self._in_flight,
                                       timeout)

    def start(self) -> None:
        self._thread.start()

    def close(self, timeout: float | None = None) -> None:
        """Send what is queued, then stop the thread (the send gives up on a hard stop)."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout)

    # ------------------------------------------------------------------ the thread

    def _take(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        logs: list[dict[str, Any]] = []
        results: list[dict[str, Any]] = []
        size = 0
        queue = self._queue
        while queue and len(logs) < MAX_BATCH_LINES and size < MAX_BATCH_BYTES:
            is_result, entry = queue.popleft()
            if is_result:
                results.append(entry)
            else:
                logs.append(entry)
                size += len(entry["line"]) + 64
        return logs, results

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._queue or self._closing)
                if not self._queue:
                    return
                logs, results = self._take()
                self._in_flight = len(logs) + len(results)
            rejected: list[dict[str, Any]] = []
            try:
                reply = self._send({"logs": logs, "results": results})
                rejected = list(reply.get("rejected") or [])
            except errors.APIError as exc:
                # A 4xx can never succeed as sent; keeping it would block everything behind it.
                log.error("master refused a report of %d lines and %d results: %s",
                          len(logs), len(results), exc)
            except errors.TitanError as exc:  # stopping hard: nobody is left to send to
                log.warning("%d log lines and %d results not reported: %s",
                            len(logs), len(results), exc)
                with self._cond:
                    self._in_flight = self._results_pending = 0
                    self._queue.clear()
                    self._cond.notify_all()
                return
            if rejected:
                log.debug("master rejected stale results: %s", rejected)
            with self._cond:
                self._in_flight = 0
                self._results_pending -= len(results)
                self._unacked.difference_update((int(r["id"]), int(r["attempt"]))
                                                for r in results)
                self._cond.notify_all()
            if self._on_acked is not None:
                self._on_acked(results, rejected)
