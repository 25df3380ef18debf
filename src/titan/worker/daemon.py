"""The worker process: register, lease jobs, heartbeat, drain, stop.

Threads, each blocked on what ends its wait (nothing here sleeps waiting for work):

* **main** — a small state machine woken through a self-pipe by signals and by progress
  (an attempt finished, a report landed, burst finished, a fatal error). Signal handlers
  only count and write a byte: taking a lock in a handler could deadlock the main thread.
* **titan-lease** — registers, opens the worker channel (:mod:`titan.worker.channel`: jobs
  pushed, reports acknowledged, on one WebSocket) or, for a burst worker, a master without
  one, or ``transport="http"``, starts the pollers (:mod:`titan.worker.poller`: one long-poll
  always open, quick ``wait: 0`` fetches when slots free up), then heartbeats: renews the
  leases of running attempts and kills those it is told to (:mod:`titan.worker.lease_thread`,
  with the calls to the master).
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
import sys
import threading
import time
from collections.abc import Sequence
from types import FrameType
from typing import Any

from titan import errors
from titan.formats import label_problem
from titan.hangup import detach_hung_up_outputs, hangup_stops
from titan.log_format import log_to_stderr
from titan.worker import lifeline, settings
from titan.worker.assignment import Key
from titan.worker.attempt import STOPPED
from titan.worker.channel import ChannelIntake
from titan.worker.connection import MasterConnection
from titan.worker.executors import open_executor
from titan.worker.intake import Intake
from titan.worker.lease_thread import Following, LeaseThread
from titan.worker.loop import IOLoop
from titan.worker.poller import Poller
from titan.worker.reporter import Reporter, SyncLink
from titan.worker.supervisor import Supervisor
from titan.worker.wakeup import Wakeup
from titan.worker.workspace import Workspace

log = logging.getLogger("titan.worker")

#: How long a graceful exit waits for the master to take the deregistration.
DEREGISTER_TIMEOUT = 5.0
#: ... and a hard stop (a second signal: whoever sent it wants the worker gone now).
HARD_DEREGISTER_TIMEOUT = 2.0
#: Once the last job has ended, how long a draining worker keeps trying to deliver its
#: logs and results to an unreachable master before it leaves anyway.
DRAIN_FLUSH_TIMEOUT = 30.0
#: The master's answers that say this worker's credential is refused (its token revoked).
REFUSED = (errors.Unauthorized, errors.Forbidden)


def _running_jobs(n: int) -> str:
    """``1 running job``, ``2 running jobs``: what a drain or a stop says it waits for or kills."""
    return f"{n} running job{'' if n == 1 else 's'}"


class Worker(LeaseThread):
    """One worker process's state and threads; :meth:`run` returns the exit code."""

    def __init__(self, master_url: str | Sequence[str], token: str | None,
                 capabilities: list[str],
                 slots: int | None, workdir: str, *, burst: bool = False,
                 name: str | None = None, kill_grace: float = 3.0, use_zygote: bool = True,
                 sandbox: bool = False, run_as: str | None = None,
                 transport: str | None = None, executor: str = "local",
                 ray_address: str | None = None) -> None:
        if slots is not None and slots < 1:
            raise errors.ConfigError(f"a worker needs at least one slot (got {slots})")
        self.transport = settings.transport(transport)
        self.burst = burst
        self.name = name or socket.gethostname()
        # A name given is this worker's identity: refused while a live worker holds it. The
        # host's name is a default the master may make free (master/scheduling/worker_names.py).
        self.name_given = name is not None
        why = label_problem(self.name, "the worker's name")
        if why is not None:  # the master refuses it: say so before connecting
            raise errors.ConfigError(why)
        #: Say on stderr when registered (`titan worker`; the local worker of `titan up` has
        #: its own banner).
        self.announce = False
        self.worker_id: str | None = None
        self.heartbeat_seconds = 5.0
        self.lease_seconds = 30.0

        self._hard = threading.Event()  # abandon retries: the worker is going down now
        self._stopped = threading.Event()  # the worker is leaving: threads wind down
        self.conn = MasterConnection(master_url, token, self._hard)
        self._loop = IOLoop()
        self.workspace = Workspace(workdir, self.conn, private=not run_as)
        self._cache_days = settings.cache_days()
        self._runner, slots = open_executor(
            executor, self._loop, workspace=self.workspace.root, slots=slots,
            use_zygote=use_zygote, sandbox=sandbox, run_as=run_as, ray_address=ray_address)
        self.capabilities = [c.strip().upper() for c in capabilities if c.strip()] \
            or self._runner.capabilities()
        self.slots = slots
        self._http_reports = SyncLink(self._report_http)
        self._reporter = Reporter(self._report_link, self._on_acked,
                                  on_pressure=lambda key, paused: self.supervisor.pressure(
                                      key, paused))
        self.supervisor = Supervisor(
            loop=self._loop, runner=self._runner, workspace=self.workspace,
            reporter=self._reporter, master_url=self.conn.masters.ordered, kill_grace=kill_grace,
            starters=min(32, max(2, slots)), on_finished=self._on_finished,
            base_env=self._runner.base_env, on_fatal=self._fail,
        )
        self.poller: Intake = Poller(
            slots=slots, burst=burst, call=self._call, supervisor=self.supervisor,
            reporter=self._reporter, stopped=self._stopped, on_burst_done=self._on_burst_done,
            on_error=self._fail, on_settled=lambda: self._wake.notify(),
        )
        self._channel: ChannelIntake | None = None
        # Set once the intake is chosen and started (or can no longer start): until then a
        # job the master leased may be on its way over a transport nobody reads yet, so a
        # draining worker must not decide it holds nothing.
        self._intake_ready = threading.Event()
        self._kill_grace = kill_grace
        self._wake = Wakeup()
        self._draining = False
        self._burst_done = False
        self._fatal: BaseException | None = None
        self._fatal_stopped = False  # the jobs were stopped for a fatal error (once)
        self._signals = 0
        self._register_lock = threading.Lock()
        self._generation = 0
        self._following = Following()

    # ------------------------------------------------------------------ progress

    def _on_finished(self, key: Key) -> None:
        self.poller.on_finished(key)
        if self._draining:
            self._wake.notify()

    def _on_acked(self, results: list[dict[str, Any]], _rejected: list[dict[str, Any]]) -> None:
        self.poller.on_acked(results)
        if self._draining:
            self._wake.notify()

    def _on_burst_done(self) -> None:
        self._burst_done = True
        self._wake.notify()

    # ------------------------------------------------------------------ main thread

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        if signum == signal.SIGHUP:
            detach_hung_up_outputs()
        self._signals += 1
        self._wake.notify()

    def _evict_main(self) -> None:
        """At start and hourly: cached script blobs unused for TITAN_WORKER_CACHE_DAYS go
        (every distinct script stayed for good: a worker serving agents that write new code
        each step filled its disk)."""
        while not self._stopped.is_set():
            try:
                gone = self.workspace.evict(time.time() - self._cache_days * 86_400)
                if gone:
                    log.info("removed %d cached script(s) unused for %g days", gone,
                             self._cache_days)
            except OSError as exc:
                log.warning("cleaning the script cache failed: %s", exc)
            self._stopped.wait(3600)

    def run(self) -> int:
        """Run until drained, burst-finished or killed; returns the process exit code."""
        handlers: dict[signal.Signals, Any] = {}
        if threading.current_thread() is threading.main_thread():
            # SIGHUP too (its terminal closed, an SSH session dropped): it killed the worker
            # with 129, its running jobs left to the lease timeout.
            stops = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP) if hangup_stops() else (
                signal.SIGTERM, signal.SIGINT)
            for sig in stops:
                handlers[sig] = signal.signal(sig, self._on_signal)
        try:
            self._loop.start()
            self._runner.start()
            self._reporter.start()
            threading.Thread(target=self._lease_main, name="titan-lease", daemon=True).start()
            if self._cache_days:
                threading.Thread(target=self._evict_main, name="titan-cache",
                                 daemon=True).start()
            return self._supervise()
        finally:
            for signum, handler in handlers.items():
                signal.signal(signum, handler)
            self._shutdown()

    @property
    def refused(self) -> bool:
        """Whether it stopped because the master refuses its credential."""
        return isinstance(self._fatal, REFUSED)

    def request_stop(self, *, hard: bool = False) -> None:
        """Ask for a graceful drain (or, with ``hard``, an immediate stop) from any thread."""
        self._signals += 2 if hard else 1
        self._wake.notify()

    def _supervise(self) -> int:
        flush_deadline: float | None = None
        while True:
            if self._signals >= 2:
                return self._stop_hard()
            if isinstance(self._fatal, REFUSED) and not self._fatal_stopped:
                self._kill_refused()
            if isinstance(self._fatal, errors.ExecutorGone) and not self._fatal_stopped:
                self._hand_back()
            if not self._draining and (self._signals or self._burst_done or self._fatal):
                self._draining = True
                self.poller.drain()
                busy = len(self.supervisor.running())
                if busy and self._signals:
                    self._tell(f"draining: waiting for {_running_jobs(busy)} (signal again "
                               f"to kill {'it' if busy == 1 else 'them'})")
            timeout: float | None = None
            # Not registered yet: nothing can have been leased to this worker.
            intake_known = self._intake_ready.is_set() or self.worker_id is None
            if self._draining and intake_known and not self.supervisor.running():
                if self._reporter.idle() and self.poller.settled():
                    return self._stop_graceful()
                # Jobs are done but the master is not taking their reports, or has not said
                # that nothing more is on its way: keep trying a while (it may be
                # restarting), not forever.
                now = time.monotonic()
                if isinstance(self._fatal, REFUSED):
                    # Its credential refused (a revoked token): no report of it will ever be
                    # taken. It waited the whole flush time all the same (an ops QA pass).
                    log.error("the master refuses this worker's credential: %d report(s) "
                              "cannot be delivered (their jobs run again elsewhere); leaving",
                              len(self._reporter.unacked()))
                    self._stop_graceful()
                    return 1
                if flush_deadline is None:
                    flush_deadline = now + DRAIN_FLUSH_TIMEOUT
                elif now >= flush_deadline:
                    log.error("the master did not take the last reports (or confirm the "
                              "drain) in %.0f s; leaving", DRAIN_FLUSH_TIMEOUT)
                    self._stop_graceful()
                    return 1
                timeout = flush_deadline - now
            self._wake.wait(timeout)

    def _kill_refused(self) -> None:
        """The master refuses this worker's credential (its token was revoked): the host is
        no longer trusted with the cluster's jobs, so they are killed now, as on a cancel.
        Drained instead, a long job ran on for as long as it liked on a distrusted host, and
        its side effects landed, then again with the attempt that replaced it (a fleet QA
        pass). The master ended their attempts already: they run again elsewhere."""
        self._fatal_stopped = True
        running = self.supervisor.running()
        if running:
            log.error("the master refuses this worker's credential: killing its %s now "
                      "(to run again elsewhere)", _running_jobs(len(running)))
        self.supervisor.stop_all(STOPPED)

    def _hand_back(self) -> None:
        """The executor can run nothing more (its Ray cluster is gone): the jobs it still
        shows as running are stopped and handed back, to start again elsewhere spending no
        retry (most have ended already, lost with the cluster). Left to drain, a job whose
        Ray task never ended kept the worker until Ray aborted it, saying nothing of Titan's."""
        self._fatal_stopped = True
        running = self.supervisor.running()
        if running:
            log.error("handing back %s (to run again elsewhere)", _running_jobs(len(running)))
        self.supervisor.stop_all(STOPPED)

    def _tell(self, line: str) -> None:
        """What the operator's signal did, said where they look: `titan worker` prints it on
        stderr (its log shows warnings alone by default, and this line answers a signal, it
        warns of nothing), and it goes to the log for TITAN_LOG_LEVEL=INFO."""
        if self.announce:
            who = f"titan worker {self.worker_id}" if self.worker_id else "titan worker"
            print(f"{who}: {line}", file=sys.stderr, flush=True)
        log.info("%s", line)

    def _deregister(self, timeout: float) -> None:
        """Tell the master this worker stops (it shows as stopped, not lost a lease later):
        bounded, and a graceful stop's wait cut short by another signal (the master may be
        gone for good)."""
        if self.worker_id is None or isinstance(self._fatal, errors.APIError):
            return
        done = threading.Event()
        signals = self._signals

        def deregister() -> None:
            with contextlib.suppress(errors.TitanError):
                self._call("deregister", {}, timeout=timeout)
            done.set()
            self._wake.notify()

        threading.Thread(target=deregister, name="titan-deregister", daemon=True).start()
        deadline = time.monotonic() + timeout
        while not done.is_set() and (self._signals < 2 or self._signals == signals):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                log.warning("the master did not take the deregistration; leaving anyway")
                break
            self._wake.wait(remaining)

    def _stop_graceful(self) -> int:
        self._stopped.set()
        self.poller.wake()
        self._deregister(DEREGISTER_TIMEOUT)
        self._tell("stopped")
        return 1 if self._fatal is not None else 0

    def _stop_hard(self) -> int:
        running = self.supervisor.running()
        log.warning("stopping now: killing %s", _running_jobs(len(running)))
        self._draining = True
        self.poller.drain()
        self._stopped.set()
        self.supervisor.kill_all()
        # Their results (killed) are worth reporting if the master is there; not worth a wait.
        self.poller.wait_idle(self._kill_grace + 1.0)
        self._reporter.flush(timeout=2.0)
        # Deregistered too, briefly: left out, the master showed the worker draining, then
        # lost with a warning a lease later, for a stop the operator asked for (a QA pass).
        self._deregister(HARD_DEREGISTER_TIMEOUT)
        self._tell("stopped (its jobs killed)")
        return 1

    def _shutdown(self) -> None:
        self._stopped.set()
        self._hard.set()
        self.poller.wake()
        if self._channel is not None:
            self._channel.abandon()  # reports still waiting for an ack end here
        self._reporter.close(timeout=2.0)
        self.supervisor.close()
        self._runner.close()
        self._loop.stop()
        self.conn.close()
        self._wake.close()


def run_worker(master_url: str | Sequence[str], token: str | None, capabilities: list[str],
               slots: int | None, workdir: str, *, burst: bool = False,
               name: str | None = None, kill_grace: float = 3.0, sandbox: bool = False,
               run_as: str | None = None, transport: str | None = None,
               executor: str = "local", ray_address: str | None = None) -> int:
    """Run a worker against ``master_url`` (a URL, or a leader's and its standbys' URLs: the
    worker follows whichever leads) until it is stopped; returns the exit code.

    SIGTERM, SIGINT or SIGHUP drains (no new jobs; running ones finish and are reported; the worker
    deregisters and exits 0); a second signal kills the running jobs, deregisters (briefly)
    and exits 1. With
    ``burst`` the worker exits 0 as soon as the queue is empty and nothing runs. With
    ``executor="ray"`` jobs run as tasks of the Ray cluster at ``ray_address``
    (:mod:`titan.worker.ray_executor`); ``slots`` and ``capabilities`` then default to the
    cluster's.
    """
    try:
        level = settings.log_level()
    except errors.ConfigError as exc:
        log.error("%s", exc)
        return 2
    if level:
        log_to_stderr(level, "%(asctime)s %(threadName)s %(levelname)s %(message)s")
    else:
        # Warnings alone, bare, as Python's last-resort handler writes them, but escaped: a
        # warning may quote what the master or a job said.
        log_to_stderr(logging.WARNING, "%(message)s")
    # The WebSocket library logs every header at DEBUG, the worker's credential included.
    logging.getLogger("websockets").setLevel(logging.INFO)
    try:
        worker = Worker(master_url, token, capabilities, slots, workdir, burst=burst,
                        name=name, kill_grace=kill_grace, sandbox=sandbox, run_as=run_as,
                        transport=transport, executor=executor, ray_address=ray_address)
    except errors.ConfigError as exc:
        log.error("%s", exc)
        return 2
    # `titan worker` says when it is up; `titan up`'s own worker (the one handed a lifeline)
    # does not: `titan up` prints its banner.
    worker.announce = lifeline.ENV not in os.environ
    lifeline.watch(lambda: worker.request_stop(hard=True))
    code = worker.run()
    return lifeline.EXIT_REFUSED if code and worker.refused else code
