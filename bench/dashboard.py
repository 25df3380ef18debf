"""Dashboard benchmark: how fast the DAG visualizer and the agents page render at scale.

Starts a throwaway `titan master` with no worker (nothing runs: the pages show still DAGs),
submits DAGs of 100, 1,000 and 10,000 nodes (a chain of preparation steps, then layers that
fan out to ~sqrt(n) nodes with two parents each and fan back in every fifth layer) and 1,000
agent runs of 4 stages, and prints, for /dags/DAG-x at each size and for /agents:

  * first render: navigation start -> the first ``.node`` / ``.agent-run`` laid out, in
    real Chromium (Playwright driving /usr/bin/chromium or $TITAN_CHROMIUM), median of 3
  * HTML KB and server ms: the page as served, and its time to answer
  * JSON KB and server ms: its JSON twin (``/dags/DAG-x.json``, ``/agents.json``)

Server times are medians of several keep-alive GETs on loopback. Baseline in the same run:
``GET /api/v1/health`` for the server times and the 100-node DAG for first render, so the
figures compare across machines. Target: first render <= 2 s at 10,000 nodes.

    .venv/bin/python bench/dashboard.py [--sizes 100,1000,10000] [--agent-runs 1000] [--loads 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cluster import BenchCluster  # noqa: E402

from titan.client import TitanJob  # noqa: E402

CHROMIUM = os.environ.get("TITAN_CHROMIUM") or "/usr/bin/chromium"
NOWHERE = "BENCH_NOWHERE"  # a capability no worker has
TARGET_MS = 2000.0
STAGES = (("PLAN", 1), ("ITER1", 3), ("EVAL1", 1), ("SYNTH", 1))

# Sets window.__firstRender to performance.now() (ms since navigation start) once the first
# element matching the selector is in the document and a frame has been laid out after it.
FIRST_RENDER_JS = """((selector) => {
  const seen = () => {
    if (!document.querySelector(selector)) return false;
    requestAnimationFrame(() => {
      if (window.__firstRender === undefined) window.__firstRender = performance.now();
    });
    return true;
  };
  if (seen()) return;
  const obs = new MutationObserver(() => { if (seen()) obs.disconnect(); });
  obs.observe(document, {childList: true, subtree: true});
})(%s);"""


# -- the data ---------------------------------------------------------------------------------


def mixed_dag(script: str, n: int) -> list[TitanJob]:
    """``n`` jobs: a chain (a tenth, at most 100), then layers of ~sqrt(n) jobs with two
    parents each in the layer above, every fifth layer a single join (fan-in)."""
    def job(jid: str, parents: list[str]) -> TitanJob:
        return TitanJob(jid, script, parents=parents, requirement=NOWHERE)

    chain = max(1, min(100, n // 10))
    jobs = [job(f"prep{i}", [f"prep{i - 1}"] if i else []) for i in range(chain)]
    width = max(2, round((n - chain) ** 0.5))
    above, layer = [f"prep{chain - 1}"], 0
    while len(jobs) < n:
        layer += 1
        if layer % 5 == 0:
            jobs.append(job(f"join{layer}", above))
            above = [f"join{layer}"]
            continue
        ids = [f"l{layer}_{i}" for i in range(min(width, n - len(jobs)))]
        for i, jid in enumerate(ids):
            jobs.append(job(jid, sorted({above[i % len(above)], above[(i + 1) % len(above)]})))
        above = ids
    return jobs


def agent_runs(m: BenchCluster, script: str, runs: int) -> None:
    """``runs`` agent runs of 4 stages (PLAN, ITER1 with 3 jobs, EVAL1, SYNTH); the SYNTH of
    every third is cancelled, so the page shows more than one status."""
    def one(r: int) -> None:
        run_id = f"RESEARCH_{r:05d}"
        for label, width in STAGES:
            name = f"{run_id}_{label}"
            m.client.submit_dag(name, [TitanJob(f"{label.lower()}_{i}", script,
                                                requirement=NOWHERE) for i in range(width)],
                                agent_run_id=run_id)
        if r % 3 == 0:
            m.client.api("POST", f"/dags/{run_id}_SYNTH/cancel")

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(one, range(runs)))


# -- measuring --------------------------------------------------------------------------------


def server_ms(http: httpx.Client, url: str, runs: int) -> tuple[float, int, int]:
    """Median ms of ``runs`` GETs (after one warm-up), decoded bytes, bytes on the wire."""
    r = http.get(url)
    r.raise_for_status()
    size, wire = len(r.content), r.num_bytes_downloaded
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        r = http.get(url)
        times.append((time.perf_counter() - t0) * 1000)
        r.raise_for_status()
    return statistics.median(times), size, wire


def first_render(context: Any, url: str, selector: str, loads: int) -> float:
    """Median ms from navigation start to the first ``selector`` laid out, fresh page each."""
    times = []
    for _ in range(loads):
        page = context.new_page()
        page.add_init_script(FIRST_RENDER_JS % json.dumps(selector))
        page.goto(url, wait_until="commit")
        page.wait_for_function("() => window.__firstRender !== undefined", timeout=120_000)
        times.append(float(page.evaluate("window.__firstRender")))
        page.close()
    return statistics.median(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="100,1000,10000",
                    help="DAG sizes, comma-separated (the first is the render baseline)")
    ap.add_argument("--agent-runs", type=int, default=1000)
    ap.add_argument("--loads", type=int, default=3, help="page loads per first-render median")
    ap.add_argument("--gets", type=int, default=7, help="GETs per server-time median")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    have_browser = os.access(CHROMIUM, os.X_OK)
    print(f"titan dashboard benchmark: DAGs of {', '.join(f'{n:,}' for n in sizes)} nodes, "
          f"{args.agent_runs:,} agent runs x {len(STAGES)} stages, "
          f"{args.loads} loads per render, {args.gets} GETs per server time")
    if not have_browser:
        print(f"  no Chromium at {CHROMIUM} (set TITAN_CHROMIUM): first render not measured")

    m = BenchCluster(worker=False)
    try:
        script = m.script("noop.py", "pass\n")
        for n in sizes:
            t0 = time.perf_counter()
            m.client.submit_dag(f"d{n}", mixed_dag(script, n))
            print(f"  submitted the {n:,}-node DAG in {(time.perf_counter() - t0) * 1000:.0f} ms")
        t0 = time.perf_counter()
        agent_runs(m, script, args.agent_runs)
        print(f"  submitted {args.agent_runs:,} agent runs in {time.perf_counter() - t0:.1f} s")

        # (label, page path, JSON twin path, first-render selector)
        targets = [(f"/dags/DAG-d{n} ({n:,} nodes)", f"/dags/DAG-d{n}", f"/dags/DAG-d{n}.json",
                    ".node") for n in sizes]
        targets.append((f"/agents ({args.agent_runs:,} runs)", "/agents", "/agents.json",
                        ".agent-run"))
        renders: dict[str, float] = {}
        cookies: dict[str, str] = {}
        if have_browser:
            from playwright.sync_api import sync_playwright

            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
                context = browser.new_context(viewport={"width": 1400, "height": 900})
                page = context.new_page()
                page.goto(f"{m.base}/login?token={m.token}")
                page.close()
                cookies = {c["name"]: c["value"] for c in context.cookies()}
                first_render(context, f"{m.base}/dags/DAG-d{sizes[0]}", ".node", 1)  # warm-up
                for label, path, _, selector in targets:
                    renders[label] = first_render(context, m.base + path, selector, args.loads)
                browser.close()
        else:
            with httpx.Client() as http:
                http.get(f"{m.base}/login", params={"token": m.token})
                cookies = dict(http.cookies)

        rows = []
        with httpx.Client(cookies=cookies, timeout=120) as http, \
                httpx.Client(timeout=30) as plain:
            health = server_ms(plain, f"http://127.0.0.1:{m.port}/api/v1/health", args.gets * 3)
            for label, path, twin, _ in targets:
                html = server_ms(http, m.base + path, args.gets)
                try:
                    js: tuple[float, int, int] | None = server_ms(http, m.base + twin, args.gets)
                except httpx.HTTPStatusError:
                    js = None
                rows.append((label, renders.get(label), html, js))

        def kb(b: int, wire: int) -> str:
            return f"{b / 1024:8.1f}" + (f" ({wire / 1024:.0f} on the wire)" if wire < b else "")

        print(f"\n  {'page':<32} {'first render':>13} {'HTML ms':>8} {'JSON ms':>8} "
              f"{'HTML KB':>8} {'JSON KB':>8}")
        print(f"  {'GET /api/v1/health (baseline)':<32} {'-':>13} {health[0]:8.2f} {'-':>8} "
              f"{health[1] / 1024:8.1f}")
        for label, render, html, js in rows:
            r = f"{render:10.0f} ms" if render is not None else f"{'-':>13}"
            j_ms = f"{js[0]:8.2f}" if js else f"{'-':>8}"
            j_kb = kb(js[1], js[2]) if js else f"{'-':>8}"
            print(f"  {label:<32} {r} {html[0]:8.2f} {j_ms} {kb(html[1], html[2])} {j_kb}")

        base_label = targets[0][0]
        if renders:
            ratios = ", ".join(f"{n:,}: x{renders[t[0]] / renders[base_label]:.1f}"
                               for n, t in zip(sizes[1:], targets[1:], strict=False))
            print(f"\n  first render vs the {sizes[0]:,}-node DAG: {ratios}")
        twin_ratios = ", ".join(f"{label.split(' ')[0]}: x{js[0] / health[0]:.0f}"
                                for label, _, _, js in rows if js)
        print(f"  JSON twin server time vs /api/v1/health: {twin_ratios}")
        big = max(sizes)
        big_render = renders.get(targets[sizes.index(big)][0])
        if big_render is not None:
            verdict = "met" if big_render <= TARGET_MS else "MISSED"
            print(f"  target: first render <= {TARGET_MS:.0f} ms at {big:,} nodes: {verdict} "
                  f"({big_render:.0f} ms)")
    finally:
        m.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
