"""Which names hold sets: the assignments of one function, module or lambda.

Iterating a set of strings gives another order in each process (PYTHONHASHSEED), so the
static analysis must know whether ``for tag in tags`` iterates a set. It asks the innermost
scope what ``tags`` was last given before that line; the value's expression then says.
"""

from __future__ import annotations

import ast

from titan.trace.determinism import patterns

# Nested functions and classes have scopes of their own: their assignments are not ours.
SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)
Pos = tuple[int, int]  # (line, column)


class Scope:
    """Assignments of one function (or the module), to tell which names hold sets."""

    def __init__(self, node: ast.AST) -> None:
        self.node = node
        self._assigned: dict[str, list[tuple[Pos, ast.expr | bool]]] = {}
        self._collected = False

    @property
    def assigned(self) -> dict[str, list[tuple[Pos, ast.expr | bool]]]:
        # Collected on the first question: most scopes never iterate a plain name.
        if not self._collected:
            self._collected = True
            node = self.node
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
                a = node.args
                for arg in [*a.posonlyargs, *a.args, *a.kwonlyargs]:
                    self.add(arg.arg, (0, 0), set_annotation(arg.annotation))
            body = getattr(node, "body", [])
            for stmt in body if isinstance(body, list) else [body]:  # a lambda: one expression
                self._collect(stmt)
        return self._assigned

    def add(self, name: str, pos: Pos, value: ast.expr | bool) -> None:
        self._assigned.setdefault(name, []).append((pos, value))

    def _collect(self, node: ast.AST) -> None:
        if isinstance(node, SCOPES):
            if not isinstance(node, ast.Lambda):
                self.add(node.name, end(node), False)
            return
        if isinstance(node, ast.Assign):
            for target in node.targets:
                self._bind(target, end(node), node.value)
        elif isinstance(node, ast.AnnAssign):
            value = node.value if node.value is not None else set_annotation(node.annotation)
            self._bind(node.target, end(node), value)
        elif isinstance(node, ast.NamedExpr):
            self._bind(node.target, end(node), node.value)
        elif isinstance(node, ast.For | ast.AsyncFor):
            self._bind(node.target, end(node.target), False)
        elif isinstance(node, ast.withitem) and node.optional_vars is not None:
            self._bind(node.optional_vars, end(node.optional_vars), False)
        # Comprehension targets are not bound: they live in the comprehension's own scope.
        for child in ast.iter_child_nodes(node):
            self._collect(child)

    def _bind(self, target: ast.expr, pos: Pos, value: ast.expr | bool) -> None:
        if isinstance(target, ast.Name):
            self.add(target.id, pos, value)
        elif isinstance(target, ast.Tuple | ast.List):
            for element in target.elts:  # unpacking: the parts are not known to be sets
                self._bind(element.value if isinstance(element, ast.Starred) else element,
                           pos, False)


def set_annotation(annotation: ast.expr | None) -> bool:
    """Whether an annotation says set: ``set[str]``, ``frozenset``, ``typing.AbstractSet``."""
    if isinstance(annotation, ast.Subscript):
        annotation = annotation.value
    if isinstance(annotation, ast.Attribute):
        return annotation.attr in patterns.SET_ANNOTATIONS
    return isinstance(annotation, ast.Name) and annotation.id in patterns.SET_ANNOTATIONS


def end(node: ast.AST) -> Pos:
    """Where ``node`` ends: a name is bound once its assignment is over."""
    line: int = getattr(node, "end_lineno", None) or getattr(node, "lineno", None) or 0
    col: int = getattr(node, "end_col_offset", None) or 0
    return (line, col)
