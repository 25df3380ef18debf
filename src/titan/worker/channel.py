"""Filling the worker's slots over the worker channel: one WebSocket for jobs and reports.

The master pushes jobs the moment their lease commits and acknowledges reports on the same
connection (the protocol: :mod:`titan.master.scheduling.worker_channel`), so a job costs no
HTTP request at all. :class:`ChannelIntake` has the surface of the HTTP
:class:`~titan.worker.poller.Poller` — the daemon uses whichever it got — and its slot
accounting is simpler because nothing is superseded: the worker grants the master one credit
per free slot and the master spends one per job it pushes.

* **titan-channel** connects, says hello (its free slots and every attempt it holds), then
  reads frames until the connection drops; it reconnects with the jittered backoff of
  :mod:`titan.retry` for as long as the worker runs. A master that no longer knows the worker
  (it restarted) closes with 4404: the worker registers again over HTTP, then reconnects.
  Each connection goes to the master in use (``url`` is asked each time); when one fails or
  is refused — a standby refuses the upgrade with its 503 — ``leads`` asks that master over
  HTTP whether it leads, which turns the worker to another master when it does not, so a
  refusal is only taken as final (401/403) from a master that leads, and says so twice.
* The reporter posts reports (:meth:`ChannelIntake.post`, several in flight) and hears of each
  ack on this thread; a report whose connection dropped before its ack is sent again first
  thing on the next one (:mod:`titan.worker.channel_reports`).

Heartbeats, registration, deregistration and downloads stay on HTTP.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException
from websockets.sync.client import ClientConnection

from titan import errors, frame_json, retry
from titan.client.tls import explain
from titan.worker.assignment import Key
from titan.worker.channel_reports import UnansweredReports
from titan.worker.channel_wire import (
    channel_master,
    dial,
    ended,
    refusal,
    retry_line,
)
from titan.worker.intake import Intake
from titan.worker.reporter import Done
from titan.worker.supervisor import Supervisor
from titan.worker.tls_failures import TlsFailures

log = logging.getLogger("titan.worker")

#: Close code of a master that does not know this worker (it restarted): register again.
UNKNOWN_WORKER = 4404
#: How a connection ends that its master did not close: no close frame at all (1006, or
#: none), or its pongs late (1011, the keepalive's).
_ABNORMAL = (None, 1006, 1011)
BACKOFF_START = 0.05
BACKOFF_MAX = 2.0
#: A connection that lived less than this (seconds) counts as a failed try (backoff).
SHORT_LIVED = 1.0


class ChannelUnavailable(errors.TitanError):
    """The master serves no worker channel (an older master, or a proxy that refuses
    WebSockets): the worker uses the HTTP long-poll instead."""


class ChannelIntake(Intake):
    """Credit accounting, the channel thread, and reports sent over the channel."""

    def __init__(self, *, url: str | Callable[[], str], headers: Callable[[], dict[str, str]],
                 slots: int, supervisor: Supervisor, held: Callable[[], list[Key]],
                 stopped: threading.Event, hard: threading.Event,
                 reattach: Callable[[], None], on_error: Callable[[BaseException], None],
                 on_settled: Callable[[], None] = lambda: None,
                 leads: Callable[[str], bool] = lambda master_url: True,
                 following: Callable[[str], None] = lambda master_url: None,
                 tls_failures: TlsFailures | None = None) -> None:
        super().__init__(slots=slots, burst=False, supervisor=supervisor)
        #: Shared with the HTTP calls: TLS failures that lasted are tried slowly.
        self._tls_failures = tls_failures or TlsFailures()
        #: The channel's URL on the master in use, asked before each connection.
        self._url: Callable[[], str] = url if callable(url) else lambda: url
        #: Whether a master whose channel failed leads (see the module docstring).
        self._leads = leads
        #: Told of each master whose channel opened: the worker says when it follows another.
        self._following = following
        self._headers = headers
        self._held = held
        self._stopped = stopped
        self._hard = hard
        self._reattach = reattach
        self._on_error = on_error
        self._on_settled = on_settled
        self._drained = False  # the master said every job leased to us has been pushed
        #: This connection's master takes freed slots with the results in reports.
        self._credit_in_reports = False
        #: Ended jobs whose slots are not offered again (the offer shrank, see resize), and
        #: slots the offer grew by that are still to be granted.
        self._withheld = 0
        self._grant = 0
        self._send_lock = threading.Lock()
        self._ws: ClientConnection | None = None
        self._connected = ""  # the URL of the last connection opened
        self._draining = False
        #: Reports sent and not answered yet, re-sent in order on the next connection.
        self._reports = UnansweredReports()

    # ------------------------------------------------------------------ control

    def connect_first(self) -> None:
        """Open the channel once, before the thread takes over; raises
        :class:`ChannelUnavailable` when the master has no channel to offer."""
        try:
            self._open()
        except InvalidStatus as exc:
            raise ChannelUnavailable(f"the master refused the channel: {exc}") from None

    def start(self) -> None:
        threading.Thread(target=self._run, name="titan-channel", daemon=True).start()

    def _stop_taking(self) -> None:
        """Take no more jobs; cancels keep coming."""
        with self._cond:
            self._draining = True
            self._cond.notify_all()
        self._send_quietly({"t": "drain"}, self._ws)

    def settled(self) -> bool:
        # Only the master's "drained" says nothing is on its way: while the connection is
        # down a pushed job may be lost in flight, and the next hello gets it back (the
        # daemon stops waiting after DRAIN_FLUSH_TIMEOUT if the master never returns).
        with self._cond:
            return self._drained

    def wake(self) -> None:
        super().wake()
        ws = self._ws
        if ws is not None and self._stopped.is_set():
            ws.close()

    def resize(self, slots: int) -> None:
        """A grown offer is granted at once, in a credit frame. A shrunk one cannot take back
        credit the master holds: as many ended jobs as it shrank by keep their slots."""
        super().resize(slots)
        with self._cond:
            grant, self._grant = self._grant, 0
            ws = None if self._draining else self._ws
        if grant and ws is not None:
            self._send_quietly({"t": "credit", "n": grant}, ws)

    def _resized(self, change: int) -> None:
        if change < 0:
            self._withheld -= change
        else:
            kept = min(change, self._withheld)
            self._withheld -= kept
            self._grant += change - kept

    # ------------------------------------------------------------------ events

    def on_finished(self, _key: Key) -> None:
        """An attempt ended (I/O thread): its slot is offered again at once.

        On the connection that was open when the slot freed, or on none: a hello computed
        after this moment counts the slot already, and one computed before it went out on
        the connection captured here (the hello holds the send lock until it is sent).
        """
        with self._cond:
            self._busy -= 1
            # A master that takes credit in reports gets this slot back with the job's
            # result (queued before this call); an older one needs a frame of its own.
            ws = None if self._draining or self._credit_in_reports else self._ws
            if ws is not None and self._withheld:
                self._withheld -= 1
                ws = None
            self._cond.notify_all()
        if ws is not None:
            self._send_quietly({"t": "credit", "n": 1}, ws)

    # on_acked: nothing to do. The master leases a finished job's children in the commit of
    # its result, to whatever credit the worker has granted.

    # ------------------------------------------------------------------ reports

    #: Reports in flight at once: the master applies them in arrival order, so only their
    #: commits overlap.
    window = 4
    #: A ping every this many seconds, the connection given up when its pong is that late.
    #: A leader that froze (SIGSTOP, a paused VM) holds
    #: its connections open; the websockets default (20 s + 20 s) left its workers there for
    #: up to 40 s, past the lease a new leader gives their jobs at takeover (15 s), which
    #: then ran again. Found within 10 s, the worker has turned to the new leader in time.
    ping_seconds = 5.0

    def post(self, body: dict[str, Any], done: Done) -> None:
        """Send a report; ``done`` gets the master's ack (or the refusal as the
        :mod:`titan.errors` class) on the channel thread, or
        :class:`errors.ConnectionFailed` on a hard stop (see :class:`UnansweredReports`)."""
        rid, frame = self._reports.frame(body)
        with self._send_lock:  # held by _open while it re-sends: no report goes twice
            with self._cond:
                hard = self._hard.is_set()
                if not hard:
                    self._reports.keep(rid, frame, done)
                ws = self._ws
                freed = 0 if self._draining or not self._credit_in_reports \
                    else len(body.get("results") or ())
                kept = min(freed, self._withheld)
                self._withheld -= kept
                freed -= kept
            if freed:
                frame = f'{frame[:-1]},"credit":{freed}}}'
            if hard:
                done(None, errors.ConnectionFailed("stopped before a report was acknowledged"))
                return
            if ws is None:
                return  # the next connection sends it
            try:
                ws.send(frame)
            except (ConnectionClosed, OSError):
                pass
            else:
                return
        self._lost(ws)

    def abandon(self) -> None:
        """The worker stops hard: every report still waiting for its ack ends unanswered."""
        self._reports.abandon()

    # ------------------------------------------------------------------ the channel thread

    def _open(self, url: str | None = None) -> None:
        target = self._connected = url or self._url()
        ws = dial(target, self._headers(), self.ping_seconds)
        # The hello is computed and the connection published in one step, and sent before
        # any other frame can go out on it (see on_finished).
        with self._send_lock:
            with self._cond:
                held = dict.fromkeys(self._held())
                credit = 0 if self._draining else max(0, self.slots - self._busy)
                hello = {"t": "hello", "credit": credit,
                         "running": [{"id": i, "attempt": a} for i, a in held]}
                self._ws = ws
                self._drained = False  # a drain is answered again on this connection
                self._credit_in_reports = False  # until this master says it takes them
                # The hello offers the slots as they are now: nothing left to grant or keep.
                self._withheld, self._grant = max(0, self._busy - self.slots), 0
                self._cond.notify_all()
            unanswered = self._reports.in_order()
            try:
                ws.send(frame_json.dumps(hello))
                for frame in unanswered:  # in their order, before any new report
                    ws.send(frame)
            except (ConnectionClosed, OSError):
                self._lost(ws)
                return
        if self._draining:
            self._send_quietly({"t": "drain"}, ws)
        self._following(channel_master(target))

    def _lost(self, ws: ClientConnection) -> None:
        with self._cond:
            if self._ws is ws:
                self._ws = None
                self._cond.notify_all()
        ws.close()

    def _run(self) -> None:
        tries = refused = 0
        try:
            while not self._stopped.is_set():
                ws = self._ws
                if ws is None:
                    url = self._url()
                    try:
                        self._open(url)
                        refused = 0
                        self._tls_failures.cleared()
                    except InvalidStatus as exc:
                        # An older standby refuses with 403 too, and one that takes the lead
                        # between its refusal and the question says it leads: a refusal is
                        # final only when the leader repeats it. (Taken as final at once, it
                        # stopped a worker in a failover, its results unreported.)
                        leads = self._leads(channel_master(url))
                        refused = refused + 1 if leads and exc.response.status_code in (
                            401, 403) else 0
                        if refused >= 2:
                            raise errors.Unauthorized(
                                f"the master refused the channel: {exc}") from None
                        self._pause(tries, exc, said=None if leads else (
                            f"master {channel_master(url)} is {refusal(exc)}; looking for "
                            "the leader"))
                        tries += 1
                    except (WebSocketException, OSError, TimeoutError) as exc:
                        # Gone: the next try goes to another master, if there is one.
                        self._leads(channel_master(url))
                        self._pause(tries, exc)
                        tries += 1
                    continue
                opened = time.monotonic()
                self._read(ws)
                if time.monotonic() - opened >= SHORT_LIVED:
                    tries = 0
                elif not self._stopped.is_set():
                    # Closed as soon as it opened (its master's database away: 1013): not
                    # again at once, or a worker and its master spin on it (~130 a second).
                    # 4404: the worker registered again, and said so.
                    closed = f"{ws.close_code} {ws.close_reason or ''}".rstrip()
                    self._pause(tries, ConnectionError(closed), said=(
                        "" if ws.close_code == UNKNOWN_WORKER else
                        f"master {channel_master(self._connected)} closed the channel at "
                        f"once ({closed})"))
                    tries += 1
        except Exception as exc:  # any failure here must stop the worker visibly
            self._on_error(exc)

    def _pause(self, tries: int, exc: BaseException, said: str | None = None) -> None:
        """Wait before the next try, saying now and then why (:func:`retry_line`)."""
        where = channel_master(self._connected)
        advice = explain(str(exc), where)  # a TLS failure: what would fix it
        slow = self._tls_failures.failed(advice) if advice is not None else None
        line = retry_line(where, exc, advice, said, self._tls_failures.hint(str(exc), where)) \
            if tries in (0, 5) or tries % 20 == 0 else None
        if line is not None:
            log.log(*line)
        self._hard.wait(slow or retry.pause(tries, start=BACKOFF_START, cap=BACKOFF_MAX))

    def _read(self, ws: ClientConnection) -> None:
        closed: ConnectionClosed | None = None
        broke = False
        try:
            for text in ws:
                decoded = frame_json.loads(text)
                for message in decoded if isinstance(decoded, list) else [decoded]:
                    self._frame(message)
        except ConnectionClosed as exc:
            closed = exc
        except (OSError, ValueError) as exc:
            log.warning("worker channel broke: %s", exc)
            broke = True
        self._lost(ws)
        code = ws.close_code
        if code in _ABNORMAL and not self._stopped.is_set():
            # The master went without a word (killed, frozen, cut off): said (in one line,
            # see channel_wire.ended), then asked whether it still leads before connecting
            # to it again, which a frozen one would make wait the whole handshake timeout,
            # and turned from if it does not.
            where = channel_master(self._connected)
            if not broke:
                log.warning("worker channel: lost master %s: %s; reconnecting", where,
                            ended(closed))
            self._leads(where)
        elif code == UNKNOWN_WORKER and not self._stopped.is_set():
            self._reattach()
        elif code is not None and 4400 <= code < 4500 and code != UNKNOWN_WORKER:
            # As the HTTP status it stands for: a refused credential is Unauthorized (the
            # worker then leaves at once, no report of its being deliverable).
            kind = {4401: errors.Unauthorized, 4403: errors.Forbidden}.get(code, errors.APIError)
            raise kind(f"the master closed the worker channel: {ws.close_reason}",
                       status=code - 4000)

    def _frame(self, message: dict[str, Any]) -> None:
        kind = message.get("t")
        if kind == "jobs":
            self._accept(message)
        elif kind == "welcome":
            with self._cond:
                self._credit_in_reports = bool(message.get("credit_in_reports"))
        elif kind == "drained":
            with self._cond:
                self._drained = True
                self._cond.notify_all()
            self._on_settled()
        elif kind in ("ack", "error"):
            self._reports.answered(message)
        else:
            log.debug("worker channel: ignoring a %r frame", kind)

    def _accept(self, message: dict[str, Any]) -> None:
        jobs = list(message.get("jobs") or [])
        with self._cond:
            accepted = self._take(jobs)
            # The master spent a credit on each job it pushed; one this worker runs already
            # (pushed again by a re-join that raced a push) or cannot read takes no slot here,
            # so its credit goes back, or the master would offer this worker one slot fewer
            # for as long as the connection lasts.
            unused = len(jobs) - len(accepted)
            kept = min(unused, self._withheld)
            self._withheld -= kept
            unused -= kept
            ws = self._ws if unused and not self._draining else None
        self._start(accepted, list(message.get("cancel") or []))
        if ws is not None:
            self._send_quietly({"t": "credit", "n": unused}, ws)

    def _send_quietly(self, message: dict[str, Any], ws: ClientConnection | None) -> None:
        """Send a frame on ``ws`` if there is one; a drop is fine (the next hello says it
        all again)."""
        if ws is None:
            return
        try:
            with self._send_lock:
                ws.send(frame_json.dumps(message))
        except (ConnectionClosed, OSError):
            self._lost(ws)
