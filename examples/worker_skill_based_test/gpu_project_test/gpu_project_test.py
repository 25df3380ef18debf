"""Seed 002's nightly pipeline: a GENERAL job feeds a job that needs a worker with a GPU.

``train_model`` asks for ``requirement="GPU"``: only a worker started with ``--capabilities GPU``
takes it. Until one joins, the job waits visibly (its reason says why) and the rest of the
cluster goes on. No GPU is needed to see the routing: the capability is what the worker
advertises; ``ml/train.py`` says whether it actually sees a GPU device.

    titan up                                              # a GENERAL worker
    python examples/worker_skill_based_test/gpu_project_test/gpu_project_test.py
    titan worker --capabilities GPU --slots 1             # in another terminal: train_model runs
"""

from __future__ import annotations

import argparse
import os
import sys

from titan_sdk import TitanClient, TitanJob, errors

HERE = os.path.dirname(os.path.abspath(__file__))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--timeout", type=float, default=600,
                    help="seconds to wait for the pipeline (default 600)")
    args = ap.parse_args()
    client = TitanClient()

    # 1. Define the Root Task
    task_a = TitanJob(job_id="extract_data", filename=os.path.join(HERE, "etl/extract.py"),
                      priority=5)
    # 2. Define a Dependent Task
    task_b = TitanJob(job_id="train_model", filename=os.path.join(HERE, "ml/train.py"),
                      requirement="GPU", parents=["extract_data"])  # <--- the dependency
    # 3. Submit them as a unified DAG
    dag = client.submit_dag("nightly_pipeline", [task_a, task_b])
    ref = dag["ref"]
    print(f"DAG Submitted Successfully! ({ref})")

    client.wait_job(f"{ref}/extract_data", timeout=args.timeout)
    train = client.get_job(f"{ref}/train_model")
    if train["state"] == "PENDING" and train.get("reason"):
        print(f"train_model waits: {train['reason']}")
        print("  start a GPU worker to run it: titan worker --capabilities GPU --slots 1")
    try:
        done = client.wait_dag(ref, timeout=args.timeout)
    except errors.WaitTimeout:
        print(f"no GPU worker took train_model within {args.timeout:g} s")
        return 1
    workers = {w["id"]: w for w in client.get_workers()["workers"]}
    for job in done["jobs"]:
        worker = workers.get(job["worker_id"] or "", {})
        print(f"  {job['job_id']:<13} {job['state']:<10} on {worker.get('name', '?')} "
              f"({', '.join(worker.get('capabilities', []))})")
    print(client.fetch_logs(f"{ref}/train_model"))
    return 0 if done["status"] == "COMPLETED" else 1


if __name__ == "__main__":
    sys.exit(main())
