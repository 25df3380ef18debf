"""One analyst of the Comp Intel Pipeline: a fixed prompt about one competitor; the brief is
its output (the synthesis reads it from this job's log).

    comp_intel_analyst.py BATCH COMPETITOR TOPIC [MODEL [MARKET]]

MARKET names what the competitor sells: without it a name alone is ambiguous ("Prefect",
"Ray": a school prefect, a character in a story).
"""

import sys

from titan import llm

_batch, competitor, topic = sys.argv[1], sys.argv[2], sys.argv[3]
model = sys.argv[4] if len(sys.argv) > 4 and sys.argv[4] else None
market = sys.argv[5] if len(sys.argv) > 5 and sys.argv[5] else None
subject = f"{competitor}, in {market}" if market else competitor
reply = llm.complete(
    [{"role": "system", "content": "You are a competitive-intelligence analyst. Be concrete."},
     {"role": "user", "content": f"Write a brief of at most five bullet points on {subject}:"
                                 f" its {topic}."}],
    model=model, temperature=0, max_tokens=220)
print(f"## {competitor}\n\n{reply.text.strip()}")
