"""Titan side by side with the naive runner, Celery and Ray: one table, one run, one machine.

Four workloads of trivial work (issue 17):

  * submit -> result, one job at a time: p50 / p99 (ms)
  * 1,000 independent jobs at once: jobs/s from submit to the last result
  * an agent loop: submit 4 jobs as one DAG, wait for all, repeat (ms per iteration)
  * a 200-job DAG of 4 layers x 50, each layer waiting for the whole layer before it (s)

Systems: Titan on `titan up` (the zygote fork path, and ``runner="subprocess"``), optionally
Titan on PostgreSQL (``--postgres``, which adds Titan on SQLite
``synchronous=FULL``: like PostgreSQL's, its commits wait for the disk), the naive ``subprocess.run`` loop, and, when their
extra is installed (``pip install -e '.[bench]'``, Redis on 127.0.0.1:6379), Celery and Ray.
Each figure is the median of ``--repeat`` rounds and is printed with its ratio to Titan's
(fork, SQLite). The load average is printed before and after, and the CPU each Titan process
spent per job of the 1,000-job workload (master, worker, zygote, the jobs themselves) from
/proc, so the next person sees where the time goes.

    .venv/bin/python bench/side_by_side.py [--quick] [--repeat 3] [--postgres]
        [--only titan,naive,celery,ray]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cluster import BenchCluster, postgres  # noqa: E402
from peers import CeleryPeer, NaiveRunner, RayPeer, timed_ms  # noqa: E402

from titan.client import TitanJob  # noqa: E402

CAVEAT = ("Titan and the naive runner start a Python process per job (a script, as Titan's "
          "users submit); Celery and Ray call a function in a warm worker process.")
TICK = os.sysconf("SC_CLK_TCK")


class TitanSystem:
    """Titan on a fresh `titan up` with ``slots`` slots; jobs are the trivial script."""

    def __init__(self, script: str, runner: str, database_url: str | None = None,
                 slots: int = 4, sqlite_synchronous: str | None = None) -> None:
        env = {"TITAN_DATABASE_URL": database_url} if database_url else {}
        if sqlite_synchronous:
            env["TITAN_SQLITE_SYNCHRONOUS"] = sqlite_synchronous
        self.cluster = BenchCluster(slots=slots, env=env)
        self.client = self.cluster.client
        self.script = script
        self.runner = runner
        store = ", PostgreSQL" if database_url else \
            f", SQLite {sqlite_synchronous}" if sqlite_synchronous else ""
        self.name = f"Titan, {'zygote fork' if runner == 'fork' else 'runner=subprocess'}, " \
                    f"{slots} slots{store}"
        self._n = 0

    def _name(self, kind: str) -> str:
        self._n += 1
        return f"{kind}_{self._n}"

    def _job(self, job_id: str, parents: list[str] | None = None) -> TitanJob:
        return TitanJob(job_id=job_id, filename=self.script, runner=self.runner,
                        parents=parents or [])

    def _dag(self, jobs: list[TitanJob], kind: str) -> None:
        # Submit and wait in one call, as an agent loop does (the master holds the answer).
        dag = self.client.submit_dag(self._name(kind), jobs, wait=True, timeout=600)
        assert dag["status"] == "COMPLETED", dag

    def latency(self, n: int) -> list[float]:
        def one() -> None:
            name = self._name("lat")
            self.client.submit_job(self._job(name))
            job = self.client.wait_job(name, timeout=60)
            assert job["state"] == "COMPLETED", job
        return [timed_ms(one) for _ in range(n)]

    def independent(self, n: int) -> float:
        t0 = time.perf_counter()
        self._dag([self._job(f"j{i}") for i in range(n)], "independent")
        return time.perf_counter() - t0

    def loop(self, iterations: int, width: int) -> float:
        t0 = time.perf_counter()
        for _ in range(iterations):
            self._dag([self._job(f"step{i}") for i in range(width)], "loop")
        return (time.perf_counter() - t0) * 1000 / iterations

    def layered(self, layers: int, width: int) -> float:
        jobs, previous = [], []
        for layer in range(layers):
            names = [f"l{layer}_{i}" for i in range(width)]
            jobs += [self._job(n, previous) for n in names]
            previous = names
        t0 = time.perf_counter()
        self._dag(jobs, "layered")
        return time.perf_counter() - t0

    def close(self) -> None:
        self.cluster.close()

    # -- where the CPU goes -------------------------------------------------------------------
    def processes(self) -> dict[str, list[int]]:
        """The master (``titan up``), its worker and the worker's zygotes (full and lean),
        by pid."""
        master = self.cluster.proc.pid
        found = {"master": [master]}
        worker = _children(master)
        if worker:
            found["worker"] = worker[:1]
            found["zygote"] = _children(worker[0])
        return found


def _children(pid: int) -> list[int]:
    kids: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            kids += [int(p) for p in (task / "children").read_text().split()]
    return sorted(kids)


def _cpu(pid: int) -> tuple[float, float]:
    """(own CPU, reaped children's CPU) of a process, in seconds."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0, 0.0
    utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
    return (utime + stime) / TICK, (cutime + cstime) / TICK


def commit_ms(database_url: str, n: int = 200) -> float:
    """The p50 of one-row insert + COMMIT on ``database_url``: the disk's flush, as the
    server sees it, which a durable acknowledgement waits for."""
    import sqlalchemy as sa

    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("CREATE TABLE bench_commit (n integer)"))
            conn.commit()
            times = []
            for i in range(n):
                t0 = time.perf_counter()
                conn.execute(sa.text("INSERT INTO bench_commit VALUES (:n)"), {"n": i})
                conn.commit()
                times.append((time.perf_counter() - t0) * 1000)
        return statistics.median(times)
    finally:
        engine.dispose()


def cpu_per_job(system: TitanSystem, n: int) -> dict[str, float]:
    """ms of CPU per job spent by each Titan process during ``n`` independent jobs."""
    procs = system.processes()
    before = {k: [_cpu(p) for p in pids] for k, pids in procs.items()}
    system.independent(n)
    time.sleep(0.3)  # the last children reaped
    after = {k: [_cpu(p) for p in pids] for k, pids in procs.items()}
    out = {k: sum(a[0] - b[0] for a, b in zip(after[k], before[k], strict=True)) * 1000 / n
           for k in procs}
    # Forked jobs are the zygotes' children, fresh interpreters the worker's.
    jobs = sum(a[1] - b[1] for k in ("worker", "zygote") if k in procs
               for a, b in zip(after[k], before[k], strict=True))
    out["jobs"] = jobs * 1000 / n
    return out


def measure(system: Any, args: argparse.Namespace) -> dict[str, float]:
    rounds: dict[str, list[float]] = {"p50": [], "p99": [], "rate": [], "loop": [], "dag": []}
    system.latency(5)  # warm up
    for _ in range(args.repeat):
        lat = sorted(system.latency(args.latency))
        rounds["p50"].append(statistics.median(lat))
        rounds["p99"].append(lat[min(len(lat) - 1, round(0.99 * (len(lat) - 1)))])
        rounds["rate"].append(args.jobs / system.independent(args.jobs))
        rounds["loop"].append(system.loop(args.iterations, 4))
        rounds["dag"].append(system.layered(4, 50))
    return {k: statistics.median(v) for k, v in rounds.items()}


def row(name: str, m: dict[str, float], ref: dict[str, float] | None) -> str:
    def ratio(key: str, higher_is_better: bool) -> str:
        if ref is None or not m[key] or not ref[key]:
            return ""
        r = m[key] / ref[key] if higher_is_better else ref[key] / m[key]
        return f" ({r:.2f}x)"
    return (f"  {name:<42} {m['p50']:6.1f} / {m['p99']:5.1f} ms{ratio('p50', False):<9}"
            f" {m['rate']:7.0f} jobs/s{ratio('rate', True):<9}"
            f" {m['loop']:6.1f} ms{ratio('loop', False):<9}"
            f" {m['dag']:6.2f} s{ratio('dag', False)}")


def verdicts(titan: dict[str, float], others: dict[str, dict[str, float]]) -> list[str]:
    naive, celery = others.get("naive"), others.get("celery")
    lines = [
        f"p50 {titan['p50']:.1f} ms (target <= 10) and p99 {titan['p99']:.1f} ms (target <= 20)",
        f"{titan['rate']:.0f} jobs/s (target >= 500"
        + (f", >= 2.5x the naive runner's {naive['rate']:.0f}: {titan['rate'] / naive['rate']:.2f}x"
           if naive else "") + (f", Celery {celery['rate']:.0f}" if celery else "") + ")",
        f"agent loop {titan['loop']:.1f} ms/iteration (target <= 8"
        + (f", Celery {celery['loop']:.1f}" if celery else "") + ")",
        f"200-job DAG {titan['dag']:.2f} s (target <= 0.5"
        + (f", Celery's chords {celery['dag']:.2f}" if celery else "") + ")",
    ]
    return lines


@contextlib.contextmanager
def optional(name: str, make: Callable[[], Any]) -> Iterator[Any]:
    """A peer, or None with the reason printed when it cannot run here."""
    try:
        system = make()
    except ImportError as exc:
        print(f"  {name}: skipped, not installed ({exc.name}); pip install -e '.[bench]'")
        yield None
        return
    except Exception as exc:  # noqa: BLE001 - a peer that cannot start is reported, not fatal
        print(f"  {name}: skipped, could not start ({type(exc).__name__}: {exc})")
        yield None
        return
    try:
        yield system
    finally:
        system.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer jobs, one round")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--jobs", type=int, default=1000)
    ap.add_argument("--latency", type=int, default=100, help="jobs per latency round")
    ap.add_argument("--iterations", type=int, default=20)
    ap.add_argument("--postgres", action="store_true", help="Titan on PostgreSQL too")
    ap.add_argument("--only", default="titan,naive,celery,ray")
    ap.add_argument("--slots", type=int, default=4,
                    help="Titan's worker slots (a slot waits out a round trip to the master "
                         "between jobs: more slots than cores hides it)")
    args = ap.parse_args()
    if args.quick:
        args.repeat, args.jobs, args.latency = 1, 300, 40
    only = set(args.only.split(","))
    print(f"titan side by side: {args.jobs} independent jobs, {args.latency} latency runs, "
          f"{args.iterations} loop iterations, medians of {args.repeat}; "
          f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f} at the start")
    print(f"  ({CAVEAT})")
    results: dict[str, dict[str, float]] = {}
    cpu: dict[str, float] = {}
    with postgres() as create_db:
        script = str(Path(__file__).resolve().parent / "trivial_job.py")
        setups: list[tuple[str, Callable[[], Any]]] = []
        if "titan" in only:
            setups += [("titan", lambda: TitanSystem(script, "fork", slots=args.slots)),
                       ("titan-subprocess",
                        lambda: TitanSystem(script, "subprocess", slots=args.slots))]
            if args.postgres:
                # PostgreSQL's commit waits for the disk (synchronous_commit=on); SQLite's
                # NORMAL does not (it keeps commits across kill -9, not a power loss): FULL
                # is the like-for-like line.
                setups += [("titan-postgres",
                            lambda: TitanSystem(script, "fork", create_db(), slots=args.slots)),
                           ("titan-sqlite-full",
                            lambda: TitanSystem(script, "fork", slots=args.slots,
                                                sqlite_synchronous="FULL"))]
        if "naive" in only:
            setups.append(("naive", lambda: NaiveRunner(script)))
        if "celery" in only:
            setups.append(("celery", CeleryPeer))
        if "ray" in only:
            setups.append(("ray", RayPeer))
        for key, make in setups:
            with optional(key, make) as system:
                if system is None:
                    continue
                results[key] = measure(system, args)
                if key == "titan":
                    cpu = cpu_per_job(system, args.jobs)
                print(row(system.name, results[key], None if key == "titan"
                          else results.get("titan")), flush=True)
    print(f"  load {os.getloadavg()[0]:.2f} at the end; (N.NNx): how many times Titan's figure "
          "(zygote fork, SQLite) that system's is, > 1 better, < 1 Titan ahead")
    print("  columns: submit->result p50 / p99 | 1,000 independent jobs | agent loop "
          "(4 jobs, wait, x20) | 200-job DAG (4 layers x 50)")
    if cpu:
        parts = ", ".join(f"{k} {v:.2f}" for k, v in cpu.items())
        print(f"  Titan CPU per job (ms, 1,000-job workload): {parts}; "
              f"total {sum(cpu.values()):.2f} (500 jobs/s on 2 cores needs <= 4)")
    if "titan" in results:
        for line in verdicts(results["titan"], results):
            print(f"  Titan: {line}")
        if "titan-postgres" in results:
            p = results["titan-postgres"]
            for label, key in (("SQLite (NORMAL)", "titan"), ("SQLite FULL", "titan-sqlite-full")):
                if key in results:
                    t = results[key]
                    print(f"  PostgreSQL vs {label} (target within 1.5x): p50 "
                          f"{p['p50'] / t['p50']:.2f}x, jobs/s {t['rate'] / p['rate']:.2f}x, "
                          f"loop {p['loop'] / t['loop']:.2f}x, DAG {p['dag'] / t['dag']:.2f}x")
            print(f"  a commit that waits for the disk costs {commit_ms(create_db()):.2f} ms here "
                  "(PostgreSQL, synchronous_commit=on; SQLite FULL alike); a job's "
                  "submit->result holds two, one at the submit, one at the result")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
