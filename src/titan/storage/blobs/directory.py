"""Blobs as files in a directory: ``<data-dir>/blobs`` by default, or ``TITAN_BLOB_DIR``.

A blob is written to a temporary file in ``tmp/`` while its hash is computed, flushed to
disk, then renamed to ``<aa>/<sha256>``. A rename within one filesystem is atomic (on NFS as
well: the server performs it), so a reader never sees half a blob, and two writers renaming
the same content onto the same name leave one whole file.

The directory may be shared by several masters (NFS or another shared filesystem), so a
master starting up clears only temporary files that nobody has written to for
:data:`STRAY_AFTER` seconds, never an upload another master is receiving. The file ``owner``
names the database whose garbage collection claimed the directory first (base.py).

A directory that cannot take a write (a full disk, a quota, a read-only mount, another
owner) is :class:`~titan.errors.BlobStoreUnwritable`, naming the directory and what to do:
at open when it cannot take a file at all, else at the write that met it, whose temporary
file is removed (a blob is only ever renamed into place whole, once flushed). A directory that
cannot be reached — its network filesystem away (a stale handle, a timeout, an I/O error), or
gone altogether (unmounted or removed: its ``tmp/`` is not there) — is
:class:`~titan.errors.BlobStoreUnavailable` (outage.py) for reads and writes alike: a download
is not told "no blob" for a blob that is merely out of reach.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import os
import tempfile
import time
from collections.abc import AsyncIterator, Generator, Iterator
from pathlib import Path

from titan.errors import BlobStoreUnavailable
from titan.storage.blobs.base import (
    CHUNK,
    BlobStore,
    cannot_write,
    check_database_id,
    check_sha256,
    hash_mismatch,
    missing,
)

#: The OS's answers when the directory's filesystem is out of reach (an NFS server away, a
#: handle gone stale, a disk failing): the place's state, which may pass.
_AWAY = (errno.ESTALE, errno.ENOTCONN, errno.ETIMEDOUT, errno.EHOSTDOWN, errno.EHOSTUNREACH,
         errno.ENETUNREACH, errno.EIO)

#: A temporary file untouched this long is left over from a crash: an upload in flight
#: writes to its file with every chunk it receives.
STRAY_AFTER = 6 * 3600.0


class DirectoryBlobStore(BlobStore):
    #: What a message tells an operator to change to move the store.
    SETTING = "TITAN_BLOB_DIR"

    def __init__(self, root: Path) -> None:
        super().__init__()
        self.root = root
        self.tmp = root / "tmp"
        self.description = f"directory {root}"
        with self._writing():
            self.tmp.mkdir(parents=True, exist_ok=True)
            # A directory that takes no file at all (a read-only mount, another owner) is
            # refused here, at start, rather than at the first upload. Space is not probed: a
            # full disk may be freed while the master runs, and each write says so meanwhile.
            fd, probe = self._mkstemp()
            os.close(fd)
            os.unlink(probe)
        cutoff = time.time() - STRAY_AFTER
        for stray in self.tmp.iterdir():
            try:
                if stray.stat().st_mtime < cutoff:
                    stray.unlink(missing_ok=True)
            except FileNotFoundError:  # another master cleared it first
                pass

    def path(self, sha256: str) -> Path:
        return self.root / check_sha256(sha256)[:2] / sha256

    def size(self, sha256: str) -> int | None:
        path = self.path(sha256)
        try:
            with self._reaching(writing=False):
                return path.stat().st_size
        except FileNotFoundError:
            return None

    def read(self, sha256: str, start: int = 0, end: int | None = None) -> Generator[bytes, None, None]:
        path = self.path(sha256)  # the name is checked now, the file opened on first use
        return self._chunks(sha256, path, start, end)

    def _chunks(self, sha256: str, path: Path, start: int, end: int | None) -> Generator[bytes, None, None]:
        try:
            with self._reaching(writing=False):
                f = path.open("rb")
        except FileNotFoundError:
            raise missing(sha256) from None
        with f, self._reaching(writing=False):
            f.seek(start)
            left = None if end is None else end - start
            while left is None or left > 0:
                chunk = f.read(CHUNK if left is None else min(CHUNK, left))
                if not chunk:
                    return
                if left is not None:
                    left -= len(chunk)
                yield chunk

    async def write(self, chunks: AsyncIterator[bytes], *,
                    expect: str | None = None) -> tuple[str, int]:
        if expect is not None:
            check_sha256(expect)
        digest = hashlib.sha256()
        size = 0
        with self._writing():
            fd, tmp_name = self._mkstemp()
        tmp = Path(tmp_name)
        try:
            with self._writing():
                with os.fdopen(fd, "wb") as f:
                    async for chunk in chunks:
                        size += len(chunk)
                        digest.update(chunk)
                        f.write(chunk)
                    f.flush()
                    await asyncio.to_thread(os.fsync, f.fileno())
                sha = digest.hexdigest()
                if expect is not None and sha != expect:
                    raise hash_mismatch(sha, expect)
                await asyncio.to_thread(self._publish, tmp, sha)
            return sha, size
        finally:
            self._discard(tmp)

    def write_bytes(self, data: bytes) -> str:
        sha = hashlib.sha256(data).hexdigest()
        with self.gate.writing(sha):  # the look for the file too: it may be going
            if self.path(sha).is_file():
                return sha
            with self._writing():
                fd, tmp_name = self._mkstemp()
            try:
                with self._writing():
                    with os.fdopen(fd, "wb") as f:
                        f.write(data)
                        f.flush()
                        os.fsync(f.fileno())
                    self._publish_now(Path(tmp_name), sha)
            finally:
                self._discard(Path(tmp_name))
        return sha

    def _delete(self, sha256: str) -> None:
        # A reader that opened the file reads it to its end: the name goes, not the bytes.
        try:
            with self._writing():  # a store gone is not a blob gone (_away)
                self.path(sha256).unlink()
        except FileNotFoundError:
            pass

    def owner(self, claim: str) -> str:
        record = self.root / "owner"
        with self._reaching(writing=False):
            if record.exists():
                return record.read_text().strip()
        with self._writing():
            fd, tmp_name = self._mkstemp()
        try:
            with self._writing():
                with os.fdopen(fd, "w") as f:
                    f.write(claim + "\n")
                    f.flush()
                    os.fsync(f.fileno())
                # A link is made whole or not at all, and only where no file is: of two
                # first claims, one wins and the other reads it.
                os.link(tmp_name, record)
            return claim
        except FileExistsError:
            with self._reaching(writing=False):
                return record.read_text().strip()
        finally:
            self._discard(Path(tmp_name))

    def users(self, database: str) -> set[str]:
        folder = self.root / "users"
        record = folder / check_database_id(database)
        if not record.exists():
            if not self._there():  # not onto a bare mount point
                raise self._unavailable("it is gone (unmounted, or removed?)")
            with self._writing():
                folder.mkdir(exist_ok=True)
                record.touch()
        with self._reaching(writing=False):
            return {p.name for p in folder.iterdir() if not p.name.startswith(".")}

    def _writing(self) -> contextlib.AbstractContextManager[None]:
        return self._reaching(writing=True)

    @contextlib.contextmanager
    def _reaching(self, *, writing: bool) -> Iterator[None]:
        """The OS's errors raised inside as what they say of the store: out of reach
        (BlobStoreUnavailable), unable to take a write (BlobStoreUnwritable, when
        ``writing``), or else what they are (a FileNotFoundError of a blob not there)."""
        try:
            yield
        except OSError as exc:
            away = self._away(exc)
            if away is not None:
                raise away from None
            refused = cannot_write(exc, self.root, self.SETTING) if writing else None
            if refused is None:
                raise
            raise refused from None
        else:
            # Back? (A call may succeed on a bare mount point: a file found absent.)
            if self.outage.down and self._there():
                self.outage.ok()

    def _there(self) -> bool:
        """Whether this is the directory the store opened: ``tmp/`` is made then and never
        removed, so a directory without it was unmounted or removed since."""
        try:
            return self.tmp.is_dir()
        except OSError:
            return False

    def _away(self, exc: OSError) -> BlobStoreUnavailable | None:
        if exc.errno in _AWAY:
            return self._unavailable(f"its filesystem does not answer ({exc.strerror})")
        if exc.errno != errno.ENOENT:
            return None
        # Is it the file that is missing, or the whole store?
        if self._there():
            self.outage.ok()  # it answered: the file is not there, that is all
            return None
        return self._unavailable("it is gone (unmounted, or removed?)")

    def _unavailable(self, said: str) -> BlobStoreUnavailable:
        return self.outage.failed(
            f"the blob store cannot reach {self.root}: {said}; nothing was stored or read: "
            f"mount it again (or point {self.SETTING} at it) and try again",
            reason="unreachable", store=self.description)

    @staticmethod
    def _discard(tmp: Path) -> None:
        # Gone already once published. A file that cannot be removed (the mount turned
        # read-only meanwhile) must not hide the error that brought us here: it is a stray,
        # cleared by a later start.
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)

    def _publish(self, tmp: Path, sha: str) -> None:
        with self.gate.writing(sha):
            self._publish_now(tmp, sha)

    def _publish_now(self, tmp: Path, sha: str) -> None:
        final = self.path(sha)
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, final)

    def _mkstemp(self) -> tuple[int, str]:
        return tempfile.mkstemp(dir=self.tmp, prefix="upload-")
