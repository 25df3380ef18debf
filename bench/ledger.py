"""The run ledger's cost on ingestion (issue 20: at most 5 % of ingestion throughput).

Ingests the same actions (bench/telemetry.py's batches of 1,000 small actions, 4 senders)
into fresh masters, alternating two kinds, on SQLite and then PostgreSQL:

  * **ledger**: the master as shipped: every action's canonical content hashed and chained
    (titan/ledger.py), the run's head moved, and the Activity Ledger's index
    ``ix_actions_started`` kept up;
  * **baseline**: the same master with the ledger taken out for the benchmark only: a
    ``sitecustomize`` on its PYTHONPATH replaces ``titan.ledger.content`` and
    ``titan.ledger.extend`` with functions that compute nothing (no chain hash stored), and
    the index is dropped once the master has migrated the database.

Prints, per database, the median actions/s and master CPU µs per action of each kind (from
/proc/<pid>/stat, ingestion only) and the ledger's cost as a share of each. The kinds
alternate (ledger, baseline, ledger, ...) so a drifting load on the machine falls on both.

End to end, a run's figures move by several µs per action with the machine's load, more than
the ledger costs; so the same comparison is made in this process too, without HTTP: the CPU
of the master's own ingestion code (``prepare_batch`` off the event loop, ``append_batch`` in
the writer's transaction) per action, with the ledger and without it, alternating, and that
difference is given as a share of the master's whole CPU per action from the end-to-end runs.

    .venv/bin/python bench/ledger.py [--actions 30000] [--repeats 3] [--no-postgres]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cluster import PG_ADMIN_URL, BenchCluster, postgres  # noqa: E402
from telemetry import BATCH, SENDERS, ingest, make_actions  # noqa: E402

TARGET = 0.05

# The baseline master's ledger: nothing hashed, nothing chained, no head kept.
_NO_LEDGER = '''
import titan.ledger as _ledger

def _content(a):
    return ""

def _extend(run_id, head, start, rows):
    for r in rows:
        r["chain_hash"] = None
    return None, None

_ledger.content, _ledger.extend = _content, _extend
'''


def master_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def one(kind: str, env: dict[str, str], url: str | None, bodies: list[bytes],
        patch_dir: str, strip: set[str]) -> tuple[float, float]:
    """Actions/s and master CPU µs per action of one fresh master of ``kind``."""
    env = dict(env)
    if kind == "baseline" and "hashing" in strip:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [patch_dir,
                                                          os.environ.get("PYTHONPATH")]))
    m = BenchCluster(worker=False, env=env)
    try:
        if kind == "baseline" and "index" in strip:
            db = url or f"sqlite:///{m.root / 'data' / 'titan.db'}"
            engine = sa.create_engine(db)
            with engine.begin() as conn:
                conn.execute(sa.text("DROP INDEX ix_actions_started"))
            engine.dispose()
        cpu0 = master_cpu_s(m.proc.pid)
        rate = ingest(m, f"bench-ledger-{kind}", bodies)
        cpu = master_cpu_s(m.proc.pid) - cpu0
        count = len(bodies) * BATCH
        head = m.client.api("GET", f"/runs/bench-ledger-{kind}")["chain_head"]
        if (head is None) != (kind == "baseline" and "hashing" in strip):  # each master is the kind it says
            raise RuntimeError(f"the {kind} master's run has chain head {head!r}")
    finally:
        m.close()
    return rate, cpu / count * 1e6


def in_process(url_for: Any, bodies: list[bytes], repeats: int) -> dict[str, float]:
    """µs of CPU per action of the master's ingestion code in this process (``prepare_batch``
    and ``append_batch`` in one write transaction a batch), with the ledger and without."""
    from titan import ledger
    from titan.master.runs import actions
    from titan.storage import open_storage
    from titan.storage.blobs.directory import DirectoryBlobStore

    shipped = (ledger.content, ledger.extend)

    def no_content(a: Any) -> bytes:
        return b""

    def no_chain(run_id: str, head: Any, start: Any, rows: list[dict[str, Any]]) -> Any:
        for r in rows:
            r["chain_hash"] = None
        return None, None

    got: dict[str, list[float]] = {"ledger": [], "baseline": []}
    for i in range(repeats):
        for kind in (("ledger", "baseline") if i % 2 == 0 else ("baseline", "ledger")):
            ledger.content, ledger.extend = shipped if kind == "ledger" else (no_content,
                                                                              no_chain)
            with tempfile.TemporaryDirectory() as tmp:
                storage: Any = open_storage(url_for(tmp))
                if kind == "baseline":
                    with storage.engine.begin() as conn:
                        conn.execute(sa.text("DROP INDEX ix_actions_started"))
                blobs = DirectoryBlobStore(Path(tmp) / "blobs")
                with storage.transaction() as tx:
                    tx.create_run({"id": "r", "created_at": 1.0, "started_at": 1.0,
                                   "status": "running"})
                cpu = 0.0
                for body in bodies:
                    now = time.time()
                    t0 = time.process_time()
                    rows = actions.prepare_batch(json.loads(body), now, None, blobs)
                    with storage.write_transaction() as tx:
                        actions.append_batch(tx, "r", rows, now)
                    cpu += time.process_time() - t0
                storage.close()
            got[kind].append(cpu / (len(bodies) * BATCH) * 1e6)
    ledger.content, ledger.extend = shipped
    return {k: statistics.median(v) for k, v in got.items()}


def compare(name: str, env_for: Any, bodies: list[bytes], repeats: int,
            patch_dir: str, strip: set[str]) -> dict[str, Any]:
    got: dict[str, list[tuple[float, float]]] = {"ledger": [], "baseline": []}
    for i in range(repeats):
        for kind in (("ledger", "baseline") if i % 2 == 0 else ("baseline", "ledger")):
            env, url = env_for()
            rate, us = one(kind, env, url, bodies, patch_dir, strip)
            got[kind].append((rate, us))
            print(f"  {name:<10} {kind:<8} {rate:>9,.0f} actions/s  {us:6.1f} µs master CPU "
                  "per action", flush=True)
    rates = {k: statistics.median(r for r, _ in v) for k, v in got.items()}
    cpus = {k: statistics.median(u for _, u in v) for k, v in got.items()}
    return {"rate": rates, "cpu": cpus,
            "rate_cost": 1 - rates["ledger"] / rates["baseline"],
            "cpu_cost": cpus["ledger"] / cpus["baseline"] - 1}


def report(name: str, r: dict[str, Any], inproc: dict[str, float]) -> None:
    added = inproc["ledger"] - inproc["baseline"]
    share = added / r["cpu"]["baseline"]
    print(f"  {name:<11} {r['rate']['ledger']:>11,.0f}/s {r['rate']['baseline']:>11,.0f}/s "
          f"{r['rate_cost']:>15.1%} {r['cpu']['ledger']:>16.1f} µs "
          f"{r['cpu']['baseline']:>6.1f} µs {r['cpu_cost']:>8.1%}")
    print(f"  {'':<11} in this process: ingestion code {inproc['ledger']:.2f} µs/action with "
          f"the ledger, {inproc['baseline']:.2f} without: +{added:.2f} µs = {share:.1%} of the "
          f"master's {r['cpu']['baseline']:.1f} µs per action (target <= {TARGET:.0%}: "
          f"{'met' if share <= TARGET else 'MISSED'})")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--actions", type=int, default=30_000, help="actions per master (30,000)")
    ap.add_argument("--repeats", type=int, default=5, help="masters of each kind (5)")
    ap.add_argument("--no-postgres", action="store_true")
    ap.add_argument("--strip", default="hashing,index",
                    help="what the baseline leaves out: hashing, index or both (the default)")
    args = ap.parse_args()
    strip = set(args.strip.split(","))
    if not strip or strip - {"hashing", "index"}:
        ap.error("--strip takes hashing, index or hashing,index")
    total = max(1, args.actions // BATCH) * BATCH
    actions = make_actions(total)
    bodies = [json.dumps({"actions": actions[i:i + BATCH]}).encode()
              for i in range(0, total, BATCH)]
    load = os.getloadavg()[0]
    print(f"titan ledger benchmark: {total:,} actions per master in batches of {BATCH:,}, "
          f"{SENDERS} senders, {args.repeats} masters of each kind; the baseline without "
          f"{' and '.join(sorted(strip))}; load {load:.2f}")
    results: list[tuple[str, dict[str, Any], dict[str, float]]] = []
    with tempfile.TemporaryDirectory() as patch_dir:
        Path(patch_dir, "sitecustomize.py").write_text(_NO_LEDGER)
        results.append(("SQLite", compare("SQLite", lambda: ({}, None), bodies, args.repeats,
                                          patch_dir, strip),
                        in_process(lambda tmp: f"sqlite:///{tmp}/titan.db", bodies,
                                   2 * args.repeats + 1)))
        if not args.no_postgres:
            with postgres() as create:
                try:
                    create()
                except Exception as exc:
                    print(f"  PostgreSQL not reachable at {PG_ADMIN_URL} "
                          f"({type(exc).__name__}): skipped")
                else:
                    def pg() -> tuple[dict[str, str], str]:
                        url = create()
                        return {"TITAN_DATABASE_URL": url}, url
                    results.append(("PostgreSQL", compare("PostgreSQL", pg, bodies,
                                                          args.repeats, patch_dir, strip),
                                    in_process(lambda tmp: create(), bodies,
                                               2 * args.repeats + 1)))
    print(f"\n  load {load:.2f} -> {os.getloadavg()[0]:.2f}")
    print(f"  {'database':<11} {'ledger':>13} {'baseline':>13} {'throughput cost':>16} "
          f"{'CPU/action ledger':>18} {'baseline':>9} {'CPU cost':>9}")
    for name, r, inproc in results:
        report(name, r, inproc)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
