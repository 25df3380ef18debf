"""Writing a file all at once or not at all.

Readers of Titan's files (a job starting while its script is rewritten, a client reading the
user config, a download's destination) must never see half a file. Everything is written to a
temporary file beside the target and renamed over it: a rename within one directory is atomic,
and a failure leaves the old file as it was.

A target that is not a plain file is written into instead: a device (``-o /dev/stdout``,
``/dev/null``), a named pipe, a process substitution. Renamed over, it was replaced by a plain
file — as root, ``titan runs export -o /dev/stdout`` turned the system's ``/dev/stdout`` into
one (a QA pass). A symlink to a plain file is followed: its target is replaced, the link kept.

Neither is done for what another user left in a folder others may write to (``/tmp``, where
the research agent saves its report at a path its command line shows): a link planted there
had the download replace the file it points at (``~/.bashrc``), a named pipe let its maker
read the download. Such an entry is refused (:class:`PlantedEntry`), as the kernel refuses
to follow it under ``fs.protected_symlinks`` — which many machines leave off.
"""

from __future__ import annotations

import contextlib
import errno
import os
import pwd
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO


class PlantedEntry(PermissionError):
    """The target is a link, pipe or file another user made in a folder others may write to.

    An ``OSError`` (its ``strerror`` says what and why), so every caller that names a target
    it could not write says this too."""


def _user(uid: int) -> str:
    try:
        return f"{pwd.getpwuid(uid).pw_name}, uid {uid}"
    except KeyError:
        return f"uid {uid}"


def _refuse_planted(path: Path) -> None:
    """Raise :class:`PlantedEntry` when ``path`` is another user's entry in a folder that
    others may write to, unless that user owns the folder (root's ``/tmp``: as the kernel's
    ``protected_symlinks`` rule has it)."""
    try:
        st = os.lstat(path)
        folder = os.stat(path.parent)
    except OSError:
        return
    if st.st_uid == os.geteuid() or not folder.st_mode & stat.S_IWOTH \
            or st.st_uid == folder.st_uid:
        return
    kind = ("a symbolic link" if stat.S_ISLNK(st.st_mode) else
            "a named pipe" if stat.S_ISFIFO(st.st_mode) else
            "a file" if stat.S_ISREG(st.st_mode) else "an entry")
    raise PlantedEntry(errno.EPERM,
                       f"it is {kind} another user ({_user(st.st_uid)}) made in "
                       f"{path.parent}, a folder anyone may write to: not written through "
                       "nor replaced (delete it, or choose another path)", str(path))


@contextlib.contextmanager
def atomic_file(path: Path, mode: int | None = None, *,
                durable: bool = False) -> Iterator[BinaryIO]:
    """Yield a binary file that replaces ``path`` when the block ends without error.

    The file has ``mode`` from its creation (a secret is never readable by others, even for
    a moment); by default the mode a new file gets, ``0666`` less the umask (a download is
    as private as the user's other files). ``durable`` also fsyncs it before the rename."""
    _refuse_planted(path)
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
        _refuse_planted(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
    # O_EXCL and O_NOFOLLOW: a name someone else made meanwhile is never opened.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                 0o666 if mode is None else mode)
    try:
        if mode is not None:
            os.fchmod(fd, mode)  # exactly ``mode``, whatever the umask took from it
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
