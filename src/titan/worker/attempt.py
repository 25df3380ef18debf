"""One running attempt of a job: its output, its exit, its deadline, its kill.

An :class:`Attempt` lives on the I/O thread from :meth:`Attempt.attach` on, so its state
needs no lock. Its result is produced only once the process has exited *and* both pipes have
reached end-of-file, so every log line is queued before the result (the master applies a
report's logs before its results, and the reporter keeps queue order, so the order holds
end to end).

Cancel and timeout signal the whole process group: SIGTERM first, SIGKILL ``kill_grace``
seconds later if the job is still there. When the job's main process ends, whatever is left in
its group (a background process it did not wait for) gets the same: SIGTERM at once — unless a
kill sent one already — and SIGKILL when the grace is over, on a timer of its own that the
result does not wait for. A service's attempt outlives its processes
(:class:`~titan.worker.service.ServiceAttempt` restarts them): the hooks it overrides are
marked so.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import time
from asyncio import Handle
from typing import Any, Protocol

from titan.worker import shared_imports
from titan.worker.assignment import Assignment, Key
from titan.worker.executor import Launched
from titan.worker.loop import IOLoop
from titan.worker.output import LineSplitter
from titan.worker.process import Process, signal_name

log = logging.getLogger("titan.worker")

CANCELLED = "cancelled"
TIMED_OUT = "timed_out"
STOPPED = "stopped"
_ERROR_TEXT = 500
#: The line a traceback ends with ("ValueError: ...", "litellm.BadRequestError: ..."): the
#: job's error names it rather than the last line, which for a message of several lines is
#: only its tail ("exit code 1:  Pass model as E.g. For 'Huggingface'...").
_EXCEPTION_LINE = re.compile(r"[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt|Failure)(:|$)")
#: Signals that end a process on its own fault, named as people search logs for them. A
#: SIGKILL that Titan did not send is most often the kernel's out-of-memory killer.
_CRASHES: dict[int, str] = {
    signal.SIGSEGV: "Segfault (a crash in native code)",
    signal.SIGBUS: "Bus error (a crash in native code)",
    signal.SIGILL: "Illegal instruction (a crash in native code)",
    signal.SIGFPE: "Arithmetic fault (a crash in native code)",
    signal.SIGABRT: "Aborted (abort() in native code, or a failed C assertion)",
    signal.SIGKILL: "Killed from outside Titan, most often by the kernel's OutOfMemory killer "
                    "(see dmesg)",
}


def _out_of_memory(exception_line: str) -> bool:
    """Whether a traceback ended with a MemoryError that does not say OutOfMemory itself
    (torch's ``OutOfMemoryError`` does)."""
    name = exception_line.split(":", 1)[0].strip()
    return name.endswith("MemoryError") and "OutOfMemory" not in name


class Sink(Protocol):
    """Where an attempt's log lines and result go (the reporter, and the slot accounting)."""

    def log(self, entry: dict[str, Any]) -> None: ...

    def result(self, entry: dict[str, Any]) -> None: ...

    def finished(self, attempt: Attempt) -> None: ...


class Attempt:
    """A job attempt from assignment to result."""

    def __init__(self, assignment: Assignment, *, loop: IOLoop, sink: Sink,
                 kill_grace: float) -> None:
        self.assignment = assignment
        self.key: Key = assignment.key
        self.kill_reason: str | None = None
        self._released = False  # not started because of the worker: handed back (_result)
        self.process: Process | None = None
        self.finished = False
        self._loop = loop
        self._sink = sink
        self._kill_grace = kill_grace
        self._grace = kill_grace  # SIGTERM to SIGKILL for this kill (a stop names its own)
        self._seq = 0
        self._streams: dict[int, tuple[str, LineSplitter]] = {}
        #: Its pipes are not read while the master has not taken enough of its lines (see
        #: :mod:`titan.worker.reporter`): the job blocks on a full pipe, the worker's memory
        #: stays bounded.
        self._output_paused = False
        self._timers: list[Handle] = []  # this process's: kill escalation, lingering pipes
        self._deadline: Handle | None = None  # the attempt's timeout, armed once
        #: When this process's group is due its SIGKILL, once a kill sent it SIGTERM
        #: (monotonic; None: not signalled yet).
        self._kill_by: float | None = None
        self._exit: tuple[int | None, str | None] | None = None
        self._last_stderr = ""
        self._exception_line = ""  # the last of stderr's that ends a traceback
        self._started = time.monotonic()
        self._ended_at = 0.0  # wall clock when its process ended (0: not yet)
        self._ended = 0.0  # ... and on the monotonic clock (0: not yet)

    # ------------------------------------------------------------------ lifecycle (I/O thread)

    def attach(self, launched: Launched) -> None:
        """Take over a started process: read its pipes, await its exit, arm its timeout."""
        self.process = launched.process
        self._kill_by = None  # a service's next process has not been signalled
        for fd, name in ((launched.stdout, "stdout"), (launched.stderr, "stderr")):
            self._streams[fd] = (name, LineSplitter())
            if not self._output_paused:
                self._loop.add_reader(fd, self._on_readable, fd)
        launched.process.watch(self._loop, self._on_exit)
        timeout = self.assignment.timeout
        if timeout and self._deadline is None:
            self._deadline = self._loop.call_later(timeout, self.kill, TIMED_OUT)
        if self.kill_reason is not None:  # cancelled while it was being started
            self._terminate()
        # INFO, as docs/configuration.md promises at TITAN_LOG_LEVEL=INFO (a no-op below it).
        log.info("job %s attempt %d started (pid %d, %s)", self.assignment.ref or self.key[0],
                  self.key[1], self.process.pid, "fork" if launched.forked else "subprocess")

    def fail_to_start(self, error: str, release: bool = False) -> None:
        """Report an attempt whose process never started (missing script, bad archive...);
        ``release``: the worker's fault, not the job's (handed back, spending nothing)."""
        log.warning("job %s attempt %d could not start: %s", self.assignment.ref or self.key[0],
                    self.key[1], error)
        self._released = release
        self._emit("stderr", f"titan worker: {error}")
        self._exit = (None, error)
        self._maybe_finish()

    def extra_env(self) -> dict[str, str]:
        """Variables this attempt adds to the job's environment at each start (a service's
        port); asked on the thread that starts the process."""
        return {}

    def kill(self, reason: str, grace: float | None = None) -> None:
        """Stop the job for ``reason`` (cancelled, timed_out, stopped): TERM, then KILL
        ``grace`` seconds later (default: the worker's kill grace). Once: each heartbeat
        names a cancelled attempt again until its result arrives, and a job that took its
        time over SIGTERM got one more a heartbeat, cutting a graceful stop short."""
        if self.finished or self.kill_reason is not None:
            return
        self.kill_reason = reason
        if grace is not None:
            self._grace = grace
        if self.process is not None:
            self._terminate()

    def kill_now(self, reason: str = STOPPED) -> None:
        """SIGKILL the job's group at once (the worker is going down hard)."""
        if self.finished:
            return
        if self.kill_reason is None:
            self.kill_reason = reason
        if self.process is not None:
            self._kill_by = time.monotonic()
            self.process.kill_group(signal.SIGKILL)

    def _terminate(self) -> None:
        assert self.process is not None
        if self._kill_by is None:
            self._kill_by = time.monotonic() + self._grace
        self.process.kill_group(signal.SIGTERM)
        self._timers.append(self._loop.call_later(self._grace, self._escalate))

    def _escalate(self) -> None:
        if not self.finished and self.process is not None:
            self.process.kill_group(signal.SIGKILL)

    # ------------------------------------------------------------------ output

    def pause_output(self, paused: bool) -> None:
        """Stop reading the job's pipes (its unsent lines reached the limit), or read them
        again. Once the process has exited, a child still holding its pipes stays paused
        too: the kill grace then ends the group and reads what is left in the pipes (at most
        their buffers), so the result does not wait for the limit either."""
        if paused == self._output_paused:
            return
        self._output_paused = paused
        for fd in self._streams:
            if paused:
                self._loop.remove_reader(fd)
            else:
                self._loop.add_reader(fd, self._on_readable, fd)

    def _on_readable(self, fd: int) -> None:
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        name, splitter = self._streams[fd]
        if data:
            for line, continues in splitter.feed(data):
                self._emit(name, line, continues)
            return
        for line, continues in splitter.close():
            self._emit(name, line, continues)
        self._close_stream(fd)
        self._maybe_finish()

    def _close_stream(self, fd: int) -> None:
        self._loop.remove_reader(fd)
        del self._streams[fd]
        os.close(fd)

    def _emit(self, stream: str, line: str, continues: bool = False) -> None:
        self._seq += 1
        id_, attempt = self.key
        entry = {"id": id_, "attempt": attempt, "seq": self._seq, "stream": stream,
                 "ts": time.time(), "line": line}
        if continues:  # a piece of a line past 64 KiB (worker/output.py)
            entry["continues"] = True
        self._sink.log(entry)
        if stream == "stderr" and line.strip():
            self._last_stderr = line
            if _EXCEPTION_LINE.match(line):
                self._exception_line = line

    def _drain_and_close(self) -> None:
        """Stop waiting for end-of-file: read what is buffered and close the pipes."""
        for fd in list(self._streams):
            name, splitter = self._streams[fd]
            while True:
                try:
                    data = os.read(fd, 65536)
                except OSError:  # BlockingIOError included: nothing more is buffered
                    data = b""
                if not data:
                    break
                for line, continues in splitter.feed(data):
                    self._emit(name, line, continues)
            for line, continues in splitter.close():
                self._emit(name, line, continues)
            self._close_stream(fd)
        self._maybe_finish()

    # ------------------------------------------------------------------ exit

    def _on_exit(self, code: int | None, error: str | None) -> None:
        self._exit = (code, error)
        self._ended_at = time.time()  # the attempt's end, however late it is reported
        self._ended = time.monotonic()
        self._end_leftovers()
        if self._streams:
            # The job's main process is gone but something it started still holds its
            # stdout/stderr. Give it the grace period, then kill the group and stop reading:
            # a forgotten background process must not keep the result from the master.
            self._timers.append(self._loop.call_later(self._kill_grace, self._linger_over))
        self._maybe_finish()

    def _end_leftovers(self) -> None:
        """The main process has ended: what it left in its group must not outlive the job
        (docs/security.md). A job that waited for its children has nothing left there, and
        costs one signal to an empty group."""
        process = self.process
        if process is None:
            return
        now = time.monotonic()
        if self._kill_by is None:  # ended on its own: TERM what is left, KILL after the grace
            if not process.kill_leftovers(signal.SIGTERM):
                return
            kill_by = now + self._kill_grace
        else:  # a kill sent them TERM already (a second could cut a graceful stop short)
            if not process.kill_leftovers(0):
                return
            kill_by = self._kill_by
        # Not among self._timers: finishing, and a service's restart, cancel those; the
        # result is reported meanwhile, the leftovers are killed all the same.
        self._loop.call_later(max(0.0, kill_by - now), process.kill_leftovers, signal.SIGKILL)

    def _linger_over(self) -> None:
        if self.finished or self.process is None:
            return
        self.process.kill_group(signal.SIGKILL)
        self._drain_and_close()

    def _maybe_finish(self) -> None:  # a service overrides it: its process may start again
        if self.finished or self._exit is None or self._streams:
            return
        self.finished = True
        for timer in self._timers:
            timer.cancel()
        if self._deadline is not None:
            self._deadline.cancel()
        code, error = self._exit
        id_, attempt = self.key
        ending = self._ending_line(code, error)
        if ending is not None:
            said = self._last_stderr  # the job's last word for its error, not the worker's
            self._emit("stderr", f"titan worker: {ending}")
            self._last_stderr = said
        result = self._result(code, error)
        log.info("job %s attempt %d finished in %.3f s: exit %s%s", self.assignment.ref or id_,
                 attempt, time.monotonic() - self._started, code,
                 f" ({str(result['error'])[:200]})" if result["error"] else "")
        self._sink.result(result)
        self._sink.finished(self)

    def _result(self, code: int | None, error: str | None) -> dict[str, Any]:
        id_, attempt = self.key
        out = {"id": id_, "attempt": attempt, "exit_code": code,
               "error": self._error_text(code, error),
               "timed_out": self.kill_reason == TIMED_OUT,
               "ended_at": self._ended_at or time.time(),
               # From when this worker took the attempt to its end, on the monotonic clock:
               # the master adds it to its own start of the attempt (its lease), so a wall
               # clock set wrong here (60 s behind made every duration 0.0 s) moves nothing.
               # ended_at stays for masters of the previous version.
               "elapsed": round((self._ended or time.monotonic()) - self._started, 6)}
        if self._lost():
            # What ran it died under it (a Ray node): not the job's failure, as a local
            # worker's death is not. Handed back; the master ends it LOST and starts it again
            # as its next attempt, spending no retry (an earlier master: RELEASED, the same).
            out["released"] = out["lost"] = True
        elif self.kill_reason == STOPPED or self._released:
            # Killed because its worker is going down (a second SIGTERM), or not started
            # because of the worker (fail_to_start): not the job's failure. The master starts
            # it again elsewhere, spending no retry, as when a worker dies (its lease expires).
            out["released"] = True
        return out

    def _lost(self) -> bool:
        """Whether the process was lost, not ended by the job (a kill of Titan's, a
        cancel or a timeout, still decides the outcome)."""
        return self.kill_reason is None and self.process is not None and self.process.lost

    def _ending_line(self, code: int | None, error: str | None) -> str | None:
        """How the process ended, for its log, when the job could not say so itself: a log
        read by a person or an agent (seed 002's self-healing loop looks for "Segfault" and
        "OutOfMemory") showed a crashed job's last print and nothing after it."""
        if self.kill_reason == TIMED_OUT:
            return (f"timed out after {self.assignment.timeout:g} s; stopped (SIGTERM, then "
                    "SIGKILL after the grace)")
        if self.kill_reason == CANCELLED:
            # The master ended the attempt when it was cancelled: it takes no more of its
            # lines, and says "cancelled" itself.
            return None
        if self.kill_reason == STOPPED:
            return "the worker stopped; the job starts again on another worker"
        if self._lost():
            return f"{error}; the job starts again, spending no retry"
        if code and code > 0 and not self.assignment.is_archive and \
                self._exception_line.startswith("ModuleNotFoundError"):
            # A plain script's folder holds only what jobs left there (shared_imports.py).
            return (f"{self._exception_line.strip()[:200]}: a plain script is uploaded alone; "
                    f"to import modules from beside it, {shared_imports.ADVICE}")
        if code and code > 0 and _out_of_memory(self._exception_line):
            # Python's word for it is MemoryError (numpy's _ArrayMemoryError...); a log
            # searched for "OutOfMemory", as seed 002's agent searches it, found nothing.
            return (f"OutOfMemory: the job ran out of memory "
                    f"({self._exception_line.strip()[:200]})")
        if error is not None or code is None or code >= 0 or code == -signal.SIGINT:
            # A start that failed says so already; an exit code is the job's own saying, and
            # so is the KeyboardInterrupt traceback of a process ended by SIGINT.
            return None
        crash = _CRASHES.get(-code)
        if crash is not None:
            return f"{crash}: the process was killed by {signal_name(code)}"
        return f"the process was killed by {signal_name(code)}, not sent by Titan"

    def _error_text(self, code: int | None, error: str | None) -> str | None:
        if self.kill_reason == TIMED_OUT:
            text = f"timed out after {self.assignment.timeout:g} s"
        elif self.kill_reason == CANCELLED:
            text = "cancelled"
        elif self.kill_reason == STOPPED:
            text = "the worker stopped"
        elif error is not None:
            text = error
        elif code is None:
            text = "exit status unknown"
        elif code < 0:
            text = f"killed by {signal_name(code)}"
        elif code > 0:
            said = self._exception_line or self._last_stderr
            text = f"exit code {code}" + (f": {said}" if said else "")
        else:
            return None
        return text[:_ERROR_TEXT]
