"""A tiny model server, run as a Titan SERVICE job: ``POST /predict`` scores a text.

The "model" is a word list (loading it takes a moment, as real weights would: the job is not
ready until ``GET /health`` answers, and nothing calls it before). It listens where its worker
says — ``TITAN_SERVICE_HOST`` and ``PORT`` — and stops cleanly on SIGTERM: ``titan stop``
gives it its ``stop_grace`` to finish the requests in flight.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

POSITIVE = {"good", "great", "love", "fast", "excellent", "happy", "works"}
NEGATIVE = {"bad", "slow", "hate", "broken", "awful", "sad", "fails"}


def score(text: str) -> dict[str, object]:
    words = [w.strip(".,!?").lower() for w in text.split()]
    value = sum(w in POSITIVE for w in words) - sum(w in NEGATIVE for w in words)
    label = "positive" if value > 0 else "negative" if value < 0 else "neutral"
    return {"text": text, "label": label, "score": value}


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self._reply(200 if self.path == "/health" else 404, {"ok": self.path == "/health"})

    def do_POST(self) -> None:  # noqa: N802
        if self.path != "/predict":
            self._reply(404, {"error": "POST /predict"})
            return
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
        self._reply(200, score(str(body.get("text", ""))))

    def _reply(self, status: int, payload: dict[str, object]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        print(f"{self.address_string()} {format % args}", flush=True)


def main() -> None:
    host, port = os.environ.get("TITAN_SERVICE_HOST", "127.0.0.1"), int(os.environ["PORT"])
    print(f"loading the model (start {os.environ.get('TITAN_SERVICE_RESTARTS', '0')})...",
          flush=True)
    time.sleep(0.5)  # the weights, as it were
    server = ThreadingHTTPServer((host, port), Handler)

    def stop(_signum: int, _frame: object) -> None:
        print("SIGTERM: finishing the requests in flight, then leaving", flush=True)
        threading.Thread(target=server.shutdown).start()  # not on this (the serving) thread

    signal.signal(signal.SIGTERM, stop)
    print(f"serving on {host}:{port}", flush=True)
    server.serve_forever()
    server.server_close()
    print("stopped", flush=True)


if __name__ == "__main__":
    main()
