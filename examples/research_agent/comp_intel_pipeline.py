"""Seed 001's contrast: the Comp Intel Pipeline, a *fixed* DAG — not an agent.

Its shape is decided at submission: one analyst job per competitor (fixed prompts, run in
parallel), then one synthesis job that waits for all of them. No model decides what runs
next and TitanStore is not used: each analyst's brief is its output, which the synthesis reads
from the analysts' logs, on whatever worker they ran (``--out`` names the report written
here). Compare with ``research_agent.py``, whose DAG grows at run time on the evaluator's word.

    titan up                                           # in another terminal
    python examples/research_agent/comp_intel_pipeline.py [--competitor NAME ...]
        [--topic "pricing and positioning"] [--market "vector databases"]
        [--model gemini/gemini-2.0-flash]
"""

from __future__ import annotations

import argparse
import secrets
import sys
from pathlib import Path

from titan_sdk import TitanClient, TitanJob

HERE = Path(__file__).resolve().parent
DEFAULT_COMPETITORS = ["Prefect", "Temporal", "Ray"]
DEFAULT_MARKET = "workflow orchestration for Python data and AI pipelines"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--competitor", action="append", dest="competitors",
                    help="a competitor to analyse (repeat; default: Prefect, Temporal, Ray)")
    ap.add_argument("--topic", default="positioning, strengths and weaknesses")
    ap.add_argument("--market", default=DEFAULT_MARKET,
                    help="what the competitors sell, told to each analyst (default: "
                         f"{DEFAULT_MARKET})")
    ap.add_argument("--model", default="", help="titan.llm model (default: local)")
    ap.add_argument("--out", default="comp_intel_report.md")
    args = ap.parse_args()
    competitors = args.competitors or DEFAULT_COMPETITORS
    batch = secrets.token_hex(3)
    client = TitanClient()
    analysts = [TitanJob(job_id=f"analyst_{i}", filename=str(HERE / "comp_intel_analyst.py"),
                         args=[batch, name, args.topic, args.model, args.market])
                for i, name in enumerate(competitors)]
    synthesis = TitanJob(job_id="synthesis", filename=str(HERE / "comp_intel_synthesis.py"),
                         args=[batch, args.topic, args.model, *competitors],
                         parents=[a.job_id for a in analysts])
    dag = client.submit_dag("COMP_INTEL", [*analysts, synthesis])
    print(f"[PIPELINE] {dag['ref']}: {len(analysts)} analysts -> synthesis (fixed at submission)")
    done = client.wait_dag(dag["ref"], timeout=1800)
    if done["status"] != "COMPLETED":
        print(f"[FAILED] {dag['ref']}: {done['status']}")
        return 1
    report = "\n".join(line["line"] for line in client.iter_logs(f"{dag['ref']}/synthesis")
                       if line["stream"] == "stdout")  # stderr: the model's timing lines
    Path(args.out).write_text(report + "\n")
    print(report)
    print(f"[DONE] {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
