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
from tests import research_report

from titan import llm
from titan.errors import InvalidOutput
from titan.llm.types import Generation, Request, Usage

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples" / "research_agent"))
import research_evaluator as evaluator  # noqa: E402
import research_planner as planner  # noqa: E402
import research_synthesizer as synthesizer  # noqa: E402
import research_worker as worker  # noqa: E402


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


def test_a_titles_own_leading_digits_and_dot_are_no_numbering() -> None:
    # "5G network slicing" was planned as "G network slicing" (a QA pass): every leading
    # digit and dot was stripped as if it were a list marker.
    data = {"subtopics": ["5G network slicing", "3D printing materials", "2) 401(k) limits",
                          "2024 election polling", ".NET runtime performance", "- 1.5 rule"]}
    assert planner.normalize_plan(data, 6, "How will new tech matter?") == [
        "5G network slicing", "3D printing materials", "401(k) limits",
        "2024 election polling", ".NET runtime performance", "1.5 rule"]


def test_plan_drops_the_question_near_duplicates_and_stray_letters() -> None:
    # Seen from the local model: the question as a subtopic, three near-identical titles,
    # one ending in a stray CJK character.
    query = "How does LoRA work in LLM fine-tuning?"
    data = {"subtopics": ["How does LoRA work in LLM fine-tuning?", "LoRA",
                          "Low-rank adapters", "Low-rank adapter", "QLoRA quantization\u9776",
                          "Rank selection\x07"]}
    assert planner.normalize_plan(data, 6, query) == ["Low-rank adapters",
                                                      "QLoRA quantization", "Rank selection"]
    # Titles naming the question's own aspects stay, however many of its words they use; so
    # do look-alike words that are not the same ("transportation", "transmission"), a Greek
    # letter, and titles in a script written without spaces (only the question is dropped).
    nuclear = "What are the costs, risks and regulation of nuclear power in France?"
    assert planner.normalize_plan({"subtopics": [
        "Costs of nuclear power in France", "Risks of nuclear power", nuclear]}, 4, nuclear) \
        == ["Costs of nuclear power in France", "Risks of nuclear power"]
    assert planner.normalize_plan({"subtopics": [
        "Transportation infrastructure", "Transmission infrastructure", "β-blocker use"]},
        4, "grids") == ["Transportation infrastructure", "Transmission infrastructure",
                        "β-blocker use"]
    assert planner.normalize_plan({"subtopics": ["量子比特的原理", "量子纠错", "量子计算机如何工作"]},
                                  4, "量子计算机如何工作？") == ["量子比特的原理", "量子纠错"]
    # A title in the question's own script keeps its letters.
    assert planner.normalize_plan({"subtopics": ["微调的原理", "显存成本"]}, 4,
                                  "LoRA 微调是如何工作的？") == ["微调的原理", "显存成本"]


def test_the_planner_prompt_gives_no_example_title_to_copy() -> None:
    assert not any(cue in planner.SYSTEM.lower() for cue in ("for example", "e.g.", "such as"))


def test_a_plan_of_too_few_distinct_aspects_is_asked_again(script: Any) -> None:
    provider = script('{"subtopics": ["How do vaccines work", "Vaccines"]}',
                      '{"subtopics": ["Immune memory", "Adjuvants", "Vaccines"]}')
    assert planner.plan("How do vaccines work?", 3, model="scripted/m") == [
        "Immune memory", "Adjuvants"]
    assert "repeat the question" in provider.requests[1].messages[-1]["content"]


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


NOTES = ["## Cost\n\nHNSW indexes cost memory: about 1.5 times the raw vectors.",
         "## Latency\n\nSharding adds a network hop to every query."]


def test_gaps_are_grounded_in_what_the_sections_miss() -> None:
    out = evaluator.normalize_decision(
        {"decision": "DEEPEN", "reason": "thin",
         "gaps": ["Cost", "HNSW index memory", "Security and access control",
                  "security and access control", "Data freshness after updates"]},
        ["Cost", "Latency"], NOTES)
    # 'Cost' is researched, and a sentence already discusses HNSW index memory.
    assert out["gaps"] == ["Security and access control", "Data freshness after updates"]
    assert research_report.check_decision(out, ["Cost", "Latency"], NOTES) == []
    assert evaluator.gap_problem("Latency", ["Cost", "Latency"], NOTES) == \
        "already researched as 'Latency'"
    assert evaluator.gap_problem("Query latency", ["Cost", "Latency"], NOTES) is None
    assert "already discuss" in evaluator.gap_problem("Sharding network hop", [], NOTES)
    assert research_report.check_decision({"decision": "DEEPEN", "reason": "r", "gaps": ["Cost"]},
                                    ["Cost"], NOTES) == [
        "gap 'Cost': already researched as 'Cost'"]


def test_a_reason_cut_at_the_schemas_length_keeps_its_whole_sentences() -> None:
    long = "The notes cover cost. " + "They also cover latency and more " * 8
    out = evaluator.normalize_decision({"decision": "SYNTHESIZE", "reason": long[:200],
                                        "gaps": []}, ["Cost"], NOTES)
    assert out["reason"] == "The notes cover cost."
    cut = evaluator.normalize_decision({"decision": "DEEPEN", "reason": "x" * 200,
                                        "gaps": ["Security"]}, ["Cost"], NOTES)
    assert cut["reason"] == "The notes do not discuss Security."


def test_result_keys_sort_by_iteration_then_index() -> None:
    keys = ["research:R:result:2:0", "research:R:result:1:10", "research:R:result:1:2"]
    assert sorted(keys, key=evaluator.result_order) == [
        "research:R:result:1:2", "research:R:result:1:10", "research:R:result:2:0"]


# ------------------------------------------------------------------------------- synthesizer


def test_report_has_the_five_sections_whatever_the_model_writes(script: Any) -> None:
    provider = script(
        "## Executive Summary\nLoRA adds low-rank adapters. It trains few weights. It "
        "merges them at inference. It costs little.",  # a fourth sentence: left out
        # Key Findings: nothing usable, nor when asked for the missing ones, and notes too
        # thin to fall back on.
        "**Key Findings:**\n- a", "",
        # Practical Recommendations: nothing.
        "",
        # Open Questions, one per subtopic: a question without its mark.
        "Is A cheap.",
        # Practical Recommendations again, without the notes: nothing either.
        "",
        # The Deep Dive's opening and closing paragraphs.
        "# Deep dive\nNarrative about A.", "They connect.")
    report = synthesizer.synthesize("Q?", ["## A\n\nNotes on A."], model="scripted/m",
                                    run_id="R_1")
    titles = [line[3:] for line in report.splitlines() if line.startswith("## ")]
    assert titles == synthesizer.SECTION_TITLES
    assert ("## Executive Summary\n\nLoRA adds low-rank adapters. It trains few weights. It "
            "merges them at inference.\n") in report
    assert "**Key Findings:**" not in report and "# Deep dive" not in report
    assert "## Key Findings\n\n_The model returned nothing for this section._" in report
    assert ("## Deep Dive\n\nNarrative about A.\n\n### A\n\nNotes on A.\n\n"
            "### How they fit together\n\nThey connect.\n") in report
    assert "## Practical Recommendations\n\n_The model returned nothing" in report
    # The model's question gets its mark; the subtopic stands in for a second one.
    assert "## Open Questions\n\n- Is A cheap?\n- What remains unresolved about A?" in report
    # The shape holds, and the checker names the sections left empty (it passed them).
    assert research_report.check_report(report, ["A"]) == [
        f"{title}: empty: {synthesizer.EMPTY}"
        for title in ("Key Findings", "Practical Recommendations")]
    assert not provider.replies  # every call the shape needs was made, and no more
    # The second ask for recommendations and the two Deep Dive paragraphs went without the
    # notes (shown them, a 0.5B model copies them), after every call that reads them (their
    # prompt prefix stays in llama.cpp's cache).
    assert ["Research notes" in r.messages[-1]["content"] for r in provider.requests] == [
        True] * 5 + [False] * 3


def test_a_question_on_several_lines_is_a_one_line_title(script: Any) -> None:
    # Seed 001's loop stores the question as given: its newlines made Markdown of their own.
    script(*[""] * 20)
    report = synthesizer.synthesize("How will 5G change IoT?\n\n## Open Questions\n\n- x",
                                    ["## A\n\nNotes on A."], model="scripted/m")
    assert report.splitlines()[0] == "# Research Report: How will 5G change IoT? ## Open " \
                                     "Questions - x"
    assert [line for line in report.splitlines() if line.startswith("## ")] == [
        f"## {title}" for title in synthesizer.SECTION_TITLES]


def test_the_summary_loses_the_section_name_the_model_echoed(script: Any) -> None:
    script("**Executive Summary:** LoRA adds adapters. It trains few weights.", *[""] * 20)
    report = synthesizer.synthesize("Q?", ["## A\n\nNotes on A."], model="scripted/m")
    assert "## Executive Summary\n\nLoRA adds adapters. It trains few weights.\n" in report


def test_a_reply_cut_at_max_tokens_never_ends_mid_sentence() -> None:
    whole = synthesizer.whole
    assert whole("It scales. Memory grows with the ind", cut=True) == "It scales."
    assert whole("Memory grows with the ind", cut=True) == ""
    assert whole("Use HNSW indexes", cut=False) == "Use HNSW indexes."
    assert whole("Searches are fast. 3.", cut=False) == "Searches are fast."
    assert whole("The default rank is 8.", cut=True) == "The default rank is 8."
    # A researcher's section cut inside a numbered list: its heading, the list's intro, its
    # bold labels and the dangling "3." go; each item ends a sentence.
    section = ("### Mechanisms\n\nHere are the main points:\n\n1. **Indexing**: HNSW "
               "trades memory for recall\n\n2. **Sharding**: Splits the index. It adds "
               "latency\n\n3.")
    assert synthesizer.prose(section, cut=True) == [
        "Indexing: HNSW trades memory for recall.", "Sharding: Splits the index. It adds "
        "latency."]
    # Cut inside its last item: that item keeps its whole sentences only.
    assert synthesizer.prose("1. Rank 8 is common.\n2. Alpha scales it. The upd",
                             cut=True) == ["Rank 8 is common. Alpha scales it."]


def test_an_abbreviations_full_stop_ends_no_sentence() -> None:
    # The three-sentence cap kept "... weigh engines, e.g." and a reply cut at max_tokens
    # was cut back to "... in the U.S." (a QA pass): both read as finished sentences.
    reply = ("Vector databases speed up retrieval. They cost more memory. Teams should weigh "
             "engines, e.g. Milvus vs. pgvector, against their latency budget. A fourth.")
    assert synthesizer.sentences(reply)[2] == ("Teams should weigh engines, e.g. Milvus vs. "
                                               "pgvector, against their latency budget.")
    assert synthesizer.sentences("Built in the U.S. Then sold in Europe, etc. Done.") == [
        "Built in the U.S.", "Then sold in Europe, etc.", "Done."]
    assert synthesizer.whole("It is fast. Latency is 5 ms in the U.S. region and grows with "
                             "appro", cut=True) == "It is fast."
    assert synthesizer.whole("Use a benchmark, e.g.", cut=False) == ""
    assert synthesizer.ends_sentence("Built in the U.S.")
    assert not synthesizer.ends_sentence("Teams should weigh engines, e.g.")


def test_a_statement_is_no_question_for_opening_on_a_question_word() -> None:
    assert synthesizer.questions(
        "- Do not deploy without a benchmark.\n- What remains is the cost of reindexing.\n"
        "- When the index grows, latency rises.\n- Can be sharded.\n"
        "- What latency does a slice guarantee.\n- Do teams need HNSW.\n"
        "- How much memory does HNSW take.\n- Why is recall lower.") == [
        "What latency does a slice guarantee?", "Do teams need HNSW?",
        "How much memory does HNSW take?", "Why is recall lower?"]


def test_near_duplicate_bullets_are_one_bullet() -> None:
    assert synthesizer.similar(
        "Vector databases are more complex to implement and maintain than traditional ones.",
        "Vector databases can be more complex to implement and maintain than traditional ones.")
    assert not synthesizer.similar(
        "Vector databases can be less efficient than relational ones for exact queries.",
        "Vector databases can be less scalable than relational ones.")
    assert synthesizer.bullets("- Indexes cost memory.\n- **Indexes** cost memory!\n"
                               "- Sharding adds latency") == [
        "Indexes cost memory.", "Sharding adds latency."]
    assert synthesizer.questions("- Vector databases are not designed for it.\n"
                                 "- How far does HNSW scale.\n- What about writes? They lag.\n"
                                 "- Which index fits") == [
        "How far does HNSW scale?", "What about writes?", "Which index fits?"]


def test_the_checker_names_what_a_reader_would_trip_over() -> None:
    bad = "\n".join([
        "# Research Report: Q?", "", "## Executive Summary", "", "It answers the questi", "",
        "## Key Findings", "", "- Indexes cost memory.", "- The indexes cost memory.", "",
        "## Deep Dive", "", "### Cost", "", "Cost matters. 3.", "",
        "## Practical Recommendations", "", "- Benchmark recall on your own data.", "",
        "## Open Questions", "", "- Latency is unknown.", ""])
    problems = research_report.check_report(bad, ["Cost", "Latency"])
    assert problems == [
        "Executive Summary: cut off: ...'It answers the questi'",
        "Deep Dive: a fragment: ...'Cost matters. 3.'",
        "Deep Dive: no part on the researched subtopic 'Latency'",
        "the same bullet twice: Key Findings 'Indexes cost memory.' and Key Findings "
        "'The indexes cost memory.'",
        "Open Questions: not a question: 'Latency is unknown.'"]
    four = bad.replace("It answers the questi", "One. Two. Three. Four.")
    assert "Executive Summary: 4 sentences, at most 3" in research_report.check_report(
        four, ["Cost", "Latency"])


def test_the_checker_finds_a_sentence_cut_at_an_abbreviation() -> None:
    report = "\n".join([
        "# R", "## Executive Summary", "Indexes cost memory. Teams weigh engines, e.g.",
        "## Key Findings", "- Indexes cost memory.", "## Deep Dive", "### T", "Text here.",
        "## Practical Recommendations", "- Benchmark recall on your own data.",
        "## Open Questions", "- Why is recall lower?"])
    assert research_report.check_report(report, ["T"]) == [
        "Executive Summary: cut off: ...'Indexes cost memory. Teams weigh engines, e.g.'"]


class Chinese(Scripted):
    """A hosted model answering a Chinese question in Chinese, each kind of call alike (as
    the QA pass's scripted server did)."""

    def generate(self, request: Request) -> Generation:
        self.requests.append(request)
        asked = request.messages[-1]["content"]
        text = next((reply for key, reply in ZH if key in asked), ZH_PROSE)
        return Generation(text, Usage(20, 10), f"scripted/{request.model}")


ZH = [
    ("Executive Summary", "向量数据库能显著提升检索增强生成的检索速度。但它们带来了更高的内存和运维成本。"
                          "选择时需要在延迟、成本和数据新鲜度之间权衡。"),
    ("Key Findings", "- HNSW 索引在百万级向量上可实现毫秒级查询延迟。\n- 索引常驻内存使硬件成本随数据量线"
                     "性增长。\n- 嵌入模型更换后需要重新计算全部向量。\n- 批量写入会触发索引重建并降低数据新"
                     "鲜度。\n- 混合检索结合关键词与向量可提升召回率。"),
    ("Practical Recommendations", "- 在上线前用真实查询负载测试索引延迟。\n- 为嵌入模型版本建立重新索引"
                                  "流程。\n- 监控内存占用并规划分片策略。"),
    ("Write one question", "在十亿级向量规模下，HNSW 索引的内存占用具体是多少？"),
]
ZH_PROSE = "这些子主题共同决定了向量数据库在生产环境中的表现。性能与成本之间存在直接的取舍关系。"
ZH_TOPICS = ["向量索引的查询性能", "存储成本与运维负担", "检索质量与嵌入管理"]


def test_a_chinese_report_has_every_section_and_the_checker_reads_it() -> None:
    # A Chinese question answered in Chinese gave empty Key Findings and Recommendations
    # (items under three space-separated words were dropped: every Chinese one), sentences
    # ending "\u3002." and no Open Question of the model's; the checker approved it (a QA
    # pass).
    llm.register_provider("scripted", Chinese([]))
    try:
        notes = "向量数据库使用近似最近邻索引来加速检索。HNSW 索引在百万级数据上通常能达到毫秒级延迟。" \
                "索引需要大量内存，这会提高运维成本。批量更新会导致索引重建，影响数据新鲜度。"
        report = synthesizer.synthesize("向量数据库在生产环境的 RAG 系统中有哪些取舍？",
                                        [f"## {t}\n\n{notes}" for t in ZH_TOPICS],
                                        model="scripted/m", run_id="R_1")
    finally:
        llm.unregister_provider("scripted")
    assert research_report.check_report(report, ZH_TOPICS) == [], report
    sections = research_report.report_sections(report)
    assert len(research_report.list_items(sections["Key Findings"])) == 5
    assert len(research_report.list_items(sections["Practical Recommendations"])) == 3
    assert "在十亿级向量规模下，HNSW 索引的内存占用具体是多少？" in sections["Open Questions"]
    assert "运维成本。" in sections["Deep Dive"] and "\u3002." not in report
    assert "\u3002 " not in report  # Chinese sentences run on, without a space between
    assert len(synthesizer.sentences(sections["Executive Summary"])) == 3


def test_chinese_text_is_measured_and_compared_by_its_characters() -> None:
    assert synthesizer.length("HNSW 索引在百万级向量上可实现毫秒级查询延迟。") == 1 + 10
    assert synthesizer.whole("索引需要大量内存", cut=False) == "索引需要大量内存。"
    assert synthesizer.whole("索引需要大量内存。批量更新会导致索", cut=True) == "索引需要大量内存。"
    assert synthesizer.similar("索引常驻内存使硬件成本随数据量线性增长。",
                               "索引常驻内存，使硬件成本随着数据量线性增长。")
    assert not synthesizer.similar("索引常驻内存使硬件成本随数据量线性增长。",
                                   "嵌入模型更换后需要重新计算全部向量。")
    assert synthesizer.questions("- 内存占用是多少？还有别的。\n- 监控内存占用。") == ["内存占用是多少？"]
    doubled = "\n".join(["# R", "## Executive Summary", "索引很快。.", "## Key Findings",
                          "- 索引需要大量内存。", "## Deep Dive", "### T", "索引很快。",
                          "## Practical Recommendations", "- 测试索引延迟。", "## Open Questions",
                          "- 内存占用是多少？"])
    assert research_report.check_report(doubled, ["T"]) == [
        "Executive Summary: a sentence ends twice: ...'索引很快。.'"]


def test_section_bodies_are_prose_without_headings() -> None:
    assert synthesizer.prose("## Deep Dive\n\n## Cost and overhead\nText.\n# Latency\n"
                             "- same point\n- same point\n", cut=False) == [
        "Text. same point. same point."]
    assert synthesizer.distinct("Text. Same point here. Same point here!", said := []) \
        == "Text. Same point here."
    assert said == ["Text.", "Same point here."]


@pytest.mark.parametrize(("reply", "section"), [
    # The model ended itself on a lead-in to a list it never wrote: the lead-in goes.
    ("Vector stores trade recall for speed.\n\nTypical numbers include:\n",
     "Vector stores trade recall for speed."),
    # ... or on a heading, or without its last full stop.
    ("Indexes cost memory.\n\n## Latency", "Indexes cost memory."),
    ("Indexes cost memory", "Indexes cost memory."),
    ('He said "it scales."', 'He said "it scales."'),
    # A Chinese one ends on its own full stop, never given a second (it was: "\u3002.").
    ("索引需要大量内存。", "索引需要大量内存。"),
    ("索引需要大量内存", "索引需要大量内存。"),
])
def test_a_section_the_model_ended_itself_ends_on_a_whole_sentence(
        script: Any, reply: str, section: str) -> None:
    script(reply)
    text = worker.research("Q?", "Costs", model="scripted/m")
    assert text == section and synthesizer.ends_sentence(text)


def test_two_findings_with_the_same_opening_are_one_said_twice() -> None:
    # A make demo report's Key Findings 3 and 4 both began so, and both were kept.
    a = ("Vector databases are designed to store and retrieve data in a way that is "
         "efficient for similarity search.")
    b = ("Vector databases are designed to store and retrieve data in a way that is "
         "efficient and scalable across clusters of machines with replication.")
    assert synthesizer.similar(a, b)
    assert not synthesizer.similar(a, "Indexes like HNSW trade memory for recall.")
    assert not synthesizer.similar("Vector databases scale.", "Vector databases index.")
