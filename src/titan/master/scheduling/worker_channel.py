"""The worker channel: one WebSocket per worker that carries leases, results and acks.

The HTTP protocol (:mod:`.worker_protocol`) costs a framework request per hop: a long-poll
answered, re-sent, superseded by a quick fetch, a report and its reply. Over the channel the
master *pushes* jobs the moment their lease commits, and the worker sends results on the same
connection, so a job costs three small frames and no request at all.

Frames are JSON text. Worker → master:

* ``{"t": "hello", "credit": N, "running": [{"id", "attempt"}...]}`` first: the slots it offers
  and every attempt it holds (running, or finished with the result not acknowledged yet).
  Jobs leased to it that it does not hold are sent again (the push carrying them was lost).
* ``{"t": "credit", "n": K}``: K more slots are free (a job finished, or a job pushed took no
  slot: the worker runs it already, or could not read it).
* ``{"t": "report", "id": R, "logs": [...], "results": [...], "credit": K}``: as
  ``POST .../report``; answered ``{"t": "ack", "id": R, "rejected": [...]}`` once committed,
  or ``{"t": "error", "id": R, "error": {...}}`` when the master refuses it. ``credit`` (optional)
  is the slots its results freed: a worker told ``credit_in_reports`` returns a finished job's
  slot with its result instead of a frame of its own (two frames less per job on each side),
  and only on a report's first sending (a re-sent one was counted by the hello).
* ``{"t": "drain"}``: take no more jobs (cancels still come). Answered ``{"t": "drained"}``
  once every job leased to the worker has been pushed, so a draining worker knows it holds
  all it must finish before it leaves (a lease committed a moment before the drain arrived
  would otherwise reach a worker already gone).

Master → worker: ``{"t": "welcome", "credit_in_reports": true}`` once the hello is taken,
``{"t": "jobs", "jobs": [...], "cancel": [...]}`` (assignments as a poll returns them) besides
acks and errors; messages that are ready in the same loop round travel
together as one frame holding a JSON array of them.

Credit is counted by increments, so frames crossing on the wire can never make the master
lease more than the worker's free slots: the master spends one credit per job it pushes, the
worker adds one per slot that frees. The channel parks a long-poll on the worker's record for
as long as it is open (with its credit as the offer), so dispatch, cancels, deregistration
and the lost-worker sweep treat a channel exactly as they treat a parked poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from titan import frame_json
from titan.errors import APIError, ValidationFailed
from titan.master.scheduling import kills
from titan.master.scheduling import worker_fields as fields
from titan.master.scheduling import worker_protocol as proto
from titan.master.scheduling.engine import Engine
from titan.master.scheduling.state import Changes, WorkerRec, capacity
from titan.storage.base import Row

log = logging.getLogger("titan.master")

#: ``receive()`` returns one text frame, or None once the worker hung up.
Receive = Callable[[], Awaitable[str | None]]
Send = Callable[[str], Awaitable[None]]


class WorkerChannel:
    """One connected worker: a reader for its frames and a pump for its jobs."""

    def __init__(self, engine: Engine, worker_id: str, receive: Receive, send: Send) -> None:
        self.engine = engine
        self.worker_id = worker_id
        self._receive = receive
        self._send_frame = send
        self._send_lock = asyncio.Lock()
        self._outbox: list[Row] = []
        self._credit = 0
        self._closed = False
        self._drain_pending = False  # the worker drains: say "drained" once nothing is in flight
        self._reports: set[asyncio.Task[None]] = set()
        self._worker: WorkerRec  # the record the channel serves (see _current)

    async def _send(self, message: Row) -> None:
        """Send ``message``, in one frame with whatever else is sent in the same loop round.

        A commit often answers a report and pushes the jobs it leased at once: one frame (a
        JSON array) costs one write to the socket instead of two.
        """
        self._outbox.append(message)
        if len(self._outbox) > 1:
            return  # the first message of this round sends it
        await asyncio.sleep(0)  # the other tasks this commit woke queue their messages
        async with self._send_lock:
            batch, self._outbox = self._outbox, []
            await self._send_frame(frame_json.dumps(batch[0] if len(batch) == 1 else batch))

    async def serve(self) -> None:
        """Run until the worker hangs up; raises the :class:`APIError` that ends the channel
        (a bad frame, a worker the master does not know)."""
        hello = await self._hello()
        if hello is None:
            return
        worker = self.engine.worker(self.worker_id)
        # The hello is checked whole before anything about the worker changes.
        credit = fields.int_field(hello.get("credit"), "credit", hi=4096)
        held = {fields.attempt_key(r, "running") for r in fields.entries(hello, "running")}
        self._credit = credit
        worker.transport, worker.channel = "channel", self
        self._worker = worker
        worker.assigned.extend(proto.undelivered(self.engine, worker, held))
        await self._send({"t": "welcome", "credit_in_reports": True})
        pump = asyncio.create_task(self._pump())
        try:
            await self._read()
        finally:
            self._closed = True
            worker = self._worker
            if worker.channel is self:
                worker.channel = None
            if worker.poll is not None and not worker.poll.done():
                worker.poll.set_result(None)
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await pump
            for task in list(self._reports):
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    async def _hello(self) -> Row | None:
        text = await self._receive()
        if text is None:
            return None
        message = _decode(text)
        if message.get("t") != "hello":
            raise ValidationFailed("the first frame must be a hello", details={"field": "t"})
        return message

    # ------------------------------------------------------------------ worker → master

    async def _read(self) -> None:
        while True:
            text = await self._receive()
            if text is None:
                return
            message = _decode(text)
            kind = message.get("t")
            worker = self.engine.worker(self.worker_id)  # also marks it seen
            if kind == "credit":
                # Never more than its slots, whatever a confused or hostile worker sends.
                self._credit = min(worker.slots,
                                   self._credit + fields.int_field(message.get("n"), "n", hi=4096))
                self._wake(worker)
            elif kind == "report":
                freed = fields.int_field(message.get("credit"), "credit", default=0, hi=4096)
                if freed:
                    # Before the report is applied: the slots its results freed are offered
                    # when its commit leases the jobs they made ready (one commit, one frame).
                    self._credit = min(worker.slots, self._credit + freed)
                    if worker.poll is not None and not worker.poll.done():
                        worker.poll_free = self._credit
                # Applied in arrival order (the synchronous part of report() runs before the
                # next frame is read); only the wait for the commit overlaps.
                task = asyncio.create_task(self._report(message))
                self._reports.add(task)
                task.add_done_callback(self._reports.discard)
                await asyncio.sleep(0)
                if freed and not worker.assigned:
                    self._wake(worker)  # it leased nothing (refused, or nothing was ready)
            elif kind == "drain":
                if worker.live:
                    ch = Changes()
                    self.engine.sched.lose_worker(worker, ch, state="draining")
                    ch.events.append(("worker_updated", {"id": worker.id, "state": "draining"}))
                    await self.engine.submit(ch)
                self._drain_pending = True
                self._wake(worker)
            else:
                raise ValidationFailed(f"unknown frame type {kind!r}", details={"field": "t"})

    @staticmethod
    def _wake(worker: WorkerRec) -> None:
        """Credit arrived or the worker drained: the parked pump leases again."""
        if worker.poll is not None and not worker.poll.done():
            worker.poll.set_result(None)

    async def _report(self, message: Row) -> None:
        rid = message.get("id")
        try:
            reply = await proto.report(self.engine, self.worker_id, message)
        except APIError as exc:  # refused whole, as the HTTP route would with a 4xx
            with contextlib.suppress(Exception):
                await self._send({"t": "error", "id": rid, "status": exc.status,
                                  **exc.to_body()})
            return
        except Exception:  # a bug: said as a 500, so the worker drops this batch, not wedges
            log.exception("a worker report failed")
            with contextlib.suppress(Exception):
                await self._send({"t": "error", "id": rid, "status": 500, "error": {
                    "code": "internal_error", "message": "the master failed on this report",
                    "details": {}}})
            return
        with contextlib.suppress(Exception):
            await self._send({"t": "ack", "id": rid, **reply})

    # ------------------------------------------------------------------ master → worker

    def _current(self) -> WorkerRec:
        """The worker's record now. A worker that registers again while its channel is open
        (in a failover its heartbeat is refused while the channel's hello is taken) gets a
        new record; the channel carries that one's jobs from then on. Kept on the record of
        its hello, the pump parked on a record the dispatcher no longer sees: the worker,
        live with every slot free, was sent nothing again (a fleet QA pass)."""
        worker = self.engine.sched.workers.get(self.worker_id)
        if worker is not None and worker is not self._worker and worker.channel is None:
            # (A record another channel's hello took is that channel's to serve.)
            worker.transport, worker.channel = "channel", self
            self._worker = worker
        return self._worker

    async def _pump(self) -> None:
        """Lease what the worker's credit allows, push it once committed; park otherwise."""
        engine = self.engine
        while not self._closed:
            worker = self._current()
            ch = Changes()
            want = capacity(worker, self._credit)
            if want > 0 and worker.live:
                worker.assigned.extend(j.id for j in engine.sched.take(worker, want, ch))
            commit: Any = engine.submit(ch) if not ch.empty() else None
            if commit is not None and worker.assigned:
                worker.lease_commit = commit
            if self._drain_pending and not worker.assigned and commit is None:
                # Every job leased to it has been pushed: the worker may leave once they end.
                self._drain_pending = False
                await self._send({"t": "drained"})
            if not worker.assigned and not worker.cancels:
                fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
                worker.poll, worker.poll_free = fut, self._credit
                try:
                    commit = await fut
                finally:
                    if worker.poll is fut:
                        worker.poll = None
            if commit is not None:
                # Shielded: a channel closing while it waits must not cancel the commit,
                # whose notices (waiters, store_wait, events) go out when it completes.
                await asyncio.shield(commit)
            await proto.leases_committed(worker)
            jobs = engine.assignments(worker)
            cancels = kills.cancel_entries(engine, worker.cancels, worker)
            worker.cancels.clear()
            self._credit = max(0, self._credit - len(jobs))
            if jobs or cancels:
                await self._send({"t": "jobs", "jobs": jobs, "cancel": cancels})


def _decode(text: str) -> Row:
    try:
        message = frame_json.loads(text)
    except ValueError as exc:
        raise ValidationFailed(f"a frame is not JSON: {exc}") from None
    except RecursionError:  # nested past the parser's depth: refused like any bad frame
        raise ValidationFailed("a frame is nested too deeply") from None
    if not isinstance(message, dict):
        raise ValidationFailed("a frame must be a JSON object")
    return message
