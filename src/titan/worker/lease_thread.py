"""The worker's calls to the master and its titan-lease thread: register, pick the intake, heartbeat.

Part of :class:`~titan.worker.daemon.Worker` (a mixin; the worker's constructor sets the
attributes declared here). Every call names the worker; one the master answers
``404 unknown_worker`` (it forgot the worker) registers again, once for all threads, with the
attempts the worker holds, and is then retried. The lease thread registers, heartbeats once
at once (the master's second sample of this host's clock), opens the worker channel or falls
back to the HTTP pollers, then heartbeats until the worker stops. Which master the worker
follows is said when it changes, a failover (:class:`Following`). A thread
that cannot go on hands its error to :meth:`LeaseThread._fail`, which wakes the main thread.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import sys
import threading
import time
from typing import Any

from websockets.exceptions import WebSocketException

from titan import errors
from titan.version import __version__
from titan.worker.assignment import Key
from titan.worker.channel import ChannelIntake, ChannelUnavailable
from titan.worker.channel_wire import channel_url
from titan.worker.connection import MasterConnection, Stopped, is_unknown_worker
from titan.worker.executor import Executor
from titan.worker.intake import Intake
from titan.worker.reporter import Link, Reporter, SyncLink
from titan.worker.supervisor import Supervisor
from titan.worker.wakeup import Wakeup

log = logging.getLogger("titan.worker")

#: The heartbeat period the worker takes from a master's registration reply, at most: a third
#: of the longest lease a master accepts (TITAN_LEASE_SECONDS, an hour). Beyond it a master
#: that said 1e300 killed the heartbeat thread (the wait overflowed); heartbeating more often
#: than asked is harmless, never is not.
MAX_HEARTBEAT = 1200.0
#: ... and at least (a third of the shortest lease, 1 s): no busy loop of heartbeats.
MIN_HEARTBEAT = 0.1
#: The shortest wait for a heartbeat's answer (seconds): a loaded master is not hurried.
HEARTBEAT_TIMEOUT_MIN = 2.0


#: A master that forgets this worker again within this many seconds is said at INFO only.
FORGOT_AGAIN = 60.0


class Following:
    """Which master this worker follows, said once when it turns to another (a failover: it
    said nothing of which master it followed), and the re-registrations it needs, said once a
    minute per master at most (a new leader does not know the worker: that is no news)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._url = ""
        self._forgot: dict[str, float] = {}

    def answered(self, url: str) -> None:
        """``url`` answered as the leader does (a standby answers 503 not_leader)."""
        with self._lock:
            before, self._url = self._url, url
        if before and before != url:
            log.warning("following the leader at %s (was %s)", url, before)

    def forgot(self, url: str, worker_id: str | None) -> None:
        """``url`` does not know this worker: it registers again."""
        now = time.monotonic()
        with self._lock:
            last, self._forgot[url] = self._forgot.get(url, -math.inf), now
        log.log(logging.WARNING if now - last > FORGOT_AGAIN else logging.INFO,
                "master %s does not know worker %s (it restarted, has just taken the lead, "
                "or counted this worker lost after it missed its heartbeats); registering "
                "again", url, worker_id)


def stamped(body: dict[str, Any]) -> dict[str, Any]:
    """``body`` with ``now``, this host's time as the request is sent (each try of it: a call
    retried through an outage must not carry the time of its first try, which the master took
    for a clock that far behind): the master estimates this host's clock skew from it."""
    return {**body, "now": time.time()}


def seconds_from_master(reply: dict[str, Any], key: str, fallback: float, low: float,
                        high: float) -> float:
    """The period ``reply[key]``, within ``low`` and ``high`` (a warning when it was not);
    ``fallback`` when the reply names none, or no number of seconds at all."""
    value = reply.get(key)
    try:
        seconds = float(value) if value is not None else math.nan
    except (TypeError, ValueError, OverflowError):
        seconds = math.nan
    if math.isnan(seconds) or seconds <= 0:
        return fallback
    bounded = min(max(seconds, low), high)
    if bounded != seconds:
        log.warning("the master's %s of %gs is out of %g-%gs: %gs it is", key, seconds, low,
                    high, bounded)
    return bounded


def retry_wait(details: Any, left: float) -> float | None:
    """How long to wait before registering again after a name refusal, from the master's
    ``retry_after`` (0.05 s at least: a negative, NaN or huge value never makes the worker
    spin or wait past ``left``); None to give up (no hint, or not within ``left``)."""
    wait = details.get("retry_after") if isinstance(details, dict) else None
    if isinstance(wait, bool) or not isinstance(wait, (int, float)) or not math.isfinite(wait):
        return None
    wait = max(0.05, float(wait))
    return wait if wait <= left else None


class LeaseThread:
    # Set by the worker's constructor.
    transport: str
    burst: bool
    announce: bool
    name: str
    name_given: bool
    worker_id: str | None
    heartbeat_seconds: float
    lease_seconds: float
    capabilities: list[str]
    slots: int
    conn: MasterConnection
    supervisor: Supervisor
    poller: Intake
    _runner: Executor
    _reporter: Reporter
    _http_reports: SyncLink
    _channel: ChannelIntake | None
    _hard: threading.Event
    _stopped: threading.Event
    _intake_ready: threading.Event
    _wake: Wakeup
    _draining: bool
    _fatal: BaseException | None
    _register_lock: threading.Lock
    _generation: int
    _following: Following

    # ------------------------------------------------------------------ master calls

    def _register(self, *, reattach: bool) -> None:
        body: dict[str, Any] = {
            "worker_id": self.worker_id, "name": self.name, "name_given": self.name_given,
            "hostname": socket.gethostname(),
            "pid": os.getpid(), "capabilities": self.capabilities, "slots": self.slots,
            "lend": self._runner.lends_waiting_slots,
            "version": __version__,  # the master tells a fleet of mixed versions
        }
        if reattach:
            body["running"] = [{"id": i, "attempt": a} for i, a in self._held()]
        reply = self.conn.call("POST", "/workers/register", lambda: stamped(body))
        self._following.answered(self.conn.master_url)
        self.worker_id = str(reply["worker_id"])
        if isinstance(reply.get("name"), str) and reply["name"] != self.name:
            # Its default name was a live worker's: the free one the master chose, kept for
            # this worker's life (asked for again when it re-registers).
            log.warning("worker name %r is taken by a live worker: registered as %r",
                        self.name, reply["name"])
            self.name = reply["name"]
        if reply.get("credential"):
            self.conn.set_credential(str(reply["credential"]))
        self.lease_seconds = seconds_from_master(
            reply, "lease_seconds", self.lease_seconds, 3 * MIN_HEARTBEAT, 3 * MAX_HEARTBEAT)
        self.heartbeat_seconds = seconds_from_master(
            reply, "heartbeat_seconds", self.heartbeat_seconds, MIN_HEARTBEAT, MAX_HEARTBEAT)

    def _register_first(self) -> None:
        """Register; when the name given is held by a worker the master has not heard gone
        yet (no connection held, heard lately: the crashed one a supervisor restarts this
        one to replace), ask again once it knows, for one lease at most."""
        give_up = time.monotonic() + self.lease_seconds
        while True:
            try:
                self._register(reattach=False)
                return
            except errors.WorkerNameTaken as exc:
                wait = retry_wait(exc.details, give_up - time.monotonic())
                if wait is None:
                    raise
                line = (f"the name {self.name!r} is held by {exc.details.get('worker_id')}, "
                        f"which holds no connection: asking again in {wait:.1f} s")
                log.warning("%s", line)
                if self.announce:
                    print(f"titan worker: {line}", file=sys.stderr, flush=True)
                if self._stopped.wait(wait):
                    raise

    def _reattach(self, generation: int) -> None:
        with self._register_lock:
            if generation != self._generation:
                return  # another thread already re-registered
            self._following.forgot(self.conn.master_url, self.worker_id)
            self._register(reattach=True)
            self._generation += 1

    def _call(self, action: str, body: Any, *, timeout: float = 30.0) -> Any:
        while True:
            generation = self._generation
            try:
                reply = self.conn.call("POST", f"/workers/{self.worker_id}/{action}", body,
                                       timeout=timeout)
                self._following.answered(self.conn.master_url)
                return reply
            except errors.NotFound as exc:
                if not is_unknown_worker(exc):
                    raise
                self._following.answered(self.conn.master_url)
                self._reattach(generation)
            except errors.APIError as exc:
                # A master bug (5xx after retries). Polls and heartbeats carry nothing that
                # could be lost, so they keep trying; a report is raised, so the reporter can
                # drop the batch that crashes the master instead of wedging behind it.
                if exc.status < 500 or action == "report":
                    raise
                log.error("%s", exc)

    def _report_link(self) -> Link:
        """Where reports go now: the channel once it is open, else the HTTP route."""
        return self._channel if self._channel is not None else self._http_reports

    def _report_http(self, body: dict[str, Any]) -> dict[str, Any]:
        try:
            reply = self._call("report", body)
        except (errors.Unauthorized, errors.Forbidden) as exc:
            self._fail(exc)  # its credential refused: the worker kills its jobs and leaves
            raise
        return reply if isinstance(reply, dict) else {}

    def _open_channel(self) -> bool:
        """Switch to the worker channel; False when the master offers none (HTTP it is)."""
        worker_id, base = str(self.worker_id), self.conn.master_url
        channel = ChannelIntake(
            url=lambda: channel_url(self.conn.master_url, worker_id),
            headers=lambda: dict(self.conn.auth), slots=self.slots,
            supervisor=self.supervisor, held=self._held, stopped=self._stopped,
            hard=self._hard, reattach=lambda: self._reattach(self._generation),
            on_error=self._fail, on_settled=self._wake.notify, leads=self.conn.leads,
            following=self._following.answered, tls_failures=self.conn.tls_failures,
        )
        channel.resize(self.poller.slots)  # what the executor can run now (its hello's offer)
        try:
            channel.connect_first()
        except (ChannelUnavailable, OSError, WebSocketException) as exc:
            # A master that leads has no channel, or something between us answers the
            # upgrade with what is not a WebSocket: HTTP it is. One that does not lead (a
            # standby, or gone) says nothing about channels: the channel thread connects to
            # the master the worker turned to.
            if self.conn.leads(base):
                log.warning("worker channel: %s; using HTTP long-polls", exc)
                return False
            log.warning("worker channel: %s does not lead (%s); trying %s", base, exc,
                        self.conn.master_url)
        self._channel = channel
        self.poller = channel
        if self._draining:
            channel.drain()
        return True

    def _held(self) -> list[Key]:
        """Every attempt this worker holds: running, or finished with its result unacked."""
        return list(dict.fromkeys([*self.supervisor.running(), *self._reporter.unacked()]))

    # ------------------------------------------------------------------ threads

    def _fail(self, exc: BaseException) -> None:
        # Once the worker is leaving, calls cut short by the shutdown are not failures.
        if isinstance(exc, Stopped) or self._stopped.is_set():
            return
        if self._fatal is None:
            log.error("worker stopping: %s", exc)
            self._fatal = exc
            self._wake.notify()

    def _lease_main(self) -> None:
        try:
            self._lease_and_heartbeat()
        except Exception as exc:
            # A bug, not the master's refusal: said, and the worker stops, rather than
            # running on without heartbeats while every job it runs is leased elsewhere.
            log.exception("the lease thread failed")
            self._intake_ready.set()
            self._fail(exc)

    def _lease_and_heartbeat(self) -> None:
        try:
            self._register_first()
        except errors.TitanError as exc:
            self._intake_ready.set()
            self._fail(exc)
            return
        if not self._beat():  # the clock's second sample, before any job is taken
            self._intake_ready.set()
            return
        # A burst worker keeps the long-poll: its "is the queue empty?" is a poll's answer.
        channel = self.transport == "channel" and not self.burst and self._open_channel()
        line = (f"worker {self.worker_id} registered with {self.conn.master_url} "
                f"({','.join(self.capabilities)}, {self.slots} slots"
                f"{', burst' if self.burst else ''}; "
                f"{'jobs over the worker channel' if channel else 'jobs over HTTP long-polls'})")
        if self.announce:  # `titan worker` says it is up; the log stays quiet by default
            print(f"titan {line}: waiting for jobs (Ctrl-C drains, twice stops)",
                  file=sys.stderr, flush=True)
        log.info("%s", line)
        self.poller.start()
        self._intake_ready.set()
        self._wake.notify()
        self._heartbeat_loop()

    def _heartbeat_loop(self) -> None:
        while not self._stopped.wait(self.heartbeat_seconds) and self._beat():
            pass

    def _beat(self) -> bool:
        """One heartbeat (its cancels handed to the intake); False once the worker must stop.
        Also the master's samples of this host's clock: one sent at once after registering
        gives it the two that agree it needs before it shifts the times of any log line."""
        running = [{"id": i, "attempt": a} for i, a in self.supervisor.running()]
        try:
            # Answered within a heartbeat period, or tried again (on the master the worker
            # turned to meanwhile): with the 30 s of other calls, a heartbeat sent to a leader
            # that then froze held this thread past the lease the new leader gave the
            # worker's jobs, and they ran again although the worker followed it in time.
            reply = self._call("heartbeat", lambda: stamped({"running": running}),
                               timeout=max(self.heartbeat_seconds, HEARTBEAT_TIMEOUT_MIN))
        except errors.TitanError as exc:
            self._fail(exc)
            return False
        for cancel in (reply.get("cancel") or []) if isinstance(reply, dict) else []:
            self.poller.cancel(cancel)
        gone = self._runner.broken()
        if gone is not None:
            # Heartbeats go on while the jobs are handed back: their leases stay the
            # worker's until their results say so.
            self._fail(errors.ExecutorGone(gone))
            return True
        self._fit_slots()
        return True

    def _fit_slots(self) -> None:
        """Offer what the executor can run now (Ray: its jobs plus the cluster's free CPUs),
        never more than the slots registered; an executor of fixed size leaves them be."""
        capacity = self._runner.capacity()
        if capacity is not None:
            self.poller.resize(capacity)
