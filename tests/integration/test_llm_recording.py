"""Hosted LLM calls as a run records them: what they cost when they fail, what a replay's
refused call costs, what the recording keeps of a call's parameters.

Agents run as subprocesses against a real master; the only fake is the hosted model's HTTP
API (tests/fake_llm_api.py), served from this process on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.fake_llm_api import FakeLLMServer, Reply, serve
from tests.integration.harness import Cluster, shared_cluster

pytestmark = pytest.mark.slow

cluster = shared_cluster(slots=2)

@pytest.fixture(scope="module")
def module_api() -> Iterator[FakeLLMServer]:
    with serve() as api:
        yield api


@pytest.fixture
def api(module_api: FakeLLMServer) -> FakeLLMServer:
    module_api.replies.clear()
    module_api.received.clear()
    module_api.default = Reply()
    return module_api


def run_agent(cluster: Cluster, source: str, *args: str) -> dict[str, Any]:
    """Run an agent script; returns the JSON it printed last, once its run has ended."""
    path = cluster.script(f"agent{time.monotonic_ns()}.py", source)
    env = dict(os.environ, TITAN_HOST="127.0.0.1", TITAN_PORT=str(cluster.port),
               TITAN_TOKEN=cluster.admin_token)
    done = subprocess.run([sys.executable, path, *args], capture_output=True, text=True,
                          env=env, timeout=120, cwd=cluster.root)
    assert done.returncode == 0, done.stdout + done.stderr
    out: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    deadline = time.monotonic() + 20
    while cluster.api("GET", f"/runs/{out['run']}")["status"] == "running":
        assert time.monotonic() < deadline, f"run {out['run']} never ended"
        time.sleep(0.1)
    return out


def llm_actions(cluster: Cluster, run_id: str) -> list[dict[str, Any]]:
    actions = cluster.api("GET", f"/runs/{run_id}/actions?limit=1000&preview=100000")
    return [a for a in actions["actions"] if a["name"] == "call_llm"]


INVALID_OUTPUT = '''
import json, sys
import titan
from titan import llm
from titan.errors import BudgetExceeded, InvalidOutput, ProviderError

llm.register_price("openai/fake-model", 1000.0, 1000.0)  # 2,000 tokens: $2
schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
outcomes = []
with titan.trace.run("invalid-output", budget_usd=float(sys.argv[2])) as run:
    for i in range(3):
        try:
            llm.complete(f"n {i}?", model="openai/fake-model", json_schema=schema,
                         api_base=sys.argv[1], api_key="sk-fake")
            outcomes.append("ok")
        except InvalidOutput:
            outcomes.append("invalid")
        except ProviderError:
            outcomes.append("provider error")
        except BudgetExceeded:
            outcomes.append("blocked")
t = llm.totals()
print(json.dumps({"run": run.id, "outcomes": outcomes, "cost": t.cost_usd, "errors": t.errors,
                  "tokens": [t.usage.input_tokens, t.usage.output_tokens]}))
'''


def test_a_call_that_ends_invalid_is_priced_and_stopped_by_the_budget(
        cluster: Cluster, api: FakeLLMServer) -> None:
    # Each answer is billed 2,000 tokens ($2): an invalid answer and its invalid repair cost
    # $4, so a $1 budget stops the next call before it asks anything.
    api.default = Reply(text="not json", prompt_tokens=1000, completion_tokens=1000)
    out = run_agent(cluster, INVALID_OUTPUT, api.url, "1.0")
    assert out["outcomes"] == ["invalid", "blocked", "blocked"]
    assert len(api.received) == 2
    assert (out["cost"], out["tokens"], out["errors"]) == (4.0, [2000, 2000], 3)
    run = cluster.api("GET", f"/runs/{out['run']}")
    assert (run["cost_usd"], run["unpriced_calls"], run["over_budget"]) == (4.0, 0, True)
    first = llm_actions(cluster, out["run"])[0]
    assert (first["outcome"], first["cost_usd"], first["cost_source"]) == (
        "error", 4.0, "registered")
    assert first["usage"]["input_tokens"] == 2000 and first["usage"]["output_tokens"] == 2000
    assert first["error"]["type"] == "InvalidOutput"


def test_a_repair_request_that_fails_still_costs_the_answer_before_it(
        cluster: Cluster, api: FakeLLMServer) -> None:
    api.queue(Reply(text="not json", prompt_tokens=1000, completion_tokens=1000),
              Reply(status=400, error="bad request"))
    api.default = Reply(text='{"n": 1}', prompt_tokens=10, completion_tokens=10)
    out = run_agent(cluster, INVALID_OUTPUT, api.url, "100")
    assert out["outcomes"] == ["provider error", "ok", "ok"]
    first, *_ = llm_actions(cluster, out["run"])
    assert (first["outcome"], first["error"]["type"]) == ("error", "ProviderError")
    assert (first["cost_usd"], first["usage"]["input_tokens"]) == (2.0, 1000)
    run = cluster.api("GET", f"/runs/{out['run']}")
    assert run["cost_usd"] == pytest.approx(2.0 + 2 * 0.02) and run["unpriced_calls"] == 0
    assert out["cost"] == pytest.approx(run["cost_usd"])


REPLAYED = '''
import json, sys
import titan
from titan import llm
from titan.errors import ProviderError
from titan_sdk import TitanClient

prompt = TitanClient().store_get("llm-recording:prompt")  # not intercepted: the test edits it
with titan.trace.run("replayed-llm") as run:
    try:
        llm.complete("refused?", model="openai/fake-model", api_base=sys.argv[1],
                     api_key="sk-fake")
    except ProviderError:
        pass
    answer = llm.complete(prompt, model="openai/fake-model", api_base=sys.argv[1],
                          api_key="sk-fake").text
print(json.dumps({"run": run.id, "answer": answer}))
'''


def test_a_replays_stopped_and_replayed_failed_calls_cost_nothing(
        cluster: Cluster, api: FakeLLMServer) -> None:
    from tests.integration.test_replay_research import wait_replay

    client = cluster.client()
    client.store_put("llm-recording:prompt", "first prompt")
    api.queue(Reply(status=400, error="refused"), "first answer")
    out = run_agent(cluster, REPLAYED, api.url)
    assert out["answer"] == "first answer"
    client.store_put("llm-recording:prompt", "edited prompt")  # a divergence: strict stops
    started = cluster.api("POST", f"/runs/{out['run']}/replay", {})
    report = wait_replay(cluster, started["run_id"], timeout=120)
    assert report["stopped"] is True, report
    failed, stopped = llm_actions(cluster, started["run_id"])
    # The recorded failure, raised again: no provider was asked.
    assert (failed["outcome"], failed["replay_status"]) == ("error", "served")
    assert (failed["cost_usd"], failed["cost_source"]) == (0.0, "replay")
    # Stopped by the strict replay before any provider was asked: $0, not unpriced.
    assert stopped["replay_status"] == "stopped"
    assert (stopped["cost_usd"], stopped["cost_source"]) == (0.0, "blocked")
    rep = cluster.api("GET", f"/runs/{started['run_id']}")
    assert (rep["cost_usd"], rep["unpriced_calls"]) == (0.0, 0)
    assert len(api.received) == 2  # the recording's two requests, none from the replay


TOOL_AGENT = '''
import json, sys
import titan
from titan import llm

tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}}}}]
with titan.trace.run("tool-agent") as run:
    ask = [{"role": "user", "content": "Weather in Paris?"}]
    asked = llm.complete(ask, model="openai/fake-model", tools=tools, api_base=sys.argv[1],
                         api_key="sk-fake")
    results = [{"role": "tool", "tool_call_id": c["id"], "content": "sunny"}
               for c in asked.tool_calls]
    answer = llm.complete([*ask, asked.message(), *results], model="openai/fake-model",
                          tools=tools, api_base=sys.argv[1], api_key="sk-fake").text
print(json.dumps({"run": run.id, "answer": answer, "calls": len(asked.tool_calls)}))
'''


def test_tool_calls_are_recorded_and_replayed(cluster: Cluster, api: FakeLLMServer) -> None:
    from tests.integration.test_replay_research import wait_replay

    api.queue(Reply(text="", tool_calls=(("call_1", "get_weather", '{"city": "Paris"}'),)),
              "Sunny in Paris.")
    out = run_agent(cluster, TOOL_AGENT, api.url)
    assert (out["answer"], out["calls"]) == ("Sunny in Paris.", 1)
    asked, answered = llm_actions(cluster, out["run"])
    call = {"id": "call_1", "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
    assert asked["outputs"] == {"text": "", "finish_reason": "tool_calls", "tool_calls": [call],
                                "provider_model": "fake-model"}
    assert answered["inputs"]["messages"][1] == {"role": "assistant", "content": None,
                                                 "tool_calls": [call]}
    # A strict replay serves the tool calls back: the follow-up is asked exactly as recorded.
    started = cluster.api("POST", f"/runs/{out['run']}/replay", {})
    report = wait_replay(cluster, started["run_id"], timeout=120)
    assert (report["divergence_count"], report["stopped"]) == (0, False), report
    served = llm_actions(cluster, started["run_id"])
    assert [a["replay_status"] for a in served] == ["served", "served"]
    assert served[0]["outputs"]["tool_calls"] == [call]
    assert served[0]["outputs"]["provider_model"] == "fake-model"
    assert len(api.received) == 2


KEYED = '''
import json, sys
import titan
from titan import llm
from titan_sdk import TitanClient

key = TitanClient().store_get("llm-recording:key")  # not intercepted: the test rotates it
with titan.trace.run("keyed-agent") as run:
    answer = llm.complete("hi", model="openai/fake-model", api_base=sys.argv[1], api_key=key,
                          extra_headers={"Authorization": f"Bearer {key}", "X-Trace": "t1"})
print(json.dumps({"run": run.id, "answer": answer.text}))
'''


def test_a_key_passed_as_a_parameter_is_never_recorded_and_rotating_it_replays(
        cluster: Cluster, api: FakeLLMServer) -> None:
    from tests.integration.test_replay_research import wait_replay

    client = cluster.client()
    client.store_put("llm-recording:key", "3f9c2a7be41d4e0c9b8a7f6e5d4c3b2a")
    api.queue(Reply(text="hello", usage=False))
    out = run_agent(cluster, KEYED, api.url)
    assert api.received[0].headers["authorization"] == "Bearer 3f9c2a7be41d4e0c9b8a7f6e5d4c3b2a"
    viewer = subprocess.run(
        [sys.executable, "-m", "titan", "token", "create", "--role", "viewer", "--host",
         "127.0.0.1", "--port", str(cluster.port), "--token", cluster.admin_token],
        env=cluster.env, capture_output=True, text=True, timeout=60, check=True,
    ).stdout.strip().splitlines()[-1]
    listed = cluster.api("GET", f"/runs/{out['run']}/actions?preview=100000", token=viewer)
    (action,) = listed["actions"]
    assert action["inputs"]["params"] == {
        "api_base": api.url, "api_key": "[redacted]",
        "extra_headers": {"Authorization": "[redacted]", "X-Trace": "t1"}}
    assert "3f9c2a7b" not in json.dumps(listed)
    # The reply reported no usage: its cost is unknown, and no made-up usage is recorded.
    assert action["cost_usd"] is None and not action.get("usage")
    # A rotated key is the same recorded input: a strict replay matches every call.
    client.store_put("llm-recording:key", "a-rotated-key")
    started = cluster.api("POST", f"/runs/{out['run']}/replay", {})
    report = wait_replay(cluster, started["run_id"], timeout=120)
    assert (report["divergence_count"], report["stopped"]) == (0, False), report
    assert [a["replay_status"] for a in llm_actions(cluster, started["run_id"])] == ["served"]


UNPRICED = '''
import json, sys
import titan
from titan import llm

llm.register_price("openai/priced-model", 100.0, 100.0)  # 18 tokens: $0.0018
with titan.trace.run("unpriced-llm") as run:
    llm.complete("plan?", model="openai/fake-model", api_base=sys.argv[1], api_key="sk-fake")
    if sys.argv[2] == "priced":
        llm.complete("sum up", model="openai/priced-model", api_base=sys.argv[1],
                     api_key="sk-fake")
print(json.dumps({"run": run.id}))
'''


def replay_cli(cluster: Cluster, *args: str) -> tuple[str, dict[str, Any]]:
    """`titan replay` as a user types it: what it printed, and the report it printed."""
    env = dict(os.environ, TITAN_HOST="127.0.0.1", TITAN_PORT=str(cluster.port),
               TITAN_TOKEN=cluster.admin_token)
    done = subprocess.run([sys.executable, "-m", "titan", "replay", *args], env=env,
                          capture_output=True, text=True, timeout=240, cwd=cluster.root)
    assert done.returncode == 0, done.stdout + done.stderr
    replay_id = done.stdout.split()[1]
    return done.stdout, cluster.api("GET", f"/runs/{replay_id}/replay")


def test_a_replay_of_calls_of_unknown_price_says_its_cost_and_savings_are_unknown(
        cluster: Cluster, api: FakeLLMServer) -> None:
    # `titan runs show` said "unknown" for a run whose LLM calls have no known price, but its
    # replay's summary said "Original cost $0.0000 / Savings $0.0000" (a QA pass).
    run_id = run_agent(cluster, UNPRICED, api.url, "unpriced")["run"]
    out, report = replay_cli(cluster, run_id)
    assert "Original cost  unknown\n" in out and "Savings        unknown\n" in out, out
    assert "Replay cost    $0.0000\n" in out, out  # served: nothing asked, nothing spent
    assert (report["original"]["unpriced_calls"], report["savings_usd"]) == (1, None)
    assert report["replay"]["unpriced_calls"] == 0

    # A fork asks the unpriced model live: what the replay cost is unknown too.
    seq = llm_actions(cluster, run_id)[0]["seq"]
    out, report = replay_cli(cluster, run_id, "--fork-at", str(seq))
    assert "Replay cost    unknown\n" in out and "Savings        unknown\n" in out, out
    assert (report["replay"]["unpriced_calls"], report["savings_usd"]) == (1, None)

    # Some calls priced: a lower bound, as the run's own cost is.
    run_id = run_agent(cluster, UNPRICED, api.url, "priced")["run"]
    out, report = replay_cli(cluster, run_id)
    assert "Original cost  >=$0.0018\n" in out and "Savings        >=$0.0018\n" in out, out
    assert report["savings_usd"] == pytest.approx(0.0018)


def test_a_stage_job_calling_titan_llm_as_an_attribute_is_recorded(
        cluster: Cluster, api: FakeLLMServer) -> None:
    # `import titan` then `titan.llm.complete(...)`, as the README writes it: such a script
    # imports nothing the lean zygote lacks, so it was forked from it, where titan.trace was
    # never loaded: the call answered, and the agent run recorded nothing of it.
    script = cluster.script("attr_llm.py", "import sys\nimport titan\n"
                            "c = titan.llm.complete('hi', model='openai/fake-model', "
                            "api_base=sys.argv[1], api_key='sk-fake')\nprint(c.text)\n")
    from titan_sdk import TitanJob

    client = cluster.client()
    for run_id in ("ATTRLLM_a1b2c3", "ATTRLLM_d4e5f6"):  # the second from a warm zygote
        dag = client.submit_dag(f"{run_id}_PLAN", [TitanJob("plan", script, args=[api.url])],
                                agent_run_id=run_id, wait=True, timeout=120)
        assert dag["status"] == "COMPLETED", client.fetch_logs(f"{dag['ref']}/plan")
        assert "Hello from the fake model." in client.fetch_logs(f"{dag['ref']}/plan")
        deadline = time.monotonic() + 20
        while not (calls := llm_actions(cluster, run_id)):
            assert time.monotonic() < deadline, f"{run_id} recorded no LLM call"
            time.sleep(0.1)
        assert [(a["outcome"], a["outputs"]["text"]) for a in calls] == [
            ("success", "Hello from the fake model.")]


def test_a_call_to_a_model_that_is_not_there_costs_nothing(cluster: Cluster) -> None:
    # A local model that cannot load (llama-cpp-python not installed, no model file) is never
    # asked anything: the call cost $0. Recorded with no cost, it was an unpriced call and the
    # run's cost read "unknown" on the Runs page for a call that never happened.
    script = cluster.script("absent_llm.py", "import titan\ntry:\n"
                            "    titan.llm.complete('hi', model='local')\n"
                            "except titan.errors.ModelUnavailable as exc:\n"
                            "    print('unavailable:', exc)\n")
    from titan_sdk import TitanJob

    client = cluster.client()
    dag = client.submit_dag("ABSENTLLM_a1b2c3_PLAN", [TitanJob(
        "plan", script, env={"TITAN_LOCAL_MODEL": str(cluster.root / "no-such-model.gguf")})],
        agent_run_id="ABSENTLLM_a1b2c3", wait=True, timeout=120)
    assert "unavailable:" in client.fetch_logs(f"{dag['ref']}/plan")
    deadline = time.monotonic() + 20
    while not (calls := llm_actions(cluster, "ABSENTLLM_a1b2c3")):
        assert time.monotonic() < deadline, "no LLM call recorded"
        time.sleep(0.1)
    assert [(a["outcome"], a["cost_usd"], a["cost_source"]) for a in calls] == [
        ("error", 0.0, "unavailable")]
    run = cluster.api("GET", "/runs/ABSENTLLM_a1b2c3")
    assert (run["cost_usd"], run["unpriced_calls"]) == (0.0, 0)


# A driver that names its run after TITAN_AGENT_RUN_ID when it has one (a job of a run) and
# after its argument when run by hand, asks the model before its first stage (when it does
# not know its run yet: nothing records that call) and, as a job of a run, once more. Its
# replay's DRIVER job is a job of the replay's run: both calls go to the model again.
LIVE_DRIVER = '''
import json, os, sys
import titan
from titan import llm, TitanClient, TitanJob

api = sys.argv[1]
llm.register_price("openai/fake-model", 1000.0, 1000.0)  # 18 tokens: $0.018 a call


def ask(prompt):
    return llm.complete(prompt, model="openai/fake-model", api_base=api,
                        api_key="sk-fake").text


run_id = os.environ.get("TITAN_AGENT_RUN_ID") or sys.argv[2]
plan = ask("plan")
if os.environ.get("TITAN_AGENT_RUN_ID"):
    ask("which run am I in?")
stage = os.path.join(os.path.dirname(os.path.abspath(__file__)), "live_stage.py")
TitanClient().submit_dag(f"{run_id}_S1", [TitanJob("w0", stage, args=[api])],
                         agent_run_id=run_id, wait=True, timeout=60)
summary = ask("summarise: " + plan)
print(json.dumps({"run": run_id, "summary": summary}))
'''

LIVE_STAGE = '''
import sys
from titan import llm

llm.register_price("openai/fake-model", 1000.0, 1000.0)
print(llm.complete("work", model="openai/fake-model", api_base=sys.argv[1],
                   api_key="sk-fake").text)
'''


def replay_cli_status(cluster: Cluster, *args: str) -> tuple[int, str, dict[str, Any]]:
    """`titan replay` as a user types it: its exit status, what it printed, its report."""
    env = dict(os.environ, TITAN_HOST="127.0.0.1", TITAN_PORT=str(cluster.port),
               TITAN_TOKEN=cluster.admin_token)
    done = subprocess.run([sys.executable, "-m", "titan", "replay", *args], env=env,
                          capture_output=True, text=True, timeout=240, cwd=cluster.root)
    assert done.stdout.startswith("Replay "), done.stdout + done.stderr
    replay_id = done.stdout.split()[1]
    return done.returncode, done.stdout, cluster.api("GET", f"/runs/{replay_id}/replay")


def test_a_replays_calls_that_go_to_the_model_are_counted_priced_and_shown(
        cluster: Cluster, api: FakeLLMServer) -> None:
    # The replay's DRIVER job has TITAN_AGENT_RUN_ID: the driver asked the model before its
    # first stage, and took the branch for a job of a run. Both calls went to the model
    # while the report said "Replay cost $0.0000", 100 % matched and no divergence.
    cluster.script("live_stage.py", LIVE_STAGE)
    out = run_agent(cluster, LIVE_DRIVER, api.url, f"LIVEDRV_{time.monotonic_ns() % 10**6}")
    run_id = out["run"]
    assert len(api.received) == 3  # plan, the stage's call, the summary
    recorded = {a["actor"] for a in llm_actions(cluster, run_id)}
    assert recorded == {"S1/w0", "DRIVER/driver"}, recorded  # the plan was not recorded
    before = len(api.received)
    status, printed, report = replay_cli_status(cluster, run_id)
    went = [r.body["messages"][0]["content"] for r in api.received[before:]]
    assert went == ["plan", "which run am I in?"], went
    # Every recorded call was served...
    assert (report["matched"], report["recorded"]) == (2, 2), report
    # ...and the two that went to the model are said and priced: live calls made outside
    # any run, where the original's were unrecorded too (no divergence: nothing recorded
    # them to diverge from; what they returned shows in the stages that follow).
    assert report["live_calls"] == 2, report
    assert report["replay"]["cost_usd"] == pytest.approx(0.036), report["replay"]
    assert report["divergences_by_kind"] == {}, report["divergences"]
    kinds = [(u["channel"], u["name"], u["actor"].split("/outside-run-")[0])
             for u in report["unrecorded_calls"]]
    assert kinds == [("llm", "call_llm", "DRIVER/driver")] * 2, report["unrecorded_calls"]
    assert "Replay cost    $0.0360\n" in printed, printed
    assert "Live calls     2" in printed and "Divergences    0" in printed, printed
    assert "⚡ Ran live, unrecorded" in printed, printed
    assert status == 0, printed


HELPER_AGENT = '''
import json, os, subprocess, sys
import titan
from titan import llm

HELPER = """
import sys
from titan import llm
llm.register_price("openai/fake-model", 1000.0, 1000.0)
print(llm.complete("helper", model="openai/fake-model", api_base=sys.argv[1],
                   api_key="sk-fake").text)
"""
llm.register_price("openai/fake-model", 1000.0, 1000.0)
with titan.trace.run("helper-agent") as run:
    llm.complete("first", model="openai/fake-model", api_base=sys.argv[1], api_key="sk-fake")
    # Handed the run's id, as a helper the script starts with its own environment would be.
    env = dict(os.environ, TITAN_AGENT_RUN_ID=run.id)
    helped = subprocess.run([sys.executable, "-c", HELPER, sys.argv[1]], env=env, check=True,
                            capture_output=True, text=True).stdout.strip()
print(json.dumps({"run": run.id, "helped": helped}))
'''


def test_a_helper_process_that_joins_the_run_by_its_id_replays_from_its_recording(
        cluster: Cluster, api: FakeLLMServer) -> None:
    # The helper recorded as the actor `main`, which its replay (given the replay's run id)
    # never looked up: it ran outside any run, went to the model, and cost money again. It
    # records as the block's helper now, and its replay serves it.
    out = run_agent(cluster, HELPER_AGENT, api.url)
    assert {a["actor"] for a in llm_actions(cluster, out["run"])} == {
        "helper-agent", "helper-agent/proc-1"}
    before = len(api.received)
    status, printed, report = replay_cli_status(cluster, out["run"])
    assert api.received[before:] == [], [r.body["messages"] for r in api.received[before:]]
    assert (report["matched"], report["recorded"]) == (2, 2), report
    assert report["live_calls"] == 0 and report["divergence_count"] == 0, report["divergences"]
    assert report["replay"]["cost_usd"] == 0.0, report["replay"]
    assert status == 0, printed


def titan_cli(cluster: Cluster, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, TITAN_HOST="127.0.0.1", TITAN_PORT=str(cluster.port),
               TITAN_TOKEN=cluster.admin_token)
    return subprocess.run([sys.executable, "-m", "titan", *args], env=env, capture_output=True,
                          text=True, timeout=240, cwd=cluster.root)


def test_a_replay_of_no_run_a_running_run_or_an_edited_recording_is_refused_saying_why(
        cluster: Cluster, api: FakeLLMServer) -> None:
    import sqlite3

    from tests.integration.test_runs_api import error

    # No such run: 404, and the CLI says which run.
    error(cluster, "POST", "/runs/no-such-run/replay", {}, status=404, code="not_found")
    done = titan_cli(cluster, "replay", "no-such-run")
    assert (done.returncode, done.stderr) == (1, "error: no agent run 'no-such-run'\n"), done
    # A run still recording: its recording is not complete.
    cluster.api("POST", "/runs", {"id": "still-recording", "agent_id": "hostile"})
    body = error(cluster, "POST", "/runs/still-recording/replay", {}, status=409,
                 code="replay_not_available")
    assert "still running" in body["message"], body
    # A recording edited in the database after it was recorded: a replay served the edited
    # answer as what the run did, and reported a clean, free replay.
    run_id = run_agent(cluster, UNPRICED, api.url, "unpriced")["run"]
    with sqlite3.connect(cluster.data / "titan.db") as conn:
        conn.execute("UPDATE actions SET outputs = ? WHERE run_id = ? AND name = 'call_llm'",
                     ('{"finish_reason":"stop","text":"edited"}', run_id))
    body = error(cluster, "POST", f"/runs/{run_id}/replay", {}, status=409,
                 code="replay_not_available")
    assert "does not verify" in body["message"] and "was edited" in body["message"], body
    assert f"titan runs verify {run_id}" in body["message"], body
    assert not cluster.api("GET", f"/runs/{run_id}/replays")["replays"]  # nothing started
    done = titan_cli(cluster, "replay", run_id)
    assert done.returncode != 0 and "does not verify" in done.stderr, done.stdout + done.stderr
