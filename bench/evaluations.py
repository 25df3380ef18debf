"""Tool-proxy benchmark: what answering a tool call through an evaluation run costs.

An HTTP agent (served by this script) makes N calls through the proxy, each answered by a
failure rule (source ``injected``: no model involved, so this is the proxy's own cost —
token check, rule match, recording the call as an action, its ledger row). The baseline, in
the same run against the same master: N single-action ``POST /runs/{id}/actions`` — recording
a call without the proxy. Prints calls/s and latency percentiles of both, and their ratio.

    .venv/bin/python bench/evaluations.py [--calls 500]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from cluster import BenchCluster  # noqa: E402

from titan.evals import Proxy  # noqa: E402

LATENCIES: list[float] = []


def _agent(calls: int) -> type[BaseHTTPRequestHandler]:
    class Agent(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass

        def do_POST(self) -> None:  # noqa: N802
            task = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            proxy = Proxy(task["proxy"]["url"], task["proxy"]["token"])
            for i in range(calls):
                t0 = time.perf_counter()
                proxy.call("lookup", {"i": i})
                LATENCIES.append(time.perf_counter() - t0)
            body = json.dumps({"final_response": "done"}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
    return Agent


def _figures(name: str, samples: list[float], wall: float) -> float:
    ms = sorted(s * 1000 for s in samples)
    rate = len(samples) / wall
    print(f"{name:<34} {rate:8.0f} calls/s   p50 {statistics.median(ms):6.2f} ms   "
          f"p95 {ms[int(len(ms) * 0.95) - 1]:6.2f} ms")
    return rate


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--calls", type=int, default=500)
    args = p.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _agent(args.calls))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    c = BenchCluster(slots=1)
    try:
        client = c.client
        # Baseline: the same recording without the proxy, one action per request.
        client.api("POST", "/runs", json={"id": "bench-baseline"})
        base: list[float] = []
        t0 = time.perf_counter()
        for i in range(args.calls):
            s = time.perf_counter()
            client.api("POST", "/runs/bench-baseline/actions", json={"actions": [{
                "id": uuid.uuid4().hex, "actor": "agent", "channel": "tool", "name": "lookup",
                "inputs": {"i": i}, "outputs": {"error": "injected"}, "outcome": "success",
                "started_at": time.time(), "duration_ns": 0}]})
            base.append(time.perf_counter() - s)
        base_wall = time.perf_counter() - t0

        client.create_evaluation("bench-proxy", {
            "name": "bench", "kind": "http", "judge": False, "timeout_s": 3600,
            "url": f"http://127.0.0.1:{server.server_address[1]}/",
            "tools": [{"name": "lookup"}]},
            [{"id": "t", "user_instruction": "look things up", "failure_rules": [
                {"tool": "lookup", "payload": {"error": "injected"}, "error": False}]}])
        t0 = time.perf_counter()
        client.run_evaluation("bench-proxy")
        view = client.wait_evaluation("bench-proxy", timeout=3600, poll=0.05)
        proxy_wall = sum(LATENCIES)
        run = view["tasks"][0]["run"]
        assert run["status"] == "completed" and run["by_source"]["injected"] == args.calls, run
        print(f"{args.calls} calls each, one at a time, 2-core loopback")
        b = _figures("baseline: POST /runs/{id}/actions", base, base_wall)
        q = _figures("proxy: POST /runs/{id}/tools/{name}", LATENCIES, proxy_wall)
        print(f"proxy throughput / baseline: {q / b:.2f}x")
    finally:
        c.close()
        server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
