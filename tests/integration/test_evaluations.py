"""Evaluations end to end: the example support agent (examples/eval_agent) run as Titan jobs
against seeded tasks, its tools answered by the master's proxy.

The simulator and the judge talk to a scripted hosted model (tests/fake_llm_api.py — the edge
of the world) so the ledger assertions are exact; test_evaluation_judge_local.py runs the
judge on the real local model.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import free_port
from tests.eval_world import scripted_world
from tests.fake_llm_api import FakeLLMServer, serve
from tests.integration.harness import Cluster, isolated_cluster
from titan.errors import APIError, ValidationFailed

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "eval_agent"
@pytest.fixture(scope="module")
def fake_llm() -> Iterator[FakeLLMServer]:
    with serve() as api:
        api.responder = scripted_world()
        yield api


@pytest.fixture(scope="module")
def evals_cluster(tmp_path_factory: pytest.TempPathFactory,
                  fake_llm: FakeLLMServer) -> Iterator[Cluster]:
    c = isolated_cluster(tmp_path_factory.mktemp("evals"), env={
        "TITAN_LLM_API_BASE": fake_llm.url, "OPENAI_API_KEY": "test-key",
        "TITAN_EVAL_SIMULATOR_MODEL": "openai/simulator",
        "TITAN_EVAL_JUDGE_MODEL": "openai/judge",
        "TITAN_EVAL_HTTP_CONCURRENCY": "2",  # test_eval_outcomes.py counts the calls
        # The scripted agents and tools listen on loopback, which the egress policy refuses
        # unless allowed (docs/security.md).
        "TITAN_EGRESS_ALLOW": "127.0.0.1"})
    try:
        yield c
    finally:
        c.stop()


def by_task(view: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {row["task_id"]: row for row in view["tasks"]}


@pytest.fixture(scope="module")
def support_bot(evals_cluster: Cluster) -> dict[str, Any]:
    client = evals_cluster.client()
    created = client.create_evaluation_from(EXAMPLE / "evaluation.yaml")
    assert created["tasks_added"] == 5
    runs = client.run_evaluation("support-bot")
    assert len(runs) == 5 and all(r["status"] in ("pending", "running") for r in runs)
    return client.wait_evaluation("support-bot", timeout=180)


def trace_of(c: Cluster, evaluation: str, row: dict[str, Any]) -> dict[str, Any]:
    return c.client().evaluation_run(evaluation, row["task_id"], row["run"]["id"])


def test_simulated_answers_change_the_world_ledger(evals_cluster: Cluster,
                                                    support_bot: dict[str, Any]) -> None:
    rows = by_task(support_bot)
    cancel = rows["cancel-processing"]["run"]
    assert cancel["status"] == "completed", cancel
    # Seed 003's source name: a test written from the seed reads by_source["odyssey"].
    assert cancel["tool_calls"] == 2 and cancel["by_source"]["odyssey"] == 2
    assert "simulated" not in cancel["by_source"]
    trace = trace_of(evals_cluster, "support-bot", rows["cancel-processing"])
    tools = [t for t in trace["timeline"] if t["type"] == "tool"]
    assert [t["tool"] for t in tools] == ["get_order", "cancel_order"]
    lookup, cancelled = tools
    assert lookup["ops"] == [] and lookup["source"] == "odyssey"
    assert [t["source"] for t in tools if t["source"] == "odyssey"] == ["odyssey", "odyssey"]
    assert lookup["state"]["entities"]["order"]["A-1002"]["status"] == "processing"
    assert {op["op"] for op in cancelled["ops"]} == {"update", "set_flag"}
    assert cancelled["state"]["entities"]["order"]["A-1002"]["status"] == "cancelled"
    assert cancelled["state"]["flags"] == {"refund_issued": True}
    assert trace["world"]["flags"] == {"refund_issued": True}
    assert trace["final_response"] == "Order A-1002 has been cancelled."
    # The behaviour rules are the simulator's secret: the agent's job never saw them.
    assert "refund_issued" not in json.dumps(trace["timeline"][0].get("arguments"))


def test_failure_rule_injects_its_payload(evals_cluster: Cluster,
                                          support_bot: dict[str, Any]) -> None:
    row = by_task(support_bot)["lookup-outage"]
    assert row["run"]["by_source"]["injected"] == 1
    trace = trace_of(evals_cluster, "support-bot", row)
    (call,) = [t for t in trace["timeline"] if t["type"] == "tool"]
    assert call["source"] == "injected"
    assert call["response"] == {"error": "order service unavailable (503)"}
    assert call["error"] == "injected failure (failure rule 1)"
    assert "order service unavailable" in trace["final_response"]


def test_explorer_rows_and_trace_sections(evals_cluster: Cluster,
                                          support_bot: dict[str, Any]) -> None:
    rows = by_task(support_bot)
    assert list(rows) == ["status-check", "cancel-processing", "cancel-shipped",
                          "lookup-outage", "other-customer"]
    status = rows["status-check"]["run"]
    assert status["agent"] == {"name": "support-bot", "version": "1.0"}
    assert status["verdict"] == "PASS" and status["latency_s"] > 0
    assert status["cost"]["total_usd"] == pytest.approx(
        status["cost"]["agent_usd"] + status["cost"]["simulator_usd"]
        + status["cost"]["judge_usd"])
    # "openai/simulator" has no known price: its calls are counted, so the cost reads as a
    # lower bound (the pages and the CLI write "unknown" or "≥ $X"), never as $0.
    assert status["cost"]["simulator_unpriced"] == status["tool_calls"] >= 1, status["cost"]
    assert status["cost"]["unpriced_calls"] >= status["cost"]["simulator_unpriced"]
    assert support_bot["summary"]["unpriced_calls"] == sum(
        r["run"]["cost"]["unpriced_calls"] for r in rows.values())
    trace = trace_of(evals_cluster, "support-bot", rows["status-check"])
    assert trace["header"]["status"] == "completed" and trace["completion_warning"] is None
    assert trace["judge"]["verdict"] == "PASS" and "Step 1" in trace["judge"]["reasoning"]
    assert trace["judge"]["instruction_adherence"] is None  # no behaviour instructions
    assert trace["seed"]["user_instruction"] == "What is the status of my order A-1001?"
    assert trace["structure"] is None  # a single agent: no card
    assert [r["id"] for r in trace["runs"]] == [status["id"]]
    # Declared tools, zero proxied calls, the run not failed.
    refusal = trace_of(evals_cluster, "support-bot", rows["other-customer"])
    assert refusal["header"]["status"] == "completed"
    # A refusal the task expects makes no call by design: no warning that the proxy failed.
    assert refusal["completion_warning"] is None
    assert "can't help" in refusal["final_response"]


def test_rerun_returns_202_and_keeps_the_original(evals_cluster: Cluster,
                                                  support_bot: dict[str, Any]) -> None:
    row = by_task(support_bot)["cancel-shipped"]
    first = row["run"]["id"]
    path = f"/evaluations/support-bot/tasks/cancel-shipped/runs/{first}/re-run"
    import urllib.request

    req = urllib.request.Request(f"{evals_cluster.url}/api/v1{path}", method="POST", headers={
        "Authorization": f"Bearer {evals_cluster.admin_token}"})
    with urllib.request.urlopen(req, timeout=30) as r:
        assert r.status == 202
        reply = json.loads(r.read())
    assert reply["source_run_id"] == first and reply["run_id"] != first
    client = evals_cluster.client()
    view = client.wait_evaluation("support-bot", timeout=120)
    latest = by_task(view)["cancel-shipped"]
    assert latest["run"]["id"] == reply["run_id"] and latest["run_count"] == 2
    assert latest["run"]["source_run"] == first
    runs = evals_cluster.api("GET", "/evaluations/support-bot/tasks/cancel-shipped/runs")["runs"]
    assert [r["id"] for r in runs] == [reply["run_id"], first]
    assert all(r["status"] == "completed" for r in runs)
    # A missing level is named as the project routes name it: the evaluation, then the task.
    for bad, said in (("/evaluations/zz/tasks/t1/runs/x/re-run", "no evaluation 'zz'"),
                      ("/evaluations/support-bot/tasks/nope/runs/x/re-run", "no task 'nope'")):
        req = urllib.request.Request(f"{evals_cluster.url}/api/v1{bad}", method="POST",
                                     headers={"Authorization": f"Bearer {evals_cluster.admin_token}"})
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(req, timeout=30)
        assert caught.value.code == 404 and said in caught.value.read().decode(), bad


def test_team_agent_gets_its_multi_agent_card(evals_cluster: Cluster) -> None:
    client = evals_cluster.client()
    spec = json.loads(json.dumps(__import__("yaml").safe_load(
        (EXAMPLE / "evaluation.yaml").read_text())))
    agent = spec["agent"] | {"args": ["--team"], "topology": {
        "nodes": [{"id": "lookup", "tools": ["get_order"]},
                  {"id": "billing", "tools": ["cancel_order"]},
                  {"id": "audit", "tools": []}]}}
    client.create_evaluation("support-team", agent, [
        {"id": "cancel", "user_instruction": "Please cancel my order A-1002.",
         "initial_state": {"order": {"A-1002": {"status": "processing", "total": 19.0}}}}],
        base=EXAMPLE)
    client.run_evaluation("support-team")
    view = client.wait_evaluation("support-team", timeout=120)
    row = view["tasks"][0]
    assert row["run"]["status"] == "completed", row
    first = trace_of(evals_cluster, "support-team", row)
    card = first["structure"]
    assert card is not None and card["declared"] is True
    assert card["stats"] == {"sub_agents": 3, "depth": 1, "handoffs": 2}
    assert [r["id"] for r in card["roster"]] == ["", "audit", "billing", "lookup"]
    assert card["divergence"] == {"declared_only": ["audit"], "undeclared": []}
    assert card["attribution"] == {"total": 2, "derived": 2, "credited": 0, "unattributed": 0}
    assert [(h["from"], h["to"]) for h in card["handoffs"]] == [("", "lookup"), ("", "billing")]
    # Read again: the same graph, byte for byte.
    again = trace_of(evals_cluster, "support-team", row)["structure"]
    assert json.dumps(again) == json.dumps(card)


class _Tools(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass

    def do_POST(self) -> None:  # noqa: N802
        args = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        body = json.dumps({"id": args["order_id"], "status": "delivered", "total": 7.0}).encode()
        if self.path == "/huge":  # valid JSON, over the 16 MiB an answer may have
            body = json.dumps({"id": args["order_id"], "notes": "x" * (17 << 20)}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        with contextlib.suppress(OSError):  # the master hung up on /huge
            self.wfile.write(body)


def test_passthrough_reaches_a_real_endpoint_and_a_dead_one_is_a_transport_error(
        evals_cluster: Cluster) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Tools)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        spec = __import__("yaml").safe_load((EXAMPLE / "evaluation.yaml").read_text())
        client = evals_cluster.client()
        for name, endpoint in (("live-orders", f"http://127.0.0.1:{server.server_address[1]}"),
                               ("dead-orders", f"http://127.0.0.1:{free_port()}/orders"),
                               ("huge-orders",
                                f"http://127.0.0.1:{server.server_address[1]}/huge")):
            agent = dict(spec["agent"])
            agent["tools"] = [dict(agent["tools"][0], mode="passthrough", endpoint=endpoint),
                              agent["tools"][1]]
            client.create_evaluation(name, agent, [
                {"id": "where", "user_instruction": "Where is order A-1001?"}], base=EXAMPLE)
            client.run_evaluation(name)
        live = client.wait_evaluation("live-orders", timeout=120)["tasks"][0]
        dead = client.wait_evaluation("dead-orders", timeout=120)["tasks"][0]
        huge = client.wait_evaluation("huge-orders", timeout=120)["tasks"][0]
    finally:
        server.shutdown()
    assert live["run"]["by_source"]["passthrough"] == 1
    assert trace_of(evals_cluster, "live-orders", live)["final_response"] == \
        "Order A-1001 is delivered."
    assert dead["run"]["by_source"]["transport_error"] == 1
    trace = trace_of(evals_cluster, "dead-orders", dead)
    (call,) = [t for t in trace["timeline"] if t["type"] == "tool"]
    assert call["source"] == "transport_error" and "ConnectError" in call["error"]
    # The agent caught the failure and said so: the run completed, the call did not.
    assert "transport_error" in trace["final_response"]
    # An answer over 16 MiB is refused unread, a failed hop like a dead endpoint.
    (call,) = [t for t in trace_of(evals_cluster, "huge-orders", huge)["timeline"]
               if t["type"] == "tool"]
    assert call["source"] == "transport_error" and "larger than 16 MiB" in call["error"], call


def test_coding_task_gets_its_diff_and_scorer_badges(evals_cluster: Cluster) -> None:
    client = evals_cluster.client()
    client.create_evaluation_from(EXAMPLE / "coding_evaluation.yaml")
    client.run_evaluation("calc-fixer")
    view = client.wait_evaluation("calc-fixer", timeout=120)
    row = view["tasks"][0]
    assert row["kind"] == "coding" and row["run"]["status"] == "completed", row
    trace = trace_of(evals_cluster, "calc-fixer", row)
    coding = trace["coding"]
    assert coding["eval_error"] is None, coding
    assert coding["changed_paths"] == ["calc.py"]
    assert "-    return a - b" in coding["diff"] and "+    return a + b" in coding["diff"]
    assert "setup.log" not in coding["diff"]  # seeding artifacts are not the agent's change
    verdicts = {s["name"]: s["verdict"] for s in coding["scorers"]}
    assert verdicts == {"tests": "PASS", "allowed-paths": "PASS", "forbid-paths": "PASS"}
    assert coding["overall"] == "PASS"
    commands = [s["command"] for s in coding["trajectory"] if s["kind"] == "command"]
    assert "python test_calc.py" in commands
    assert {"kind": "edit", "path": "calc.py"} in [
        {k: s.get(k) for k in ("kind", "path")} for s in coding["trajectory"]]
    assert trace["final_response"].startswith("Fixed add()")


CODEX_AGENT = """\
import json, os, time
from pathlib import Path
Path("calc.py").write_text("def add(a, b):\\n    return a + b\\n")
now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
items = [
    {"timestamp": now, "type": "session_meta", "payload": {"cwd": os.getcwd()}},
    {"timestamp": now, "type": "response_item", "payload": {"type": "reasoning", "summary": []}},
    {"timestamp": now, "type": "response_item", "payload": {
        "type": "function_call", "name": "shell", "call_id": "c1",
        "arguments": json.dumps({"command": ["bash", "-lc", "python test_calc.py"]})}},
    {"timestamp": now, "type": "response_item", "payload": {
        "type": "function_call_output", "call_id": "c1",
        "output": json.dumps({"output": "ok\\n", "metadata": {"exit_code": 0}})}},
    {"timestamp": now, "type": "response_item", "payload": {
        "type": "message", "role": "assistant",
        "content": [{"type": "output_text", "text": "add() now adds."}]}},
]
# What a wrapper around the CLI does: leave the session's rollout where Titan reads it.
out = Path(os.environ["TITAN_EVAL_TRANSCRIPTS"]) / "rollout.jsonl"
out.write_text("".join(json.dumps(i) + "\\n" for i in items))
"""


def test_a_coding_cli_transcript_becomes_the_trajectory(evals_cluster: Cluster,
                                                        tmp_path: Path) -> None:
    # A Codex CLI rollout left by the agent is read into the run's trajectory: its turn (with
    # its reasoning count), its command with output and exit code, and the edit.
    (tmp_path / "codex_agent.py").write_text(CODEX_AGENT)
    spec = __import__("yaml").safe_load((EXAMPLE / "coding_evaluation.yaml").read_text())
    client = evals_cluster.client()
    client.create_evaluation("codex-fixer", {"name": "codex-fixer", "script": "codex_agent.py",
                                             "timeout_s": 120},
                             spec["tasks"], base=tmp_path)
    client.run_evaluation("codex-fixer")
    row = client.wait_evaluation("codex-fixer", timeout=120)["tasks"][0]
    assert row["run"]["status"] == "completed", row
    coding = trace_of(evals_cluster, "codex-fixer", row)["coding"]
    assert coding["trajectory_source"] == "codex", coding
    steps = [(s["kind"], s.get("text") or s.get("command") or s.get("path"))
             for s in coding["trajectory"]]
    assert steps == [("command", "python test_calc.py"), ("message", "add() now adds."),
                     ("edit", "calc.py")], steps
    assert coding["trajectory"][0]["output"] == "ok\n"
    assert coding["trajectory"][1]["thinking"] == 1
    page = httpx.get(f"{evals_cluster.url}/evaluations/codex-fixer/tasks/{row['task_id']}",
                     headers={"Authorization": f"Bearer {evals_cluster.admin_token}"},
                     timeout=30)
    assert page.status_code == 200, page.text
    assert "rebuilt from the Codex CLI session transcript" in page.text
    assert "add() now adds." in page.text


def test_a_multi_turn_session_has_turn_diffs_and_a_cumulative_one(evals_cluster: Cluster
                                                                   ) -> None:
    client = evals_cluster.client()
    client.create_evaluation_from(EXAMPLE / "session_evaluation.yaml")
    client.run_evaluation("calc-session")
    row = client.wait_evaluation("calc-session", timeout=120)["tasks"][0]
    assert row["run"]["status"] == "completed", row
    coding = trace_of(evals_cluster, "calc-session", row)["coding"]
    assert coding["eval_error"] is None, coding
    first, second = coding["turns"]
    assert first["changed_paths"] == ["calc.py"] and first["overall"] == "PASS"
    assert second["changed_paths"] == ["calc.py", "test_sub.py"]
    assert "+def sub(a, b):" in second["diff"] and "+    return a + b" not in second["diff"]
    assert [s["name"] for s in second["scorers"]] == ["allowed-paths"]
    assert coding["changed_paths"] == ["calc.py", "test_sub.py"]
    assert "+    return a + b" in coding["diff"] and "+def sub(a, b):" in coding["diff"]
    assert {s["name"]: s["verdict"] for s in coding["scorers"]} == {
        "tests": "PASS", "forbid-paths": "PASS"} and coding["overall"] == "PASS"
    page = httpx.get(f"{evals_cluster.url}/evaluations/calc-session/tasks/{row['task_id']}",
                     headers={"Authorization": f"Bearer {evals_cluster.admin_token}"},
                     timeout=30)
    assert page.status_code == 200, page.text
    assert 'id="session" class="session" data-turns="2"' in page.text
    assert "Cumulative diff" in page.text and "Session scorers" in page.text
    assert "Turn 2 diff" in page.text


def test_seeding_a_task_dispatches_its_first_run(evals_cluster: Cluster) -> None:
    # Seed 003: "Runs are created when a task is seeded" - through the SDK, the v1 route and
    # the seed's own route; run=false (SDK, body or query) and --no-run seed without running.
    import subprocess
    import sys

    spec = __import__("yaml").safe_load((EXAMPLE / "evaluation.yaml").read_text())
    client = evals_cluster.client()
    client.create_evaluation("seeding", spec["agent"], [], base=EXAMPLE, project="seeds")
    task = {"user_instruction": "Where is order A-1001?"}
    seeded = client.add_evaluation_tasks("seeding", [dict(task, id="a")])
    assert seeded["tasks"] == ["a"] and [r["task_id"] for r in seeded["runs"]] == ["a"]
    quiet = client.add_evaluation_tasks("seeding", [dict(task, id="b")], run=False)
    assert quiet["runs"] == []
    # A rule on a tool the agent lacks is named by file, task and field, as a file's other
    # errors are (the file was not named: a QA pass).
    bad = evals_cluster.root / "bad_rule.yaml"
    bad.write_text("- {id: ok, user_instruction: hi}\n"
                   "- id: x\n  user_instruction: hi\n"
                   "  failure_rules: [{tool: nosuch, payload: {error: down}}]\n")
    with pytest.raises(ValidationFailed, match=r"bad_rule.yaml: task 2 \('x'\): "
                                               r"failure_rules\[0\].tool names 'nosuch'"):
        client.add_evaluation_tasks("seeding", str(bad), run=False)
    by_query = httpx.post(f"{evals_cluster.url}/api/v1/evaluations/seeding/tasks?run=false",
                          json=[dict(task, id="c")], timeout=30,
                          headers={"Authorization": f"Bearer {evals_cluster.admin_token}"})
    assert by_query.status_code == 200 and by_query.json()["runs"] == [], by_query.text
    seed_route = httpx.post(f"{evals_cluster.url}/api/projects/seeds/workflows/seeding/tasks",
                            json={"tasks": [dict(task, id="d")]}, timeout=30,
                            headers={"Authorization": f"Bearer {evals_cluster.admin_token}"})
    assert seed_route.status_code == 200 and len(seed_route.json()["runs"]) == 1
    wrong = httpx.post(f"{evals_cluster.url}/api/projects/other/workflows/seeding/tasks",
                       json={"tasks": [dict(task, id="e")]}, timeout=30,
                       headers={"Authorization": f"Bearer {evals_cluster.admin_token}"})
    assert wrong.status_code == 404
    bad = httpx.post(f"{evals_cluster.url}/api/v1/evaluations/seeding/tasks", timeout=30,
                     json={"tasks": [dict(task, id="f")], "run": "yes"},
                     headers={"Authorization": f"Bearer {evals_cluster.admin_token}"})
    assert bad.status_code == 400 and "run must be true or false" in bad.text
    tasks_file = evals_cluster.root / "more_tasks.yaml"
    tasks_file.write_text("- id: g\n  user_instruction: Where is order A-1001?\n")
    cli = subprocess.run([sys.executable, "-m", "titan", "eval", "tasks", "seeding",
                          str(tasks_file), "--no-run", "--host", "127.0.0.1", "--port",
                          str(evals_cluster.port), "--token", evals_cluster.admin_token],
                         capture_output=True, text=True, timeout=60, env=evals_cluster.env)
    assert cli.returncode == 0 and "1 task(s) added, 0 updated; no run dispatched" in cli.stdout
    view = client.wait_evaluation("seeding", timeout=120)
    counts = {row["task_id"]: row["run_count"] for row in view["tasks"]}
    assert counts == {"a": 1, "b": 0, "c": 0, "d": 1, "g": 0}


def test_llm_judge_criteria_score_their_own_field_on_their_own_scale(
        evals_cluster: Cluster) -> None:
    # Seed 003: custom scoring is a downstream llm_judge criterion with an independent
    # prompt and scale; the workflow declares some for every task, a task adds its own.
    spec = __import__("yaml").safe_load((EXAMPLE / "evaluation.yaml").read_text())
    agent = dict(spec["agent"], criteria=[
        {"type": "llm_judge", "name": "politeness", "target": "final_response",
         "prompt": "Is the reply polite?", "scale": "1-5"},
        {"type": "llm_judge", "name": "strict tone", "prompt": "Be strict: is it perfect?",
         "scale": "0-10", "pass_threshold": 7},
        {"type": "llm_judge", "name": "names the order", "prompt": "Does it name the order?",
         "scale": "pass_fail"}])
    client = evals_cluster.client()
    client.create_evaluation("criteria", agent, [
        {"id": "where", "user_instruction": "Where is order A-1001?", "scorers": [
            {"type": "llm_judge", "name": "diff review", "target": "diff",
             "prompt": "Is the change minimal?"}]}], base=EXAMPLE)
    client.run_evaluation("criteria")
    row = client.wait_evaluation("criteria", timeout=120)["tasks"][0]
    assert row["run"]["status"] == "completed", row
    assert row["run"]["criteria"] == [
        {"name": "politeness", "verdict": "PASS", "score": 4, "scale": "1-5"},
        {"name": "strict tone", "verdict": "FAIL", "score": 2, "scale": "0-10"},
        {"name": "names the order", "verdict": "PASS", "score": None, "scale": "pass_fail"},
        {"name": "diff review", "verdict": "N/A", "score": None, "scale": "1-5"}]
    trace = trace_of(evals_cluster, "criteria", row)
    review = trace["criteria"][3]
    assert review["error"] == "the run has no diff to score" and review["cost_usd"] == 0.0
    assert trace["criteria"][0]["reasoning"] == "The reply is courteous and direct."
    assert trace["criteria"][0]["pass_threshold"] == 4  # the default: the top 40 % of 1-5
    assert trace["judge"]["verdict"] == "PASS"  # the fixed rubric is scored apart
    page = httpx.get(f"{evals_cluster.url}/evaluations/criteria/tasks/where",
                     headers={"Authorization": f"Bearer {evals_cluster.admin_token}"},
                     timeout=30)
    assert 'id="criteria-card"' in page.text and 'data-name="strict tone"' in page.text
    assert "Not scored: the run has no diff to score" in page.text
    # A criterion is checked when the workflow is defined: the field is named.
    bad = dict(spec["agent"], criteria=[{"type": "llm_judge", "name": "x", "prompt": "y",
                                          "scale": "1-7"}])
    with pytest.raises(APIError, match=r"agent.criteria\[0\].scale: must be one of 1-5, "
                                       r"0-10, pass_fail, got '1-7'"):
        client.create_evaluation("bad-criteria", bad, [], base=EXAMPLE)


def test_cli_shows_the_explorer_and_a_trace(evals_cluster: Cluster,
                                            support_bot: dict[str, Any]) -> None:
    import subprocess
    import sys

    base = [sys.executable, "-m", "titan", "eval"]
    conn = ["--host", "127.0.0.1", "--port", str(evals_cluster.port),
            "--token", evals_cluster.admin_token]
    shown = subprocess.run([*base, "show", "support-bot", *conn], capture_output=True,
                           text=True, timeout=60, env=evals_cluster.env)
    assert shown.returncode == 0, shown.stderr
    assert "status-check" in shown.stdout and "PASS" in shown.stdout
    # Every LLM call of this cluster's simulator and judge is of unknown price: $0.0000 said
    # the runs were free.
    line = next(ln for ln in shown.stdout.splitlines() if ln.startswith("status-check"))
    assert line.endswith(" unknown") and "total cost unknown" in shown.stdout, shown.stdout
    assert "on a model with no known price" in shown.stdout
    trace = subprocess.run([*base, "trace", "support-bot", "lookup-outage", *conn],
                           capture_output=True, text=True, timeout=60, env=evals_cluster.env)
    assert trace.returncode == 0, trace.stderr
    assert "get_order [injected]" in trace.stdout
    simulated = subprocess.run([*base, "trace", "support-bot", "status-check", *conn],
                               capture_output=True, text=True, timeout=60,
                               env=evals_cluster.env)
    assert "  cost unknown" in simulated.stdout, simulated.stdout
    bad = subprocess.run([*base, "run", "no-such-eval", *conn], capture_output=True,
                         text=True, timeout=60, env=evals_cluster.env)
    assert bad.returncode == 1 and "no evaluation 'no-such-eval'" in bad.stderr
    nosuch = subprocess.run([*base, "trace", "support-bot", "no-such-task", *conn],
                            capture_output=True, text=True, timeout=60, env=evals_cluster.env)
    assert nosuch.returncode == 1 and "has no task 'no-such-task'" in nosuch.stderr
    # A run is named by the end of its id, as the explorer shows it; --wait prints the new
    # run's verdict (it needed the full id, and had no --wait).
    first = by_task(support_bot)["other-customer"]["run"]["id"]
    again = subprocess.run([*base, "rerun", "support-bot", "other-customer", first[-8:],
                            "--wait", *conn], capture_output=True, text=True, timeout=180,
                           env=evals_cluster.env)
    assert again.returncode == 0, again.stdout + again.stderr
    waited = subprocess.run([*base, "run", "support-bot", "--task", "status-check", "--wait",
                             *conn], capture_output=True, text=True, timeout=180,
                            env=evals_cluster.env)
    assert "total cost unknown" in waited.stdout, waited.stdout  # it said $0.0000
    assert again.stdout.startswith(f"re-running {first} as "), again.stdout
    assert "other-customer: completed  verdict PASS  (2 runs)" in again.stdout, again.stdout


def test_an_evaluation_name_with_a_slash_gets_the_naming_rule(evals_cluster: Cluster,
                                                              tmp_path: Path) -> None:
    # 'a/b' and '../../etc' reached the URL path as more segments: "error: Not Found",
    # where "x y" got the rule. The CLI says the rule before sending; the master, sent such a
    # name escaped, answers the same 400.
    import subprocess
    import sys

    conn = ["--host", "127.0.0.1", "--port", str(evals_cluster.port),
            "--token", evals_cluster.admin_token]
    for name in ("a/b", "../../etc", "x y"):
        spec = tmp_path / "spec.yaml"
        spec.write_text(json.dumps({"name": name, "agent": {
            "name": "a", "kind": "http", "url": "https://example.com/"}, "tasks": []}))
        out = subprocess.run([sys.executable, "-m", "titan", "eval", "create", str(spec),
                              *conn], capture_output=True, text=True, timeout=60,
                             env=evals_cluster.env)
        assert out.returncode == 1 and out.stderr.strip() == (
            "error: evaluation must be 1-100 letters, digits, '.', '_' or '-' (not only "
            f"dots), got {name!r}"), out.stderr
    body = {"agent": {"name": "a", "kind": "http", "url": "https://example.com/"}}
    for path in ("a%2Fb", "..%2F..%2Fetc", "x%20y"):
        r = httpx.put(f"{evals_cluster.url}/api/v1/evaluations/{path}", json=body, timeout=30,
                      headers={"Authorization": f"Bearer {evals_cluster.admin_token}"})
        assert r.status_code == 400 and "evaluation must be 1-100 letters" in \
            r.json()["error"]["message"], (path, r.status_code, r.text)
    r = httpx.put(f"{evals_cluster.url}/api/v1/evaluations/a%2Fb", json=body, timeout=30)
    assert r.status_code == 401  # the rule is no way around the token
    assert "a" not in {e["id"] for e in evals_cluster.api("GET", "/evaluations")["evaluations"]}
