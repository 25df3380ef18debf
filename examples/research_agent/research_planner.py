"""PLAN stage: ask the LLM to break the query into subtopics; store the plan and signal.

Reads ``research:<run>:query``; writes ``<run>/plan.json`` (published as the artifact
``research:<run>:plan.json``), ``research:<run>:plan`` (JSON ``{"subtopics": [...]}``) and then
``research:<run>:planner:done``.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import unicodedata
from pathlib import Path
from typing import Any

from titan import llm
from titan_sdk import TitanClient

PLAN_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "subtopics": {
            "type": "array",
            "items": {"type": "string", "minLength": 3, "maxLength": 80},
            "minItems": 2,
            "maxItems": 4,
        },
    },
    "required": ["subtopics"],
}

#: Room for the longest plan the schema allows (~4 x 20 tokens), so a cap never cuts it.
JSON_TOKENS = 200

# The plan's form is shown by one worked example from a far-off subject, as a past turn of
# the conversation. A title given inside the instructions was copied by the small local model
# into plans for unrelated questions ("Cost and operational overhead" as the first subtopic
# of "How does LoRA work?"), and so was a list of kinds of aspect ("LoRA Mechanisms", "LoRA
# Parts"); without any example it wrote the question again, or sentences.
SYSTEM = (
    "You are a research planner. Break the user's research question into distinct, "
    "specific subtopics that together answer it. Each subtopic is a short title of 3 to 10 "
    "words naming one aspect of the question's subject. Do not repeat the question; do not "
    "number the titles; no two titles may cover the same aspect. Every title must be about "
    "the question's own subject, never about the subjects of earlier questions."
)
EXAMPLE = ("How is bread leavened?", ["Yeast fermentation of sugars",
                                      "Sourdough starter cultures",
                                      "Baking soda and baking powder",
                                      "Gluten networks trapping gas"])
#: A title past this many words is a sentence, not a subtopic.
MAX_TITLE_WORDS = 12

_WORD = re.compile(r"[^\W_]+")
# A list marker the model put before a title ("1. ", "2) ", "- "): only that goes, never a
# title's own leading digits or dot ("5G network slicing", "3D printing", ".NET").
_LIST_MARKER = re.compile(r"^\s*(?:[-*\u2022]|\d+[.)])\s+")
_SMALL = frozenset(("and", "are", "but", "can", "does", "for", "from", "has", "have", "how",
                    "its", "the", "their", "this", "those", "what", "when", "where", "which",
                    "who", "why", "with"))


def _stem(word: str) -> str:
    """A word without its plural ending ("therapies" and "therapy", "costs" and "cost")."""
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        return word[:-1]
    return word


def _words(text: str) -> set[str]:
    """A title's words, singular, without the small ones; none for a script written without
    spaces (Chinese, Japanese: a run of characters is no word), where only exact duplicates
    are dropped."""
    found = [w for w in _WORD.findall(text.lower()) if len(w) > 2 and w not in _SMALL]
    if any(_UNSPACED(ch) for w in found for ch in w):
        return set()
    return {_stem(w) for w in found}


def _UNSPACED(ch: str) -> bool:  # noqa: N802 - reads as the predicate it is
    """A letter of a script written without spaces between words (CJK, kana, hangul)."""
    return unicodedata.name(ch, "").split(" ")[0] in ("CJK", "HIRAGANA", "KATAKANA",
                                                      "HANGUL")


def _bare(text: str) -> str:
    """Text as letters and digits only, lowercased: a title that is the question says so."""
    return "".join(ch for ch in text.lower() if ch.isalnum())


def _foreign_letters(title: str, query: str) -> str:
    """``title`` without control characters, and without letters of a script written
    without spaces when the question has none (the small model's stray CJK character at the
    end of an English title). Other scripts stay: a Greek letter is a name ("β-blocker")."""
    stray = not any(_UNSPACED(ch) for ch in query)
    return "".join(ch for ch in title if not unicodedata.category(ch).startswith("C")
                   and not (stray and _UNSPACED(ch)))


def normalize_plan(data: Any, max_subtopics: int, query: str = "") -> list[str]:
    """Clean subtopic titles: trimmed, numbering removed, letters of another script and
    control characters dropped, duplicates and near-duplicates (the same words, give or
    take one) dropped, the question itself and sentences (past ``MAX_TITLE_WORDS``)
    dropped, at most N.

    Raises ``ValueError`` when nothing usable is left."""
    raw = data.get("subtopics") if isinstance(data, dict) else None
    if not isinstance(raw, list):
        raise ValueError(f"the plan has no list of subtopics: {json.dumps(data)[:200]}")
    asked = _words(query)
    kept: list[tuple[str, set[str]]] = []
    for item in raw:
        if not isinstance(item, str):
            continue
        title = _foreign_letters(item, query or item).strip()
        title = _LIST_MARKER.sub("", title).strip().rstrip(".?").strip()
        words = _words(title)
        if len(title) < 3 or len(title.split()) > MAX_TITLE_WORDS \
                or any(title.lower() == t.lower() for t, _ in kept):
            continue
        if _bare(title) == _bare(query) or asked and words and (
                asked <= words and len(words - asked) <= 1 or words <= asked and len(words) == 1):
            continue  # the question again (every word of it, give or take one), or its subject
        if any(len(words ^ other) <= 1 and len(words & other) >= 2 for _, other in kept):
            continue  # the same title, one word apart
        kept.append((title, words))
    if not kept:
        raise ValueError(f"the plan has no usable subtopic: {json.dumps(data)[:200]}")
    return [t for t, _ in kept][:max_subtopics]


def plan(query: str, max_subtopics: int = 4, *, model: str | None = None,
         max_tokens: int = JSON_TOKENS) -> list[str]:
    schema = json.loads(json.dumps(PLAN_SCHEMA))
    schema["properties"]["subtopics"]["maxItems"] = max_subtopics
    schema["properties"]["subtopics"]["minItems"] = min(2, max_subtopics)
    def ask(question: str, n: int) -> dict[str, str]:
        return {"role": "user", "content": f"Research question: {question}\n\nList {n} "
                                           "subtopics as JSON."}
    shown = EXAMPLE[1][:max(2, max_subtopics)]
    messages = [{"role": "system", "content": SYSTEM}, ask(EXAMPLE[0], len(shown)),
                {"role": "assistant", "content": json.dumps({"subtopics": shown})},
                ask(query, max_subtopics)]
    reply = llm.complete(messages, model=model, max_tokens=max_tokens, temperature=0.3,
                         json_schema=schema)
    try:
        found = normalize_plan(reply.data, max_subtopics, query)
    except ValueError:
        found = []
    if len(found) >= min(2, max_subtopics):
        return found
    # Too few distinct aspects (titles that repeated the question or each other): asked
    # once more, told what was not usable.
    again = llm.complete(
        [*messages, {"role": "assistant", "content": json.dumps(reply.data)},
         {"role": "user", "content": "Those titles repeat the question or each other. List "
                                     f"{max_subtopics} different aspects of its subject as "
                                     "JSON, none of them the question itself."}],
        model=model, max_tokens=max_tokens, temperature=0.7, json_schema=schema)
    merged = {"subtopics": found + list((again.data or {}).get("subtopics") or [])}
    return normalize_plan(merged, max_subtopics, query)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--run-id", required=True)
    p.add_argument("--max-subtopics", type=int, default=4)
    p.add_argument("--max-tokens", type=int, default=JSON_TOKENS)
    p.add_argument("--model", default=None)
    args = p.parse_args(argv)

    client = TitanClient()
    key = f"research:{args.run_id}"
    query = client.store_get(f"{key}:query")
    if query is None or not query.strip():
        # A blank question planned the worked example's subject (bread) with confidence.
        print(f"no query stored under {key}:query" if query is None else
              f"the query stored under {key}:query is blank: nothing to research",
              file=sys.stderr)
        return 2
    # The plan is bounded by its schema: a lower cap would only cut the JSON short.
    subtopics = plan(query, args.max_subtopics, model=args.model,
                     max_tokens=max(args.max_tokens, JSON_TOKENS))
    plan_json = json.dumps({"query": query, "subtopics": subtopics}, indent=2)
    # plan.json: written in the worker's workspace and published as an artifact (seed 001's
    # planner), and the same plan in TitanStore for the orchestrator, which reads no file.
    # In the run's own folder, as its results and report are: the workspace is every DAG
    # job's working directory, where a plan.json of another job's (another run's planner,
    # any pipeline's) was overwritten, or published by this run under its key.
    path = Path(args.run_id) / "plan.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(plan_json + "\n")
    client.publish_artifact(f"{key}:plan.json", path)
    client.store_put(f"{key}:plan", json.dumps({"subtopics": subtopics}))
    client.store_put(f"{key}:planner:done", "1")
    print(f"planned {len(subtopics)} subtopics: {subtopics}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
