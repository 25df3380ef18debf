"""``.env`` in the working directory: where hosted-model keys live (seed 001's prerequisites).

``GEMINI_API_KEY=...`` in a project's ``.env`` reaches the process that calls the model: the
SDK loads it before its first hosted call, and ``titan up`` / ``titan worker`` load it when
they start, so their jobs inherit the keys they may have (``TITAN_JOB_ENV_PASS``; the
providers' keys are passed by default). A variable already in the environment wins; values
are never logged, printed or recorded (a model call records its messages and parameters,
never the environment).

Only a file the user may trust is read (as OpenSSH reads ``authorized_keys``): a regular
file owned by the user (or root) that no other user may write. A ``.env`` another local user
left in a shared directory, or made writable by others, would otherwise point the SDK's model
calls at their server with the user's key. Inside a Titan job, only the job's own project
folder's ``.env`` is read: the worker's shared folder is written by every job it runs, so a
``.env`` there is another job's word. A skipped file is named in a warning, never read.

The format is the common one: ``KEY=value`` lines, an optional ``export`` in front, values in
single or double quotes (double-quoted ones may hold ``\\n``), ``#`` comments on their own line
or after an unquoted value. A line that is none of these is skipped, named by its line number
only (it may hold a secret).
"""

from __future__ import annotations

import logging
import os
import re
import stat
from collections.abc import MutableMapping
from pathlib import Path

log = logging.getLogger("titan")

_LINE = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*?)\s*$")
_loaded: set[Path] = set()
#: Which file set each variable this process took from a .env (for errors about its value).
_origins: dict[str, Path] = {}


def origin_of(message: str) -> Path | None:
    """The .env that set a variable ``message`` names (the first such), or None: a bad value
    from a file the user forgot reads as a mystery without it."""
    for name, path in _origins.items():
        if re.search(rf"\b{re.escape(name)}\b", message):
            return path
    return None


def parse(text: str) -> tuple[dict[str, str], list[int]]:
    """The variables of a ``.env`` text, and the numbers of the lines that were not one."""
    values: dict[str, str] = {}
    bad: list[int] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        m = _LINE.match(line)
        if m is None:
            bad.append(number)
            continue
        key, raw = m.group(1), m.group(2)
        if raw[:1] in ("'", '"') and len(raw) >= 2 and raw.endswith(raw[0]):
            value = raw[1:-1]
            if raw[0] == '"':
                value = value.replace("\\n", "\n").replace('\\"', '"')
        elif raw[:1] in ("'", '"'):
            bad.append(number)  # an opening quote that never closes
            continue
        else:
            value = re.split(r"\s+#", raw, maxsplit=1)[0]
        values[key] = value
    return values, bad


def _job_refuses(path: Path) -> bool:
    """Inside a Titan job, whether ``path`` lies outside the job's own project folder (a plain
    script's working directory is the worker's shared folder, which every job writes)."""
    if not os.environ.get("TITAN_WORKSPACE"):
        return False  # not a job
    project = os.environ.get("TITAN_PROJECT_DIR")
    if project:
        try:
            path.resolve().relative_to(Path(project).resolve())
            return False
        except (OSError, ValueError):
            pass
    return True


def _private_group(st: os.stat_result) -> bool:
    """Whether the file's group is its owner's alone (a user-private group, as Debian and
    Ubuntu make one per user, with umask 002): then group-writable is writable by no one
    else. Debian's OpenSSH makes the same exception."""
    try:
        import grp
        import pwd

        group, owner = grp.getgrgid(st.st_gid), pwd.getpwuid(st.st_uid)
    except (ImportError, KeyError):
        return False
    return owner.pw_gid == st.st_gid and set(group.gr_mem) <= {owner.pw_name}


def _untrusted(st: os.stat_result) -> str | None:
    """Why a ``.env`` with this status is not the user's to trust, or None."""
    if not stat.S_ISREG(st.st_mode):
        return "it is not a regular file"
    uid = os.getuid() if hasattr(os, "getuid") else None
    if uid is None:
        return None  # Windows: no owners to compare
    if st.st_uid not in (uid, 0):
        return "it belongs to another user"
    if st.st_mode & stat.S_IWOTH or (st.st_mode & stat.S_IWGRP and not _private_group(st)):
        return "other users may write it (chmod go-w)"
    return None


def _read_trusted(path: Path) -> str | None:
    """The text of ``path`` if the user may trust it (see the module's docstring); None when
    there is none, and a warning when there is one that is not read."""
    try:
        # O_NONBLOCK: a FIFO planted as .env must not hang the process that opens it.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0)
                     | getattr(os, "O_NONBLOCK", 0))
    except OSError:
        return None
    try:
        why = _untrusted(os.fstat(fd))  # the file opened, not whatever the path names now
        if why is None:
            with os.fdopen(fd, "rb", closefd=False) as fh:
                return fh.read().decode("utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    finally:
        os.close(fd)
    log.warning("ignoring %s: %s; its variables were not loaded", path, why)
    return None


def load(directory: str | os.PathLike[str] | None = None,
         environ: MutableMapping[str, str] | None = None) -> list[str]:
    """Add the variables of ``<directory>/.env`` (default: the working directory) that the
    environment does not set yet; returns their names. Each file is read once per process;
    one the user may not trust is skipped with a warning (see the module's docstring)."""
    env = os.environ if environ is None else environ
    path = Path(directory if directory is not None else Path.cwd()) / ".env"
    try:
        resolved = path.resolve()
    except OSError:
        return []
    if environ is None and resolved in _loaded:
        return []
    if environ is None:
        _loaded.add(resolved)  # read, or refused, once: one warning per process
    if _job_refuses(resolved):
        if resolved.exists():
            log.warning("ignoring %s: a job reads .env only from its own project folder "
                        "(this folder is written by every job of the worker)", path)
        return []
    text = _read_trusted(resolved)
    if text is None:
        return []
    values, bad = parse(text)
    if bad:  # "lines 1 are not KEY=value" (a QA pass); the first ten, then how many more
        numbers = ", ".join(map(str, bad[:10])) + (f" and {len(bad) - 10} more"
                                                   if len(bad) > 10 else "")
        log.warning("%s: %s not KEY=value and %s skipped", path,
                    f"lines {numbers} are" if len(bad) > 1 else f"line {numbers} is",
                    "were" if len(bad) > 1 else "was")
    added = [k for k in values if k not in env]
    for key in added:
        env[key] = values[key]
        if environ is None:
            _origins[key] = path
    if added:
        log.debug("%s: set %s", path, ", ".join(added))  # names only, never values
    return added
