"""The worker's I/O thread: one event loop for every job's pipes, exits and deadlines.

One selector thread reads all jobs' stdout/stderr pipes, the zygote's socket and the pidfds
of subprocess jobs, and runs the timers for timeouts and kill escalation. Two reader threads
per job would cost a thread start per job and a context switch per line; one loop keeps the
per-job cost at a few syscalls, which is what lets a 2-core machine run hundreds of trivial
jobs a second.

Everything that touches a running attempt happens on this thread, so attempts need no locks;
other threads hand work over with :meth:`IOLoop.call`.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Coroutine
from typing import Any

log = logging.getLogger("titan.worker")


class IOLoop:
    """An asyncio selector loop running plain callbacks in a daemon thread."""

    def __init__(self) -> None:
        self._loop = asyncio.SelectorEventLoop()
        self._loop.set_exception_handler(self._on_error)
        self._thread = threading.Thread(target=self._run, name="titan-io", daemon=True)
        self._started = threading.Event()

    def _on_error(self, _loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        log.error("worker I/O loop: %s", context.get("message"), exc_info=exc)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.call_soon(self._started.set)
        self._loop.run_forever()
        self._loop.close()

    def start(self) -> None:
        self._thread.start()
        self._started.wait()

    def stop(self, timeout: float = 5.0) -> None:
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout)

    def in_loop(self) -> bool:
        return threading.current_thread() is self._thread

    def call(self, fn: Callable[..., object], *args: Any) -> None:
        """Run ``fn(*args)`` on the loop thread soon (safe from any thread)."""
        if self.in_loop():
            self._loop.call_soon(fn, *args)
        else:
            self._loop.call_soon_threadsafe(fn, *args)

    def call_later(self, delay: float, fn: Callable[..., object], *args: Any) -> asyncio.Handle:
        """Run ``fn(*args)`` after ``delay`` seconds (loop thread only)."""
        return self._loop.call_later(max(0.0, delay), fn, *args)

    def task(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Run ``coro`` on the loop (loop thread only): a service's readiness and health
        checks, which wait on sockets without holding a thread."""
        return self._loop.create_task(coro)

    def add_reader(self, fd: int, fn: Callable[..., object], *args: Any) -> None:
        """Call ``fn(*args)`` whenever ``fd`` is readable (loop thread only)."""
        self._loop.add_reader(fd, fn, *args)

    def remove_reader(self, fd: int) -> None:
        self._loop.remove_reader(fd)
