"""Handoffs: what a valid one is, and which sub-agent a handoff names.

A handoff — ``evals.handoff(to, reason)``, or a live trace event ``{"kind": "handoff",
"data": {"from"?, "to", "reason"?}}`` — records a transfer of control between sub-agents.
Its ``to`` (and ``from``) names a sub-agent the documented way: by its **name**, the id a
declared topology gives it and the name given to ``titan.trace.actor`` (``"billing"``), or
by its actor path (``"researcher/fetcher"``, or the full ``AGENT/agent/...`` a job agent's
actors carry). The proxy refuses a malformed one (:func:`problem`) and the trace resolves a
name to one node (:func:`resolve`) the way the topology does, so ``to="fetcher"`` is the
declared ``researcher/fetcher`` rather than a second, undeclared ``fetcher``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

NAME_LIMIT = 500
#: The agent itself, as the proxy records it when a call or event names no actor (an HTTP
#: agent's own actions; a job agent's are ``AGENT/agent``).
ROOT_ACTOR = "agent"
SHAPE = '{"to": "<sub-agent name>", "reason"?: "...", "from"?: "<sub-agent name>"}'


def _name_problem(field: str, value: Any) -> str | None:
    if not isinstance(value, str):
        return (f"{field} must be a sub-agent's name (a string), got "
                f"{type(value).__name__} {_short(value)}")
    parts = value.split("/")
    if not value.strip() or any(not part.strip() for part in parts):
        return (f"{field} must be a sub-agent's name or actor path (billing, "
                f"researcher/fetcher), got {value!r}")
    if len(value) > NAME_LIMIT:
        return f"{field} is a name of at most {NAME_LIMIT} characters, got {len(value)}"
    return None


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:59] + "…"


def problem(data: Any) -> str | None:
    """Why ``data`` is not a handoff's (relative to ``data``: ``to is missing``), or None."""
    if not isinstance(data, dict):
        return f"must be {SHAPE}, got {type(data).__name__} {_short(data)}"
    if data.get("to") is None:
        return "to is missing: name the sub-agent control passes to"
    for field in ("to", "from"):
        if field in data and (field == "to" or data[field] is not None):
            why = _name_problem(field, data[field])
            if why is not None:
                return why
    reason = data.get("reason")
    if reason is not None and not isinstance(reason, str):
        return f"reason must be a string, got {type(reason).__name__} {_short(reason)}"
    return None


def declared_names(topology: dict[str, Any] | None) -> set[str]:
    """Every sub-agent name a topology declares: its nodes, their parents, edge ends."""
    names: set[str] = set()
    for node in (topology or {}).get("nodes") or []:
        names.update(str(node[k]) for k in ("id", "parent") if node.get(k))
    for edge in (topology or {}).get("edges") or []:
        names.update(str(edge[k]) for k in ("from", "to") if edge.get(k))
    return names


def unknown(target: str, topology: dict[str, Any] | None, roots: Iterable[str]) -> bool:
    """Whether a declared topology has no sub-agent ``target`` names (by its last name:
    ``AGENT/agent/billing`` names ``billing``); the agent itself (``roots``) is known."""
    names = declared_names(topology)
    if not names or target in roots:
        return False
    return target.rstrip("/").rsplit("/", 1)[-1] not in names


def resolve(name: str, declared: dict[str, str], observed: Iterable[str]) -> str:
    """The node a root-relative handoff end ``name`` is: a bare name is the declared node
    of that name (``declared``: name → path), else the one observed node whose last name
    it is, else a sub-agent of that name below the root; a path is itself."""
    if not name or "/" in name:
        return name
    if name in declared:
        return declared[name]
    matches = {path for path in observed if path.rsplit("/", 1)[-1] == name}
    return matches.pop() if len(matches) == 1 else name
