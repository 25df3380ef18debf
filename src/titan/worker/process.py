"""A job's process as the worker sees it: a pid, a process group to kill, an exit to await.

Two kinds exist behind one interface: a child forked by the zygote (its exit code arrives
over the zygote's socket, see :mod:`titan.worker.forkserver`) and a subprocess of the worker
itself (its exit is noticed through a pidfd in the I/O loop, so no thread waits per job).
Both run in a session of their own, so the pid is also the process group id.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import threading
from collections.abc import Callable

from titan.worker.loop import IOLoop

log = logging.getLogger("titan.worker")

#: Called on the I/O thread once the process is gone: (exit code or None, error or None).
ExitCallback = Callable[[int | None, str | None], None]


class Process:
    """Base class: group signalling and a one-shot exit callback, both on the I/O thread."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None
        self.error: str | None = None
        self.exited = False
        #: Set before the exit when the job did not end but was lost with what ran it (a Ray
        #: node died under it): the attempt hands the job back, spending no retry.
        self.lost = False
        self._on_exit: ExitCallback | None = None

    def kill_group(self, sig: int) -> None:
        """Send ``sig`` to the job's whole process group (grandchildren included)."""
        try:
            os.killpg(self.pid, sig)
        except ProcessLookupError:
            if not self.exited:
                # The child was forked but has not called setsid() yet, so its group does
                # not exist; it has no children yet either, so the pid alone is the job.
                try:
                    os.kill(self.pid, sig)
                except ProcessLookupError:
                    pass
        except PermissionError as exc:
            log.warning("cannot signal job process group %d: %s", self.pid, exc)

    def kill_leftovers(self, sig: int) -> bool:
        """Send ``sig`` (0: none, only look) to what is left of the job's group once its main
        process has exited and been reaped; whether anything was there to signal.

        A group outlives its leader while a member lives, and the kernel gives no process a
        pid that is still some group's id: a live process at the pid means the group is gone
        and the pid someone else's now, whose group is left alone."""
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            pass
        except PermissionError:
            return False  # another user's process holds the pid now
        else:
            if self.exited:
                return False
        try:
            os.killpg(self.pid, sig)
        except ProcessLookupError:
            return False  # nothing left: the job waited for what it started
        except PermissionError as exc:
            log.warning("cannot signal job process group %d: %s", self.pid, exc)
            return False
        return True

    def watch(self, loop: IOLoop, on_exit: ExitCallback) -> None:
        """Call ``on_exit`` once the process has exited (loop thread; maybe immediately)."""
        self._on_exit = on_exit
        if self.exited:
            loop.call(self._fire)

    def set_exited(self, code: int | None, error: str | None = None) -> None:
        """Record the exit (loop thread) and tell the watcher, if any."""
        if self.exited:
            return
        self.exited, self.returncode, self.error = True, code, error
        if self._on_exit is not None:
            self._fire()

    def _fire(self) -> None:
        callback, self._on_exit = self._on_exit, None
        if callback is not None:
            callback(self.returncode, self.error)


class PopenProcess(Process):
    """A job run as a subprocess of the worker (fresh interpreter, shell script, binary)."""

    def __init__(self, popen: subprocess.Popen[bytes]) -> None:
        super().__init__(popen.pid)
        self.popen = popen

    def watch(self, loop: IOLoop, on_exit: ExitCallback) -> None:
        self._on_exit = on_exit
        try:
            pidfd = os.pidfd_open(self.pid)
        except (AttributeError, OSError):
            # No pidfds (macOS, old kernels): one waiting thread for this job instead.
            threading.Thread(target=self._wait_thread, args=(loop,), daemon=True,
                             name=f"titan-wait-{self.pid}").start()
            return

        def readable() -> None:
            loop.remove_reader(pidfd)
            os.close(pidfd)
            self.set_exited(self.popen.wait())

        loop.add_reader(pidfd, readable)

    def _wait_thread(self, loop: IOLoop) -> None:
        code = self.popen.wait()
        loop.call(self.set_exited, code)


def signal_name(code: int) -> str:
    try:
        return signal.Signals(-code).name
    except ValueError:
        return f"signal {-code}"
