"""`make demo`'s cluster handling: start in the background, reuse, stop (tools/demo.py).

The research run itself is covered by test_research_agent.py; this checks what the demo
adds around it, in a data dir of the test's own (TITAN_DEMO_DIR)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
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
        assert "Stop it with: make demo-stop" in first.stdout
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


def test_demo_reuses_a_titan_up_started_by_hand_on_its_data_dir(tmp_path: Path) -> None:
    # The README runs `titan up` on ./.titan/ too: `make demo` deleted that master's
    # master.json, then failed against its lock, leaving the CLI unable to find it.
    from tests.integration.harness import free_port

    data = tmp_path / "demo"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TITAN_")}
    env["TITAN_CONFIG_DIR"] = str(tmp_path / "config")
    up = subprocess.Popen([sys.executable, "-m", "titan", "up", "--port", str(free_port()),
                           "--dashboard-port", str(free_port()), "--data-dir", str(data)],
                          env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                          start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while not (data / "master.json").exists():
            assert time.monotonic() < deadline and up.poll() is None
            time.sleep(0.1)
        info = json.loads((data / "master.json").read_text())
        started = demo(data, "start")
        assert started.returncode == 0, started.stdout + started.stderr
        assert f"reusing the Titan master already running on {data} at {info['url']}" \
            in started.stdout
        assert json.loads((data / "master.json").read_text()) == info
        # Not the demo's to stop: `make demo-stop` would answer "nothing to stop", so the
        # demo must not send the user there, and demo-stop must say where it runs instead.
        assert "make demo-stop" not in started.stdout
        assert "the `titan up` you started" in started.stdout
        stop = demo(data, "stop")
        assert stop.returncode == 0
        assert f"the Titan master at {info['url']} on {data} was not started by" \
            in stop.stdout, stop.stdout
        assert up.poll() is None
    finally:
        up.terminate()
        up.wait(timeout=60)


def test_demo_makes_its_data_dir_private_from_the_start(tmp_path: Path) -> None:
    """`make demo` made its data dir and its log (``demo-up.log``) with the umask's modes
    before `titan up` took them private: another local user could open the log meanwhile
    (and read it for as long as the cluster ran), and every first demo printed the master's
    warning that they had been open to others and that tokens should be rotated."""
    data = tmp_path / "demo"
    old = os.umask(0)
    try:
        first = demo(data, "start")
    finally:
        os.umask(old)
    try:
        assert first.returncode == 0, first.stdout + first.stderr
        assert os.stat(data).st_mode & 0o077 == 0
        for name in ("demo-up.log", "demo.pid"):
            assert os.stat(data / name).st_mode & 0o077 == 0, name
        log = (data / "demo-up.log").read_text()
        assert "open to other local users" not in log, log
    finally:
        demo(data, "stop")


def test_demo_stop_never_signals_a_program_that_reused_its_pid(tmp_path: Path) -> None:
    # demo.pid outlives a cluster that died (a reboot, a kill -9): its pid, since reused by
    # another program, was sent SIGINT and then SIGKILL with its whole group.
    data = tmp_path / "demo"
    data.mkdir()
    sleeper = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        (data / "demo.pid").write_text(str(sleeper.pid))
        stop = demo(data, "stop")
        assert stop.returncode == 0, stop.stdout + stop.stderr
        assert f"the demo cluster (pid {sleeper.pid}) is not running" in stop.stdout
        time.sleep(0.3)
        assert sleeper.poll() is None
        assert not (data / "demo.pid").exists()
    finally:
        sleeper.kill()
        sleeper.wait()
