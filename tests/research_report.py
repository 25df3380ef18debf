"""Whether a research agent's report is worth reading, and its evaluator's gaps real (issue 20).

The research agent's tests run these on what real runs wrote. A problem is one line a reader
would trip over; none is ``[]``. What counts as a sentence, and as two bullets saying the same
thing, is the shipped example's own (``research_synthesizer``), imported as it is; a gap is
judged by the evaluator's own ``gap_problem``.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples" / "research_agent"))
import research_evaluator as evaluator  # noqa: E402
import research_synthesizer as synthesizer  # noqa: E402

#: The bulleted sections, in which no two bullets may say the same thing.
LISTS = ["Key Findings", "Practical Recommendations", "Open Questions"]
_HEADING = re.compile(r"^\s*#{1,6}\s+(.*\S)\s*$")
_BULLET = re.compile(r"^\s*(?:[-*\u2022]|\d+[.)])\s+(.*\S)\s*$")
_LETTERS = re.compile(r"[^\W\d_]{2,}")
# Two sentence ends in a row: a full stop added after one the text had ("\u3002.", "e.g..").
_DOUBLED_END = re.compile(r"[\u3002\uff01\uff1f][.!?]|[.!?][\u3002\uff01\uff1f]|(?<![.])\.\.(?![.])")


def report_sections(report: str) -> dict[str, str]:
    """The report's ``## `` sections: title -> body, in order."""
    parts = re.split(r"^## (.+)$", report, flags=re.MULTILINE)
    return {title.strip(): body.strip()
            for title, body in zip(parts[1::2], parts[2::2], strict=True)}


def list_items(body: str) -> list[str]:
    return [m.group(1) for m in map(_BULLET.match, body.splitlines()) if m]


def check_report(report: str, subtopics: Sequence[str]) -> list[str]:
    """A section missing or out of order; a paragraph or bullet that does not end a
    sentence (cut off mid-sentence or mid-word, or on an abbreviation that ends none: "...
    weigh engines, e.g."), or that ends on a fragment such as a list marker ("... required.
    3.") or on a doubled end ("\u3002."); a section the model wrote nothing for (its
    placeholder, ``EMPTY``); a researched subtopic (``subtopics``) without its part in
    the Deep Dive; two bullets of the lists saying the same thing; an Open Question that is
    not a question; an Executive Summary of more than three sentences."""
    sections = report_sections(report)
    problems: list[str] = []
    if list(sections) != synthesizer.SECTION_TITLES:
        problems.append(f"sections {list(sections)}, expected {synthesizer.SECTION_TITLES}")
    for title, body in sections.items():
        for block in re.split(r"\n\s*\n", body):
            lines = [line for line in block.splitlines() if line.strip()]
            if not lines or _HEADING.match(lines[0]):
                continue
            items = list_items(block)
            for unit in items or [" ".join(lines)]:
                if synthesizer.EMPTY in unit:
                    problems.append(f"{title}: empty: {synthesizer.EMPTY}")
                elif _DOUBLED_END.search(unit):
                    problems.append(f"{title}: a sentence ends twice: ...{unit[-70:]!r}")
                elif not synthesizer.ends_sentence(unit):
                    problems.append(f"{title}: cut off: ...{unit[-70:]!r}")
                elif any(not _LETTERS.search(s) for s in synthesizer.sentences(unit)):
                    problems.append(f"{title}: a fragment: ...{unit[-70:]!r}")
    summary = synthesizer.sentences(sections.get("Executive Summary", ""))
    if len(summary) > synthesizer.SUMMARY_SENTENCES:
        problems.append(f"Executive Summary: {len(summary)} sentences, at most "
                        f"{synthesizer.SUMMARY_SENTENCES}")
    dive = sections.get("Deep Dive", "")
    parts = [m.group(1).strip().lower() for m in map(_HEADING.match, dive.splitlines()) if m]
    for topic in subtopics:
        if topic.strip().lower() not in parts:
            problems.append(f"Deep Dive: no part on the researched subtopic {topic!r}")
    listed = [(title, item) for title in LISTS for item in list_items(sections.get(title, ""))]
    for i, (title, item) in enumerate(listed):
        for other_title, other in listed[i + 1:]:
            if synthesizer.similar(item, other):
                problems.append(f"the same bullet twice: {title} {item!r} and {other_title} "
                                f"{other!r}")
    asked = list_items(sections.get("Open Questions", ""))
    if not asked:
        problems.append("Open Questions: no question")
    problems += [f"Open Questions: not a question: {q!r}" for q in asked
                 if not q.rstrip().endswith(("?", "\uff1f"))]
    return problems


def check_decision(decision: dict[str, Any], researched: list[str],
                   sections: list[str]) -> list[str]:
    """An unknown decision; gaps with SYNTHESIZE, or none with DEEPEN; a gap that a
    researched subtopic already names or a sentence of the ``sections`` already discusses;
    no reason."""
    problems: list[str] = []
    gaps = decision.get("gaps") or []
    if decision.get("decision") not in ("SYNTHESIZE", "DEEPEN"):
        problems.append(f"unknown decision {decision.get('decision')!r}")
    if (decision.get("decision") == "DEEPEN") != bool(gaps):
        problems.append(f"{decision.get('decision')} with gaps {gaps}")
    for i, gap in enumerate(gaps):
        why = evaluator.gap_problem(gap, [*researched, *gaps[:i]], sections)
        if why is not None:
            problems.append(f"gap {gap!r}: {why}")
    if not str(decision.get("reason") or "").strip():
        problems.append("no reason given")
    return problems
