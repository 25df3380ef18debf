"""The agent under test of a non-coding evaluation cannot read its answer key.

Such an agent's own script is the job (no harness runs it), so the credential its worker hands
it in ``TITAN_TOKEN`` is all it holds. A job token can do what an operator can: read the task
(its behaviour rules, failure rules and seeded world: the answer key), other runs and the
store, submit jobs. Here the agent is an attacker: it tries its credential against those
routes, then does what an agent under test does — calls its run's simulated tool, records an
LLM call and a step of its own into its run with ``titan.llm`` and ``titan.trace``, answers —
and its run is judged as any other.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.eval_world import scripted_world
from tests.fake_llm_api import FakeLLMServer, Received, Reply
from tests.integration.harness import Cluster
from tests.integration.test_evaluations import evals_cluster, fake_llm  # noqa: F401 (fixtures)

SECRET = "hidden-rule-q9z"

ATTACKER = r'''
import json, os, sys

import httpx

import titan
from titan import evals, trace

evaluation = sys.argv[1]
run = os.environ["TITAN_EVAL_RUN"]
task = evals.task()
api = os.environ["TITAN_TOOL_PROXY"].rsplit("/runs", 1)[0]
token = os.environ["TITAN_TOKEN"]
probes = [
    ("read its task's answer key", "GET", f"/evaluations/{evaluation}/tasks/{task['id']}", None),
    ("read the evaluation", "GET", f"/evaluations/{evaluation}", None),
    ("read its run's trace and world", "GET",
     f"/evaluations/{evaluation}/tasks/{task['id']}/runs/{run}", None),
    ("list the runs", "GET", "/runs", None),
    ("submit a job", "POST", "/dags",
     {"name": "agent-escape", "jobs": [{"job_id": "x", "command": "echo escaped"}]}),
    ("write the store", "PUT", "/store/values/agent-escape", {"value": "escaped"}),
    ("read the store", "GET", "/store/values/agent-escape", None),
    ("open a run of its own", "POST", "/runs", {"id": "agent-escape-run"}),
    ("write into another run", "POST", "/runs/agent-escape-run/actions",
     {"actions": [{"channel": "custom", "name": "forged"}]}),
    ("mint an agent token", "POST", f"/runs/{run}/eval/agent-token", None),
]
attempts = []
with httpx.Client(timeout=30, trust_env=False) as http:
    for what, method, path, body in probes:
        r = http.request(method, api + path, json=body,
                         headers={"Authorization": f"Bearer {token}"})
        attempts.append({"what": what, "status": r.status_code,
                         "leaked": "hidden-rule-q9z" in r.text})

# What it may do: its run's tools, its own recording, its answer.
order = evals.call_tool("get_order", {"order_id": "A-1001"})
with trace.action("plan", {"request": task["user_instruction"]}) as step:
    step.outputs = {"order": order}
said = titan.llm.complete("AGENT-LLM: summarise the order", model="openai/agent-model")
trace.flush()
evals.respond(f"Order A-1001 is {order['status']}.")
print("PROBES " + json.dumps({"kind": token.split(".", 1)[0], "attempts": attempts,
                              "llm": said.text}), flush=True)
'''

TASK = {"id": "probe", "user_instruction": "What is the status of my order A-1001?",
        "behavior_instructions": f"Never reveal {SECRET}.",
        "initial_state": {"order": {"A-1001": {"status": "processing", "total": 42.5}},
                          "note": {SECRET: {"kind": "answer key"}}},
        "failure_rules": [{"tool": "cancel_order", "payload": {"error": SECRET}}],
        "expected_steps": 1}
TOOLS = [{"name": "get_order", "description": "Look up an order by id.",
          "input_schema": {"type": "object", "properties": {"order_id": {"type": "string"}},
                           "required": ["order_id"]}},
         {"name": "cancel_order", "description": "Cancel an order.",
          "input_schema": {"type": "object", "properties": {"order_id": {"type": "string"}}}}]


def with_agent_model(world: Callable[[Received], Reply]) -> Callable[[Received], Reply]:
    """The scripted world, plus an answer to the agent's own LLM call."""
    def respond(got: Received) -> Reply:
        if "AGENT-LLM" in json.dumps(got.body):
            return Reply(text="The order is processing.")
        return world(got)
    return respond


def probe_output(c: Cluster, trace: dict[str, Any]) -> dict[str, Any]:
    log = c.client().fetch_logs(f"{trace['header']['id']}_AGENT/agent")
    lines = [ln for ln in log.splitlines() if ln.startswith("PROBES ")]
    assert lines, log
    # Nothing it recorded was refused (the recorder says so on stderr, "[titan.trace] ...").
    assert "[titan.trace]" not in log, log
    found: dict[str, Any] = json.loads(lines[-1][len("PROBES "):])
    return found


def test_a_job_agent_reads_no_answer_key_and_still_records_and_is_judged(
        evals_cluster: Cluster, fake_llm: FakeLLMServer, tmp_path: Path) -> None:  # noqa: F811
    fake_llm.responder = with_agent_model(scripted_world())
    (tmp_path / "attacker.py").write_text(ATTACKER)
    client = evals_cluster.client()
    client.create_evaluation("job-cred-probe", {
        "name": "job-cred-probe", "script": "attacker.py", "args": ["job-cred-probe"],
        "timeout_s": 120, "tools": TOOLS}, [TASK], base=tmp_path)
    client.run_evaluation("job-cred-probe")
    row = client.wait_evaluation("job-cred-probe", timeout=180)["tasks"][0]
    run = row["run"]
    assert run["status"] == "completed", run
    trace = client.evaluation_run("job-cred-probe", row["task_id"], run["id"])
    probed = probe_output(evals_cluster, trace)

    # Its credential is its run's agent token, not a job token ...
    assert probed["kind"] == "ta", probed
    # ... which reads nothing of its task, its run's world, other runs or the store, and
    # submits and writes nothing: refused, each with 403.
    assert probed["attempts"], probed
    for attempt in probed["attempts"]:
        assert attempt["status"] == 403 and not attempt["leaked"], attempt
    assert client.store_get("agent-escape") is None
    assert client.api("GET", "/runs", params={"limit": 1000})["runs"]  # (the route works)
    assert "agent-escape-run" not in [
        r["id"] for r in client.api("GET", "/runs", params={"limit": 1000})["runs"]]

    # It still did all an agent under test does: its tool call went through the proxy, its
    # LLM call and its own step are actions of its run, its answer was judged.
    assert probed["llm"] == "The order is processing."
    assert run["tool_calls"] == 1 and run["by_source"]["odyssey"] == 1, run
    assert trace["final_response"] == "Order A-1001 is processing."
    assert trace["judge"]["verdict"] == "PASS", trace["judge"]
    actions = client.api("GET", f"/runs/{run['id']}/actions", params={"limit": 100})["actions"]
    recorded = {(a["channel"], a["name"]) for a in actions}
    assert ("custom", "plan") in recorded, recorded
    assert any(channel == "llm" for channel, _ in recorded), recorded
    assert ("tool", "get_order") in recorded, recorded
