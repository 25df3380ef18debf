"""titan.evals.handoffs: what a malformed handoff is told, and which names a topology knows."""

from __future__ import annotations

from typing import Any

import pytest

from titan.evals.handoffs import problem, unknown

ROOTS = ("agent", "AGENT/agent")


@pytest.mark.parametrize(("data", "said"), [
    (None, "must be {"),
    ("billing", "got str 'billing'"),
    ({}, "to is missing"),
    ({"to": None}, "to is missing"),
    ({"to": 5}, "to must be a sub-agent's name (a string), got int 5"),
    ({"to": True}, "got bool True"),
    ({"to": "  "}, "to must be a sub-agent's name or actor path"),
    ({"to": "a/"}, "got 'a/'"),
    ({"to": "x" * 501}, "at most 500 characters"),
    ({"to": "a", "from": ""}, "from must be a sub-agent's name or actor path"),
    ({"to": "a", "reason": 3}, "reason must be a string, got int 3"),
])
def test_a_malformed_handoff_is_told_what_is_wrong(data: Any, said: str) -> None:
    why = problem(data)
    assert why is not None and said in why, why


@pytest.mark.parametrize("data", [
    {"to": "billing"}, {"to": "researcher/fetcher", "from": "AGENT/agent", "reason": "r"},
    {"to": "billing", "from": None, "reason": None},
])
def test_a_well_formed_handoff_passes(data: dict[str, Any]) -> None:
    assert problem(data) is None


def test_a_target_is_unknown_only_to_a_declared_topology() -> None:
    topology = {"nodes": [{"id": "fetcher", "parent": "researcher"}],
                "edges": [{"from": "fetcher", "to": "writer", "kind": "handoff"}]}
    assert not unknown("nosuch", None, ROOTS)  # nothing declared: any name is a sub-agent
    for known in ("fetcher", "researcher", "writer", "AGENT/agent/researcher/fetcher",
                  "agent", "AGENT/agent"):
        assert not unknown(known, topology, ROOTS), known
    assert unknown("nosuch", topology, ROOTS)
