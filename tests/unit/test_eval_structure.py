"""titan.evals.structure: the Multi-agent structure card, reconstructed from a run's calls."""

from __future__ import annotations

import json
import random
from typing import Any

from titan.evals.structure import reconstruct


def call(seq: int, actor: str, tool: str) -> dict[str, Any]:
    return {"seq": seq, "actor": actor, "tool": tool, "at": 1000.0 + seq}


def handoff(seq: int, src: str, dst: str, reason: str | None = None) -> dict[str, Any]:
    return {"seq": seq, "from": src, "to": dst, "at": 1000.0 + seq, "reason": reason}


def node(card: dict[str, Any], node_id: str) -> dict[str, Any]:
    return next(n for n in card["roster"] if n["id"] == node_id)


def edge(card: dict[str, Any], src: str, dst: str, kind: str) -> dict[str, Any]:
    return next(e for e in card["edges"] if (e["from"], e["to"], e["kind"]) == (src, dst, kind))


def test_single_agent_run_has_no_card() -> None:
    assert reconstruct([], [], None) is None
    assert reconstruct([call(1, "agent", "search"), call(2, "agent", "fetch")], [], None) is None
    # A declared topology does not make a single observed actor multi-agent.
    topology = {"nodes": [{"id": "researcher", "tools": ["search"], "parent": None}]}
    assert reconstruct([call(1, "", "search")], [], topology) is None


def test_two_actors_give_one_sub_agent_at_depth_one() -> None:
    card = reconstruct([call(1, "agent", "plan"), call(2, "agent/researcher", "search")], [], None)
    assert card is not None
    assert card["declared"] is False
    assert card["stats"] == {"sub_agents": 1, "depth": 1, "handoffs": 0}
    assert card["attribution"] == {"total": 2, "derived": 1, "credited": 0, "unattributed": 1}
    assert card["divergence"] == {"declared_only": [], "undeclared": []}
    assert card["roster"] == [
        {
            "id": "",
            "parent": None,
            "depth": 0,
            "tools": {"plan": 1},
            "calls": 1,
            "provenance": "observed",
        },
        {
            "id": "researcher",
            "parent": "",
            "depth": 1,
            "tools": {"search": 1},
            "calls": 1,
            "provenance": "observed",
        },
    ]
    assert card["edges"] == [
        {
            "from": "",
            "to": "researcher",
            "kind": "delegation",
            "count": 1,
            "provenance": "observed",
        }
    ]
    assert card["unexercised"] == [] and card["handoffs"] == []


def test_root_is_the_common_prefix_even_when_it_never_calls() -> None:
    card = reconstruct([call(1, "agent/a", "x"), call(2, "agent/b", "y")], [], None)
    assert card is not None
    assert [n["id"] for n in card["roster"]] == ["", "a", "b"]
    assert node(card, "")["calls"] == 0
    assert card["attribution"]["derived"] == 2


def test_nested_paths_give_depth_two_and_keep_same_leaf_names_apart() -> None:
    calls = [
        call(1, "", "plan"),
        call(2, "researcher/fetcher", "fetch"),
        call(3, "researcher/fetcher", "fetch"),
        call(4, "writer/fetcher", "fetch"),
    ]
    card = reconstruct(calls, [], None)
    assert card is not None
    assert card["stats"] == {"sub_agents": 4, "depth": 2, "handoffs": 0}
    ids = [n["id"] for n in card["roster"]]
    assert ids == ["", "researcher", "researcher/fetcher", "writer", "writer/fetcher"]
    # researcher only delegated: it exists (observed) but made no calls itself.
    assert node(card, "researcher") == {
        "id": "researcher",
        "parent": "",
        "depth": 1,
        "tools": {},
        "calls": 0,
        "provenance": "observed",
    }
    assert node(card, "researcher/fetcher")["parent"] == "researcher"
    assert node(card, "researcher/fetcher")["tools"] == {"fetch": 2}
    assert edge(card, "", "researcher", "delegation")["count"] == 2
    assert edge(card, "researcher", "researcher/fetcher", "delegation")["count"] == 2
    assert edge(card, "writer", "writer/fetcher", "delegation")["count"] == 1


def test_handoffs_including_a_cycle_are_counted_and_ordered() -> None:
    calls = [call(1, "triage", "lookup"), call(3, "billing", "refund")]
    handoffs = [
        handoff(4, "billing", "triage", "done"),
        handoff(2, "triage", "billing", "needs refund"),
        handoff(5, "triage", "billing", None),
    ]
    card = reconstruct(calls, handoffs, None)
    assert card is not None
    assert card["stats"]["handoffs"] == 3
    assert [(h["seq"], h["from"], h["to"], h["reason"]) for h in card["handoffs"]] == [
        (2, "triage", "billing", "needs refund"),
        (4, "billing", "triage", "done"),
        (5, "triage", "billing", None),
    ]
    assert edge(card, "triage", "billing", "handoff")["count"] == 2
    assert edge(card, "billing", "triage", "handoff")["count"] == 1
    assert edge(card, "billing", "triage", "handoff")["provenance"] == "observed"


def test_one_actor_with_handoffs_is_still_multi_agent() -> None:
    card = reconstruct(
        [call(1, "agent/triage", "lookup")], [handoff(2, "agent/triage", "agent/sales")], None
    )
    assert card is not None
    assert [n["id"] for n in card["roster"]] == ["", "sales", "triage"]
    # sales was seen only as a handoff target: a real node that carried no call.
    assert edge(card, "", "sales", "delegation")["count"] == 0
    assert card["handoffs"][0]["to"] == "sales"


TOPOLOGY: dict[str, Any] = {
    "nodes": [
        {"id": "orchestrator", "tools": ["plan"], "parent": None},
        {"id": "researcher", "tools": ["web_search"], "parent": "orchestrator"},
        {"id": "writer", "tools": ["draft", "cite"], "parent": "orchestrator"},
        {"id": "critic", "tools": ["cite"], "parent": "orchestrator"},
        {"id": "archivist", "tools": ["archive"], "parent": "orchestrator"},
    ],
    "edges": [
        {"from": "writer", "to": "critic", "kind": "handoff"},
        {"from": "critic", "to": "writer", "kind": "handoff"},
    ],
}


def test_declared_topology_grounds_the_observed_graph() -> None:
    calls = [
        call(1, "", "plan"),  # root owner is the declared orchestrator: credited to root
        call(2, "researcher", "web_search"),  # derived
        call(3, "", "draft"),  # only writer owns draft: credited
        call(4, "", "cite"),  # writer and critic both own cite: unattributed
        call(5, "", "shell"),  # nobody declared shell: unattributed
        call(6, "scraper", "fetch"),  # derived, but not in the topology
        call(7, "", "archive"),  # archivist owns archive; never seen by path
    ]
    card = reconstruct(calls, [handoff(8, "writer", "critic")], TOPOLOGY)
    assert card is not None
    assert card["declared"] is True
    assert card["attribution"] == {"total": 7, "derived": 2, "credited": 3, "unattributed": 2}
    assert card["divergence"]["declared_only"] == ["archivist"]
    assert card["divergence"]["undeclared"] == ["scraper"]
    assert card["stats"] == {"sub_agents": 5, "depth": 1, "handoffs": 1}

    root = node(card, "")
    assert root["provenance"] == "declared+observed"
    assert root["tools"] == {"cite": 1, "plan": 1, "shell": 1}
    assert node(card, "researcher")["provenance"] == "declared+observed"
    assert node(card, "scraper")["provenance"] == "observed"
    assert node(card, "writer")["tools"] == {"cite": 0, "draft": 1}
    assert node(card, "writer")["provenance"] == "declared+observed"  # seen via the handoff
    assert node(card, "archivist")["provenance"] == "credited"
    assert node(card, "archivist")["calls"] == 1

    assert edge(card, "", "researcher", "delegation")["provenance"] == "declared+observed"
    assert edge(card, "", "scraper", "delegation")["provenance"] == "observed"
    assert edge(card, "writer", "critic", "handoff")["provenance"] == "declared+observed"
    assert edge(card, "critic", "writer", "handoff") == {
        "from": "critic",
        "to": "writer",
        "kind": "handoff",
        "count": 0,
        "provenance": "declared",
    }
    assert card["unexercised"] == [
        {"from": "", "to": "archivist", "kind": "delegation"},
        {"from": "critic", "to": "writer", "kind": "handoff"},
    ]


def test_tool_with_two_declared_owners_stays_unattributed() -> None:
    topology = {
        "nodes": [
            {"id": "a", "tools": ["search"], "parent": None},
            {"id": "b", "tools": ["search"], "parent": None},
        ]
    }
    calls = [call(1, "", "search"), call(2, "a", "other"), call(3, "b", "other")]
    card = reconstruct(calls, [], topology)
    assert card is not None
    assert card["attribution"] == {"total": 3, "derived": 2, "credited": 0, "unattributed": 1}
    assert node(card, "")["tools"] == {"search": 1}
    # Parentless peers sit one level below an implicit root: no orchestrator was declared.
    assert node(card, "a")["depth"] == 1 and node(card, "a")["provenance"] == "declared+observed"


def test_without_topology_root_calls_are_never_guessed() -> None:
    calls = [call(1, "", "web_search"), call(2, "researcher", "web_search")]
    card = reconstruct(calls, [], None)
    assert card is not None
    assert card["attribution"] == {"total": 2, "derived": 1, "credited": 0, "unattributed": 1}
    assert card["divergence"] == {"declared_only": [], "undeclared": []}
    assert node(card, "")["tools"] == {"web_search": 1}


def test_parent_chain_in_topology_becomes_a_nested_path() -> None:
    topology = {
        "nodes": [
            {"id": "boss", "tools": [], "parent": None},
            {"id": "researcher", "tools": [], "parent": "boss"},
            {"id": "fetcher", "tools": ["fetch"], "parent": "researcher"},
        ]
    }
    card = reconstruct([call(1, "boss", "plan"), call(2, "boss/researcher", "x")], [], topology)
    assert card is not None
    # The observed root "boss" is the declared orchestrator; fetcher is declared two levels down.
    assert card["divergence"]["declared_only"] == ["researcher/fetcher"]
    assert node(card, "researcher/fetcher")["depth"] == 2
    assert node(card, "researcher/fetcher")["parent"] == "researcher"
    assert card["stats"]["depth"] == 2
    assert {"from": "researcher", "to": "researcher/fetcher", "kind": "delegation"} in card[
        "unexercised"
    ]


def _busy_run() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    calls = [
        call(1, "", "plan"),
        call(2, "researcher", "web_search"),
        call(3, "researcher/fetcher", "fetch"),
        call(4, "writer", "draft"),
        call(5, "", "draft"),
        call(6, "critic", "cite"),
        call(7, "researcher", "web_search"),
    ]
    handoffs = [handoff(8, "writer", "critic", "review"), handoff(9, "critic", "writer")]
    return calls, handoffs


def test_same_input_gives_byte_identical_json() -> None:
    calls, handoffs = _busy_run()
    first = json.dumps(reconstruct(calls, handoffs, TOPOLOGY))
    second = json.dumps(reconstruct(calls, handoffs, TOPOLOGY))
    assert first == second


def test_call_order_does_not_change_the_card() -> None:
    calls, handoffs = _busy_run()
    expected = json.dumps(reconstruct(calls, handoffs, TOPOLOGY))
    rng = random.Random(7)
    for _ in range(5):
        shuffled_calls, shuffled_handoffs = calls[:], handoffs[:]
        rng.shuffle(shuffled_calls)
        rng.shuffle(shuffled_handoffs)
        assert json.dumps(reconstruct(shuffled_calls, shuffled_handoffs, TOPOLOGY)) == expected


def test_a_handoff_names_its_sub_agent_as_the_topology_does() -> None:
    topology = {
        "nodes": [
            {"id": "researcher", "parent": None},
            {"id": "writer", "tools": ["draft"], "parent": None},
            {"id": "fetcher", "tools": ["fetch"], "parent": "researcher"},
        ]
    }
    calls = [call(1, "researcher/fetcher", "fetch"), call(2, "writer", "draft")]
    handoffs = [handoff(3, "researcher", "fetcher"), handoff(4, "fetcher", "writer")]
    card = reconstruct(calls, handoffs, topology)
    assert card is not None
    # "fetcher" is the declared researcher/fetcher: one node, not a second undeclared one.
    assert [(h["from"], h["to"]) for h in card["handoffs"]] == [
        ("researcher", "researcher/fetcher"),
        ("researcher/fetcher", "writer"),
    ]
    assert card["divergence"] == {"declared_only": [], "undeclared": []}
    assert edge(card, "researcher", "researcher/fetcher", "handoff")["count"] == 1


def test_without_topology_a_handoff_name_is_the_one_observed_sub_agent_of_that_name() -> None:
    calls = [call(1, "", "plan"), call(2, "researcher/fetcher", "fetch")]
    card = reconstruct(calls, [handoff(3, "", "fetcher")], None)
    assert card is not None
    assert card["handoffs"][0]["to"] == "researcher/fetcher"
    assert [n["id"] for n in card["roster"]] == ["", "researcher", "researcher/fetcher"]
    # Two of that name: neither is guessed, the name stays a sub-agent of its own.
    calls.append(call(4, "writer/fetcher", "fetch"))
    card = reconstruct(calls, [handoff(5, "", "fetcher")], None)
    assert card is not None and card["handoffs"][0]["to"] == "fetcher"
