"""Replays across processes: the calls of forked processes matched by what they were asked,
and a strict stop in one of them ending the replay.

A process forked inside a run records as an actor of its own, ``<actor>/fork-<n>``
(:mod:`.context`), and so does one started there as a fresh interpreter: ``<actor>/proc-<n>``
(a subprocess), ``<actor>/spawnpoolworker-<n>`` (its multiprocessing name: :mod:`.processes`).
The processes of a pool share out tasks as each one frees up, and helpers started side by
side may take each other's numbers, so which process makes which call differs from one
execution to the next: a call made in such a process that its own key does not answer is
matched to a call with the same inputs recorded by any process started from the same actor
(:func:`pooled`), and recorded under that call's actor and ordinal. A call with inputs nothing recorded is likewise an input mismatch against one of
the pool's calls when its own process recorded none (see ``Session._claim``), not an extra call.

A strict replay stops by raising :class:`~titan.errors.ReplayDiverged`, a BaseException: in a
pool worker it kills the worker, and ``Pool.map`` waited for ever on a task that would never
report. So the first process that forks or starts a multiprocessing child in a replay (the one
the replay runs in) listens for ``SIGUSR2`` (if nothing else does): a process below it that
stops delivers its recording of the stop to the master, leaves the message where its root can
read it (a forked one in memory they share, a ``spawn``/``forkserver`` child in a file the root
names in ``TITAN_REPLAY_ROOT``), and signals it; the root then raises the same ReplayDiverged in
its main thread, wherever it waits, and the replay ends with it as a stop made there would
have. (A subprocess helper that stops exits with an error its parent sees: it signals nobody.)
"""

from __future__ import annotations

import atexit
import contextlib
import json
import mmap
import os
import re
import signal
import sys
import tempfile
import threading
from typing import Any

from titan import errors
from titan.trace.recorder import RECORDER

#: A path segment naming a process started by its actor: forked (fork-2), a subprocess (proc-1),
#: or a multiprocessing child by the name multiprocessing gives it (spawnpoolworker-3,
#: process-1, spawnprocess-2, process-1:2 below another).
_FORK = re.compile(r"/(?:fork-\d+|proc-\d+|[a-z]*(?:process|poolworker)-\d+(?::\d+)*)(?=/|$)")
_SIGNAL = signal.SIGUSR2
_BOX = 8192

#: ``<root pid>:<file>``: where a multiprocessing child started afresh leaves its stop.
ROOT_ENV = "TITAN_REPLAY_ROOT"

_root = 0  # the process the replay runs in (its first to fork); 0: none yet
_box: mmap.mmap | None = None  # shared with every process forked below the root
_armed = False  # the root listens for _SIGNAL
_stop_file = ""  # the root's file for the stops of its children started afresh
_stopping = False  # the root raised a child's stop already: later signals are the same stop


def pooled(actor: str) -> str | None:
    """``actor`` with its process segments made alike (``agent/fork-*``), or None when it was
    not made in a process its actor forked or started."""
    out = _FORK.sub("/fork-*", actor)
    return out if out != actor else None


def above(actor: str) -> str:
    """The part of ``actor`` above its first process segment (the whole of it when none)."""
    found = _FORK.search(actor)
    return actor[:found.start()] if found else actor


def arm() -> None:
    """Make this process the replay's root, if it is replaying and none is yet: before it forks
    (an at-fork hook) or starts a multiprocessing child afresh (:mod:`.processes`)."""
    global _root, _box, _armed, _stop_file
    if _root or not os.environ.get("TITAN_REPLAY"):
        return
    _root = os.getpid()
    try:
        if threading.current_thread() is not threading.main_thread() \
                or signal.getsignal(_SIGNAL) not in (signal.SIG_DFL, None):
            return  # handlers are the main thread's to set; one of the agent's stays
        _box = mmap.mmap(-1, _BOX)  # anonymous and shared: the children write, the root reads
        fd, _stop_file = tempfile.mkstemp(prefix="titan-replay-stop-", suffix=".json")
        os.close(fd)
        atexit.register(_forget_stop_file, _root)
        os.environ[ROOT_ENV] = f"{_root}:{_stop_file}"
        signal.signal(_SIGNAL, _stop_here)
        _armed = True
    except (OSError, ValueError):
        pass


os.register_at_fork(before=arm)


def _forget_stop_file(root: int) -> None:
    if os.getpid() == root and _stop_file:
        with contextlib.suppress(OSError):
            os.unlink(_stop_file)


def _stop_here(signum: int, frame: Any) -> None:
    global _stopping
    if _stopping:  # another child's stop, or the same one again: the root is stopping
        return
    _stopping = True
    said: dict[str, Any] = {}
    raw = bytes(_box[:_BOX]).split(b"\0", 1)[0] if _box is not None else b""
    if not raw and _stop_file:
        with contextlib.suppress(OSError):
            with open(_stop_file, "rb") as f:
                raw = f.read(_BOX)
    try:
        said = json.loads(raw.decode()) if raw else {}
    except ValueError:
        said = {}
    said = said if isinstance(said, dict) else {}
    raise errors.ReplayDiverged(
        f"{said.get('message') or 'the replay stopped'} (in process {said.get('pid', '?')}, "
        f"{said.get('by') or 'forked'} by this one)", kind=said.get("kind") or "extra")


def stopped(exc: BaseException | None) -> None:
    """A strict stop was just recorded here: in a process forked below the replay's root, or
    a multiprocessing child it started afresh, deliver it and stop the root (which waits on
    this process, or would run on without it)."""
    if not isinstance(exc, errors.ReplayDiverged):
        return
    said: dict[str, Any] = {"message": str(exc)[:2000], "kind": exc.kind, "pid": os.getpid()}
    if _armed and _box is not None and os.getpid() != _root:
        data = json.dumps(said).encode()[:_BOX - 1]
        _box[:len(data) + 1] = data + b"\0"
        root = _root
    else:
        process = sys.modules.get("multiprocessing.process")
        pid, _, path = os.environ.get(ROOT_ENV, "").partition(":")
        if process is None or process.parent_process() is None or not pid.isdigit() \
                or int(pid) == os.getpid() or not path:
            return  # not a pool's or a Process's child: its parent sees it end, as it did
        try:
            with open(path, "wb") as f:
                f.write(json.dumps({**said, "by": "started"}).encode()[:_BOX - 1])
        except OSError:
            return
        root = int(pid)
    RECORDER.flush(10.0)  # the root ends the run as soon as it stops: the stop must be in
    try:
        os.kill(root, _SIGNAL)
    except OSError:
        pass  # the root is gone: nothing waits on this process
