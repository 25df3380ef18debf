"""The worker's main thread's wake-up call: a self-pipe that signal handlers and threads poke.

The main thread of :class:`~titan.worker.daemon.Worker` waits on one; signal handlers,
finished attempts, landed reports, the end of a burst and fatal errors poke it.
"""

from __future__ import annotations

import contextlib
import os
import select


class Wakeup:
    """A self-pipe: async-signal-safe to poke, a blocking read to wait on."""

    def __init__(self) -> None:
        self._r, self._w = os.pipe()
        os.set_blocking(self._w, False)
        self._closed = False

    def notify(self) -> None:
        if self._closed:  # a late poke (the lifeline thread) must not hit a reused fd
            return
        with contextlib.suppress(BlockingIOError):  # full pipe: a wake-up is pending anyway
            os.write(self._w, b"!")

    def wait(self, timeout: float | None = None) -> None:
        readable, _, _ = select.select([self._r], [], [], timeout)
        if readable:
            os.read(self._r, 512)

    def close(self) -> None:
        self._closed = True
        os.close(self._r)
        os.close(self._w)
