"""The research agent's JSON decisions: planner and evaluator, well-formed and malformed.

The model is replaced at the provider seam (``titan.llm.register_provider``) by a script of
replies, so these tests exercise the real ``titan.llm.complete`` path — schema hint,
validation, the one repair request — and the example's own normalisation.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from titan import llm
from titan.errors import InvalidOutput
from titan.llm.types import Generation, Request, Usage

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples" / "research_agent"))
import research_evaluator as evaluator  # noqa: E402
import research_planner as planner  # noqa: E402
import research_synthesizer as synthesizer  # noqa: E402


class Scripted:
    """A provider answering from a list of replies, keeping what it was asked."""

    name = "scripted"

    def __init__(self, replies: list[str]) -> None:
        self.replies = list(replies)
        self.requests: list[Request] = []

    def generate(self, request: Request) -> Generation:
        self.requests.append(request)
        if not self.replies:
            raise AssertionError("the script ran out of replies")
        return Generation(self.replies.pop(0), Usage(20, 10), f"scripted/{request.model}")

    def cost(self, model: str, usage: Usage) -> tuple[float | None, str]:
        return 0.0, "registered"


@pytest.fixture
def script() -> Iterator[Any]:
    made: list[Scripted] = []

    def use(*replies: str) -> Scripted:
        provider = Scripted(list(replies))
        llm.register_provider("scripted", provider)
        made.append(provider)
        return provider

    yield use
    llm.unregister_provider("scripted")


# ------------------------------------------------------------------------------- planner


def test_plan_cleans_numbering_duplicates_and_caps_the_count() -> None:
    data = {"subtopics": ["1. Cost and overhead.", "cost and overhead", "- Latency", 7, "ab",
                          "Retrieval quality", "Data freshness", "Security"]}
    assert planner.normalize_plan(data, 3) == ["Cost and overhead", "Latency",
                                               "Retrieval quality"]


@pytest.mark.parametrize("data", [None, [], {"topics": ["a"]}, {"subtopics": "Latency"},
                                  {"subtopics": [1, 2, "x"]}])
def test_plan_without_usable_subtopics_is_an_error(data: Any) -> None:
    with pytest.raises(ValueError, match="subtopic"):
        planner.normalize_plan(data, 4)


def test_planner_asks_for_json_of_the_plan_schema(script: Any) -> None:
    provider = script('{"subtopics": ["Low-rank adapters", "Training cost", "QLoRA"]}')
    topics = planner.plan("How does LoRA work?", 3, model="scripted/m")
    assert topics == ["Low-rank adapters", "Training cost", "QLoRA"]
    (request,) = provider.requests
    assert request.json_schema is not None
    assert request.json_schema["properties"]["subtopics"]["maxItems"] == 3
    assert "JSON Schema" in request.messages[0]["content"]  # the shape is told, not only forced


def test_planner_repairs_malformed_json_once(script: Any) -> None:
    provider = script('Sure! Here are the subtopics: {"subtopics": ["Rank", ',
                      '```json\n{"subtopics": ["Rank choice", "Adapter merging"]}\n```')
    assert planner.plan("LoRA?", 4, model="scripted/m") == ["Rank choice", "Adapter merging"]
    repair = provider.requests[1].messages
    assert repair[-2] == {"role": "assistant",
                          "content": 'Sure! Here are the subtopics: {"subtopics": ["Rank", '}
    assert "not valid JSON" in repair[-1]["content"]


def test_planner_gives_up_with_a_clear_error_after_one_repair(script: Any) -> None:
    script('{"subtopics": []}', '{"subtopics": "none"}')
    with pytest.raises(InvalidOutput) as caught:
        planner.plan("LoRA?", 4, model="scripted/m")
    assert "after one repair attempt" in str(caught.value)
    assert any("subtopics" in p for p in caught.value.problems)


# ------------------------------------------------------------------------------- evaluator


def test_decision_synthesize_drops_gaps() -> None:
    out = evaluator.normalize_decision(
        {"decision": "synthesize", "reason": "covered", "gaps": ["More"]}, ["A"])
    assert out == {"decision": "SYNTHESIZE", "reason": "covered", "gaps": []}


def test_decision_deepen_keeps_only_new_gaps() -> None:
    out = evaluator.normalize_decision(
        {"decision": "DEEPEN", "reason": "thin", "gaps": ["Latency.", "latency", "Cost", 3, "Q"]},
        ["Cost"])
    assert out == {"decision": "DEEPEN", "reason": "thin", "gaps": ["Latency"]}


def test_deepen_without_a_new_gap_becomes_synthesize() -> None:
    out = evaluator.normalize_decision({"decision": "DEEPEN", "reason": "more", "gaps": ["Cost"]},
                                       ["cost"])
    assert out["decision"] == "SYNTHESIZE" and out["gaps"] == []
    assert "no new gap" in out["reason"]


@pytest.mark.parametrize("data", [["DEEPEN"], {"decision": "MAYBE"}, {}, "SYNTHESIZE"])
def test_unusable_decisions_are_errors(data: Any) -> None:
    with pytest.raises(ValueError):
        evaluator.normalize_decision(data, [])


def test_evaluator_decision_drives_the_loop_through_json(script: Any) -> None:
    provider = script("not json at all",
                      json.dumps({"decision": "DEEPEN", "reason": "no cost data",
                                  "gaps": ["Serving cost"]}))
    out = evaluator.evaluate("Q?", ["## A\n\nnotes"], ["A"], model="scripted/m")
    assert out == {"decision": "DEEPEN", "reason": "no cost data", "gaps": ["Serving cost"]}
    assert len(provider.requests) == 2  # one repair
    assert provider.requests[0].json_schema == evaluator.DECISION_SCHEMA


def test_evaluator_rejects_a_decision_outside_the_enum(script: Any) -> None:
    bad = json.dumps({"decision": "CONTINUE", "reason": "", "gaps": []})
    script(bad, bad)
    with pytest.raises(InvalidOutput, match="decision"):
        evaluator.evaluate("Q?", ["notes"], [], model="scripted/m")


def test_result_keys_sort_by_iteration_then_index() -> None:
    keys = ["research:R:result:2:0", "research:R:result:1:10", "research:R:result:1:2"]
    assert sorted(keys, key=evaluator.result_order) == [
        "research:R:result:1:2", "research:R:result:1:10", "research:R:result:2:0"]


# ------------------------------------------------------------------------------- synthesizer


def test_report_has_the_five_sections_whatever_the_model_writes(script: Any) -> None:
    provider = script(
        "## Executive Summary\nLoRA adds low-rank adapters.",
        # Key Findings: nothing usable at first, nor in the four asks for the missing ones,
        # and notes too thin to fall back on.
        "**Key Findings:**\n- a", "", "", "", "",
        # The Deep Dive, a paragraph per call: overview, the one topic, the synthesis, and
        # two more while it falls short of its length.
        "# Deep dive\nNarrative.", "Second.", "Third.", "Fourth.", "Fifth.",
        "", "- Unknown scaling")
    report = synthesizer.synthesize("Q?", ["## A\n\nnotes"], model="scripted/m", run_id="R_1")
    titles = [line[3:] for line in report.splitlines() if line.startswith("## ")]
    assert titles == synthesizer.SECTION_TITLES
    assert "## Executive Summary\n\nLoRA adds low-rank adapters." in report
    assert "**Key Findings:**" not in report and "# Deep dive" not in report
    assert "## Key Findings\n\n_The model returned nothing for this section._" in report
    assert "## Deep Dive\n\nNarrative.\n\nSecond.\n\nThird.\n\nFourth.\n\nFifth.\n" in report
    assert "## Practical Recommendations\n\n_The model returned nothing" in report
    assert not provider.replies  # every call the shape needs was made, and no more


def test_section_bodies_stay_inside_their_section() -> None:
    body = synthesizer.clean_body(
        "## Deep Dive\n\n## Cost and overhead\nText.\n# Latency\n- same point\n- same point\n",
        "Deep Dive")
    assert body == "### Cost and overhead\nText.\n### Latency\n- same point"
