"""Run first by every Python interpreter a job of a ``--run-as`` worker starts itself.

A ``--run-as`` worker puts this folder first on its jobs' ``PYTHONPATH`` (worker/isolation.py),
so an interpreter a job starts — ``python -c …``, ``python -m …``, ``python other.py`` from a
shell script or a ``subprocess`` call — imports this module at start-up, before its working
directory (or its script's folder) goes first on ``sys.path``. A job starts in the worker's
shared folder, which every job of the worker may write (one uid): there ``import helper``
found a ``helper.py`` another job had planted, and ran it with this job's token.

So this puts a path hook first: an entry of ``sys.path`` at or under the job's shared folder
(``TITAN_WORKSPACE``) gets the finder a plain script's shared folder gets
(:mod:`titan.worker.shared_imports`): only ``.py`` files the worker wrote import from there.
The rule's code loads only when such an entry is first looked in. Then this folder leaves
``sys.path`` and the ``sitecustomize`` it stood in front of (Debian's, a venv's) runs, as it
would have.

Any Python 3 may run it (a job may start another interpreter): annotations in strings only,
nothing imported but ``os`` and ``sys``.
"""

import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


class _SharedFolder:
    """The path hook: the worker's rule for the shared folder, nothing for any other path."""

    titan_shared = True  # shared_imports.wrap skips it when it builds the inner finder

    def __init__(self, here: "str", roots: "tuple[str, ...]") -> None:
        self._here, self._roots = here, roots
        self._wrap: Any = None

    def __call__(self, path: "str") -> "Any":
        full = os.path.abspath(path)
        if not any(full == root or full.startswith(root + os.sep) for root in self._roots):
            raise ImportError("not the worker's shared folder")
        if self._wrap is None:
            rules = {"__name__": "titan_shared_imports"}
            loader = sys.modules["_frozen_importlib_external"].SourceFileLoader
            source = os.path.join(os.path.dirname(self._here), "shared_imports.py")
            exec(loader("titan_shared_imports", source).get_code(None), rules)
            self._wrap = rules["wrap"]
        finder = self._wrap(full)
        if finder is None:
            raise ImportError("no finder for " + full)
        return finder


def _install() -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if not p or os.path.abspath(p) != here]
    shared = os.environ.get("TITAN_WORKSPACE", "")
    if shared:
        roots = tuple({os.path.abspath(shared), os.path.realpath(shared)})
        sys.path_hooks.insert(0, _SharedFolder(here, roots))
        for cached in list(sys.path_importer_cache):  # looked in before this ran: look again
            if any(cached == root or cached.startswith(root + os.sep) for root in roots):
                del sys.path_importer_cache[cached]
    mine = sys.modules.pop("sitecustomize", None)
    try:
        import sitecustomize  # noqa: F401 - the one this stood in front of, if any
    except ImportError as exc:
        if exc.name != "sitecustomize":
            raise
        if mine is not None:
            sys.modules["sitecustomize"] = mine


_install()
