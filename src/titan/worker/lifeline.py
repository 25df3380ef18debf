"""The local worker's lifeline to the `titan up` that started it.

`titan up` runs its worker in a session of its own (so a terminal's Ctrl-C reaches only
`titan up`, which then drains the worker), hence no signal reaches the worker when `titan up`
is killed outright. Instead `titan up` holds the write end of a pipe whose read end the worker
inherits: the kernel closes the write end when `titan up` dies, however it dies, and the
worker reads end-of-file and stops. Without this, every `kill -9` of `titan up` would leave a
worker (and its jobs) retrying a master that is gone, for ever.

The worker's exit status tells `titan up` whether starting it again can help.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable

ENV = "TITAN_LIFELINE_FD"
#: The exit status of a worker whose credential the master refused (sysexits' EX_NOPERM): a
#: revoked token. Starting it again cannot help until the token is replaced; `titan up` (or a
#: service manager: RestartPreventExitStatus=77) tells it from a crash by this.
EXIT_REFUSED = 77

log = logging.getLogger("titan.worker")


def watch(on_lost: Callable[[], None]) -> bool:
    """If this process was given a lifeline, call ``on_lost`` once its other end is gone.

    The variable is removed from the environment, so jobs do not inherit it."""
    raw = os.environ.pop(ENV, None)
    if not raw:
        return False
    try:
        fd = int(raw)
        os.set_inheritable(fd, False)
    except (ValueError, OSError) as exc:
        log.warning("ignoring %s=%r: %s", ENV, raw, exc)
        return False

    def wait() -> None:
        while True:
            try:
                if not os.read(fd, 64):
                    break  # end-of-file: the parent is gone
            except InterruptedError:
                continue
            except OSError:
                break
        log.warning("the `titan up` that started this worker is gone; stopping")
        on_lost()

    threading.Thread(target=wait, name="titan-lifeline", daemon=True).start()
    return True


def open_for_child(env: dict[str, str]) -> tuple[int, int]:
    """A lifeline for a child about to be started: ``(read_fd, write_fd)``. Put the read end
    in the child's ``pass_fds`` and ``env`` (done here), close it after starting the child,
    and keep the write end open for as long as this process lives."""
    read_fd, write_fd = os.pipe()  # both non-inheritable; pass_fds hands the read end over
    env[ENV] = str(read_fd)
    return read_fd, write_fd
