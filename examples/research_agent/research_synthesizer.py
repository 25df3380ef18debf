"""SYNTH stage: merge every research section into the final Markdown report.

The report always has the five sections of the research agent — Executive Summary, Key
Findings, Deep Dive, Practical Recommendations, Open Questions — in seed 001's shape: exactly
five Key Findings and a Deep Dive of about 400 words. The headings and the shape come from
this script and the model writes the text: one call per section, the Deep Dive one paragraph
per call. The calls share the notes as a common prompt prefix, which llama.cpp keeps in its
cache, so the notes are read once.

Publishes ``<run>/report.md`` under ``research:<run>:report`` and sets
``research:<run>:synth:done``.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

from titan import llm
from titan_sdk import TitanClient

#: Seed 001's report shape: five Key Findings and a Deep Dive of about 400 words.
FINDINGS = 5
DEEP_DIVE_WORDS = 400
#: Paragraphs of the Deep Dive: an overview, up to this many research topics, a synthesis.
DEEP_DIVE_TOPICS = 4
# Tokens per word of English prose, with room for the model to end its sentence.
TOKENS_PER_WORD = 1.6

# (heading, instruction, default max tokens) of the sections written in one call each.
SECTIONS: list[tuple[str, str, int]] = [
    ("Executive Summary",
     "Write the Executive Summary: exactly 3 sentences that directly answer the question.", 100),
    ("Key Findings",
     f"Write the Key Findings: exactly {FINDINGS} concrete, specific findings, one per line, "
     "each starting with '- '.", 220),
    ("Deep Dive", "", 0),  # written paragraph by paragraph: see deep_dive()
    ("Practical Recommendations",
     "Write the Practical Recommendations: 3 to 5 actionable takeaways, one per line, each "
     "starting with '- '.", 160),
    ("Open Questions",
     "Write the Open Questions: 2 to 4 honest gaps this research did not resolve, one per "
     "line, each starting with '- '.", 110),
]
SECTION_TITLES = [title for title, _, _ in SECTIONS]

SYSTEM = (
    "You are a senior analyst writing one section of a research report from the notes "
    "provided. Use only what the notes support; be specific. Write the section body only: "
    "no heading, no preamble."
)
_ANY_HEADING = re.compile(r"^(#{1,6})\s+(.*)$")
_LEADING_HEADING = re.compile(r"^\s*(#+\s*[^\n]*|\*\*[^\n*]+\*\*:?)\s*\n", re.IGNORECASE)
_BULLET = re.compile(r"^\s*(?:[-*\u2022]|\d+[.)])\s+(.*\S)\s*$")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_WORD = re.compile(r"\w+")


def clean_body(text: str, title: str) -> str:
    """The model's section body, fitted into the report: without a heading it may have
    repeated, its own headings pushed below the report's (``##`` is the report's level), and
    lines it repeated word for word kept once."""
    body = text.strip()
    match = _LEADING_HEADING.match(body + "\n")
    if match and title.lower().split()[0] in match.group(1).lower():
        body = body[match.end():].strip()
    lines: list[str] = []
    seen: set[str] = set()
    for line in body.splitlines():
        heading = _ANY_HEADING.match(line)
        if heading:
            line = "### " + heading.group(2)
        key = line.strip().lower()
        if key and key in seen:
            continue
        seen.add(key)
        lines.append(line)
    return "\n".join(lines).strip() or "_The model returned nothing for this section._"


def same(text: str) -> str:
    """What two findings share when they say the same thing: words, case and punctuation
    aside."""
    return " ".join(_WORD.findall(text.lower()))


def bullets(text: str, known: list[str] | None = None) -> list[str]:
    """The list items of a model's reply (``-``, ``*``, ``•`` or ``1.`` items), without their
    markers or the quotes a small model wraps them in, each once and none already ``known``;
    lines of fewer than three words are not findings."""
    items: list[str] = []
    seen = {same(k) for k in known or []}
    for line in text.splitlines():
        match = _BULLET.match(line)
        item = match.group(1).strip().lstrip("'\"`-*\u2022 ").strip() if match else ""
        if len(item.split()) >= 3 and same(item) not in seen:
            seen.add(same(item))
            items.append(item)
    return items


def note_sentences(notes: str) -> list[str]:
    """The research notes' own sentences, in order (headings and short fragments left out):
    what the Key Findings fall back on when the model gives fewer than five."""
    out: list[str] = []
    for line in notes.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        for sentence in _SENTENCE_END.split(line.strip()):
            sentence = sentence.strip().lstrip("-*\u2022 ").strip()
            if len(sentence.split()) >= 5:
                out.append(sentence)
    return out


def paragraph(text: str) -> str:
    """One prose paragraph from a reply: headings and list markers dropped, lines joined,
    and a sentence the model repeated kept once (small models loop)."""
    words: list[str] = []
    for line in text.splitlines():
        if _ANY_HEADING.match(line):
            continue
        match = _BULLET.match(line)
        words.append(match.group(1) if match else line.strip())
    sentences: list[str] = []
    for sentence in _SENTENCE_END.split(" ".join(w for w in words if w)):
        if sentence and sentence.lower() not in {s.lower() for s in sentences}:
            sentences.append(sentence)
    return " ".join(sentences)


def topics_of(sections: list[str]) -> list[str]:
    """The researched subtopics, from each section's ``## heading`` (a section without one
    is left out), at most DEEP_DIVE_TOPICS: further ones share the last paragraph."""
    found: list[str] = []
    for section in sections:
        first = section.strip().splitlines()[0] if section.strip() else ""
        heading = _ANY_HEADING.match(first)
        if heading and heading.group(2).strip() not in found:
            found.append(heading.group(2).strip())
    if len(found) > DEEP_DIVE_TOPICS:
        found = [*found[:DEEP_DIVE_TOPICS - 1], " and ".join(found[DEEP_DIVE_TOPICS - 1:])]
    return found


class Writer:
    """One model, one prompt prefix (the question and the notes, which llama.cpp keeps in
    its cache across the calls), one token cap."""

    def __init__(self, query: str, notes: str, model: str | None,
                 max_tokens: int | None) -> None:
        self.prefix = f"Question: {query}\n\nResearch notes:\n{notes}\n\n"
        self.model, self.cap = model, max_tokens

    def ask(self, instruction: str, tokens: int, temperature: float = 0.3,
            **params: Any) -> str:
        reply = llm.complete(
            [{"role": "system", "content": SYSTEM},
             {"role": "user", "content": self.prefix + instruction}],
            model=self.model, temperature=temperature,
            max_tokens=min(tokens, self.cap) if self.cap else tokens, **params)
        return reply.whole_sentences()


def key_findings(writer: Writer, instruction: str, tokens: int, notes: str) -> str:
    """Exactly FINDINGS bullets: what the model wrote, asked again for the missing ones
    (four times at most, a little warmer each time: a small model asked the same thing
    repeats itself), then the notes' own sentences for any still missing. Notes too thin
    to hold five distinct findings (a run capped at a few tokens per answer) give fewer:
    never the same finding twice."""
    found = bullets(writer.ask(instruction, tokens))
    for attempt in range(1, 5):
        if len(found) >= FINDINGS:
            break
        missing = FINDINGS - len(found)
        listed = "\n".join(f"- {item}" for item in found) or "(none yet)"
        more = writer.ask(
            f"These findings are already listed:\n{listed}\n\nWrite {missing} more concrete, "
            "specific findings that are different from those, one per line, each starting "
            "with '- '.", tokens, temperature=0.3 + 0.15 * attempt)
        found += bullets(more, found)
    found += bullets("\n".join(f"- {s}" for s in note_sentences(notes)), found)
    return "\n".join(f"- {item}" for item in found[:FINDINGS])


def deep_dive(writer: Writer, topics: list[str], words: int = DEEP_DIVE_WORDS) -> str:
    """About ``words`` words of connected prose, one paragraph per call: an overview, one
    paragraph per researched topic, a synthesis, and further paragraphs while it falls short
    of the length (two at most). A small model asked for 400 words at once stops after 80,
    or loops; a paragraph at a time it keeps near its length."""
    focuses = ["an overview that answers the question and frames what follows",
               *[f"{topic}: how it works and why it matters for the question"
                 for topic in topics],
               "how these pieces connect: the tradeoffs between them and what they mean "
               "in practice"]
    per = max(40, words // len(focuses))
    # Small models write about three quarters of the words they are asked for.
    asked = per * 4 // 3
    tokens = int(asked * TOKENS_PER_WORD)
    # Under a token cap (a quick run) the paragraphs cannot reach the length: no extension.
    extend = 0 if writer.cap and writer.cap < tokens else 2
    paragraphs: list[str] = []
    while focuses or (extend and sum(len(p.split()) for p in paragraphs) < words * 0.85):
        if focuses:
            focus = focuses.pop(0)
        else:
            extend -= 1
            focus = "a further point from the notes that the paragraphs so far have not covered"
        # The paragraphs so far are not in the prompt: shown them, a 0.5B model echoes them.
        text = paragraph(writer.ask(
            f"Write one paragraph of the Deep Dive, about {asked} words, on {focus}. Plain "
            "prose: no list, no heading.", tokens, frequency_penalty=0.3)).strip()
        if text:
            paragraphs.append(text)
    return "\n\n".join(paragraphs)


def synthesize(query: str, sections: list[str], *, model: str | None = None,
               max_tokens: int | None = None, run_id: str = "") -> str:
    notes = "\n\n".join(sections)
    writer = Writer(query, notes, model, max_tokens)
    parts = [f"# Research Report: {query}", ""]
    if run_id:
        parts += [f"_Agent run {run_id} \u00b7 {len(sections)} research sections \u00b7 "
                  "written by Titan's research agent_", ""]
    for title, instruction, tokens in SECTIONS:
        if title == "Deep Dive":
            body = deep_dive(writer, topics_of(sections))
        elif title == "Key Findings":
            body = key_findings(writer, instruction, tokens, notes)
        else:
            body = writer.ask(instruction, tokens)
        parts += [f"## {title}", "", clean_body(body, title), ""]
        print(f"wrote {title}: {len(body.split())} words", flush=True)
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--run-id", required=True)
    p.add_argument("--max-tokens", type=int, default=None)
    p.add_argument("--model", default=None)
    args = p.parse_args(argv)

    client = TitanClient()
    key = f"research:{args.run_id}"
    query = client.store_get(f"{key}:query") or ""
    keys = sorted(client.store_smembers(f"{key}:results"),
                  key=lambda k: tuple(int(x) for x in k.rsplit(":", 2)[-2:]))
    if not keys:
        print("no research results to synthesize", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        sections = [Path(client.get_artifact(k, save_path=Path(tmp) / f"{i}.txt")).read_text()
                    for i, k in enumerate(keys)]
    report = synthesize(query, sections, model=args.model, max_tokens=args.max_tokens,
                        run_id=args.run_id)
    path = Path(args.run_id) / "report.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(report)
    client.publish_artifact(f"{key}:report", path)
    client.store_put(f"{key}:synth:done", json.dumps({"sections": len(sections)}))
    print(f"report: {len(report.split())} words -> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
