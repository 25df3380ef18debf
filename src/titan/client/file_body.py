"""A file as a request body: exactly the bytes it held when its length was declared, or none.

An upload declares the file's length (``Content-Length``: the master refuses an oversized
body from its headers) and then reads the file as it sends it. A file still being written
(a log, a checkpoint) broke that: grown, it sent its extra bytes after the declared end, which
the master stored and published whole and then read as a second request (answered with a
400 the SDK raised, though the artifact was published); shrunk, it left the master waiting for
bytes that never came (a 60 s read timeout). Now exactly the declared length is sent, and the
file is checked while it is read: the same file (device and inode), the same size and
modification time at the end as at the start, and nothing after the declared end. A change
raises :class:`~titan.errors.FileChanged` *before the last piece is sent*, so the master
sees a body cut short and stores nothing; what it does store is the file as it was from the
first byte read to the last.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from titan.errors import FileChanged


def file_body(path: Path, chunk: int) -> tuple[int, Iterator[bytes]]:
    """``(length, pieces)``: the file's length now, and its bytes ``chunk`` at a time,
    checked as the module docstring says. The pieces are read as they are sent."""
    before = os.stat(path)
    return before.st_size, _pieces(path, before, chunk)


def _same(before: os.stat_result, now: os.stat_result) -> bool:
    return (before.st_dev, before.st_ino, before.st_size, before.st_mtime_ns) \
        == (now.st_dev, now.st_ino, now.st_size, now.st_mtime_ns)


def _changed(path: Path, before: os.stat_result, now: os.stat_result | None) -> FileChanged:
    size = "" if now is None or now.st_size == before.st_size else \
        f" ({before.st_size:,} bytes when the upload began, {now.st_size:,} now)"
    return FileChanged(f"{path} changed while it was being uploaded{size}; nothing was "
                       "stored: upload it again once it is complete", path=str(path))


def _pieces(path: Path, before: os.stat_result, chunk: int) -> Iterator[bytes]:
    with open(path, "rb") as fh:
        if not _same(before, os.fstat(fh.fileno())):  # replaced or written to since stat
            raise _changed(path, before, os.fstat(fh.fileno()))
        left = before.st_size
        while left > 0:
            piece = fh.read(min(chunk, left))
            if not piece:  # shrunk: the declared length can no longer be sent
                raise _changed(path, before, os.fstat(fh.fileno()))
            left -= len(piece)
            # The last piece goes only once the file is known to be what it was: a body the
            # master receives whole is stored and published, so a change must cut it short.
            if left == 0 and (fh.read(1) or not _same(before, os.fstat(fh.fileno()))):
                raise _changed(path, before, os.fstat(fh.fileno()))
            yield piece
