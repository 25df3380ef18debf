"""Private directories: the master's data dir and the user's config dir, 0700 with files 0600.

Both hold what makes an admin: the data dir keeps ``admin.token``, ``worker.token``, the
database (with the key that signs session cookies and job tokens) and the blobs; the user
config keeps a token per master. Any local user able to read one of them becomes admin, so
the master creates them private (umask 0o077 in its process, explicit modes here) and, at
every start, tightens whatever someone loosened, with a WARNING naming the paths (the first
ten, the rest counted) so the operator learns that the files were exposed (a tightened mode
does not un-leak a copied secret).

A path in them that another user owns is refused, not used (:func:`require_owned`), as
PostgreSQL refuses a data directory it does not own: its owner may have planted it (an
``admin.token`` whose value they chose was the live admin token) and can replace it at will
(the database, with the signing key), and no mode this process sets takes that back.
"""

from __future__ import annotations

import logging
import os
import pwd
import re
import stat
import warnings
from collections.abc import Iterable
from pathlib import Path

from titan.errors import ConfigError

log = logging.getLogger("titan.permissions")

DIR_MODE = 0o700
FILE_MODE = 0o600
#: The umask of a process that writes only private files (the master).
PRIVATE_UMASK = 0o077


def use_private_umask() -> int:
    """Make everything this process creates private from now on; returns the old umask
    (hand it to children that create files for others, e.g. the local worker's jobs)."""
    return os.umask(PRIVATE_UMASK)


def _tighten(path: Path, st: os.stat_result, want: int, *, warn: bool,
             secrets: bool = True) -> bool:
    """Close ``path`` to ``want``; ``warn``: say so, and (``secrets``: its tree held tokens
    or data) that they may have been read."""
    if stat.S_IMODE(st.st_mode) & ~want == 0:
        return False
    try:
        os.chmod(path, stat.S_IMODE(st.st_mode) & want, follow_symlinks=False)
    except OSError as exc:
        log.warning("%s is mode %04o (readable by others) and cannot be tightened: %s",
                    path, stat.S_IMODE(st.st_mode), exc)
        return True
    if warn:
        # An empty data dir made under umask 000 was told to rotate tokens it never held.
        log.warning("%s was mode %04o, open to other local users; tightened to %04o. %s",
                    path, stat.S_IMODE(st.st_mode), stat.S_IMODE(st.st_mode) & want,
                    "Anyone who read it may hold its secrets: rotate tokens if in doubt."
                    if secrets else "It held no tokens yet: nothing to rotate.")
    return True


def private_dir(path: Path) -> Path:
    """Create the directory ``path`` if missing, 0700 from the start (missing parents as the
    umask makes them: not ours to close). Whatever writes into a private directory (the data
    dir: ``titan up --tls``'s certificate before the master starts) creates it this way
    first: made by a ``mkdir(parents=True)`` further down, it was open to others until the
    master tightened it, warning of a leak in a directory it had just made."""
    try:
        path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    except OSError as exc:  # a file in the way, a read-only disk: one line, not a traceback
        raise ConfigError(f"cannot create the directory {path}: {exc.strerror or exc}") \
            from None
    return path


def _user(uid: int) -> str:
    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


def foreign(paths: Iterable[tuple[Path, os.stat_result]], what: str) -> ConfigError | None:
    """The error for the first of ``paths`` (with their ``lstat``) another user owns, if any."""
    uid = os.getuid()
    for path, st in paths:
        if st.st_uid != uid:
            return ConfigError(
                f"{path} is owned by {_user(st.st_uid)}, not by {_user(uid)} who runs this "
                f"{what}: that user could have planted what it holds or can replace it, so it "
                f"is not used. If it is yours, `chown -R {_user(uid).split(' ')[0]} {path}`; "
                "else choose another directory")
    return None


def require_owned(paths: Iterable[Path], what: str) -> None:
    """Refuse (:class:`ConfigError`) the first existing path of ``paths`` another user owns."""
    found: list[tuple[Path, os.stat_result]] = []
    for path in paths:
        try:
            found.append((path, path.lstat()))
        except (FileNotFoundError, NotADirectoryError):
            continue
    error = foreign(found, what)
    if error is not None:
        raise error


#: The secret files already warned about: once per process, not at every lookup.
_WARNED: set[Path] = set()


def warn_if_exposed(path: Path) -> None:
    """Warn (once per process and file) when a secret file a client reads is not private
    (:func:`exposure`): the user config, said to be kept 0600, was read without a word at
    0644 or as another user's."""
    if path in _WARNED:
        return
    said = exposure(path)
    if said is not None:
        _WARNED.add(path)
        warnings.warn(said, stacklevel=3)


def exposure(path: Path) -> str | None:
    """What is wrong with a secret file a client only reads (``~/.titan/config.json``), if
    anything, said with the fix as ssh says it of a private key: readable or writable by
    others (``chmod 600``), or owned by another user. None when it is private, or gone."""
    try:
        st = path.stat()
    except OSError:
        return None
    uid = os.getuid()
    if st.st_uid != uid:
        return (f"{path} holds tokens but is owned by {_user(st.st_uid)}, not by "
                f"{_user(uid)}: that user could have chosen them or can read them. If it is "
                f"yours, `chown {_user(uid).split(' ')[0]} {path} && chmod 600 {path}`")
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o077:
        return (f"{path} holds tokens but is mode {mode:04o}, open to other local users; "
                f"run `chmod 600 {path}` (anyone who read it may hold its tokens: rotate "
                "them if in doubt)")
    return None


#: What Titan keeps in a data dir or the user config dir: only these are made private.
OWN_NAMES = frozenset({
    "titan.db", "titan.db-wal", "titan.db-shm", "titan.db-journal", "admin.token",
    "worker.token", "master.json", "standby.json", "config.json", "blobs", "spool", "tls",
    # `make demo`'s (tools/demo.py), written before it starts `titan up` there.
    "demo.pid", "demo-up.log"})
#: The entries of :data:`OWN_NAMES` that hold secrets (tokens, a key, the database): an open
#: directory without any had nothing to read.
SECRET_NAMES = frozenset({
    "titan.db", "titan.db-wal", "titan.db-journal", "admin.token", "worker.token",
    "config.json", "tls", "blobs", "spool"})
#: The temp file of an atomic write of one of them (titan.atomic: ``.<name>.<random>.tmp``).
_ATOMIC_TEMP = re.compile(r"\.(.+)\.[A-Za-z0-9_]+\.tmp")


def is_titans(name: str) -> bool:
    """Whether a directory entry named ``name`` is one Titan keeps (:data:`OWN_NAMES`)."""
    temp = _ATOMIC_TEMP.fullmatch(name)
    return name in OWN_NAMES or (temp is not None and temp.group(1) in OWN_NAMES)


def secure_tree(root: Path, *, warn: bool = True, what: str = "master",
                only_titans: bool = True) -> list[Path]:
    """Create ``root`` (0700) if missing, and tighten it and what Titan keeps in it
    (:data:`OWN_NAMES`, whole): directories to 0700, files to 0600 at most. Returns the paths
    that were looser. A path among them that another user owns is a :class:`ConfigError`
    naming it (``what`` says who refuses it).

    Anything else in ``root`` is left as it is; and a directory that existed, holds things and
    none of Titan's is refused: ``--data-dir .`` in a repository, ``~`` or ``/tmp`` took every
    file under it to 0600 (executables and git hooks no longer ran) and a shared sticky
    directory to 0700.

    ``only_titans=False`` (the user config dir, ``~/.titan``, where people keep a master's
    CA certificate beside Titan's file) leaves out that refusal, not the rest.

    Symbolic links are neither followed nor changed (their target is not ours to judge).
    """
    existed = root.exists()
    private_dir(root)
    try:
        names = sorted(os.listdir(root))
    except OSError:
        names = []
    if only_titans and existed and names and not any(is_titans(n) for n in names):
        shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        raise ConfigError(
            f"{root} is not a Titan directory: it holds {shown}, and none of Titan's files. "
            "Titan makes its directory private (0700, its files 0600), which would change "
            "these too: give it a directory of its own, new or empty (the default is ./.titan)")
    secrets = any(n in SECRET_NAMES for n in names)
    loosened: list[Path] = []
    stack = [root]
    while stack:
        directory = stack.pop()
        try:
            st = directory.lstat()
        except FileNotFoundError:
            continue
        _refuse_foreign([(directory, st)], what)
        if _tighten(directory, st, DIR_MODE, warn=_said(warn, loosened), secrets=secrets):
            loosened.append(directory)
        try:
            entries = list(os.scandir(directory))
        except OSError:
            continue
        for entry in entries:
            if directory == root and not is_titans(entry.name):
                continue  # not Titan's: not ours to close
            try:
                est = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            _refuse_foreign([(Path(entry.path), est)], what)
            if stat.S_ISDIR(est.st_mode):
                stack.append(Path(entry.path))
            elif stat.S_ISREG(est.st_mode) and _tighten(
                    Path(entry.path), est, FILE_MODE, warn=_said(warn, loosened)):
                loosened.append(Path(entry.path))
    if warn and len(loosened) > WARN_EACH:
        log.warning("%d more paths under %s were open to other local users; tightened "
                    "(directories %04o, files %04o)", len(loosened) - WARN_EACH, root,
                    DIR_MODE, FILE_MODE)
    return loosened


#: Paths named one by one when a tree is tightened; the rest are counted in one line (a data
#: dir made by an older Titan, or copied with a loose umask, has a line per blob otherwise).
WARN_EACH = 10


def _refuse_foreign(paths: list[tuple[Path, os.stat_result]], what: str) -> None:
    error = foreign(paths, what)
    if error is not None:
        raise error


def _said(warn: bool, loosened: list[Path]) -> bool:
    return warn and len(loosened) < WARN_EACH


def secure_files(paths: list[Path]) -> None:
    """Tighten files just created (the database and its -wal/-shm) without a warning."""
    for path in paths:
        try:
            st = path.lstat()
        except FileNotFoundError:
            continue
        if stat.S_ISREG(st.st_mode):
            _tighten(path, st, FILE_MODE, warn=False)


def make_dirs(path: Path, mode: int) -> Path:
    """Create ``path`` and its missing parents, each with ``mode`` (the umask can only take
    bits away): ``mkdir -p`` made the parents with the umask's mode, 0777 under umask 000."""
    missing: list[Path] = []
    folder = path
    while not os.path.lexists(folder):
        missing.append(folder)
        folder = folder.parent
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=mode)
        except FileExistsError:
            pass
    return path


def swappable_by_others(path: Path) -> Path | None:
    """The first of ``path`` and the folders above it that any local user may write to
    without the sticky bit (``/tmp`` has it), if any: there, another user can rename what is
    in it and put their own in its place, whoever owns it and whatever its mode."""
    for folder in [path, *path.parents]:
        try:
            mode = folder.stat().st_mode
        except OSError:
            return None
        if mode & stat.S_IWOTH and not mode & stat.S_ISVTX:
            return folder
    return None
