"""`make demo`'s cluster handling: start in the background, reuse, stop (tools/demo.py).

The research run itself is covered by test_research_agent.py; this checks what the demo
adds around it, in a data dir of the test's own (TITAN_DEMO_DIR)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def demo(data: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, TITAN_DEMO_DIR=str(data))
    return subprocess.run([sys.executable, str(ROOT / "tools" / "demo.py"), *args], env=env,
                          capture_output=True, text=True, timeout=120)


def test_demo_starts_reuses_and_stops_its_cluster(tmp_path: Path) -> None:
    data = tmp_path / "demo"
    first = demo(data, "start")
    try:
        assert first.returncode == 0, first.stdout + first.stderr
        assert "cluster up: master http://127.0.0.1:" in first.stdout
        info = json.loads((data / "master.json").read_text())
        assert info["dashboard_port"] and info["port"] != info["dashboard_port"]
        pid = int((data / "demo.pid").read_text())
        os.kill(pid, 0)

        again = demo(data, "start")
        assert again.returncode == 0
        assert f"reusing the cluster already running at {info['url']} (pid {pid})" in again.stdout
    finally:
        stopped = demo(data, "stop")
    assert stopped.returncode == 0 and "stopped" in stopped.stdout
    try:
        os.kill(pid, 0)
        raise AssertionError(f"titan up (pid {pid}) still running after demo stop")
    except ProcessLookupError:
        pass
    assert "nothing to stop" in demo(data, "stop").stdout
