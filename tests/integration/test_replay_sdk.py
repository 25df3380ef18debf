"""Replay with small agents on a real cluster: parallel actors finishing in another order,
non-deterministic code against its titan.trace twin, a leak, the verify mode, a lenient replay
with live calls allowed, and runs that cannot be replayed."""

from __future__ import annotations

import http.server
import json
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.harness import Cluster
from tests.integration.test_replay_research import wait_replay

DRIVER = """
import sys, uuid
from pathlib import Path
from titan_sdk import TitanClient, TitanJob
HERE = Path(__file__).resolve().parent
run_id = f"PAR_{uuid.uuid4().hex[:6]}"
client = TitanClient()
print(run_id, flush=True)
dag = client.submit_dag(f"{run_id}_WORK", [
    TitanJob(job_id=f"w{i}", filename=str(HERE / "worker.py"), args=[str(i)]) for i in range(2)
], agent_run_id=run_id)
sys.exit(0 if client.wait_dag(dag["ref"], timeout=120)["status"] == "COMPLETED" else 1)
"""

WORKER = """
import sys, time
import titan
from titan import trace
from titan_sdk import TitanClient

i = int(sys.argv[1])
# Not intercepted on purpose: the test sets it differently for the replay.
time.sleep(float(TitanClient().store_get(f"delay:{i}") or 0))

@titan.tool
def square(x: int) -> int:
    return x * x

square(i)
trace.now()
"""

NONDET = """
import datetime
import uuid

import titan

with titan.trace.run("report-agent") as run:
    print(run.id, flush=True)
    with titan.trace.action("generate_report", inputs={"q": "status"}, pure=True) as a:
        a.outputs = {"at": datetime.datetime.now().isoformat(), "id": str(uuid.uuid4())}
    with titan.trace.action("publish", inputs={"n": 1}) as b:
        b.outputs = {"ok": True}
"""

DET = """
import titan

with titan.trace.run("report-agent") as run:
    print(run.id, flush=True)
    with titan.trace.action("generate_report", inputs={"q": "status"}, pure=True) as a:
        a.outputs = {"at": titan.trace.now(), "id": titan.trace.uuid()}
"""

LEAKY = """
import sys
import urllib.request

import titan

with titan.trace.run("leaky-agent") as run:
    print(run.id, flush=True)
    with titan.trace.action("plan", inputs={}) as a:
        a.outputs = {"steps": 2}
    try:
        body = urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/", timeout=5).read()
    except OSError as exc:
        body = repr(exc).encode()
    with titan.trace.action("summarise", inputs={"n": 1}) as a:
        a.outputs = {"len": len(body)}
"""

NESTED = """
import json

import titan


class QuotaError(Exception):
    pass


@titan.tool
def inner(x: int) -> int:
    return x + 1


@titan.tool
def outer(x: int) -> int:
    return inner(x) + inner(x * 2)


@titan.tool
def limited(x: int) -> int:
    raise QuotaError(f"over quota for {x}")


@titan.tool
def parse(text: str) -> object:
    return json.loads(text)


with titan.trace.run("nested-agent") as run:
    print(run.id, flush=True)
    total = outer(1) + inner(10)
    try:
        limited(3)
    except QuotaError:
        total += 100
    try:
        parse("{bad")
    except json.JSONDecodeError:
        total += 1000
    with titan.trace.action("report", inputs={"total": total}) as a:
        a.outputs = {"total": total}
"""


FETCHER = """
import sys
import urllib.request

import titan


@titan.tool
def fetch(url: str) -> str:
    return urllib.request.urlopen(url, timeout=5).read().decode()


with titan.trace.run("fetch-agent") as run:
    print(run.id, flush=True)
    with titan.trace.action("plan", inputs={}) as a:
        a.outputs = {"steps": 1}
    page = fetch(f"http://127.0.0.1:{sys.argv[1]}/")
    with titan.trace.action("summarise", inputs={"page": page}) as a:
        a.outputs = {"len": len(page)}
"""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster(tmp_path_factory.mktemp("replay-sdk"))
    try:
        c.up(slots=3)
        yield c
    finally:
        c.stop()


def run_script(cluster: Cluster, path: Path, *args: str) -> str:
    env = dict(cluster.env, TITAN_HOST="127.0.0.1", TITAN_PORT=str(cluster.port),
               TITAN_TOKEN=cluster.admin_token)
    done = subprocess.run([sys.executable, str(path), *args], env=env, cwd=path.parent,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    run_id = done.stdout.split()[0]
    deadline = time.monotonic() + 20
    while cluster.api("GET", f"/runs/{run_id}")["status"] == "running":
        assert time.monotonic() < deadline, f"run {run_id} never ended"
        time.sleep(0.1)
    return run_id


def write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def replay(cluster: Cluster, run_id: str, **body: Any) -> dict[str, Any]:
    started = cluster.api("POST", f"/runs/{run_id}/replay", body)
    return wait_replay(cluster, started["run_id"], timeout=120)


def order_of(cluster: Cluster, run_id: str) -> list[str]:
    actions = cluster.api("GET", f"/runs/{run_id}/actions")["actions"]
    return [a["actor"] for a in actions if a["name"] == "square"]


def test_parallel_actors_finishing_in_another_order_are_not_divergences(
        cluster: Cluster, tmp_path: Path) -> None:
    write(tmp_path, "worker.py", WORKER)
    driver = write(tmp_path, "driver.py", DRIVER)
    client = cluster.client()
    client.store_put("delay:0", "1.5")
    client.store_put("delay:1", "0")
    run_id = run_script(cluster, driver)
    assert order_of(cluster, run_id) == ["WORK/w1", "WORK/w0"]
    client.store_put("delay:0", "0")
    client.store_put("delay:1", "1.5")
    report = replay(cluster, run_id)
    assert order_of(cluster, report["run_id"]) == ["WORK/w0", "WORK/w1"]
    assert report["status"] == "completed"
    assert report["divergence_count"] == 0 and report["match_rate"] == 1.0
    assert report["recorded"] == 4


def test_wall_clock_and_uuid_are_findings_while_the_titan_trace_twin_replays_identically(
        cluster: Cluster, tmp_path: Path) -> None:
    nondet = write(tmp_path / "a", "report.py", NONDET)
    run_id = run_script(cluster, nondet)
    found = cluster.api("GET", f"/runs/{run_id}/determinism")
    lines = {f["kind"]: f["line"] for f in found["findings"] if f["source"] == "static"}
    line = 1 + nondet.read_text().splitlines().index(
        '        a.outputs = {"at": datetime.datetime.now().isoformat(), "id": str(uuid.uuid4())}')
    assert lines.get("wall_clock") == line and lines.get("uuid") == line, found["findings"]
    assert found["score"] < 90
    # Replayed in verify mode, the pure action runs again: its output is not the recorded one.
    report = replay(cluster, run_id, verify=True, mode="lenient")
    assert [d["kind"] for d in report["divergences"]] == ["output_mismatch"]
    assert report["divergences"][0]["diff"]
    after = cluster.api("GET", f"/runs/{run_id}/determinism")
    assert any(f["kind"] == "output_mismatch" for f in after["findings"])
    assert after["score"] < found["score"]
    # Without --verify the block is served, its code runs again and sets other outputs: a
    # plain strict replay stops there with the same divergence (seed 004's "Output
    # mismatch"), where it used to report a 100 % match.
    strict = replay(cluster, run_id)
    assert strict["status"] == "failed" and "same inputs, different outputs" in strict["error"]
    assert [d["kind"] for d in strict["divergences"]] == ["output_mismatch"], strict
    assert strict["match_rate"] < 1.0
    # It stopped there: the call after it was not reached, not "missing" (replay.md).
    assert strict["stopped"] is True, strict

    det = write(tmp_path / "b", "report.py", DET)
    run_id = run_script(cluster, det)
    clean = cluster.api("GET", f"/runs/{run_id}/determinism")
    assert not [f for f in clean["findings"] if f["source"] == "static"], clean["findings"]
    report = replay(cluster, run_id, verify=True)
    assert report["status"] == "completed" and report["divergence_count"] == 0
    assert report["match_rate"] == 1.0
    original = cluster.api("GET", f"/runs/{run_id}/actions")["actions"]
    replayed = cluster.api("GET", f"/runs/{report['run_id']}/actions")["actions"]
    key = "generate_report"
    assert [a["outputs"] for a in original if a["name"] == key] == \
        [a["outputs"] for a in replayed if a["name"] == key]
    assert {a["replay_status"] for a in replayed} == {"served", "verified"}


QUIET = """
import titan


@titan.tool
def notify(who):
    print("notified", who)  # returns nothing


with titan.trace.run("quiet-agent") as run:
    print(run.id, flush=True)
    with titan.trace.action("prepare", inputs={"n": 1}):
        pass  # sets no outputs
    notify("ops")
"""


def test_a_block_and_a_tool_that_return_nothing_replay_as_a_match(cluster: Cluster,
                                                                  tmp_path: Path) -> None:
    # Recorded as null's hash, served back with no outputs: not an output mismatch.
    run_id = run_script(cluster, write(tmp_path, "quiet.py", QUIET))
    report = replay(cluster, run_id)
    assert report["status"] == "completed", (report.get("error"), report["divergences"])
    assert report["divergence_count"] == 0 and report["match_rate"] == 1.0


def test_a_run_no_script_drove_says_so_and_is_left_out_of_a_regression_gate(
        cluster: Cluster) -> None:
    # A run recorded over the API (as an evaluation's or an OTLP sender's) has no code to
    # re-execute: `--code current` says that (it answered with a hint to run itself), and the
    # agent gate leaves such runs out instead of failing on them.
    cluster.api("POST", "/runs", {"id": "api-only-1", "agent_id": "api-only"})
    cluster.api("PATCH", "/runs/api-only-1", {"status": "completed"})
    env = dict(cluster.env, TITAN_HOST="127.0.0.1", TITAN_PORT=str(cluster.port),
               TITAN_TOKEN=cluster.admin_token)

    def titan(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "titan", *argv], env=env,
                              capture_output=True, text=True, timeout=120)

    one = titan("replay", "api-only-1", "--code", "current")
    assert one.returncode == 1 and "has no recorded code to re-execute" in one.stderr, one
    assert "uploads them from your working tree" not in one.stderr
    gate = titan("replay", "--agent", "api-only", "--last", "5", "--code", "current")
    assert gate.returncode == 1, gate
    assert "none of agent 'api-only'" in gate.stderr and "no recorded code" in gate.stderr


def test_replay_no_wait_json_prints_the_masters_answer_as_json(
        cluster: Cluster, tmp_path: Path) -> None:
    run_id = run_script(cluster, write(tmp_path, "report.py", DET))
    env = dict(cluster.env, TITAN_HOST="127.0.0.1", TITAN_PORT=str(cluster.port),
               TITAN_TOKEN=cluster.admin_token)
    done = subprocess.run([sys.executable, "-m", "titan", "replay", run_id, "--no-wait", "--json"],
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    started = json.loads(done.stdout)  # the whole of stdout is one JSON document
    assert started["replay_of"] == run_id and started["status"] == "running"
    assert wait_replay(cluster, started["run_id"], timeout=120)["status"] == "completed"


class _Hello(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - the handler's protocol
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"hello from the world")

    def log_message(self, *args: Any) -> None:
        pass


def test_an_unintercepted_http_call_in_a_replay_is_a_leak(cluster: Cluster,
                                                          tmp_path: Path) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hello)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        port = server.server_address[1]
        run_id = run_script(cluster, write(tmp_path, "leaky.py", LEAKY), str(port))
        report = replay(cluster, run_id, mode="lenient")
        leaks = [d for d in report["divergences"] if d["kind"] == "leak"]
        assert len(leaks) == 1 and f'"port":{port}' in leaks[0]["replay"]["inputs"], report
        assert leaks[0]["replay"]["replay_status"] == "refused"
        # Refused: the script saw a connection error, so its summary differs from the
        # recording's — served anyway in lenient mode.
        assert report["status"] == "completed"
        live = replay(cluster, run_id, mode="lenient", allow_live=True)
        assert [d["replay"]["replay_status"] for d in live["divergences"]] == ["live"]
    finally:
        server.shutdown()


def test_runs_without_recorded_code_cannot_be_replayed(cluster: Cluster) -> None:
    from titan.errors import Conflict, Forbidden, ValidationFailed

    cluster.api("POST", "/runs", {"id": "from-http", "agent_id": "other-language"})
    cluster.api("PATCH", "/runs/from-http", {"status": "completed"})
    client = cluster.client()
    with pytest.raises(Conflict, match="Replay not available: run from-http has no recorded "
                                       "code"):
        client.api("POST", "/runs/from-http/replay", json={})
    with pytest.raises(ValidationFailed, match="mode must be strict or lenient"):
        client.api("POST", "/runs/from-http/replay", json={"mode": "fast"})
    viewer = cluster.api("POST", "/tokens", {"role": "viewer", "name": "v"})["token"]
    with pytest.raises(Forbidden, match="may not start a replay"):
        cluster.client(token=viewer).api("POST", "/runs/from-http/replay", json={})


def test_tools_calling_tools_and_the_scripts_own_exceptions_replay_exactly(
        cluster: Cluster, tmp_path: Path) -> None:
    # A served outer tool does not run, so the inner calls recorded inside it are passed
    # over (not matched to later inner calls), and an exception class of the script's own or
    # a library's is raised again as itself, so the agent's except clauses catch it.
    run_id = run_script(cluster, write(tmp_path, "nested.py", NESTED))
    report = replay(cluster, run_id)
    assert report["status"] == "completed", (report.get("error"), report["divergences"])
    assert report["divergence_count"] == 0 and report["match_rate"] == 1.0, \
        report["divergences"]
    replayed = cluster.api("GET", f"/runs/{report['run_id']}/actions")["actions"]
    assert [a["outputs"] for a in replayed if a["name"] == "report"] == [{"total": 1116}]
    # A fork tests a change: what it does differently is not the run's non-determinism.
    assert cluster.api("GET", f"/runs/{run_id}/determinism")["analyzed"]["replays"] == 1
    replay(cluster, run_id, fork_at=3, mode="lenient", allow_live=True)
    assert cluster.api("GET", f"/runs/{run_id}/determinism")["analyzed"]["replays"] == 1


def test_a_forks_live_tool_reaches_the_world_without_being_a_leak(cluster: Cluster,
                                                                  tmp_path: Path) -> None:
    # Past a fork point calls run live: a tool's own connection is that call, recorded as it,
    # not a leak the guard refuses (the fork failed on its first live call).
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hello)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        run_id = run_script(cluster, write(tmp_path, "fetcher.py", FETCHER),
                            str(server.server_address[1]))
        report = replay(cluster, run_id, fork_at=2)
        assert report["status"] == "completed", (report.get("error"), report["divergences"])
        assert not [d for d in report["divergences"] if d["kind"] == "leak"], report
        fetched = [a for a in cluster.api("GET", f"/runs/{report['run_id']}/actions")["actions"]
                   if a["name"] == "fetch"]
        assert [(a["replay_status"], a["outcome"]) for a in fetched] == [("forked", "success")]
    finally:
        server.shutdown()


FAILING_DRIVER = """
import uuid
from pathlib import Path
from titan_sdk import TitanClient, TitanJob
HERE = Path(__file__).resolve().parent
run_id = f"BAD_{uuid.uuid4().hex[:6]}"
client = TitanClient()
print(run_id, flush=True)
dag = client.submit_dag(f"{run_id}_WORK", [TitanJob(job_id="w", filename=str(HERE / "bad.py"))],
                        agent_run_id=run_id)
client.wait_dag(dag["ref"], timeout=120)  # the driver itself exits 0
"""


def test_a_replay_ends_as_its_original_did_when_its_last_stage_failed(
        cluster: Cluster, tmp_path: Path) -> None:
    write(tmp_path, "bad.py", "import titan\nraise SystemExit(3)\n")
    run_id = run_script(cluster, write(tmp_path, "driver.py", FAILING_DRIVER))
    assert cluster.api("GET", f"/runs/{run_id}")["status"] == "failed"
    report = replay(cluster, run_id, mode="lenient")
    assert report["status"] == "failed", report  # it was "completed"


FAILING_BLOCK = """
from pathlib import Path
import titan
from titan_sdk import TitanClient, TitanJob
HERE = Path(__file__).resolve().parent
client = TitanClient()
with titan.trace.run("block-driver") as run:
    print(run.id, flush=True)
    dag = client.submit_dag(f"{run.id}_WORK", [TitanJob(job_id="w", filename=str(HERE / "bad.py"))],
                            agent_run_id=run.id)
    client.wait_dag(dag["ref"], timeout=120)  # left normally: its last stage decides
"""


def test_a_block_whose_last_stage_failed_replays_to_a_failed_run(
        cluster: Cluster, tmp_path: Path) -> None:
    # The block was left normally after its stage failed: the run ended completed, and so did
    # its replay, the failure under it in no one's sight.
    write(tmp_path, "bad.py", "import titan\nraise SystemExit(3)\n")
    run_id = run_script(cluster, write(tmp_path, "block.py", FAILING_BLOCK))
    original = cluster.api("GET", f"/runs/{run_id}")
    assert (original["status"], original["error"]) == (
        "failed", f"its last stage {run_id}_WORK ended FAILED: 1 of 1 job failed"), original
    report = replay(cluster, run_id, mode="lenient")
    assert report["status"] == "failed", report
    assert "_WORK ended FAILED" in (report["error"] or ""), report


CAUGHT_FAILURE = """
import titan

@titan.tool
def charge_card(amount: float) -> dict:
    raise RuntimeError("card declined")

try:
    with titan.trace.run("billing-bot") as run:
        print(run.id, flush=True)
        charge_card(20.0)
except RuntimeError:
    pass  # the script exits 0: its run failed all the same
"""


def test_a_replay_of_a_failed_run_fails_again_with_its_error(cluster: Cluster,
                                                              tmp_path: Path) -> None:
    # Replaying a failure to see what happened: the recorded error is raised again, so the
    # replay ends failed as the original did (it said "completed", as if the failure did not
    # reproduce), and the report puts the two outcomes side by side.
    run_id = run_script(cluster, write(tmp_path, "bill.py", CAUGHT_FAILURE))
    original = cluster.api("GET", f"/runs/{run_id}")
    assert (original["status"], original["error"]) == ("failed", "RuntimeError: card declined")
    report = replay(cluster, run_id)
    assert (report["status"], report["error"]) == ("failed", "RuntimeError: card declined")
    assert report["original"]["status"] == report["replay"]["status"] == "failed"
    assert report["divergence_count"] == 0 and report["match_rate"] == 1.0
    # The served call failed as recorded: an error, not a "replayed" success.
    replayed = cluster.api("GET", f"/runs/{report['run_id']}")
    assert (replayed["error_count"], replayed["success_rate"]) == (1, 0.0), replayed


SLOW = """
import time
import titan

with titan.trace.run("slow-agent") as run:
    print(run.id, flush=True)
    with titan.trace.action("step", inputs={"n": 1}) as a:
        a.outputs = {"ok": True}
    time.sleep(4)
"""


def test_ctrl_c_on_titan_replay_cancels_the_replay(cluster: Cluster, tmp_path: Path) -> None:
    # It went on (the DRIVER holding a slot) and its run stayed "running" for good once its
    # driver was cancelled: a second replay's driver could take the slot its stages needed.
    run_id = run_script(cluster, write(tmp_path, "slow.py", SLOW))
    env = dict(cluster.env, TITAN_HOST="127.0.0.1", TITAN_PORT=str(cluster.port),
               TITAN_TOKEN=cluster.admin_token)
    cli = subprocess.Popen([sys.executable, "-m", "titan", "replay", run_id], env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not (replays := cluster.api("GET", f"/runs?q={run_id}-replay")["runs"]):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    replay_id = replays[0]["id"]
    while cluster.api("GET", f"/runs/{replay_id}/actions")["matched"] == 0:  # it runs
        assert time.monotonic() < deadline
        time.sleep(0.1)
    cli.send_signal(2)  # SIGINT
    _, err = cli.communicate(timeout=60)
    assert cli.returncode == 130 and f"replay {replay_id} cancelled" in err, err
    while (run := cluster.api("GET", f"/runs/{replay_id}"))["status"] == "running":
        assert time.monotonic() < deadline, run
        time.sleep(0.1)
    assert (run["status"], run["error"]) == ("cancelled", "the replay was cancelled"), run


def test_a_replay_whose_driver_is_cancelled_ends(cluster: Cluster, tmp_path: Path) -> None:
    run_id = run_script(cluster, write(tmp_path, "slow.py", SLOW))
    replay_id = cluster.api("POST", f"/runs/{run_id}/replay", {})["run_id"]
    client = cluster.client()
    deadline = time.monotonic() + 60
    while client.get_dag(f"{replay_id}_DRIVER")["status"] != "RUNNING":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    client.cancel(f"DAG-{replay_id}_DRIVER")
    while (run := cluster.api("GET", f"/runs/{replay_id}"))["status"] == "running":
        assert time.monotonic() < deadline, run
        time.sleep(0.1)
    assert run["status"] == "cancelled", run


GATHERED = """
import asyncio, time
import titan
from titan import llm, trace
from titan.llm.types import Generation, Usage

class Slow:
    name = "slow"
    def generate(self, request):
        content = request.messages[-1]["content"]
        time.sleep(1.0 if "alpha" in content else 0.05)  # alpha's answer comes last
        return Generation(text=f"plan for {content}", usage=Usage(10, 5), model=request.model)
    def cost(self, model, usage):
        return (0.001, "registered")

llm.register_provider("slow", Slow())

@titan.tool
async def search(q: str) -> str:
    return f"results about {q}"

async def research(topic):
    plan = await llm.acomplete(topic, model="slow/m")
    return await search(plan.text)

async def main():
    return await asyncio.gather(research("alpha"), research("beta"))

with trace.run("gathered-agent") as run:
    print(run.id, flush=True)
    found = asyncio.run(main())
    with trace.action("report", inputs={"found": found}) as a:
        a.outputs = {"n": len(found)}
"""


def test_llm_calls_gathered_in_one_actor_replay_in_the_order_they_were_made(
        cluster: Cluster, tmp_path: Path) -> None:
    # The recording numbered LLM calls as they finished (beta first), the replay as they
    # started (alpha first): an unchanged agent diverged, and a lenient replay served each
    # branch the other's answer.
    run_id = run_script(cluster, write(tmp_path, "gathered.py", GATHERED))
    calls = [a for a in cluster.api("GET", f"/runs/{run_id}/actions")["actions"]
             if a["name"] == "call_llm"]
    numbered = {a["ordinal"]: a["inputs"]["messages"][-1]["content"] for a in calls}
    assert numbered == {0: "alpha", 1: "beta"}
    assert [a["inputs"]["messages"][-1]["content"] for a in calls] == ["beta", "alpha"]
    strict = replay(cluster, run_id)
    assert strict["divergence_count"] == 0 and strict["match_rate"] == 1.0, strict
    lenient = replay(cluster, run_id, mode="lenient")
    assert lenient["divergence_count"] == 0, cluster.api(
        "GET", f"/runs/{lenient['run_id']}/replay")
    served = {a["inputs"]["messages"][-1]["content"]: a["outputs"]["text"]
              for a in cluster.api("GET", f"/runs/{lenient['run_id']}/actions")["actions"]
              if a["name"] == "call_llm"}
    assert served == {"alpha": "plan for alpha", "beta": "plan for beta"}


POOL = """
import multiprocessing as mp, time
import titan
from titan import trace
from titan_sdk import TitanClient

@titan.tool
def slow_sq(x):
    time.sleep(0.2)
    return x * x

# Not intercepted on purpose: the tests change them for a replay that must diverge, and for
# a recording in which one process made every call.
base = int(TitanClient().store_get("pool:base") or 0)
size = int(TitanClient().store_get("pool:size") or 2)
with trace.run("pool-agent") as run:
    print(run.id, flush=True)
    with mp.get_context("fork").Pool(size) as pool:
        print(pool.map(slow_sq, [base + i for i in range(6)]))
        time.sleep(1)  # the workers' recorders deliver before the pool is terminated
"""


def test_pool_workers_record_as_actors_of_their_own_and_replay_exactly(
        cluster: Cluster, tmp_path: Path) -> None:
    # Each forked worker numbered its calls on its own copy of the run's counters, under the
    # parent's actor: keys 0, 0, 1, 1, 2, 2 that no replay can tell apart.
    cluster.client().store_put("pool:base", "0")
    run_id = run_script(cluster, write(tmp_path, "pool.py", POOL))
    actions = cluster.api("GET", f"/runs/{run_id}/actions")["actions"]
    keys = {(a["actor"], a["ordinal"]) for a in actions if a["name"] == "slow_sq"}
    assert len(keys) == 6, actions
    assert {actor for actor, _ in keys} == {"pool-agent/fork-1", "pool-agent/fork-2"}
    # Which worker gets which task differs in the replay: each call is matched to the
    # recorded call with its inputs, whichever worker made it.
    report = replay(cluster, run_id)
    assert report["status"] == "completed", (report.get("error"), report["divergences"])
    assert report["divergence_count"] == 0 and report["match_rate"] == 1.0
    assert report["recorded"] == 6


def test_a_pool_worker_that_diverges_ends_a_strict_replay(cluster: Cluster,
                                                         tmp_path: Path) -> None:
    # Its ReplayDiverged (a BaseException) killed the worker and Pool.map waited for ever:
    # the replay sat "running" until its 30-minute timeout.
    client = cluster.client()
    client.store_put("pool:base", "0")
    run_id = run_script(cluster, write(tmp_path, "pool.py", POOL))
    client.store_put("pool:base", "100")
    started = time.monotonic()
    report = replay(cluster, run_id)
    assert time.monotonic() - started < 60
    assert report["status"] == "failed", report
    kinds = {d["kind"] for d in report["divergences"]}
    assert kinds == {"input_mismatch"}, report["divergences"]
    log = cluster.client().fetch_logs(f"{report['run_id']}_DRIVER/driver")
    assert "ReplayDiverged" in log and "forked by this one" in log, log


def test_a_pool_worker_the_recording_has_no_call_from_diverges_as_an_input_mismatch(
        cluster: Cluster, tmp_path: Path) -> None:
    # Which process of a pool makes which call is the scheduler's doing: on a loaded box one
    # worker took every task of the recording (the other started late), and the replay's
    # other worker, whose own actor had no call recorded, reported its changed call as an
    # extra one, where the worker that did have calls reported an input mismatch. A pool
    # that replaces a stopped worker (fork-3) made the same extra call. Recorded here with
    # one process, replayed with two.
    client = cluster.client()
    client.store_put("pool:base", "0")
    client.store_put("pool:size", "1")
    try:
        run_id = run_script(cluster, write(tmp_path, "pool.py", POOL))
        client.store_put("pool:size", "2")
        client.store_put("pool:base", "100")
        report = replay(cluster, run_id)
    finally:
        client.store_put("pool:size", "2")
    actors = {a["actor"] for a in cluster.api("GET", f"/runs/{run_id}/actions")["actions"]
              if a["name"] == "slow_sq"}
    assert actors == {"pool-agent/fork-1"}
    assert report["status"] == "failed", report
    assert {d["kind"] for d in report["divergences"]} == {"input_mismatch"}, \
        report["divergences"]


SIGNAL_STAGE = """
import os, sys
import titan
from titan_sdk import TitanClient

@titan.tool
def lookup(topic):
    return f"{topic}-fact"

run_id = os.environ["TITAN_AGENT_RUN_ID"]  # the job variable the docs give its run by
topic = sys.argv[1]
TitanClient().store_put(f"sig:{run_id}:{topic}:done", f"{lookup(topic)}@{run_id}")
"""

SIGNAL_DRIVER = """
import secrets, sys
from titan_sdk import TitanClient, TitanJob, wait_for_signals

run_id = sys.argv[1] if len(sys.argv) > 1 else f"SIG_{secrets.token_hex(3)}"
client = TitanClient()
client.submit_dag(f"{run_id}_STAGE", [TitanJob(f"s-{t}", "stage.py", args=[t])
                                      for t in ("alpha", "beta")], agent_run_id=run_id)
got = wait_for_signals(client, [f"sig:{run_id}:{t}:done" for t in ("alpha", "beta")],
                       timeout=60)
print(run_id, sorted(got.values()))
"""


@pytest.mark.parametrize("given", [True, False], ids=["run-id-given", "run-id-drawn"])
def test_a_store_signalling_driver_replays_with_its_stages_keys(
        cluster: Cluster, tmp_path: Path, given: bool) -> None:
    # Keys named after the run id: a driver given the original's id read the original's
    # keys and went on at once (its stages cancelled, 0 % match); one that drew a fresh id
    # waited for keys its stages, named after TITAN_AGENT_RUN_ID, never wrote (a QA pass).
    write(tmp_path, "stage.py", SIGNAL_STAGE)
    driver = write(tmp_path, "driver.py", SIGNAL_DRIVER)
    fixed = f"SIGFIX_{tmp_path.name[-6:]}".replace("-", "_")
    run_id = run_script(cluster, driver, *([fixed] if given else []))
    original = {t: cluster.client().store_get(f"sig:{run_id}:{t}:done") for t in ("alpha", "beta")}
    assert original == {"alpha": f"alpha-fact@{run_id}", "beta": f"beta-fact@{run_id}"}
    report = replay(cluster, run_id)
    replayed = report["run_id"]
    said = cluster.client().fetch_logs(f"{replayed}_DRIVER/driver")
    assert report["status"] == "completed", (report, said)
    assert report["divergence_count"] == 0 and report["match_rate"] == 1.0, report
    # Its driver waited for what the replay's stages wrote, not for the original's keys,
    # which are as the original left them.
    assert f"['alpha-fact@{replayed}', 'beta-fact@{replayed}']" in said, said
    assert {t: cluster.client().store_get(f"sig:{run_id}:{t}:done")
            for t in ("alpha", "beta")} == original
