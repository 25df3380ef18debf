"""PLAN stage: ask the LLM to break the query into subtopics; store the plan and signal.

Reads ``research:<run>:query``; writes ``plan.json`` (published as the artifact
``research:<run>:plan.json``), ``research:<run>:plan`` (JSON ``{"subtopics": [...]}``) and then
``research:<run>:planner:done``.
"""

from __future__ import annotations

import argparse
import json
import sys
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

SYSTEM = (
    "You are a research planner. Break the user's research question into distinct, "
    "specific subtopics that together answer it. Each subtopic is a short title of 3 to 10 "
    "words naming one aspect to investigate (for example: 'Cost and operational overhead'). "
    "Do not repeat the question; do not number the titles."
)


def normalize_plan(data: Any, max_subtopics: int) -> list[str]:
    """Clean subtopic titles: trimmed, numbering removed, duplicates dropped, at most N.

    Raises ``ValueError`` when nothing usable is left."""
    raw = data.get("subtopics") if isinstance(data, dict) else None
    if not isinstance(raw, list):
        raise ValueError(f"the plan has no list of subtopics: {json.dumps(data)[:200]}")
    seen: set[str] = set()
    out: list[str] = []
    for item in raw:
        if not isinstance(item, str):
            continue
        title = item.strip().lstrip("-*0123456789.) ").strip().rstrip(".")
        if len(title) < 3 or title.lower() in seen:
            continue
        seen.add(title.lower())
        out.append(title)
    if not out:
        raise ValueError(f"the plan has no usable subtopic: {json.dumps(data)[:200]}")
    return out[:max_subtopics]


def plan(query: str, max_subtopics: int = 4, *, model: str | None = None,
         max_tokens: int = JSON_TOKENS) -> list[str]:
    schema = json.loads(json.dumps(PLAN_SCHEMA))
    schema["properties"]["subtopics"]["maxItems"] = max_subtopics
    schema["properties"]["subtopics"]["minItems"] = min(2, max_subtopics)
    reply = llm.complete(
        [{"role": "system", "content": SYSTEM},
         {"role": "user", "content": f"Research question: {query}\n\nList {max_subtopics} "
                                     "subtopics as JSON."}],
        model=model, max_tokens=max_tokens, temperature=0.3, json_schema=schema)
    return normalize_plan(reply.data, max_subtopics)


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
    if not query:
        print(f"no query stored under {key}:query", file=sys.stderr)
        return 2
    # The plan is bounded by its schema: a lower cap would only cut the JSON short.
    subtopics = plan(query, args.max_subtopics, model=args.model,
                     max_tokens=max(args.max_tokens, JSON_TOKENS))
    plan_json = json.dumps({"query": query, "subtopics": subtopics}, indent=2)
    # plan.json: written in the worker's workspace and published as an artifact (seed 001's
    # planner), and the same plan in TitanStore for the orchestrator, which reads no file.
    Path("plan.json").write_text(plan_json + "\n")
    client.publish_artifact(f"{key}:plan.json", "plan.json")
    client.store_put(f"{key}:plan", json.dumps({"subtopics": subtopics}))
    client.store_put(f"{key}:planner:done", "1")
    print(f"planned {len(subtopics)} subtopics: {subtopics}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
