"""The worker's side of the zygote: start it, ask it to fork, learn pids and exit codes.

See :mod:`titan.worker.zygote` for the protocol. Requests are sent from any thread (under a
lock, one ``sendmsg`` each); answers are read on the I/O thread, which hands each request its
process (a callback, so a job whose script is already here starts with no thread waiting on
it) and delivers exit codes to the job's :class:`ForkedProcess`.
Because the zygote writes ``started`` before ``exited`` for a pid on the same socket, the
process object always exists before its exit is reported, however short the job.
"""

from __future__ import annotations

import array
import asyncio
import itertools
import json
import logging
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import titan
from titan import errors
from titan.worker.isolation import Isolation
from titan.worker.loop import IOLoop
from titan.worker.process import Process

log = logging.getLogger("titan.worker")

_HEADER = struct.Struct("!I")


class ForkFailed(errors.TitanError):
    """The zygote could not start the job (it is down, or fork failed)."""


class ForkedProcess(Process):
    """A job forked by the zygote; its exit code is delivered by :class:`ForkServer`."""


#: How a fork request ends (on the I/O thread): the forked process, or why there is none.
Started = Callable[[ForkedProcess | None, str | None], None]


class _Waiter:
    """A synchronous :meth:`ForkServer.spawn`'s wait for its answer."""

    __slots__ = ("done", "error", "proc")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.proc: ForkedProcess | None = None
        self.error: str | None = None

    def __call__(self, proc: ForkedProcess | None, error: str | None) -> None:
        self.proc, self.error = proc, error
        self.done.set()


class ForkServer:
    """One zygote process and the bookkeeping of what it forked.

    Single-use: once its zygote is gone the runner starts a new ForkServer, so a late
    notice of the old zygote's death can never touch the new one's jobs.
    """

    def __init__(self, loop: IOLoop, python: str = sys.executable, *,
                 isolation: Isolation | None = None, env: dict[str, str] | None = None,
                 lean: bool = False, spares: int = 0) -> None:
        self._loop = loop
        self._python = python
        self.lean = lean
        self.spares = spares
        self._isolation = isolation or Isolation()
        self._env = env
        self._sock: socket.socket | None = None
        self._popen: subprocess.Popen[bytes] | None = None
        self._send_lock = threading.Lock()
        self._state_lock = threading.Lock()
        self._rids = itertools.count(1)
        self._pending: dict[int, Started] = {}
        #: When each request with a timeout gives up (monotonic), and when the one timer that
        #: enforces them all is due (None: not armed); under ``_state_lock``.
        self._deadlines: dict[int, float] = {}
        self._sweep_at: float | None = None
        self._sweep_handle: asyncio.Handle | None = None  # I/O thread only
        self._procs: dict[int, ForkedProcess] = {}  # I/O thread only
        self._buf = bytearray()
        self._environ: dict[str, str] = {}  # the zygote's, as it reported it when ready
        #: The modules the zygote has imported (a child finds them warm), and which of them
        #: are packages, with their directories (titan.worker.imports reads them).
        self.modules: frozenset[str] = frozenset()
        self.packages: dict[str, list[str]] = {}
        self.alive = False
        #: Set by close(): the zygote is leaving as asked, and close() gives it the time.
        self._closing = False
        self.pid: int | None = None

    # ------------------------------------------------------------------ lifecycle

    def start(self, timeout: float = 60.0) -> None:
        """Start the zygote and wait until it has preloaded and is ready to fork."""
        if self._popen is not None:
            raise ForkFailed("a ForkServer starts one zygote only")
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        env = dict(os.environ if self._env is None else self._env)
        # `-m titan.worker.zygote` must import this very titan, wherever it was found.
        src = str(Path(titan.__file__).resolve().parent.parent)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [src, env.get("PYTHONPATH")]))
        argv = [self._python, "-m", "titan.worker.zygote", str(child.fileno())]
        if self.lean:
            argv.append("--lean")
        if self.spares:
            argv.append(f"--spares={self.spares}")
        if self._isolation.active:
            argv.append(json.dumps(self._isolation.to_json()))
        try:
            popen = subprocess.Popen(
                argv, pass_fds=[child.fileno()], stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, env=env, start_new_session=True,
            )
        finally:
            child.close()
        try:
            parent.settimeout(timeout)
            line = b""
            while not line.endswith(b"\n"):
                chunk = parent.recv(4096)
                if not chunk:
                    raise ForkFailed("the zygote exited during startup")
                line += chunk
            ready = json.loads(line)
            parent.settimeout(None)
        except (OSError, ValueError, ForkFailed) as exc:
            parent.close()
            popen.kill()
            popen.wait()
            raise ForkFailed(f"the zygote did not start: {exc}") from None
        self._sock, self._popen, self.pid = parent, popen, int(ready["pid"])
        self._environ = {str(k): str(v) for k, v in ready["environ"].items()}
        self.modules = frozenset(str(m) for m in ready.get("modules") or ())
        self.packages = {str(k): [str(p) for p in v]
                         for k, v in (ready.get("packages") or {}).items()}
        self.alive = True
        self._loop.call(self._loop.add_reader, parent.fileno(), self._on_readable, parent)
        log.debug("zygote %d ready", self.pid)

    def close(self, timeout: float = 5.0) -> None:
        """Stop the zygote (it kills whatever it forked that still runs)."""
        sock, popen = self._sock, self._popen
        self.alive = False
        self._closing = True
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if popen is not None:
            try:
                popen.wait(timeout)
            except subprocess.TimeoutExpired:
                popen.kill()
                popen.wait()

    # ------------------------------------------------------------------ forking

    def spawn(self, request: dict[str, Any], out_w: int, err_w: int,
              timeout: float = 10.0) -> ForkedProcess:
        """Fork a child running ``request`` with ``out_w``/``err_w`` as its stdout/stderr."""
        waiter = _Waiter()
        rid = self.request(request, out_w, err_w, waiter)
        if not waiter.done.wait(timeout):
            with self._state_lock:
                self._pending.pop(rid, None)
            raise ForkFailed("the zygote did not answer in time")
        if waiter.proc is None:
            raise ForkFailed(waiter.error or "the zygote could not fork")
        return waiter.proc

    def request(self, request: dict[str, Any], out_w: int, err_w: int,
                started: Started, timeout: float | None = None) -> int:
        """Ask for a fork without waiting: ``started`` is called on the I/O thread with the
        process, or with why there is none (fork refused, zygote dead, no answer within
        ``timeout``). The descriptors are the zygote's once this returns (the caller closes
        its copies). Returns the request id; raises :class:`ForkFailed` if it cannot be sent."""
        sock = self._sock
        if not self.alive or sock is None:
            raise ForkFailed("the zygote is not running")
        arm = False
        with self._send_lock:
            rid = next(self._rids)
            with self._state_lock:
                self._pending[rid] = started
                if timeout is not None:
                    at = self._deadlines[rid] = time.monotonic() + timeout
                    if self._sweep_at is None or at < self._sweep_at:
                        self._sweep_at, arm = at, True
            data = json.dumps({**self._environ_diff(request), "rid": rid}).encode()
            data = _HEADER.pack(len(data)) + data
            fds = array.array("i", [out_w, err_w])
            try:
                sent = sock.sendmsg([data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds)])
                if sent < len(data):
                    sock.sendall(data[sent:])
            except OSError as exc:
                with self._state_lock:
                    self._pending.pop(rid, None)
                    self._deadlines.pop(rid, None)
                self.alive = False
                raise ForkFailed(f"cannot reach the zygote: {exc}") from None
        if arm:
            self._loop.call(self._arm_sweep)
        return rid

    # One timer for every request's timeout, armed from the requesting thread only when none
    # is (or a request is due before it): a timer per request woke the I/O thread from the
    # worker's intake thread for every job (a write to the loop's self-pipe, a select wake-up,
    # a timer handle; ~0.1 ms of the worker's CPU a job), for a timeout that almost never
    # fires. The sweep re-arms itself at the next deadline while requests wait.

    def _arm_sweep(self) -> None:
        with self._state_lock:
            at = self._sweep_at
        if self._sweep_handle is not None:
            self._sweep_handle.cancel()
        self._sweep_handle = (None if at is None else
                              self._loop.call_later(at - time.monotonic(), self._sweep))

    def _sweep(self) -> None:
        self._sweep_handle = None
        now = time.monotonic()
        with self._state_lock:
            due = [rid for rid, at in self._deadlines.items() if at <= now]
            expired = [self._pending.pop(rid, None) for rid in due]
            for rid in due:
                del self._deadlines[rid]
            self._sweep_at = min(self._deadlines.values(), default=None)
        self._arm_sweep()
        for started in expired:
            if started is not None:  # a late "started" kills what it forked (nobody owns it)
                started(None, "the zygote did not answer in time")

    def _environ_diff(self, request: dict[str, Any]) -> dict[str, Any]:
        """``request`` with its ``env`` replaced by what differs from the zygote's own."""
        out = dict(request)
        env: dict[str, str] = out.pop("env")
        base = self._environ
        out["env_unset"] = [name for name in base if name not in env]
        out["env_set"] = {name: value for name, value in env.items() if base.get(name) != value}
        return out

    # ------------------------------------------------------------------ I/O thread

    def _on_readable(self, sock: socket.socket) -> None:
        try:
            data = sock.recv(65536, socket.MSG_DONTWAIT)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._on_dead(sock)
            return
        self._buf += data
        while (end := self._buf.find(b"\n")) >= 0:
            line = bytes(self._buf[:end])
            del self._buf[: end + 1]
            self._on_event(json.loads(line))

    def _on_event(self, event: dict[str, Any]) -> None:
        kind = event.get("event")
        if kind == "exited":
            proc = self._procs.pop(int(event["pid"]), None)
            if proc is not None:
                proc.set_exited(int(event["code"]))
            return
        rid = int(event.get("rid") or 0)
        with self._state_lock:
            started = self._pending.pop(rid, None)
            self._deadlines.pop(rid, None)
        if kind == "started":
            proc = ForkedProcess(int(event["pid"]))
            if started is None:
                # Its requester gave up waiting: nobody will run this job's bookkeeping.
                proc.kill_group(signal.SIGKILL)
            self._procs[proc.pid] = proc
            if started is not None:
                started(proc, None)
        elif started is not None:
            started(None, str(event.get("error") or "fork failed"))

    def _on_dead(self, sock: socket.socket) -> None:
        self._loop.remove_reader(sock.fileno())
        sock.close()
        if self._sock is sock:
            self._sock = None
            self.alive = False
        # Not a zygote close() told to leave: the end-of-file it reads is that close's. Killed
        # here 50 ms after close() had shut the socket, it never ended what the jobs it had
        # just killed had started outside their groups, and those ran on, children of init,
        # after `titan up` had stopped (a lifecycle QA pass). close() waits for it, then kills.
        if not self._closing and self._popen is not None and self._popen.poll() is None:
            self._popen.kill()
        with self._state_lock:
            pending, self._pending = self._pending, {}
            self._deadlines.clear()
        for started in pending.values():
            started(None, "the zygote died")
        procs, self._procs = self._procs, {}
        if procs:
            log.error("zygote died with %d jobs running; they are killed", len(procs))
        for proc in procs.values():
            # Their exit codes are lost with the zygote: kill them so their pipes close and
            # their results can be reported (as failures) instead of hanging forever.
            proc.kill_group(signal.SIGKILL)
            proc.set_exited(None, "the zygote died; the exit status is unknown")
