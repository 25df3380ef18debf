"""EVAL stage — the agentic decision: is the research enough (SYNTHESIZE) or are there
gaps worth another iteration (DEEPEN, with the gaps as the next subtopics)?

Reads every published result of the run; writes ``research:<run>:eval:<iter>`` (JSON
``{"decision", "reason", "gaps"}``) and then ``research:<run>:eval:<iter>:done``.

The model sees every section whole and decides; its gaps are then checked against them
(:func:`gap_problem`): a gap the notes already discuss, or that a researched subtopic
already names, is dropped, so DEEPEN researches what the sections miss.
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

DECISION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "decision": {"type": "string", "enum": ["SYNTHESIZE", "DEEPEN"]},
        "reason": {"type": "string", "maxLength": 200},
        "gaps": {
            "type": "array",
            "items": {"type": "string", "minLength": 3, "maxLength": 80},
            "maxItems": 3,
        },
    },
    "required": ["decision", "reason", "gaps"],
}

#: Room for the longest decision the schema allows (~110 tokens), so a cap never cuts it.
JSON_TOKENS = 200

SYSTEM = (
    "You review research notes for a question and decide whether they are enough to write "
    "a final report. Answer SYNTHESIZE when the notes cover the main aspects of the "
    "question. Answer DEEPEN only when an important aspect of the question is missing from "
    "all the notes, and list up to 3 such missing aspects in 'gaps' as short subtopic "
    "titles of 2 to 6 words, none of them a researched subtopic (empty when you "
    "SYNTHESIZE). Give the reason in one short sentence."
)

_WORD = re.compile(r"\w+")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
# The same content words as research_synthesizer.key_words (each job's script is uploaded on
# its own, so the two cannot share a module): words of three letters or more, common ones
# aside, cut to six letters so that 'scalable' and 'scalability' count as one.
_STOP = frozenset((
    "about", "after", "also", "and", "are", "because", "been", "being", "between", "both",
    "but", "can", "could", "does", "each", "for", "from", "has", "have", "how", "into",
    "its", "may", "might", "more", "most", "much", "not", "off", "one", "only", "other",
    "our", "over", "per", "should", "some", "such", "than", "that", "the", "their", "them",
    "then", "there", "these", "they", "this", "those", "too", "under", "use", "used",
    "using", "very", "was", "were", "what", "when", "where", "which", "while", "who", "why",
    "will", "with", "within", "would", "you", "your"))


def key_words(text: str) -> frozenset[str]:
    return frozenset(_stem(w) for w in _WORD.findall(text.lower())
                     if len(w) > 2 and w not in _STOP)


def _stem(word: str) -> str:
    """'indexes' -> 'index', 'queries' -> 'query', then at most six letters."""
    if word.endswith("ies") and len(word) > 4:
        word = word[:-3] + "y"
    elif word.endswith(("sses", "xes", "zes", "ches", "shes")):
        word = word[:-2]
    elif word.endswith("s") and not word.endswith("ss"):
        word = word[:-1]
    return word[:6]


def gap_problem(gap: str, researched: list[str], sections: list[str]) -> str | None:
    """Why ``gap`` is not a real gap, or ``None`` when it is one: a short subtopic title
    naming something the researched subtopics do not already name and no sentence of the
    ``sections`` already discusses (one sentence holding all its content words). A gap
    the model makes up from the notes themselves would research the same things again."""
    words = key_words(gap)
    if not words or len(gap.split()) > 8:
        return "not a subtopic title"
    for topic in researched:
        if gap.strip().lower() == topic.strip().lower() or words <= key_words(topic):
            return f"already researched as {topic!r}"
    for section in sections:
        lines = [line for line in section.splitlines() if not line.lstrip().startswith("#")]
        for sentence in _SENTENCE_END.split(" ".join(lines)):
            if words <= key_words(sentence):
                return f"the notes already discuss it: {sentence.strip()[:100]!r}"
    return None


def clean_reason(reason: str) -> str:
    """The reason, whole: cut at the schema's maxLength it loses its unfinished sentence."""
    reason = " ".join(reason.split())
    if len(reason) < DECISION_SCHEMA["properties"]["reason"]["maxLength"]:
        return reason
    ends = [m.end() for m in re.finditer(r"[.!?](?=\s)", reason)]
    return reason[:ends[-1]] if ends else ""


def normalize_decision(data: Any, researched: list[str],
                       sections: list[str] | None = None) -> dict[str, Any]:
    """A decision the orchestrator can act on, its gaps grounded in what the notes miss.

    Only real gaps (:func:`gap_problem`) are kept, each once; ``DEEPEN`` without one
    becomes ``SYNTHESIZE``: looping again would research what the notes already hold."""
    if not isinstance(data, dict):
        raise ValueError(f"the evaluation is not a JSON object: {json.dumps(data)[:200]}")
    decision = str(data.get("decision", "")).strip().upper()
    if decision not in ("SYNTHESIZE", "DEEPEN"):
        raise ValueError(f"unknown decision {data.get('decision')!r}")
    gaps: list[str] = []
    for gap in data.get("gaps") or []:
        if not isinstance(gap, str):
            continue
        title = gap.strip().rstrip(".")
        # A gap named twice is researched once.
        why = gap_problem(title, [*researched, *gaps], sections or [])
        if why is None:
            gaps.append(title)
        elif decision == "DEEPEN":
            print(f"gap {title!r} dropped: {why}")
    reason = clean_reason(str(data.get("reason") or ""))
    if decision == "DEEPEN" and not gaps:
        decision, reason = "SYNTHESIZE", (reason + " (no new gap named: synthesizing)").strip()
    elif not reason:
        reason = ("The notes do not discuss " + ", ".join(gaps) + "." if decision == "DEEPEN"
                  else "The notes cover the researched subtopics.")
    return {"decision": decision, "reason": reason,
            "gaps": gaps if decision == "DEEPEN" else []}


def evaluate(query: str, sections: list[str], researched: list[str], *,
             model: str | None = None, max_tokens: int = JSON_TOKENS,
             excerpt_chars: int = 1200) -> dict[str, Any]:
    # The sections whole (a researcher's is ~150 words): a gap is judged against what they
    # actually say, so the model must see it all, not their first lines.
    notes = "\n\n".join(s.strip()[:excerpt_chars] for s in sections)
    reply = llm.complete(
        [{"role": "system", "content": SYSTEM},
         {"role": "user", "content": f"Question: {query}\n\nResearched subtopics: "
                                     f"{json.dumps(researched)}\n\nNotes:\n{notes}"}],
        model=model, max_tokens=max_tokens, temperature=0.1, json_schema=DECISION_SCHEMA)
    return normalize_decision(reply.data, researched, sections)


def result_order(key: str) -> tuple[int, int]:
    """``research:<run>:result:<iter>:<index>`` sorts by iteration, then index."""
    iteration, index = key.rsplit(":", 2)[-2:]
    return int(iteration), int(index)


def load_sections(client: TitanClient, run_key: str, into: Path) -> list[str]:
    keys = sorted(client.store_smembers(f"{run_key}:results"), key=result_order)
    return [Path(client.get_artifact(k, save_path=into / f"{i}.txt")).read_text()
            for i, k in enumerate(keys)]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--run-id", required=True)
    p.add_argument("--iter", type=int, required=True, dest="iteration")
    p.add_argument("--max-tokens", type=int, default=JSON_TOKENS)
    p.add_argument("--model", default=None)
    args = p.parse_args(argv)

    client = TitanClient()
    key = f"research:{args.run_id}"
    query = client.store_get(f"{key}:query") or ""
    researched: list[str] = []
    for i in range(1, args.iteration + 1):
        researched += json.loads(client.store_get(f"{key}:subtopics:{i}") or "[]")
    with tempfile.TemporaryDirectory() as tmp:
        sections = load_sections(client, key, Path(tmp))
    if not sections:
        print("no research results to evaluate", file=sys.stderr)
        return 2
    # The decision is bounded by its schema: a lower cap would only cut the JSON short.
    decision = evaluate(query, sections, researched, model=args.model,
                        max_tokens=max(args.max_tokens, JSON_TOKENS))
    client.store_put(f"{key}:eval:{args.iteration}", json.dumps(decision))
    client.store_put(f"{key}:eval:{args.iteration}:done", "1")
    print(f"decision: {decision['decision']} — {decision['reason']} gaps={decision['gaps']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
