"""The zygote: a warm, single-threaded interpreter that forks one child per Python job.

Started once by the worker as ``python -m titan.worker.zygote <fd>``, where ``<fd>`` is its
end of a Unix socketpair. A fresh interpreter that imports httpx and the SDK costs ~75 ms; a
fork of this one costs ~1 ms, and the child finds everything already imported.

Protocol on the socket (the worker is the only peer):

* worker → zygote: a 4-byte big-endian length and a JSON request ``{"rid", "argv", "cwd",
  "env", "script", "sys_path"}``, sent in one ``sendmsg`` that carries two file descriptors
  (``SCM_RIGHTS``): the write ends of the job's stdout and stderr pipes.
* zygote → worker: JSON lines ``{"event": "ready", "pid"}`` once, then per request
  ``{"event": "started", "rid", "pid"}`` or ``{"event": "failed", "rid", "error"}``, and
  ``{"event": "exited", "pid", "code"}`` when a child is reaped (``code`` as in
  :func:`os.waitstatus_to_exitcode`: negative for a signal).

The zygote must stay single-threaded (fork copies only the calling thread, so any other
thread's locks would be held forever in the child): children are reaped on ``SIGCHLD``
delivered through ``signal.set_wakeup_fd`` into the same ``select`` loop that reads requests.
When the worker goes away (EOF) the zygote kills what it started and exits.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import io
import json
import os
import select
import signal
import socket
import struct
import sys
import threading
import traceback
from typing import Any

_HEADER = struct.Struct("!I")
#: Imported before the first fork so children find them warm. Nothing here may start a
#: thread or touch a GPU at import time.
PRELOAD = (
    "json", "re", "random", "subprocess", "logging", "pathlib", "typing", "dataclasses",
    "datetime", "urllib.parse", "http.client", "argparse", "collections", "hashlib",
    "httpx", "yaml", "titan", "titan.client", "titan_sdk",
    # Recording: a job of an agent run has its titan.llm calls recorded without importing
    # titan.trace itself (loading it hooks titan.llm; its sender thread starts on first use).
    "titan.trace",
)
#: The lean zygote's: what a forked child itself runs on, nothing more. Its address space is
#: a third of the full one's, and fork, copy-on-write faults and exit all cost by the page:
#: a script that imports only what is already here (the worker checks, titan.worker.imports)
#: is forked from it for ~1 ms less CPU.
LEAN_PRELOAD = ("json", "random", "types", "importlib.machinery", "atexit", "threading", "io",
                "contextlib", "traceback")


# ---------------------------------------------------------------------------- the child


def exit_code_of(exc: SystemExit) -> int:
    """The process exit code Python gives a SystemExit (``None`` → 0, a message → 1)."""
    code = exc.code
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    with contextlib.suppress(Exception):
        print(code, file=sys.stderr)
    return 1


def _user_traceback(exc: BaseException, script: str) -> Any:
    """The traceback from the script's first frame on: the zygote's frames mean nothing to
    users (``python script.py`` would not show them)."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename != script:
        tb = tb.tb_next
    return tb or exc.__traceback__


def _text_stream(fd: int) -> io.TextIOWrapper:
    # Line-buffered, so each line reaches the pipe (and the master) as it is printed.
    return io.TextIOWrapper(io.FileIO(fd, "w", closefd=False), encoding="utf-8",
                            errors="backslashreplace", line_buffering=True)


def _apply_environ(unset: list[str], changed: dict[str, str]) -> None:
    # The worker sends only what differs from the zygote's environment (it learned that from
    # "ready"): reading every variable here would touch, and so copy, the pages of os.environ
    # and its strings (~0.25 ms a job); most of a job's environment is the zygote's own.
    current = os.environ
    for name in unset:
        current.pop(name, None)
    for name, value in changed.items():
        current[name] = value


def _run_main(script: str) -> None:
    """Execute ``script`` as the ``__main__`` module, as ``python script.py`` does.

    Not ``runpy.run_path``: it probes import hooks for the path (a zip? a directory?) and
    swaps ``__main__`` back afterwards, which costs several ms per fork in page copies and
    leaves pickling of ``__main__`` classes broken for the job's own threads at exit.
    """
    import builtins
    import types
    from importlib.machinery import SourceFileLoader

    with open(script, "rb") as fh:
        source = fh.read()
    code = compile(source, script, "exec", dont_inherit=True)
    module = types.ModuleType("__main__")
    module.__dict__.update(__file__=script, __builtins__=builtins, __cached__=None,
                           __loader__=SourceFileLoader("__main__", script), __spec__=None,
                           __package__=None)
    sys.modules["__main__"] = module
    exec(code, module.__dict__)


def run_script(request: dict[str, Any]) -> int:
    """Run the request's script as ``__main__`` the way ``python script.py`` would.

    Called in the forked child after its file descriptors are in place; returns the exit
    code. The interpreter's own shutdown is replayed (non-daemon threads joined, ``atexit``
    handlers run, streams flushed) because the child leaves with ``os._exit``.
    """
    import random

    os.chdir(request["cwd"])
    _apply_environ(request["env_unset"], request["env_set"])
    script = os.path.abspath(request["script"])
    sys.argv = [str(a) for a in request["argv"]]
    extra = list(request.get("sys_path") or [])
    extra += [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    sys.path[0] = os.path.dirname(script)
    for i, entry in enumerate(p for p in extra if p not in sys.path):
        sys.path.insert(1 + i, entry)
    # Forked children start with the zygote's PRNG state; without a reseed every job would
    # draw the same "random" numbers.
    random.seed()
    sys.stdin = open(0, closefd=False)  # noqa: SIM115 - the child's stdin, kept for its life
    sys.stdout = _text_stream(1)
    sys.stderr = _text_stream(2)
    # Code that writes to the "original" streams (faulthandler users, pdb) must stream too.
    setattr(sys, "__stdout__", sys.stdout)  # noqa: B010 - typeshed marks them Final
    setattr(sys, "__stderr__", sys.stderr)  # noqa: B010
    if os.environ.get("TITAN_REPLAY"):
        # A replay's job: its sockets are guarded before its own code runs (leaks).
        from titan.trace import replay

        replay.active()
    code = 0
    try:
        _run_main(script)
    except SystemExit as exc:
        code = exit_code_of(exc)
    except BaseException as exc:  # noqa: BLE001 - the interpreter reports anything uncaught
        tb = _user_traceback(exc, script)
        # The default hook prints exc.__traceback__ whatever it is passed: trim both.
        sys.excepthook(type(exc), exc.with_traceback(tb), tb)
        code = 1
    shutdown = getattr(threading, "_shutdown", None)
    if shutdown is not None:
        with contextlib.suppress(BaseException):
            shutdown()  # join non-daemon threads, as interpreter exit does
    import atexit

    with contextlib.suppress(BaseException):
        atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(BaseException):
            stream.flush()
    return code


def _child(request: dict[str, Any], out_fd: int, err_fd: int, own_fds: list[int],
           isolation: Any = None) -> None:
    """The forked child's whole life: never returns into the zygote's loop."""
    code = 1
    try:
        # Unhook the wakeup fd before closing it: a signal in between would be written to
        # whatever file reuses that descriptor number.
        signal.set_wakeup_fd(-1)
        for fd in own_fds:
            os.close(fd)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        # A process group of its own: cancel and timeout kill the whole group, grandchildren
        # included, and the zygote's group is never hit.
        os.setsid()
        os.dup2(out_fd, 1)
        os.dup2(err_fd, 2)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        if isolation is not None:
            # Before any of the job's code: a failure here fails the job rather than running
            # it less isolated than asked.
            isolation.apply()
        # Nothing of the zygote's may leak into the job (a fresh interpreter has fds 0-2).
        os.closerange(3, 65536)
        code = run_script(request)
    except BaseException:  # noqa: BLE001 - a failure here is the job's failure, not the zygote's
        with contextlib.suppress(BaseException):
            os.write(2, traceback.format_exc().encode("utf-8", "replace"))
    finally:
        os._exit(code)


# ---------------------------------------------------------------------------- the zygote


class Zygote:
    """The zygote's select loop: read requests, fork, reap, report."""

    def __init__(self, sock: socket.socket, isolation: Any = None) -> None:
        self.sock = sock
        self.isolation = isolation
        self.children: set[int] = set()
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)

    def send(self, event: dict[str, Any]) -> None:
        self.sock.sendall(json.dumps(event).encode() + b"\n")

    def _recv_exact(self, n: int) -> bytes:
        # Exact-length reads: never consume the next request's first byte, which carries
        # that request's file descriptors.
        chunks = []
        while n:
            chunk = self.sock.recv(n)
            if not chunk:
                raise EOFError
            chunks.append(chunk)
            n -= len(chunk)
        return b"".join(chunks)

    def _read_request(self) -> tuple[dict[str, Any], list[int]] | None:
        head, fds, _flags, _addr = socket.recv_fds(self.sock, _HEADER.size, 2)
        if not head:
            for fd in fds:
                os.close(fd)
            return None
        if len(head) < _HEADER.size:
            head += self._recv_exact(_HEADER.size - len(head))
        (length,) = _HEADER.unpack(head)
        return json.loads(self._recv_exact(length)), list(fds)

    def _fork(self, request: dict[str, Any], fds: list[int]) -> None:
        rid = request.get("rid")
        if len(fds) != 2:
            for fd in fds:
                os.close(fd)
            self.send({"event": "failed", "rid": rid, "error": "expected 2 file descriptors"})
            return
        try:
            pid = os.fork()
        except OSError as exc:
            for fd in fds:
                os.close(fd)
            self.send({"event": "failed", "rid": rid, "error": f"fork failed: {exc}"})
            return
        if pid == 0:
            _child(request, fds[0], fds[1], [self.sock.fileno(), self.wake_r, self.wake_w],
                   self.isolation)
        for fd in fds:
            os.close(fd)
        self.children.add(pid)
        self.send({"event": "started", "rid": rid, "pid": pid})

    def _reap(self) -> None:
        with contextlib.suppress(BlockingIOError):
            while os.read(self.wake_r, 4096):
                pass
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            self.children.discard(pid)
            self.send({"event": "exited", "pid": pid, "code": os.waitstatus_to_exitcode(status)})

    def serve(self) -> None:
        # A Python-level handler (not SIG_IGN, which would auto-reap and lose exit codes);
        # its only job is to make the wakeup fd readable.
        signal.signal(signal.SIGCHLD, lambda _sig, _frame: None)
        signal.set_wakeup_fd(self.wake_w)
        # The environment every child starts from (the worker sends each job's as a diff),
        # and the modules it finds imported (the worker routes scripts by them).
        packages = {name: list(getattr(m, "__path__", None) or [])
                    for name, m in list(sys.modules.items()) if hasattr(m, "__path__")}
        self.send({"event": "ready", "pid": os.getpid(), "environ": dict(os.environ),
                   "modules": sorted(sys.modules), "packages": packages})
        try:
            while True:
                readable, _, _ = select.select([self.sock.fileno(), self.wake_r], [], [])
                if self.wake_r in readable:
                    self._reap()
                if self.sock.fileno() in readable:
                    try:
                        got = self._read_request()
                    except (EOFError, ConnectionError):
                        got = None
                    if got is None:
                        return
                    self._fork(*got)
        finally:
            # The worker is gone: nobody will report these jobs, so none may run on.
            for pid in self.children:
                with contextlib.suppress(OSError):
                    os.killpg(pid, signal.SIGKILL)


def preload(lean: bool = False) -> None:
    for name in LEAN_PRELOAD if lean else PRELOAD:
        with contextlib.suppress(Exception):
            importlib.import_module(name)
    extra = "" if lean else os.environ.get("TITAN_ZYGOTE_PRELOAD", "")
    for name in filter(None, (n.strip() for n in extra.split(","))):
        try:
            importlib.import_module(name)
        except Exception as exc:  # noqa: BLE001 - a bad preload must not stop the worker
            print(f"titan zygote: cannot preload {name}: {exc}", file=sys.stderr)
    # Everything imported so far lives as long as the zygote: out of the collector's sight,
    # a child's garbage collections do not touch (and so copy) those pages.
    gc.collect()
    gc.freeze()
    if threading.active_count() > 1:
        print("titan zygote: a preloaded module started a thread; forked jobs may deadlock",
              file=sys.stderr)


def main(argv: list[str]) -> int:
    args = argv[1:]
    lean = "--lean" in args
    args = [a for a in args if a != "--lean"]
    if len(args) not in (1, 2):
        print("usage: python -m titan.worker.zygote <socket fd> [--lean] [<isolation JSON>]",
              file=sys.stderr)
        return 2
    isolation = None
    if len(args) == 2:
        from titan.worker.isolation import Isolation

        isolation = Isolation.from_json(json.loads(args[1]))
        isolation.warm()  # before any fork: children inherit the plan and ctypes, loaded
    sock = socket.socket(fileno=int(args[0]))
    sock.setblocking(True)
    # Terminal signals belong to the worker; it decides when the zygote goes (EOF).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    preload(lean)
    Zygote(sock, isolation).serve()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
