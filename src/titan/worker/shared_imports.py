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


def watch(folder: str) -> None:
    """Wrap the finder of ``folder`` (a path on ``sys.path``) in this process; a no-op when
    it is wrapped already (the zygote wraps a folder once, before forking: :func:`ahead`)."""
    if isinstance(sys.path_importer_cache.get(folder), _Said):
        return
    for hook in sys.path_hooks:
        try:
            inner = hook(folder)
        except ImportError:
            continue
        sys.path_importer_cache[folder] = _Said(inner, folder)
        return


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
