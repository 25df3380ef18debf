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

Concurrency: each trace has its own lock, never one for the whole receiver, and a request's
traces are recorded side by side (:mod:`.traces`): one sender's batch of thousands of traces
no longer holds every other sender up.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections import Counter
from collections.abc import Callable, Set

from titan.errors import APIError, Conflict, NotFound, ValidationFailed
from titan.llm.pricing import hosted_cost
from titan.master.auth.tokens import Principal
from titan.master.otel import actors, incoming
from titan.master.otel.holding import Held, Holding, closing, size_of, tops
from titan.master.otel.ids import run_id_of_trace
from titan.master.otel.known import Known, resource_run
from titan.master.otel.traces import Ready, Tally, Trace, each_trace
from titan.master.otel.wire import Span
from titan.master.runs.ingest import ERROR_CHARS, MAX_BATCH
from titan.master.runs.service import RunService
from titan.storage.base import Row

log = logging.getLogger("titan.master")
#: Traces remembered (their spans' actors) after their last span; the oldest go first.
MAX_TRACES = 10_000
IMPORT_TAG = "otlp-import"


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
        self.traces: dict[str, Trace] = {}
        self.counts: Counter[str] = Counter()
        self._timer: asyncio.Task[None] | None = None
        self._next_due = float("inf")  # the earliest deadline of a held span
        self.holding = Holding()
        #: Spans taken out of the hold and being written (the run service's commit awaited):
        #: still not recorded, so still counted as held.
        self._writing = 0

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
        now = self.clock()
        self.counts.update(received=sent, rejected=rejected)
        spans = await self._not_titans_own(spans)
        touched: dict[Trace, list[str]] = {}  # each trace, and its spans held now
        # No await from here to the tasks' start: every span is held before any is resolved.
        for span in spans:
            trace = self._trace(span, now)
            held_now = touched.setdefault(trace, [])
            if span.span_id in trace.actors:
                self.counts["duplicates"] += 1
                continue
            self._hold(trace, span.span_id, Held(span, now + self.hold, who, size_of(span)))
            held_now.append(span.span_id)
            self._next_due = min(self._next_due, now + self.hold)
        tally = Tally()

        async def take(trace: Trace, held_now: list[str]) -> None:
            async with trace.lock:
                if not trace.created:
                    await self._open(trace, who)
                if trace.ordinals is None:
                    await self._recall(trace, held_now)
                # A cycle of parents (A under B under A, a span its own parent) is
                # recorded now: no span can come that resolves it, and it waited out the
                # hold (two minutes by default) before its run showed it.
                cycles = closing(trace.held, [s for s in held_now if s in trace.held])
                await self._record(trace, self._resolve(trace, forced=cycles), tally)

        await each_trace(touched.items(), take)
        if self.holding.too_large():  # not until the next timer tick
            await self._release(now)
        self._forget_old()
        held = sum(len(t.held) for t in touched)
        # Refusals may include spans held from earlier requests, recorded (and refused) now:
        # this request's answer counts at most its own.
        refused = min(tally.refused, len(spans))
        return {"accepted": sent - refused, "held": held, "refused": refused, "why": tally.why}

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

    async def _open(self, trace: Trace, who: Principal) -> None:
        # Where its actions will be placed (a start years before its span's end is not one):
        # the earliest start, even a bogus one, set a run with no root yet in 2001 for good,
        # and one start before 2000 left the run none at all.
        now = self.clock()
        starts = [incoming.span_times(h.span, now)[0] for h in trace.held.values()]
        fields: Row = {"id": trace.run_id, "agent_id": trace.agent, "tags": [IMPORT_TAG]}
        if starts:
            fields["started_at"] = min(starts)
        _, created = await self.runs.create_run(fields, who)
        trace.created, trace.ended = True, False
        # A run that existed before this process knew the trace (a restart): the run service
        # numbers its actions after those it holds.
        trace.ordinals = Counter() if created else None

    async def _recall(self, trace: Trace, sids: list[str]) -> None:
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
            trace.actors[row["id"]] = actors.children_actor(
                row["actor"], actors.recorded_agent(row["tags"]))
        for sid in asked:
            if sid in trace.actors and self._unhold(trace, sid) is not None:
                self.counts["duplicates"] += 1

    def _trace(self, span: Span, now: float) -> Trace:
        trace = self.traces.pop(span.trace_id, None)  # re-inserted: dicts keep LRU order
        if trace is None:
            # Only as much as an agent's name holds is looked at: this runs on the event
            # loop for each new trace, and a service.name of megabytes over a thousand
            # one-span traces held the master for minutes.
            service = "".join(ch for ch in str(span.resource.get("service.name") or "")[:1000]
                              if ch.isprintable()).strip()
            agent = service[:200] if service and not service.startswith("unknown_service") \
                else "otel"
            trace = Trace(run_id_of_trace(span.trace_id), agent.replace("/", "-"))
        trace.seen = now
        self.traces[span.trace_id] = trace
        return trace

    def _resolve(self, trace: Trace, forced: Set[str]) -> list[Ready]:
        """Held spans whose actor is now known — their parent recorded, no parent at all, or
        ``forced`` (given up waiting) — and, through them, their held descendants."""
        children: dict[str | None, list[str]] = {}
        for sid, waiting in trace.held.items():
            children.setdefault(waiting.span.parent_id, []).append(sid)
        queue = [sid for sid, waiting in trace.held.items()
                 if waiting.span.parent_id is None or waiting.span.parent_id in trace.actors
                 or sid in forced]
        out: list[Ready] = []
        while queue:
            sid = queue.pop()
            h = self._unhold(trace, sid)
            if h is None:
                continue
            parent = h.span.parent_id
            actor = trace.actors.get(parent, trace.agent) if parent else trace.agent
            if parent is not None and parent not in trace.actors:
                self.counts["unparented"] += 1
            agent = actors.agent_name(h.span) \
                if incoming.kind_of(h.span) == incoming.AGENT else None
            trace.actors[sid] = actors.children_actor(actor, agent)
            out.append(Ready(h.span, actor, h.who))
            queue.extend(children.get(sid, ()))
        return out

    async def _record(self, trace: Trace, ready: list[Ready], tally: Tally) -> None:
        """Record a trace's resolved spans (its lock held)."""
        if not ready:
            return
        # Out of the hold but not recorded until their trace's commit: still counted as held
        # (held_spans fell to 0 while thousands were being written).
        self._writing += len(ready)
        try:
            actions = await asyncio.to_thread(self._convert, trace, ready)
            await self._store(trace, ready, actions, tally)
        except BaseException as exc:
            # Not recorded, for a reason of the master's (the database is away, a bug): the
            # spans wait again (the client, answered with an error, sends its own again;
            # spans held from earlier requests must not be lost). What the run service
            # refuses as invalid never comes here: retrying could not help (_store). A trace
            # that failed for another reason than the database fails again each time: it is
            # dropped, with the error in the log, so it cannot come back for ever (a span a
            # bug could not store was retried with every later request).
            if isinstance(exc, Exception) and not self.transient(exc):
                log.error("OTLP: spans of run %s could not be recorded and are dropped: %r",
                          trace.run_id, exc)
                self.counts.update(refused=len(ready))
                raise
            now = self.clock()
            for r in ready:
                trace.actors.pop(r.span.span_id, None)
                # At its size: held at 0 bytes, it escaped MAX_HELD_BYTES.
                self._hold(trace, r.span.span_id,
                           Held(r.span, now + self.hold, r.who, size_of(r.span)))
            self._next_due = min(self._next_due, now + self.hold)
            raise
        finally:
            self._writing -= len(ready)

    def _convert(self, trace: Trace, ready: list[Ready]) -> list[Row]:
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

    async def _store(self, trace: Trace, ready: list[Ready], actions: list[Row],
                     tally: Tally) -> None:
        who = ready[0].who
        for i in range(0, len(actions), MAX_BATCH):
            batch = actions[i:i + MAX_BATCH]
            try:
                result = await self._ingest(trace, batch, who)
            except ValidationFailed as exc:
                # The run service refused some of them (a batch is all or nothing): the
                # others go in without them, and the refused are counted, never held again.
                bad = {e.get("index") for e in exc.details.get("errors") or ()} - {None}
                self._refuse(trace, len(bad) or len(batch), exc, tally)
                kept = [a for j, a in enumerate(batch) if j not in bad] if bad else []
                if not kept:
                    continue
                try:
                    result = await self._ingest(trace, kept, who)
                except ValidationFailed as again:
                    self._refuse(trace, len(kept), again, tally)
                    continue
            self.counts.update(recorded=result["accepted"], duplicates=result["duplicates"])
        # The first root ends the run, and later ones cannot (its end stands): one commit,
        # not one per root (a request of 20,000 roots made 20,000 of them).
        root = next((r.span for r in ready if r.span.parent_id is None), None)
        if root is not None and not trace.ended:
            await self._end(trace, root, who)
            trace.ended = True

    async def _ingest(self, trace: Trace, actions: list[Row], who: Principal) -> Row:
        try:
            return await self.runs.ingest(trace.run_id, {"actions": actions}, who)
        except NotFound:  # deleted since this process opened it (retention, prune)
            await self._open(trace, who)
            return await self.runs.ingest(trace.run_id, {"actions": actions}, who)

    def _refuse(self, trace: Trace, count: int, exc: APIError, tally: Tally) -> None:
        log.warning("OTLP: %d span(s) of run %s refused: %s", count, trace.run_id, exc.message)
        self.counts["rejected"] += count
        tally.refused += count
        tally.why = tally.why or f"spans the run service refused: {exc.message}"[:1000]

    async def _end(self, trace: Trace, root: Span, who: Principal) -> None:
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
        if now < self._next_due and not self.holding.over():
            return
        due, self._next_due = self.holding.due(
            ((t.run_id, t.held) for t in self.traces.values()), now)
        if not due:
            return
        tally = Tally()  # refusals are counted in the stats; no request to answer

        async def give_up(trace: Trace, sids: list[str]) -> None:
            async with trace.lock:  # a request may have recorded some meanwhile
                still = [sid for sid in sids if sid in trace.held]
                if still:
                    # A due span whose parent is held too waits on the same missing
                    # ancestor: the top of that chain goes, and the chain resolves below it.
                    ready = self._resolve(trace, tops(trace.held, still))
                    await self._record(trace, ready, tally)

        await each_trace([(t, due[t.run_id]) for t in self.traces.values() if t.run_id in due],
                         give_up)
        self._next_due = min((h.deadline for t in self.traces.values()
                              for h in t.held.values()), default=float("inf"))

    def _held_bytes(self) -> int:
        return self.holding.size

    def _hold(self, trace: Trace, sid: str, held: Held) -> None:
        self.holding.hold(trace.held, sid, held)

    def _unhold(self, trace: Trace, sid: str) -> Held | None:
        return self.holding.unhold(trace.held, sid)

    def _forget_old(self) -> None:
        """Past MAX_TRACES, the traces idle longest are forgotten (none still holding spans):
        a span arriving later for one of them is still recorded, numbered by the run
        service."""
        excess = len(self.traces) - MAX_TRACES
        if excess > 0:  # one pass: a scan per trace forgotten was quadratic in a request
            idle = (k for k, t in self.traces.items() if not t.held and not t.busy)
            for key in list(itertools.islice(idle, excess)):
                del self.traces[key]
