"""What a replay's DRIVER job re-runs, end to end through `titan replay`: a driver's own calls
(recorded from its first stage on, so a replay of unchanged code matches them all) and, with
``--code current``, the files of the working tree the run's code came from."""

from __future__ import annotations

import http.server
import os
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
    assert ": completed" in done.stdout and "100.0% (4/4 recorded calls)" in done.stdout, \
        done.stdout + done.stderr
    # The fetch before its first stage went to the plan server again: nothing recorded it,
    # so nothing could answer it. Said as a live call, never as a free one (it read "Live
    # calls 0" while the replay reached the network), but no divergence: the original made
    # it unrecorded too, so an unchanged driver's replay passes.
    assert "Divergences    0" in done.stdout and "Live calls     1 " in done.stdout, done.stdout
    assert "Ran live, unrecorded" in done.stdout and "DRIVER/driver/outside-run-" in done.stdout
    assert done.returncode == 0, done.stdout + done.stderr
    found = cluster.api("GET", f"/runs/{run_id}/determinism")
    assert not [f for f in found["findings"] if f["kind"] == "divergence"], found["findings"]
    assert [f["action"] for f in found["findings"] if f["kind"] == "network_io"] == ["fetch"]


SIGNAL = """
import os
from titan import TitanClient

TitanClient().store_put(f"rp:{os.environ['TITAN_AGENT_RUN_ID']}:{os.environ['TITAN_JOB_ID']}", "b")
"""

ONE_STAGE = """
import sys
from titan import TitanClient, TitanJob, wait_for_signal

client = TitanClient()
run_id = sys.argv[1]
client.submit_dag(f"{run_id}_S1", [TitanJob("w0", "stage.py")], agent_run_id=run_id)
print("RUN", run_id, wait_for_signal(client, f"rp:{run_id}:w0", timeout=60))
"""

# The fix: a new stage script in a subfolder and a new helper module beside the driver.
TWO_STAGES = """
import sys
from titan import TitanClient, TitanJob, wait_for_signals
import helper

client = TitanClient()
run_id = sys.argv[1]
client.submit_dag(f"{run_id}_S1", [TitanJob("w0", "stage.py"),
                                   TitanJob("w1", "stages/stage_b.py")], agent_run_id=run_id)
got = wait_for_signals(client, [f"rp:{run_id}:w0", f"rp:{run_id}:w1"], timeout=60)
print("RUN", run_id, sorted(got.values()), "helper", helper.X)
"""


def test_code_current_sends_the_files_added_beside_the_recorded_ones(cluster: Cluster,
                                                                     tmp_path: Path) -> None:
    # Only the recorded paths were sent: a stage script or a module added by the fix was
    # missing in the replay (ScriptNotFound, ModuleNotFoundError: 'helper'), a QA pass.
    agent = tmp_path / "agent"
    write(agent, "stage.py", STAGE)
    driver = write(agent, "driver.py", ONE_STAGE)
    run_id = drive(cluster, driver, f"CUR_{tmp_path.name[-6:]}".replace("-", "_"))
    write(agent / "stages", "stage_b.py", SIGNAL)
    write(agent, "helper.py", "X = 42\n")
    write(agent, "driver.py", TWO_STAGES)
    # Not the agent's code: a virtualenv and a cache beside it are left out.
    write(agent / "venv", "pyvenv.cfg", "home = /usr/bin\n")
    write(agent / "venv" / "lib", "site.py", "raise SystemExit('a venv was sent')\n")
    write(agent / "__pycache__", "junk.py", "")
    done = titan(cluster, "replay", run_id, "--code", "current", "--mode", "lenient",
                 cwd=agent)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 recorded file(s) as they are now and 2 .py/.sh file(s) beside them" in \
        done.stderr, done.stderr
    replay_id = done.stdout.split()[1]
    sent = {os.path.relpath(p, agent) for p in cluster.api("GET", f"/runs/{replay_id}")[
        "code"]["files"]}
    assert sent == {"driver.py", "stage.py", "helper.py", "stages/stage_b.py"}, sent
    assert ": completed" in done.stdout and "Divergences    0" in done.stdout, done.stdout
    log = cluster.client().fetch_logs(f"{replay_id}_DRIVER/driver")
    assert "['8', 'b'] helper 42" in log, log


OUTSIDE = """
import os, sys
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from titan import TitanClient, TitanJob, wait_for_signal
import outside

client = TitanClient()
run_id = sys.argv[1]
client.submit_dag(f"{run_id}_S1", [TitanJob("w0", "stage.py")], agent_run_id=run_id)
print("RUN", run_id, wait_for_signal(client, f"rp:{run_id}:w0", timeout=60), outside.X)
"""


def test_a_module_the_replay_did_not_lay_out_says_so_and_how_to_include_it(
        cluster: Cluster, tmp_path: Path) -> None:
    # A module imported from outside the driver's folder is not recorded: the replay failed
    # with a bare ModuleNotFoundError.
    write(tmp_path / "lib", "outside.py", "X = 1\n")
    write(tmp_path / "agent", "stage.py", STAGE)
    driver = write(tmp_path / "agent", "driver.py", OUTSIDE)
    run_id = drive(cluster, driver, f"OUT_{tmp_path.name[-6:]}".replace("-", "_"))
    recorded = titan(cluster, "replay", run_id)
    assert recorded.returncode == 1
    assert "No module named 'outside' — module 'outside' is not part of the recorded code" \
        in recorded.stdout, recorded.stdout
    assert f"titan replay {run_id} --code current" in recorded.stdout
    current = titan(cluster, "replay", run_id, "--code", "current")
    assert current.returncode == 1
    assert "module 'outside' is not part of the replayed code" in current.stdout, current.stdout
    assert f"beside them under {tmp_path / 'agent'}" in current.stdout


REPORTING = """
import sys
from pathlib import Path
from titan import TitanClient, TitanJob, wait_for_signal

client = TitanClient()
run_id, out = sys.argv[1], Path(sys.argv[2])
client.submit_dag(f"{run_id}_S1", [TitanJob("w0", "stage.py")], agent_run_id=run_id)
value = wait_for_signal(client, f"rp:{run_id}:w0", timeout=60)
(out / f"report_{run_id}.txt").write_text(f"run {run_id}: {value}\\n")
client.store_put(f"rp:{run_id}:report_path", str(out / f"report_{run_id}.txt"))
"""


def test_a_driver_given_its_run_id_is_given_the_replays_and_leaves_the_originals_files(
        cluster: Cluster, tmp_path: Path) -> None:
    # A replay re-ran the research agent with its recorded `--run-id R`: the report it named
    # after R overwrote the original's /tmp/research_R_report.md, its report_path key held
    # that path and its header said R (a QA pass).
    write(tmp_path / "agent", "stage.py", STAGE)
    driver = write(tmp_path / "agent", "driver.py", REPORTING)
    out = tmp_path / "out"
    out.mkdir()
    run_id = drive(cluster, driver, f"REP_{tmp_path.name[-6:]}".replace("-", "_"), str(out))
    original = (out / f"report_{run_id}.txt").read_text()
    done = titan(cluster, "replay", run_id)
    assert done.returncode == 0 and ": completed" in done.stdout, done.stdout + done.stderr
    replay_id = done.stdout.split()[1]
    assert replay_id.startswith(f"{run_id}-replay-"), done.stdout
    assert (out / f"report_{run_id}.txt").read_text() == original
    assert (out / f"report_{replay_id}.txt").read_text().startswith(f"run {replay_id}: ")
    client = cluster.client()
    assert client.store_get(f"rp:{run_id}:report_path") == str(out / f"report_{run_id}.txt")
    assert client.store_get(f"rp:{replay_id}:report_path") == str(
        out / f"report_{replay_id}.txt")
    assert f"python driver.py {replay_id} {out}" in client.fetch_logs(
        f"{replay_id}_DRIVER/driver")
