"""Start a throwaway `titan up` for a benchmark: free ports, a temp data dir, killed at exit."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from titan.client import TitanClient


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class BenchCluster:
    def __init__(self, slots: int, env: dict[str, str] | None = None) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="titan-bench-"))
        self.port = _free_port()
        env = dict(os.environ, TITAN_CONFIG_DIR=str(self.root / "user"), **(env or {}))
        self.log = open(self.root / "up.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "titan", "up", "--port", str(self.port),
             "--dashboard-port", str(_free_port()), "--data-dir", str(self.root / "data"),
             "--slots", str(slots)],
            stdout=self.log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/api/v1/health", timeout=1)
                break
            except OSError:
                time.sleep(0.05)
        self.client = TitanClient(host="127.0.0.1", port=self.port,
                                  token=(self.root / "data" / "admin.token").read_text().strip())
        while time.time() < deadline:
            workers = self.client.api("GET", "/workers")["workers"]
            if any(w["state"] == "live" for w in workers):
                return
            time.sleep(0.05)
        raise RuntimeError("the local worker did not register")

    def script(self, name: str, source: str) -> str:
        path = self.root / name
        path.write_text(source)
        return str(path)

    def close(self) -> None:
        self.client.close()
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=20)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(self.proc.pid, signal.SIGKILL)
        # the local worker runs in its own session; it exits once the master is gone
        self.log.close()
