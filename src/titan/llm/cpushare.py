"""Sharing the machine's cores between processes that run the local model at once.

llama.cpp spins one thread per core it is given. Two processes that each take every core
slow each other down badly — measured on a 2-core VM with Qwen2.5-0.5B: one process with 2
threads decodes 19.5 tok/s, two processes with 1 thread each 12.6 tok/s apiece, two
processes with 2 threads each only 5.0 tok/s apiece. Parallel researcher jobs on one
worker are exactly that case, while the planner and synthesizer run alone.

So every process generating with the local model holds an exclusive ``flock`` on a file of
its own in a shared directory while it generates, and counts the held locks to learn how
many generators are active; it uses ``cores // active`` threads and re-counts every few
tokens, so a process alone uses every core and two that overlap settle on half each within
a fraction of a second. A lock dies with its process, so a crash never leaks a share.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
import time
from pathlib import Path

#: Seconds between two counts of the active generators.
RECOUNT = 0.25


def cores() -> int:
    """The cores this process may run on (``TITAN_LLM_THREADS`` caps it)."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:
        n = os.cpu_count() or 1
    cap = os.environ.get("TITAN_LLM_THREADS")
    if cap and cap.strip().isdigit() and int(cap) > 0:
        n = int(cap)
    return max(1, n)


class CpuShare:
    """Membership in the set of active local-model generators on this machine."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._fh: int | None = None
        self._path: Path | None = None
        self._counted_at = 0.0
        self._active = 1

    def __enter__(self) -> CpuShare:
        self.directory.mkdir(parents=True, exist_ok=True)
        self._path = self.directory / f"gen-{os.getpid()}-{threading.get_ident()}.lock"
        self._fh = os.open(self._path, os.O_CREAT | os.O_RDWR, 0o644)
        fcntl.flock(self._fh, fcntl.LOCK_EX)
        self._counted_at = 0.0
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fh is not None:
            with contextlib.suppress(OSError):
                assert self._path is not None
                self._path.unlink()
            os.close(self._fh)
            self._fh = None

    def active(self) -> int:
        """How many generators hold their lock now (this one included); stale files go."""
        count = 0
        for path in self.directory.glob("gen-*.lock"):
            if path == self._path:
                count += 1
                continue
            try:
                fd = os.open(path, os.O_RDWR)
            except OSError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                count += 1  # held: an active generator
            else:
                # Nobody holds it: left by a process that died. Remove it under our lock.
                with contextlib.suppress(OSError):
                    path.unlink()
            finally:
                os.close(fd)
        return max(1, count)

    def threads(self) -> int:
        """Threads this generator should use now (re-counted at most every ``RECOUNT`` s)."""
        now = time.monotonic()
        if now - self._counted_at >= RECOUNT:
            self._counted_at = now
            self._active = self.active()
        return max(1, cores() // self._active)
