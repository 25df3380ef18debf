"""TitanStore keys and artifacts: which reads of them a replay answers the same.

A replay does not intercept TitanStore or artifacts (docs/replay.md#limits): the replayed agent
reads live state. A key the run's own code writes is replay-safe all the same: the replay's
stages write it again, from recorded values, under the replay's run id (a replayed
orchestrator makes up a fresh one, so its keys are fresh too) before they read it back. A key
that no file of the run writes holds someone else's state: a replay reads whatever it holds by
then. So are the local files of artifacts: the file a job writes and publishes, or downloads
with ``get_artifact`` and reads, is the artifact, judged by its key.

Keys are compared by shape: an f-string's literal parts with ``*`` for each value known only at
run time (``f"research:{run}:plan"`` is ``research:*:plan``), names followed to the value they
were last given. A key whose shape cannot be told (a parameter, a loop variable) is given the
benefit of the doubt: the analysis reports what it can show.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable, Iterable, Iterator
from functools import lru_cache

from titan.trace.determinism.scopes import SCOPES, Pos

#: The scanner's name lookup: the value ``name`` was last given before ``pos``.
Lookup = Callable[[str, Pos], ast.expr | bool | None]

# TitanClient methods, by name: distinctive enough to count whatever the receiver is.
WRITES = {"store_put", "store_sadd", "store_incr", "publish_artifact"}
READS = {"store_get", "store_smembers", "store_wait", "store_keys", "get_artifact"}
PUBLISH, DOWNLOAD = "publish_artifact", "get_artifact"
# Wrappers that name the same file: Path(p), str(p), os.fspath(p).
SAME_FILE = {"Path", "pathlib.Path", "builtins.str", "os.fspath", "PurePath", "pathlib.PurePath"}


def method(call: ast.Call) -> str | None:
    """The attribute a call calls (``client.store_get(...)``: ``store_get``)."""
    return call.func.attr if isinstance(call.func, ast.Attribute) else None


def shape(node: ast.expr, lookup: Lookup) -> str | None:
    """The shape of the key ``node`` evaluates to; None when nothing of it is known."""
    found = _shape(node, lookup, 0)
    return None if found is None or not found.strip("*") else found


def _shape(node: ast.expr, lookup: Lookup, depth: int) -> str | None:
    if depth > 8:
        return None  # `a = b; b = a` chains: give up rather than loop
    if isinstance(node, ast.Constant):
        return node.value if isinstance(node.value, str) else None
    if isinstance(node, ast.JoinedStr):
        parts = []
        for value in node.values:
            if isinstance(value, ast.Constant):
                parts.append(str(value.value))
            elif isinstance(value, ast.FormattedValue) and value.format_spec is None:
                parts.append(_shape(value.value, lookup, depth + 1) or "*")
            else:
                parts.append("*")
        return re.sub(r"\*+", "*", "".join(parts))
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = (_shape(n, lookup, depth + 1) for n in (node.left, node.right))
        if left is None and right is None:
            return None
        return re.sub(r"\*+", "*", (left or "*") + (right or "*"))
    if isinstance(node, ast.Name):
        given = lookup(node.id, (node.lineno, node.col_offset))
        return _shape(given, lookup, depth + 1) if isinstance(given, ast.expr) else None
    return None


@lru_cache(maxsize=4096)
def _pattern(key_shape: str) -> re.Pattern[str]:
    return re.compile(".*".join(re.escape(part) for part in key_shape.split("*")), re.S)


def same_key(a: str, b: str) -> bool:
    """Whether two shapes can name the same key: either one's ``*`` can stand for what the
    other spells out (``research:*:plan`` and ``*:plan``)."""
    return a == b or bool(_pattern(a).fullmatch(b) or _pattern(b).fullmatch(a))


def written(shapes: Iterable[str], key_shape: str) -> bool:
    """Whether a key of ``key_shape`` is among the ``shapes`` a run's code writes."""
    return any(same_key(key_shape, s) for s in shapes)


def unwrap(node: ast.expr, qualname: Callable[[ast.AST], str]) -> ast.expr:
    """The file expression under ``Path(...)``, ``str(...)`` and ``os.fspath(...)``."""
    while isinstance(node, ast.Call) and len(node.args) == 1 and not node.keywords \
            and qualname(node.func) in SAME_FILE:
        node = node.args[0]
    return node


def _calls(scope: ast.AST) -> Iterator[ast.Call]:
    """The calls of one scope, not of the functions and classes defined in it."""
    todo = list(ast.iter_child_nodes(scope))
    while todo:
        node = todo.pop()
        if isinstance(node, SCOPES):
            continue
        if isinstance(node, ast.Call):
            yield node
        todo.extend(ast.iter_child_nodes(node))


class ArtifactFiles:
    """The local files of one scope's artifacts: those it publishes and those it downloads,
    each as its unparsed file expression (``path``, ``'plan.json'``)."""

    def __init__(self, scope: ast.AST, qualname: Callable[[ast.AST], str]) -> None:
        self.qualname = qualname
        self.published: set[str] = set()
        self.downloaded: set[str] = set()
        for call in _calls(scope):
            name = method(call)
            if name == PUBLISH and len(call.args) >= 2:
                self.published.add(self.text(call.args[1]))
            elif name == DOWNLOAD:
                target = call.args[1] if len(call.args) >= 2 else next(
                    (k.value for k in call.keywords if k.arg == "save_path"), None)
                if target is not None:
                    self.downloaded.add(self.text(target))

    def text(self, node: ast.expr) -> str:
        return ast.unparse(unwrap(node, self.qualname))

    def is_download(self, node: ast.expr, lookup: Lookup) -> bool:
        """Whether ``node`` names a file ``get_artifact`` downloaded: its return value (or a
        name given it), or the ``save_path`` it was given."""
        node = unwrap(node, self.qualname)
        if isinstance(node, ast.Name):
            value = lookup(node.id, (node.lineno, node.col_offset))
            if isinstance(value, ast.expr):
                value = unwrap(value, self.qualname)
                if isinstance(value, ast.Call) and method(value) == DOWNLOAD:
                    return True
        if isinstance(node, ast.Call) and method(node) == DOWNLOAD:
            return True
        return ast.unparse(node) in self.downloaded

    def is_published(self, node: ast.expr) -> bool:
        """Whether ``node`` names a file this scope publishes as an artifact."""
        return self.text(node) in self.published
