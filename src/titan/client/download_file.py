"""Writing a download to the file a user named: all of it or nothing, a failure naming that file.

A download is written to a temp file beside its target and renamed over it
(:func:`titan.atomic.atomic_file`), so a failed one leaves nothing half-written. What goes
wrong writing it — a folder where the file would go, a full disk, a file where a folder should
be — is a :class:`~titan.errors.LocalFileError` naming the target: Python's own error named the
temp file (``Is a directory: .../.data.k7ebwa42.tmp``), or nothing, and reached ``titan files
get`` as a traceback.
"""

from __future__ import annotations

from pathlib import Path

import httpx

from titan import errors
from titan.atomic import atomic_file

#: Bytes read from the reply at a time.
CHUNK = 1 << 20


def save_stream(response: httpx.Response, dest: Path) -> None:
    """Write a streamed reply's body to ``dest``, all at once or not at all."""
    try:
        with atomic_file(dest) as fh:
            for chunk in response.iter_bytes(CHUNK):
                fh.write(chunk)
    except OSError as exc:  # the reply's own failures are httpx's errors, not OSError
        raise unwritable(dest, exc) from None


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
