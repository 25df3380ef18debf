"""Research agent benchmark: one research run on the local model, its wall time split into
the part spent in inference and the part spent in the engine.

Runs the example's orchestrator in this process against a throwaway `titan up` and then
reads the run back from the master: every job's start and end, and every LLM call's end
time and duration (the ``[titan.llm]`` line each call leaves in its job's log). Each
instant of the run is counted once, as

  * inference — at least one LLM call is generating (model load included: it happens in
    the first call of each job);
  * job glue — a job is running but no LLM call is: interpreter fork, imports, reading the
    store, downloading and publishing artifacts, signalling;
  * control — no job is running: the orchestrator submitting, the scheduler dispatching,
    store_wait waking the orchestrator.

Engine overhead = job glue + control. Target: <= 120 s for ``--max-iter 1`` on a 2-core
machine, engine overhead <= 5 % of the total.

    .venv/bin/python bench/research_agent.py [--max-iter 1] [--subtopics 4] [--query "..."]
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "examples" / "research_agent"))

import research_agent  # noqa: E402
from cluster import BenchCluster  # noqa: E402

from titan.trace.recorder import RECORDER  # noqa: E402

_CALL = re.compile(r"^\[titan\.llm\] \S+: (\d+) in / (\d+) out tokens in ([\d.]+)s")
Interval = tuple[float, float]


def union(intervals: list[Interval]) -> list[Interval]:
    merged: list[Interval] = []
    for start, end in sorted(intervals):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def length(intervals: list[Interval]) -> float:
    return sum(end - start for start, end in union(intervals))


def collect(c: BenchCluster, run_id: str) -> list[dict[str, Any]]:
    """Per stage: its jobs' running intervals and LLM calls (end ts, duration, tokens)."""
    stages = []
    for stage in c.client.agent_run(run_id)["stages"]:
        dag = c.client.get_dag(stage["dag_id"])
        jobs, calls = [], []
        for job in dag["jobs"]:
            jobs.append((float(job["started_at"]), float(job["finished_at"])))
            for item in c.client.iter_logs(job["ref"]):
                m = _CALL.match(str(item.get("line", "")))
                if m:
                    end = float(item["ts"])
                    calls.append({"start": end - float(m[3]), "end": end,
                                  "in": int(m[1]), "out": int(m[2])})
        stages.append({"label": stage["label"], "jobs": jobs, "calls": calls,
                       "submitted": float(stage["submitted_at"]),
                       "finished": float(stage["finished_at"])})
    return stages


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--query", default=research_agent.DEFAULT_QUERY)
    p.add_argument("--max-iter", type=int, default=1)
    p.add_argument("--subtopics", type=int, default=4)
    p.add_argument("--slots", type=int, default=os.cpu_count() or 2)
    args = p.parse_args()

    c = BenchCluster(slots=args.slots)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.time()
            report = research_agent.research(
                c.client, args.query, max_iter=args.max_iter, max_subtopics=args.subtopics,
                max_tokens=None, model=None, out=Path(tmp) / "report.md", timeout=900)
            t1 = time.time()
            words = len(report.read_text().split())
        run_id = c.client.agent_runs(limit=1)[0]["id"]
        stages = collect(c, run_id)
        # The run this process drove ends when the process exits; end it now, while its
        # master is still up (else the exit warns that the run's end was not delivered).
        RECORDER.close()
    finally:
        c.close()

    wall = t1 - t0
    calls = [(x["start"], x["end"]) for s in stages for x in s["calls"]]
    jobs = [j for s in stages for j in s["jobs"]]
    inference = length(calls)
    busy = length(calls + jobs)
    glue, control = busy - inference, wall - busy
    engine = glue + control
    out_tokens = sum(x["out"] for s in stages for x in s["calls"])
    in_tokens = sum(x["in"] for s in stages for x in s["calls"])

    print(f"research agent, --max-iter {args.max_iter}, up to {args.subtopics} subtopics, "
          f"{args.slots} slots, {os.cpu_count()} cores")
    print(f"query: {args.query}")
    print(f"report: {words} words; {len(calls)} LLM calls, {in_tokens} tokens in, "
          f"{out_tokens} out, {len(jobs)} jobs in {len(stages)} stages")
    print()
    print(f"{'stage':<8}{'jobs':>5}{'wall s':>9}{'infer s':>9}{'calls':>7}{'out tok':>9}")
    for s in stages:
        stage_infer = length([(x["start"], x["end"]) for x in s["calls"]])
        print(f"{s['label']:<8}{len(s['jobs']):>5}{s['finished'] - s['submitted']:>9.1f}"
              f"{stage_infer:>9.1f}{len(s['calls']):>7}{sum(x['out'] for x in s['calls']):>9}")
    print()
    print(f"wall time          {wall:8.1f} s   (target <= 120 s for --max-iter 1)")
    print(f"  inference        {inference:8.1f} s   {inference / wall:6.1%}")
    print(f"  engine overhead  {engine:8.1f} s   {engine / wall:6.1%}   (target <= 5 %)")
    print(f"    job glue       {glue:8.1f} s   {glue / wall:6.1%}   "
          "(fork, imports, store and artifacts inside jobs)")
    print(f"    control        {control:8.1f} s   {control / wall:6.1%}   "
          "(submit, dispatch, signals; no job running)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
