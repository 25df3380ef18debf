"""Paths a worker writes jobs' files to, kept inside its workspace: names that cannot climb
out of it, directories opened step by step without following a link a job planted, files
replaced atomically, and project archives extracted without escaping their folder (zip slip)
or filling the disk (zip bombs)."""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import secrets
import shutil
import stat
import threading
import zipfile
from pathlib import Path, PurePosixPath

from titan import errors
from titan.permissions import make_dirs

log = logging.getLogger("titan.worker")

#: Refuse archives that expand past this (a zip bomb must not fill the worker's disk).
MAX_ARCHIVE_BYTES = 8 << 30
_COPY_CHUNK = 1 << 20


class UnsafePath(errors.ValidationFailed):
    """A path would escape the workspace (absolute, or with a '..' component)."""


def safe_relative(name: str) -> PurePosixPath:
    """``name`` as a relative path that stays inside its base directory, or UnsafePath.

    Backslashes count as separators too, so a Windows-made name cannot smuggle ``..\\``.
    """
    if not name or "\x00" in name:
        raise UnsafePath(f"empty or invalid path {name!r}")
    normalized = name.replace("\\", "/")
    path = PurePosixPath(normalized)
    if path.is_absolute() or re.match(r"^[A-Za-z]:", normalized):
        raise UnsafePath(f"absolute path {name!r} refused")
    parts = [p for p in path.parts if p not in ("", ".")]
    if not parts or ".." in parts:
        raise UnsafePath(f"path {name!r} refused (it must stay inside the workspace)")
    return PurePosixPath(*parts)


_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def open_beneath(root: Path, parts: tuple[str, ...]) -> int:
    """A descriptor of the directory ``root/parts...``, each step opened without following a
    symbolic link and made when missing. A link or file in the way (a job's ``ln -s /x sub``
    in ``shared/``) is removed — never followed — and the directory made: left there, it
    failed every later job whose script sits under it on this worker. UnsafePath when one
    keeps coming back (a job racing the worker)."""
    fd = os.open(root, _DIR_FLAGS)
    try:
        for part in parts:
            for tries_left in (2, 1, 0):
                try:
                    step = os.open(part, _DIR_FLAGS, dir_fd=fd)
                    break
                except FileNotFoundError:
                    with contextlib.suppress(FileExistsError):
                        os.mkdir(part, 0o755, dir_fd=fd)
                except OSError as exc:
                    if exc.errno not in (errno.ELOOP, errno.ENOTDIR) or not tries_left:
                        raise
                    log.warning("workspace: removing %r in the way of a script's directory "
                                "(a link or a file a job left)", part)
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(part, dir_fd=fd)  # the link itself, not what it points at
            else:
                raise OSError(errno.ELOOP, "a link keeps coming back")
            os.close(fd)
            fd = step
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise UnsafePath(f"{'/'.join(parts)} in the workspace is a symbolic link or not a "
                             "directory: scripts are never written through a link") from None
        raise
    return fd


def read_beneath(directory: int, name: str) -> bytes | None:
    """The file ``name`` in ``directory`` (not followed if it is a link), or None."""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=directory)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as fh:
        return fh.read()


def replace_beneath(directory: int, name: str, data: bytes, mode: int) -> None:
    """Replace ``name`` in ``directory`` with ``data`` atomically: a temporary file renamed
    over it (a link at ``name`` is replaced, not followed), so a job starting meanwhile sees
    the old file or the new, never half of one."""
    tmp = f".{name}.{secrets.token_hex(6)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                 mode, dir_fd=directory)
    try:
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fh.fileno(), mode)
            fh.write(data)
        os.replace(tmp, name, src_dir_fd=directory, dst_dir_fd=directory)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp, dir_fd=directory)
        raise


def extract_zip(zip_path: Path, target: Path) -> None:
    """Extract ``zip_path`` into ``target`` (created atomically), refusing zip-slip.

    Every member must resolve inside ``target``: absolute names, drive letters, ``..``
    components and symbolic links are refused (the whole archive, not just the member), and
    the total expanded size is bounded. Extraction goes to a sibling temporary directory that
    is renamed into place, so a crash or a concurrent worker never sees half an archive.
    """
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    make_dirs(tmp, 0o755)  # modes of their own, as the workspace's: not the umask's 0777
    try:
        total = 0
        with zipfile.ZipFile(zip_path) as zf:
            for info in zf.infolist():
                rel = safe_relative(info.filename)
                mode = info.external_attr >> 16
                if stat.S_ISLNK(mode):
                    raise UnsafePath(f"symbolic link {info.filename!r} in archive refused")
                dest = tmp.joinpath(*rel.parts)
                if not dest.resolve().is_relative_to(tmp.resolve()):
                    raise UnsafePath(f"archive member {info.filename!r} escapes the project")
                if info.is_dir():
                    make_dirs(dest, 0o755)
                    continue
                total += info.file_size
                if total > MAX_ARCHIVE_BYTES:
                    raise errors.PayloadTooLarge(f"{zip_path.name} expands past the limit")
                make_dirs(dest.parent, 0o755)
                out_fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
                with zf.open(info) as src, os.fdopen(out_fd, "wb") as out:
                    shutil.copyfileobj(src, out, _COPY_CHUNK)
                if mode & 0o111:
                    os.chmod(dest, 0o755)
        try:
            os.rename(tmp, target)
        except OSError:
            if not target.is_dir():  # lost a race to another extractor: theirs is as good
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
