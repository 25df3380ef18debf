"""Service jobs on the worker: a port, a readiness check, restarts in place, a graceful stop.

A service's attempt (:class:`ServiceAttempt`) is one lease that outlives its processes. Each
start — an *incarnation* — gets the service's port (the one it asked for, or one allocated
here) in ``TITAN_SERVICE_PORT`` and ``PORT``, and the address other machines reach it at in
``TITAN_SERVICE_HOST``; it is checked until it answers as its ``readiness`` says, and only
then reported ``ready``; while it runs it is checked again every :data:`HEALTH_INTERVAL`
seconds. A process that ends badly on its own — a non-zero exit, a signal, no readiness within
``ready_timeout``, :data:`UNHEALTHY_LIMIT` failed checks in a row — is started again after a
backoff (:class:`RestartPolicy`) until more than ``max_restarts`` crashes fall within
``restart_window`` seconds; then the attempt fails, saying so. A service that exits 0 on its
own has finished, and is not restarted. Every incarnation writes into the same attempt's log
(its sequence numbers go on), each start and its reason marked by a ``titan worker:`` line.

Health reaches the master as status entries in the reports (:meth:`Reporter.service`), queued
in order with the log lines; the master publishes the address when ``ready`` arrives
(:mod:`titan.master.scheduling.services`).

A stop (``{"stop": grace}`` beside a cancel) is SIGTERM, then SIGKILL ``grace`` seconds later;
a cancel is the same with the worker's kill grace. Neither restarts anything. A worker that
drains *releases* its services: stopped the same way, they are reported ``released`` and the
master starts them on another worker.

**The port race.** An allocated port is one the kernel said was free when the worker asked
(bound to port 0 on every interface, then closed so that the service can bind it). Another
process on the host can take it in between; the service then fails to bind and crashes. As
long as it has never been ready, its next start gets a newly allocated port, so the race costs
a restart, not the service. Once it has been ready its address is published and the port is
kept across restarts (a port taken meanwhile then costs restarts up to the cap).
"""

from __future__ import annotations

import asyncio
import logging
import time
from asyncio import Handle
from collections import deque
from collections.abc import Callable
from typing import Any

from titan import services
from titan.worker.assignment import Assignment
from titan.worker.attempt import STOPPED, Attempt, Sink
from titan.worker.executor import Launched
from titan.worker.loop import IOLoop
from titan.worker.process import signal_name
from titan.worker.service_network import allocate_port, check, port_in_use

log = logging.getLogger("titan.worker")

#: Seconds between two health checks of a ready service, and the most one check may take.
HEALTH_INTERVAL = 5.0
CHECK_TIMEOUT = 2.0
#: Failed health checks in a row that restart a service (one is only ``unhealthy``).
UNHEALTHY_LIMIT = 3
#: Restart backoff: the first restart after BACKOFF_BASE seconds, doubling up to BACKOFF_CAP.
BACKOFF_BASE = 1.0
BACKOFF_CAP = 60.0
#: Kill reasons of a service (beside the attempt's cancelled, timed_out and stopped).
STOP_REQUESTED = "stop_requested"
RELEASED = "released"
_ERROR_TEXT = 500

Report = Callable[[dict[str, Any]], None]


class RestartPolicy:
    """When a crashed service starts again, and when it has crashed too often.

    A crash is counted with the others of the last ``window`` seconds: past ``max_restarts``
    of them the service is given up; otherwise it starts again after ``base * 2**(n - 1)``
    seconds, ``n`` the crashes in the window, at most ``cap``. A service that has run well
    for a whole window is back to the shortest backoff.
    """

    def __init__(self, max_restarts: int, window: float, *, base: float = BACKOFF_BASE,
                 cap: float = BACKOFF_CAP) -> None:
        self.max_restarts = max_restarts
        self.window = window
        self.base = base
        self.cap = cap
        self._crashes: deque[float] = deque()

    @property
    def recent(self) -> int:
        """Crashes within the window, as of the last one."""
        return len(self._crashes)

    def crashed(self, now: float) -> float | None:
        """Count a crash at ``now`` (monotonic seconds): the delay before the next start, or
        None when this crash is one too many."""
        self._crashes.append(now)
        while self._crashes and self._crashes[0] <= now - self.window:
            self._crashes.popleft()
        if len(self._crashes) > self.max_restarts:
            return None
        return min(self.cap, self.base * 2.0 ** (len(self._crashes) - 1))

    def summary(self) -> str:
        n = len(self._crashes)
        return f"crashed {'once' if n == 1 else f'{n} times'} in {self.window:g} s"


class ServiceAttempt(Attempt):
    """A service's lease on this worker: its incarnations, their checks, its restarts.

    Lives on the I/O thread like any attempt, except :meth:`extra_env`, which the thread that
    starts each process calls before the I/O thread hears of that process.
    """

    def __init__(self, assignment: Assignment, *, loop: IOLoop, sink: Sink, kill_grace: float,
                 host: str, report: Report, relaunch: Callable[[ServiceAttempt], None]) -> None:
        super().__init__(assignment, loop=loop, sink=sink, kill_grace=kill_grace)
        self.settings = dict(services.DEFAULTS, **(assignment.service or {}))
        self.host = host
        self.port = assignment.port  # 0: allocated before a start
        self.restarts = 0
        self._report = report
        self._relaunch = relaunch
        self._policy = RestartPolicy(int(self.settings["max_restarts"]),
                                     float(self.settings["restart_window"]))
        self._ever_ready = False
        self._up_since: float | None = None
        self._checker: asyncio.Task[None] | None = None
        self._backoff: Handle | None = None  # the next start, while the service waits for it
        self._last_exit: tuple[int | None, str | None] = (None, None)
        self._own_kill: str | None = None  # why this worker killed the process to restart it
        self._gave_up: str | None = None
        self._escalated = False  # a stop had to SIGKILL
        self._taken: str | None = None  # why the port is not the service's, when it is not

    # ------------------------------------------------------------------ starting

    def extra_env(self) -> dict[str, str]:
        if self.port == 0:
            self.port = allocate_port(self.host)
            self._taken = None
        elif port_in_use(self.host, self.port):
            # Another program listens on the service's own port: a check would reach it and
            # call the service ready at that program's address (published, for clients to
            # call). The service cannot bind it; it is never ready while that lasts.
            self._taken = (f"port {self.port} was in use by another program before the "
                           "service started")
            self._note(f"{self._taken}: the service cannot serve there")
        else:
            self._taken = None
        return {"TITAN_SERVICE_HOST": self.host, "TITAN_SERVICE_PORT": str(self.port),
                "PORT": str(self.port), "TITAN_SERVICE_RESTARTS": str(self.restarts)}

    def attach(self, launched: Launched) -> None:
        super().attach(launched)
        if self.finished or self.kill_reason is not None:
            return
        self._status("starting")
        self._checker = self._loop.task(self._watch())

    async def _watch(self) -> None:
        """Check until ready (or ``ready_timeout``), then every HEALTH_INTERVAL seconds."""
        timeout = float(self.settings["ready_timeout"])
        deadline = time.monotonic() + timeout
        pause = 0.05
        while (why := await self._check(deadline - time.monotonic())) is not None:
            if time.monotonic() >= deadline:
                self._restart_kill(f"was not ready after {timeout:g} s ({why})")
                return
            await asyncio.sleep(pause)
            pause = min(2 * pause, 1.0)
        self._ever_ready = True
        self._up_since = time.time()
        self._note(f"service ready at {self.host}:{self.port}"
                   + (f" (after restart {self.restarts})" if self.restarts else ""))
        self._status("ready")
        failed = 0
        while True:
            await asyncio.sleep(HEALTH_INTERVAL)
            why = await self._check(CHECK_TIMEOUT)
            if why is None:
                if failed:
                    failed = 0
                    self._status("ready")
                continue
            failed += 1
            if failed >= UNHEALTHY_LIMIT:
                self._restart_kill(f"failed {failed} health checks in a row ({why})")
                return
            self._status("unhealthy", why)

    async def _check(self, within: float) -> str | None:
        readiness = str(self.settings["readiness"])
        if readiness == "none":  # not checked: it may not listen at all
            return None
        if self._taken is not None:
            return self._taken
        return await check(self.host, self.port, readiness,
                           max(0.1, min(CHECK_TIMEOUT, within)))

    def _restart_kill(self, why: str) -> None:
        """Stop a process that runs but does not serve, so that it starts again."""
        if self.finished or self.kill_reason is not None or self.process is None:
            return
        self._own_kill = why
        self._note(f"stopping the service (SIGTERM, SIGKILL after {self._grace:g} s): it {why}")
        self._terminate()

    # ------------------------------------------------------------------ ending

    def kill(self, reason: str, grace: float | None = None) -> None:
        # Once: every heartbeat repeats a stop until its result arrives, and a second SIGTERM
        # would interrupt a service that is shutting down the way it was asked to.
        if self.finished or self.kill_reason is not None:
            return
        self._stop_checks()
        if self._backoff is not None:  # between two starts: nothing runs to signal
            self._backoff.cancel()
            self._backoff = None
            super().kill(reason, grace)
            self._exit = self._last_exit
            self._maybe_finish()
            return
        super().kill(reason, grace)

    def kill_now(self, reason: str = STOPPED) -> None:
        if self._backoff is not None:
            self.kill(reason)
            return
        self._stop_checks()
        super().kill_now(reason)

    def _escalate(self) -> None:
        if not self.finished and self.process is not None and not self.process.exited:
            self._escalated = True
        super()._escalate()

    def _on_exit(self, code: int | None, error: str | None) -> None:
        self._stop_checks()
        super()._on_exit(code, error)

    def _maybe_finish(self) -> None:
        if self.finished or self._exit is None or self._streams:
            return
        if self.kill_reason is None:  # it ended on its own (or by a restart kill)
            why = self._crash()
            if why is None:
                self._note("service exited on its own with exit code 0: not restarted")
            else:
                delay = self._policy.crashed(time.monotonic())
                if delay is not None:
                    self._restart_after(delay, why)
                    return
                self._gave_up = f"{self._policy.summary()}; last {why}"
        super()._maybe_finish()

    def _crash(self) -> str | None:
        """Why the process that just ended failed, or None: it exited 0 by itself."""
        code, error = self._exit or (None, None)
        if self._own_kill is not None:
            return self._own_kill
        if error is not None:
            return error
        if code is None:
            return "exit status unknown"
        if code < 0:
            return f"killed by {signal_name(code)}"
        return f"exit code {code}" if code > 0 else None

    def _restart_after(self, delay: float, why: str) -> None:
        self.restarts += 1
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        self._last_exit, self._exit = self._exit or (None, None), None
        self.process = None
        self._own_kill = None
        self._up_since = None
        self._last_stderr = ""  # the next process's errors are its own
        if not self._ever_ready and self.assignment.port == 0:
            self.port = 0  # maybe the port race: the next start gets another one
        self._note(f"service {why}; restart {self.restarts} in {delay:g} s "
                   f"({self._policy.recent} of at most {self._policy.max_restarts} "
                   f"in {self._policy.window:g} s)")
        self._status("restarting", why)
        self._backoff = self._loop.call_later(delay, self._start_again)

    def _start_again(self) -> None:
        self._backoff = None
        if not self.finished and self.kill_reason is None:
            self._relaunch(self)

    def _stop_checks(self) -> None:
        if self._checker is not None:
            self._checker.cancel()
            self._checker = None

    def _result(self, code: int | None, error: str | None) -> dict[str, Any]:
        out = super()._result(code, error)
        if self.kill_reason == RELEASED:
            out["released"] = True  # the master starts it again elsewhere, spending nothing
        if self._gave_up is not None and self.kill_reason is None and out["exit_code"] == 0:
            # It failed (never ready, unhealthy, crashing): the 0 is the exit code of a
            # process the worker itself stopped, which a SIGTERM handler may well return.
            out["exit_code"] = None
        return out

    def _ending_line(self, code: int | None, error: str | None) -> str | None:
        # The signals this worker sent are not news from outside: a service stopped on
        # request or handed back says so in its reason, and one given up after the worker
        # stopped it (not ready, unhealthy) was reported "killed by SIGTERM, not sent by
        # Titan" (a QA pass).
        if self.kill_reason in (STOP_REQUESTED, RELEASED):
            return None
        if self.kill_reason is None and self._own_kill is not None:
            return (f"stopped by its worker: the service {self._own_kill}; "
                    f"{self._policy.summary()}, more than max_restarts "
                    f"({self._policy.max_restarts}): not restarted")
        return super()._ending_line(code, error)

    def _error_text(self, code: int | None, error: str | None) -> str | None:
        if self.kill_reason == STOP_REQUESTED:
            if self._escalated:
                return f"stopped on request; killed after a {self._grace:g} s grace"
            return "stopped on request"
        if self.kill_reason == RELEASED:
            return "released: its worker is stopping"
        if self._gave_up is not None and self.kill_reason is None:
            text = self._gave_up + (f": {self._last_stderr}" if self._last_stderr else "")
            return text[:_ERROR_TEXT]
        return super()._error_text(code, error)

    # ------------------------------------------------------------------ telling

    def _status(self, health: str, detail: str | None = None) -> None:
        id_, attempt = self.key
        self._report({"id": id_, "attempt": attempt, "health": health, "host": self.host,
                      "port": self.port or None, "restarts": self.restarts,
                      "up_since": self._up_since, "detail": detail,
                      "pid": self.process.pid if self.process is not None else None})

    def _note(self, text: str) -> None:
        """A ``titan worker:`` line in the job's log (not taken for the job's own stderr)."""
        last = self._last_stderr
        self._emit("stderr", f"titan worker: {text}")
        self._last_stderr = last

