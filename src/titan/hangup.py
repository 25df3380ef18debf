"""A hung-up terminal: stdout and stderr of a process whose terminal went away, pointed at
/dev/null so that saying what it does on the way out cannot stop it.

`titan up`, `titan master` and `titan worker` stop on SIGHUP (the terminal closed, an SSH
session dropped) as on SIGTERM: they drain, and forget themselves in the user's config; one
started to ignore it (`nohup`) goes on ignoring it. The kernel makes every write to a hung-up
terminal fail (EIO) before it sends SIGHUP, so the first line of that stop ("Stopping:
draining ...") raised in the thread that was to stop the worker, and the master waited for it
for ever. A leaf: the master and the worker call it.
"""

from __future__ import annotations

import contextlib
import os
import signal


def hangup_stops() -> bool:
    """Whether SIGHUP is to stop this process: not when it was started to ignore it (`nohup
    titan up &`), which a handler of ours would undo."""
    return signal.getsignal(signal.SIGHUP) is not signal.SIG_IGN


def detach_hung_up_outputs() -> None:
    """Point stdout and stderr at /dev/null where their terminal is hung up (an empty write
    fails there, and nowhere else: a file or a pipe takes it), so later prints and log lines
    go nowhere instead of raising. Called from a SIGHUP handler."""
    for fd in (1, 2):
        try:
            os.write(fd, b"")
        except OSError:
            with contextlib.suppress(OSError):
                null = os.open(os.devnull, os.O_WRONLY)
                os.dup2(null, fd)
                os.close(null)
