"""Replaying scripts that open several ``titan.trace.run`` blocks (a sub-agent's run inside a
run, one run per item of a batch), a run id opened again, and a call cut off by a timeout:
a real master and worker, the scripts run as subprocesses, their replays as the DRIVER job."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from tests.integration.harness import Cluster, shared_cluster
from tests.integration.test_replay_driver import titan
from tests.integration.test_replay_sdk import replay, write

cluster = shared_cluster(slots=2)

NESTED = """
import sys
import titan
from titan import llm
from titan.llm import Generation, Usage

LOG = sys.argv[1]  # the replay runs with the recorded arguments

class Model:  # a paid model: each call it answers is logged
    name = "paid"
    def generate(self, req):
        with open(LOG, "a") as fh:
            fh.write("llm\\n")
        return Generation("SUB", Usage(10, 10), req.model, "stop")
    def cost(self, model, usage):
        return (0.5, "registered")

llm.register_provider("paid", Model())

@titan.tool
def lookup(q: str) -> str:
    with open(LOG, "a") as fh:
        fh.write(f"lookup {q}\\n")
    return q.upper()

def sub_agent(topic):
    with titan.trace.run("sub") as sub:
        a = lookup(llm.complete("sub " + topic, model="paid/m").text)
        return lookup(a + "!"), sub.id

with titan.trace.run("outer") as run:
    a = lookup("outer")
    b, sub_id = sub_agent("x")
    c = lookup(a + b)
    print(run.id, sub_id, c.replace(" ", "_"))
"""

BATCH = """
import sys
import titan

LOG = sys.argv[1]  # the replay runs with the recorded arguments

@titan.tool
def lookup_order(ticket: str) -> dict:
    with open(LOG, "a") as fh:
        fh.write(f"lookup {ticket}\\n")
    return {"ticket": ticket, "status": "shipped"}

ids = []
for ticket in ["T-1", "T-2", "T-3"]:
    with titan.trace.run("batch", tags={"ticket": ticket}) as run:
        info = lookup_order(ticket)
        if ticket == "T-2":
            lookup_order(ticket + "-again")
        ids.append(run.id)
print(" ".join(ids))
"""


def run(cluster: Cluster, path: Path, *args: str,
        ok: bool = True) -> subprocess.CompletedProcess[str]:
    env = dict(cluster.env, TITAN_HOST="127.0.0.1", TITAN_PORT=str(cluster.port),
               TITAN_TOKEN=cluster.admin_token)
    done = subprocess.run([sys.executable, str(path), *args], env=env, cwd=path.parent,
                          capture_output=True, text=True, timeout=120)
    if ok:
        assert done.returncode == 0, done.stdout + done.stderr
    return done


def ended(cluster: Cluster, *run_ids: str) -> None:
    deadline = time.monotonic() + 20
    for run_id in run_ids:
        while (status := cluster.api("GET", f"/runs/{run_id}")["status"]) == "running":
            assert time.monotonic() < deadline, f"run {run_id} never ended"
            time.sleep(0.1)
        assert status == "completed", run_id


def actions(cluster: Cluster, run_id: str) -> list[tuple[str, str, object]]:
    return [(a["actor"], a["name"], a["inputs"])
            for a in cluster.api("GET", f"/runs/{run_id}/actions")["actions"]]


def clean(report: dict) -> None:
    assert report["status"] == "completed", (report.get("error"), report["divergences"])
    assert report["divergence_count"] == 0 and report["match_rate"] == 1.0, \
        report["divergences"]


def test_a_sub_agents_run_inside_a_run_replays_exactly_either_way(cluster: Cluster,
                                                                   tmp_path: Path) -> None:
    # The sub-agent's block is its own run: replaying the outer run answers the sub-agent's
    # calls from the sub run's recording (not the outer's, where they were 'extra'), records
    # them nowhere, and calls no tool; replaying the sub run does the same for the outer's.
    log = tmp_path / "tools.log"
    outer, sub, _ = run(cluster, write(tmp_path, "nested.py", NESTED), str(log)).stdout.split()
    ended(cluster, outer, sub)
    assert log.read_text().count("lookup") == 4 and log.read_text().count("llm") == 1
    assert cluster.api("GET", f"/runs/{sub}")["cost_usd"] == 0.5
    for replayed, agent, calls in ((outer, "outer", 2), (sub, "sub", 3)):
        report = replay(cluster, replayed)
        clean(report)
        assert report["recorded"] == calls
        assert {a[0] for a in actions(cluster, report["run_id"])} == {agent}
        assert report["replay"]["cost_usd"] == 0
        # Its cost per stage names the stage that ran them, as its strip does.
        view = cluster.api("GET", f"/runs/{report['run_id']}")
        assert [s["label"] for s in view["stages"]] == ["DRIVER"], view["stages"]
        assert [(s["stage"], s["actions"]) for s in view["by_stage"]] == [("DRIVER", calls)]
        listed = cluster.api("GET", f"/runs/{report['run_id']}/actions")["actions"]
        assert {a["stage"] for a in listed} == {"DRIVER"}  # each action says the same
    # Every call answered from a recording: no tool called, no model asked.
    assert log.read_text().count("lookup") == 4 and log.read_text().count("llm") == 1


def test_each_run_of_a_batch_replays_as_its_own_item(cluster: Cluster, tmp_path: Path) -> None:
    # One run per ticket: the replay of T-2's run re-runs the whole script, and T-2's block
    # (the second of agent "batch") is the replayed run, with T-2's inputs; T-1's and
    # T-3's blocks are answered from their own runs.
    log = tmp_path / "tools.log"
    ids = run(cluster, write(tmp_path, "batch.py", BATCH), str(log)).stdout.split()
    ended(cluster, *ids)
    first = cluster.api("GET", f"/runs/{ids[0]}")["code"]
    assert first["blocks"] == [["batch", i, run_id] for i, run_id in enumerate(ids)]
    for i, run_id in enumerate(ids):
        report = replay(cluster, run_id)
        clean(report)
        replayed = actions(cluster, report["run_id"])
        ticket = f"T-{i + 1}"
        assert replayed[0][2] == {"ticket": ticket}, replayed
        assert len(replayed) == (2 if ticket == "T-2" else 1)
    assert log.read_text().count("lookup") == 4


def test_a_block_the_original_did_not_open_stops_a_strict_replay_saying_so(
        cluster: Cluster, tmp_path: Path) -> None:
    # The replayed code opens a fourth ticket's run: nothing recorded answers it, and the
    # tool is not called live (no --allow-live); the replay fails naming the block.
    log = tmp_path / "tools.log"
    script = write(tmp_path, "batch.py", BATCH)
    ids = run(cluster, script, str(log)).stdout.split()
    ended(cluster, *ids)
    script.write_text(BATCH.replace('"T-3"]', '"T-3", "T-4"]').lstrip())
    done = titan(cluster, "replay", ids[0], "--code", "current")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "a `titan.trace.run` block the original script did not open" in done.stdout, \
        done.stdout
    assert log.read_text().count("lookup") == 4


FIXED = """
import sys
import titan

@titan.tool
def step(x: str) -> str:
    return x.upper()

with titan.trace.run("fixed", run_id=sys.argv[1]) as run:
    print(run.id, step(sys.argv[2]))
"""


def test_a_run_id_that_names_an_ended_run_is_refused_where_the_script_opens_it(
        cluster: Cluster, tmp_path: Path) -> None:
    # A second process opening run R after R completed appended to it: both processes'
    # calls took (fixed, step, #0), and R's replay counted 0/1 with an input mismatch.
    script = write(tmp_path, "fixed.py", FIXED)
    run_id = f"fixed-{tmp_path.name[-8:]}".replace("_", "-")
    run(cluster, script, run_id, "first")
    ended(cluster, run_id)
    again = run(cluster, script, run_id, "second", ok=False)
    assert again.returncode == 1
    assert f"titan.errors.Conflict: agent run {run_id} already ended completed: a run id " \
           "names one execution" in again.stderr, again.stderr
    assert f"another run_id (e.g. {run_id}-2)" in again.stderr
    assert [a[2] for a in actions(cluster, run_id)] == [{"x": "first"}]
    clean(replay(cluster, run_id))
    # Over the API: 409 for an ended run; its own start sent again (a resend) is taken, and
    # a run still running opens as ever (a stage may have opened it first).
    started = cluster.api("GET", f"/runs/{run_id}")["started_at"]
    client = cluster.client()
    from titan import errors

    try:
        client.api("POST", "/runs", json={"id": run_id, "agent_id": "fixed"})
        raise AssertionError("reopened")
    except errors.Conflict as exc:
        assert exc.code == "run_ended" and exc.details == {"id": run_id,
                                                           "status": "completed"}
    assert client.api("POST", "/runs", json={"id": run_id, "agent_id": "fixed",
                                             "started_at": started})["status"] == "completed"
    fresh = f"{run_id}-open"
    client.api("POST", "/runs", json={"id": fresh, "agent_id": "fixed"})
    assert client.api("POST", "/runs", json={"id": fresh, "agent_id": "fixed"})[
        "status"] == "running"


DEADLINE = """
import asyncio, time
import titan

@titan.tool
async def slow_search(q: str) -> list:
    await asyncio.sleep(5)
    return [q]

@titan.tool
async def fast_search(q: str) -> list:
    return [q, "fast"]

async def main():
    try:
        return await asyncio.wait_for(slow_search("lora"), timeout=0.2)
    except asyncio.TimeoutError:
        return await fast_search("lora")

with titan.trace.run("deadline") as run:
    t0 = time.monotonic()
    print(run.id, asyncio.run(main()), round(time.monotonic() - t0, 1))
"""


def test_an_async_tool_cut_off_by_its_callers_timeout_replays_to_the_same_fallback(
        cluster: Cluster, tmp_path: Path) -> None:
    # Recorded as failed with CancelledError, the served call raised it at once: wait_for
    # passed it through rather than a TimeoutError, the agent's fallback was skipped and the
    # replay failed. It now waits to be cut off again, by the caller's own timeout.
    run_id = run(cluster, write(tmp_path, "deadline.py", DEADLINE)).stdout.split()[0]
    ended(cluster, run_id)
    recorded = cluster.api("GET", f"/runs/{run_id}/actions")["actions"]
    assert [(a["name"], a["outcome"], (a["error"] or {}).get("type")) for a in recorded] == [
        ("slow_search", "error", "CancelledError"), ("fast_search", "success", None)]
    report = replay(cluster, run_id)
    clean(report)
    replayed = cluster.api("GET", f"/runs/{report['run_id']}/actions")["actions"]
    assert [(a["name"], a["outcome"], a["replay_status"], (a["error"] or {}).get("type"))
            for a in replayed] == [("slow_search", "error", "served", "CancelledError"),
                                   ("fast_search", "replayed", "served", None)]
    assert replayed[0]["duration_ns"] < 1.5e9  # cut off by the 0.2 s timeout, not the bound


RETRIED = """
import os, sys
import titan, titan.errors

@titan.tool
def ingest(part: str) -> str:
    return part.upper()

run_id, marker = sys.argv[1], sys.argv[2]
with titan.trace.run("ingest", run_id=run_id):
    ingest(os.environ["TITAN_ATTEMPT"])
    if not os.path.exists(marker):
        open(marker, "w").close()
        raise RuntimeError("transient failure on the first attempt")
titan.trace.flush()  # its end told: the same attempt naming it again is another execution
try:
    with titan.trace.run("ingest", run_id=run_id):
        pass
except titan.errors.Conflict as exc:
    print("again:", exc.code)
"""


def test_a_jobs_retry_opens_the_run_its_failed_attempt_named_again(
        cluster: Cluster, tmp_path: Path) -> None:
    # Attempt 1 raised out of its block and ended its run failed; attempt 2 died with
    # Conflict run_ended as its block opened, before its body ran: retries never helped a
    # job that names its run. The retry's run is its own again, running till it ends it.
    from titan_sdk import TitanJob

    script = write(tmp_path, "retried.py", RETRIED)
    run_id = f"ingest-{tmp_path.name[-8:]}".replace("_", "-")
    marker = tmp_path / "marker"
    client = cluster.client()
    name = f"retried_{tmp_path.name[-6:]}"
    client.submit_job(TitanJob(name, str(script), args=[run_id, str(marker)], retries=1))
    job = client.wait(name, timeout=60)
    logs = client.fetch_logs(name)
    assert (job["state"], job["attempt"]) == ("COMPLETED", 2), logs
    assert "again: run_ended" in logs, logs
    ended(cluster, run_id)
    run = cluster.api("GET", f"/runs/{run_id}")
    assert run["error"] is None and run["ended_at"] >= run["started_at"], run
    assert (run["started_by"]["job_id"], run["started_by"]["attempt"]) == (name, 2), run
    # Both attempts' calls, under the same key: the latest is the one a replay takes, as
    # for a retried job's calls in its DAG's run.
    calls = cluster.api("GET", f"/runs/{run_id}/actions")["actions"]
    assert [(a["name"], a["ordinal"], a["inputs"]) for a in calls] == [
        ("ingest", 0, {"part": "1"}), ("ingest", 0, {"part": "2"})]


FALLBACK = """
import sys
import titan, titan.errors

@titan.tool
def step(x: int) -> int:
    return x + 1

try:
    with titan.trace.run("nightly", run_id=sys.argv[1]):
        step(1)
except titan.errors.Conflict as exc:
    print("refused:", exc.code)
    with titan.trace.run("nightly", run_id=sys.argv[1] + "-2"):  # as the 409 advises
        step(2)
"""


def test_a_refused_block_is_no_block_of_its_process_and_its_fallback_replays(
        cluster: Cluster, tmp_path: Path) -> None:
    # The refused block R still counted as the process's first run: the fallback R-2 was
    # listed in R's code (another, ended execution's recording was edited), and R-2's replay
    # read its blocks from R, its first block a shadow of R: 0 %, one call missing.
    script = write(tmp_path, "fallback.py", FALLBACK)
    rid = f"nightly-{tmp_path.name[-8:]}".replace("_", "-")
    run(cluster, script, rid)
    ended(cluster, rid)
    assert "refused: run_ended" in run(cluster, script, rid).stdout
    ended(cluster, f"{rid}-2")
    first, second = (cluster.api("GET", f"/runs/{r}")["code"] for r in (rid, f"{rid}-2"))
    assert first["blocks"] == [["nightly", 0, rid]], first
    assert second["blocks"] == [["nightly", 0, f"{rid}-2"]], second
    assert (second["block"]["first"], second["block"]["n"]) == (f"{rid}-2", 0)
    for replayed, x in ((f"{rid}-2", 2), (rid, 1)):
        report = replay(cluster, replayed)
        clean(report)
        assert [a[2] for a in actions(cluster, report["run_id"])] == [{"x": x}]
    # A block naming another process's first run (its opening refused where the master was
    # out of reach at first) is not listed there: that recording is left as it was.
    other = f"{rid}-other"
    cluster.api("POST", "/runs", {"id": other, "agent_id": "nightly"})
    block = dict(first["block"], n=1, process="another-process")
    cluster.api("PUT", f"/runs/{other}/code", {"files": first["files"], "block": block})
    assert cluster.api("GET", f"/runs/{rid}")["code"]["blocks"] == [["nightly", 0, rid]]


STALLED = """
import os, signal, sys, time
import titan

@titan.tool
def step(x: int) -> int:
    return x

master, ended_run = int(sys.argv[1]), sys.argv[2]
if master:
    os.kill(master, signal.SIGSTOP)  # takes connections, answers nothing: out of reach
times = []
try:
    for i, run_id in enumerate([f"{ended_run}-a", f"{ended_run}-b", ended_run]):
        t = time.monotonic()
        with titan.trace.run("stalled", run_id=run_id):
            step(i)
        times.append(time.monotonic() - t)
finally:
    if master:
        os.kill(master, signal.SIGCONT)
print(" ".join(f"{t:.2f}" for t in times))
"""


def test_a_master_out_of_reach_costs_a_named_block_one_short_try_and_the_next_none(
        cluster: Cluster, tmp_path: Path) -> None:
    # Asking as a named block opened tried for 2 s (7 tries when the connection was refused,
    # 2 s against a master that did not answer), for every block: a batch of N named items
    # paid 2*N seconds, and an asyncio loop stood still meanwhile.
    script = write(tmp_path, "stalled.py", STALLED)
    ended_run = f"stalled-{tmp_path.name[-8:]}".replace("_", "-")
    cluster.api("POST", "/runs", {"id": ended_run, "agent_id": "stalled"})
    cluster.api("PATCH", f"/runs/{ended_run}", {"status": "completed"})
    assert cluster.master is not None
    done = run(cluster, script, str(cluster.master.pid), ended_run)
    first, *rest = (float(t) for t in done.stdout.split())
    assert first < 3.0 and max(rest) < 0.5, done.stdout  # one try of 2 s, then none
    # The master, back, opened the two new runs from the sender, and refused the ended one
    # there (said on stderr): nothing of the block was appended to that other execution.
    ended(cluster, f"{ended_run}-a", f"{ended_run}-b")
    assert f"the master refused to open run {ended_run}" in done.stderr, done.stderr
    assert actions(cluster, ended_run) == []
    # Nothing listening: one refused connection, at once.
    closed = subprocess.run(
        [sys.executable, str(script), "0", ended_run], capture_output=True, text=True,
        timeout=60, env=dict(cluster.env, TITAN_MASTER_URLS="http://127.0.0.1:9",
                             TITAN_TOKEN="tt_x", TITAN_TRACE_FLUSH_TIMEOUT="1"))
    assert closed.returncode == 0, closed.stderr
    assert sum(float(t) for t in closed.stdout.split()) < 1.0, closed.stdout
