"""Agents behind an HTTP endpoint: how each way of failing becomes the run's error class,
the automatic second dispatch of a transient transport failure, and the proxy's refusals."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from tests.conftest import free_port
from tests.integration.harness import Cluster
from tests.integration.test_evaluations import evals_cluster, fake_llm  # noqa: F401 (fixtures)
from titan.errors import APIError, ValidationFailed
from titan.evals import Proxy

TOOLS = [{"name": "get_order", "description": "Look up an order.",
          "input_schema": {"type": "object", "properties": {"order_id": {"type": "string"}},
                           "required": ["order_id"]}}]
TASK = {"id": "t1", "user_instruction": "What is the status of order A-1001?",
        "initial_state": {"order": {"A-1001": {"status": "processing"}}}}


class _Agent(BaseHTTPRequestHandler):
    """An agent service whose path says how it behaves."""

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass

    def _reply(self, status: int, body: bytes, kind: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:  # noqa: N802
        task = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        proxy = Proxy(task["proxy"]["url"], task["proxy"]["token"])
        path = self.path.strip("/")
        if path == "ok":
            order = proxy.call("get_order", {"order_id": "A-1001"}, actor="support")
            proxy.event("assistant_message", {"text": "looked it up"})
            body = {"final_response": f"Order A-1001 is {order['status']}.",
                    "messages": [{"role": "user", "content": task["user_instruction"]}],
                    "trace_id": "x"}
            self._reply(200, json.dumps(body).encode())
        elif path == "ordered":
            # A thinking event reported after the fact, stamped (seed 003's __occurred_at)
            # before the tool call it led to; a bad stamp is refused.
            before = time.time()
            order = proxy.call("get_order", {"order_id": "A-1001"})
            proxy.event("thinking", {"text": "check the order first"}, occurred_at=before - 1)
            try:
                proxy._post(f"{proxy.run_url}/eval/events",
                            {"events": [{"kind": "custom", "__occurred_at": "yesterday"}]})
                refused = "no"
            except APIError as exc:
                refused = exc.message
            body = {"final_response": f"Order A-1001 is {order['status']}.", "refused": refused}
            self._reply(200, json.dumps(body).encode())
        elif path == "unauthorized":
            self._reply(401, b'{"error": "bad api key"}')
        elif path == "boom":
            self._reply(500, b"Internal Server Error", "text/plain")
        elif path == "missing":
            self._reply(404, b'{"error": "no such route"}')
        elif path == "garbage":
            self._reply(200, b"<html>not json</html>", "text/html")
        elif path == "slow":
            time.sleep(3)
            self._reply(200, b'{"final_response": "late"}')
        elif path == "trickle":
            # Headers at once, then a byte every 0.2 s: each read is quick, the answer never
            # is (10 s in all). timeout_s bounds the whole answer, not each read.
            body = b'{"final_response": "late"}' + b" " * 24
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            with contextlib.suppress(OSError):  # the master hung up: what the test wants
                for i in range(len(body)):
                    self.wfile.write(body[i:i + 1])
                    self.wfile.flush()
                    time.sleep(0.2)
        elif path in ("huge", "huge-chunked"):
            # A valid answer, 17 MiB of it: said up front (Content-Length), or only found
            # while reading (chunked, no length).
            body = b'{"final_response": "' + b"x" * (17 << 20) + b'"}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            if path == "huge":
                self.send_header("Content-Length", str(len(body)))
            else:
                self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            with contextlib.suppress(OSError):
                for i in range(0, len(body), 1 << 20):
                    part = body[i:i + (1 << 20)]
                    if path == "huge":
                        self.wfile.write(part)
                    else:
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
                if path == "huge-chunked":
                    self.wfile.write(b"0\r\n\r\n")
        elif path == "reset":
            self.connection.shutdown(socket.SHUT_RDWR)
        elif path == "wrong-tool":
            try:
                proxy.call("refund_everything", {})
            except APIError as exc:
                self._reply(500, json.dumps({"error": exc.message}).encode())
        elif path == "wrong-token":
            try:
                Proxy(task["proxy"]["url"], "tr_not-this-runs-token").call(
                    "get_order", {"order_id": "A-1001"})
            except APIError as exc:
                self._reply(500, json.dumps({"error": exc.message}).encode())
        elif path == "interfered":
            # The agent calls with its token, someone else calls for its run without one
            # (or with a viewer's), then the agent crashes on its own: a crash, not a
            # misconfigured proxy (anyone knowing the run id could plant that verdict).
            proxy.call("get_order", {"order_id": "A-1001"})
            said = []
            for token in ("tr_someone-elses", VIEWER[0]):
                # Sent raw, as whoever it is would: Titan's Proxy asks the master to prove
                # it holds a token first, and one it never issued is never sent.
                said.append(httpx.post(f"{task['proxy']['url']}/get_order",
                                       json={"arguments": {"order_id": "A-1"}},
                                       headers={"Authorization": f"Bearer {token}"},
                                       timeout=10).status_code)
            self._reply(500, json.dumps({"error": "crashed", "said": said}).encode())
        elif path == "bad-args":
            try:
                proxy.call("get_order", {"order_id": 1001})
            except APIError as exc:
                self._reply(502, json.dumps({"error": exc.message}).encode())


@pytest.fixture(scope="module")
def agent_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Agent)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


VIEWER = [""]  # a viewer's token, for the "interfered" agent


def run_one(c: Cluster, name: str, url: str, **agent: Any) -> dict[str, Any]:
    client = c.client()
    client.create_evaluation(name, {"name": "svc", "kind": "http", "url": url, "tools": TOOLS,
                                    "timeout_s": 20, "headers": {"X-Api-Key": "secret"},
                                    **agent}, [TASK])
    client.run_evaluation(name)
    view = client.wait_evaluation(name, timeout=60)
    row: dict[str, Any] = view["tasks"][0]
    return row


def test_a_working_endpoint_completes_with_its_calls_and_events(
        evals_cluster: Cluster, agent_url: str) -> None:  # noqa: F811
    row = run_one(evals_cluster, "http-ok", f"{agent_url}/ok")
    assert row["run"]["status"] == "completed" and row["run"]["by_source"]["odyssey"] == 1
    trace = evals_cluster.client().evaluation_run("http-ok", "t1", row["run"]["id"])
    assert trace["final_response"] == "Order A-1001 is processing."
    kinds = [(t["type"], t.get("tool") or t.get("kind")) for t in trace["timeline"]]
    assert kinds == [("tool", "get_order"), ("event", "assistant_message")]
    assert trace["timeline"][0]["actor"] == "support"
    assert trace["messages"][0]["role"] == "user"
    assert any("trace_id" in w for w in trace["debug"]["soft_warnings"])
    assert "secret" not in json.dumps(evals_cluster.api("GET", "/evaluations/http-ok"))


def test_events_order_by_occurred_at_and_simulated_calls_show_as_odyssey(
        evals_cluster: Cluster, agent_url: str) -> None:  # noqa: F811
    row = run_one(evals_cluster, "http-ordered", f"{agent_url}/ordered")
    assert row["run"]["status"] == "completed", row
    assert row["odyssey_seed"] == {"behavior_instructions": row["behavior_instructions"]}
    trace = evals_cluster.client().evaluation_run("http-ordered", "t1", row["run"]["id"])
    kinds = [(t["type"], t.get("tool") or t.get("kind")) for t in trace["timeline"]]
    assert kinds == [("event", "thinking"), ("tool", "get_order")]
    assert trace["timeline"][0]["__occurred_at"] == pytest.approx(trace["timeline"][0]["at"])
    assert trace["timeline"][1]["source"] == "odyssey"  # seed 003: badge and source alike
    assert trace["timeline"][1]["badge"] == "odyssey"
    assert "__occurred_at must be epoch seconds or an ISO 8601 time, got 'yesterday'" \
        in json.loads(trace["debug"]["raw_response"])["refused"]
    assert trace["seed"]["odyssey_seed"]["behavior_instructions"] == \
        trace["seed"]["behavior_instructions"]


@pytest.mark.parametrize(("path", "error_class", "palette"), [
    ("unauthorized", "auth_failed", "danger"),
    ("boom", "agent_5xx", "danger"),
    ("missing", "agent_4xx", "amber"),
    ("garbage", "agent_bad_response", "warning"),
    ("slow", "agent_timeout", "warning"),
    ("wrong-tool", "proxy_misconfigured", "amber"),
    # Refused by the body guard before the proxy reads the call, and still counted.
    ("wrong-token", "proxy_misconfigured", "amber"),
    ("bad-args", "contract_error", "danger"),
])
def test_each_failure_gets_its_error_class(evals_cluster: Cluster, agent_url: str,  # noqa: F811
                                           path: str, error_class: str, palette: str) -> None:
    timeout = {"timeout_s": 1.5} if path == "slow" else {}
    row = run_one(evals_cluster, f"http-{path}", f"{agent_url}/{path}", **timeout)
    run = row["run"]
    assert (run["status"], run["error_class"]) == ("failed", error_class), run
    assert run["chip"]["palette"] == palette and run["chip"]["hint"]
    assert run["verdict"] == "PENDING"  # nothing to judge: the card says NOT APPLICABLE
    trace = evals_cluster.client().evaluation_run(f"http-{path}", "t1", run["id"])
    assert trace["judge"]["verdict"] == "NOT_APPLICABLE"
    assert row["run_count"] == 1  # not a transient failure: no second dispatch


def test_timeout_s_bounds_the_whole_answer_of_an_endpoint_that_trickles(
        evals_cluster: Cluster, agent_url: str) -> None:  # noqa: F811
    started = time.monotonic()
    row = run_one(evals_cluster, "http-trickle", f"{agent_url}/trickle", timeout_s=1.5)
    took = time.monotonic() - started
    run = row["run"]
    assert (run["status"], run["error_class"]) == ("failed", "agent_timeout"), run
    assert "1.5 s" in run["error_detail"], run
    assert took < 8, took  # the trickle would have lasted 10 s


@pytest.mark.parametrize("path", ["huge", "huge-chunked"])
def test_an_answer_over_16_mib_is_refused_unread(evals_cluster: Cluster, agent_url: str,  # noqa: F811
                                                 path: str) -> None:
    row = run_one(evals_cluster, f"http-{path}", f"{agent_url}/{path}")
    run = row["run"]
    assert (run["status"], run["error_class"]) == ("failed", "agent_bad_response"), run
    assert "larger than 16 MiB" in run["error_detail"], run
    trace = evals_cluster.client().evaluation_run(f"http-{path}", "t1", run["id"])
    assert not trace["debug"]["raw_response"]  # nothing of it kept


def test_requests_for_a_run_from_others_do_not_change_its_verdict(
        evals_cluster: Cluster, agent_url: str) -> None:  # noqa: F811
    VIEWER[0] = evals_cluster.client().create_token("viewer", "eval-viewer")["token"]
    row = run_one(evals_cluster, "http-interfered", f"{agent_url}/interfered")
    run = row["run"]
    assert (run["status"], run["error_class"]) == ("failed", "agent_5xx"), run
    # The request without a token is in the record; the viewer's is not (refused 403, it is
    # not the agent's doing).
    trace = evals_cluster.client().evaluation_run("http-interfered", "t1", run["id"])
    assert trace["debug"]["soft_warnings"].count("a proxy request without the run's token") \
        == 1, trace["debug"]


def test_an_unreachable_agent_is_agent_unreachable(evals_cluster: Cluster) -> None:  # noqa: F811
    row = run_one(evals_cluster, "http-dead", f"http://127.0.0.1:{free_port()}/agent")
    assert row["run"]["error_class"] == "agent_unreachable"
    assert row["run"]["chip"]["label"] == "unreachable"


def test_a_transport_failure_is_dispatched_once_more(evals_cluster: Cluster,  # noqa: F811
                                                     agent_url: str) -> None:
    client = evals_cluster.client()
    first = run_one(evals_cluster, "http-reset", f"{agent_url}/reset")
    deadline = time.time() + 30
    while time.time() < deadline:
        runs = evals_cluster.api("GET", "/evaluations/http-reset/tasks/t1/runs")["runs"]
        if len(runs) == 2 and all(r["status"] == "failed" for r in runs):
            break
        time.sleep(0.2)
    assert [r["error_class"] for r in runs] == ["transport_error", "transport_error"]
    retry, original = runs
    assert retry["redispatch_of"] == original["id"]
    assert first["run"]["id"] in (retry["id"], original["id"])
    time.sleep(1.0)  # a retry of the retry would have been dispatched by now
    assert client.evaluation("http-reset")["tasks"][0]["run_count"] == 2


def _error(c: Cluster, method: str, path: str, body: Any, token: str | None = None
           ) -> tuple[int, dict[str, Any]]:
    import urllib.error

    try:
        c.api(method, path, body, token=token)
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())["error"]
    raise AssertionError(f"{method} {path} succeeded")


def test_bad_input_gets_a_clear_error_and_stores_nothing(evals_cluster: Cluster  # noqa: F811
                                                         ) -> None:
    c = evals_cluster
    agent = {"name": "svc", "kind": "http", "url": "http://127.0.0.1:9/", "tools": TOOLS}
    status, err = _error(c, "PUT", "/evaluations/bad", {"agent": agent | {"tools": [
        {"name": "t", "mode": "passthrough"}]}})
    assert status == 400 and err["message"].startswith("agent.tools[0].endpoint:")
    status, err = _error(c, "PUT", "/evaluations/bad", {"agent": agent, "tasks": [
        {"id": "ok", "user_instruction": "fine"},
        {"id": "broken", "user_instruction": "x", "expected_outcome": "maybe"}]})
    assert status == 400 and "task 2" in err["message"] and "expected_outcome" in err["message"]
    job_agent = {"name": "script", "kind": "job", "script": "agent.py",
                 "script_sha256": "ab" * 32}
    status, err = _error(c, "PUT", "/evaluations/bad", {"agent": job_agent})
    assert status == 400 and "was not uploaded" in err["message"]  # not a 500 at dispatch
    # A judge or simulator model no call can reach is refused as calibrate refuses it: every
    # run was NOT APPLICABLE with LiteLLM's raw error.
    status, err = _error(c, "PUT", "/evaluations/bad", {"agent": agent | {
        "judge_model": "bogus/model"}})
    assert status == 400 and err["message"].startswith(
        "agent.judge_model: bogus/model: no provider serves this model"), err
    if "GEMINI_API_KEY" not in c.env:
        status, err = _error(c, "PUT", "/evaluations/bad", {"agent": agent | {
            "simulator_model": "gemini/gemini-2.0-flash"}})
        assert status == 400 and "agent.simulator_model: gemini/gemini-2.0-flash: no API " \
            "key: set GEMINI_API_KEY" in err["message"], err
    status, err = _error(c, "GET", "/evaluations/bad", None)
    assert status == 404  # nothing was stored
    c.api("PUT", "/evaluations/bad", {"agent": agent})
    status, err = _error(c, "POST", "/evaluations/bad/runs", {})
    assert status == 409 and "no tasks" in err["message"]
    status, err = _error(c, "POST", "/evaluations/bad/runs", {"tasks": ["nope"]})
    assert status == 404 and "no task 'nope'" in err["message"]
    # An empty list given to an evaluation with tasks is said as what it is, not as "has no
    # tasks to run; add some first"; nothing is seeded or run.
    c.api("POST", "/evaluations/bad/tasks", {"tasks": [TASK], "run": False})
    status, err = _error(c, "POST", "/evaluations/bad/runs", {"tasks": []})
    assert status == 400 and "tasks is an empty list" in err["message"], err
    status, err = _error(c, "POST", "/evaluations/bad/tasks", {"tasks": []})
    assert status == 400 and "the list holds no task" in err["message"], err
    header_only = c.root / "header_only.csv"
    header_only.write_text("user_instruction\n")
    with pytest.raises(ValidationFailed, match="header_only.csv: the file holds no task"):
        c.client().add_evaluation_tasks("bad", str(header_only))
    assert c.api("GET", "/evaluations/bad")["summary"]["runs"] == 0
    viewer = c.client().create_token("viewer", "read-only")["token"]
    status, err = _error(c, "PUT", "/evaluations/bad", {"agent": agent}, token=viewer)
    assert status == 403 and "manage evaluations" in err["message"]
    status, err = _error(c, "POST", "/runs/bad.t1.0000/tools/get_order", {"arguments": {}})
    assert status == 404


SLOW_AGENT = '''
import time
from pathlib import Path
from titan import evals

task = evals.task()
first = evals.call_tool("get_order", {"order_id": "A-1001"})
time.sleep(1)  # the master is killed meanwhile: the second call finds it down
second = evals.call_tool("get_order", {"order_id": "A-1001"})
evals.respond(f"{first['n']} then {second['n']}")
'''


def test_a_run_survives_a_master_restart(make_cluster: Any) -> None:
    from tests.integration.test_durability import wait_for

    c = make_cluster(lease_seconds=30)
    c.start_master()
    c.add_worker(slots=2, name="survivor")
    client = c.client()
    script = c.script("slow_agent.py", SLOW_AGENT)
    # The rules answer the first and the second call: after the restart the master must still
    # know the first call happened (and which rule it fired).
    rules = [{"tool": "get_order", "on_call": n, "payload": {"n": n}, "error": False}
             for n in (1, 2)]
    client.create_evaluation("restart", {"name": "slow", "script": script, "tools": TOOLS,
                                         "judge": False}, [TASK | {"failure_rules": rules}])
    (run,) = client.run_evaluation("restart")

    def called() -> bool:
        return c.api("GET", "/evaluations/restart")["tasks"][0]["run"]["tool_calls"] == 1

    wait_for(called, 30, "the agent's first tool call")
    c.kill_master()
    time.sleep(4)  # down for longer than the agent waits: its next call retries until back
    c.start_master()
    view = c.client().wait_evaluation("restart", timeout=60)
    row = view["tasks"][0]["run"]
    assert row["id"] == run["id"] and row["status"] == "completed", (row, c.log())
    trace = c.client().evaluation_run("restart", "t1", run["id"])
    assert trace["final_response"] == "1 then 2"
    assert row["by_source"]["injected"] == 2
    assert trace["judge"] is None  # judging is off for this agent
