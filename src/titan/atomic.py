"""Writing a file all at once or not at all.

Readers of Titan's files (a job starting while its script is rewritten, a client reading the
user config, a download's destination) must never see half a file. Everything is written to a
temporary file beside the target and renamed over it: a rename within one directory is atomic,
and a failure leaves the old file as it was.

A target that is not a plain file is written into instead: a device (``-o /dev/stdout``,
``/dev/null``), a named pipe, a process substitution. Renamed over, it was replaced by a plain
file — as root, ``titan runs export -o /dev/stdout`` turned the system's ``/dev/stdout`` into
one (a QA pass). A symlink to a plain file is followed: its target is replaced, the link kept.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO


@contextlib.contextmanager
def atomic_file(path: Path, mode: int = 0o644, *, durable: bool = False) -> Iterator[BinaryIO]:
    """Yield a binary file that replaces ``path`` when the block ends without error.

    The file has ``mode`` from its creation (a secret is never readable by others, even for
    a moment). ``durable`` also fsyncs it before the rename."""
    try:
        found = os.stat(path)  # through a symlink
    except (FileNotFoundError, NotADirectoryError):
        found = None
    if found is not None and not stat.S_ISREG(found.st_mode) and not stat.S_ISDIR(found.st_mode):
        with open(path, "wb") as stream:  # a device or a pipe: written into, never replaced
            yield stream
        return
    if found is not None and path.is_symlink():
        path = path.resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            if durable:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
