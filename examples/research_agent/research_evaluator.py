"""EVAL stage — the agentic decision: is the research enough (SYNTHESIZE) or are there
gaps worth another iteration (DEEPEN, with the gaps as the next subtopics)?

Reads every published result of the run; writes ``research:<run>:eval:<iter>`` (JSON
``{"decision", "reason", "gaps"}``) and then ``research:<run>:eval:<iter>:done``.
"""

from __future__ import annotations

import argparse
import json
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
    "question. Answer DEEPEN only when an important aspect is clearly missing, and list up "
    "to 3 missing aspects as short subtopic titles in 'gaps' (empty when you SYNTHESIZE). "
    "Give the reason in one short sentence."
)


def normalize_decision(data: Any, researched: list[str]) -> dict[str, Any]:
    """A decision the orchestrator can act on.

    ``DEEPEN`` without a new gap (none given, or only subtopics already researched) becomes
    ``SYNTHESIZE``: looping again would research the same things."""
    if not isinstance(data, dict):
        raise ValueError(f"the evaluation is not a JSON object: {json.dumps(data)[:200]}")
    decision = str(data.get("decision", "")).strip().upper()
    if decision not in ("SYNTHESIZE", "DEEPEN"):
        raise ValueError(f"unknown decision {data.get('decision')!r}")
    done = {s.strip().lower() for s in researched}
    gaps: list[str] = []
    for gap in data.get("gaps") or []:
        if isinstance(gap, str):
            title = gap.strip().rstrip(".")
            if len(title) >= 3 and title.lower() not in done:
                done.add(title.lower())  # a gap named twice is researched once
                gaps.append(title)
    reason = str(data.get("reason") or "").strip()
    if decision == "DEEPEN" and not gaps:
        decision, reason = "SYNTHESIZE", (reason + " (no new gap named: synthesizing)").strip()
    return {"decision": decision, "reason": reason,
            "gaps": gaps if decision == "DEEPEN" else []}


def evaluate(query: str, sections: list[str], researched: list[str], *,
             model: str | None = None, max_tokens: int = JSON_TOKENS,
             excerpt_chars: int = 500) -> dict[str, Any]:
    notes = "\n\n".join(s[:excerpt_chars] for s in sections)
    reply = llm.complete(
        [{"role": "system", "content": SYSTEM},
         {"role": "user", "content": f"Question: {query}\n\nResearched subtopics: "
                                     f"{json.dumps(researched)}\n\nNotes:\n{notes}"}],
        model=model, max_tokens=max_tokens, temperature=0.1, json_schema=DECISION_SCHEMA)
    return normalize_decision(reply.data, researched)


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
