"""Reconstruct a run's multi-agent structure for the trace tab's "Multi-agent structure" card.

The card is computed at read time, never stored: observed tool-call actor paths define the
delegation tree ("agent/researcher/fetcher" means the root delegated to researcher, which
delegated to fetcher), ordered handoff events add peer / cyclic edges, and the agent's declared
topology (optional) grounds both. Honesty is the point of the card: anything we did not observe
is tagged "declared", a call is credited to a sub-agent only when exactly one declared node owns
its tool, and every other call from the root stays visibly unattributed instead of guessed.

Node ids are paths relative to the root ("researcher", "researcher/fetcher"); the root itself is
"" (the page shows the last segment, or the agent's name for ""). Full paths keep two sub-agents
with the same leaf name apart. The output is fully sorted so identical inputs give identical JSON.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from titan.evals.handoffs import resolve

ROOT = ""  # relative id of the agent under test itself

Segments = tuple[str, ...]
EdgeKey = tuple[str, str, str]  # (from, to, kind)


def _segments(path: Any) -> Segments:
    # Tolerate None, stray slashes and blanks: these paths come from agent-supplied headers.
    if not isinstance(path, str):
        return ()
    return tuple(part for part in path.strip().split("/") if part.strip())


def _common_prefix(paths: list[Segments]) -> Segments:
    prefix = paths[0]
    for path in paths[1:]:
        n = 0
        while n < min(len(prefix), len(path)) and prefix[n] == path[n]:
            n += 1
        prefix = prefix[:n]
    return prefix


def _order(node_id: str) -> Segments:
    # Sorting by segments lists a parent right before its own subtree: "a", "a/b", "a-c".
    return _segments(node_id)


def _edge_order(key: EdgeKey) -> tuple[Segments, Segments, str]:
    return (_order(key[0]), _order(key[1]), key[2])


def _parent(node_id: str) -> str | None:
    return None if node_id == ROOT else "/".join(_segments(node_id)[:-1])


def _declared(topology: dict[str, Any]
              ) -> tuple[dict[str, list[str]], set[EdgeKey], dict[str, str]]:
    """Declared nodes as {relative path: owned tools}, declared edges as (from, to, kind),
    and each declared name's relative path (how a handoff's bare name resolves).

    Declared ids are bare names linked by `parent`; we turn them into the same relative paths the
    observed actors use so the two can be compared. A single parentless node that delegates to
    others is the orchestrator, i.e. the root (""); otherwise parentless nodes are peers one level
    below an implicit root (a handoff-only swarm has no orchestrator).
    """
    parent_of: dict[str, str | None] = {}
    tools_of: dict[str, list[str]] = {}
    for node in topology.get("nodes") or []:
        node_id = str(node.get("id") or "")
        if node_id:
            parent_of[node_id] = str(node["parent"]) if node.get("parent") else None
            tools_of[node_id] = sorted({str(tool) for tool in node.get("tools") or []})
    raw_edges: list[EdgeKey] = []
    for edge in topology.get("edges") or []:
        if edge.get("from") and edge.get("to"):
            kind = "handoff" if edge.get("kind") == "handoff" else "delegation"
            raw_edges.append((str(edge["from"]), str(edge["to"]), kind))
    # An id only named as a parent or an edge endpoint is still part of the declared graph.
    mentioned = [p for p in parent_of.values() if p] + [x for e in raw_edges for x in e[:2]]
    for node_id in mentioned:
        parent_of.setdefault(node_id, None)
        tools_of.setdefault(node_id, [])

    delegators = {p for p in parent_of.values() if p} | {
        e[0] for e in raw_edges if e[2] == "delegation"
    }
    tops = sorted(node_id for node_id, parent in parent_of.items() if parent is None)
    root_id = tops[0] if len(tops) == 1 and tops[0] in delegators else None

    def path_of(node_id: str) -> str:
        chain: list[str] = []
        current: str | None = node_id
        while current is not None and current != root_id and current not in chain:
            chain.append(current)  # `not in chain` stops a declared parent cycle
            current = parent_of.get(current)
        return "/".join(reversed(chain))

    nodes = {path_of(node_id): tools_of[node_id] for node_id in sorted(parent_of)}
    edges = {(path_of(p), path_of(c), "delegation") for c, p in parent_of.items() if p}
    edges |= {(path_of(src), path_of(dst), kind) for src, dst, kind in raw_edges}
    return nodes, edges, {node_id: path_of(node_id) for node_id in parent_of}


def reconstruct(
    calls: list[dict[str, Any]],
    handoffs: list[dict[str, Any]],
    topology: dict[str, Any] | None,
) -> dict[str, Any] | None:
    """The Multi-agent structure card for one run, or None for a single-agent run (no card)."""
    call_paths = [_segments(call.get("actor")) for call in calls]
    hand_paths = [(_segments(h.get("from")), _segments(h.get("to"))) for h in handoffs]
    if len(set(call_paths)) < 2 and not handoffs:
        return None

    # The root is what every observed actor has in common; when one actor is a prefix of all
    # others (or the only caller), that actor is the root / orchestrator.
    root_len = len(_common_prefix(call_paths + [p for pair in hand_paths for p in pair]))

    def rel(path: Segments) -> str:
        return "/".join(path[root_len:])

    declared_nodes, declared_edges, by_name = _declared(topology) if topology else (
        {}, set(), {})
    # A handoff names its sub-agents by name, as the topology does (titan.evals.handoffs):
    # "fetcher" is the declared (or the one observed) researcher/fetcher, not a second node.
    callers = {rel(path) for path in call_paths}
    hand_rel = [(_segments(resolve(rel(src), by_name, callers)),
                 _segments(resolve(rel(dst), by_name, callers))) for src, dst in hand_paths]

    # Observed nodes: every prefix of every observed path (an intermediate agent that only
    # delegated still existed). Delegation counts = calls that flowed through the edge.
    observed: set[str] = {ROOT}
    observed_edges: dict[EdgeKey, int] = {}
    weighted = [(p[root_len:], 1) for p in call_paths] + [
        (p, 0) for pair in hand_rel for p in pair]
    for below, weight in weighted:  # a path seen only in a handoff is real but carried no call
        for depth in range(1, len(below) + 1):
            observed.add("/".join(below[:depth]))
            key = ("/".join(below[: depth - 1]), "/".join(below[:depth]), "delegation")
            observed_edges[key] = observed_edges.get(key, 0) + weight
    for src, dst in hand_rel:  # peer / cyclic transfers: one edge per direction, counted
        key = ("/".join(src), "/".join(dst), "handoff")
        observed_edges[key] = observed_edges.get(key, 0) + 1

    declared = bool(declared_nodes)
    owners: dict[str, list[str]] = {}
    for node_id, tools in declared_nodes.items():
        for tool in tools:
            owners.setdefault(tool, []).append(node_id)

    # Attribution: a call from below the root names its agent (derived). A call from the root is
    # ambiguous (an untagged sub-agent looks like the root), so it is credited only when exactly
    # one declared node owns the tool; otherwise it stays unattributed, on the root.
    tool_counts: dict[str, Counter[str]] = {}
    credited_nodes: set[str] = set()
    derived = credited = unattributed = 0
    for call, path in zip(calls, call_paths, strict=True):
        actor, tool = rel(path), str(call.get("tool") or "")
        if actor != ROOT:
            derived += 1
        elif len(owners.get(tool, [])) == 1:
            actor = owners[tool][0]
            credited += 1
            credited_nodes.add(actor)
        else:
            unattributed += 1
        tool_counts.setdefault(actor, Counter())[tool] += 1

    roster: list[dict[str, Any]] = []
    for node_id in sorted(observed | set(declared_nodes), key=_order):
        counts: dict[str, int] = dict.fromkeys(declared_nodes.get(node_id, []), 0)
        counts.update(tool_counts.get(node_id, {}))
        is_declared, is_observed = node_id in declared_nodes, node_id in observed
        if is_declared and is_observed:
            provenance = "declared+observed"
        elif is_observed:
            provenance = "observed"
        else:
            provenance = "credited" if node_id in credited_nodes else "declared"
        roster.append(
            {
                "id": node_id,
                "parent": _parent(node_id),
                "depth": len(_segments(node_id)),
                "tools": {tool: counts[tool] for tool in sorted(counts)},
                "calls": sum(counts.values()),
                "provenance": provenance,
            }
        )

    edges: list[dict[str, Any]] = []
    for key in sorted(set(observed_edges) | declared_edges, key=_edge_order):
        seen, promised = key in observed_edges, key in declared_edges
        provenance = (
            "declared+observed" if seen and promised else "observed" if seen else "declared"
        )
        edges.append(
            {
                "from": key[0],
                "to": key[1],
                "kind": key[2],
                "count": observed_edges.get(key, 0),
                "provenance": provenance,
            }
        )

    def handoff_order(item: tuple[dict[str, Any], tuple[Segments, Segments]]) -> tuple[Any, ...]:
        event, (src, dst) = item
        seq, at = event.get("seq"), event.get("at")
        return (
            seq if isinstance(seq, int) else float("inf"),
            float(at) if isinstance(at, int | float) else float("inf"),
            src,
            dst,
            str(event.get("reason") or ""),
        )

    return {
        "declared": declared,
        "stats": {
            "sub_agents": len(roster) - 1,  # the root is always in the roster
            "depth": max(node["depth"] for node in roster),
            "handoffs": len(handoffs),
        },
        "attribution": {
            "total": len(calls),
            "derived": derived,
            "credited": credited,
            "unattributed": unattributed,
        },
        "divergence": {
            "declared_only": sorted(
                (n for n in declared_nodes if n not in observed and n != ROOT), key=_order
            ),
            "undeclared": sorted(
                (n for n in observed if declared and n not in declared_nodes and n != ROOT),
                key=_order,
            ),
        },
        "roster": roster,
        "edges": edges,
        "unexercised": [
            {"from": key[0], "to": key[1], "kind": key[2]}
            for key in sorted(declared_edges - set(observed_edges), key=_edge_order)
        ],
        "handoffs": [
            {
                "seq": event.get("seq"),
                "from": "/".join(src),
                "to": "/".join(dst),
                "at": event.get("at"),
                "reason": event.get("reason"),
            }
            for event, (src, dst) in sorted(
                zip(handoffs, hand_rel, strict=True), key=handoff_order
            )
        ],
    }
