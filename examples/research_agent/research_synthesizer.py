"""SYNTH stage: merge every research section into the final Markdown report.

The report always has the five sections of the research agent — Executive Summary, Key
Findings, Deep Dive, Practical Recommendations, Open Questions. The headings come from this
script and the model writes each body, one call per section: the calls share the notes as
a common prompt prefix, which llama.cpp keeps in its cache, so the notes are read once.

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

from titan import llm
from titan_sdk import TitanClient

# (heading, instruction, default max tokens)
SECTIONS: list[tuple[str, str, int]] = [
    ("Executive Summary",
     "Write the Executive Summary: exactly 3 sentences that directly answer the question.", 100),
    ("Key Findings",
     "Write the Key Findings: 5 concrete, specific findings, one per line, each starting "
     "with '- '.", 200),
    ("Deep Dive",
     "Write the Deep Dive: an integrated narrative of about 300 words that connects the "
     "research sections, their mechanisms and tradeoffs.", 400),
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


def synthesize(query: str, sections: list[str], *, model: str | None = None,
               max_tokens: int | None = None, run_id: str = "") -> str:
    notes = "\n\n".join(sections)
    parts = [f"# Research Report: {query}", ""]
    if run_id:
        parts += [f"_Agent run {run_id} · {len(sections)} research sections · "
                  "written by Titan's research agent_", ""]
    for title, instruction, default_tokens in SECTIONS:
        reply = llm.complete(
            [{"role": "system", "content": SYSTEM},
             {"role": "user", "content": f"Question: {query}\n\nResearch notes:\n{notes}\n\n"
                                         f"{instruction}"}],
            model=model, temperature=0.3,
            max_tokens=min(default_tokens, max_tokens) if max_tokens else default_tokens)
        parts += [f"## {title}", "", clean_body(reply.whole_sentences(), title), ""]
        print(f"wrote {title}: {reply.usage.output_tokens} tokens", flush=True)
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
