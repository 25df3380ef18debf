"""ITER stage, one job per subtopic: research it with the LLM, publish the section, signal.

Reads the subtopic from ``research:<run>:subtopics:<iter>`` (a JSON list) at ``--index``;
writes ``<run>/result_<iter>_<index>.txt`` in the workspace, publishes it under
``research:<run>:result:<iter>:<index>``, adds that key to ``research:<run>:results`` and
sets ``research:<run>:iter:<iter>:<index>:done``.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from titan import llm
from titan_sdk import TitanClient

SYSTEM = (
    "You are a meticulous research analyst. Write one focused section of a research brief "
    "about the given subtopic, in the context of the overall question. Be concrete: name "
    "mechanisms, tradeoffs, typical numbers and examples. Write plain prose in one "
    "paragraph: no headings, no lists, no preamble, no conclusion about other subtopics."
)

#: Tokens one sentence of a section takes, with room to spare (~25 words is ~35 tokens).
#: The section is asked for as many sentences as its token budget holds, so the model ends
#: it itself instead of being stopped at ``max_tokens`` mid-sentence.
TOKENS_PER_SENTENCE = 40


#: A sentence's end: its mark, then closing quotes, brackets or emphasis (as the synthesizer
#: reads it; each job script of the agent stands alone, so it is spelled here too).
_ENDS = re.compile(r"(?:[.!?]|[\u3002\uff01\uff1f])[\"'\u201d\u2019)\]*_\u300d\u300f\uff09\u3011]*$")
# A letter of a script written without spaces (Chinese, Japanese): its full stop is "\u3002".
_UNSPACED = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")


def settled(text: str) -> str:
    """A section the model ended itself, as a reader can take it: trailing lines that only
    lead in to what never came ("Typical examples include:") or head nothing ("## Costs") go,
    and a last sentence the model left without its full stop gets one."""
    lines = text.rstrip().splitlines()
    while lines and (not lines[-1].strip() or lines[-1].rstrip().endswith(":")
                     or lines[-1].lstrip().startswith("#")):
        lines.pop()
    text = "\n".join(lines).rstrip()
    if text and not _ENDS.search(text):
        text += "\u3002" if _UNSPACED.match(text[-1]) else "."
    return text


def research(query: str, subtopic: str, *, model: str | None = None,
             max_tokens: int = 220) -> str:
    count = max(1, min(6, max_tokens // TOKENS_PER_SENTENCE))
    reply = llm.complete(
        [{"role": "system", "content": SYSTEM},
         {"role": "user", "content": f"Overall question: {query}\nSubtopic: {subtopic}\n\n"
                                     f"Write exactly {count} "
                                     f"{'sentence' if count == 1 else 'sentences'}."}],
        model=model, max_tokens=max_tokens, temperature=0.4)
    # The safety net should the model run to the cap anyway: its unfinished last sentence is
    # cut off (the synthesizer cuts again whatever would still end mid-sentence).
    text = settled(reply.whole_sentences())
    if not text and reply.truncated:
        # Not one sentence fit under the cap: asked again for a single one, with room for it
        # (a cut sentence is never passed off as a finished one).
        reply = llm.complete(
            [{"role": "system", "content": SYSTEM},
             {"role": "user", "content": f"Overall question: {query}\nSubtopic: {subtopic}"
                                         "\n\nWrite exactly 1 short sentence."}],
            model=model, max_tokens=max(2 * max_tokens, 96), temperature=0.4)
        text = settled(reply.whole_sentences())
    if not text:
        raise RuntimeError(f"the model returned an empty section for {subtopic!r}")
    return text


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--run-id", required=True)
    p.add_argument("--iter", type=int, required=True, dest="iteration")
    p.add_argument("--index", type=int, required=True)
    p.add_argument("--max-tokens", type=int, default=220)
    p.add_argument("--model", default=None)
    args = p.parse_args(argv)

    client = TitanClient()
    key = f"research:{args.run_id}"
    query = client.store_get(f"{key}:query") or ""
    subtopics = json.loads(client.store_get(f"{key}:subtopics:{args.iteration}") or "[]")
    if not 0 <= args.index < len(subtopics):
        print(f"no subtopic {args.index} in iteration {args.iteration}", file=sys.stderr)
        return 2
    subtopic = subtopics[args.index]
    text = research(query, subtopic, model=args.model, max_tokens=args.max_tokens)

    path = Path(args.run_id) / f"result_{args.iteration}_{args.index}.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"## {subtopic}\n\n{text}\n")
    result_key = f"{key}:result:{args.iteration}:{args.index}"
    client.publish_artifact(result_key, path)
    client.store_sadd(f"{key}:results", result_key)
    client.store_put(f"{key}:iter:{args.iteration}:{args.index}:done", "1")
    print(f"researched {subtopic!r}: {len(text.split())} words -> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
