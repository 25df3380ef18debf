"""Shipping log lines and results to the master, batched by the network itself.

One thread posts a report as soon as anything is queued; whatever accumulates while reports
are in flight goes in the next one. Under light load every line leaves at once; under heavy
load batches grow on their own, with no timer anywhere.

Up to :attr:`Link.window` reports may be in flight at once. Over HTTP that is one (a request
returns with its answer); over the worker channel it is several, because the master applies
a connection's reports in the order they arrive and only their commits overlap: a result
that ends a job no longer waits for the commit of the report before it (a round trip and a
commit, the last hop of a short job's latency).

Each attempt's lines, services' status entries and result wait in a FIFO of their own, so an
attempt's result never leaves before its lines (it was queued after them). A batch takes a
share of every attempt's FIFO in turn: one job flooding its output no longer holds back the
results of the others (a trivial job behind 210 MB of another's output took 11.5 s instead
of 0.3). Nothing is dropped when the master is away: the link re-sends what was not
acknowledged (see :mod:`titan.worker.connection` and :mod:`titan.worker.channel`), and the
whole backlog follows once the master is back.

Nor does the backlog grow without bound. An attempt whose lines held in memory (queued or
in flight) pass its limit (``TITAN_WORKER_OUTPUT_BUFFER``, 16 MiB by default) is told to
pause: the worker stops reading its pipes, so the job blocks on its next write once the pipe
is full, as a program writing to a slow terminal does. It is told to go on when a quarter of
the limit is left. A job that printed gigabytes while its master was away for minutes used
to take the worker's memory with it; now it waits, and loses no line. Only that attempt
waits: the others' output keeps flowing.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from titan import errors
from titan.worker.settings import output_buffer

log = logging.getLogger("titan.worker")

#: A batch stops growing at this many lines or this many bytes of line text, so one report
#: stays far below the master's body limit however chatty the jobs are.
MAX_BATCH_LINES = 5000
MAX_BATCH_BYTES = 2 << 20

#: How many entries of one attempt a batch takes before it turns to the next attempt.
SHARE = 500

_LOG, _RESULT, _SERVICE = 0, 1, 2
Entry = tuple[int, dict[str, Any]]
Key = tuple[Any, Any]

#: What a queued line costs in memory beyond its text: the entry's dict, its numbers, the
#: queue's tuple (measured with sys.getsizeof on CPython 3.11), so a flood of empty lines is
#: held to the limit too.
ENTRY_OVERHEAD = 360



def line_bytes(line: str) -> int:
    """A line's size in UTF-8, as it travels and is held: counting characters took a line
    of emoji for a quarter of its size (the batch limit and the buffer counted wrong)."""
    return len(line) if line.isascii() else len(line.encode("utf-8", "surrogatepass"))


#: Told when an attempt's output must pause (True) or may go on (False); any thread.
Pressure = Callable[[Key, bool], None]


class _Backlog:
    """What waits to be sent: a FIFO per attempt, taken from in turn."""

    def __init__(self) -> None:
        self._by: dict[tuple[Any, Any], collections.deque[Entry]] = {}
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def append(self, kind: int, entry: dict[str, Any]) -> None:
        self._by.setdefault((entry["id"], entry["attempt"]), collections.deque()).append(
            (kind, entry))
        self._count += 1

    def put_back(self, entries: list[Entry]) -> None:
        """Entries taken and to be sent again, at the front of their attempts' FIFOs, in the
        order they were taken."""
        for kind, entry in reversed(entries):
            self._by.setdefault((entry["id"], entry["attempt"]), collections.deque()).appendleft(
                (kind, entry))
            self._count += 1

    def clear(self) -> None:
        self._by.clear()
        self._count = 0

    def take(self, max_lines: int, max_bytes: int) -> list[Entry]:
        """A batch: up to :data:`SHARE` entries of each attempt in turn, until the limits."""
        out: list[Entry] = []
        lines = size = 0
        while self._by and lines < max_lines and size < max_bytes:
            for key in list(self._by):
                queue = self._by[key]
                taken = 0
                while queue and taken < SHARE and lines < max_lines and size < max_bytes:
                    kind, entry = queue.popleft()
                    out.append((kind, entry))
                    taken += 1
                    if kind == _LOG:
                        lines += 1
                        size += line_bytes(entry["line"]) + 64
                if not queue:
                    del self._by[key]
                if lines >= max_lines or size >= max_bytes:
                    break
        self._count -= len(out)
        return out
#: How long a report waits after a master that no longer leads refused it (the worker meanwhile
#: turns to the new leader).
_PAUSE = 0.25

#: How a post ends: the master's reply, or the error that ended it (reporter's bookkeeping).
Done = Callable[[dict[str, Any] | None, BaseException | None], None]
#: Called after every acknowledged batch, on whichever thread delivered the ack:
#: (results, rejected).
Acked = Callable[[list[dict[str, Any]], list[dict[str, Any]]], None]


class Link(Protocol):
    """Where reports go: HTTP (one at a time) or the worker channel (several in flight)."""

    #: How many reports may be unacknowledged at once.
    window: int

    def post(self, body: dict[str, Any], done: Done) -> None:
        """Send ``body``; call ``done`` exactly once with the reply or the error, maybe
        before returning (a synchronous link), maybe later from another thread."""


class SyncLink:
    """A link over a blocking ``send`` (the HTTP route): one report in flight."""

    window = 1

    def __init__(self, send: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
        self._send = send

    def post(self, body: dict[str, Any], done: Done) -> None:
        try:
            reply = self._send(body)
        except errors.TitanError as exc:
            done(None, exc)
        else:
            done(reply, None)


class Reporter:
    """The queue of outgoing logs and results, and the thread that drains it."""

    def __init__(self, link: Callable[[], Link], on_acked: Acked | None = None, *,
                 on_pressure: Pressure | None = None, buffer: int | None = None) -> None:
        #: The link in use now (the worker switches from HTTP to its channel once connected).
        self._link = link
        self._on_acked = on_acked
        self._on_pressure = on_pressure
        self._high = output_buffer() if buffer is None else buffer
        self._low = self._high // 4
        #: Bytes of log lines each attempt holds here, queued or in flight, and the attempts
        #: told to pause.
        self._held: dict[Key, int] = {}
        self._paused: set[Key] = set()
        #: (kind, entry): a log line, a result, or a service's status (_LOG, _RESULT, _SERVICE).
        self._queue = _Backlog()
        self._cond = threading.Condition()
        self._posts = 0  # reports posted and not yet answered
        self._in_flight = 0  # entries (lines and results) in those reports
        self._results_pending = 0
        self._unacked: set[tuple[int, int]] = set()  # (job, attempt) of results not acked
        self._closing = False
        self._dead = False  # stopping hard: nothing more will be sent
        #: After a master that no longer leads refused a report: not before this (monotonic).
        self._not_before = 0.0
        self._thread = threading.Thread(target=self._run, name="titan-report", daemon=True)

    # ------------------------------------------------------------------ producers

    def log(self, entry: dict[str, Any]) -> None:
        key = (entry["id"], entry["attempt"])
        with self._cond:
            self._queue.append(_LOG, entry)
            if len(self._queue) == 1:
                self._cond.notify_all()
            held = self._held[key] = self._held.get(key, 0) + line_bytes(entry["line"]) + \
                ENTRY_OVERHEAD
            pause = held > self._high and key not in self._paused and not self._dead
            if pause:
                self._paused.add(key)
        if pause and self._on_pressure is not None:
            log.info("job %s attempt %s holds %d MiB of unsent output: pausing its output "
                     "until the master takes it", key[0], key[1], held >> 20)
            self._on_pressure(key, True)

    def _release(self, logs: list[dict[str, Any]]) -> list[Key]:
        """Lines acknowledged or dropped (``_cond`` held): the attempts that may go on."""
        for entry in logs:
            key = (entry["id"], entry["attempt"])
            left = self._held.get(key, 0) - line_bytes(entry["line"]) - ENTRY_OVERHEAD
            if left > 0:
                self._held[key] = left
            else:
                self._held.pop(key, None)
        resumed = [k for k in self._paused if self._held.get(k, 0) <= self._low]
        self._paused.difference_update(resumed)
        return resumed

    def _resume(self, keys: list[Key]) -> None:
        if self._on_pressure is not None:
            for key in keys:
                self._on_pressure(key, False)

    def service(self, entry: dict[str, Any]) -> None:
        """A service's health (``{"id", "attempt", "health", "host", "port", ...}``)."""
        with self._cond:
            self._queue.append(_SERVICE, entry)
            self._cond.notify_all()

    def result(self, entry: dict[str, Any]) -> None:
        with self._cond:
            self._queue.append(_RESULT, entry)
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

    def output_paused(self, key: Key) -> bool:
        """Whether attempt ``key``'s output is to be paused now."""
        with self._cond:
            return key in self._paused

    def idle(self) -> bool:
        with self._cond:
            return not self._queue and not self._posts

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything queued so far has been acknowledged; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._queue and not self._posts, timeout)

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

    def _take(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
        logs: list[dict[str, Any]] = []
        results: list[dict[str, Any]] = []
        statuses: list[dict[str, Any]] = []
        for kind, entry in self._queue.take(MAX_BATCH_LINES, MAX_BATCH_BYTES):
            (results if kind == _RESULT else statuses if kind == _SERVICE else logs).append(entry)
        return logs, results, statuses

    def _run(self) -> None:
        while True:
            with self._cond:
                # No timeout but during a pause after a refusal: an idle worker's reporter
                # must not wake four times a second for nothing.
                while not self._ready():
                    self._cond.wait(self._pause_left())
                if self._dead or not self._queue:
                    return
                link = self._link()
                logs, results, statuses = self._take()
                self._posts += 1
                self._in_flight += len(logs) + len(results) + len(statuses)

            def done(reply: dict[str, Any] | None, exc: BaseException | None,
                     logs: list[dict[str, Any]] = logs,
                     results: list[dict[str, Any]] = results,
                     statuses: list[dict[str, Any]] = statuses,
                     sent: int = len(logs) + len(results) + len(statuses)) -> None:
                self._answered(logs, results, reply, exc, sent, statuses)

            body: dict[str, Any] = {"logs": logs, "results": results}
            if statuses:  # only then: a report stays what a master without services reads
                body["services"] = statuses
            link.post(body, done)

    def _pause_left(self) -> float | None:
        left = self._not_before - time.monotonic()
        return left if left > 0 else None

    def _ready(self) -> bool:
        # Called with _cond held. The link is asked each time: the worker switches from
        # HTTP to its channel (and so to a wider window) once the channel is open.
        return self._dead or (self._closing and not self._queue) or \
            bool(self._queue) and self._posts < self._link().window \
            and time.monotonic() >= self._not_before

    def _answered(self, logs: list[dict[str, Any]], results: list[dict[str, Any]],
                  reply: dict[str, Any] | None, exc: BaseException | None,
                  sent: int, statuses: list[dict[str, Any]] | None = None) -> None:
        """A post ended (any thread): account for it, and tell the worker what was taken."""
        rejected: list[dict[str, Any]] = list((reply or {}).get("rejected") or [])
        if isinstance(exc, errors.NotLeader | errors.StatementCancelled):
            # The master lost its leadership with the report in flight, or the database
            # cancelled its statement (statement_timeout): nothing of it was applied. Sent
            # again (to the leader the worker turns to), first in line, after a pause, as the
            # HTTP route asks again after a 503; dropped, its results were lost and their
            # attempts ran a second time.
            why = "a master that no longer leads" if isinstance(exc, errors.NotLeader) \
                else f"the master's database ({exc.message})"
            log.warning("%s refused a report of %d lines and %d results: sending it again",
                        why, len(logs), len(results))
            with self._cond:
                again = [*((_LOG, e) for e in logs), *((_SERVICE, e) for e in statuses or ()),
                         *((_RESULT, e) for e in results)]
                self._queue.put_back(again)
                self._posts -= 1
                self._in_flight -= sent
                self._not_before = time.monotonic() + _PAUSE
                self._cond.notify_all()
            return
        if isinstance(exc, errors.APIError):
            # A 4xx can never succeed as sent; keeping it would block everything behind it.
            log.error("master refused a report of %d lines and %d results: %s",
                      len(logs), len(results), exc)
        elif exc is not None:  # stopping hard: nobody is left to send to
            log.warning("%d log lines and %d results not reported: %s",
                        len(logs), len(results), exc)
            with self._cond:
                self._dead = True
                self._posts = self._in_flight = self._results_pending = 0
                self._queue.clear()
                self._held.clear()
                resumed = list(self._paused)
                self._paused.clear()
                self._cond.notify_all()
            self._resume(resumed)
            return
        if rejected:
            log.debug("master rejected stale results: %s", rejected)
            _say_superseded(rejected)
        with self._cond:
            self._posts -= 1
            self._in_flight -= sent
            self._results_pending -= len(results)
            self._unacked.difference_update((int(r["id"]), int(r["attempt"])) for r in results)
            resumed = self._release(logs)
            self._cond.notify_all()
        self._resume(resumed)
        if self._on_acked is not None:
            self._on_acked(results, rejected)


def _say_superseded(rejected: list[dict[str, Any]]) -> None:
    """Warn of each result refused because its attempt had lost the job (its lease ran out
    while this worker was cut off or paused, and the job went again): an operator saw nothing
    on the worker. Not of the other refusals (a cancelled job's, a result already taken): the
    master gives a reason for this one alone (``"why": "superseded"``)."""
    for entry in rejected:
        if entry.get("why") != "superseded":
            continue
        job = str(entry.get("job") or f"id {entry.get('id')}")[:300]
        log.warning("job %s (id %s) attempt %s: the master refused its result: the attempt's "
                    "lease had run out (this worker did not reach the master for longer than "
                    "the lease) and the master had already given the job to attempt %s; this "
                    "attempt's result is dropped", job, entry.get("id"), entry.get("attempt"),
                    entry.get("next_attempt", "?"))
