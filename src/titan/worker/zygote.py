"""The zygote: a warm, single-threaded interpreter that forks one child per Python job.

Started once by the worker as ``python -m titan.worker.zygote <fd>``, where ``<fd>`` is its
end of a Unix socketpair. A fresh interpreter that imports httpx and the SDK costs ~75 ms; a
fork of this one costs ~1 ms, and the child finds everything already imported.

Protocol on the socket (the worker is the only peer):

* worker → zygote: a 4-byte big-endian length and a JSON request ``{"rid", "argv", "cwd",
  "env", "script", "sys_path", "own_folder"}``, sent in one ``sendmsg`` that carries two file descriptors
  (``SCM_RIGHTS``): the write ends of the job's stdout and stderr pipes.
* zygote → worker: JSON lines ``{"event": "ready", "pid"}`` once, then per request
  ``{"event": "started", "rid", "pid"}`` or ``{"event": "failed", "rid", "error"}``, and
  ``{"event": "exited", "pid", "code"}`` when a job's child is reaped (``code`` as in
  :func:`os.waitstatus_to_exitcode`: negative for a signal). Spares (``--spares=N``) are the
  zygote's own business: the worker hears of a spare only once it runs a job.

What a child does between fork and exit is :mod:`titan.worker.child`.

The zygote must stay single-threaded (fork copies only the calling thread, so any other
thread's locks would be held forever in the child): children are reaped on ``SIGCHLD``
delivered through ``signal.set_wakeup_fd`` into the same ``select`` loop that reads requests.
When the worker goes away (EOF) the zygote kills what it started and exits.

**Orphans.** The zygote is its children's *subreaper* (``PR_SET_CHILD_SUBREAPER``), and each
job's process is its own descendants' (:func:`titan.worker.child.prepare`): a process that
leaves the job's process group with ``setsid()`` and a double fork is reparented to the job
while the job runs, and to the zygote, rather than to init, once the job's process has ended.
So any child of the zygote that is neither a job nor a spare is something a finished job left
behind, whatever other jobs run meanwhile: looked for once jobs end (at most every
:data:`ORPHAN_SCAN_INTERVAL`), it gets the
worker's default kill grace (:data:`ORPHAN_GRACE`, as what a job leaves in its own group gets
from the attempt, which sends that SIGTERM when the job ends:
:meth:`titan.worker.attempt.Attempt._end_leftovers`) and is then killed with its process group.
It outlived its job unseen before, as the worker's user, able to read later jobs'
``/proc/<pid>/environ`` (and, until each job was a subreaper, for as long as any other job
kept the zygote busy).
"""

from __future__ import annotations

import array
import contextlib
import json
import os
import select
import signal
import socket
import struct
import sys
import time
from typing import Any

from titan.worker import child, script_cache, shared_imports
from titan.worker.zygote_preload import preload

#: Seconds a process a job left behind may run on once found (the worker's default kill
#: grace, which what a job leaves in its own group gets too).
ORPHAN_GRACE = 3.0
#: Seconds between two looks for such processes while jobs end. Looked for after every reap,
#: the look (open, read and parse a /proc file) cost the zygote ~18 copy-on-write faults per
#: job at 600 jobs/s, an eighth of its own; a leftover found this much later still gets its
#: full grace.
ORPHAN_SCAN_INTERVAL = 0.25
#: Seconds a zygote whose worker has gone waits, at most, for what it kills to be gone.
LEAVE_WAIT = 2.0

_HEADER = struct.Struct("!I")
# ---------------------------------------------------------------------------- the zygote


def read_request(sock: socket.socket) -> tuple[bytes, dict[str, Any], list[int]] | None:
    """The next request on ``sock`` — its bytes as sent, decoded, and the descriptors that came
    with it — or None at end-of-file."""
    head, fds, _flags, _addr = socket.recv_fds(sock, _HEADER.size, 2)
    if not head:
        for fd in fds:
            os.close(fd)
        return None
    if len(head) < _HEADER.size:
        head += _recv_exact(sock, _HEADER.size - len(head))
    (length,) = _HEADER.unpack(head)
    body = _recv_exact(sock, length)
    return head + body, json.loads(body), list(fds)


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    # Exact-length reads: never consume the next request's first byte, which carries that
    # request's file descriptors.
    chunks = []
    while n:
        chunk = sock.recv(n)
        if not chunk:
            raise EOFError
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


class Zygote:
    """The zygote's select loop: read requests, fork (or wake a spare), reap, report.

    With ``spares``, that many children are forked ahead of time whenever no job runs: each
    has paid its fork, its copy-on-write faults and the interpreter's after-fork work (~1 ms
    of CPU here) and waits on a socket of its own for its job, so a job arriving at an idle
    worker — an agent's next step — starts without that cost on its path. Under steady load
    spares are not replenished (they would take CPU from running jobs) and jobs are forked
    as they come.
    """

    def __init__(self, sock: socket.socket, isolation: Any = None, spares: int = 0) -> None:
        self.sock = sock
        self.isolation = isolation
        self.target_spares = spares
        self.jobs: set[int] = set()  # pids of children running a job
        self.spares: dict[int, socket.socket] = {}  # waiting spares, oldest first
        self.orphans: dict[int, float] = {}  # processes jobs left behind: pid → when to kill
        self.scan_due: float | None = None  # when to look for them (a job ended since)
        self.watched: set[str] = set()  # shared folders whose finder is made (shared_imports)
        self.to_compile: list[dict[str, Any]] = []  # requests whose script to compile, when idle
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)

    def send(self, event: dict[str, Any]) -> None:
        self.sock.sendall(json.dumps(event).encode() + b"\n")

    def _zygote_fds(self) -> list[int]:
        return [self.sock.fileno(), self.wake_r, self.wake_w,
                *(s.fileno() for s in self.spares.values())]

    def _start(self, raw: bytes, request: dict[str, Any], fds: list[int]) -> None:
        rid = request.get("rid")
        if len(fds) != 2:
            for fd in fds:
                os.close(fd)
            self.send({"event": "failed", "rid": rid, "error": "expected 2 file descriptors"})
            return
        # Its script as compiled here already, found before the fork so that the child
        # finds the answer made; and, if not held, whether to compile it (below).
        held, wanted = script_cache.take(request)
        pid = self._hand_to_spare(raw, fds)
        if pid is None:
            shared_imports.ahead(request, self.watched)
            try:
                pid = os.fork()
            except OSError as exc:
                for fd in fds:
                    os.close(fd)
                self.send({"event": "failed", "rid": rid, "error": f"fork failed: {exc}"})
                return
            if pid == 0:
                child.leave_zygote(self._zygote_fds())
                child.run_job(request, fds[0], fds[1], self.isolation, held=held)
        for fd in fds:
            os.close(fd)
        self.jobs.add(pid)
        if type(rid) is int:  # the worker's request ids are; written as json would
            self.sock.sendall(b'{"event": "started", "rid": %d, "pid": %d}\n' % (rid, pid))
        else:
            self.send({"event": "started", "rid": rid, "pid": pid})
        # Its script compiled here for the children after it, once the job is on its way and
        # no request waits (serve): a large script's compile must not hold up other forks.
        if wanted and len(self.to_compile) < 64:
            self.to_compile.append(request)

    def _hand_to_spare(self, raw: bytes, fds: list[int]) -> int | None:
        """Pass the request, descriptors included, to the oldest waiting spare; its pid, or
        None when no spare is left (one that died meanwhile is skipped)."""
        while self.spares:
            pid = next(iter(self.spares))
            sock = self.spares.pop(pid)
            try:
                sent = sock.sendmsg([raw], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                             array.array("i", fds))])
                if sent < len(raw):
                    sock.sendall(raw[sent:])
            except OSError:
                continue  # it died (and is reaped as a spare, never reported)
            finally:
                sock.close()
            return pid
        return None

    def _fork_spare(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            pid = os.fork()
        except OSError:
            ours.close()
            theirs.close()
            self.target_spares = 0  # out of processes: no spares, jobs still fork
            return
        if pid == 0:
            try:
                child.leave_zygote([*self._zygote_fds(), ours.fileno()])
                child.prepare()
                child.waiting(True)
                got = read_request(theirs)
                child.waiting(False)
            except BaseException:  # noqa: BLE001 - a spare that cannot wait just goes
                os._exit(1)
            if got is None or len(got[2]) != 2:
                os._exit(0)  # the zygote went away before a job came
            _raw, request, (out_fd, err_fd) = got
            child.run_job(request, out_fd, err_fd, self.isolation, prepared=True)
        theirs.close()
        self.spares[pid] = ours

    def _reap(self) -> None:
        with contextlib.suppress(BlockingIOError):
            while os.read(self.wake_r, 4096):
                pass
        # Every child reaped in this pass is told in one write (under load several exit
        # between two passes); the lines are the ones json would write for these integers.
        lines = []
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            spare = self.spares.pop(pid, None)
            if spare is not None:  # a spare that died waiting: nobody knew of it
                spare.close()
                continue
            if pid not in self.jobs:
                self.orphans.pop(pid, None)
                continue  # an orphan a job left behind (below): nobody's to report
            self.jobs.discard(pid)
            lines.append(b'{"event": "exited", "pid": %d, "code": %d}\n'
                         % (pid, os.waitstatus_to_exitcode(status)))
        if lines:
            self.sock.sendall(b"".join(lines))
            if self.scan_due is None:
                self.scan_due = time.monotonic() + ORPHAN_SCAN_INTERVAL

    def _kill_orphans(self) -> None:
        """Any child that is neither a spare nor a job is a process a finished job left
        behind (a running job's are reparented to that job, their subreaper): killed after
        ORPHAN_GRACE."""
        due = time.monotonic() + ORPHAN_GRACE
        for pid in self._children():  # none without CONFIG_PROC_CHILDREN: not looked for
            if pid not in self.spares and pid not in self.jobs:
                self.orphans.setdefault(pid, due)

    def _orphans_due(self) -> float | None:
        """Seconds until the next look for orphans or the next orphan's kill is due (0:
        now), None when neither is; looks and kills when they are due."""
        if self.scan_due is None and not self.orphans:
            return None
        now = time.monotonic()
        if self.scan_due is not None and self.scan_due <= now:
            self.scan_due = None
            self._kill_orphans()
        for pid, due in list(self.orphans.items()):
            if due <= now:
                del self.orphans[pid]
                for kill in (os.killpg, os.kill):  # its group too: what it started in turn
                    with contextlib.suppress(OSError):
                        kill(pid, signal.SIGKILL)
        dues = [*self.orphans.values(), *(() if self.scan_due is None else (self.scan_due,))]
        return max(0.0, min(dues) - now) if dues else None

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
                # Idle (no job runs) and short of spares: fork one per round, after looking
                # for requests without waiting, so a request never queues behind them.
                refill = not self.jobs and len(self.spares) < self.target_spares
                orphans = self._orphans_due()
                readable, _, _ = select.select([self.sock.fileno(), self.wake_r], [], [],
                                               0 if refill or self.to_compile else orphans)
                if self.wake_r in readable:
                    self._reap()
                if self.sock.fileno() in readable:
                    try:
                        got = read_request(self.sock)
                    except (EOFError, ConnectionError):
                        got = None
                    if got is None:
                        return
                    self._start(*got)
                elif self.to_compile and not readable:  # before spares: they inherit it
                    script_cache.remember(self.to_compile.pop(0))
                elif refill and not readable:
                    self._fork_spare()
        finally:
            self._leave()

    def _leave(self) -> None:
        """The worker is gone: nobody will report these jobs, so none may run on, nor what
        they started outside their groups, which reaches the zygote only once its job has
        died (it left at once, and that ran on under init after `titan up` had stopped: a
        lifecycle QA pass). Every child dies with its group until none is left to reap (at
        most :data:`LEAVE_WAIT` s); spares, told by their socket, are killed too."""
        for pid in self.jobs:
            with contextlib.suppress(OSError):
                os.killpg(pid, signal.SIGKILL)
        deadline = time.monotonic() + LEAVE_WAIT
        while True:
            for pid in [*self._children(), *self.spares, *self.orphans]:
                for kill in (os.killpg, os.kill):  # its group too: what it started in turn
                    with contextlib.suppress(OSError):
                        kill(pid, signal.SIGKILL)
            try:
                while os.waitpid(-1, os.WNOHANG)[0]:
                    pass
            except ChildProcessError:
                return
            if time.monotonic() >= deadline:
                return
            time.sleep(0.01)

    @staticmethod
    def _children() -> list[int]:
        """This process's children (none where the kernel does not list them)."""
        try:
            with open(f"/proc/self/task/{os.getpid()}/children", "rb") as fh:
                return [int(pid) for pid in fh.read().split()]
        except (OSError, ValueError):
            return []


def _become_subreaper() -> None:
    """Orphaned descendants of this process's children are reparented here, not to init
    (prctl(PR_SET_CHILD_SUBREAPER); not inherited by the children themselves)."""
    try:
        child.become_subreaper()
    except (OSError, AttributeError) as exc:
        print(f"titan zygote: orphans of jobs are not caught ({exc})", file=sys.stderr)


def main(argv: list[str]) -> int:
    args = argv[1:]
    lean = "--lean" in args
    spares = 0
    for arg in [a for a in args if a.startswith("--spares=")]:
        spares = max(0, min(64, int(arg.split("=", 1)[1])))
    args = [a for a in args if a != "--lean" and not a.startswith("--spares=")]
    if len(args) not in (1, 2):
        print("usage: python -m titan.worker.zygote <socket fd> [--lean] [--spares=N] "
              "[<isolation JSON>]", file=sys.stderr)
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
    _become_subreaper()
    preload(lean)
    Zygote(sock, isolation, spares).serve()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
