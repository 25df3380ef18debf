"""Static analysis: non-deterministic calls and iteration orders in a script's source.

The source is parsed with :mod:`ast`, never imported or run. Calls are resolved through the
file's imports to qualified names (``from datetime import datetime as dt; dt.now()`` is
``datetime.datetime.now``) and looked up in :mod:`titan.trace.determinism.patterns`.

What Titan records is not a problem: ``titan.trace.now()/uuid()/random()`` are the fix, and a
call inside a ``@titan.tool`` function or a ``with titan.trace.action(...)`` block is served
from the record on replay, so its finding is downgraded two severities.
"""

from __future__ import annotations

import ast
import builtins
from collections.abc import Iterator
from contextlib import contextmanager

from titan.trace.determinism import patterns
from titan.trace.determinism.findings import Finding, downgrade, make
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
    "file_io": "touches the file system: a replay that runs it again may see other content",
}
RECORDED = {
    "tool": "recorded by @titan.tool: replays serve its result",
    "action": "recorded by titan.trace.action: replays serve its result",
}


def scan(path: str, source: str) -> list[Finding]:
    """The static findings of one file; a file that does not parse yields one low finding."""
    try:
        tree = ast.parse(source, filename=path)
        return _Scanner(path, source, tree).run()
    except (SyntaxError, ValueError) as exc:  # ValueError: null bytes in the source
        line = getattr(exc, "lineno", None)
        lines = source.splitlines()
        code = lines[line - 1].strip() if line and 0 < line <= len(lines) else None
        msg = getattr(exc, "msg", None) or str(exc)
        return [make("unparsable", "low", f"The file does not parse ({msg}); it was not "
                     "analysed.", file=path, line=line, code=code)]
    except RecursionError:  # the visitor recurses: an expression nested thousands deep
        return [make("unparsable", "low", "The file is nested too deeply to analyse.",
                     file=path)]


class _Scanner(ast.NodeVisitor):
    def __init__(self, path: str, source: str, tree: ast.Module) -> None:
        self.path, self.source, self.tree = path, source, tree
        self.lines = source.splitlines(keepends=True)
        self.findings: dict[tuple[str, int], Finding] = {}
        self.scopes: list[Scope] = []
        self.recorded: list[str] = []  # innermost last: "tool" or "action"
        self.order_free = 0  # > 0 inside the arguments of sorted(), set(), len(), ...
        # One walk for what the visit needs to know in advance, wherever in the file it is.
        self.aliases: dict[str, str] = {}
        calls: list[ast.Call] = []
        self_kinds: dict[str, set[bool]] = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                _alias(node, self.aliases)
            elif isinstance(node, ast.Call) and (node.args or node.keywords):
                calls.append(node)
            elif isinstance(node, ast.Assign | ast.AnnAssign):
                _self_attributes(node, self_kinds)
        self.self_sets = {attr for attr, seen in self_kinds.items() if seen == {True}}
        seeds = {self.qualname(c.func) for c in calls}
        self.random_seeded = "random.seed" in seeds
        self.numpy_seeded = "numpy.random.seed" in seeds

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

    # -- findings ------------------------------------------------------------------------

    def report(self, node: ast.AST, kind: str, severity: str, title: str | None = None,
               quote: str | None = None) -> None:
        line = getattr(node, "lineno", 1)
        if (kind, line) in self.findings:
            return  # one finding per kind and line: `random.choice(random.sample(...))`
        quote = " ".join((quote or self.segment(node)).split())
        if len(quote) > 80:
            quote = quote[:77] + "..."
        description = f"`{quote}` {WHY[kind]}."
        if self.recorded:
            severity = downgrade(severity)
            description += f" Lower severity: {RECORDED[self.recorded[-1]]}."
        code = self.lines[line - 1].strip() if 0 < line <= len(self.lines) else None
        self.findings[(kind, line)] = make(kind, severity, description, title=title,
                                           file=self.path, line=line, code=code)

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

    # -- scopes and recorded regions ------------------------------------------------------

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
            self.recorded.append(label)
        try:
            yield
        finally:
            if label is not None:
                self.recorded.pop()

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        for decorator in node.decorator_list:
            self.visit(decorator)
        self.visit(node.args)
        if node.returns is not None:
            self.visit(node.returns)
        tool = any(self.qualname(d.func if isinstance(d, ast.Call) else d)
                   in patterns.TOOL_DECORATORS for d in node.decorator_list)
        with self.scope(node), self.within("tool" if tool else None):
            for stmt in node.body:
                self.visit(stmt)

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_Lambda(self, node: ast.Lambda) -> None:
        self.visit(node.args)
        with self.scope(node):
            self.visit(node.body)

    def visit_With(self, node: ast.With | ast.AsyncWith) -> None:
        # The items run before the action opens (its inputs are compared on replay, not
        # served), so only the body counts as recorded.
        for item in node.items:
            self.visit(item)
        action = any(isinstance(i.context_expr, ast.Call)
                     and self.qualname(i.context_expr.func) in patterns.ACTION_BLOCKS
                     for i in node.items)
        with self.within("action" if action else None):
            for stmt in node.body:
                self.visit(stmt)

    visit_AsyncWith = visit_With

    # -- calls ---------------------------------------------------------------------------

    def visit_Call(self, node: ast.Call) -> None:
        name = self.qualname(node.func)
        hit = patterns.classify(name, node, random_seeded=self.random_seeded,
                                numpy_seeded=self.numpy_seeded)
        if hit is not None:
            self.report(node, hit.kind, hit.severity, hit.title)
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

    def check_ordered_call(self, node: ast.Call, name: str) -> None:
        args = node.args
        if name in patterns.ORDER_KEEPING:
            fed = args if name == "builtins.zip" else args[:1]
            if any(self.is_set(a) for a in fed):
                self.report(node, "set_iteration", "medium")
        elif isinstance(node.func, ast.Attribute):
            method, receiver = node.func.attr, node.func.value
            if method == "join" and len(args) == 1 and self.is_set(args[0]):
                self.report(node, "set_iteration", "medium")
            elif method == "pop" and not args and self.is_set(receiver):
                self.report(node, "set_iteration", "medium", "set.pop() takes any element")

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

    # -- iteration over sets -------------------------------------------------------------

    def visit_For(self, node: ast.For | ast.AsyncFor) -> None:
        if self.is_set(node.iter):
            self.report(node.iter, "set_iteration", "medium", quote=f"for "
                        f"{self.segment(node.target)} in {self.segment(node.iter)}")
        self.generic_visit(node)

    visit_AsyncFor = visit_For

    def visit_comprehensions(self, node: ast.ListComp | ast.DictComp | ast.GeneratorExp) -> None:
        if not self.order_free:
            for gen in node.generators:
                if self.is_set(gen.iter):
                    self.report(gen.iter, "set_iteration", "medium", quote=f"for "
                                f"{self.segment(gen.target)} in {self.segment(gen.iter)}")
        self.generic_visit(node)

    # A set comprehension over a set is a set again: its order does not matter.
    visit_ListComp = visit_DictComp = visit_GeneratorExp = visit_comprehensions

    def visit_Set(self, node: ast.Set) -> None:
        # `{*a, *b}` builds a set again: the order it is fed in does not matter.
        self.order_free += 1
        try:
            self.generic_visit(node)
        finally:
            self.order_free -= 1

    def visit_Starred(self, node: ast.Starred) -> None:
        if not self.order_free and isinstance(node.ctx, ast.Load) and self.is_set(node.value):
            self.report(node, "set_iteration", "medium")
        self.generic_visit(node)

    def is_set(self, node: ast.expr, depth: int = 0) -> bool:
        """Whether ``node`` evaluates to a set whose iteration order can vary."""
        if depth > 8:
            return False  # `a = b; b = a` chains: give up rather than loop
        if isinstance(node, ast.Set):
            # A set of int literals iterates in the same order in every process.
            return not all(isinstance(e, ast.Constant) and type(e.value) in (int, bool)
                           for e in node.elts)
        if isinstance(node, ast.SetComp):
            return True
        if isinstance(node, ast.Call):
            if self.qualname(node.func) in patterns.SET_BUILDERS:
                return True
            func = node.func
            return (isinstance(func, ast.Attribute) and func.attr in patterns.SET_METHODS
                    and self.is_set(func.value, depth + 1))
        if isinstance(node, ast.BinOp) and isinstance(
                node.op, ast.BitOr | ast.BitAnd | ast.Sub | ast.BitXor):
            return self.is_set(node.left, depth + 1) or self.is_set(node.right, depth + 1)
        if isinstance(node, ast.Name):
            value = self.lookup(node.id, (node.lineno, node.col_offset))
            if isinstance(value, bool):
                return value
            return value is not None and self.is_set(value, depth + 1)
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                and node.value.id == "self"):
            return node.attr in self.self_sets
        return False

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


def _self_attributes(node: ast.Assign | ast.AnnAssign, kinds: dict[str, set[bool]]) -> None:
    """Record whether each ``self.x = ...`` gives a set: an attribute only ever given sets
    (None aside) is iterated as one."""
    targets = node.targets if isinstance(node, ast.Assign) else [node.target]
    value = node.value
    for target in targets:
        if not (isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name)
                and target.value.id == "self"):
            continue
        if value is None or (isinstance(value, ast.Constant) and value.value is None):
            continue
        literal = isinstance(value, ast.Set | ast.SetComp) or (
            isinstance(value, ast.Call) and isinstance(value.func, ast.Name)
            and value.func.id in ("set", "frozenset"))
        kinds.setdefault(target.attr, set()).add(literal)
