"""The blob store's interface: content-addressed bodies, named by their sha256.

Scripts, uploaded files, published artifacts, recorded payloads too large for their row and
a run's recorded code all live here. Every backend keeps the same promises, and
``tests/contract/test_blob_stores.py`` holds each of them to it:

- **whole or absent**: a reader never sees part of a blob; a write that fails (a hash that
  does not match, an upload cut off, a crash) leaves nothing a reader can find;
- **content-addressed, so writing twice is harmless**: the same bytes written again, or by
  two writers at once, end as one blob;
- **streamed**: bodies go in and out in chunks of at most :data:`CHUNK` bytes, never whole in
  memory (a blob may be as large as ``TITAN_MAX_UPLOAD_BYTES``, 4 GiB by default).

A blob never changes, so readers need no transaction to read one piece by piece. Only
garbage collection deletes one (``master/blob_gc.py``: a blob nothing in the database names,
unused for a grace period), through :meth:`BlobStore.delete`, which the store's
:class:`~titan.storage.blobs.gate.BlobGate` keeps from deleting what is being written or was
written lately.
"""

from __future__ import annotations

import abc
import asyncio
import errno
import hashlib
import io
import os
import pwd
import re
import tempfile
from collections.abc import AsyncIterator, Generator, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from titan.errors import BlobStoreUnwritable, NotFound, ValidationFailed
from titan.storage.blobs.gate import BlobGate
from titan.storage.blobs.outage import Outage

#: The most bytes a backend reads, writes or hands out at once.
CHUNK = 1 << 20

_SHA = re.compile(r"^[0-9a-f]{64}\Z")


def sha256_problem(value: object) -> str | None:
    """What is wrong with ``value`` as a blob's name (None when nothing is): 64 lower-case hex
    digits, one spelling only, since a name is a path, an object key and an ETag, and a
    client compares the names it is given back with those it sent. An upper-case digest
    ('E3B0…', as some tools print it) is told what to write instead."""
    if isinstance(value, str) and _SHA.match(value):
        return None
    if isinstance(value, str) and _SHA.match(value.lower()):
        return (f"{value[:80]!r} is not a sha256 as Titan writes it: lower-case hex only "
                f"(0-9, a-f), {value.lower()!r}")
    shown = repr(value[:80]) if isinstance(value, str) else type(value).__name__
    return f"{shown} is not a sha256: 64 lower-case hex digits (0-9, a-f)"


def check_sha256(sha256: str) -> str:
    """``sha256`` if it is a blob name (:func:`sha256_problem`); ValidationFailed if not.
    Every backend checks a name before using it: a name becomes a path or an object key."""
    problem = sha256_problem(sha256)
    if problem is not None:
        raise ValidationFailed(problem)
    return sha256


def check_database_id(database: str) -> str:
    """``database`` if it is a database's id as Titan makes them (hex): it names a file or an
    object key among a store's records."""
    if not re.fullmatch(r"[0-9a-f]{8,64}", database):
        raise ValidationFailed(f"{database[:80]!r} is not a Titan database id")
    return database


#: The OS's refusals of a write that are the place's, not the request's nor a bug: an
#: operator must free space, raise a quota, remount or fix an owner. Anything else (EIO, a
#: path that is a file) stays what it is.
_FULL = (errno.ENOSPC, errno.EDQUOT)
_READ_ONLY = (errno.EROFS,)
_DENIED = (errno.EACCES, errno.EPERM)


def cannot_write(exc: OSError, where: Path, setting: str) -> BlobStoreUnwritable | None:
    """``exc``, met writing under ``where`` (the directory ``setting`` names), as the refusal
    a client and an operator can act on; None when it is not the place's fault."""
    if exc.errno in _FULL:
        said = "its disk is full" if exc.errno == errno.ENOSPC else "it is over its disk quota"
        todo = f"free space there, or point {setting} at a larger disk"
    elif exc.errno in _READ_ONLY:
        said, todo = "it is read-only", f"mount it read-write, or point {setting} elsewhere"
    elif exc.errno in _DENIED:
        said = f"this master's user ({_user()}) may not write there"
        todo = f"give that user write access, or point {setting} elsewhere"
    else:
        return None
    return BlobStoreUnwritable(
        f"the blob store cannot write to {where}: {said} ({exc.strerror}); {todo}",
        details={"directory": str(where), "errno": errno.errorcode.get(exc.errno or 0, "")})


def _user() -> str:
    uid = os.geteuid()
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:  # a uid with no name (a container's)
        return f"uid {uid}"


@contextmanager
def writing_under(where: Path, setting: str) -> Iterator[None]:
    """Turn the OS's "this place cannot take it" (:func:`cannot_write`) raised inside into
    :class:`~titan.errors.BlobStoreUnwritable`: a full disk was a 500 "bug in the master"
    with a traceback."""
    try:
        yield
    except OSError as exc:
        refused = cannot_write(exc, where, setting)
        if refused is None:
            raise
        raise refused from None


def hash_mismatch(actual: str, expect: str) -> ValidationFailed:
    return ValidationFailed(f"content hash {actual} does not match the blob name {expect}",
                            details={"expected": expect, "actual": actual})


class BlobStore(abc.ABC):
    """Where blobs live. Every method but :meth:`write` blocks: call it off the event loop
    (``asyncio.to_thread``, or inside ``Engine.read``, which runs on a reader thread)."""

    #: Where the blobs are, for the master's start-up line (no credentials).
    description: str

    def __init__(self) -> None:
        #: Every write of a body and every deletion pass through it (gate.py).
        self.gate = BlobGate()
        #: Where the store is while it cannot be reached, and what the log said (outage.py).
        self.outage = Outage()

    @abc.abstractmethod
    def size(self, sha256: str) -> int | None:
        """The blob's size in bytes; None when the store does not hold it."""

    def exists(self, sha256: str) -> bool:
        return self.size(sha256) is not None

    def present(self, shas: Iterable[str]) -> set[str]:
        """Which of ``shas`` the store holds (a backend may answer in one round trip)."""
        return {sha for sha in shas if self.exists(sha)}

    @abc.abstractmethod
    def read(self, sha256: str, start: int = 0, end: int | None = None) -> Generator[bytes, None, None]:
        """Bytes ``start`` to ``end`` (exclusive; None: the end) of the blob, in chunks of at
        most :data:`CHUNK`; NotFound when the store does not hold it. Lazy: nothing is read
        until the first chunk is asked for, and closing the iterator early is cheap."""

    def read_bytes(self, sha256: str, *, limit: int | None = None) -> bytes | None:
        """The whole blob, for small ones (recorded payloads, source files); None when the
        store does not hold it or it is larger than ``limit`` bytes."""
        size = self.size(sha256)
        if size is None or limit is not None and size > limit:
            return None
        return b"".join(self.read(sha256))

    def read_text(self, sha256: str, *, limit: int | None = None) -> str | None:
        """:meth:`read_bytes` as UTF-8 text (recorded payloads, source files); raises
        UnicodeDecodeError for a blob that is not UTF-8."""
        data = self.read_bytes(sha256, limit=limit)
        return None if data is None else data.decode("utf-8")

    @abc.abstractmethod
    def write_bytes(self, data: bytes) -> str:
        """Store ``data`` (blocking); returns its sha256. A blob already there is not written
        again."""

    @abc.abstractmethod
    async def write(self, chunks: AsyncIterator[bytes], *,
                    expect: str | None = None) -> tuple[str, int]:
        """Stream ``chunks`` into the store; returns (sha256, size). With ``expect``, content
        whose hash is not ``expect`` is refused (ValidationFailed) and nothing is stored. The
        size is bounded before the chunks get here: the body guard (master/api/limits.py)
        cuts an upload off at TITAN_MAX_UPLOAD_BYTES while it is received."""

    def delete(self, sha256: str) -> bool:
        """Delete the blob (garbage collection's call, once the database forgot it), unless it
        is being written now or was written lately: whoever wrote it records it again. True
        when it is gone (or was not there)."""
        check_sha256(sha256)
        with self.gate.deleting(sha256) as free:
            if free:
                self._delete(sha256)
            return free

    @abc.abstractmethod
    def _delete(self, sha256: str) -> None:
        """Remove the blob's body; nothing when it is not there."""

    @abc.abstractmethod
    def owner(self, claim: str) -> str:
        """The id of the Titan database this store's blobs belong to, the one ``claim``
        names when none claimed it before. Garbage collection runs only in its owner's
        master: a store two databases share holds blobs one of them needs and the other does
        not know of."""

    @abc.abstractmethod
    def users(self, database: str) -> set[str]:
        """Record ``database`` (its id) as a user of this store, and return the ids of every
        database recorded so: each master records its own at start, so the owner's
        collection learns that another database shares the store (and needs blobs it does
        not know of) even if that one never collects."""

    def close(self) -> None:  # noqa: B027 - optional: most stores hold nothing open
        """Release what the store holds open (connections); the default holds nothing."""


class NamedFirstStore(BlobStore):
    """A backend that must know a blob's name before it writes its first byte (a row's key,
    an object's key): an upload is received into a local spool file while it is hashed,
    and stored under its name once it is whole and checked.

    Spooling costs one local copy of each upload in flight, and buys what the remote store
    needs: a content hash checked before anything remote is touched, a remote write as fast
    as the network to it allows rather than as slow as the client uploading (no database
    transaction held open for minutes), and no remote write at all for content already
    there."""

    #: Uploads up to this size are spooled in memory, larger ones in a file.
    SPOOL_IN_MEMORY = CHUNK

    def __init__(self, spool_dir: Path) -> None:
        super().__init__()
        spool_dir.mkdir(parents=True, exist_ok=True)
        self.spool_dir = spool_dir

    @abc.abstractmethod
    def _store(self, sha256: str, size: int, body: IO[bytes]) -> None:
        """Store ``body`` (read from its start, ``size`` bytes whose hash is ``sha256``)
        whole or not at all; nothing when the blob is there already."""

    def _stored(self, sha256: str, size: int, body: IO[bytes]) -> None:
        with self.gate.writing(sha256):
            self._store(sha256, size, body)

    def write_bytes(self, data: bytes) -> str:
        sha = hashlib.sha256(data).hexdigest()
        self._stored(sha, len(data), io.BytesIO(data))
        return sha

    async def write(self, chunks: AsyncIterator[bytes], *,
                    expect: str | None = None) -> tuple[str, int]:
        if expect is not None:
            check_sha256(expect)
        digest = hashlib.sha256()
        size = 0
        # An unnamed temporary file (O_TMPFILE where Linux has it): a crash leaves nothing
        # behind in the spool directory.
        with tempfile.SpooledTemporaryFile(max_size=self.SPOOL_IN_MEMORY,
                                           dir=str(self.spool_dir)) as spool:
            # The spool is on the master's own disk, which may be full or read-only too.
            with writing_under(self.spool_dir, "--data-dir"):
                async for chunk in chunks:
                    size += len(chunk)
                    digest.update(chunk)
                    spool.write(chunk)
            sha = digest.hexdigest()
            if expect is not None and sha != expect:
                raise hash_mismatch(sha, expect)
            spool.seek(0)
            await asyncio.to_thread(self._stored, sha, size, spool)
        return sha, size


def missing(sha256: str) -> NotFound:
    return NotFound(f"no blob {sha256}", details={"sha256": sha256})
