"""The world state of one evaluation run, changed only by explicit ledger operations.

The simulator answers a tool call *and* says what the call did to the world as a list of
operations (add / update / remove / set_flag). Applying them here, instead of letting the
model rewrite the state, keeps the state honest: an operation that contradicts the state
(updating a customer that does not exist, adding an order twice) is not applied but recorded
as a violation, which the trace shows and the judge can weigh. The applied operations are the
authoritative per-step delta (the "Changes" view); :meth:`Ledger.snapshot` is the "State" view.

Removed entities are kept as tombstones (their attributes at removal), so "the agent deleted
the wrong record" stays visible after the fact; adding the same id again revives it.
"""

from __future__ import annotations

import copy
from typing import Any

OP_KINDS = ("add", "update", "remove", "set_flag")

# One operation, as the simulator's LLM must emit it. Deliberately flat (no oneOf): the small
# local model follows a single object shape far more reliably, and validate_op() checks which
# fields each kind needs. `value` lists scalar types because an empty schema ({}) compiles to
# "any object" in llama.cpp's grammar converter; the ledger itself accepts any JSON value.
OP_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "op": {"type": "string", "enum": list(OP_KINDS)},
        "type": {"type": "string"},
        "id": {"type": "string"},
        "attrs": {"type": "object"},
        "name": {"type": "string"},
        "value": {"type": ["string", "number", "boolean", "null"]},
    },
    "required": ["op"],
    "additionalProperties": False,
}
OPS_SCHEMA: dict[str, Any] = {"type": "array", "items": OP_SCHEMA}

Entities = dict[str, dict[str, dict[str, Any]]]


def validate_op(op: Any) -> str | None:
    """Why ``op`` is malformed, or None when its shape is right for its kind.

    Only shape is checked here; whether it fits the current state is :meth:`Ledger.apply`'s
    business. Fields that do not belong to the kind are ignored (a model filling every
    property of the flat schema is not wrong), so they never reach the applied op.
    """
    if not isinstance(op, dict):
        return f"an operation must be an object, got {type(op).__name__}"
    kind = op.get("op")
    if kind not in OP_KINDS:
        return f"op must be one of {', '.join(OP_KINDS)}, got {kind!r}"
    if kind == "set_flag":
        name = op.get("name")
        if not isinstance(name, str) or not name:
            return "set_flag needs a non-empty string name"
        return None
    for key in ("type", "id"):
        if not isinstance(op.get(key), str) or not op[key]:
            return f"{kind} needs a non-empty string {key}"
    attrs = op.get("attrs")
    if kind == "update" and not isinstance(attrs, dict):
        return "update needs attrs: an object of the attributes that change"
    if kind == "add" and attrs is not None and not isinstance(attrs, dict):
        return f"attrs must be an object, got {type(attrs).__name__}"
    return None


def _normalized(op: dict[str, Any]) -> dict[str, Any]:
    """The op with only its kind's fields (deep-copied): what the trace records as applied."""
    kind = op["op"]
    if kind == "set_flag":
        return {"op": kind, "name": op["name"], "value": copy.deepcopy(op.get("value"))}
    out: dict[str, Any] = {"op": kind, "type": op["type"], "id": op["id"]}
    if kind != "remove":
        out["attrs"] = copy.deepcopy(op.get("attrs") or {})
    return out


class Ledger:
    """Live entities ({type: {id: attrs}}), flags ({name: value}) and tombstones."""

    def __init__(self, initial_state: Entities | None = None) -> None:
        # Deep copies everywhere: the task's initial_state is shared by every run of the task.
        self.entities: Entities = copy.deepcopy(initial_state or {})
        self.flags: dict[str, Any] = {}
        self.removed: Entities = {}

    @classmethod
    def from_snapshot(cls, snapshot: dict[str, Any]) -> Ledger:
        """Resume from a :meth:`snapshot` (e.g. the state stored after the previous call)."""
        ledger = cls(snapshot.get("entities") or {})
        ledger.flags = copy.deepcopy(snapshot.get("flags") or {})
        ledger.removed = copy.deepcopy(snapshot.get("removed") or {})
        return ledger

    def snapshot(self) -> dict[str, Any]:
        return copy.deepcopy({"entities": self.entities, "flags": self.flags,
                              "removed": self.removed})

    def get(self, entity_type: str, entity_id: str) -> dict[str, Any] | None:
        """A copy of a live entity's attributes, or None."""
        attrs = self.entities.get(entity_type, {}).get(entity_id)
        return copy.deepcopy(attrs) if attrs is not None else None

    def apply(self, ops: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Apply ``ops`` in order; return (applied ops, violations as {"op", "reason"}).

        Each op sees the effects of the ones before it, so "add then update" in one call
        works. A violating op is skipped and the rest still apply: one bad op from the
        simulator should not erase the plausible part of its answer.
        """
        if not isinstance(ops, list):
            return [], [{"op": copy.deepcopy(ops), "reason": "ops must be a list of operations"}]
        applied: list[dict[str, Any]] = []
        violations: list[dict[str, Any]] = []
        for op in ops:
            reason = validate_op(op) or self._apply_one(op)
            if reason is None:
                applied.append(_normalized(op))
            else:
                violations.append({"op": copy.deepcopy(op), "reason": reason})
        return applied, violations

    def _apply_one(self, op: dict[str, Any]) -> str | None:
        """Apply one well-formed op; return the reason when the state forbids it."""
        kind = op["op"]
        if kind == "set_flag":
            self.flags[op["name"]] = copy.deepcopy(op.get("value"))
            return None
        etype, eid = op["type"], op["id"]
        live = self.entities.get(etype, {})
        if kind == "add":
            if eid in live:
                return f"{etype} {eid!r} already exists"
            self.entities.setdefault(etype, {})[eid] = copy.deepcopy(op.get("attrs") or {})
            # A revived id is live again: it must not also show as removed.
            tombstones = self.removed.get(etype, {})
            tombstones.pop(eid, None)
            if etype in self.removed and not tombstones:
                del self.removed[etype]
            return None
        if eid not in live:
            gone = eid in self.removed.get(etype, {})
            return f"{etype} {eid!r} {'was removed' if gone else 'does not exist'}"
        if kind == "update":
            live[eid].update(copy.deepcopy(op["attrs"]))
        else:  # remove: keep the attributes as a tombstone
            self.removed.setdefault(etype, {})[eid] = live.pop(eid)
        return None
