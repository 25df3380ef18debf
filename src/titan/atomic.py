"""Writing a file all at once or not at all.

Readers of Titan's files (a job starting while its script is rewritten, a client reading the
user config, a download's destination) must never see half a file. Everything is written to a
temporary file beside the target and renamed over it: a rename within one directory is atomic,
and a failure leaves the old file as it was.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO


@contextlib.contextmanager
def atomic_file(path: Path, mode: int = 0o644, *, durable: bool = False) -> Iterator[BinaryIO]:
    """Yield a binary file that replaces ``path`` when the block ends without error.

    The file has ``mode`` from its creation (a secret is never readable by others, even for
    a moment). ``durable`` also fsyncs it before the rename."""
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
