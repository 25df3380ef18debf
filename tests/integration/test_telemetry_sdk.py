"""titan.trace end to end: real processes record into a real master.

Scripts run as subprocesses (the SDK's exit flush is part of what is tested); the only fake is
the LLM provider, a priced stand-in for a hosted model's HTTP API.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.integration.harness import Cluster, isolated_cluster
from titan.client import TitanJob

pytestmark = pytest.mark.slow

PRICED_PROVIDER = '''
import titan.llm
from titan.llm import Generation, Usage

class Priced:
    name = "priced"
    def generate(self, request):
        return Generation(text="answer to " + request.messages[-1]["content"],
                          usage=Usage(100, 20, 10, 0), model=request.model,
                          finish_reason="stop")
    def cost(self, model, usage):
        return 0.002, "registered"

titan.llm.register_provider("priced", Priced())
'''


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Any:
    c = isolated_cluster(tmp_path_factory.mktemp("telemetry"), slots=2)
    yield c
    c.stop()


def run_script(cluster: Cluster, source: str, *args: str, env: dict[str, str] | None = None,
               check: bool = True) -> subprocess.CompletedProcess[str]:
    path = Path(cluster.script(f"s{time.monotonic_ns()}.py", source))
    full = dict(os.environ, TITAN_HOST="127.0.0.1", TITAN_PORT=str(cluster.port),
                TITAN_TOKEN=cluster.admin_token)
    full.update(env or {})
    done = subprocess.run([sys.executable, str(path), *args], capture_output=True, text=True,
                          env=full, timeout=120, cwd=cluster.root)
    if check:
        assert done.returncode == 0, done.stdout + done.stderr
    return done


def actions_of(cluster: Cluster, run_id: str) -> list[dict[str, Any]]:
    return cluster.api("GET", f"/runs/{run_id}/actions?limit=1000&preview=100000")["actions"]


def wait_for(predicate: Any, timeout: float = 20.0) -> Any:
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


def test_a_run_records_tools_actions_llm_calls_and_ends(cluster: Cluster) -> None:
    done = run_script(cluster, PRICED_PROVIDER + '''
import titan

@titan.tool
def search(query, k=3):
    return [f"{query}-{i}" for i in range(k)]

@titan.tool(name="explode")
def fails(x):
    raise RuntimeError("tool broke: " + x)

with titan.trace.run("sdk-agent", agent_version="2.1", tags=["nightly"]) as run:
    print(run.id)
    with titan.trace.action("plan", inputs={"goal": "g"}) as step:
        search("vector db")
        step.outputs = {"steps": 2}
    try:
        fails("now")
    except RuntimeError:
        pass
    with titan.trace.actor("critic"):
        titan.llm.complete("judge it", model="priced/model-x", max_tokens=50)
''')
    run_id = done.stdout.strip()
    run = cluster.api("GET", f"/runs/{run_id}")
    assert run["status"] == "completed" and run["ended_at"] >= run["started_at"]
    assert (run["agent_id"], run["agent_version"], run["tags"]) == ("sdk-agent", "2.1",
                                                                    ["nightly"])
    acts = actions_of(cluster, run_id)
    by_name = {a["name"]: a for a in acts}
    assert [a["seq"] for a in acts] == list(range(1, len(acts) + 1))
    # the nested tool call names the action it ran inside, and sees defaults
    assert by_name["search"]["parent_id"] == by_name["plan"]["id"]
    assert by_name["search"]["inputs"] == {"query": "vector db", "k": 3}
    assert by_name["search"]["outputs"] == ["vector db-0", "vector db-1", "vector db-2"]
    assert by_name["plan"]["outputs"] == {"steps": 2}
    boom = by_name["explode"]
    assert boom["outcome"] == "error" and boom["error"]["type"] == "RuntimeError"
    assert "tool broke: now" in boom["error"]["message"]
    llm = by_name["call_llm"]
    assert llm["channel"] == "llm" and llm["actor"] == "sdk-agent/critic"
    assert llm["usage"] == {"input_tokens": 100, "output_tokens": 20, "cached_tokens": 10,
                            "reasoning_tokens": 0}
    assert llm["cost_usd"] == pytest.approx(0.002) and llm["cost_source"] == "registered"
    assert llm["inputs"]["messages"] == [{"role": "user", "content": "judge it"}]
    assert llm["inputs"]["params"] == {"max_tokens": 50}
    assert llm["outputs"]["text"] == "answer to judge it"
    assert run["cost_usd"] == pytest.approx(0.002)
    assert run["success_rate"] == pytest.approx(3 / 4)


def test_an_uncaught_exception_fails_the_run(cluster: Cluster) -> None:
    done = run_script(cluster, '''
import titan
with titan.trace.run("crashy") as run:
    print(run.id, flush=True)
    titan.trace.uuid()
    raise KeyError("missing thing")
''', check=False)
    assert done.returncode == 1
    run = cluster.api("GET", f"/runs/{done.stdout.split()[0]}")
    assert run["status"] == "failed" and "KeyError" in run["error"]
    assert run["action_count"] == 1


def test_a_run_that_fails_naming_a_file_that_is_not_utf8_ends_failed(cluster: Cluster) -> None:
    # "cannot parse <os.fsdecode(bad bytes)>": the master refused the run's end and the run
    # stayed running for good; a driver's run likewise (QA).
    sleeper = cluster.script("sleeper.py", "import time; time.sleep(0.1)\n")
    for body in ('with titan.trace.run("bad-name", run_id="bad-name-1"):\n    raise bad',
                 'from titan import TitanClient, TitanJob\n'
                 f'TitanClient().submit_dag("S1", [TitanJob("a", {sleeper!r})], '
                 'agent_run_id="BADNAME_1", wait=True)\nraise bad'):
        done = run_script(cluster, 'import os, titan\n'
                          'bad = ValueError("cannot parse " + os.fsdecode(b"data-\\xff.csv"))\n'
                          + body, check=False)
        assert done.returncode == 1 and "refused" not in done.stderr, done.stderr
    for run_id in ("bad-name-1", "BADNAME_1"):
        run = wait_for(lambda rid=run_id: (r := cluster.api("GET", f"/runs/{rid}"))["status"]
                       != "running" and r)
        assert (run["status"], run["error"]) == ("failed",
                                                 "ValueError: cannot parse data-\ufffd.csv")


def test_an_error_saying_a_nul_is_recorded_with_a_replacement(cluster: Cluster) -> None:
    # A tool whose exception quoted binary data (a NUL) vanished from the recording: the
    # master refuses NUL in a text, the SDK dropped the action, and the run read 100%
    # successful. A run failing with such an error stayed running.
    done = run_script(cluster, '''
import titan

@titan.tool
def parse(blob):
    raise ValueError("cannot parse " + blob)

with titan.trace.run("nul", run_id="nul-error-1"):
    with titan.trace.action("ok") as a:
        a.outputs = 1
    try:
        parse("ab\\x00cd")
    except ValueError:
        pass
with titan.trace.run("nul", run_id="nul-error-2"):
    raise ValueError("bad byte \\x00 here")
''', check=False)
    assert done.returncode == 1 and "refused" not in done.stderr, done.stderr
    acts = actions_of(cluster, "nul-error-1")
    assert [(a["name"], a["outcome"]) for a in acts] == [("ok", "success"), ("parse", "error")]
    assert acts[1]["error"] == {"type": "ValueError", "message": "cannot parse ab\ufffdcd"}
    run = wait_for(lambda: (r := cluster.api("GET", "/runs/nul-error-2"))["status"]
                   != "running" and r)
    assert (run["status"], run["error"]) == ("failed", "ValueError: bad byte \ufffd here")


def test_one_bad_value_loses_only_its_own_action_and_a_lone_surrogate_none(
        cluster: Cluster) -> None:
    # A lone surrogate (a file name decoded with surrogateescape) could not be encoded: the
    # recorder retried that batch for ever and nothing after it was recorded, in any run.
    # A value the master refuses (a usage type it does not know) threw its whole batch away;
    # its refusal said "actions[1]", a position in a batch no user sees: it names the action.
    done = run_script(cluster, '''
import os, titan
with titan.trace.run("odd", run_id="odd-values-1"):
    with titan.trace.action("ok1") as a:
        a.outputs = 1
    with titan.trace.action("bad-usage") as a:
        a.usage = {"bogus_tokens": 1}
    with titan.trace.action("ls") as a:
        a.outputs = [os.fsdecode(b"f-\\xff")]
    with titan.trace.action("ok2") as a:
        a.outputs = 2
with titan.trace.run("odd", run_id="odd-values-2"):
    with titan.trace.action("after") as a:
        a.outputs = 3
''')
    assert "refused an action" in done.stderr, done.stderr
    assert 'usage.bogus_tokens (the action "bad-usage", ordinal 0)' in done.stderr
    names = [a["name"] for a in actions_of(cluster, "odd-values-1")]
    assert names == ["ok1", "ls", "ok2"], names
    (ls,) = [a for a in actions_of(cluster, "odd-values-1") if a["name"] == "ls"]
    assert ls["outputs"] == ["f-\ufffd"]
    assert [a["name"] for a in actions_of(cluster, "odd-values-2")] == ["after"]
    assert cluster.api("GET", "/runs/odd-values-2")["status"] == "completed"


def test_values_the_master_cannot_store_are_recorded_as_stand_ins(cluster: Cluster) -> None:
    # A tool given a tree node that points at its parent crashed its caller (RecursionError)
    # after its side effect; 25! or a JSON AST 80 deep lost the whole action (QA).
    done = run_script(cluster, '''
import dataclasses, math, titan

@dataclasses.dataclass
class Node:
    name: str
    parent: "Node | None" = None
    children: list = dataclasses.field(default_factory=list)

class Weird:
    def __repr__(self):
        raise RuntimeError("no repr")

@titan.tool
def charge(node):
    return {"ok": True}

@titan.tool
def factorial(n):
    return math.factorial(n)

@titan.tool
def parse(depth):
    d = cur = {}
    for _ in range(depth):
        cur["child"] = {}; cur = cur["child"]
    return d

@titan.tool
def lookup(x):
    return Weird()

root = Node("root"); root.children.append(Node("child", parent=root))
with titan.trace.run("odd", run_id="odd-values-3"):
    assert charge(root) == {"ok": True}
    assert factorial(25) == math.factorial(25)
    parse(80)
    assert isinstance(lookup(1), Weird)
''')
    assert "refused" not in done.stderr, done.stderr
    acts = {a["name"]: a for a in actions_of(cluster, "odd-values-3")}
    assert list(acts) == ["charge", "factorial", "parse", "lookup"]
    assert acts["charge"]["inputs"]["node"]["children"][0]["parent"] == "<cycle: Node>"
    assert acts["factorial"]["outputs"] == "15511210043330985984000000"
    assert "<cut: nested deeper than 61 levels>" in json.dumps(acts["parse"]["outputs"])
    # Only its repr could be kept: marked, so a replay flags the call instead of serving text.
    assert acts["lookup"]["outputs"] == {"$repr": "<Weird: not recordable (RuntimeError)>"}


def test_budget_blocks_llm_calls_and_dispatch_until_raised(cluster: Cluster) -> None:
    # $0.002 a call against a $0.003 budget: the second call crosses it, the third is blocked.
    done = run_script(cluster, PRICED_PROVIDER + '''
import json, titan
from titan.errors import BudgetExceeded
outcomes = []
with titan.trace.run("budgeted", budget_usd=0.003) as run:
    for i in range(3):
        try:
            titan.llm.complete(f"q{i}", model="priced/m")
            outcomes.append("ok")
        except BudgetExceeded as exc:
            outcomes.append("blocked")
    print(json.dumps({"run": run.id, "outcomes": outcomes}))
''')

    out = json.loads(done.stdout)
    assert out["outcomes"] == ["ok", "ok", "blocked"]
    run_id = out["run"]
    run = cluster.api("GET", f"/runs/{run_id}")
    assert run["blocked"] and run["over_budget"] and run["blocked_count"] == 1
    actions = actions_of(cluster, run_id)
    assert [a["outcome"] for a in actions] == ["success", "success", "blocked"]
    # A blocked call never reached its provider: it cost exactly $0, so the run's cost is
    # exact, not a lower bound over an "unpriced" call.
    assert (actions[2]["cost_usd"], actions[2]["cost_source"]) == (0.0, "blocked")
    assert (run["cost_usd"], run["unpriced_calls"]) == (pytest.approx(0.004), 0)
    intercepts = cluster.api("GET", "/runs/intercepts")["intercepts"]
    assert any(i["id"] == run_id and any("over budget" in r for r in i["reasons"])
               for i in intercepts)

    # Jobs of the blocked run are held, not run...
    client = cluster.client()
    script = cluster.script("noop.py", "print('ran')\n")
    dag = client.submit_dag(f"{run_id}_MORE", [TitanJob(job_id="more", filename=script)],
                            agent_run_id=run_id)
    job = wait_for(lambda: next((j for j in client.get_dag(dag["ref"])["jobs"]
                                 if "over its budget" in (j.get("reason") or "")), None))
    assert job["state"] == "READY"
    time.sleep(0.5)
    assert client.get_dag(dag["ref"])["jobs"][0]["state"] == "READY"
    # ... until an operator raises the budget.
    subprocess.run([sys.executable, "-m", "titan", "runs", "budget", run_id, "1",
                    "--port", str(cluster.port), "--token", cluster.admin_token],
                   check=True, capture_output=True)
    assert client.wait_dag(dag["ref"], timeout=30)["status"] == "COMPLETED"
    assert not cluster.api("GET", f"/runs/{run_id}")["blocked"]


def test_a_cheap_run_over_budget_says_what_it_spent_against_what_it_may(
        cluster: Cluster) -> None:
    # Three gpt-4o-mini-sized calls against a budget of a few thousandths of a cent: with four
    # decimals the error said "$0.0001 spent of $0.0001", as if the run were within it.
    done = run_script(cluster, PRICED_PROVIDER.replace("0.002", "0.00002") + '''
import titan
from titan.errors import BudgetExceeded
with titan.trace.run("cheap", budget_usd=0.00003) as run:
    for i in range(3):
        try:
            titan.llm.complete(f"q{i}", model="priced/m")
        except BudgetExceeded as exc:
            print(exc)
''')
    assert "($0.000040 spent of $0.000030)" in done.stdout, done.stdout


def test_jobs_record_into_their_agent_run_and_the_driver_ends_it(cluster: Cluster) -> None:
    worker = cluster.script("traced_job.py", '''
import titan

@titan.tool
def fetch(url):
    return {"url": url, "bytes": 12}

fetch("https://example.org")
with titan.trace.action("summarise", inputs={"n": 1}) as a:
    a.outputs = "short"
''')
    driver = run_script(cluster, f'''
from titan import TitanClient, TitanJob
c = TitanClient()
run_id = "DRIVEN_a1b2c3"
dag = c.submit_dag(run_id + "_ITER1", [TitanJob(job_id="researcher-1-0", filename={worker!r})],
                   agent_run_id=run_id)
c.wait_dag(dag["ref"], timeout=60)
print(run_id)
''')
    run_id = driver.stdout.strip()
    run = wait_for(lambda: (r := cluster.api("GET", f"/runs/{run_id}"))["status"] != "running"
                   and r)
    assert run["status"] == "completed"
    assert run["agent_id"] == "DRIVEN"  # from the run id when nobody named the agent
    assert run["code_version"] and run["scripts"][0]["filename"].endswith("traced_job.py")
    acts = actions_of(cluster, run_id)
    assert {a["actor"] for a in acts} == {"ITER1/researcher-1-0"}
    assert [a["name"] for a in acts] == ["fetch", "summarise"]
    assert run["stages"][0]["label"] == "ITER1" and run["stages"][0]["actions"] == 2
    assert run["by_stage"][0]["stage"] == "ITER1"
    assert {a["stage"] for a in acts} == {"ITER1"}


def test_a_sub_agent_of_a_run_is_no_stage_in_its_actions_or_export(cluster: Cluster) -> None:
    # A trace.run block has no stages: its sub-agent "ops/critic" is an actor, not a stage
    # "ops" (the run's by_stage said so; each action and the exports said stage "ops").
    done = run_script(cluster, '''
import titan
with titan.trace.run("ops") as run:
    with titan.trace.action("plan"):
        pass
    with titan.trace.actor("critic"):
        with titan.trace.action("critique"):
            pass
print(run.id)
''')
    run_id = done.stdout.strip()
    wait_for(lambda: cluster.api("GET", f"/runs/{run_id}")["status"] == "completed")
    assert [(a["actor"], a["stage"]) for a in actions_of(cluster, run_id)] == [
        ("ops", None), ("ops/critic", None)]
    assert cluster.api("GET", f"/runs/{run_id}/actions/2")["stage"] is None
    assert [r["stage"] for r in cluster.api("GET", f"/runs/{run_id}")["by_stage"]] == [None]
    exported = cluster.api("GET", f"/runs/export?format=json&actions=true&run={run_id}")
    assert [a["stage"] for r in exported["runs"] for a in r["actions"]] == [None, None]


@pytest.mark.parametrize(("ending", "code", "status", "error"), [
    ("sys.exit(3)", 3, "failed", "SystemExit: 3"),
    ("sys.exit('no plan')", 1, "failed", "SystemExit: no plan"),
    ("try:\n    sys.exit(2)\nexcept SystemExit:\n    pass\nsys.exit(0)", 0, "completed", None),
    ("sys.exit()", 0, "completed", None),
])
def test_a_driver_that_exits_with_a_failure_code_fails_its_run(
        cluster: Cluster, ending: str, code: int, status: str, error: str | None) -> None:
    # Python calls no excepthook for SystemExit: sys.exit(3) ended the driven run completed,
    # where the same exit in a trace.run block fails it (QA).
    sleeper = cluster.script("sleeper.py", "import time; time.sleep(0.1)\n")
    run_id = f"EXITS_{time.monotonic_ns()}"
    done = run_script(cluster, f'''
import sys
from titan import TitanClient, TitanJob
TitanClient().submit_dag("S1", [TitanJob("a", {sleeper!r})], agent_run_id={run_id!r}, wait=True)
''' + ending, check=False)
    assert done.returncode == code, done.stderr
    run = wait_for(lambda: (r := cluster.api("GET", f"/runs/{run_id}"))["status"] != "running"
                   and r)
    assert (run["status"], run["error"]) == (status, error)


@pytest.mark.parametrize("runner", ["auto", "subprocess"])
def test_a_job_that_only_uses_titan_llm_is_recorded_into_its_run(cluster: Cluster,
                                                                   runner: str) -> None:
    """titan.llm knows nothing of runs: the recording hooks come from titan.trace, which a
    job of an agent run loads by itself (forked from the zygote, or a fresh interpreter)."""
    job = cluster.script(f"llm_only_{runner}.py", PRICED_PROVIDER + """
print(titan.llm.complete("plan it", model="priced/model-y").text)
""")
    run_id = f"LLMONLY_{runner}"
    client = cluster.client()
    dag = client.submit_dag(f"{run_id}_ITER1", [TitanJob(job_id="talker", filename=job,
                                                         runner=runner)],
                            agent_run_id=run_id)
    assert client.wait_dag(dag["ref"], timeout=60)["status"] == "COMPLETED"
    acts = wait_for(lambda: (found := actions_of(cluster, run_id)) and found)
    assert [(a["channel"], a["name"], a["actor"]) for a in acts] == [
        ("llm", "call_llm", "ITER1/talker")]
    assert acts[0]["cost_usd"] == 0.002 and acts[0]["model"] == "model-y"


def test_actions_wait_out_a_master_restart(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path)
    cluster.start_master()
    try:
        path = cluster.script("patient.py", '''
import sys, time, titan
with titan.trace.run("patient") as run:
    print(run.id, flush=True)
    for i in range(50):
        with titan.trace.action("tick", inputs={"i": i}):
            pass
        time.sleep(0.04)
''')
        env = dict(os.environ, TITAN_HOST="127.0.0.1", TITAN_PORT=str(cluster.port),
                   TITAN_TOKEN=cluster.admin_token, TITAN_TRACE_FLUSH_TIMEOUT="60")
        proc = subprocess.Popen([sys.executable, path], stdout=subprocess.PIPE, text=True,
                                env=env)
        assert proc.stdout is not None
        run_id = proc.stdout.readline().strip()
        time.sleep(0.5)
        cluster.kill_master()  # kill -9 mid-run
        time.sleep(1.5)
        cluster.start_master()
        assert proc.wait(timeout=90) == 0
        run = cluster.api("GET", f"/runs/{run_id}")
        assert run["action_count"] == 50 and run["status"] == "completed"
        assert sorted(a["inputs"]["i"] for a in actions_of(cluster, run_id)) == list(range(50))
    finally:
        cluster.stop()


def test_a_revoked_token_is_said_as_refused_not_waited_on(cluster: Cluster) -> None:
    # A 401 was retried as if the master were away: flush() answered False after its whole
    # timeout with nothing on stderr, and the exit waited 10 s more, then said "the master
    # could not be reached (unknown or revoked token; TITAN_TRACE_FLUSH_TIMEOUT waits
    # longer)" of a master that had answered (a QA pass).
    made = cluster.api("POST", "/tokens", {"role": "operator", "name": "revoked-driver"})
    done = run_script(cluster, '''
import os, titan
from titan import TitanClient
with titan.trace.run("revoked", run_id="revoked-driver-1"):
    with titan.trace.action("before") as a:
        a.outputs = 1
    assert titan.trace.flush(60)
    TitanClient(token=os.environ["ADMIN"]).revoke_token(os.environ["TOKEN_ID"])
    with titan.trace.action("after") as a:
        a.outputs = 2
    print("flush:", titan.trace.flush(60), flush=True)
''', env={"TITAN_TOKEN": made["token"], "ADMIN": cluster.admin_token, "TOKEN_ID": made["id"]})
    assert "flush: False" in done.stdout, done.stdout + done.stderr
    assert ("[titan.trace] the master refused the token (unknown or revoked token): an action "
            "of run revoked-driver-1 not recorded") in done.stderr, done.stderr
    assert ("the master refused the token (unknown or revoked token): run revoked-driver-1 "
            "not updated") in done.stderr, done.stderr
    assert "could not be reached" not in done.stderr, done.stderr
    assert [a["name"] for a in actions_of(cluster, "revoked-driver-1")] == ["before"]
