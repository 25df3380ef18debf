"""The Comp Intel Pipeline's last job: every analyst's brief (read from their logs, the
pipeline keeps nothing in TitanStore) merged into one report by a fixed prompt.

    comp_intel_synthesis.py BATCH TOPIC MODEL COMPETITOR...
"""

import os
import sys

from titan import llm
from titan_sdk import TitanClient

_batch, topic, model_arg, competitors = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
model = model_arg or None
client = TitanClient()
# This job's DAG run (TITAN_JOB_REF is "COMP_INTEL#<run>/synthesis"): its analysts' refs.
dag_ref = os.environ["TITAN_JOB_REF"].rsplit("/", 1)[0]

def output(ref: str) -> str:
    """What a job printed (its stdout: the model's timing lines go to stderr)."""
    return "\n".join(line["line"] for line in client.iter_logs(ref)
                     if line["stream"] == "stdout").strip()


briefs = [output(f"{dag_ref}/analyst_{i}") for i in range(len(competitors))]
missing = [c for c, b in zip(competitors, briefs, strict=True) if not b]
if missing:
    sys.exit(f"no brief from the analysts of {', '.join(missing)}")
reply = llm.complete(
    [{"role": "system", "content": "You write short competitive-intelligence reports."},
     {"role": "user", "content": f"From these briefs on {topic}, write a summary of three "
                                 "sentences comparing the competitors.\n\n" + "\n\n".join(briefs)}],
    model=model, temperature=0, max_tokens=200)
print(f"# Competitive intelligence: {topic}\n")
print("## Summary\n")
print(reply.text.strip() + "\n")
print("\n\n".join(briefs))
