"""A plain script's imports from the worker's shared folder, said in its log.

A plain script (not an uploaded project) lands in the worker's shared folder, which holds
whatever other jobs' scripts were written there, of any project, in the version written last.
Its folder is on its import path last (as ``python script.py`` would have it, but after
everything installed), so ``import helper`` finds a ``helper.py`` only if some earlier job on
this worker left one: a job failed on a fresh worker, passed once another pipeline had run,
and then ran that pipeline's old ``helper.py`` after the user edited theirs (QA). Nothing said
which. So the folder's finder is wrapped in the job's process: a module found there is named
on stderr, with what to do (submit the folder as a project, whose files travel with the job).
Only top-level modules found in that one folder pay anything; everything else imports as it
would. The worker adds a hint of its own when such an import fails (worker/attempt.py).

Under ``--run-as`` the folder is the job user's to write, and every job of the worker runs as
that user: a module one job left there (``ujson.py``, or a worker's helper it replaced) would
run in the next job that imports the name, with that job's token. There a module is imported
from the folder only when the worker wrote it: a Python source file owned by the worker's uid,
checked again on the file the loader reads (:func:`_owned_loader`); anything else is not found,
and said so. The same rule holds in every interpreter such a job starts itself (``python -c``,
``python -m`` and ``python other.py`` put their working directory or script's folder, the
shared folder, first on their path): the worker puts ``jobsite/`` (:func:`site_dir`) first on
its jobs' ``PYTHONPATH``, whose ``sitecustomize`` wraps the folder's finder as :func:`wrap`
does here.

A fresh interpreter's job (runner="subprocess", worker/fresh.py) runs this file's code
before the script, rather than importing Titan (~10 ms there, most of it ``typing``): so it
imports nothing but ``sys`` (not even ``__future__``: its annotations are strings). It loads
the code from the file's cached bytecode, as an import would: compiling the file cost each
such job ~0.5 ms of CPU, and ``__future__`` ~0.2 ms (issue 17).
"""

import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

#: How a job's log names the remedy (also the worker's hint for a failed import).
ADVICE = ("submit the folder as a project (is_archive=True, or `titan files upload`) so its "
          "files travel with the job")


class _Said:
    """The shared folder's own finder, saying what it finds."""

    def __init__(self, inner: "Any", folder: str) -> None:
        self._inner, self._folder = inner, folder
        self._said: set[str] = set()

    def find_spec(self, fullname: str, target: "Any" = None) -> "Any":
        spec = self._inner.find_spec(fullname, target)
        if spec is not None:
            trusted = _worker_uid(self._folder)
            if trusted is not None:  # --run-as: only what the worker wrote imports
                why = _foreign(spec, trusted)
                if why is not None:
                    _say(f"titan: not importing {fullname!r} from the worker's shared folder: "
                         f"{why}, written by a job, not by the worker (a job of this worker "
                         f"may not run code in another): {ADVICE}\n")
                    return None
                spec.loader = _owned_loader(spec.loader, trusted)
        if spec is not None and fullname not in self._said:
            self._said.add(fullname)
            try:
                sys.stderr.write(
                    f"titan: module {fullname!r} comes from the worker's shared folder "
                    f"({spec.origin or self._folder}), where an earlier job left it; it was "
                    f"not uploaded with this job and may not be your version: {ADVICE}\n")
                sys.stderr.flush()
            except (OSError, ValueError):
                pass
        return spec

    def invalidate_caches(self) -> None:
        self._inner.invalidate_caches()


def _say(text: str) -> None:
    try:
        sys.stderr.write(text)
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


def _worker_uid(folder: str) -> "int | None":
    """Under ``--run-as`` (this job's uid is not the owner of the workspace, the root
    worker's ``titan_workspace`` above ``shared/``): the worker's uid, the one owner of a
    file in the shared folder that is not some job's. None otherwise: a job of a worker
    without ``--run-as`` runs as the worker's uid, and could write anything it could."""
    import os

    path = folder
    while True:
        parent = os.path.dirname(path)
        if os.path.basename(path) == "shared" or parent == path:
            break
        path = parent
    if os.path.basename(path) != "shared":
        return None
    try:
        owner = os.stat(os.path.dirname(path)).st_uid
    except OSError:
        return None
    return owner if owner != os.getuid() else None


def _foreign(spec: "Any", trusted: int) -> "str | None":
    """Why a module found in the shared folder is not the worker's: not a plain source file
    (a namespace package's directory, an extension or a bytecode file, which no worker writes
    there), or one another uid owns (a job wrote it, or replaced the worker's)."""
    import os

    origin = spec.origin
    if not isinstance(origin, str) or not origin.endswith(".py"):
        return f"{origin or spec.name} is no Python source file the worker wrote"
    try:
        st = os.lstat(origin)
    except OSError as exc:
        return f"{origin}: {exc.strerror}"
    if st.st_uid != trusted:
        return f"{origin} belongs to uid {st.st_uid}"
    return None


def _owned_loader(loader: "Any", trusted: int) -> "Any":
    """``loader`` reading only files ``trusted`` owns, checked on the open file (a job could
    swap the file between :func:`_foreign` and the read); a bytecode file a job left in
    ``__pycache__`` is then skipped and the source compiled instead."""
    import os

    base = sys.modules["_frozen_importlib_external"].SourceFileLoader
    if type(loader) is not base:
        return loader

    class Owned(base):  # type: ignore[misc, valid-type]
        def get_data(self, path: str) -> bytes:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
            try:
                if os.fstat(fd).st_uid != trusted:
                    raise PermissionError(f"{path} was not written by the worker")
                chunks: list[bytes] = []
                while True:
                    chunk = os.read(fd, 1 << 20)
                    if not chunk:
                        return b"".join(chunks)
                    chunks.append(chunk)
            finally:
                os.close(fd)

        def set_data(self, path: str, data: bytes, *, _mode: int = 0o666) -> None:
            return None  # no bytecode of the job's own making beside the worker's files

    return Owned(loader.name, loader.path)


def watch(folder: str) -> None:
    """Wrap the finder of ``folder`` (a path on ``sys.path``) in this process; a no-op when
    it is wrapped already (the zygote wraps a folder once, before forking: :func:`ahead`)."""
    if isinstance(sys.path_importer_cache.get(folder), _Said):
        return
    finder = wrap(folder)
    if finder is not None:
        sys.path_importer_cache[folder] = finder


def wrap(folder: str) -> "Any":
    """The finder of ``folder`` wrapped to say (and under ``--run-as`` check) what it finds;
    None when no path hook takes the folder. Also what the path hook of a job's own
    interpreters calls (jobsite/sitecustomize.py), which it skips, being it."""
    for hook in sys.path_hooks:
        if getattr(hook, "titan_shared", False):
            continue
        try:
            inner = hook(folder)
        except ImportError:
            continue
        return _Said(inner, folder)
    return None


def site_dir() -> str:
    """The folder a ``--run-as`` worker puts first on its jobs' ``PYTHONPATH``: its
    ``sitecustomize`` gives the interpreters a job starts itself (``python -c``, ``-m``, from
    the shared folder it starts in) this module's rule for that folder. Worked out once: the
    worker asks for every job it starts."""
    global _site
    if _site is None:
        import os

        _site = os.path.join(os.path.dirname(os.path.abspath(__file__)), "jobsite")
    return _site


_site: "str | None" = None


def ahead(request: "dict[str, Any]", done: set[str]) -> None:
    """In the zygote, before it forks the child of ``request``: wrap the finder of the
    folder a plain script's child puts on its path (titan.worker.child.run_script), once per
    folder (``done``), so the children after find it made (and :func:`watch` does nothing).
    Made in each child, it cost ~25 copy-on-write faults a job (the path hooks' Python code:
    a zip importer tried and refused, a FileFinder built). The folder is not on the zygote's
    own path, so its own imports never look there; a child whose folder comes out otherwise
    (a relative script) wraps its own, as before."""
    script = request.get("script")
    if request.get("own_folder") or type(script) is not str or not script.startswith("/"):
        return
    key = script.rpartition("/")[0]
    if key in done:
        return
    done.add(key)
    import os

    watch(os.path.dirname(os.path.abspath(script)))
