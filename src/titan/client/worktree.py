"""The working tree a run's code came from, for ``titan replay RUN --code current``.

A run records the files its driver used (:mod:`titan.trace.code`): its script, the local
modules it imported, the job scripts it submitted. A fix often adds one — a new stage script,
a helper module — which the recording cannot name, and a replay that sent only the recorded
paths failed on it (``ScriptNotFound``, ``ModuleNotFoundError``). So the current code of a
replay is the recorded files as they are now plus the Python and shell files beside them:
under the folder they share (their project), or, when that is a top folder (``/``, ``/tmp``,
the home folder: a job script in ``/tmp``, the driver in a project), under each file's own
folder, a top one without its subfolders. Bounded, as a project folder upload is
(:data:`titan.client.files.SKIP_DIRS`): caches, VCS and hidden folders, virtualenvs and
installed packages are skipped, symlinks pointing out of the tree, and files over
:data:`MAX_FILE_BYTES`; nearest first, at most
:data:`MAX_FILES` with the recorded ones.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from titan.client.containment import outside
from titan.client.files import SKIP_DIRS

#: At most this many files in a replay's code, the recorded ones included (the master's
#: limit: master/replays/service.py).
MAX_FILES = 500
MAX_FILE_BYTES = 1 << 20  # a .py file larger than this is data, not the agent's code
MAX_DEPTH = 8
MAX_DIRS = 2000  # folders looked into at most: a monorepo is not walked whole
SUFFIXES = (".py", ".sh")  # what a job script or an imported module can be
_SKIP = SKIP_DIRS | {"node_modules", "site-packages", "dist-packages"}


@dataclass
class Tree:
    """The files found beside a run's recorded ones, nearest first."""

    roots: list[str]
    files: list[str] = field(default_factory=list)
    #: Files found and left out past MAX_FILES, and whether the walk stopped at MAX_DIRS.
    left_out: int = 0
    cut: bool = False


def top(folder: str) -> bool:
    """A folder too broad to be one project's: ``/``, one level below it, the home folder."""
    return len(PurePosixPath(folder).parts) < 3 or folder == os.path.expanduser("~")


def roots(paths: Iterable[str]) -> list[str]:
    """The folders the working tree of the recorded ``paths`` lies in."""
    dirs = sorted({os.path.dirname(p) for p in paths})
    if not dirs:
        return []
    common = os.path.commonpath(dirs)
    if not top(common):
        return [common]
    # A top folder is searched without its subfolders, so it takes in none of them.
    kept = [d for d in dirs if top(d)]
    deep: list[str] = []
    for d in dirs:  # sorted: a folder comes before the ones below it
        if not top(d) and not any(d.startswith(k + "/") for k in deep):
            deep.append(d)
    return sorted(kept + deep)


def beside(paths: Iterable[str], room: int = MAX_FILES) -> Tree:
    """The files of the working tree of ``paths`` that are not among them: at most ``room``,
    those in a recorded file's own folder first, then by depth."""
    known = set(paths)
    homes = {os.path.dirname(p) for p in known}
    tree = Tree(roots(known))
    found: list[tuple[bool, int, str]] = []
    seen = 0
    for root in tree.roots:
        for dirpath, dirnames, filenames in os.walk(root):
            seen += 1
            depth = len(PurePosixPath(dirpath).relative_to(root).parts)
            if top(root) or depth >= MAX_DEPTH or seen >= MAX_DIRS:
                tree.cut = tree.cut or (bool(dirnames) and seen >= MAX_DIRS)
                dirnames[:] = []
            else:
                dirnames[:] = sorted(d for d in dirnames if not _skipped(dirpath, d))
            for name in filenames:
                full = os.path.join(dirpath, name)
                if name.endswith(SUFFIXES) and full not in known and _small(full) \
                        and not _leaves(full, root):
                    found.append((dirpath not in homes, depth, full))
    found.sort()
    tree.files = [f for _, _, f in found[:max(0, room)]]
    tree.left_out = len(found) - len(tree.files)
    return tree


def _skipped(parent: str, name: str) -> bool:
    if name in _SKIP or name.startswith("."):
        return True
    # A virtualenv, whatever its name (venv, env, .tox's): its packages are not the agent's.
    return os.path.isfile(os.path.join(parent, name, "pyvenv.cfg"))


def _leaves(path: str, root: str) -> bool:
    """A symlink pointing out of the tree: nobody named it, and it must not send the file it
    names (:mod:`titan.client.containment`); left out, as a file too large is."""
    return os.path.islink(path) and outside(Path(path), Path(root)) is not None


def _small(path: str) -> bool:
    try:
        return os.path.isfile(path) and os.path.getsize(path) <= MAX_FILE_BYTES
    except OSError:
        return False
