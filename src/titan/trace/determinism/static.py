"""Static analysis: non-deterministic calls and iteration orders in a script's source.

The source is parsed with :mod:`ast`, never imported or run. Calls are resolved through the
file's imports to qualified names (``from datetime import datetime as dt; dt.now()`` is
``datetime.datetime.now``) and looked up in :mod:`titan.trace.determinism.patterns`.

What Titan records is not a problem: ``titan.trace.now()/uuid()/random()`` are the fix, and the
body of a ``@titan.tool`` function, or of ``if not a.replayed:`` in a ``with
titan.trace.action(...) as a`` block, does not run on replay (its recorded result is served):
nothing in it is a finding, nor in a function only such bodies call (:mod:`.callers`). The
rest of an action block runs again, and a ``pure=True`` tool or action runs again under
``--verify``: their findings stay, saying so. TitanStore and artifact
reads are judged by :mod:`titan.trace.determinism.keys`.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from typing import NamedTuple

from titan.trace.determinism import callers, keys, patterns
from titan.trace.determinism.findings import Finding, make
from titan.trace.determinism.ordering import SetOrder


def scan(path: str, source: str) -> list[Finding]:
    """The static findings of one file, as if it were the run's only file."""
    return scan_run({path: source})


class Reading(NamedTuple):
    """What the static analysis of a run's files found, and the tools they define."""

    findings: list[Finding]
    #: The recorded name of each ``@titan.tool`` function (its ``name=``, else the function's
    #: name) -> whether it is ``pure=True``: the dynamic analysis reads its outputs by it.
    tools: dict[str, bool]


def scan_run(files: dict[str, str]) -> list[Finding]:
    """The static findings of a run's files (path -> source), read together: a TitanStore
    key or artifact one of them writes is the run's own wherever it is read. A file that
    does not parse yields one low finding."""
    return read_run(files).findings


def read_run(files: dict[str, str]) -> Reading:
    """:func:`scan_run`'s findings, with the tools the files define."""
    findings: list[Finding] = []
    scanners: list[tuple[_Scanner, list[Finding]]] = []
    for path, source in files.items():
        try:
            scanner = _Scanner(path, source, ast.parse(source, filename=path))
            scanners.append((scanner, scanner.run()))
        except (SyntaxError, ValueError) as exc:  # ValueError: null bytes in the source
            findings.append(_unparsable(path, source, exc))
        except RecursionError:  # the visitor recurses: an expression nested thousands deep
            findings.append(make("unparsable", "low", "The file is nested too deeply to "
                                 "analyse.", file=path))
    # A helper that only tool bodies call does not run on replay either: its findings go.
    served = callers.served({s.path: callers.File(s.defs, s.uses, s.star) for s, _ in scanners})
    written = {key for scanner, _ in scanners for key in scanner.writes}
    for scanner, found in scanners:
        mine = served.get(scanner.path, set())
        findings.extend(f for f in found if scanner.owner.get((f.kind, f.line)) not in mine)
        findings.extend(scanner.foreign_reads(written, mine))
    tools: dict[str, bool] = {}
    for scanner, _ in scanners:
        for name, pure in scanner.tools.items():
            tools[name] = tools.get(name, False) or pure  # one pure definition re-runs it
    return Reading(findings, tools)


def _unparsable(path: str, source: str, exc: SyntaxError | ValueError) -> Finding:
    line = getattr(exc, "lineno", None)
    lines = source.splitlines()
    code = lines[line - 1].strip() if line and 0 < line <= len(lines) else None
    msg = getattr(exc, "msg", None) or str(exc)
    return make("unparsable", "low", f"The file does not parse ({msg}); it was not analysed.",
                file=path, line=line, code=code)


class _Scanner(SetOrder):
    """Non-deterministic calls, blocks that record them, and TitanStore keys."""

    def __init__(self, path: str, source: str, tree: ast.Module) -> None:
        super().__init__(path, source, tree)
        self.actions: list[dict[str, bool]] = []  # per open action block: `as` name -> pure
        self.writes: set[str] = set()  # shapes of the TitanStore keys this file writes
        self.reads: list[tuple[ast.Call, str, tuple[str, ...]]] = []  # (call, shape, boundary)
        self.artifacts: dict[int, keys.ArtifactFiles] = {}  # per scope node
        self.tools: dict[str, bool] = {}  # recorded name -> pure (see Reading)
        # For the call graph (callers.py): module-level functions, the names used, and the
        # module-level function each finding and read is in.
        self.defs = frozenset(n.name for n in tree.body
                              if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef))
        self._top = {id(n) for n in tree.body}
        self.star = any(isinstance(n, ast.ImportFrom) and any(a.name == "*" for a in n.names)
                        for n in ast.walk(tree))
        self.uses: list[callers.Use] = []
        self.function: str | None = None
        self.owner: dict[tuple[str, int | None], str | None] = {}
        self.read_in: dict[int, str | None] = {}  # id(read call) -> its function
        seeds = {self.qualname(c.func) for c in self.calls}
        self.random_seeded = "random.seed" in seeds
        self.numpy_seeded = "numpy.random.seed" in seeds

    def foreign_reads(self, written: set[str], served: set[str]) -> list[Finding]:
        """Findings for this file's reads of keys that none of ``written`` can be (but those
        in ``served`` functions, which only tool bodies call)."""
        found = []
        for call, key, boundary in self.reads:
            if self.read_in.get(id(call)) in served:
                continue
            if not keys.written(written, key):
                why = (f"reads `{key}`, a key that no file of the run writes: a replay reads "
                       "whatever it holds by then")
                finding = self.report(call, "store_read", "low", why=why, boundary=boundary)
                if finding is not None:
                    found.append(finding)
        return found

    # -- scopes and blocks that record --------------------------------------------------

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        for decorator in node.decorator_list:
            self.visit(decorator)
        self.visit(node.args)
        if node.returns is not None:
            self.visit(node.returns)
        label = None
        for d in node.decorator_list:
            if self.qualname(d.func if isinstance(d, ast.Call) else d) in patterns.TOOL_DECORATORS:
                label = "pure" if _pure(d) else "served"
                recorded = _tool_name(d, node.name)
                if recorded is not None:
                    self.tools[recorded] = self.tools.get(recorded, False) or label == "pure"
        outer = self.function
        if id(node) in self._top:
            self.function = node.name
        try:
            with self.scope(node), self.within(label):
                for stmt in node.body:
                    self.visit(stmt)
        finally:
            self.function = outer

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_Lambda(self, node: ast.Lambda) -> None:
        self.visit(node.args)
        with self.scope(node):
            self.visit(node.body)

    def visit_With(self, node: ast.With | ast.AsyncWith) -> None:
        # The items run before the action opens (its inputs are compared on replay, not
        # served): only the body is the action's. It runs again on replay, all but what
        # `if not a.replayed:` guards (visit_If).
        for item in node.items:
            self.visit(item)
        action, names = False, {}
        for item in node.items:
            call = item.context_expr
            if isinstance(call, ast.Call) and self.qualname(call.func) in patterns.ACTION_BLOCKS:
                action = True
                if isinstance(item.optional_vars, ast.Name):
                    names[item.optional_vars.id] = _pure(call)
        self.actions.append(names)
        try:
            with self.within("action" if action else None):
                for stmt in node.body:
                    self.visit(stmt)
        finally:
            self.actions.pop()

    visit_AsyncWith = visit_With

    def visit_If(self, node: ast.If) -> None:
        # `if not a.replayed:` in an action block is skipped on replay (the recorded outputs
        # are served), as is the `else` of `if a.replayed:`.
        self.visit(node.test)
        guard = self.replay_guard(node.test)
        served = None if guard is None else "pure" if guard[0] else "served"
        negated = guard is not None and guard[1]
        with self.within(served if negated else None):
            for stmt in node.body:
                self.visit(stmt)
        with self.within(served if not negated else None):
            for stmt in node.orelse:
                self.visit(stmt)

    def replay_guard(self, test: ast.expr) -> tuple[bool, bool] | None:
        """(the action is pure, the test is negated) when ``test`` is ``[not] a.replayed`` of
        an open action block ``a``; else None."""
        negated = isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not)
        target = test.operand if isinstance(test, ast.UnaryOp) and negated else test
        if isinstance(target, ast.Attribute) and target.attr == "replayed" \
                and isinstance(target.value, ast.Name):
            for names in reversed(self.actions):
                if target.value.id in names:
                    return names[target.value.id], negated
        return None

    # -- uses, for the call graph ---------------------------------------------------------

    def visit_Name(self, node: ast.Name) -> None:
        if isinstance(node.ctx, ast.Load):
            self.uses.append(callers.Use(self.aliases.get(node.id, node.id),
                                         "served" in self.boundary, self.function))

    def visit_Attribute(self, node: ast.Attribute) -> None:
        if isinstance(node.ctx, ast.Load):
            name = self.qualname(node)
            if not name.startswith("<expr>"):
                self.uses.append(callers.Use(name, "served" in self.boundary, self.function))
        self.generic_visit(node)

    def report(self, node: ast.AST, kind: str, severity: str, title: str | None = None,
               quote: str | None = None, why: str | None = None,
               boundary: Iterable[str] | None = None) -> Finding | None:
        found = super().report(node, kind, severity, title, quote, why, boundary)
        if found is not None and boundary is None:
            self.owner[(found.kind, found.line)] = self.function
        return found

    # -- calls ---------------------------------------------------------------------------

    def visit_Call(self, node: ast.Call) -> None:
        name = self.qualname(node.func)
        hit = patterns.classify(name, node, random_seeded=self.random_seeded,
                                numpy_seeded=self.numpy_seeded)
        if hit is not None and not (hit.kind == "file_io" and self.artifact_file(node, name)):
            self.report(node, hit.kind, hit.severity, hit.title)
        self.check_store(node)
        if not self.order_free:
            self.check_ordered_call(node, name)
        if name in patterns.ORDER_FREE:
            self.visit(node.func)
            self.order_free += 1
            try:
                for child in [*node.args, *node.keywords]:
                    self.visit(child)
            finally:
                self.order_free -= 1
            return
        self.generic_visit(node)

    def check_store(self, node: ast.Call) -> None:
        """Note the TitanStore keys and artifacts this call writes or reads."""
        method = keys.method(node)
        arg = node.args[0] if node.args else next(
            (k.value for k in node.keywords if k.arg in ("key", "prefix")), None)
        if arg is None or (method not in keys.WRITES and method not in keys.READS):
            return
        key = keys.shape(arg, self.lookup)
        if key is None:
            return  # a key the analysis cannot spell out: given the benefit of the doubt
        if method == "store_keys":
            key += "*"
        if method in keys.WRITES:
            self.writes.add(key)
        elif "served" not in self.boundary:
            self.reads.append((node, key, tuple(self.boundary)))
            self.read_in[id(node)] = self.function

    def artifact_file(self, node: ast.Call, name: str) -> bool:
        """Whether a file call reads back an artifact ``get_artifact`` downloaded, or writes
        a file its scope publishes as one: the artifact is what counts (check_store)."""
        if isinstance(node.func, ast.Attribute) and node.func.attr in patterns.PATH_METHODS:
            target, writes = node.func.value, node.func.attr.startswith("write")
        elif name in ("builtins.open", "io.open") and node.args:
            target, writes = node.args[0], _write_mode(node)
        else:
            return False
        scope = self.scopes[-1].node
        files = self.artifacts.get(id(scope))
        if files is None:
            files = self.artifacts[id(scope)] = keys.ArtifactFiles(scope, self.qualname)
        return files.is_published(target) if writes else files.is_download(target, self.lookup)

    def visit_Subscript(self, node: ast.Subscript) -> None:
        if isinstance(node.ctx, ast.Load) and self.qualname(node.value) == "os.environ":
            self.report(node, "env_read", "low")
        self.generic_visit(node)

    def visit_Compare(self, node: ast.Compare) -> None:
        if any(isinstance(op, ast.Eq | ast.NotEq) for op in node.ops) and any(
                self.is_float(o) for o in [node.left, *node.comparators]):
            self.report(node, "float_equality", "low")
        self.generic_visit(node)

    def is_float(self, node: ast.expr) -> bool:
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
            node = node.operand
        if isinstance(node, ast.Constant):
            return isinstance(node.value, float)
        return isinstance(node, ast.Call) and self.qualname(node.func) == "builtins.float"


def _pure(call: ast.expr) -> bool:
    """Whether a tool decorator or action call says ``pure=`` anything but a false constant."""
    return isinstance(call, ast.Call) and any(
        k.arg == "pure" and not (isinstance(k.value, ast.Constant) and not k.value.value)
        for k in call.keywords)


def _tool_name(decorator: ast.expr, function: str) -> str | None:
    """The name a tool decorator records its calls under (``name=``, else the function's);
    None when ``name=`` is not a literal the analysis can read."""
    given = next((k.value for k in decorator.keywords if k.arg == "name"), None) \
        if isinstance(decorator, ast.Call) else None
    if given is None or isinstance(given, ast.Constant) and given.value in (None, ""):
        return function  # titan.tool takes `name or f.__name__`
    if isinstance(given, ast.Constant) and isinstance(given.value, str):
        return given.value
    return None


def _write_mode(call: ast.Call) -> bool:
    """Whether ``open(path, mode)`` opens for writing."""
    mode = call.args[1] if len(call.args) > 1 else next(
        (k.value for k in call.keywords if k.arg == "mode"), None)
    return isinstance(mode, ast.Constant) and isinstance(mode.value, str) \
        and any(c in mode.value for c in "wax")
