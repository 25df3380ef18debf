"""OTLP in: each received trace becomes a run, each span an action, through the run service.

A span's actor — which sub-agent made it — is the path of ``AGENT`` spans above it, and OTLP
sends a span only when it ends: a sub-agent's span arrives after its children's, often in a
later request. Actions are never rewritten (replay, the hash chain), so a span is recorded
only once its parent is known. Until then it is held here, in memory, at most
``TITAN_OTLP_HOLD`` seconds (then it is recorded under the run's own actor, its
``parent_id`` still naming the missing parent). A root span (no parent) ends the run:
completed, or failed when its status is an error.

Everything goes through :class:`~titan.master.runs.service.RunService` — ``create_run``,
``ingest``, ``update_run`` — so imported actions are checked, redacted, hashed and counted like
any client's. Span ids become action ids, so a re-delivered span (OTLP exporters retry) is a
duplicate the run service drops. What is lost: held spans, if the master dies before their
parent comes (the exporter had its 200); see docs/opentelemetry.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections import Counter
from collections.abc import Callable, Set
from dataclasses import dataclass, field

from titan.errors import APIError, Conflict, NotFound, ValidationFailed
from titan.llm.pricing import hosted_cost
from titan.master.auth.tokens import Principal
from titan.master.otel import incoming
from titan.master.otel.holding import Held, Holding, size_of, tops
from titan.master.otel.ids import run_id_of_trace
from titan.master.otel.known import Known, resource_run
from titan.master.otel.wire import Span
from titan.master.runs.ingest import ERROR_CHARS, MAX_BATCH
from titan.master.runs.service import RunService
from titan.storage.base import Row

log = logging.getLogger("titan.master")
#: Traces remembered (their spans' actors) after their last span; the oldest go first.
MAX_TRACES = 10_000
IMPORT_TAG = "otlp-import"


@dataclass(eq=False)  # one per trace: compared and hashed by identity
class _Trace:
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


@dataclass
class _Ready:
    span: Span
    actor: str
    who: Principal


class Receiver:
    def __init__(self, runs: RunService, hold_seconds: float,
                 price: incoming.Pricer | None = None,
                 clock: Callable[[], float] = time.time,
                 transient: Callable[[BaseException], bool] = lambda exc: True,
                 known: Known | None = None) -> None:
        self.runs = runs
        #: What the database holds already (None: nothing is looked up).
        self.known = known
        #: Whether a failure to record may pass (the database away): its spans wait again.
        self.transient = transient
        self.hold = hold_seconds
        self.price = price or hosted_cost
        self.clock = clock
        self.traces: dict[str, _Trace] = {}
        self.counts: Counter[str] = Counter()
        self._lock = asyncio.Lock()
        self._timer: asyncio.Task[None] | None = None
        self._next_due = float("inf")  # the earliest deadline of a held span
        self.holding = Holding()
        #: Spans taken out of the hold and being written (the run service's commit awaited):
        #: still not recorded, so still counted as held.
        self._writing = 0
        self._refused, self._why = 0, ""  # spans refused while recording, and why (receive)

    def start(self) -> None:
        self._timer = asyncio.create_task(self._release_expired())

    async def stop(self) -> None:
        """Record whatever is still held (under its run's own actor): the master is stopping
        and memory is all they have."""
        if self._timer is not None:
            self._timer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._timer
        try:
            await self._release(float("inf"))
        except Exception:
            log.exception("OTLP: recording held spans at shutdown failed")

    def stats(self) -> Row:
        return {"received_spans": self.counts["received"],
                "recorded_spans": self.counts["recorded"],
                "duplicate_spans": self.counts["duplicates"],
                "skipped_spans": self.counts["skipped"],
                "rejected_spans": self.counts["rejected"],
                "held_spans": self.holding.count + self._writing,
                "released_unparented": self.counts["unparented"],
                "traces": len(self.traces), "hold_seconds": self.hold}

    async def receive(self, spans: list[Span], rejected: int, who: Principal) -> Row:
        """Record a request's spans (those whose parents are known), hold the rest. A new
        trace's run is opened at once, so it is on the Runs page while its spans wait.
        ``refused``: spans the run service refused (what it said in ``why``), never retried."""
        sent = len(spans)
        async with self._lock:
            now = self.clock()
            self.counts.update(received=sent, rejected=rejected)
            self._refused, self._why = 0, ""
            spans = await self._not_titans_own(spans)
            touched: dict[_Trace, list[str]] = {}  # each trace, and its spans held now
            for span in spans:
                trace = self._trace(span, now)
                held_now = touched.setdefault(trace, [])
                if span.span_id in trace.actors:
                    self.counts["duplicates"] += 1
                    continue
                self._hold(trace, span.span_id, Held(span, now + self.hold, who, size_of(span)))
                held_now.append(span.span_id)
                self._next_due = min(self._next_due, now + self.hold)
            for trace, held_now in touched.items():
                if not trace.created:
                    await self._open(trace, who)
                if trace.ordinals is None:
                    await self._recall(trace, held_now)
            ready = [(t, self._resolve(t, forced=frozenset())) for t in touched]
            await self._record([(t, r) for t, r in ready if r])
            if self.holding.too_large():  # not until the next timer tick
                await self._release_locked(now)
            self._forget_old()
            held = sum(len(t.held) for t in touched)
            # Refusals may include spans held from earlier requests, recorded (and refused)
            # now: this request's answer counts at most its own.
            refused, why = min(self._refused, len(spans)), self._why
        return {"accepted": sent - refused, "held": held, "refused": refused, "why": why}

    async def _not_titans_own(self, spans: list[Span]) -> list[Span]:
        """The spans but those Titan exported itself from a run this master records (its
        resource's ``titan.run.id``): sent back to it — ``TITAN_OTLP_ENDPOINT`` pointed at
        this master, or a collector fanning out into it — each native run came in again as
        ``otel-<trace id>``, its cost counted twice. Skipped, and counted so."""
        named = {run for s in spans if (run := resource_run(s.resource)) is not None}
        if not named or self.known is None:
            return spans
        ours = await self.known.runs(sorted(named))
        if not ours:
            return spans
        kept = [s for s in spans if resource_run(s.resource) not in ours]
        self.counts["skipped"] += len(spans) - len(kept)
        return kept

    async def _open(self, trace: _Trace, who: Principal) -> None:
        starts = [h.span.start_ns for h in trace.held.values() if h.span.start_ns > 0]
        fields: Row = {"id": trace.run_id, "agent_id": trace.agent, "tags": [IMPORT_TAG]}
        first = min(starts) / 1e9 if starts else 0.0
        if incoming.EPOCH_2000 <= first <= self.clock() + 86_400:  # as span_times places them
            fields["started_at"] = first
        _, created = await self.runs.create_run(fields, who)
        trace.created, trace.ended = True, False
        # A run that existed before this process knew the trace (a restart): the run service
        # numbers its actions after those it holds.
        trace.ordinals = Counter() if created else None

    async def _recall(self, trace: _Trace, sids: list[str]) -> None:
        """For a trace whose run was recorded before this process knew it (a restart, or a
        trace forgotten), which of these spans and their parents the database holds, and
        under which actors: a span sent again is a duplicate at once (it waited out the hold
        and counted as released unparented first), and a late child of a span recorded
        before gets its actor path (it waited, and lost it)."""
        asked = {sid for sid in sids if sid in trace.held}
        asked |= {p for sid in asked if (p := trace.held[sid].span.parent_id) is not None
                  and p not in trace.actors and p not in trace.held}
        if self.known is None or not asked:
            return
        for row in await self.known.actions(trace.run_id, sorted(asked)):
            trace.actors[row["id"]] = incoming.children_actor(
                row["actor"], incoming.recorded_agent(row["tags"]))
        for sid in asked:
            if sid in trace.actors and self._unhold(trace, sid) is not None:
                self.counts["duplicates"] += 1

    def _trace(self, span: Span, now: float) -> _Trace:
        trace = self.traces.pop(span.trace_id, None)  # re-inserted: dicts keep LRU order
        if trace is None:
            service = "".join(ch for ch in str(span.resource.get("service.name") or "")
                              if ch.isprintable()).strip()
            agent = service[:200] if service and not service.startswith("unknown_service") \
                else "otel"
            trace = _Trace(run_id_of_trace(span.trace_id), agent.replace("/", "-"))
        trace.seen = now
        self.traces[span.trace_id] = trace
        return trace

    def _resolve(self, trace: _Trace, forced: Set[str]) -> list[_Ready]:
        """Held spans whose actor is now known — their parent recorded, no parent at all, or
        ``forced`` (given up waiting) — and, through them, their held descendants."""
        children: dict[str | None, list[str]] = {}
        for sid, waiting in trace.held.items():
            children.setdefault(waiting.span.parent_id, []).append(sid)
        queue = [sid for sid, waiting in trace.held.items()
                 if waiting.span.parent_id is None or waiting.span.parent_id in trace.actors
                 or sid in forced]
        out: list[_Ready] = []
        while queue:
            sid = queue.pop()
            h = self._unhold(trace, sid)
            if h is None:
                continue
            parent = h.span.parent_id
            actor = trace.actors.get(parent, trace.agent) if parent else trace.agent
            if parent is not None and parent not in trace.actors:
                self.counts["unparented"] += 1
            agent = incoming.agent_name(h.span) \
                if incoming.kind_of(h.span) == incoming.AGENT else None
            trace.actors[sid] = incoming.children_actor(actor, agent)
            out.append(_Ready(h.span, actor, h.who))
            queue.extend(children.get(sid, ()))
        return out

    async def _record(self, ready: list[tuple[_Trace, list[_Ready]]]) -> None:
        if not ready:
            return
        convert = self._convert
        done = 0
        # Out of the hold but not recorded until their trace's commit: still counted as held
        # (held_spans fell to 0 while thousands were being written).
        writing = sum(len(r) for _, r in ready)
        self._writing += writing
        try:
            batches = await asyncio.to_thread(lambda: [convert(t, r) for t, r in ready])
            for (trace, spans), actions in zip(ready, batches, strict=True):
                await self._store(trace, spans, actions)
                done += 1
                self._writing -= len(spans)
                writing -= len(spans)
        except BaseException as exc:
            # Not recorded, for a reason of the master's (the database is away, a bug): the
            # spans of this trace and of those after it wait again (the client, answered
            # with an error, sends its own again; spans held from earlier requests must not
            # be lost). Traces recorded before it stay recorded. What the run service
            # refuses as invalid never comes here: retrying could not help (_store). A trace
            # that failed for another reason than the database fails again each time: it is
            # dropped, with the error in the log, so it cannot hold the traces after it back
            # for ever (a span a bug could not store wedged every later one).
            now = self.clock()
            if isinstance(exc, Exception) and not self.transient(exc) and done < len(ready):
                dropped = ready[done][0]
                log.error("OTLP: spans of run %s could not be recorded and are dropped: %r",
                          dropped.run_id, exc)
                self.counts.update(refused=len(ready[done][1]))
                done += 1
            for trace, spans in ready[done:]:
                for r in spans:
                    trace.actors.pop(r.span.span_id, None)
                    # At its size: held at 0 bytes, it escaped MAX_HELD_BYTES.
                    self._hold(trace, r.span.span_id,
                               Held(r.span, now + self.hold, r.who, size_of(r.span)))
            raise
        finally:
            self._writing -= writing
    def _convert(self, trace: _Trace, ready: list[_Ready]) -> list[Row]:
        """The actions (in a worker thread: pricing may load LiteLLM's table)."""
        ready.sort(key=lambda r: (r.span.start_ns, r.span.span_id))
        actions = []
        for r in ready:
            try:
                action = incoming.action_of(r.span, r.actor, None, self.price)
            except Exception as exc:  # noqa: BLE001 - a span no reading of which fits
                log.warning("OTLP: span %s of trace %s could not be read (%r); recorded bare",
                            r.span.span_id, r.span.trace_id, exc)
                action = incoming.bare_action(r.span, r.actor, exc)
            if trace.ordinals is not None:
                key = (action["actor"], action["channel"], action["name"])
                action["ordinal"] = trace.ordinals[key]
                trace.ordinals[key] += 1
            actions.append(action)
        return actions

    async def _store(self, trace: _Trace, ready: list[_Ready], actions: list[Row]) -> None:
        who = ready[0].who
        for i in range(0, len(actions), MAX_BATCH):
            batch = actions[i:i + MAX_BATCH]
            try:
                result = await self._ingest(trace, batch, who)
            except ValidationFailed as exc:
                # The run service refused some of them (a batch is all or nothing): the
                # others go in without them, and the refused are counted, never held again.
                bad = {e.get("index") for e in exc.details.get("errors") or ()} - {None}
                self._refuse(trace, len(bad) or len(batch), exc)
                kept = [a for j, a in enumerate(batch) if j not in bad] if bad else []
                if not kept:
                    continue
                try:
                    result = await self._ingest(trace, kept, who)
                except ValidationFailed as again:
                    self._refuse(trace, len(kept), again)
                    continue
            self.counts.update(recorded=result["accepted"], duplicates=result["duplicates"])
        # The first root ends the run, and later ones cannot (its end stands): one commit,
        # not one per root (a request of 20,000 roots made 20,000 of them, the lock held).
        root = next((r.span for r in ready if r.span.parent_id is None), None)
        if root is not None and not trace.ended:
            await self._end(trace, root, who)
            trace.ended = True

    async def _ingest(self, trace: _Trace, actions: list[Row], who: Principal) -> Row:
        try:
            return await self.runs.ingest(trace.run_id, {"actions": actions}, who)
        except NotFound:  # deleted since this process opened it (retention, prune)
            await self._open(trace, who)
            return await self.runs.ingest(trace.run_id, {"actions": actions}, who)

    def _refuse(self, trace: _Trace, count: int, exc: APIError) -> None:
        log.warning("OTLP: %d span(s) of run %s refused: %s", count, trace.run_id, exc.message)
        self.counts["rejected"] += count
        self._refused += count
        self._why = self._why or f"spans the run service refused: {exc.message}"[:1000]

    async def _end(self, trace: _Trace, root: Span, who: Principal) -> None:
        error = incoming.span_error(root)
        started, duration = incoming.span_times(root, self.clock())
        fields: Row = {"status": "failed" if error else "completed", "started_at": started,
                       "ended_at": started + duration / 1e9}
        if error:
            # Within what a run's error may hold (its type and message are cut already).
            fields["error"] = f"{error['type']}: {error['message']}"[:ERROR_CHARS]
        try:
            await self.runs.update_run(trace.run_id, fields, who)
        except Conflict:  # it ended otherwise already (ended by hand, say): that stands
            pass

    async def _release_expired(self) -> None:
        while True:
            await asyncio.sleep(min(1.0, max(0.05, self.hold / 4)))
            try:
                await self._release(self.clock())
            except Exception:
                log.exception("OTLP: recording spans held past TITAN_OTLP_HOLD failed")

    async def _release(self, now: float) -> None:
        """Record held spans whose wait is over under their run's own actor (a parent that
        never came, or a remote one); and the oldest when too many are held."""
        async with self._lock:
            await self._release_locked(now)

    def _held_bytes(self) -> int:
        return self.holding.size

    def _hold(self, trace: _Trace, sid: str, held: Held) -> None:
        self.holding.hold(trace.held, sid, held)

    def _unhold(self, trace: _Trace, sid: str) -> Held | None:
        return self.holding.unhold(trace.held, sid)

    async def _release_locked(self, now: float) -> None:
        if now < self._next_due and not self.holding.over():
            return
        due, self._next_due = self.holding.due(
            ((t.run_id, t.held) for t in self.traces.values()), now)
        if not due:
            return
        ready = []
        for trace in list(self.traces.values()):
            # A due span whose parent is held too waits on the same missing ancestor: the
            # top of that chain goes, and the chain resolves below it in order.
            if trace.run_id in due:
                ready.append((trace, self._resolve(trace, tops(trace.held, due[trace.run_id]))))
        await self._record([(t, r) for t, r in ready if r])
        self._next_due = min((h.deadline for t in self.traces.values()
                              for h in t.held.values()), default=float("inf"))

    def _forget_old(self) -> None:
        """Past MAX_TRACES, the traces idle longest are forgotten (none still holding spans):
        a span arriving later for one of them is still recorded, numbered by the run
        service."""
        excess = len(self.traces) - MAX_TRACES
        if excess > 0:  # one pass: a scan per trace forgotten was quadratic in a request
            idle = (k for k, t in self.traces.items() if not t.held)
            for key in list(itertools.islice(idle, excess)):
                del self.traces[key]
