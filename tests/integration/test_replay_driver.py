"""What a replay's DRIVER job re-runs, end to end through `titan replay`: a driver's own calls
(recorded from its first stage on, so a replay of unchanged code matches them all) and, with
``--code current``, the files of the working tree the run's code came from."""

from __future__ import annotations

import http.server
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.harness import Cluster, shared_cluster

cluster = shared_cluster(slots=3)

STAGE = """
import os, titan
from titan import TitanClient

@titan.tool
def lookup(q: str) -> dict:
    return {"q": q, "n": len(q)}

r = lookup("stage-" + os.environ["TITAN_JOB_ID"])
TitanClient().store_put(f"rp:{os.environ['TITAN_AGENT_RUN_ID']}:{os.environ['TITAN_JOB_ID']}",
                        str(r["n"]))
"""

# A driver calling tools before its first stage (its run is not known yet) and after it.
DRIVER = """
import sys, urllib.request
import titan
from titan import TitanClient, TitanJob, wait_for_signal

@titan.tool
def fetch(url: str) -> str:
    return urllib.request.urlopen(url, timeout=5).read().decode()

@titan.tool
def search(query: str) -> list:
    return [f"hit {i} for {query}" for i in range(2)]

run_id, port = sys.argv[1], sys.argv[2]
plan = fetch(f"http://127.0.0.1:{port}/plan")
client = TitanClient()
client.submit_dag(f"{run_id}_S1", [TitanJob("w0", "stage.py")], agent_run_id=run_id)
value = wait_for_signal(client, f"rp:{run_id}:w0", timeout=60)
hits = search(f"{plan}-{value}")
with titan.trace.actor("critic"):
    search("again")
at = titan.trace.now()
print(run_id, plan, hits, flush=True)
"""


@pytest.fixture(scope="module")
def plan_server() -> Iterator[int]:
    class Plan(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"plan-7")

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Plan)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def env_of(cluster: Cluster) -> dict[str, str]:
    return dict(cluster.env, TITAN_HOST="127.0.0.1", TITAN_PORT=str(cluster.port),
                TITAN_TOKEN=cluster.admin_token)


def drive(cluster: Cluster, script: Path, *args: str) -> str:
    """Run a driver as a user does; its run id once the run has ended."""
    done = subprocess.run([sys.executable, str(script), *args], env=env_of(cluster),
                          cwd=script.parent, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    run_id = args[0]
    deadline = time.monotonic() + 20
    while cluster.api("GET", f"/runs/{run_id}")["status"] == "running":
        assert time.monotonic() < deadline, f"run {run_id} never ended"
        time.sleep(0.1)
    return run_id


def titan(cluster: Cluster, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "titan", *args], env=env_of(cluster), cwd=cwd,
                          capture_output=True, text=True, timeout=240)


def test_a_drivers_own_calls_are_recorded_and_an_unchanged_replay_matches_them_all(
        cluster: Cluster, tmp_path: Path, plan_server: int) -> None:
    # The driver's tool call after its first stage was not recorded, and its replay (the
    # DRIVER job, inside the run) found it extra: strict replays of unchanged code failed and
    # `titan determinism` blamed the agent's control flow (a QA pass).
    write(tmp_path, "stage.py", STAGE)
    driver = write(tmp_path, "driver.py", DRIVER)
    run_id = drive(cluster, driver, f"DRV_{tmp_path.name[-6:]}".replace("-", "_"),
                   str(plan_server))
    actions = cluster.api("GET", f"/runs/{run_id}/actions")["actions"]
    # Recorded from the first stage on, as the actor its replay's DRIVER job is; the fetch
    # made before, when the process did not know its run, is not.
    assert sorted((a["actor"], a["name"]) for a in actions) == [
        ("DRIVER/driver", "now"), ("DRIVER/driver", "search"),
        ("DRIVER/driver/critic", "search"), ("S1/w0", "lookup")]
    done = titan(cluster, "replay", run_id)
    assert done.returncode == 0, done.stdout + done.stderr
    assert ": completed" in done.stdout and "100.0% (4/4 recorded calls)" in done.stdout, \
        done.stdout
    assert "Divergences    0" in done.stdout
    found = cluster.api("GET", f"/runs/{run_id}/determinism")
    assert not [f for f in found["findings"] if f["kind"] == "divergence"], found["findings"]
