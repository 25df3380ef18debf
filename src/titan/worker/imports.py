"""Which modules a job script imports, read from its source: the worker forks a script from
the lean zygote when everything it imports is already loaded there.

Fork, the child's copy-on-write faults and its exit cost by the page, so a child of the
lean zygote (13 MB) costs about 1 ms of CPU less than one of the full zygote (34 MB, with
httpx, the SDK and the trace recorder preloaded). The catch is a script that needs what
only the full one has: it would import it in every child. So a script goes lean only when
its imports are known, statically, to be there: every ``import a.b`` anywhere in the file
(functions included) names a module the lean zygote reported as loaded, and every ``from
p import x`` a loaded ``p`` whose ``x`` is an attribute or a loaded submodule (for a
package, ``x`` is a submodule when its file is in the package's directory). A relative
import, ``__import__``, ``importlib.import_module`` or a source that does not parse send
it to the full zygote: a wrong "full" costs ~1 ms, a wrong "lean" the whole import.

The answer is cached per file version (path, size, mtime, inode): a DAG of 500 jobs on one
script reads and parses it once.
"""

from __future__ import annotations

import ast
import functools
import os
import threading
from collections import OrderedDict
from pathlib import Path

#: Dynamic imports the scan cannot follow.
_DYNAMIC = ("__import__", "import_module")
_CACHE_SIZE = 512
_MAX_BYTES = 1 << 20  # a larger script is not worth parsing for a millisecond

_cache: OrderedDict[tuple[str, int, int, int], frozenset[tuple[str, tuple[str, ...]]] | None] \
    = OrderedDict()
_lock = threading.Lock()


Use = tuple[str, tuple[str, ...]]  # (module, names imported from it; () for ``import``)


def imported(source: str) -> frozenset[Use] | None:
    """What ``source`` imports — ``("a.b", ())`` for ``import a.b``, ``("p", ("x", "y"))``
    for ``from p import x, y`` — or None when it cannot all be known (relative or dynamic
    imports, a syntax error)."""
    if any(name in source for name in _DYNAMIC):
        return None
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return None
    uses: set[Use] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            uses.update((alias.name, ()) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level or not node.module:
                return None  # relative: a module of the job's own
            uses.add((node.module, tuple(alias.name for alias in node.names)))
    return frozenset(uses)


def script_imports(path: Path) -> frozenset[Use] | None:
    """:func:`imported` of the file at ``path``, cached by its version; None when it cannot
    be read."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    key = (str(path), st.st_size, st.st_mtime_ns, st.st_ino)
    with _lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
    if st.st_size > _MAX_BYTES:
        found = None
    else:
        try:
            found = imported(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError):
            found = None
    with _lock:
        _cache[key] = found
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return found


@functools.lru_cache(maxsize=1024)
def _submodule(paths: tuple[str, ...], name: str) -> bool:
    """Whether ``name`` is a module file or package directory in a package's ``paths``
    (installed packages do not change under a running worker: cached)."""
    for base in paths:
        try:
            entries = os.listdir(base)
        except OSError:
            continue
        if name in entries or any(e.partition(".")[0] == name and e.endswith((".py", ".so"))
                                  for e in entries):
            return True
    return False


def fits(path: Path, loaded: frozenset[str], packages: dict[str, list[str]]) -> bool:
    """Whether everything the script at ``path`` imports is among ``loaded`` (the lean
    zygote's modules; ``packages`` maps those that are packages to their directories)."""
    uses = script_imports(path)
    if uses is None:
        return False
    for module, names in uses:
        if module not in loaded:
            return False
        if module in packages:
            for name in names:
                if name == "*" or (f"{module}.{name}" not in loaded
                                   and _submodule(tuple(packages[module]), name)):
                    return False
    return True
