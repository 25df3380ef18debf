"""Writing a download to the file a user named: all of it or nothing, checked, a failure naming that file.

A download is written to a temp file beside its target and renamed over it
(:func:`titan.atomic.atomic_file`), so a failed one leaves nothing half-written. What goes
wrong writing it — a folder where the file would go, a full disk, a file where a folder should
be — is a :class:`~titan.errors.LocalFileError` naming the target: Python's own error named the
temp file (``Is a directory: .../.data.k7ebwa42.tmp``), or nothing, and reached ``titan files
get`` as a traceback.

A whole body is checked against the sha256 the master sends with it (``X-Titan-Sha256``, its
ETag), as a worker checks the scripts it fetches: a blob changed or damaged on the master's
disk is served as it is, and was handed to the user silently. It is refused
(:class:`~titan.errors.DownloadCorrupt`) before it replaces the target.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import BinaryIO

import httpx

from titan import errors
from titan.atomic import atomic_file

#: Bytes read from the reply at a time.
CHUNK = 1 << 20
_SHA256 = re.compile(r"[0-9a-f]{64}")


def expected_sha256(response: httpx.Response) -> str | None:
    """The sha256 the master says a whole reply's body has (``X-Titan-Sha256``, else a
    strong ETag that is one); None for a part of one (206) or a reply that says none."""
    if response.status_code != 200:
        return None
    said = response.headers.get("X-Titan-Sha256") or \
        response.headers.get("ETag", "").removeprefix('"').removesuffix('"')
    return said if _SHA256.fullmatch(said) else None


def check_sha256(expected: str | None, digest: str, what: str,
                 then: str = "nothing was written") -> None:
    """Refuse a body whose ``digest`` is not the ``expected`` one (:class:`DownloadCorrupt`);
    ``then`` says what came of it."""
    if expected is not None and digest != expected:
        raise errors.DownloadCorrupt(
            f"{what} is not what the master stored: its sha256 is {digest[:16]}…, the master's "
            f"record says {expected[:16]}… (its blob store's copy was changed or damaged: an "
            f"operator should look); {then}", expected=expected, got=digest)


def save_stream(response: httpx.Response, dest: Path | BinaryIO) -> None:
    """Write a streamed reply's body to ``dest``, all at once or not at all: a body whose
    sha256 is not the one the master sent is refused before it replaces anything. A ``dest``
    that is a stream (standard output: ``titan files get NAME -o -``) gets the bytes as they
    arrive, and they are checked once all have come, when they cannot be taken back."""
    expected = expected_sha256(response)
    digest = hashlib.sha256()
    if not isinstance(dest, Path):
        for chunk in response.iter_bytes(CHUNK):
            digest.update(chunk)
            dest.write(chunk)
        dest.flush()
        check_sha256(expected, digest.hexdigest(), f"the download to {_named(dest)}",
                     "its bytes were written before the check: discard them")
        return
    try:
        with atomic_file(dest) as fh:
            for chunk in response.iter_bytes(CHUNK):
                digest.update(chunk)
                fh.write(chunk)
            # Inside the block: refused, the temp file goes and the target is left as it was.
            check_sha256(expected, digest.hexdigest(), f"the download to {dest}")
    except OSError as exc:  # the reply's own failures are httpx's errors, not OSError
        raise unwritable(dest, exc) from None


def _named(stream: BinaryIO) -> str:
    name = getattr(stream, "name", None)
    return name if isinstance(name, str) else "the stream"


def unwritable(dest: Path, exc: OSError) -> errors.LocalFileError:
    """What went wrong writing a download to ``dest``, in one line naming ``dest`` (the
    error itself names the temp file beside it, or nothing)."""
    above = next((p for p in dest.parents if p.exists()), None)
    if dest.is_dir():
        why = "it is a folder (name a file, or a path inside it)"
    elif above is not None and not above.is_dir():
        why = f"{above} is a file, not a folder"
    else:
        why = exc.strerror or str(exc) or type(exc).__name__
    return errors.LocalFileError(f"cannot write the download to {dest}: {why}; nothing was "
                                 "written there", path=str(dest))
