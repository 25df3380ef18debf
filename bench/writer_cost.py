"""What the master's writer thread spends, in CPU, on the transactions of a trivial job.

Replays, straight on the storage (no HTTP, no scheduler), the transactions a real `titan up`
commits for trivial jobs, with the rows it writes (recorded from one):

  * latency: one job submitted and waited for — the submission (idempotency check, DAG,
    job, attempt leased with it, idempotency record), then its result (job, attempt and DAG
    finished; the finished job's view read for its waiter);
  * stream: one job's share of a 1,000-job DAG — its result and the lease of the next job
    (job finished, attempt finished, next job leased, its attempt inserted).

and prints the writer thread's CPU per job (``time.thread_time``, which a loaded box leaves
alone, unlike wall time), the median of ``--rounds``. With ``--src DIR`` (repeatable) the same
is measured, interleaved in one run, for each tree's ``src`` (another checkout: the baseline).

    .venv/bin/python bench/writer_cost.py [--jobs 2000] [--rounds 5] [--postgres]
        [--src /path/to/other/checkout/src ...] [--master]

--master measures instead the whole master's CPU per job (``/proc``, every thread) on a real
`titan up` (bench/side_by_side.py's cluster): 200 jobs submitted and waited for one by one,
then bench/side_by_side.py's ``cpu_per_job`` over a 1,000-job DAG.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def _job_row(name: str, now: float, worker: str) -> dict[str, Any]:
    return {"job_id": name, "position": 0, "filename": "trivial_job.py",
            "script_sha256": "a5ad84c26213c2586ea37881d79acb5fa76e38886c07cefa692588ea4541f5eb",
            "job_type": "RUN_PAYLOAD", "args": [], "parents": [], "env": {}, "port": 0,
            "is_archive": False, "priority": 1, "delay": 0.0, "affinity": False,
            "requirement": "GENERAL", "max_attempts": 1, "timeout": None, "runner": "fork",
            "hitl_message": None, "max_wait_seconds": None, "service": None,
            "state": "RUNNING", "attempt": 1, "submitted_at": now, "ready_at": now,
            "started_at": now, "worker_id": worker, "lease_expires_at": now + 15}


def _finished(now: float) -> dict[str, Any]:
    return {"state": "COMPLETED", "exit_code": 0, "error": None, "lease_expires_at": None,
            "finished_at": now}


def latency(storage: Any, n: int, worker: str) -> float:
    """Writer CPU (µs) per job submitted alone and waited for."""
    cpu = 0.0
    for i in range(n):
        now, key = time.time(), secrets.token_urlsafe(18)
        name = f"lat_{secrets.token_hex(6)}"
        t0 = time.thread_time()
        with storage.write_transaction() as tx:
            assert tx.idempotent_result(key) is None
            dag_id, _run = tx.insert_next_dag({
                "name": name, "agent_run_id": None, "submitted_at": now, "status": "RUNNING",
                "cancelled": False, "job_count": 1, "started_at": now})
            row = dict(_job_row(name, now, worker), dag_id=dag_id)
            [job] = tx.insert_jobs([row])
            tx.insert_attempts([{"job": job, "attempt": 1, "worker_id": worker,
                                 "started_at": now, "state": "RUNNING"}])
            tx.record_idempotent(key, "bench POST /api/v1/dags", f"[1, {dag_id}, [{job}]]", now)
        with storage.write_transaction() as tx:
            tx.update_jobs({job: _finished(now)})
            tx.finish_attempts([(job, 1, {"state": "COMPLETED", "exit_code": 0,
                                          "finished_at": now})])
            tx.update_dags({dag_id: {"status": "COMPLETED", "finished_at": now}})
            tx.after_commit(lambda rtx, job=job: rtx.job_dag_attempts(job))
        cpu += time.thread_time() - t0
        del i
    return cpu * 1e6 / n


def stream(storage: Any, n: int, worker: str) -> float:
    """Writer CPU (µs) per job of an n-job DAG: each result commits with the next lease."""
    now = time.time()
    name = f"stream_{secrets.token_hex(6)}"
    with storage.write_transaction() as tx:
        dag_id, _run = tx.insert_next_dag({
            "name": name, "agent_run_id": None, "submitted_at": now, "status": "RUNNING",
            "cancelled": False, "job_count": n, "started_at": now})
        rows = []
        for i in range(n):
            row = dict(_job_row(f"t{i}", now, worker), dag_id=dag_id, position=i)
            row.update(state="READY", attempt=0, started_at=None, worker_id=None,
                       lease_expires_at=None)
            rows.append(row)
        ids = tx.insert_jobs(rows)
        tx.insert_attempts([{"job": ids[0], "attempt": 1, "worker_id": worker,
                             "started_at": now, "state": "RUNNING"}])
    t0 = time.thread_time()
    for done, nxt in zip(ids, ids[1:], strict=False):
        now = time.time()
        with storage.write_transaction() as tx:
            tx.insert_attempts([{"job": nxt, "attempt": 1, "worker_id": worker,
                                 "started_at": now, "state": "RUNNING"}])
            tx.update_jobs({done: _finished(now),
                            nxt: {"state": "RUNNING", "attempt": 1, "worker_id": worker,
                                  "lease_expires_at": now + 15, "started_at": now,
                                  "reason": None}})
            tx.finish_attempts([(done, 1, {"state": "COMPLETED", "exit_code": 0,
                                           "finished_at": now})])
    return (time.thread_time() - t0) * 1e6 / (len(ids) - 1)


def one(url: str, jobs: int) -> tuple[float, float]:
    from titan.storage import open_storage

    storage = open_storage(url)
    try:
        with storage.write_transaction() as tx:
            tx.upsert_worker({"id": "w-bench", "name": "bench", "hostname": "bench", "slots": 4,
                              "capabilities": ["GENERAL"], "state": "live",
                              "registered_at": time.time(), "last_seen_at": time.time()})
        # The master's readers run at once, in threads: its pool holds several connections.
        with contextlib.ExitStack() as reading:
            for _ in range(3):
                reading.enter_context(storage.read_transaction()).get_meta("bench")
        latency(storage, 50, "w-bench")  # warm: statements compiled, pages cached
        return latency(storage, jobs, "w-bench"), stream(storage, jobs, "w-bench")
    finally:
        storage.close()


def master(jobs: int) -> tuple[float, float]:
    """The master's CPU (ms) per job: submitted and waited for alone; in a ``jobs``-job DAG."""
    sys.path.insert(0, str(HERE))
    from side_by_side import TitanSystem, _cpu, cpu_per_job

    system = TitanSystem(str(HERE / "trivial_job.py"), "fork")
    try:
        system.latency(20)
        system.independent(200)  # warm: the zygotes forked, statements compiled
        pid = system.processes()["master"][0]
        before = _cpu(pid)[0]
        system.latency(200)
        time.sleep(0.3)  # its last commits
        alone = (_cpu(pid)[0] - before) * 1000 / 200
        return alone, cpu_per_job(system, jobs)["master"]
    finally:
        system.cluster.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--postgres", action="store_true", help="PostgreSQL too (a throwaway db)")
    ap.add_argument("--src", action="append", default=[],
                    help="another tree's src directory, measured in the same run")
    ap.add_argument("--master", action="store_true",
                    help="the master process's CPU per job on a real `titan up` (ms)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:  # one measurement, in this interpreter: "latency stream" on stdout
        lat, per = master(args.jobs) if args.child == "master" else one(args.child, args.jobs)
        print(f"{lat:.3f} {per:.3f}")
        return 0
    if args.master:
        args.postgres = False
    trees = {"this tree": str(HERE.parent / "src"), **{s: s for s in args.src}}
    urls: dict[str, Any] = {"SQLite": None}
    with _postgres(args.postgres) as create:
        if create is not None:
            urls["PostgreSQL"] = create
        for db, make in urls.items():
            got: dict[str, list[tuple[float, float]]] = {t: [] for t in trees}
            for _ in range(args.rounds):
                for tree, src in trees.items():  # interleaved: the box's load hits each alike
                    with tempfile.TemporaryDirectory() as tmp:
                        url = "master" if args.master else \
                            f"sqlite:///{tmp}/titan.db" if make is None else make()
                        out = subprocess.run(
                            [sys.executable, __file__, "--child", url, "--jobs", str(args.jobs)],
                            env=dict(os.environ, PYTHONPATH=src), check=True,
                            capture_output=True, text=True).stdout.split()
                        got[tree].append((float(out[0]), float(out[1])))
            print(f"{db}: " + ("the master's CPU per job, ms (latency: 200 jobs; stream: "
                                f"{args.jobs})" if args.master else "writer-thread CPU per job, "
                                f"µs ({args.jobs} jobs)") + f", median of {args.rounds}")
            for tree, values in got.items():
                lat = statistics.median(v[0] for v in values)
                per = statistics.median(v[1] for v in values)
                digits = 2 if args.master else 1
                print(f"  {tree:<40} latency path {lat:7.{digits}f}   "
                      f"{args.jobs:,}-job stream {per:7.{digits}f}")
    return 0


class _postgres:
    """bench/cluster.py's throwaway PostgreSQL databases, or None when not asked for."""

    def __init__(self, wanted: bool) -> None:
        self._wanted, self._cm = wanted, None

    def __enter__(self) -> Any:
        if not self._wanted:
            return None
        sys.path.insert(0, str(HERE))
        from cluster import postgres

        self._cm = postgres()
        return self._cm.__enter__()

    def __exit__(self, *exc: Any) -> None:
        if self._cm is not None:
            self._cm.__exit__(*exc)


if __name__ == "__main__":
    raise SystemExit(main())
