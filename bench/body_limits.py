"""Body-limit benchmark: unauthenticated memory exhaustion (issue 15 item 3).

On one bare `titan master`, measures first the idle baseline (master RSS, `/health` latency),
then a flood: CLIENTS concurrent clients each announcing a 300 MB body without a token (half
with Content-Length, half chunked) and streaming it, reconnecting as soon as they are refused,
for --seconds, while `/health` is polled. Prints the master's peak RSS over the baseline
(target: within +50 MB), `/health` p50/p99 during the flood (target: p99 < 50 ms), how many
bytes the clients managed to push, and the time an authenticated over-limit body takes to get
its 413 (Content-Length and chunked).

    .venv/bin/python bench/body_limits.py [--clients 20] [--seconds 10]
"""

from __future__ import annotations

import argparse
import socket
import sys
import threading
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cluster import BenchCluster  # noqa: E402

BODY = 300 * 1024 * 1024
CHUNK = b"x" * (1 << 20)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def health_latencies(port: int, stop: threading.Event, out: list[float]) -> None:
    url = f"http://127.0.0.1:{port}/api/v1/health"
    while not stop.is_set():
        t0 = time.perf_counter()
        with urllib.request.urlopen(url, timeout=30) as r:
            r.read()
        out.append((time.perf_counter() - t0) * 1000)
        time.sleep(0.02)


def head(path: str, chunked: bool, token: str | None = None, length: int = BODY) -> bytes:
    lines = [f"PUT {path} HTTP/1.1", "Host: 127.0.0.1", "Content-Type: application/json"]
    lines.append("Transfer-Encoding: chunked" if chunked else f"Content-Length: {length}")
    if token:
        lines.append(f"Authorization: Bearer {token}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def attacker(port: int, chunked: bool, stop: threading.Event, pushed: list[int]) -> None:
    """Announce 300 MB, stream it until refused, and start again."""
    framed = f"{len(CHUNK):x}\r\n".encode() + CHUNK + b"\r\n" if chunked else CHUNK
    while not stop.is_set():
        sent = 0
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
                sock.sendall(head("/api/v1/store/values/flood", chunked))
                while sent < BODY and not stop.is_set():
                    sent += sock.send(framed)
        except OSError:
            pass  # refused and closed: the point
        pushed.append(sent)


def time_to_413(port: int, token: str, chunked: bool) -> tuple[float, int, bytes]:
    framed = f"{len(CHUNK):x}\r\n".encode() + CHUNK + b"\r\n" if chunked else CHUNK
    t0 = time.perf_counter()
    sent = 0
    pending = memoryview(b"")
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(head("/api/v1/store/values/big", chunked, token))
        sock.setblocking(False)
        reply = b""
        while not reply and time.perf_counter() - t0 < 60:
            if not pending:
                pending = memoryview(framed)
            try:  # a partial send resumes where it stopped: the chunk framing stays whole
                n = sock.send(pending)
                sent += n
                pending = pending[n:]
            except (BlockingIOError, BrokenPipeError, ConnectionResetError):
                time.sleep(0.001)
            try:
                reply = sock.recv(4096)
            except BlockingIOError:
                pass
    return (time.perf_counter() - t0) * 1000, sent, reply.split(b"\r\n", 1)[0]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=10.0)
    args = ap.parse_args()
    c = BenchCluster(worker=False)
    try:
        pid = c.proc.pid
        for _ in range(50):  # warm the routes
            c.client.api("GET", "/health")
        idle: list[float] = []
        stop = threading.Event()
        poller = threading.Thread(target=health_latencies, args=(c.port, stop, idle))
        poller.start()
        time.sleep(3)
        stop.set()
        poller.join()
        base_rss = rss_mb(pid)
        print(f"baseline (idle): master RSS {base_rss:.0f} MB; /health p50 {pct(idle, 50):.1f} ms, "
              f"p99 {pct(idle, 99):.1f} ms ({len(idle)} calls)")

        stop = threading.Event()
        during: list[float] = []
        pushed: list[int] = []
        threads = [threading.Thread(target=attacker, args=(c.port, i % 2 == 1, stop, pushed))
                   for i in range(args.clients)]
        threads.append(threading.Thread(target=health_latencies, args=(c.port, stop, during)))
        for t in threads:
            t.start()
        peak = base_rss
        deadline = time.time() + args.seconds
        while time.time() < deadline:
            peak = max(peak, rss_mb(pid))
            time.sleep(0.05)
        stop.set()
        for t in threads:
            t.join()
        print(f"flood: {args.clients} clients x 300 MB unauthenticated bodies for "
              f"{args.seconds:.0f} s ({len(pushed)} attempts, each refused and closed after at "
              f"most {max(pushed, default=0) / 2**20:.1f} MB written to its socket)")
        print(f"  master RSS peak {peak:.0f} MB: {peak - base_rss:+.0f} MB over the baseline "
              f"(target <= +50 MB)")
        print(f"  /health during the flood: p50 {pct(during, 50):.1f} ms, p99 "
              f"{pct(during, 99):.1f} ms over {len(during)} calls (target p99 < 50 ms)")
        for chunked in (False, True):
            took, sent, status = time_to_413(c.port, c.token, chunked)
            kind = "chunked" if chunked else "Content-Length"
            print(f"authenticated 300 MB body ({kind}): {status.decode()} after {took:.1f} ms, "
                  f"{sent / 2**20:.0f} MB sent (limit 64 MiB)")
    finally:
        c.close()


if __name__ == "__main__":
    main()
