"""A small disk that fills up for real: a tmpfs mounted for one test, filled to the last byte
or remounted read-only. A mocked ``OSError(ENOSPC)`` would not show where a real one surfaces
(a buffered write, its flush, the close, a new directory), nor what a full disk leaves behind.

Mounting needs root (or CAP_SYS_ADMIN): elsewhere the test is skipped, saying why.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


@contextmanager
def mounted(where: Path, size: str = "2m") -> Iterator[Path]:
    """A tmpfs of ``size`` mounted at ``where`` (made if need be) for the block; unmounted
    after it, even when a process still has a file open there (lazily, then)."""
    if os.geteuid() != 0:
        pytest.skip("a full or read-only disk is a tmpfs mounted for the test: needs root")
    where.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {(done.stderr or done.stdout).strip()}")
    try:
        yield where
    finally:
        remount(where, read_only=False)
        subprocess.run(["umount", "-l", str(where)], check=True)


def remount(where: Path, *, read_only: bool) -> None:
    subprocess.run(["mount", "-o", f"remount,{'ro' if read_only else 'rw'}", str(where)],
                   check=True, capture_output=True)


def fill(where: Path, *, leave: int = 0) -> Path:
    """Fill the disk under ``where`` to the last byte, then free ``leave`` bytes of it again;
    the file that fills it (remove it to free the disk)."""
    filler = where / "filler"
    with filler.open("wb", buffering=0) as f:  # unbuffered: nothing left for close() to retry
        try:
            while f.write(b"\0" * 65536):
                pass
        except OSError:
            pass
        f.truncate(max(0, f.tell() - leave))
    return filler
