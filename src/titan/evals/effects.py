"""The judge's check of a run's world against the task's ``expected_effects``.

The recorded calls' ledger operations are replayed from the task's ``initial_state``; the
world at the end must show every expected operation and no change to an entity or flag the
task does not name. A world that ends exactly as expected is a decisive PASS finding (when
nothing else fails), one that does not a decisive FAIL.
"""

from __future__ import annotations

import re
from typing import Any

from titan.evals.findings import Checks, Finding, op_text
from titan.evals.ledger import Ledger


def check(task: dict[str, Any], calls: list[dict[str, Any]], out: Checks) -> None:
    """The world at the end against ``expected_effects``: each expected op holds, and no
    entity or flag the task does not name was changed."""
    initial = task.get("initial_state") or {}
    world = Ledger(initial)
    for c in calls:
        world.apply(c.get("ops") or [])
    expected = task["expected_effects"]
    missing = [op for op in expected if not _holds(op, world, initial)]
    for op in missing[:2]:
        out.findings.append(Finding("FAIL", "incomplete", None,
                                    f"The task expects {op_text(op)}, and the world does "
                                    "not show it at the end of the run."))
    for n, c in enumerate(calls, 1):
        for op in c.get("ops") or []:
            if not any(_covers(e, op) for e in expected) and not _bookkeeping(op, expected):
                out.findings.append(Finding("FAIL", "unexpected_change", n,
                                            f"Step {n} {c.get('tool')} made a change the "
                                            f"task does not expect: {op_text(op)}."))
                break
    if not out.failed:
        out.findings.append(Finding("PASS", None, None, "The world ends exactly as the task "
                                    "expects (" + "; ".join(map(op_text, expected)) + ")."
                                    if expected else "The world is unchanged, as the task "
                                    "expects."))


def _holds(op: dict[str, Any], world: Ledger, initial: dict[str, Any]) -> bool:
    kind = op["op"]
    if kind == "set_flag":
        return bool(world.flags.get(op["name"]) == op.get("value"))
    live = world.entities.get(op["type"], {})
    if kind == "remove":
        return op["id"] not in live and op["id"] in world.removed.get(op["type"], {})
    want = op.get("attrs") or {}
    ids = [op["id"]] if op.get("id") else [i for i in live
                                           if i not in initial.get(op["type"], {})]
    return any(i in live and all(_same(live[i].get(k), v) for k, v in want.items())
               for i in ids)


# Counters a booking, an order or a sign-up lowers as it takes its place or its stock.
_COUNTERS = re.compile(r"(?:^|_)(?:capacity|capacity_left|spaces?|spaces_left|spots?|"
                       r"spots_left|seats?|seats_left|seats_available|places?|places_left|"
                       r"remaining|available|availability|stock|in_stock|inventory|"
                       r"quantity|qty|left)$")


def _bookkeeping(op: dict[str, Any], expected: list[dict[str, Any]]) -> bool:
    """An update that only changes a count of what is left (``capacity_left``, ``stock``),
    in a run the task expects to add or change something: the count follows the booking it
    makes, and tasks seldom list it."""
    attrs = op.get("attrs") or {}
    return op.get("op") == "update" and bool(attrs) and any(
        e.get("op") in ("add", "update") for e in expected) and all(
        _COUNTERS.search(str(k)) and isinstance(v, int | float) and not isinstance(v, bool)
        for k, v in attrs.items())


def _covers(expected: dict[str, Any], op: dict[str, Any]) -> bool:
    if expected["op"] == "set_flag" or op["op"] == "set_flag":
        return expected.get("name") == op.get("name")
    return expected["type"] == op["type"] and expected.get("id") in (None, op["id"])


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, int | float) and isinstance(b, int | float) \
            and not isinstance(a, bool) and not isinstance(b, bool):
        return abs(a - b) < 1e-9
    return bool(a == b)
