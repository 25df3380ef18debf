"""A closed terminal (SIGHUP) stops `titan up` and `titan worker` as SIGTERM does: drained,
and forgotten by clients. It killed them with 129, leaving master.json and the user config's
default on a dead master (`titan status` elsewhere failed), and the worker's jobs to the lease
timeout."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import signal
import subprocess
import sys
import termios
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.conftest import free_port


def on_a_terminal(args: list[str], env: dict[str, str], cwd: Path) -> tuple[subprocess.Popen[bytes], int]:
    """``titan ARGS`` started from a terminal it has as its controlling one (as a shell's
    foreground command); returns the process and the terminal's side to close."""
    terminal, its_end = pty.openpty()

    def take_the_terminal() -> None:
        os.setsid()
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    proc = subprocess.Popen([sys.executable, "-m", "titan", *args], stdin=its_end,
                            stdout=its_end, stderr=its_end, env=env, cwd=cwd,
                            preexec_fn=take_the_terminal)
    os.close(its_end)
    return proc, terminal


def read_until(terminal: int, said: bytes, timeout: float = 60) -> bytes:
    seen, deadline = b"", time.monotonic() + timeout
    while said not in seen:
        assert time.monotonic() < deadline, seen.decode(errors="replace")
        seen += os.read(terminal, 4096)
    return seen


def test_closing_the_terminal_stops_titan_up_cleanly(tmp_path: Path) -> None:
    cfg, data = Path(os.environ["TITAN_CONFIG_DIR"]), tmp_path / "data"
    # Another master was the default before this one: it is the default again afterwards.
    cfg.mkdir(parents=True, exist_ok=True)
    (cfg / "config.json").write_text(json.dumps({
        "default": "http://127.0.0.1:1", "masters": {"http://127.0.0.1:1": {"token": "tt_x"}}}))
    (cfg / "config.json").chmod(0o600)
    port = free_port()
    proc, terminal = on_a_terminal(
        ["up", "--port", str(port), "--dashboard-port", "0", "--data-dir", str(data),
         "--slots", "1"], dict(os.environ), tmp_path)
    try:
        read_until(terminal, b"Press Ctrl-C")
        assert json.loads((cfg / "config.json").read_text())["default"] == f"http://127.0.0.1:{port}"
        assert (data / "master.json").is_file()
    finally:
        os.close(terminal)  # the terminal window closed: SIGHUP, and every write to it fails
    assert proc.wait(timeout=60) == 0
    assert not (data / "master.json").exists()
    config = json.loads((cfg / "config.json").read_text())
    assert config["default"] == "http://127.0.0.1:1" and list(config["masters"]) == [
        "http://127.0.0.1:1"], config
    gone = subprocess.run(["pgrep", "-f", f"titan worker --master http://127.0.0.1:{port}"],
                          capture_output=True, text=True)
    assert not gone.stdout.split(), "the local worker was left running"


def test_closing_the_terminal_drains_titan_worker(make_cluster: Callable[..., Any],
                                                   tmp_path: Path) -> None:
    cluster = make_cluster().start_master()
    marker = tmp_path / "finished"
    token = (cluster.data / "worker.token").read_text().strip()
    proc, terminal = on_a_terminal(
        ["worker", "--master", cluster.url, "--slots", "1", "--workdir", str(tmp_path / "w")],
        {**cluster.env, "TITAN_TOKEN": token}, tmp_path)
    try:
        cluster.wait_workers(1)
        client = cluster.client()
        job = cluster.script("slow.py", f"import time, pathlib\ntime.sleep(2)\n"
                                        f"pathlib.Path({str(marker)!r}).write_text('ok')\n")
        from titan_sdk import TitanJob

        client.submit_job(TitanJob(job_id="slow", filename=job))
        deadline = time.monotonic() + 30
        while client.get_job("slow")["state"] != "RUNNING":
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        os.close(terminal)
    assert proc.wait(timeout=60) == 0  # drained: the running job finished and was reported
    assert marker.read_text() == "ok"
    assert client.get_job("slow")["state"] == "COMPLETED"
    assert cluster.live_workers() == []


def test_titan_up_started_with_nohup_goes_on_ignoring_a_hangup(tmp_path: Path) -> None:
    port = free_port()

    def ignore_hangups() -> None:
        signal.signal(signal.SIGHUP, signal.SIG_IGN)

    with open(tmp_path / "nohup.out", "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "titan", "up", "--port", str(port), "--dashboard-port", "0",
             "--data-dir", str(tmp_path / "data"), "--slots", "1"], stdout=out,
            stderr=subprocess.STDOUT, cwd=tmp_path, preexec_fn=ignore_hangups)
    try:
        deadline = time.monotonic() + 60
        while b"Press Ctrl-C" not in (tmp_path / "nohup.out").read_bytes():
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.05)
        proc.send_signal(signal.SIGHUP)
        time.sleep(1)
        assert proc.poll() is None, (tmp_path / "nohup.out").read_text()
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0
