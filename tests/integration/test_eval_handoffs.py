"""Handoffs: a malformed one is refused with a clear error recorded on the run (never a 500,
never the end of the agent's run), a handoff names its sub-agent by name as the topology
does, and an HTTP agent's own actions are the root of its Multi-agent structure card."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.harness import Cluster
from tests.integration.test_evaluations import evals_cluster, fake_llm  # noqa: F401 (fixtures)
from titan.evals import Proxy

TOOLS = [{"name": "get_order", "description": "Look up an order.",
          "input_schema": {"type": "object", "properties": {"order_id": {"type": "string"}},
                           "required": ["order_id"]}}]
TASK = {"id": "t1", "user_instruction": "What is the status of order A-1001?",
        "initial_state": {"order": {"A-1001": {"status": "processing"}}}}
TOPOLOGY = {"nodes": [{"id": "lookup"}, {"id": "billing"}]}

#: Malformed handoff events, each with what the refusal must say.
BAD: list[tuple[dict[str, Any], str]] = [
    ({"kind": "handoff"}, "events[0].data must be {"),
    ({"kind": "handoff", "data": "billing"}, "events[0].data must be {"),
    ({"kind": "handoff", "data": {}}, "events[0].data.to is missing"),
    ({"kind": "handoff", "data": {"to": 5}},
     "events[0].data.to must be a sub-agent's name (a string), got int 5"),
    ({"kind": "handoff", "data": {"to": ["lookup"]}}, "got list ['lookup']"),
    ({"kind": "handoff", "data": {"to": ""}}, "to must be a sub-agent's name or actor path"),
    ({"kind": "handoff", "data": {"to": "lookup//x"}}, "got 'lookup//x'"),
    ({"kind": "handoff", "data": {"to": "lookup", "from": 7}}, "data.from must be"),
    ({"kind": "handoff", "data": {"to": "lookup", "reason": {"why": 1}}},
     "data.reason must be a string, got dict"),
]


class _Agent(BaseHTTPRequestHandler):
    """An HTTP agent that calls a tool itself and through ``lookup``, hands off well and
    badly, and answers with what the proxy said to each handoff."""

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass

    def do_POST(self) -> None:  # noqa: N802
        task = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        proxy = Proxy(task["proxy"]["url"], task["proxy"]["token"])
        proxy.call("get_order", {"order_id": "A-1001"})  # the agent itself: no actor named
        said: dict[str, Any] = {"lookup": proxy.handoff("lookup", reason="owns orders")}
        proxy.call("get_order", {"order_id": "A-1001"}, actor="lookup")
        said["raw"] = []
        for event, _ in BAD:
            r = httpx.post(task["proxy"]["events_url"], json={"events": [event]},
                           headers={"Authorization": f"Bearer {task['proxy']['token']}"},
                           timeout=10)
            said["raw"].append([r.status_code, r.json().get("error", {})])
        said["sdk"] = proxy.handoff(5)  # type: ignore[arg-type]  # refused, and no exception
        said["nosuch"] = [proxy.handoff("nosuch"), proxy.handoff("nosuch")]
        body = json.dumps({"final_response": json.dumps(said)}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(scope="module")
def agent_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Agent)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_a_malformed_handoff_is_refused_and_said_on_the_run(
        evals_cluster: Cluster, agent_url: str) -> None:  # noqa: F811
    client = evals_cluster.client()
    client.create_evaluation("handoffs", {"name": "svc", "kind": "http", "url": agent_url,
                                          "tools": TOOLS, "topology": TOPOLOGY,
                                          "judge": False}, [TASK])
    client.run_evaluation("handoffs")
    row = client.wait_evaluation("handoffs", timeout=60)["tasks"][0]
    assert row["run"]["status"] == "completed", row  # refusals do not end the run
    trace = client.evaluation_run("handoffs", "t1", row["run"]["id"])
    said = json.loads(trace["final_response"])
    assert said["lookup"] is True and said["sdk"] is False
    for (status, error), (_, message) in zip(said["raw"], BAD, strict=True):
        assert status == 400 and error["code"] == "bad_handoff", error
        assert message in error["message"], (message, error)
    # Every refusal is on the run, the SDK's too; an unknown sub-agent is said once.
    debug = trace["debug"]
    assert debug["proxy_refusals"] == len(BAD) + 1, debug
    refusals = [w for w in debug["soft_warnings"] if w.startswith("a malformed handoff")]
    assert len(refusals) == len(BAD) + 1, debug["soft_warnings"]
    assert said["nosuch"] == [True, True]
    unknown = [w for w in debug["soft_warnings"] if "'nosuch'" in w]
    assert unknown == ["a handoff to 'nosuch', which the declared topology does not name "
                       "(declared: billing, lookup); it shows as an undeclared sub-agent"]

    card = trace["structure"]
    # The agent's own call is the root's (""), as a job agent's is; no sub-agent "agent".
    assert [(n["id"], n["tools"]) for n in card["roster"]] == [
        ("", {"get_order": 1}), ("billing", {}), ("lookup", {"get_order": 1}),
        ("nosuch", {})], card["roster"]
    assert [(h["from"], h["to"]) for h in card["handoffs"]] == [
        ("", "lookup"), ("", "nosuch"), ("", "nosuch")]
    assert card["divergence"] == {"declared_only": ["billing"], "undeclared": ["nosuch"]}

    page = httpx.get(f"{evals_cluster.url}/evaluations/handoffs/tasks/t1",
                     headers={"Authorization": f"Bearer {evals_cluster.admin_token}"},
                     timeout=30)
    assert page.status_code == 200 and "a malformed handoff" in page.text


JOB_AGENT = '''
import json
from titan import evals, trace

evals.task()
said = [evals.handoff(5), evals.handoff(""), evals.handoff(None)]
with trace.actor("researcher"):
    said.append(evals.handoff("fetcher", reason="fetch it"))
    with trace.actor("fetcher"):
        evals.call_tool("get_order", {"order_id": "A-1001"})
evals.respond(json.dumps(said))
'''


def test_a_job_agent_hands_off_by_name_and_carries_on_past_a_malformed_one(
        evals_cluster: Cluster) -> None:  # noqa: F811
    c = evals_cluster
    script = Path(c.script("handing.py", JOB_AGENT))
    topology = {"nodes": [{"id": "researcher"}, {"id": "writer"},
                          {"id": "fetcher", "parent": "researcher", "tools": ["get_order"]}]}
    c.client().create_evaluation("job-handoffs", {
        "name": "handing", "script": script.name, "tools": TOOLS, "timeout_s": 60,
        "topology": topology, "judge": False}, [TASK], base=c.scripts)
    c.client().run_evaluation("job-handoffs")
    row = c.client().wait_evaluation("job-handoffs", timeout=120)["tasks"][0]
    assert row["run"]["status"] == "completed", row
    trace = c.client().evaluation_run("job-handoffs", "t1", row["run"]["id"])
    assert json.loads(trace["final_response"]) == [False, False, False, True]
    assert trace["debug"]["proxy_refusals"] == 3
    card = trace["structure"]
    # "fetcher" is the declared researcher/fetcher, whose calls are there: one node, not two.
    assert [(h["from"], h["to"]) for h in card["handoffs"]] == [
        ("researcher", "researcher/fetcher")]
    assert card["divergence"] == {"declared_only": ["writer"], "undeclared": []}
    assert [n["id"] for n in card["roster"]] == ["", "researcher", "researcher/fetcher",
                                                 "writer"]


class _SeedWordsAgent(BaseHTTPRequestHandler):
    """An HTTP agent that names its sub-agents as seed 003 does, ``actor_id``: on its raw
    tool calls and on a live trace event, with no X-Titan-Actor header."""

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass

    def do_POST(self) -> None:  # noqa: N802
        task = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        auth = {"Authorization": f"Bearer {task['proxy']['token']}"}
        tool = f"{task['proxy']['url']}/get_order"
        said = []
        for body in ({"arguments": {"order_id": "A-1001"}},  # the agent itself
                     {"arguments": {"order_id": "A-1001"}, "actor_id": "lookup"},
                     {"arguments": {"order_id": "A-1001"}, "actor_id": "lookup/fetcher"},
                     {"arguments": {"order_id": "A-1001"}, "actor": "lookup",
                      "actor_id": "billing"},
                     {"arguments": {"order_id": "A-1001"}, "actor_id": 7}):
            r = httpx.post(tool, json=body, headers=auth, timeout=30)
            error = r.json().get("error") if r.status_code >= 400 else None
            said.append([r.status_code, (error or {}).get("message")])
        r = httpx.post(task["proxy"]["events_url"], headers=auth, timeout=30, json={
            "events": [{"kind": "custom", "data": {"note": "fetching"}, "actor_id": "lookup"}]})
        said.append([r.status_code, None])
        body_out = json.dumps({"final_response": json.dumps(said)}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body_out)))
        self.end_headers()
        self.wfile.write(body_out)


def test_actor_id_names_the_sub_agent_of_a_call_as_seed_003_says(
        evals_cluster: Cluster) -> None:  # noqa: F811
    # Seed 003: "actor_id call paths define delegation edges". A tool call or an event
    # naming its actor_id was credited to the agent itself, in silence: the Multi-agent
    # structure card showed a single agent. actor_id is actor's other spelling.
    server = ThreadingHTTPServer(("127.0.0.1", 0), _SeedWordsAgent)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        client = evals_cluster.client()
        client.create_evaluation("actor-ids", {
            "name": "svc", "kind": "http", "url": f"http://127.0.0.1:{server.server_address[1]}",
            "tools": TOOLS, "judge": False}, [TASK])
        client.run_evaluation("actor-ids")
        row = client.wait_evaluation("actor-ids", timeout=60)["tasks"][0]
    finally:
        server.shutdown()
    assert row["run"]["status"] == "completed", row
    trace = client.evaluation_run("actor-ids", "t1", row["run"]["id"])
    said = json.loads(trace["final_response"])
    assert [s[0] for s in said] == [200, 200, 200, 400, 400, 200], said
    assert "actor_id is another spelling of actor" in said[3][1]
    assert "actor_id must be an actor path (a string), got int" in said[4][1]
    tools = [r for r in trace["timeline"] if r["type"] == "tool"]
    assert [r["actor"] for r in tools][1:] == ["lookup", "lookup/fetcher"]
    (event,) = [r for r in trace["timeline"] if r["type"] == "event"]
    assert event["actor"] == "lookup"
    card = trace["structure"]
    assert card is not None and card["stats"]["sub_agents"] == 2, card
    assert [(n["id"], n["calls"]) for n in card["roster"]] == [
        ("", 1), ("lookup", 1), ("lookup/fetcher", 1)], card["roster"]
    assert [(e["from"], e["to"], e["kind"]) for e in card["edges"]] == [
        ("", "lookup", "delegation"), ("lookup", "lookup/fetcher", "delegation")]
