"""SYNTH stage: merge every research section into the final Markdown report.

The report has seed 001's five sections: Executive Summary, Key Findings (five), Deep Dive,
Practical Recommendations, Open Questions. Its structure is assembled here and the model
writes the content, one short answer per call: asked for a whole report, a 0.5B model drops
sections, stops mid-sentence and says the same thing twice. Whatever it writes, the report
keeps these properties (``tests/research_report.py`` checks them, on real runs too):

- Every paragraph and bullet is whole sentences. Each call asks for a number of sentences or
  items that fits its token budget, so the model ends its answer itself; a reply that still
  stops at ``max_tokens`` is cut back to its last complete sentence (:func:`whole`, the
  safety net), never left ending mid-word.
- The Deep Dive has one subsection per researched subtopic, made of that researcher's own
  section (:func:`deep_dive`), between an overview and how the pieces fit together, both
  written by the model. Asked to retell all the sections, the model covers two of four.
- No bullet repeats another bullet of the report, case, punctuation and small rewordings
  aside (:func:`similar`).
- Every Open Question is a question (:func:`questions`), asked per researched subtopic.

The calls share the question and the notes as a common prompt prefix, which llama.cpp keeps
in its cache, so the notes are read once.

Publishes ``<run>/report.md`` under ``research:<run>:report`` and sets
``research:<run>:synth:done``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import re
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from titan import llm
from titan_sdk import TitanClient

SECTION_TITLES = ["Executive Summary", "Key Findings", "Deep Dive",
                  "Practical Recommendations", "Open Questions"]
#: Seed 001's shape: five Key Findings, a Deep Dive of about 400 words: an even share of
#: DEEP_DIVE_WORDS for the researched subtopics (~90 words each of four), and an opening and
#: a closing paragraph.
FINDINGS = 5
DEEP_DIVE_WORDS = 360
CLOSING = "How they fit together"

# (instruction, max tokens). Each asks for a count of sentences or items that its budget
# holds with room to spare (~35 tokens a sentence), so the model ends the answer itself.
# Where a list should cover the researched subtopics, it names them: "one about each of".
SUMMARY_SENTENCES = 3
SUMMARY = ("Write the Executive Summary: exactly 3 sentences that directly answer the "
           "question. Plain prose: no list, no heading.", 120)
FINDINGS_ASK = (f"Write the Key Findings: exactly {FINDINGS} concrete, specific findings from "
                "the notes, covering {topics}, each a single sentence saying something "
                "different, one per line, each starting with '- '.", 240)
MORE_FINDINGS = ("These findings are already listed:\n{listed}\n\nWrite {count} more "
                 "concrete, specific findings that are different from those, each a single "
                 "sentence, one per line, each starting with '- '.", 240)
RECOMMENDATIONS = ("Write the Practical Recommendations: {count} recommendations, one per "
                   "line, each starting with '- ' and a verb: one about each of {topics}. Each "
                   "is a single sentence saying what to do and why.", 180)
QUESTION = ("The notes on {topic} leave details open. Write one question about {topic} that "
            "the notes do not answer, asking for a figure or a condition they leave out. "
            "Write only the question.", 60)
# The Deep Dive's opening and closing paragraphs are asked without the notes: shown them,
# a 0.5B model copies their first section instead of writing about all of them.
OVERVIEW = ("This report researched these subtopics: {topics}. Write 2 sentences that "
            "introduce them and say why each matters for the question. Plain prose: no list, "
            "no heading.", 110)
CONNECT = ("This report researched these subtopics: {topics}. Write 3 sentences on how they "
           "affect one another: the tradeoffs between them and what they mean in practice. "
           "Plain prose: no list, no heading.", 130)

SYSTEM = (
    "You are a senior analyst writing one section of a research report from the notes "
    "provided. Use only what the notes support; be specific. Write the section body only: "
    "no heading, no preamble."
)
EMPTY = "_The model returned nothing for this section._"

_HEADING = re.compile(r"^\s*#{1,6}\s+(.*\S)\s*$")
_BULLET = re.compile(r"^\s*(?:[-*\u2022]|\d+[.)])\s+(.*\S)\s*$")
# A list marker with nothing after it: what a list cut at max_tokens ends with ("4.").
_MARKER = re.compile(r"^\s*(?:[-*\u2022]|\d+[.)])\s*$")
_TRAILING_MARKER = re.compile(r"(?<=[.!?:])\s+\d+[.)]$")  # "... required. 3."
# A sentence's end: its mark, then closing quotes, brackets or emphasis. Chinese and
# Japanese end theirs on full-width marks (\u3002\uff01\uff1f), with no space after.
_CLOSE = "\"'\u201d\u2019)\\]*_\u300d\u300f\uff09\u3011"
_END = rf"(?:[.!?]|[\u3002\uff01\uff1f])[{_CLOSE}]*"
_ENDS = re.compile(_END + r"$")
_SENTENCE_END = re.compile(rf"[.!?][{_CLOSE}]*(?=\s)|[\u3002\uff01\uff1f][{_CLOSE}]*")
# Letters of a script written without spaces between words (Chinese, Japanese): there a
# text's length is counted in characters and its words compared as pairs of characters.
_UNSPACED = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
# Abbreviations whose full stop ends no sentence ("engines, e.g. Milvus"): a text ending on
# one was cut there.
_NEVER_FINAL = frozenset(("e.g", "i.e", "vs", "cf", "viz", "approx", "incl", "esp", "resp",
                          "ca", "mr", "mrs", "ms", "dr", "prof", "fig", "eq"))
# Abbreviations that may end a sentence ("... in the U.S.", "... and so on, etc."): only
# where the next word starts with a capital ("in the U.S. region" goes on).
_MAYBE_FINAL = frozenset(("etc", "al", "inc", "ltd", "co", "corp", "jr", "sr"))
_ACRONYM = re.compile(r"(?:[a-z]\.)+[a-z]")  # u.s, a.m, u.k
_LAST_WORD = re.compile(r"([^\s(\[\"'\u201c]+)\.$")
_WORD = re.compile(r"\w+")
_LABEL = re.compile(r"^(\s*(?:[-*\u2022]|\d+[.)])\s+)(?:\*\*)?[^.:\uff1a\n]{3,60}?(?:\*\*)?"
                    r"(?::\s+|\uff1a\s*)(?=\S)", re.MULTILINE)
# The section's name the model may echo before the summary ("Executive Summary: ...").
_SUMMARY_LABEL = re.compile(r"^\s*executive summary\s*[:\u2013\u2014-]\s*", re.IGNORECASE)
_STOP = frozenset((
    "about", "after", "also", "and", "are", "because", "been", "being", "between", "both",
    "but", "can", "could", "does", "each", "for", "from", "has", "have", "how", "into",
    "its", "may", "might", "more", "most", "much", "not", "off", "one", "only", "other",
    "our", "over", "per", "should", "some", "such", "than", "that", "the", "their", "them",
    "then", "there", "these", "they", "this", "those", "too", "under", "use", "used",
    "using", "very", "was", "were", "what", "when", "where", "which", "while", "who", "why",
    "will", "with", "within", "would", "you", "your"))
# A sentence that leans on the one before it: no finding on its own.
_DEPENDENT = re.compile(r"^(?:this|these|that|those|they|it|its|however|additionally|also|"
                        r"finally|overall|firstly|secondly|thirdly|for example|for instance|"
                        r"in addition)\b|^(?:\u8fd9|\u6b64|\u5176|\u5b83|\u4f46|\u7136\u800c|"
                        r"\u6b64\u5916|\u53e6\u5916|\u56e0\u6b64|\u6240\u4ee5)",
                        re.IGNORECASE)  # ... and 这 此 其 它 但 然而 此外 另外 因此 所以
# A sentence that asks, though it lacks its question mark. Not every sentence that opens on
# a question word does: "What remains is the cost", "When the index grows, ..." and "Do not
# deploy ..." state. It asks when an auxiliary comes first (not with "not" or "be" after
# it), or a question word and then an auxiliary ("What is", "What latency does"); "which"
# and "how much" always ask.
_ASKED = re.compile(r"[?\uff1f]")  # a question mark, full-width too
_AUX = r"(?:is|are|was|were|do|does|did|can|could|should|will|would|may|might|must|has|have)"
_QUESTION_START = re.compile(
    rf"^(?:(?:which|whose|whom|to what|in what|what about)\b"
    rf"|how (?:much|many|long|often|far|large|big|fast|well)\b"
    rf"|(?:what|how|why|when|where|who) (?:{_AUX}\b|\w+ (?:do|does|did|can|could|should|"
    rf"will|would)\b)"
    rf"|{_AUX} (?!not\b|n't\b|be\b|also\b)\w)", re.IGNORECASE)


# ------------------------------------------------------------------------------ sentences


def ends_sentence(text: str) -> bool:
    """Whether ``text`` ends a sentence: on its mark, and not on an abbreviation that ends
    none ("weigh engines, e.g.")."""
    text = text.rstrip()
    return bool(_ENDS.search(text)) and _abbreviation(text) not in _NEVER_FINAL


def _abbreviation(text: str) -> str:
    """The abbreviation ``text`` ends on, lowercased without its last full stop ("e.g",
    "u.s"), else ''."""
    found = _LAST_WORD.search(text)
    word = found.group(1).lower() if found else ""
    return word if word in _NEVER_FINAL or word in _MAYBE_FINAL or _ACRONYM.fullmatch(word) \
        else ""


def _ends(text: str) -> list[int]:
    """Where the sentences of ``text`` end: after a mark (and its closing quotes) that a
    space follows, or a full-width one, not after an abbreviation that goes on ("e.g.
    Milvus", "the U.S. region")."""
    found = []
    for m in _SENTENCE_END.finditer(text):
        word = _abbreviation(text[:m.end()])
        if word in _NEVER_FINAL or word and not text[m.end():].lstrip()[:1].isupper():
            continue
        found.append(m.end())
    return found


def whole(text: str, cut: bool) -> str:
    """One paragraph or list item as whole sentences ('' when none is whole).

    The safety net behind the sentence budgets: text cut at ``max_tokens`` (``cut``) loses
    its unfinished last sentence; text the model ended itself lacks at most its final full
    stop (a list item often has none), which is added."""
    text = _TRAILING_MARKER.sub("", " ".join(text.split()))
    if not text or ends_sentence(text):
        return text
    if cut or _ENDS.search(text):  # cut, or stopped on an abbreviation ("..., e.g."): cut
        ends = _ends(text)
        return text[:ends[-1]] if ends else ""
    text = text.rstrip(",;:-\u2013\u2014\uff0c\uff1b\uff1a\u3001 ")
    return text + ("\u3002" if _UNSPACED.match(text[-1:]) else ".")


def joined(parts: Sequence[str]) -> str:
    """Sentences or paragraphs run together: with a space, but none after a full-width mark
    (Chinese runs its sentences on: "\u3002" is followed by no space)."""
    out = ""
    for part in parts:
        out += part if not out or out[-1] in _CLOSE_UNSPACED else f" {part}"
    return out


_CLOSE_UNSPACED = "\u3002\uff01\uff1f\u300d\u300f\uff09\u3011"


def length(text: str) -> int:
    """A text's length in words; in a script written without spaces, two characters make
    one (a Chinese sentence is one run of them, which ``split`` counts as a single word)."""
    unspaced = len(_UNSPACED.findall(text))
    if not unspaced:
        return len(text.split())
    return sum(1 for w in _UNSPACED.sub(" ", text).split() if any(c.isalnum() for c in w)) \
        + (unspaced + 1) // 2


def sentences(text: str) -> list[str]:
    """The sentences of ``text``; an abbreviation's full stop ends none (:func:`_ends`)."""
    text = text.strip()
    bounds = [0, *_ends(text), len(text)]
    return [part for a, b in itertools.pairwise(bounds) if (part := text[a:b].strip())]


def key_words(text: str) -> frozenset[str]:
    """The content words of a text, each cut to six letters, so that 'scalable' and
    'scalability' (or 'costs' and 'cost') count as one; in a script written without spaces,
    its pairs of neighbouring characters (:func:`_terms`)."""
    return frozenset(_terms(text))


def _terms(text: str) -> list[str]:
    """The content words of a text in order. A run of Chinese or Japanese characters is no
    word but a phrase: it gives its pairs of neighbouring characters ("向量索引" gives 向量,
    量索, 索引), which two sentences saying the same thing share."""
    out: list[str] = []
    for token in _WORD.findall(text.lower()):
        for part in re.split(f"({_UNSPACED.pattern}+)", token):
            if _UNSPACED.match(part):
                out += [part[i:i + 2] for i in range(max(1, len(part) - 1))]
            elif len(part) > 2 and part not in _STOP:
                out.append(_stem(part))
    return out


def _stem(word: str) -> str:
    """'indexes' -> 'index', 'queries' -> 'query', then at most six letters."""
    if word.endswith("ies") and len(word) > 4:
        word = word[:-3] + "y"
    elif word.endswith(("sses", "xes", "zes", "ches", "shes")):
        word = word[:-2]
    elif word.endswith("s") and not word.endswith("ss"):
        word = word[:-1]
    return word[:6]


def similar(a: str, b: str) -> bool:
    """Whether two sentences say the same thing: mostly the same content words (the model
    rewords 'are more complex' as 'can be more complex'), all of the shorter one's words
    within the longer one, or the same opening (its first six content words, in order: two
    findings that start "Vector databases are designed to store and retrieve data in a way
    that is efficient" and end differently read as one said twice)."""
    x, y = key_words(a), key_words(b)
    if not x or not y:
        return x == y
    shared, smaller = len(x & y), min(len(x), len(y))
    # Pairs of characters are more, and shorter, than words: a whole shorter one within the
    # longer needs twice as many.
    least = 6 if _UNSPACED.search(a + b) else 3
    if shared / len(x | y) >= 0.6 or (smaller >= least and shared == smaller):
        return True
    first_a, first_b = _opening(a), _opening(b)
    full = 2 * OPENING if _UNSPACED.search(a) else OPENING
    return len(first_a) == full and first_a == first_b


OPENING = 6  # content words that make an opening


def _opening(text: str) -> list[str]:
    terms = _terms(text)
    return terms[:2 * OPENING if _UNSPACED.search(text) else OPENING]


def prose(text: str, cut: bool) -> list[str]:
    """The paragraphs of a model's text as plain prose, each whole sentences: headings, list
    intros ('... as follows:') and markers left alone by a cut ('4.') dropped, list items
    run into their paragraph as sentences, bold marks removed. Only the text's last line can
    have been cut at ``max_tokens``."""
    lines = text.strip().splitlines()
    last = max((i for i, line in enumerate(lines) if line.strip()), default=-1)
    paragraphs: list[str] = []
    current: list[str] = []
    for i, raw in enumerate(lines):
        if not raw.strip():
            if current:
                paragraphs.append(joined(current))
                current = []
            continue
        if _HEADING.match(raw) or _MARKER.match(raw):
            continue
        item = _BULLET.match(raw)
        line = (item.group(1) if item else raw).replace("**", "").strip()
        if line.endswith(":"):
            continue
        line = whole(line, cut and i == last)
        if line:
            current.append(line)
    if current:
        paragraphs.append(joined(current))
    return paragraphs


def distinct(text: str, said: list[str]) -> str:
    """``text`` without the sentences that repeat one already ``said`` (small models loop,
    and researchers open alike); the kept ones are added to ``said``."""
    kept: list[str] = []
    for sentence in sentences(text):
        if not any(similar(sentence, s) for s in said):
            kept.append(sentence)
            said.append(sentence)
    return joined(kept)


def bullets(text: str, cut: bool = False, known: Sequence[str] = ()) -> list[str]:
    """The list items of a reply (``-``, ``*``, ``•`` or ``1.`` items), without their markers,
    bold marks or the quotes a small model wraps them in, each whole sentences (only the
    reply's last line can have been cut) and unlike every other and every ``known`` one;
    items of fewer than three words are not findings."""
    lines = [line for line in text.splitlines() if line.strip()]
    items: list[str] = []
    for i, line in enumerate(lines):
        match = _BULLET.match(line)
        if not match:
            continue
        item = match.group(1).replace("**", "").strip().strip("'\"`").lstrip("-*\u2022 ")
        item = whole(item.strip().strip("'\"`"), cut and i == len(lines) - 1)
        if length(item) >= 3 and not any(similar(item, k) for k in [*known, *items]):
            items.append(item)
    return items


def questions(text: str, cut: bool = False, known: Sequence[str] = ()) -> list[str]:
    """The questions among a reply's list items: an item is kept up to its first question
    mark; one that ends with a full stop but starts like a question gets its question mark;
    a statement is dropped."""
    out: list[str] = []
    for item in bullets(text, cut, known):
        first = sentences(item)[0]
        asked = _ASKED.search(item)
        if asked:
            out.append(item[:asked.end()])
        elif _QUESTION_START.match(first):
            out.append(first.rstrip(".!") + "?")
    return out


def lower_first(title: str) -> str:
    """'Cost and overhead' -> 'cost and overhead'; 'LoRA ranks' stays as it is."""
    return title[0].lower() + title[1:] if title[1:2].islower() else title


def names(topics: Sequence[str]) -> str:
    """'a, b and c'."""
    quoted = [lower_first(t) for t in topics]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " and " + quoted[-1]


# ------------------------------------------------------------------------------ sections


def split_section(section: str, index: int) -> tuple[str, str]:
    """A researcher's section: its subtopic (the ``## heading`` it starts with) and text."""
    first, _, rest = section.strip().partition("\n")
    heading = _HEADING.match(first)
    if heading:
        return heading.group(1).strip(), rest.strip()
    return f"Research section {index + 1}", section.strip()


class Writer:
    """One model, one prompt prefix (the question and the notes, which llama.cpp keeps in
    its cache across the calls), one token cap."""

    def __init__(self, query: str, notes: str, model: str | None,
                 max_tokens: int | None) -> None:
        self.query = query
        self.prefix = f"Question: {query}\n\nResearch notes:\n{notes}\n\n"
        self.model, self.cap = model, max_tokens

    def ask(self, instruction: str, tokens: int, temperature: float = 0.3, *,
            notes: bool = True, **params: Any) -> llm.Completion:
        prefix = self.prefix if notes else f"Question: {self.query}\n\n"
        return llm.complete(
            [{"role": "system", "content": SYSTEM},
             {"role": "user", "content": prefix + instruction}],
            model=self.model, temperature=temperature,
            max_tokens=min(tokens, self.cap) if self.cap else tokens, **params)

    def paragraph(self, instruction: str, tokens: int, said: list[str], *,
                  notes: bool = True) -> str:
        reply = self.ask(instruction, tokens, notes=notes, frequency_penalty=0.5)
        return distinct(joined(prose(reply.text, reply.truncated)), said)

    def items(self, instruction: str, tokens: int, known: Sequence[str],
              temperature: float = 0.3, *, labels: bool = True, first: bool = False,
              notes: bool = True) -> list[str]:
        """The reply's list items. Without ``labels``, an item's leading 'Scalability: '
        goes (a recommendation starts with its verb); with ``first``, an item is its first
        sentence (a finding the model ran into a second one leaves that one to the notes)."""
        reply = self.ask(instruction, tokens, temperature, notes=notes, frequency_penalty=0.5)
        text = reply.text if labels else _LABEL.sub(r"\1", reply.text)
        found = bullets(text, reply.truncated, known)
        if first:
            found = bullets("\n".join(f"- {sentences(item)[0]}" for item in found), False,
                            known)
        return found


def note_sentences(topics: list[tuple[str, str]]) -> list[str]:
    """The notes' own sentences that stand alone (five words or more, not opening on 'This'
    or 'However'), taken from each section in turn (a first sentence of each, then a
    second...): what the Key Findings fall back on when the model gives fewer than five."""
    per = [[s for p in prose(text, cut=True) for s in sentences(p)
            if length(s) >= 5 and not _DEPENDENT.match(s)] for _, text in topics]
    return [s[i] for i in range(max(map(len, per), default=0)) for s in per if i < len(s)]


def key_findings(writer: Writer, topics: list[tuple[str, str]]) -> list[str]:
    """FINDINGS distinct findings: what the model wrote, asked once more for the missing
    ones (a little warmer: asked the same thing, a small model repeats itself), then the
    notes' own sentences. Notes too thin for five distinct findings (answers capped at a
    few tokens) give fewer: never the same finding twice."""
    named = names([title for title, _ in topics])
    found = writer.items(FINDINGS_ASK[0].format(topics=named), FINDINGS_ASK[1], known=[],
                         first=True)
    if len(found) < FINDINGS:
        listed = "\n".join(f"- {item}" for item in found) or "(none yet)"
        found += writer.items(MORE_FINDINGS[0].format(listed=listed, count=FINDINGS - len(found)),
                              MORE_FINDINGS[1], found, temperature=0.5, first=True)
    found += bullets("\n".join(f"- {s}" for s in note_sentences(topics)), known=found)
    return found[:FINDINGS]


def recommendations(writer: Writer, topics: list[tuple[str, str]], known: Sequence[str],
                    *, notes: bool = True) -> list[str]:
    """Recommendations, one about each researched subtopic (the first five), none repeating
    a ``known`` bullet."""
    named = names([title for title, _ in topics[:5]])
    count = min(5, max(3, len(topics)))
    return writer.items(RECOMMENDATIONS[0].format(count=count, topics=named),
                        RECOMMENDATIONS[1], known, 0.3 if notes else 0.6, labels=False,
                        notes=notes)


def open_questions(writer: Writer, topics: list[tuple[str, str]],
                   known: Sequence[str]) -> list[str]:
    """Up to four questions, one per researched subtopic, each asked on its own (asked for
    a list, the 0.5B model restates the research question). An answer that is no question,
    restates the research question or repeats a bullet is asked for once more, warmer; a
    subtopic still without one is left out, and when fewer than two are left the remaining
    subtopics stand in, as plainly worded questions."""
    asked: list[str] = []
    for title, _ in topics[:4]:
        topic = lower_first(title)
        for temperature in (0.5, 0.9):
            reply = writer.ask(QUESTION[0].format(topic=topic), QUESTION[1], temperature)
            found = questions(f"- {reply.text.strip().lstrip('-*').strip()}", reply.truncated,
                              [*known, *asked, writer.query])
            if found:
                asked.append(found[0])
                break
    for title, _ in topics:
        if len(asked) >= 2:
            break
        fallback = (f"\u5173\u4e8e{title}\uff0c\u8fd8\u6709\u54ea\u4e9b\u95ee\u9898"
                    f"\u5c1a\u672a\u89e3\u51b3\uff1f" if _UNSPACED.search(title) else
                    f"What remains unresolved about {lower_first(title)}?")  # 关于…，还有哪些问题尚未解决？
        if not any(similar(fallback, q) for q in [*known, *asked]):
            asked.append(fallback)
    return asked


def deep_dive(writer: Writer, topics: list[tuple[str, str]]) -> str:
    """The model's overview, one ``###`` subsection per researched subtopic made of its
    researcher's section (whole sentences up to an even share of DEEP_DIVE_WORDS, without
    sentences another subsection already said), then the model's paragraph on how they fit
    together. The subsections come from code: each researched subtopic is there by
    construction, in its researcher's words rather than retold by a 0.5B model."""
    said: list[str] = []
    share = max(60, DEEP_DIVE_WORDS // len(topics))
    subsections: list[str] = []
    for title, text in topics:
        kept: list[str] = []
        for paragraph in prose(text, cut=True):
            if sum(map(length, kept)) >= share:
                break
            taken: list[str] = []
            for sentence in sentences(paragraph):
                if taken and sum(map(length, [*kept, *taken, sentence])) > share:
                    break
                # A subsection's first sentence stays, repeated or not: the next refer to it.
                if not (kept or taken) or not any(similar(sentence, s) for s in said):
                    taken.append(sentence)
                    said.append(sentence)
            if taken:
                kept.append(joined(taken))
        subsections += [f"### {title}", "\n\n".join(kept) or "_Its researcher's section "
                                                             "held no complete sentence._"]
    named = names([title for title, _ in topics])
    opening = writer.paragraph(OVERVIEW[0].format(topics=named), OVERVIEW[1], said,
                               notes=False)
    closing = writer.paragraph(CONNECT[0].format(topics=named), CONNECT[1], said, notes=False)
    parts = [opening, *subsections, *([f"### {CLOSING}", closing] if closing else [])]
    return "\n\n".join(p for p in parts if p)


def synthesize(query: str, sections: list[str], *, model: str | None = None,
               max_tokens: int | None = None, run_id: str = "") -> str:
    topics = [split_section(s, i) for i, s in enumerate(sections)]
    writer = Writer(query, "\n\n".join(sections), model, max_tokens)
    bodies: dict[str, str] = {}
    # Three sentences, as the report promises: the model sometimes writes a fourth.
    bodies["Executive Summary"] = joined(sentences(
        _SUMMARY_LABEL.sub("", writer.paragraph(*SUMMARY, said=[])))[:SUMMARY_SENTENCES])
    findings = key_findings(writer, topics)
    bodies["Key Findings"] = "\n".join(f"- {item}" for item in findings)
    advice = recommendations(writer, topics, findings)
    asked = open_questions(writer, topics, [*findings, *advice])
    bodies["Open Questions"] = "\n".join(f"- {q}" for q in asked)
    # The calls without the notes come last: every call before reused the notes' prompt
    # prefix from llama.cpp's cache (a call in between evicts it: ~10 s to read them again).
    if len(advice) < 3:
        # From dense notes a 0.5B model copies the findings as its recommendations; without
        # the notes it cannot.
        advice += recommendations(writer, topics, [*findings, *advice, *asked], notes=False)
    bodies["Practical Recommendations"] = "\n".join(f"- {item}" for item in advice[:5])
    bodies["Deep Dive"] = deep_dive(writer, topics)

    # One line whoever stored the question (seed 001's loop stores it as given): a newline
    # in the title would start Markdown of its own.
    parts = [f"# Research Report: {' '.join(query.split())}", ""]
    if run_id:
        parts += [f"_Agent run {run_id} \u00b7 {len(sections)} research sections \u00b7 "
                  "written by Titan's research agent_", ""]
    for title in SECTION_TITLES:
        body = bodies[title].strip() or EMPTY
        parts += [f"## {title}", "", body, ""]
        print(f"wrote {title}: {length(body)} words", flush=True)
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
