"""Helpers that only recording boundaries call: a call graph within the analysed files.

The body of a ``@titan.tool`` function (or of ``if not a.replayed:`` in an action block) does
not run on replay, and neither does a function that only such bodies call — directly or
through other such functions, in the same file or a local module: its clock read is recorded
with the tool's result. So a module-level function is *served* when every use of it is in a
served body or in another served function (itself excepted: recursion). A use is any
reference to it by name — a call, a callback passed along, a decorator — resolved through the
file's imports (absolute, relative, ``import helpers`` then ``helpers.stamp``) to the analysed
files. One use anywhere that runs on replay (module level, an action block's body, a
``pure=True`` tool, which ``--verify`` runs again), one the analysis cannot tell from another
file's function of that name, or none at all (called from outside the analysed files, as far
as anyone knows) keeps its findings.
"""

from __future__ import annotations

import posixpath
from typing import NamedTuple


class Use(NamedTuple):
    """A reference to a name: what the file's imports make of it, whether it is in a body a
    replay serves, and the module-level function it is in (None: module level, a class)."""

    name: str
    served: bool
    function: str | None


class File(NamedTuple):
    """What of one analysed file the call graph needs."""

    defs: frozenset[str]  # its module-level functions
    uses: list[Use]
    star: bool  # it imports * from somewhere: a bare name may be any file's function


Target = tuple[str, str]  # (path, function)


def module_name(path: str) -> str:
    """``pkg/helpers.py`` -> ``pkg.helpers``; ``pkg/__init__.py`` -> ``pkg``."""
    stem = posixpath.splitext(path.replace("\\", "/"))[0]
    parts = [p for p in stem.split("/") if p and p != "."]
    if parts and parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def served(files: dict[str, File]) -> dict[str, set[str]]:
    """Per path, the module-level functions only served bodies reach (see the module's text)."""
    modules = {path: module_name(path) for path in files}
    uses: dict[Target, list[tuple[bool, Target | None]]] = {}
    for path, file in files.items():
        for use in file.uses:
            targets = _resolve(use.name, path, file, files, modules)
            for target in targets:
                # A use that may be another file's function counts as running on replay.
                direct = use.served and len(targets) == 1
                within = (path, use.function) if use.function and len(targets) == 1 else None
                uses.setdefault(target, []).append((direct, within))
    found: set[Target] = set()
    changed = True
    while changed:
        changed = False
        for target, seen in uses.items():
            if target in found:
                continue
            others = [(direct, within) for direct, within in seen if within != target]
            if others and all(direct or within in found for direct, within in others):
                found.add(target)
                changed = True
    out: dict[str, set[str]] = {}
    for path, name in found:
        out.setdefault(path, set()).add(name)
    return out


def _resolve(name: str, path: str, file: File, files: dict[str, File],
             modules: dict[str, str]) -> list[Target]:
    """The analysed module-level functions ``name``, as used in ``path``, may be."""
    if "." not in name:
        if name in file.defs:
            return [(path, name)]
        if file.star:
            return [(p, name) for p, f in files.items() if name in f.defs]
        return []
    if name.startswith("."):  # from .helpers import stamp: next to this file, or above
        level = len(name) - len(name.lstrip("."))
        base = module_name(posixpath.dirname(path.replace("\\", "/")) + "/x.py").split(".")[:-1]
        base = base[:len(base) - (level - 1)] if level > 1 else base
        module, _, function = name[level:].rpartition(".")
        wanted = ".".join([*base, *([module] if module else [])])
        return [(p, function) for p, m in modules.items()
                if m == wanted and function in files[p].defs]
    module, _, function = name.rpartition(".")
    # Display paths are relative to the files' common directory, which may sit above or
    # below the directory imports start from: one dotted name ends the other.
    return [(p, function) for p, m in modules.items() if function in files[p].defs and m and (
        m == module or module.endswith("." + m) or m.endswith("." + module))]
