"""Content-addressed files under ``<data-dir>/blobs``: scripts, uploads, artifacts.

A blob is written to a temporary file while its hash is computed, flushed to disk, then
renamed to ``blobs/<aa>/<sha256>``; a rename is atomic, so a reader never sees half a blob and
a crash leaves at most a stray temporary file (cleared at start).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
from collections.abc import AsyncIterator
from pathlib import Path

from titan.errors import ValidationFailed

_SHA = re.compile(r"^[0-9a-f]{64}$")


class BlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.tmp = root / "tmp"
        self.tmp.mkdir(parents=True, exist_ok=True)
        for stray in self.tmp.iterdir():
            stray.unlink(missing_ok=True)

    def path(self, sha256: str) -> Path:
        if not _SHA.match(sha256):
            raise ValidationFailed(f"{sha256!r} is not a sha256 hex digest")
        return self.root / sha256[:2] / sha256

    def exists(self, sha256: str) -> bool:
        return self.path(sha256).is_file()

    async def write(self, chunks: AsyncIterator[bytes], *,
                    expect: str | None = None) -> tuple[str, int]:
        """Stream chunks into the store; returns (sha256, size). The size is bounded before
        the chunks get here: the body guard (master/api/limits.py) cuts an upload off at
        TITAN_MAX_UPLOAD_BYTES while it is received."""
        digest = hashlib.sha256()
        size = 0
        fd, tmp_name = _mkstemp(self.tmp)
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as f:
                async for chunk in chunks:
                    size += len(chunk)
                    digest.update(chunk)
                    f.write(chunk)
                f.flush()
                await asyncio.to_thread(os.fsync, f.fileno())
            sha = digest.hexdigest()
            if expect is not None and sha != expect:
                raise ValidationFailed(
                    f"content hash {sha} does not match the blob name {expect}",
                    details={"expected": expect, "actual": sha},
                )
            final = self.path(sha)
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, final)
            return sha, size
        finally:
            tmp.unlink(missing_ok=True)


def write_bytes(store: BlobStore, data: bytes) -> str:
    """Store ``data`` (blocking; call it off the event loop); returns its sha256. A blob
    already there is not written again."""
    sha = hashlib.sha256(data).hexdigest()
    final = store.path(sha)
    if final.is_file():
        return sha
    fd, tmp_name = _mkstemp(store.tmp)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp_name, final)
    finally:
        Path(tmp_name).unlink(missing_ok=True)
    return sha


def _mkstemp(directory: Path) -> tuple[int, str]:
    import tempfile

    return tempfile.mkstemp(dir=directory, prefix="upload-")
