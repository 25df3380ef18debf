"""Seed 002's "Logic Switch": plain Python decides which execution graph to build.

It measures the cluster's traffic (slots busy or wanted, over the slots of live workers). Above
80 % it submits one lightweight FAST job; otherwise a DEEP analysis DAG: 10 parallel shards and
a report job that waits for all of them and merges what they left in TitanStore.

    titan up                                     # in another terminal
    python examples/dynamic_dag_custom/dynamic_dag_switch/dynamic_dag_switch.py
    python examples/dynamic_dag_custom/dynamic_dag_switch/dynamic_dag_switch.py --traffic 95

``--traffic`` stands in for your own monitoring (a metrics query, an external API).
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys

from titan_sdk import TitanClient, TitanJob

HERE = os.path.dirname(os.path.abspath(__file__))
SHARDS = 10


def get_current_traffic(client: TitanClient) -> float:
    """The cluster's load in percent: running and queued jobs over the live workers' slots."""
    view = client.get_workers()
    live = [w for w in view["workers"] if w["state"] == "live"]
    slots = sum(w["slots"] for w in live)
    wanted = sum(len(w["running"]) for w in live) + sum(view["queues"].values())
    return 100.0 if slots == 0 else min(100.0, 100.0 * wanted / slots)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--traffic", type=float, default=None,
                    help="the load in percent (default: measured on the cluster)")
    ap.add_argument("--no-wait", action="store_true", help="submit and return")
    args = ap.parse_args()

    client = TitanClient()
    traffic_load = get_current_traffic(client) if args.traffic is None else args.traffic
    print(f"[INFO] Traffic at {traffic_load:.0f} %")
    batch = secrets.token_hex(3)  # the store keys of this analysis

    if traffic_load > 80:
        print("[HIGH] High Traffic. Switching to lightweight 'FAST' pipeline.")
        fast_job = TitanJob(job_id="fast_scan", filename=os.path.join(HERE, "fast_path.py"),
                            args=[batch])
        ref = client.submit_job(fast_job)["ref"]
        last = f"{ref}/fast_scan"
    else:
        print("[LOW] Normal Traffic. Generating distributed 'DEEP' analysis DAG.")
        # Programmatically generate 10 parallel tasks, and one that merges them
        deep_tasks = [
            TitanJob(job_id=f"deep_{i}", filename=os.path.join(HERE, "deep_path.py"),
                     args=[batch, str(i), str(SHARDS)])
            for i in range(SHARDS)
        ]
        report = TitanJob(job_id="deep_report", filename=os.path.join(HERE, "deep_report.py"),
                          args=[batch, str(SHARDS)], parents=[t.job_id for t in deep_tasks])
        ref = client.submit_dag("DEEP_PIPELINE", [*deep_tasks, report])["ref"]
        last = f"{ref}/deep_report"
    print(f"[INFO] Submitted {ref}")
    if args.no_wait:
        return 0
    status = client.wait_dag(ref, timeout=600)["status"]
    print(client.fetch_logs(last))
    print(f"[DONE] {ref}: {status}")
    return 0 if status == "COMPLETED" else 1


if __name__ == "__main__":
    sys.exit(main())
