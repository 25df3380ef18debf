"""Telemetry benchmark: what recording actions costs an agent, how fast the master takes them.

Prints, each against a baseline measured in the same run:

  * caller overhead: µs added per ``@titan.tool`` call and per ``with titan.trace.action()``
    block inside ``titan.trace.run`` (sender thread live, a master on loopback) over the same
    code undecorated, median of repeats; then flush() and check every action arrived.
    Target <= 50 µs.
  * ingestion: actions/s through ``POST /api/v1/runs/{id}/actions`` (pre-built batches of
    1,000 small actions, 4 senders) on a fresh master over SQLite, then PostgreSQL, against
    the driver's own executemany of the same rows into a fresh database of the same kind
    (a transaction a batch). Target >= 20,000 actions/s. PostgreSQL ($TITAN_TEST_POSTGRES_URL,
    default postgres@127.0.0.1:5432; a database of our own, dropped) is skipped if down.
  * first render of the run just ingested: the first page of ``/api/v1/runs/<id>/actions``,
    ``/api/v1/runs/<id>`` and ``/runs/<id>.json`` (median ms; baseline ``/api/v1/health``),
    and in real Chromium the first ``.action-row`` of ``/runs/<id>``. Target <= 2 s.
  * OTLP in: the master's worst answer time (``/api/v1/health``) while one request of 20,000
    spans — a chain whose top never comes — waits out a 1 s hold and is recorded (each span
    walked the chain up: the loop froze ~111 s); baseline its health at rest. Target <= 2 s.

    .venv/bin/python bench/telemetry.py [--quick] [--calls 50000] [--actions 30000]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cluster import PG_ADMIN_URL, BenchCluster, postgres  # noqa: E402
from dashboard import CHROMIUM, first_render  # noqa: E402

from titan.trace.canonical import digest, dumps  # noqa: E402

BATCH, SENDERS, SMALL, ORPHANS = 1000, 4, 100, 20_000
TARGET_US, TARGET_RATE, TARGET_MS = 50.0, 20_000.0, 2000.0


def lookup(query: str, k: int = 3) -> list[str]:
    return [query] * k


def per_call_us(loop: Any, n: int) -> float:
    t0 = time.perf_counter()
    loop(n)
    return (time.perf_counter() - t0) / n * 1e6


def caller_overhead(m: BenchCluster, n: int, repeats: int) -> dict[str, float]:
    # The SDK finds the master as a job does, from TITAN_URL and TITAN_TOKEN.
    os.environ.update(TITAN_URL=f"http://127.0.0.1:{m.port}", TITAN_TOKEN=m.token)
    import titan
    from titan import trace

    def calls(fn: Any) -> Any:
        def loop(n: int) -> None:
            for _ in range(n):
                fn("what is lora", 3)
        return loop

    plain, tools = calls(lookup), calls(titan.tool(lookup))

    def bare(n: int) -> None:  # the block's body without the block
        for i in range(n):
            inputs = {"query": "what is lora", "i": i}
            outputs = {"hits": 3, "first": inputs["query"]}
            del outputs

    def blocks(n: int) -> None:
        for i in range(n):
            with trace.action("step", inputs={"query": "what is lora", "i": i}) as a:
                a.outputs = {"hits": 3, "first": "what is lora"}

    out: dict[str, list[float]] = {k: [] for k in ("plain", "off", "tool", "bare", "block",
                                                   "flush")}
    runs = []
    for _ in range(repeats):
        out["plain"].append(per_call_us(plain, n))
        out["off"].append(per_call_us(tools, n))  # decorated, outside any run
        out["bare"].append(per_call_us(bare, n))
        for kind, loop in (("tool", tools), ("block", blocks)):
            with trace.run(agent_id="bench") as run:
                out[kind].append(per_call_us(loop, n))
            t0 = time.perf_counter()
            assert trace.flush(120), "flush() timed out"
            out["flush"].append((time.perf_counter() - t0) * 1000)
            runs.append(run.id)
    got = sum(m.client.api("GET", f"/runs/{r}")["action_count"] for r in runs)
    return dict({k: statistics.median(v) for k, v in out.items()}, delivered=got,
                sent=n * len(runs), tool_min=min(out["tool"]), block_min=min(out["block"]))


def make_actions(n: int) -> list[dict[str, Any]]:
    """Small realistic actions: tool calls with a query and three hits; every fourth an LLM
    call with a model, token usage and cost."""
    now, out = time.time(), []
    for i in range(n):
        a: dict[str, Any] = {"id": f"a-{i}", "actor": f"ITER1/researcher-{i % 4}",
                             "ordinal": i // 16, "started_at": now + i * 1e-3,
                             "duration_ns": 1_500_000 + i % 977}
        if i % 4 == 3:
            a.update(channel="llm", name="complete", model="qwen2.5-0.5b", cost_usd=0.0004,
                     usage={"input_tokens": 412, "output_tokens": 96},
                     inputs={"prompt": f"Summarise source {i} about low-rank adaptation."},
                     outputs={"text": "LoRA freezes the weights, trains a low-rank delta. " * 2})
        else:
            a.update(channel="tool", name=("web_search", "fetch", "parse")[i % 3],
                     inputs={"query": f"lora fine-tuning {i}", "k": 3},
                     outputs=[f"https://example.org/paper/{i}/{j}" for j in range(3)])
        out.append(a)
    return out


def ingest(m: BenchCluster, run_id: str, bodies: list[bytes]) -> float:
    """POST every batch, SENDERS at a time; actions/s, once the master counts them all."""
    m.client.api("POST", "/runs", json={"id": run_id, "agent_id": "bench"})
    url = f"http://127.0.0.1:{m.port}/api/v1/runs/{run_id}/actions"
    headers = {"Authorization": f"Bearer {m.token}", "Content-Type": "application/json"}
    with httpx.Client(headers=headers, timeout=300,
                      limits=httpx.Limits(max_connections=SENDERS)) as http, \
            ThreadPoolExecutor(SENDERS) as pool:
        t0 = time.perf_counter()
        for r in pool.map(lambda body: http.post(url, content=body), bodies):
            r.raise_for_status()
        elapsed = time.perf_counter() - t0
    got = m.client.api("GET", f"/runs/{run_id}")["action_count"]
    assert got == len(bodies) * BATCH, f"the master counts {got} actions"
    return got / elapsed


def executemany_rate(url: str, actions: list[dict[str, Any]]) -> float:
    """Rows/s of the driver's own executemany (rows pre-built, the master's canonical
    payloads and hashes) into a fresh migrated database, a transaction a batch."""
    from titan.storage import open_storage

    storage: Any = open_storage(url)
    with storage.transaction() as tx:
        tx.create_run({"id": "base", "created_at": time.time(), "started_at": time.time(),
                       "status": "running"})
    rows = []
    for seq, a in enumerate(actions, 1):
        row = {k: a.get(k) for k in ("id", "actor", "channel", "name", "ordinal", "model",
                                     "cost_usd", "started_at", "duration_ns")}
        for side in ("inputs", "outputs"):
            text = dumps(a[side])
            row.update({side: text, f"{side}_hash": digest(text),
                        f"{side}_size": len(text.encode()), f"{side}_blob": False})
        usage = a.get("usage", {})
        row.update(run_id="base", seq=seq, outcome="success", recorded_at=time.time(),
                   input_tokens=usage.get("input_tokens"),
                   output_tokens=usage.get("output_tokens"))
        rows.append(row)
    mark = "?" if url.startswith("sqlite") else "%s"
    sql = (f"INSERT INTO actions ({', '.join(rows[0])}) "
           f"VALUES ({', '.join([mark] * len(rows[0]))})")
    tuples = [tuple(r.values()) for r in rows]
    with contextlib.closing(storage.engine.raw_connection()) as conn:
        t0 = time.perf_counter()
        for i in range(0, len(tuples), BATCH):
            conn.cursor().executemany(sql, tuples[i:i + BATCH])
            conn.commit()
        rate = len(rows) / (time.perf_counter() - t0)
    storage.close()
    return rate


def median_ms(http: httpx.Client, url: str, runs: int = 5) -> float | None:
    """Median ms of ``runs`` GETs after a warm-up; None if the URL answers 404."""
    if http.get(url).status_code == 404:
        return None
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        http.get(url).raise_for_status()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def orphan_chain(n: int) -> dict[str, float]:
    """Worst /api/v1/health ms while a chain of ``n`` orphan spans is held and released."""
    m = BenchCluster(worker=False, env={"TITAN_OTLP_HOLD": "1"})
    try:
        http = httpx.Client(base_url=f"http://127.0.0.1:{m.port}", timeout=600,
                            headers={"Authorization": f"Bearer {m.token}"})
        rest = median_ms(http, "/api/v1/health") or 0.0
        trace, now = os.urandom(16).hex(), time.time_ns()
        spans = [{"traceId": trace, "spanId": f"{i + 2:016x}", "parentSpanId": f"{i + 1:016x}",
                  "name": f"step {i}", "kind": 1, "startTimeUnixNano": str(now + i * 1000),
                  "endTimeUnixNano": str(now + i * 1000 + 500)} for i in range(n)]
        http.post("/v1/traces", json={"resourceSpans": [{"scopeSpans": [{"spans": spans}]}]}
                  ).raise_for_status()
        worst, deadline = 0.0, time.time() + 120
        while time.time() < deadline:
            t0 = time.perf_counter()
            http.get("/api/v1/health").raise_for_status()
            worst = max(worst, (time.perf_counter() - t0) * 1000)
            ingest = http.get("/api/v1/otlp").json()["ingest"]
            if ingest["recorded_spans"] >= n:
                break
            time.sleep(0.05)
        return {"worst": worst, "rest": rest, "recorded": ingest["recorded_spans"]}
    finally:
        m.close()


def render(m: BenchCluster, run_id: str, browser: bool) -> dict[str, Any]:
    api = f"http://127.0.0.1:{m.port}/api/v1"
    with httpx.Client(headers={"Authorization": f"Bearer {m.token}"}, timeout=60) as http:
        http.get(f"{m.base}/login", params={"token": m.token})  # the dashboard's cookie
        out: dict[str, Any] = {
            "health": median_ms(http, f"{api}/health", 15),
            "actions page 1": median_ms(http, f"{api}/runs/{run_id}/actions?limit=100"),
            "/api/v1/runs/<id>": median_ms(http, f"{api}/runs/{run_id}"),
            "/runs/<id>.json": median_ms(http, f"{m.base}/runs/{run_id}.json")}
        page = http.get(f"{m.base}/runs/{run_id}").status_code
    if not browser:
        return out
    if not os.access(CHROMIUM, os.X_OK):
        out["why"] = f"no Chromium at {CHROMIUM} (set TITAN_CHROMIUM)"
    elif page == 404:
        out["why"] = f"/runs/{run_id} answers 404: the run page is not there yet"
    else:
        from playwright.sync_api import sync_playwright

        with sync_playwright() as p:
            chrome = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            context = chrome.new_context(viewport={"width": 1400, "height": 900})
            context.new_page().goto(f"{m.base}/login?token={m.token}")
            out["browser_small"] = first_render(context, f"{m.base}/runs/bench-small",
                                                ".action-row", 3)
            out["browser"] = first_render(context, f"{m.base}/runs/{run_id}", ".action-row", 3)
            chrome.close()
    return out


def backend(env: dict[str, str], bodies: list[bytes], actions: list[dict[str, Any]],
            base_url: str, browser: bool) -> dict[str, Any]:
    """Ingest into a fresh master on one database and render the run; then the baseline."""
    m = BenchCluster(worker=False, env=env)
    try:
        rate = ingest(m, "bench-ingest", bodies)
        if browser:  # the first-render baseline: a small run
            m.client.api("POST", "/runs", json={"id": "bench-small", "agent_id": "bench"})
            m.client.api("POST", "/runs/bench-small/actions",
                         json={"actions": make_actions(SMALL)})
        out = render(m, "bench-ingest", browser)
    finally:
        m.close()
    return dict(out, rate=rate, base=executemany_rate(base_url, actions))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smaller figures (a smoke run)")
    ap.add_argument("--calls", type=int, help="calls per caller-overhead loop (50,000)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--actions", type=int, help="actions per database (30,000)")
    args = ap.parse_args()
    calls = args.calls or (10_000 if args.quick else 50_000)
    total = max(1, (args.actions or (10_000 if args.quick else 30_000)) // BATCH) * BATCH
    print(f"titan telemetry benchmark: {calls:,} calls x {args.repeats} repeats; {total:,} "
          f"actions per database in batches of {BATCH:,}, {SENDERS} senders")
    actions = make_actions(total)
    bodies = [json.dumps({"actions": actions[i:i + BATCH]}).encode()
              for i in range(0, total, BATCH)]
    table: list[tuple[str, str, str, str]] = []

    def add(figure: str, measured: str, baseline: str, ok: bool, target: str) -> None:
        table.append((figure, measured, baseline, f"{target} {'met' if ok else 'MISSED'}"))

    m = BenchCluster(worker=False)
    try:
        c = caller_overhead(m, calls, args.repeats)
    finally:
        m.close()
    for kind, base, label in (("tool", "plain", "@titan.tool call"),
                              ("block", "bare", "trace.action block")):
        added = c[kind] - c[base]
        add(f"caller: {label}", f"+{added:.1f} µs", f"{c[base]:.2f} µs undecorated",
            added <= TARGET_US, f"<= {TARGET_US:.0f} µs")
    add("caller: delivered", f"{c['delivered']:,}", f"{c['sent']:,} recorded",
        c["delivered"] == c["sent"], "all")
    print(f"  per call in a run: @titan.tool {c['tool']:.2f} µs (min {c['tool_min']:.2f}), "
          f"trace.action {c['block']:.2f} µs (min {c['block_min']:.2f}); @titan.tool outside "
          f"any run {c['off']:.2f} µs; flush() after a loop {c['flush']:.0f} ms")

    results: list[tuple[str, dict[str, Any]]] = []
    with tempfile.TemporaryDirectory() as tmp:
        results.append(("SQLite", backend({}, bodies, actions, f"sqlite:///{tmp}/base.db",
                                          browser=True)))
    with postgres() as create:
        try:
            url, base_url = create(), create()
        except Exception as exc:
            print(f"  PostgreSQL not reachable at {PG_ADMIN_URL} ({type(exc).__name__}): "
                  "skipped")
        else:
            results.append(("PostgreSQL", backend({"TITAN_DATABASE_URL": url}, bodies,
                                                  actions, base_url, browser=False)))
    for name, r in results:
        add(f"ingest: {name}", f"{r['rate']:,.0f}/s",
            f"{r['base']:,.0f}/s executemany ({r['rate'] / r['base']:.0%})",
            r["rate"] >= TARGET_RATE, f">= {TARGET_RATE:,.0f}/s")
    for name, r in results:
        for label in ("actions page 1", "/api/v1/runs/<id>", "/runs/<id>.json"):
            if r[label] is None:
                print(f"  {name}: GET {label} answers 404 (not there yet)")
            else:
                add(f"{name}: {label}", f"{r[label]:.1f} ms", f"{r['health']:.2f} ms health",
                    r[label] <= TARGET_MS, f"<= {TARGET_MS:.0f} ms")
    o = orphan_chain(ORPHANS // 4 if args.quick else ORPHANS)
    add("OTLP: orphan chain released", f"{o['worst']:.0f} ms", f"{o['rest']:.2f} ms health",
        o["worst"] <= TARGET_MS and o["recorded"] >= (ORPHANS // 4 if args.quick else ORPHANS),
        f"<= {TARGET_MS:.0f} ms")
    r = results[0][1]
    if "browser" in r:
        add("Chromium: first .action-row", f"{r['browser']:.0f} ms",
            f"{r['browser_small']:.0f} ms {SMALL}-action run", r["browser"] <= TARGET_MS,
            f"<= {TARGET_MS:.0f} ms")
    else:
        print(f"  first render in the browser skipped: {r['why']}")

    print(f"\n  {'figure (' + format(total, ',') + '-action runs)':<31} {'measured':>10}  "
          f"{'baseline':<29} target")
    for row in table:
        print(f"  {row[0]:<31} {row[1]:>10}  {row[2]:<29} {row[3]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
