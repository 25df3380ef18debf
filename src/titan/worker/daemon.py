"""The worker process: register, lease jobs, heartbeat, drain, stop.

Threads, each blocked on what ends its wait (nothing here sleeps waiting for work):

* **main** — a small state machine woken through a self-pipe by signals and by progress
  (an attempt finished, a report landed, burst finished, a fatal error). Signal handlers
  only count and write a byte: taking a lock in a handler could deadlock the main thread.
* **titan-poll** — registers, then keeps exactly one long-poll open at all times, offering
  the free slots not offered elsewhere (0 when full or draining: cancels still arrive).
* **titan-fetch** — when slots free up while the long-poll is parked offering fewer, asks
  with ``wait: 0`` for the difference, right after the job ends and again right after its
  result is acknowledged (a child job only becomes ready then). This keeps jobs flowing
  without a second long-poll. In burst mode every job is taken this way.
* **titan-heartbeat** — renews the leases of running attempts; kills those it is told to.
* **titan-report**, **titan-io**, **titan-start-*** — see reporter, loop, supervisor.

The master may forget this worker (a restart without its state): any call answered
``404 unknown_worker`` re-registers with the same ``worker_id`` and the running attempts,
once for all threads, and is then retried.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import threading
from types import FrameType
from typing import Any

from titan import errors
from titan.worker.assignment import Assignment, Key
from titan.worker.connection import WAIT_MARGIN, MasterConnection, Stopped, is_unknown_worker
from titan.worker.loop import IOLoop
from titan.worker.reporter import Reporter
from titan.worker.runner import Runner
from titan.worker.supervisor import Supervisor
from titan.worker.workspace import Workspace

log = logging.getLogger("titan.worker")

POLL_WAIT = 20
#: How long a graceful exit waits for the master to take the deregistration.
DEREGISTER_TIMEOUT = 5.0


class _Wakeup:
    """A self-pipe: async-signal-safe to poke, a blocking read to wait on."""

    def __init__(self) -> None:
        self._r, self._w = os.pipe()
        os.set_blocking(self._w, False)

    def notify(self) -> None:
        with contextlib.suppress(BlockingIOError):  # full pipe: a wake-up is pending anyway
            os.write(self._w, b"!")

    def wait(self) -> None:
        os.read(self._r, 512)

    def close(self) -> None:
        os.close(self._r)
        os.close(self._w)


class Worker:
    """One worker process's state and threads; :meth:`run` returns the exit code."""

    def __init__(self, master_url: str, token: str | None, capabilities: list[str],
                 slots: int, workdir: str, *, burst: bool = False, name: str | None = None,
                 kill_grace: float = 3.0, use_zygote: bool = True) -> None:
        if slots < 1:
            raise errors.ConfigError(f"a worker needs at least one slot (got {slots})")
        self.capabilities = [c.strip().upper() for c in capabilities if c.strip()] or ["GENERAL"]
        self.slots = slots
        self.burst = burst
        self.name = name or socket.gethostname()
        self.worker_id: str | None = None
        self.heartbeat_seconds = 5.0
        self.lease_seconds = 30.0

        self._hard = threading.Event()  # abandon retries: the worker is going down now
        self._stopped = threading.Event()  # the worker is leaving: threads wind down
        self.conn = MasterConnection(master_url, token, self._hard)
        self._loop = IOLoop()
        self._runner = Runner(self._loop, use_zygote=use_zygote)
        self.workspace = Workspace(workdir, self.conn)
        self._reporter = Reporter(self._report, self._on_acked)
        self.supervisor = Supervisor(
            loop=self._loop, runner=self._runner, workspace=self.workspace,
            reporter=self._reporter, master_url=master_url, kill_grace=kill_grace,
            starters=min(32, max(2, slots)), on_finished=self._on_finished,
        )
        self._kill_grace = kill_grace
        self._wake = _Wakeup()
        self._cond = threading.Condition()
        self._busy = 0
        self._long_offer = 0
        self._fetch_offer = 0
        self._dirty = True
        self._draining = False
        self._burst_done = False
        self._fatal: BaseException | None = None
        self._signals = 0
        self._register_lock = threading.Lock()
        self._generation = 0

    # ------------------------------------------------------------------ master calls

    def _register(self, *, reattach: bool) -> None:
        body: dict[str, Any] = {
            "worker_id": self.worker_id, "name": self.name, "hostname": socket.gethostname(),
            "pid": os.getpid(), "capabilities": self.capabilities, "slots": self.slots,
        }
        if reattach:
            body["running"] = [{"id": i, "attempt": a} for i, a in self.supervisor.running()]
        reply = self.conn.call("POST", "/workers/register", body)
        self.worker_id = str(reply["worker_id"])
        self.lease_seconds = float(reply.get("lease_seconds") or self.lease_seconds)
        self.heartbeat_seconds = float(reply.get("heartbeat_seconds") or self.heartbeat_seconds)

    def _reattach(self, generation: int) -> None:
        with self._register_lock:
            if generation != self._generation:
                return  # another thread already re-registered
            log.warning("the master forgot worker %s; registering again", self.worker_id)
            self._register(reattach=True)
            self._generation += 1

    def _call(self, action: str, body: dict[str, Any], *, timeout: float = 30.0) -> Any:
        while True:
            generation = self._generation
            try:
                return self.conn.call("POST", f"/workers/{self.worker_id}/{action}", body,
                                      timeout=timeout)
            except errors.NotFound as exc:
                if not is_unknown_worker(exc):
                    raise
                self._reattach(generation)

    def _report(self, body: dict[str, Any]) -> dict[str, Any]:
        reply = self._call("report", body)
        return reply if isinstance(reply, dict) else {}

    # ------------------------------------------------------------------ slots

    def _unoffered(self) -> int:
        return max(0, self.slots - self._busy - self._long_offer - self._fetch_offer)

    def _accept(self, reply: Any, *, long_poll: bool) -> int:
        """Start the jobs of a poll reply and kill its cancels; returns how many jobs came."""
        jobs = list(reply.get("jobs") or []) if isinstance(reply, dict) else []
        cancels = list(reply.get("cancel") or []) if isinstance(reply, dict) else []
        accepted: list[Assignment] = []
        with self._cond:
            # Releasing the offer and counting the jobs in one step: between the two, another
            # thread would see slots that are neither offered nor busy and offer them twice.
            if long_poll:
                self._long_offer = 0
            else:
                self._fetch_offer = 0
            for raw in jobs:
                try:
                    assignment = Assignment.from_json(raw)
                except errors.ValidationFailed as exc:
                    log.error("%s", exc)
                    continue
                if assignment.key in self.supervisor:
                    continue  # delivered twice (a retried poll): it already runs
                self._busy += 1
                accepted.append(assignment)
            if self._busy > self.slots:
                log.warning("the master assigned %d jobs for %d slots", self._busy, self.slots)
            self._cond.notify_all()
        for assignment in accepted:
            self.supervisor.start(assignment)
        for cancel in cancels:
            self._cancel(cancel)
        return len(jobs)

    def _cancel(self, entry: Any) -> None:
        try:
            key: Key = (int(entry["id"]), int(entry["attempt"]))
        except (KeyError, TypeError, ValueError):
            log.error("malformed cancel %r", entry)
            return
        self.supervisor.cancel(key)

    def _on_finished(self, _key: Key) -> None:
        with self._cond:
            self._busy -= 1
            self._dirty = True
            self._cond.notify_all()
        if self._draining:
            self._wake.notify()

    def _on_acked(self, results: list[dict[str, Any]], _rejected: list[dict[str, Any]]) -> None:
        if results:
            with self._cond:
                self._dirty = True
                self._cond.notify_all()
        if self._draining:
            self._wake.notify()

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
            self._register(reattach=False)
        except errors.TitanError as exc:
            self._fail(exc)
            return
        log.info("worker %s registered with %s (%s, %d slots%s)", self.worker_id,
                 self.conn.master_url, ",".join(self.capabilities), self.slots,
                 ", burst" if self.burst else "")
        for target, name in ((self._heartbeat_loop, "titan-heartbeat"),
                             (self._fetch_loop, "titan-fetch")):
            threading.Thread(target=target, name=name, daemon=True).start()
        try:
            self._poll_loop()
        except Exception as exc:  # noqa: BLE001 - any failure here must stop the worker visibly
            self._fail(exc)

    def _poll_loop(self) -> None:
        while not self._stopped.is_set():
            with self._cond:
                offer = 0 if (self._draining or self.burst) else self._unoffered()
                self._long_offer = offer
            try:
                reply = self._call("poll", {"free_slots": offer, "wait": POLL_WAIT},
                                   timeout=POLL_WAIT + WAIT_MARGIN)
            except errors.TitanError as exc:
                with self._cond:
                    self._long_offer = 0
                self._fail(exc)
                return
            self._accept(reply, long_poll=True)

    def _fetch_loop(self) -> None:
        def wanted() -> bool:
            return self._stopped.is_set() or (
                self._dirty and not self._draining and self._unoffered() > 0
            )

        while True:
            with self._cond:
                self._cond.wait_for(wanted)
                if self._stopped.is_set():
                    return
                self._dirty = False
                offer = self._fetch_offer = self._unoffered()
            try:
                reply = self._call("poll", {"free_slots": offer, "wait": 0})
            except errors.TitanError as exc:
                with self._cond:
                    self._fetch_offer = 0
                self._fail(exc)
                return
            got = self._accept(reply, long_poll=False)
            if self.burst and got == 0:
                with self._cond:
                    # Empty queue, nothing running, every result acknowledged, and nothing
                    # changed while we asked: a burst worker's work is done.
                    done = (not self._dirty and self._busy == 0
                            and self._reporter.results_pending == 0)
                if done:
                    log.info("burst: the queue is empty; stopping")
                    self._burst_done = True
                    self._wake.notify()
                    return

    def _heartbeat_loop(self) -> None:
        while not self._stopped.wait(self.heartbeat_seconds):
            running = [{"id": i, "attempt": a} for i, a in self.supervisor.running()]
            try:
                reply = self._call("heartbeat", {"running": running})
            except errors.TitanError as exc:
                self._fail(exc)
                return
            for cancel in (reply.get("cancel") or []) if isinstance(reply, dict) else []:
                self._cancel(cancel)

    # ------------------------------------------------------------------ main thread

    def _on_signal(self, _signum: int, _frame: FrameType | None) -> None:
        self._signals += 1
        self._wake.notify()

    def run(self) -> int:
        """Run until drained, burst-finished or killed; returns the process exit code."""
        handlers: dict[signal.Signals, Any] = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                handlers[sig] = signal.signal(sig, self._on_signal)
        try:
            self._loop.start()
            self._runner.start()
            self._reporter.start()
            threading.Thread(target=self._lease_main, name="titan-poll", daemon=True).start()
            return self._supervise()
        finally:
            for signum, handler in handlers.items():
                signal.signal(signum, handler)
            self._shutdown()

    def request_stop(self, *, hard: bool = False) -> None:
        """Ask for a graceful drain (or, with ``hard``, an immediate stop) from any thread."""
        self._signals += 2 if hard else 1
        self._wake.notify()

    def _supervise(self) -> int:
        while True:
            if self._signals >= 2:
                return self._stop_hard()
            if not self._draining and (self._signals or self._burst_done or self._fatal):
                with self._cond:
                    self._draining = True
                    self._cond.notify_all()
                busy = len(self.supervisor.running())
                if busy and self._signals:
                    log.info("draining: waiting for %d running jobs (signal again to kill them)",
                             busy)
            if self._draining and not self.supervisor.running() and self._reporter.idle():
                return self._stop_graceful()
            self._wake.wait()

    def _stop_graceful(self) -> int:
        self._stopped.set()
        with self._cond:
            self._cond.notify_all()
        if self.worker_id is not None and not isinstance(self._fatal, errors.APIError):
            done = threading.Event()

            def deregister() -> None:
                with contextlib.suppress(errors.TitanError):
                    self._call("deregister", {})
                done.set()

            threading.Thread(target=deregister, name="titan-deregister", daemon=True).start()
            if not done.wait(DEREGISTER_TIMEOUT):
                log.warning("the master did not take the deregistration; leaving anyway")
        log.info("worker %s stopped", self.worker_id)
        return 1 if self._fatal is not None else 0

    def _stop_hard(self) -> int:
        running = self.supervisor.running()
        log.warning("stopping now: killing %d running jobs", len(running))
        with self._cond:
            self._draining = True
        self._stopped.set()
        self.supervisor.kill_all()
        # Their results (killed) are worth reporting if the master is there; not worth a wait.
        with self._cond:
            self._cond.wait_for(lambda: self._busy <= 0, timeout=self._kill_grace + 1.0)
        self._reporter.flush(timeout=2.0)
        return 1

    def _shutdown(self) -> None:
        self._stopped.set()
        self._hard.set()
        with self._cond:
            self._cond.notify_all()
        self._reporter.close(timeout=2.0)
        self.supervisor.close()
        self._runner.close()
        self._loop.stop()
        self.conn.close()
        self._wake.close()


def run_worker(master_url: str, token: str | None, capabilities: list[str], slots: int,
               workdir: str, *, burst: bool = False, name: str | None = None,
               kill_grace: float = 3.0) -> int:
    """Run a worker against ``master_url`` until it is stopped; returns the exit code.

    SIGTERM or SIGINT drains (no new jobs; running ones finish and are reported; the worker
    deregisters and exits 0); a second signal kills the running jobs and exits 1. With
    ``burst`` the worker exits 0 as soon as the queue is empty and nothing runs.
    """
    try:
        worker = Worker(master_url, token, capabilities, slots, workdir, burst=burst,
                        name=name, kill_grace=kill_grace)
    except errors.ConfigError as exc:
        log.error("%s", exc)
        return 2
    return worker.run()
