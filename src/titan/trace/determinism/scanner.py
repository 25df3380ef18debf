"""The file a static analysis reads: names through its imports, its scopes, its findings.

:class:`Scanner` is the base of the analysis' visitors (:mod:`~titan.trace.determinism.static`,
:mod:`~titan.trace.determinism.ordering`): it resolves a name to what it was imported as, tells
what a name was last given, and records findings, one per kind and line, except inside a block
that a replay skips.
"""

from __future__ import annotations

import ast
import builtins
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from titan.trace.determinism.findings import Finding, make
from titan.trace.determinism.scopes import Pos, Scope

BUILTINS = frozenset(dir(builtins))

WHY = {
    "wall_clock": "reads the wall clock: another value on every run and replay",
    "uuid": "draws random bytes: another id on every run and replay",
    "unseeded_random": "draws from an unseeded generator: other numbers on every run",
    "numpy_random": "draws from an unseeded NumPy generator: other numbers on every run",
    "pid": "reads the process id: another one on every run",
    "env_read": "reads the environment: a run elsewhere may see another value",
    "set_iteration": "iterates a set, whose order changes between processes "
                     "(PYTHONHASHSEED)",
    "str_hash": "is salted per process for str and bytes (PYTHONHASHSEED)",
    "float_equality": "compares floats exactly: a rounding difference flips it",
    "network_io": "calls the network: a replay that runs it again may get another answer",
    "database_io": "opens a database: what its queries read is not recorded, and a replay "
                   "reads the database as it is by then",
    "file_io": "touches the file system: a replay that runs it again may see other content",
    "store_read": "reads a key that no file of the run writes: a replay reads whatever it "
                  "holds by then",
}
# I/O in a pure=True tool or action is recorded, and served by every replay but --verify,
# which runs it again: no "Unrecorded network call" (critical, "wrap it in a @titan.tool")
# but its own kind, whose fix is to drop pure=True (a QA pass). Title and severity by what
# it reads.
PURE_IO = {
    "network_io": ("Network call in a pure tool, re-run by --verify", "medium"),
    "database_io": ("Database query in a pure tool, re-run by --verify", "medium"),
    "file_io": ("File I/O in a pure tool, re-run by --verify", "low"),
    "store_read": ("Store read in a pure tool, re-run by --verify", "low"),
}
# Why a finding inside a block that records stays a finding (see the module docstring).
STILL_RUNS = {
    "pure": "It runs inside a pure=True tool or action, which a --verify replay runs again "
            "and compares.",
    "action": "A `with titan.trace.action(...) as a` block runs again on replay: under `if "
              "not a.replayed:` its result would be served from the recording.",
}


class Scanner(ast.NodeVisitor):
    """A visitor of one file that records findings (subclasses say what to look for)."""

    def __init__(self, path: str, source: str, tree: ast.Module) -> None:
        self.path, self.source, self.tree = path, source, tree
        self.lines = source.splitlines(keepends=True)
        self.findings: dict[tuple[str, int], Finding] = {}
        self.scopes: list[Scope] = []
        # Blocks that record, innermost last: "served" (skipped on replay: a tool's body, an
        # action's `if not a.replayed:`), "pure" (run again by --verify), "action" (run again).
        self.boundary: list[str] = []
        # One walk for what the visit needs to know in advance, wherever in the file it is.
        self.aliases: dict[str, str] = {}
        self.calls: list[ast.Call] = []  # those with arguments
        self.assigns: list[ast.Assign | ast.AnnAssign] = []
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                _alias(node, self.aliases)
            elif isinstance(node, ast.Call) and (node.args or node.keywords):
                self.calls.append(node)
            elif isinstance(node, ast.Assign | ast.AnnAssign):
                self.assigns.append(node)

    def run(self) -> list[Finding]:
        with self.scope(self.tree):
            self.generic_visit(self.tree)
        return list(self.findings.values())

    # -- names ---------------------------------------------------------------------------

    def qualname(self, node: ast.AST) -> str:
        """``node`` as a dotted name through the imports; ``<expr>`` for what has none."""
        if isinstance(node, ast.Name):
            if node.id in self.aliases:
                return self.aliases[node.id]
            return f"builtins.{node.id}" if node.id in BUILTINS else node.id
        if isinstance(node, ast.Attribute):
            return f"{self.qualname(node.value)}.{node.attr}"
        return "<expr>"

    def lookup(self, name: str, pos: Pos) -> ast.expr | bool | None:
        """The value ``name`` was last given before ``pos``, in the innermost scope that
        assigns it; None when no scope does."""
        # Class bodies get no scope here: their names are not visible from their methods.
        for depth, scope in enumerate(reversed(self.scopes)):
            entries = scope.assigned.get(name)
            if not entries:
                continue
            if depth == 0:
                before = [value for end, value in entries if end <= pos]
                # A use before every assignment is a loop's next turn: the last one holds.
                return before[-1] if before else entries[-1][1]
            return entries[-1][1]  # an enclosing scope: it ran to its end before the call
        return None

    # -- findings ------------------------------------------------------------------------

    def report(self, node: ast.AST, kind: str, severity: str, title: str | None = None,
               quote: str | None = None, why: str | None = None,
               boundary: Iterable[str] | None = None) -> Finding | None:
        """Record a finding at ``node`` unless it is inside a block a replay skips."""
        inside = tuple(self.boundary if boundary is None else boundary)
        line = getattr(node, "lineno", 1)
        if inside and inside[-1] == "pure" and kind in PURE_IO:
            why, (title, severity) = why or WHY[kind], PURE_IO[kind]
            kind = "pure_io"
        if "served" in inside or (kind, line) in self.findings:
            # Served: the code does not run on replay. Seen: one finding per kind and line
            # (`random.choice(random.sample(...))`).
            return None
        quote = " ".join((quote or self.segment(node)).split())
        if len(quote) > 80:
            quote = quote[:77] + "..."
        description = f"`{quote}` {why or WHY[kind]}."
        if inside:
            description += " " + STILL_RUNS[inside[-1]]
        code = self.lines[line - 1].strip() if 0 < line <= len(self.lines) else None
        found = self.findings[(kind, line)] = make(kind, severity, description, title=title,
                                                   file=self.path, line=line, code=code)
        return found

    def segment(self, node: ast.AST) -> str:
        """The source of ``node`` (``ast.get_source_segment`` splits the whole file each
        call: too slow for a file with many findings)."""
        first, last = getattr(node, "lineno", 0), getattr(node, "end_lineno", None)
        if not first or last is None or last > len(self.lines):
            return ""
        # Column offsets count UTF-8 bytes.
        chunk = [line.encode() for line in self.lines[first - 1:last]]
        chunk[-1] = chunk[-1][:getattr(node, "end_col_offset", None) or 0]
        chunk[0] = chunk[0][getattr(node, "col_offset", 0):]
        return b"".join(chunk).decode(errors="replace")

    # -- scopes and blocks that record --------------------------------------------------

    @contextmanager
    def scope(self, node: ast.AST) -> Iterator[None]:
        self.scopes.append(Scope(node))
        try:
            yield
        finally:
            self.scopes.pop()

    @contextmanager
    def within(self, label: str | None) -> Iterator[None]:
        if label is not None:
            self.boundary.append(label)
        try:
            yield
        finally:
            if label is not None:
                self.boundary.pop()


def _alias(node: ast.Import | ast.ImportFrom, names: dict[str, str]) -> None:
    """Record local name -> what it was imported as (any import in the file counts)."""
    if isinstance(node, ast.Import):
        for alias in node.names:
            if alias.asname:
                names[alias.asname] = alias.name
            else:
                top = alias.name.split(".")[0]
                names[top] = top
    elif not node.level and node.module:
        for alias in node.names:
            names[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    elif node.level:
        # Relative (``from .helpers import stamp``): dotted from where the file is, so the
        # call graph (callers.py) finds the local module; no library is named so.
        module = f"{node.module}." if node.module else ""
        for alias in node.names:
            if alias.name != "*":
                names[alias.asname or alias.name] = "." * node.level + module + alias.name

