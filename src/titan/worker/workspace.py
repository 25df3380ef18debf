"""The worker's workspace on disk: where scripts land and where jobs run.

Layout under ``<workdir>/titan_workspace/``::

    shared/                   every DAG job's cwd; scripts materialized at their relative path
    projects/<name>-<sha12>/  an uploaded project archive, extracted once per content hash
    .cache/blobs/<sha>        script bodies by content hash
    .cache/files/<sha>.zip    project archives by content hash

Scripts of jobs running concurrently may share a path, so a script is written only when its
content differs, and always atomically (temporary file + ``os.replace``): a job starting while
another rewrites the file sees the old or the new file, never half of one. Which one matters
when two projects' scripts share a name (``main.py``): a Python or shell job reads its code
from the blob it was given (:attr:`Script.source`; forked, :mod:`titan.worker.child`; in a
fresh interpreter or bash, :mod:`titan.worker.fresh`), so it runs its own version whatever
the path holds by then. Other executables are run from the path, so there only the version
written last is sure to run: give such scripts names of their own.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import stat
import threading
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from urllib.parse import quote

from titan import errors
from titan.client.data_dirs import WORKSPACE_DIR, master_data_dir_around
from titan.permissions import make_dirs, require_owned, swappable_by_others
from titan.worker.connection import MasterConnection
from titan.worker.safe_paths import (
    extract_zip,
    open_beneath,
    read_beneath,
    replace_beneath,
    safe_relative,
)

log = logging.getLogger("titan.worker")

_SHA256 = re.compile(r"^[0-9a-f]{64}\Z")


@dataclass(frozen=True)
class Script:
    """A job's script, ready to run: its path and what the interpreter needs besides."""

    path: Path
    #: Extra ``sys.path`` entries after the script's own directory (an archive's root).
    sys_path: list[str] = field(default_factory=list)
    #: The extracted project root of an archive job, else None.
    project_dir: Path | None = None
    #: The blob the script was written from (content-addressed: never rewritten), for a
    #: script in ``shared/``. A forked job reads its code from here, so another version
    #: written at the same path meanwhile (a job of another project with the same script
    #: name) cannot change what it runs.
    source: Path | None = None


def _touch(path: Path) -> bool:
    """Mark a cached blob used now (the eviction keeps what was used lately); False when it
    is gone."""
    try:
        os.utime(path)
    except FileNotFoundError:
        return False
    except OSError:  # read-only or foreign: it is there, just not marked
        pass
    return True


class Workspace:
    """Materializes scripts and archives for jobs; safe to use from several threads."""

    def __init__(self, workdir: str | os.PathLike[str], conn: MasterConnection, *,
                 private: bool = True) -> None:
        folder = Path(workdir).resolve()
        self.root = folder / WORKSPACE_DIR
        held = master_data_dir_around(self.root)
        if held is not None:  # a job's relative path (../../admin.token) would reach it
            raise errors.ConfigError(
                f"--workdir {workdir}: jobs would run in {self.root}, inside {held}, a Titan "
                "master's data dir (its tokens and database), where no job may run: give the "
                "worker a --workdir outside it")
        self.shared = self.root / "shared"
        self.projects = self.root / "projects"
        cache = self.root / ".cache"
        self.blob_cache = cache / "blobs"
        self.file_cache = cache / "files"
        try:
            # Modes of their own, not the umask's: under umask 000 any local user could write
            # here (rename titan_workspace and put theirs in its place, rewrite a cached blob).
            make_dirs(self.root, 0o700 if private else 0o755)
            for path in (self.shared, self.projects, self.blob_cache, self.file_cache):
                make_dirs(path, 0o755)
        except OSError as exc:  # a --workdir that is a file, or not writable: one line
            raise errors.ConfigError(f"--workdir {workdir}: cannot make the workspace there "
                                     f"({exc.strerror or exc})") from None
        # Another user's workspace is refused, not used: they could have planted scripts or
        # cached blobs (run without a second look) before this worker made it 0700. Its job
        # directories are not walked: under --run-as the job user owns what jobs wrote.
        require_owned([self.root, self.shared, self.projects, cache, self.blob_cache,
                       self.file_cache], "worker")
        require_owned([*self.blob_cache.rglob("*"), *self.file_cache.rglob("*")], "worker")
        if (open_to_all := swappable_by_others(folder)) is not None:
            raise errors.ConfigError(
                f"--workdir {workdir}: {open_to_all} may be written by any local user (no "
                "sticky bit), who could put a workspace of their own in place of this "
                f"worker's while it runs: `chmod o-w {open_to_all}`, or choose another folder")
        for path in (self.root, cache, self.blob_cache, self.file_cache, self.projects):
            path.chmod(stat.S_IMODE(path.stat().st_mode) & ~0o022)  # made looser before
        if private:
            # Jobs' scripts, archives and outputs are the worker's user's alone: another local
            # user could read them all (0755). Not under --run-as, whose job user must reach
            # shared/ and projects/ (isolation.py checks that it can).
            self.root.chmod(0o700)
        self._conn = conn
        self._lock = threading.Lock()
        self._key_locks: dict[str, threading.Lock] = {}
        # What this worker last wrote at each script path, with the stat it left behind: a
        # hot script is then checked with one stat() instead of a read and a compare.
        self._written: dict[Path, tuple[str, int, int, int]] = {}

    def _key_lock(self, key: str) -> threading.Lock:
        # One fetch or extraction per blob/archive at a time: concurrent jobs of a new DAG
        # all need the same script, and only one of them should download it.
        with self._lock:
            return self._key_locks.setdefault(key, threading.Lock())

    # ------------------------------------------------------------------ blobs

    def blob(self, sha256: str) -> bytes:
        """The bytes of blob ``sha256``, from the cache or fetched once from the master."""
        sha = sha256.lower()
        if not _SHA256.match(sha):
            raise errors.ValidationFailed(f"invalid script hash {sha256!r}")
        path = self._blob_path(sha)
        with self._key_lock(sha):  # the eviction's too: it never takes a blob being read
            try:
                data = path.read_bytes()
            except FileNotFoundError:
                self._conn.download(f"/blobs/{sha}", path, expect_sha256=sha)
                return path.read_bytes()
            _touch(path)
            return data

    def _blob_path(self, sha: str) -> Path:
        return self.blob_cache / sha[:2] / sha

    def cached(self, filename: str, sha256: str) -> Script | None:
        """The script at ``shared/<filename>`` if this worker wrote blob ``sha256`` there and
        it is unchanged since (one lstat, no I/O beyond it); None otherwise."""
        dest = self.shared / safe_relative(filename)
        try:
            st = dest.lstat()
        except (FileNotFoundError, NotADirectoryError):
            return None
        sha = sha256.lower()
        if self._written.get(dest) == (sha, st.st_mtime_ns, st.st_size, st.st_ino):
            source = self._blob_path(sha)
            with self._key_lock(sha):
                if not _touch(source):
                    return None  # evicted meanwhile: written again from a fresh fetch
            return Script(dest, source=source)
        return None

    def evict(self, older_than: float) -> int:
        """Delete the cached blobs last used before ``older_than`` (epoch seconds), each
        under its key's lock (a job reading it, or given its path, touched it first); how
        many went. Their scripts in ``shared/`` stay: jobs may import them."""
        gone = 0
        for path in self.blob_cache.glob("??/*"):
            sha = path.name
            if not _SHA256.match(sha):
                continue
            with self._key_lock(sha):
                with contextlib.suppress(FileNotFoundError):
                    if path.stat().st_mtime < older_than:
                        path.unlink()
                        gone += 1
            with self._lock:
                lock = self._key_locks.get(sha)
                if lock is not None and not lock.locked() and not path.exists():
                    del self._key_locks[sha]
        with self._lock:  # what this worker wrote where no longer names a cached blob
            self._written = {d: w for d, w in self._written.items()
                             if self._blob_path(w[0]).exists()}
        return gone

    def materialize(self, filename: str, sha256: str) -> Script:
        """Write blob ``sha256`` at ``shared/<filename>`` (only if it differs) and return it.

        Jobs write in ``shared/`` too, so nothing there is trusted: every directory on the
        way is opened without following a symbolic link (a job's ``ln -s ~/.titan d`` must
        not make the worker write ``d/admin.token`` there), and the file is replaced, never
        written through."""
        if (script := self.cached(filename, sha256)) is not None:
            return script
        rel = safe_relative(filename)
        dest = self.shared / rel
        sha = sha256.lower()
        data = self.blob(sha)
        with self._key_lock(str(dest)):
            directory = open_beneath(self.shared, rel.parts[:-1])
            try:
                name = rel.parts[-1]
                if read_beneath(directory, name) != data:
                    # .py files are run by an interpreter; anything else may be run directly.
                    replace_beneath(directory, name, data,
                                     0o644 if dest.suffix == ".py" else 0o755)
                st = os.stat(name, dir_fd=directory, follow_symlinks=False)
            finally:
                os.close(directory)
            self._written[dest] = (sha, st.st_mtime_ns, st.st_size, st.st_ino)
        return Script(dest, source=self._blob_path(sha))

    # ------------------------------------------------------------------ archives

    def archive(self, filename: str, sha256: str | None = None) -> Script:
        """Fetch ``<project>.zip``, extract it once, and return ``<project>/<entry>`` in it.

        ``sha256``: the upload the job was pinned to at submission, fetched as that blob
        (checked against it) unless cached already. None (a job stored before archives were
        pinned): the master is asked by name every time (its latest upload wins), and the
        body is only transferred when its hash is not cached yet.
        """
        rel = safe_relative(filename)
        if len(rel.parts) < 2:
            raise errors.ValidationFailed(
                f"archive job filename {filename!r} must be '<project>/<entry path>'"
            )
        project, entry = rel.parts[0], PurePosixPath(*rel.parts[1:])
        name = f"{project}.zip"
        if sha256 is not None:
            sha = sha256.lower()
            if not _SHA256.match(sha):
                raise errors.ValidationFailed(f"invalid project hash {sha256!r}")
            zip_path = self.file_cache / f"{sha}.zip"
            with self._key_lock(f"file:{sha}"):
                if not zip_path.is_file():  # written whole or not at all (and checked)
                    self._conn.download(f"/blobs/{sha}", zip_path, expect_sha256=sha)
        else:
            with self._key_lock(f"file:{name}"):
                known = frozenset(p.stem for p in self.file_cache.glob("*.zip"))
                tmp = self.file_cache / f".{name}.download"
                tmp.unlink(missing_ok=True)
                sha = self._conn.download(f"/files/{quote(name, safe='')}", tmp, known=known)
                zip_path = self.file_cache / f"{sha}.zip"
                if tmp.exists():
                    os.replace(tmp, zip_path)
        target = self.projects / f"{project}-{sha[:12]}"
        with self._key_lock(f"extract:{target.name}"):
            if not target.is_dir():
                extract_zip(zip_path, target)
        root = _project_root(target, project, entry)
        script = root / entry
        if not script.is_file():
            raise errors.ScriptNotFound(f"{entry} is not in {name}")
        return Script(script, sys_path=[str(root)], project_dir=root)


def _project_root(extracted: Path, project: str, entry: PurePosixPath) -> Path:
    """The directory the entry path is relative to.

    An archive made by zipping a folder may wrap everything in that folder's name; the entry
    is then looked up under it.
    """
    if (extracted / entry).exists():
        return extracted
    wrapped = extracted / project
    if (wrapped / entry).exists():
        return wrapped
    children = [p for p in extracted.iterdir() if not p.name.startswith(".")]
    if len(children) == 1 and children[0].is_dir() and (children[0] / entry).exists():
        return children[0]
    return extracted
