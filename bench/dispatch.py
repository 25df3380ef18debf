"""Dispatch benchmark: how fast a trivial Python job goes from submit to COMPLETED.

Prints, on one `titan up` each for the zygote fork path and the fresh-interpreter baseline:
  * latency: sequential submit_job + wait for one trivial job, p50/p99 (ms)
  * throughput: one DAG of N independent trivial jobs, jobs/s from submit to DAG COMPLETED
plus, on the first cluster: the submit+validate time of a 10,000-node DAG and TitanStore
put/get p50, how soon a parked store_wait wakes after a put, and what a new connection's first
call costs (it asks the master to prove it holds the token first). Targets (2 cores): p50 <= 10 ms,
>= 500 jobs/s, 10k DAG <= 0.5 s, store <= 1 ms, store_wait woken <= 5 ms after the put.

    .venv/bin/python bench/dispatch.py [--jobs 2000] [--latency-runs 200] [--slots 8] [--sandbox]

--sandbox also runs the fork path with every job in the Landlock sandbox (`titan up
--sandbox`) and prints what it costs per job.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cluster import BenchCluster  # noqa: E402

from titan import errors  # noqa: E402
from titan.client import TitanClient, TitanJob  # noqa: E402


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def latency(c: BenchCluster, script: str, runner: str, runs: int) -> list[float]:
    out = []
    for i in range(runs):
        t0 = time.perf_counter()
        c.client.submit_job(TitanJob(job_id=f"lat_{runner}_{i}", filename=script, runner=runner))
        job = c.client.wait_job(f"lat_{runner}_{i}", timeout=60)  # wait(): the DAG
        out.append((time.perf_counter() - t0) * 1000)
        assert job["state"] == "COMPLETED", job
    return out


def throughput(c: BenchCluster, script: str, runner: str, n: int) -> float:
    jobs = [TitanJob(job_id=f"t{i}", filename=script, runner=runner) for i in range(n)]
    t0 = time.perf_counter()
    c.client.submit_dag(f"throughput_{runner}", jobs)
    dag = c.client.wait_dag(f"throughput_{runner}", timeout=600)
    elapsed = time.perf_counter() - t0
    assert dag["status"] == "COMPLETED", dag["counts"]
    return n / elapsed


def big_dag(c: BenchCluster, script: str, n: int) -> float:
    # Each node depends on up to two earlier ones; the capability has no worker, so nothing
    # runs: this measures upload-check + validation + the durable insert + scheduling.
    jobs = [TitanJob(job_id=f"n{i}", filename=script, requirement="BENCH_NOWHERE",
                     parents=[f"n{j}" for j in (i // 2, i - 1) if 0 <= j < i][:2])
            for i in range(n)]
    t0 = time.perf_counter()
    c.client.submit_dag("big_dag", jobs)
    elapsed = time.perf_counter() - t0
    c.client.cancel("big_dag")
    return elapsed


def store_ops(c: BenchCluster, runs: int) -> tuple[list[float], list[float]]:
    puts, gets = [], []
    for i in range(runs):
        t0 = time.perf_counter()
        c.client.store_put(f"bench:{i % 50}", "v" * 100)
        t1 = time.perf_counter()
        c.client.store_get(f"bench:{i % 50}")
        t2 = time.perf_counter()
        puts.append((t1 - t0) * 1000)
        gets.append((t2 - t1) * 1000)
    return puts, gets


def new_connections(c: BenchCluster, runs: int) -> tuple[list[float], list[float]]:
    """ms of a store_get on a new connection (connect, the master's proof that it holds the
    token, the call: titan/master_proof.py) and of the next one on that connection."""
    first, again = [], []
    c.client.store_put("bench:conn", "v")
    for _ in range(runs):
        client = TitanClient(host="127.0.0.1", port=c.port, token=c.token)
        try:
            t0 = time.perf_counter()
            client.store_get("bench:conn")
            t1 = time.perf_counter()
            client.store_get("bench:conn")
            t2 = time.perf_counter()
        finally:
            client.close()
        first.append((t1 - t0) * 1000)
        again.append((t2 - t1) * 1000)
    return first, again


def store_wakes(c: BenchCluster, runs: int) -> list[float]:
    """ms from the start of a store_put to the return of a store_wait parked on that key in
    another thread (its own connection)."""
    waiter = TitanClient(host="127.0.0.1", port=c.port, token=c.token)
    woke: list[float] = []
    try:
        for i in range(runs):
            key, done = f"bench:wake:{i}", threading.Event()

            def wait(key: str = key, done: threading.Event = done) -> None:
                waiter.store_wait(key, timeout=30)
                woke.append(time.perf_counter())
                done.set()

            threading.Thread(target=wait, daemon=True).start()
            time.sleep(0.02)  # parked on the master before the put
            t0 = time.perf_counter()
            c.client.store_put(key, "x")
            done.wait(30)
            woke[-1] = (woke[-1] - t0) * 1000
    finally:
        waiter.close()
    return woke


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", type=int, default=2000)
    ap.add_argument("--latency-runs", type=int, default=200)
    ap.add_argument("--slots", type=int, default=8)
    ap.add_argument("--big-dag", type=int, default=10_000)
    ap.add_argument("--sandbox", action="store_true",
                    help="also measure the fork path with jobs in the Landlock sandbox")
    args = ap.parse_args()
    print(f"titan dispatch benchmark: {args.jobs} jobs, {args.latency_runs} latency runs, "
          f"{args.slots} slots")
    results: dict[str, dict[str, float]] = {}
    setups = [("fork", "fork", {}), ("subprocess", "subprocess", {})]
    if args.sandbox:
        setups.append(("sandboxed", "fork", {"TITAN_SANDBOX": "1"}))
    for label, runner, env in setups:
        c = BenchCluster(slots=args.slots, env=env)
        try:
            script = c.script("trivial.py", "x = 1\n")
            latency(c, script, runner, 10)  # warm up
            lat = latency(c, script, runner, args.latency_runs)
            tput = throughput(c, script, runner, args.jobs)
            results[label] = {"p50": statistics.median(lat), "p99": pct(lat, 99), "jobs_s": tput}
            print(f"  {label:<10} submit->COMPLETED p50 {results[label]['p50']:7.2f} ms  "
                  f"p99 {results[label]['p99']:7.2f} ms   throughput {tput:7.1f} jobs/s")
            if label == "fork":
                secs = big_dag(c, script, args.big_dag)
                print(f"  {args.big_dag}-node DAG submit+validate+store: {secs * 1000:.0f} ms")
                puts, gets = store_ops(c, 500)
                wakes = store_wakes(c, 100)
                print(f"  store put p50 {statistics.median(puts):.3f} ms  "
                      f"get p50 {statistics.median(gets):.3f} ms (target <= 1)  "
                      f"store_wait woken {statistics.median(wakes):.3f} ms after the put "
                      f"began (target <= 5)")
                first, again = new_connections(c, 200)
                print(f"  a new connection's first call p50 {statistics.median(first):.3f} ms "
                      f"(connect + the master's proof + the call), the next "
                      f"{statistics.median(again):.3f} ms")
        except errors.TitanError as exc:
            print(f"  {label}: failed: {exc}")
            return 1
        finally:
            c.close()
    f, s = results["fork"], results["subprocess"]
    print(f"  zygote vs fresh interpreter: latency {s['p50'] / f['p50']:.1f}x lower, "
          f"throughput {f['jobs_s'] / s['jobs_s']:.1f}x higher")
    if "sandboxed" in results:
        b = results["sandboxed"]
        print(f"  the sandbox costs {b['p50'] - f['p50']:+.2f} ms at p50 per job, "
              f"throughput {b['jobs_s'] / f['jobs_s']:.2f}x the unsandboxed fork path")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
