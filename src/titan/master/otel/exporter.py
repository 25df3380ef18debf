"""OTLP out: runs, stages, jobs and actions sent as spans to a collector, off the event loop.

The run service tells the exporter, after each commit, what was recorded
(:class:`~titan.master.runs.service.RunListener`); the exporter only appends that to a
bounded queue — a few hundred nanoseconds on the event loop, never a wait. One thread turns
queued actions into spans (:mod:`.outgoing`), batches them (up to 512 spans or 4 MiB a
request, whatever came in the last second) and POSTs them as OTLP/HTTP protobuf with httpx.
A run's own span and its stage, job and sub-agent spans are built when it ends, from the
database. The master, not the SDK, exports: it sees every run from any language after its
commit, and the agent's process pays nothing.

The collector being down never reaches a run: a failing batch is tried again with backoff
for up to 10 s, then dropped; while it is tried the queue fills up to 20,000 spans (or 64 MiB
of payloads) and what comes past that is dropped. Once a batch was dropped, the next ones get
one try each until one gets through, so an outage costs each batch a connection attempt, not
10 s. A request has 10 s in all, its status line, headers and answer read whole (at most
64 KiB of it): httpx's timeout bounds each read, and an answer (or its headers) trickled or
without end held the thread for good.
Drops are counted (``GET /api/v1/otlp``) and logged once per outage.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, Span

from titan.master.otel import ids, outgoing
from titan.master.otel.settings import ExportSettings
from titan.master.otel.wire import key_values
from titan.retry import Backoff
from titan.status import RunStatus
from titan.storage.base import ActionQuery, Row, Storage
from titan.version import __version__

log = logging.getLogger("titan.master")
_TERMINAL = frozenset({RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED})
_RETRY_STATUSES = frozenset({429, 502, 503, 504})
#: The most of a collector's answer read: OTLP's is a few bytes (a partial success at most).
#: A longer one is no collector's (a wrong URL: a web app, a stream); it is not read on.
_ANSWER_BYTES = 64 * 1024


@dataclass
class _Item:
    run: Row
    actions: list[Row] | None  # None: the run ended, send its structure
    spans: int
    size: int


class Exporter:
    """A :class:`~titan.master.runs.service.RunListener` that exports what it hears of."""

    def __init__(self, settings: ExportSettings, storage: Storage, *, max_spans: int = 20_000,
                 max_bytes: int = 64 << 20, batch_spans: int = 512,
                 batch_bytes: int = 4 << 20, interval: float = 1.0, grace: float = 10.0,
                 timeout: float = 10.0,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.settings = settings
        self.storage = storage
        self.max_spans, self.max_bytes = max_spans, max_bytes
        self.batch_spans, self.batch_bytes = batch_spans, batch_bytes
        self.interval, self.grace = interval, grace
        #: The longest a request may take, its answer read whole: httpx's timeout bounds
        #: each read, so an answer trickled a byte at a time held the thread for good.
        self.timeout = timeout
        self.counts = {"exported_spans": 0, "dropped_spans": 0, "failed_requests": 0,
                       "queue_full_drops": 0}
        self.last_error: str | None = None
        self._queue: deque[_Item] = deque()
        self._queued_spans = self._queued_bytes = 0
        self._cond = threading.Condition()
        self._stopping = False
        self._stopped = threading.Event()  # wakes a retry's pause at once on stop
        self._failing = False
        #: The queue overflowed (logged once), and spans dropped since the thread last took
        #: it: a collector slower than the runs (it answers, only not fast enough) lost spans
        #: with nothing in the log, since no request failed.
        self._overflowing, self._dropped_since = False, 0
        self._client = httpx.Client(timeout=timeout, transport=transport, headers={
            "Content-Type": "application/x-protobuf",
            "User-Agent": f"titan-master/{__version__}", **settings.headers})
        self._thread = threading.Thread(target=self._run, name="titan-otlp-export",
                                        daemon=True)
        self._socket: socket.socket | None = None  # the connection's (see _trace)

    def start(self) -> None:
        self._thread.start()

    def _trace(self, event: str, info: dict[str, object]) -> None:
        """httpx's trace hook: keeps the socket of the connection just made (requests go one
        at a time, so the pool holds that one) for the request watchdog in :meth:`_post`."""
        if event == "connection.connect_tcp.complete":
            stream = info.get("return_value")
            get = getattr(stream, "get_extra_info", None)
            self._socket = get("socket") if get is not None else None

    def stop(self, timeout: float = 5.0) -> None:
        """Send what is queued (for at most ``timeout`` seconds), then stop."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        self._stopped.set()
        self._thread.join(timeout)
        self._client.close()

    def stats(self) -> Row:
        with self._cond:
            queued = self._queued_spans
        return {"endpoint": self.settings.shown_url, "mode": self.settings.mode,
                "content": self.settings.content, "reexport": self.settings.reexport,
                **self.counts, "queued_spans": queued,
                "last_error": self.last_error}

    # -- RunListener (on the event loop: queue and return) -----------------------------------
    def actions_recorded(self, run: Row, actions: list[Row]) -> None:
        if self.settings.wants(run):
            size = sum(len(a.get("inputs") or "") + len(a.get("outputs") or "") + 300
                       for a in actions) if self.settings.content else 300 * len(actions)
            self._offer(_Item(_run_fields(run), actions, len(actions), size))

    def run_changed(self, before: Row, run: Row) -> None:
        if run["status"] != before["status"] and run["status"] in _TERMINAL \
                and self.settings.wants(run):
            self._offer(_Item(_run_fields(run), None, 1, 1000))

    def _offer(self, item: _Item) -> None:
        with self._cond:
            if (self._queued_spans + item.spans > self.max_spans
                    or self._queued_bytes + item.size > self.max_bytes):
                self.counts["dropped_spans"] += item.spans
                self.counts["queue_full_drops"] += 1
                self._dropped_since += item.spans
                if not self._overflowing:
                    self._overflowing = True
                    log.warning("OTLP export queue is full (%d spans or %d MiB waiting for %s): "
                                "spans are dropped until the collector catches up (counted "
                                "in GET /api/v1/otlp)", self.max_spans, self.max_bytes >> 20,
                                self.settings.shown_url)
                return
            self._queue.append(item)
            self._queued_spans += item.spans
            self._queued_bytes += item.size
            self._cond.notify()

    # -- the export thread ----------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            with self._cond:
                if not self._queue and not self._stopping:
                    self._cond.wait(self.interval)
                if not self._queue:
                    if self._stopping:
                        return
                    continue
                items = list(self._queue)
                self._queue.clear()
                self._queued_spans = self._queued_bytes = 0
                if self._overflowing and not self._dropped_since:  # a whole round with room
                    self._overflowing = False
                    log.info("OTLP export queue has room again")
                self._dropped_since = 0
            try:
                self._export(items)
            except Exception as exc:  # a bug or the database away: never the thread's end
                log.exception("OTLP export: building spans failed")
                self.last_error = repr(exc)[:500]
                self.counts["dropped_spans"] += sum(i.spans for i in items)

    def _export(self, items: list[_Item]) -> None:
        batch: list[tuple[Row, Span]] = []
        size = 0
        for run, span in self._spans(items):
            batch.append((run, span))
            size += span.ByteSize()
            if len(batch) >= self.batch_spans or size >= self.batch_bytes:
                self._send(batch)
                batch, size = [], 0
        if batch:
            self._send(batch)

    def _spans(self, items: list[_Item]) -> Iterator[tuple[Row, Span]]:
        content = self.settings.content
        for item in items:
            run_id, agent = item.run["id"], outgoing.agent_of(item.run)
            if item.actions is not None:
                for a in item.actions:
                    yield item.run, outgoing.action_span(run_id, agent, a, content)
            else:
                for span in self._structure(run_id):
                    yield item.run, span

    def _structure(self, run_id: str) -> list[Span]:
        """The run's root, stage, job and sub-agent spans, read from the database."""
        if ids.is_imported_run(run_id):
            return []  # its structure is among its actions (outgoing.run_spans)
        with self.storage.read_transaction() as tx:
            run = tx.get_run(run_id)
            if run is None:  # deleted since (retention)
                return []
            dags, _ = tx.list_dags(agent_run_id=run_id, limit=10_000, newest_first=False)
            jobs = tx.jobs_of_dags([d["id"] for d in dags])
            extents: list[tuple[str, float, int]] = []
            after = 0
            while True:  # payloads cut to one character: only actors and times are needed
                page, _ = tx.list_actions(run_id, ActionQuery(after=after), 1000, preview=1)
                extents.extend((a["actor"], a["started_at"], a["duration_ns"]) for a in page)
                if len(page) < 1000:
                    break
                after = page[-1]["seq"]
        return outgoing.run_spans(run, dags, jobs, extents)

    def _send(self, batch: list[tuple[Row, Span]]) -> None:
        request = ExportTraceServiceRequest()
        by_run: dict[str, ResourceSpans] = {}
        for run, span in batch:
            rs = by_run.get(run["id"])
            if rs is None:
                rs = by_run[run["id"]] = request.resource_spans.add()
                rs.resource.attributes.extend(key_values({
                    "service.name": outgoing.agent_of(run), "service.version":
                    run.get("agent_version"), "titan.run.id": run["id"]}))
                scope = rs.scope_spans.add()
                scope.scope.name, scope.scope.version = "titan", __version__
            rs.scope_spans[0].spans.append(span)
        body = request.SerializeToString()
        # One try while the collector is known to be down (or the master is stopping).
        backoff = Backoff(0.0 if self._stopping or self._failing else self.grace, start=0.5,
                          cap=5.0)
        while True:
            error, retryable = self._post(body)
            if error is None:
                self.counts["exported_spans"] += len(batch)
                if self._failing:
                    log.info("OTLP export to %s works again", self.settings.shown_url)
                    self._failing = False
                return
            self.counts["failed_requests"] += 1
            self.last_error = error
            delay = backoff.next_delay() if retryable else None
            if delay is None or self._stopping:
                break
            self._stopped.wait(delay)
        self.counts["dropped_spans"] += len(batch)
        if not self._failing:
            log.warning("OTLP export to %s failed (%s): spans are dropped until it works "
                        "(counted in GET /api/v1/otlp)", self.settings.shown_url, error)
            self._failing = True

    def _post(self, body: bytes) -> tuple[str | None, bool]:
        """(None, _) once the collector took the batch, else what went wrong and whether
        OTLP says to try again (a connection that failed; 429, 502, 503, 504)."""
        deadline = time.monotonic() + self.timeout
        answer = bytearray()
        # The whole request within the timeout, its status line and headers too: a collector
        # trickling its headers a byte at a time kept each read within httpx's timeout and
        # the thread waiting for good. At the deadline the connection's socket is shut down,
        # which ends a read blocked on it (closing it would not).
        expired = threading.Event()

        def expire() -> None:
            expired.set()
            sock = self._socket
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

        status: int | None = None
        watchdog = threading.Timer(self.timeout, expire)
        watchdog.daemon = True
        watchdog.start()
        try:
            with self._client.stream("POST", self.settings.url, content=body,
                                     extensions={"trace": self._trace}) as reply:
                status = reply.status_code
                # Raw, not inflated: a gzip answer cannot grow past the limit in one chunk.
                # (An answer already read, as a test transport's is, is taken as it is.)
                chunks = (reply.content,) if reply.is_stream_consumed else reply.iter_raw()
                for chunk in chunks:
                    answer += chunk
                    if len(answer) > _ANSWER_BYTES:
                        return (f"HTTP {reply.status_code}, and an answer past "
                                f"{_ANSWER_BYTES // 1024} KiB, which no OTLP collector sends: "
                                "is TITAN_OTLP_ENDPOINT a collector's?"), False
                    if time.monotonic() > deadline:
                        # Not tried again: the collector may have taken the batch.
                        return (f"HTTP {reply.status_code}, and its answer not whole after "
                                f"{self.timeout:g} s ({len(answer)} bytes came)"), False
        except httpx.HTTPError as exc:
            if expired.is_set():  # not tried again: the collector may have taken the batch
                if status is not None:
                    return (f"HTTP {status}, and its answer not whole after "
                            f"{self.timeout:g} s ({len(answer)} bytes came)"), False
                return (f"no whole answer within {self.timeout:g} s (the collector answered "
                        "too slowly, or not at all)"), False
            said = str(exc).replace(self.settings.url, self.settings.shown_url)
            return f"{type(exc).__name__}: {said}"[:500], True
        finally:
            watchdog.cancel()
        if reply.status_code < 300:
            return None, False
        text = answer[:300].decode("utf-8", "replace").strip()
        return f"HTTP {reply.status_code}: {text}", reply.status_code in _RETRY_STATUSES


def _run_fields(run: Row) -> Row:
    """What spans need of a run row (a copy: the row goes on changing on the event loop)."""
    return {k: run.get(k) for k in ("id", "agent_id", "agent_version", "tags")}

