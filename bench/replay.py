"""Replay benchmark: replaying the recorded research run against recording it.

Records one research run on the local model (the orchestrator as a subprocess against a
throwaway `titan up`, as a user runs it), then replays it N times with the recorded code: the
orchestrator re-runs on the cluster and every stage's jobs run again, with each LLM call
served from the recording instead of inferred. Prints both wall times (submit to the run's
end) and their ratio, measured in the same run. Target: replay >= 10x faster than recording.

    .venv/bin/python bench/replay.py [--max-iter 1] [--subtopics 2] [--replays 3]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from cluster import BenchCluster  # noqa: E402

AGENT = HERE.parent / "examples" / "research_agent" / "research_agent.py"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--max-iter", type=int, default=1)
    p.add_argument("--subtopics", type=int, default=2)
    p.add_argument("--max-tokens", type=int, default=None)
    p.add_argument("--replays", type=int, default=3)
    p.add_argument("--query", default="What are the tradeoffs of vector databases for RAG?")
    args = p.parse_args()

    c = BenchCluster(slots=(os.cpu_count() or 2) + 1)
    try:
        env = dict(os.environ, TITAN_HOST="127.0.0.1", TITAN_PORT=str(c.port),
                   TITAN_TOKEN=c.token)
        extra = ["--max-tokens", str(args.max_tokens)] if args.max_tokens else []
        t0 = time.perf_counter()
        done = subprocess.run([sys.executable, str(AGENT), args.query, "--max-iter",
                               str(args.max_iter), "--max-subtopics", str(args.subtopics),
                               *extra], env=env, capture_output=True, text=True)
        if done.returncode != 0:
            print(done.stdout, done.stderr, file=sys.stderr)
            return 1
        found = re.search(r"Agent run (RESEARCH_[0-9a-f]+)", done.stdout)
        assert found, done.stdout
        run_id = found[1]
        run = _ended(c, run_id)
        recorded = time.perf_counter() - t0
        calls = sum(1 for a in c.client.api("GET", f"/runs/{run_id}/actions",
                                            params={"limit": 1000})["actions"]
                    if a["channel"] == "llm")
        print(f"recording: {recorded:7.2f} s  ({run['action_count']} actions, {calls} LLM "
              f"calls, {len(run['stages'])} stages)")
        times = []
        for i in range(args.replays):
            t1 = time.perf_counter()
            replay_id = c.client.api("POST", f"/runs/{run_id}/replay", json={})["run_id"]
            c.client.wait_dag(f"{replay_id}_DRIVER", timeout=600)
            report = c.client.api("GET", f"/runs/{replay_id}/replay")
            times.append(time.perf_counter() - t1)
            print(f"replay {i + 1}:  {times[-1]:7.2f} s  match rate "
                  f"{report['match_rate']:.0%}, {report['divergence_count']} divergence(s), "
                  f"cost ${report['replay']['cost_usd']:.4f}")
        median = statistics.median(times)
        print(f"replay is {recorded / median:.1f}x faster than recording (median of "
              f"{len(times)}: {median:.2f} s against {recorded:.2f} s; target >= 10x)")
        return 0
    finally:
        c.close()


def _ended(c: BenchCluster, run_id: str) -> dict:  # type: ignore[type-arg]
    while True:
        run = c.client.api("GET", f"/runs/{run_id}")
        if run["status"] != "running":
            return run  # type: ignore[no-any-return]
        time.sleep(0.05)


if __name__ == "__main__":
    sys.exit(main())
