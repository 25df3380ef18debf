"""Iteration over sets: an order that changes between processes (``PYTHONHASHSEED``).

A set of strings iterates in another order in each process, so a prompt, a tool call or an
output built by walking one comes out in another order. Walking a set is reported where the
order can leak out (a ``for`` loop, a comprehension, ``list()``, ``",".join()``, ``*s``,
``set.pop()``), not where it cannot (``sorted()``, ``len()``, a set built again): see
:mod:`~titan.trace.determinism.patterns` for which consumers keep or drop the order.
"""

from __future__ import annotations

import ast

from titan.trace.determinism import patterns
from titan.trace.determinism.scanner import Scanner


class SetOrder(Scanner):
    """Reports iteration over sets, wherever the order can leak out."""

    def __init__(self, path: str, source: str, tree: ast.Module) -> None:
        super().__init__(path, source, tree)
        self.order_free = 0  # > 0 inside the arguments of sorted(), set(), len(), ...
        self_kinds: dict[str, set[bool]] = {}
        for node in self.assigns:
            _self_attributes(node, self_kinds)
        self.self_sets = {attr for attr, seen in self_kinds.items() if seen == {True}}

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
