"""Seed 002's "Self-Healing" loop: an agent reads a failed job's logs, decides on a fix with a
model, and dispatches the patch as a new job, until the run is healthy.

1. It submits ``flaky_training_run`` (a training run whose batch is too big for its memory).
2. It fetches the remote logs (``client.fetch_logs``). A model (``titan.llm``: the local one by
   default, any hosted one with ``--model``) reads their tail and answers, as JSON, what failed
   and the largest batch size worth trying. The seed's rule ("Segfault" or "OutOfMemory" in the
   logs) backs the model up: a small model's misreading never skips a patch the logs call for.
3. It submits ``flaky_training_run_fix`` (``scripts/safe_mode_patch.py`` with that batch size)
   and loops, at most ``--max-patches`` times.

Everything it does is one agent run (``titan.trace``): the model calls, with their prompts,
answers and cost, are on the Runs page beside the jobs.

    titan up                                           # in another terminal
    python examples/agents_example/code_healer_agent.py [--model gemini/gemini-2.0-flash]
"""

from __future__ import annotations

import argparse
import os
import sys

from titan import llm, trace
from titan_sdk import TitanClient, TitanJob

HERE = os.path.dirname(os.path.abspath(__file__))
DIAGNOSIS = {
    "type": "object",
    "properties": {
        "failure": {"type": "string", "enum": ["out_of_memory", "segfault", "other", "none"]},
        "batch_size": {"type": "integer", "minimum": 1, "maximum": 4096},
        "reason": {"type": "string"},
    },
    "required": ["failure", "batch_size", "reason"],
}


def diagnose(logs: str, batch_size: int, model: str | None) -> dict:
    """What failed and which batch size to try next, from the model; the seed's rule decides
    whether a patch is needed at all."""
    tail = "\n".join(logs.strip().splitlines()[-12:])
    prompt = (
        "You are an SRE agent. A training job ran with batch size "
        f"{batch_size} and printed these last log lines:\n\n{tail}\n\n"
        "Classify the failure (out_of_memory, segfault, other, or none if it succeeded) and "
        "propose the largest batch size likely to fit in memory. Answer in JSON with the "
        "fields failure, batch_size and reason (one sentence)."
    )
    answer = llm.complete(prompt, model=model, json_schema=DIAGNOSIS, temperature=0,
                          max_tokens=120).data
    critical = "Segfault" in logs or "OutOfMemory" in logs  # the seed's rule
    if critical and answer["failure"] in ("other", "none"):
        answer["failure"] = "segfault" if "Segfault" in logs else "out_of_memory"
    if answer["failure"] == "out_of_memory" and not 1 <= answer["batch_size"] < batch_size:
        # The model must shrink the batch, not keep or grow it (small models echo the input).
        answer["reason"] += f" [model proposed {answer['batch_size']}: halved instead]"
        answer["batch_size"] = max(1, batch_size // 2)
    return answer


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--max-patches", type=int, default=4)
    ap.add_argument("--model", default=None, help="titan.llm model (default: local)")
    args = ap.parse_args()
    client = TitanClient()
    job_id = "flaky_training_run"

    with trace.run("code-healer") as run:
        job = TitanJob(job_id=job_id, filename=os.path.join(HERE, "scripts/flaky_training.py"),
                       args=["--batch-size", str(args.batch_size)])
        ref = client.submit_job(job, agent_run_id=run.id)["ref"] + f"/{job_id}"
        batch = args.batch_size
        for patch in range(args.max_patches + 1):
            state = client.wait_job(ref, timeout=600)["state"]
            # 1. Fetch remote execution logs via Titan's protocol
            logs = client.fetch_logs(ref)
            if state == "COMPLETED":
                print(f"[SUCCESS] {ref} is healthy. Agent sequence complete.")
                return 0
            if patch == args.max_patches:
                break
            # 2. AI/Logic Evaluation
            verdict = diagnose(logs, batch, args.model)
            print(f"[ERROR] CRITICAL ERROR in {ref}: {verdict['failure']} "
                  f"({verdict['reason']}). Agent is deploying a patch...")
            if verdict["failure"] not in ("out_of_memory", "segfault"):
                # Raised inside the block: the run fails with this as its error (a `return 1`
                # ended the block normally, and the run said completed).
                sys.exit(f"[STOP] {ref}: not a failure a patch can fix; a human should look.")
            batch = verdict["batch_size"] if verdict["failure"] == "out_of_memory" else batch
            # 3. Programmatically create a new job to fix the issue, and dispatch it
            fix_id = f"{job_id}_fix" + (str(patch + 1) if patch else "")
            fix_job = TitanJob(job_id=fix_id, requirement="GENERAL",
                               filename=os.path.join(HERE, "scripts/safe_mode_patch.py"),
                               args=["--batch-size", str(batch),
                                     "--effective-batch", str(args.batch_size)])
            ref = client.submit_job(fix_job, agent_run_id=run.id)["ref"] + f"/{fix_id}"
            print(f"[PATCH] {ref}: safe mode with batch size {batch}")
        sys.exit(f"[ESCALATION] Still failing after {args.max_patches} patches; "
                 "alerting a human.")


if __name__ == "__main__":
    sys.exit(main())
