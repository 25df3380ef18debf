"""OTLP out, end to end: runs recorded through the SDK on a real master are read back from a
real Arize Phoenix, started here as its own process (``make phoenix`` installs it in
``.venv/phoenix``: it cannot share Titan's venv, see the Makefile), with the right parents,
models and token counts. And a master whose collector is down records its runs as ever,
counting what it could not send.

Without Phoenix these tests skip, except under CI=true, where they are mandatory.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
)

from tests.conftest import IN_CI, free_port
from tests.integration.harness import Cluster, isolated_cluster
from tests.integration.test_telemetry_sdk import PRICED_PROVIDER, run_script, wait_for
from titan.master.otel.ids import trace_id

pytestmark = pytest.mark.slow
PHOENIX = Path(sys.prefix) / "phoenix" / "bin" / "phoenix"


@pytest.fixture(scope="module")
def phoenix(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Phoenix server on free ports, its data in a temporary directory; its base URL."""
    binary = str(PHOENIX) if PHOENIX.exists() else shutil.which("phoenix")
    if binary is None:
        message = f"Arize Phoenix is not installed (no {PHOENIX}): run `make phoenix`"
        if IN_CI:
            pytest.fail(message + " — mandatory in CI")
        pytest.skip(message)
    root = tmp_path_factory.mktemp("phoenix")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TITAN_", "OTEL_"))}
    env.update(PHOENIX_WORKING_DIR=str(root), PHOENIX_PORT=str(port), PHOENIX_HOST="127.0.0.1",
               PHOENIX_GRPC_PORT=str(free_port()), PHOENIX_TELEMETRY_ENABLED="false")
    log = open(root / "phoenix.log", "wb")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen([binary, "serve"], stdout=log, stderr=subprocess.STDOUT, env=env,
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 180  # ~20 s on two busy cores: migrations, then the app
        while True:
            if proc.poll() is not None or time.time() > deadline:
                raise RuntimeError("Phoenix did not start:\n"
                                   + (root / "phoenix.log").read_text()[-3000:])
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        log.close()


@pytest.fixture(scope="module")
def cluster(phoenix: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = isolated_cluster(tmp_path_factory.mktemp("otlp-out"), slots=2,
                         env={"TITAN_OTLP_ENDPOINT": phoenix})
    try:
        yield c
    finally:
        c.stop()


def phoenix_spans(phoenix: str, run_id: str, count: int) -> dict[str, dict[str, Any]]:
    """The run's spans in Phoenix by name, once ``count`` of them arrived."""
    trace = trace_id(run_id).hex()

    def read() -> dict[str, dict[str, Any]] | None:
        reply = httpx.get(f"{phoenix}/v1/projects/default/spans",
                          params={"trace_id": trace, "limit": 1000}, timeout=10)
        if reply.status_code == 404:  # no project before the first span
            return None
        reply.raise_for_status()
        spans = reply.json()["data"]
        return {s["name"]: s for s in spans} if len(spans) >= count else None

    found: dict[str, dict[str, Any]] = wait_for(read, timeout=60)
    return found


def attribute(s: dict[str, Any], key: str) -> Any:
    """An attribute as Phoenix serves it: flat (``a.b``) or nested (``{"a": {"b": ...}}``)."""
    attrs = s["attributes"]
    if key in attrs:
        return attrs[key]
    node: Any = attrs
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def test_an_sdk_run_arrives_as_a_tree_with_models_and_tokens(cluster: Cluster,
                                                             phoenix: str) -> None:
    done = run_script(cluster, PRICED_PROVIDER + '''
import titan

@titan.tool
def search(query):
    return [query + "-1"]

with titan.trace.run("otel-agent", agent_version="3") as run:
    print(run.id)
    with titan.trace.action("plan", inputs={"goal": "g"}) as step:
        search("vector db")
        step.outputs = {"steps": 1}
    with titan.trace.actor("critic"):
        titan.llm.complete("judge it", model="priced/model-x", max_tokens=50)
''')
    run_id = done.stdout.strip()
    spans = phoenix_spans(phoenix, run_id, 5)
    root = spans["invoke_agent otel-agent"]
    plan, tool = spans["plan"], spans["execute_tool search"]
    critic, chat = spans["invoke_agent critic"], spans["chat model-x"]  # the model that answered
    assert root["parent_id"] is None
    assert plan["parent_id"] == root["context"]["span_id"]
    assert tool["parent_id"] == plan["context"]["span_id"]  # ran inside the plan step
    assert critic["parent_id"] == root["context"]["span_id"]  # the actor path as the tree
    assert chat["parent_id"] == critic["context"]["span_id"]
    assert attribute(root, "gen_ai.operation.name") == "invoke_agent"
    assert attribute(root, "gen_ai.agent.version") == "3"
    assert attribute(chat, "gen_ai.operation.name") == "chat"
    assert attribute(chat, "gen_ai.request.model") == "priced/model-x"
    assert attribute(chat, "gen_ai.response.model") == "model-x"
    assert attribute(chat, "gen_ai.usage.input_tokens") == 100
    assert attribute(chat, "gen_ai.usage.output_tokens") == 20
    assert attribute(chat, "gen_ai.request.max_tokens") == 50
    assert chat["span_kind"] == "LLM"  # Phoenix read OpenInference's kind beside GenAI's
    assert attribute(chat, "llm.token_count.prompt") == 100
    assert attribute(tool, "gen_ai.tool.name") == "search"
    assert attribute(tool, "gen_ai.operation.name") == "execute_tool"


def test_stages_and_jobs_are_spans_between_the_run_and_its_calls(cluster: Cluster,
                                                                 phoenix: str) -> None:
    job = cluster.script("otel_planner.py", PRICED_PROVIDER + '''
titan.llm.complete("plan it", model="priced/model-y")
''')
    driver = run_script(cluster, f'''
from titan import TitanClient, TitanJob
c = TitanClient()
run_id = "OTELDAG_a1b2c3"
dag = c.submit_dag(run_id + "_PLAN", [TitanJob(job_id="planner", filename={job!r})],
                   agent_run_id=run_id)
c.wait_dag(dag["ref"], timeout=60)
print(run_id)
''')
    run_id = driver.stdout.strip()
    wait_for(lambda: cluster.api("GET", f"/runs/{run_id}")["status"] != "running")
    spans = phoenix_spans(phoenix, run_id, 4)
    root, stage = spans["invoke_agent OTELDAG"], spans["invoke_workflow PLAN"]
    planner, chat = spans["invoke_agent planner"], spans["chat model-y"]
    assert stage["parent_id"] == root["context"]["span_id"]
    assert planner["parent_id"] == stage["context"]["span_id"]
    assert chat["parent_id"] == planner["context"]["span_id"]
    assert attribute(planner, "titan.job.state") == "COMPLETED"
    assert attribute(chat, "gen_ai.usage.output_tokens") == 20
    status = cluster.api("GET", "/otlp")["export"]
    assert status["exported_spans"] >= 9 and status["dropped_spans"] == 0


def test_a_collector_that_is_down_never_holds_a_run_back(tmp_path: Path) -> None:
    down = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    cluster = Cluster(tmp_path, env={"TITAN_OTLP_ENDPOINT": down})
    try:
        cluster.start_master()  # no worker needed: the script records from outside any job
        done = run_script(cluster, '''
import titan
with titan.trace.run("offline-agent") as run:
    for i in range(200):
        with titan.trace.action("step", inputs={"i": i}) as a:
            a.outputs = i
    print(run.id)
''')
        run = cluster.api("GET", f"/runs/{done.stdout.strip()}")
        assert run["status"] == "completed" and run["action_count"] == 200
        # Each failing batch is tried for 10 s, then dropped and counted.
        status = wait_for(lambda: (s := cluster.api("GET", "/otlp")["export"])[
            "dropped_spans"] >= 200 and s, timeout=60)
        assert status["exported_spans"] == 0 and status["failed_requests"] >= 2
        assert "ConnectError" in status["last_error"]
    finally:
        cluster.stop()


class _Collector(ThreadingHTTPServer):
    """A collector that takes every batch, keeping each request's path and headers."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.spans: list[Any] = []
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                collector.requests.append((self.path, dict(self.headers)))
                request = ExportTraceServiceRequest.FromString(body)
                collector.spans.extend(s for r in request.resource_spans
                                       for scope in r.scope_spans for s in scope.spans)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()


def test_credentials_in_the_endpoint_reach_the_collector_but_no_viewer_or_log(
        tmp_path: Path) -> None:
    collector = _Collector()
    port = collector.server_address[1]
    endpoint = f"http://user:pw-secret@127.0.0.1:{port}/v1/traces?api_key=K-secret"
    cluster = Cluster(tmp_path, env={"TITAN_OTLP_ENDPOINT": endpoint})
    try:
        cluster.start_master()
        run_script(cluster, '''
import titan
with titan.trace.run("keyed-agent"):
    with titan.trace.action("step", inputs={"i": 1}) as a:
        a.outputs = 1
''')
        wait_for(lambda: cluster.api("GET", "/otlp")["export"]["exported_spans"] >= 2,
                 timeout=30)
        # The collector got the query and the userinfo (as Basic auth) ...
        path, headers = collector.requests[0]
        assert path == "/v1/traces?api_key=K-secret"
        assert headers["Authorization"].startswith("Basic ")
        # ... a viewer sees the endpoint without them, and the log never names them.
        viewer = cluster.api("POST", "/tokens", {"role": "viewer"})["token"]
        shown = cluster.api("GET", "/otlp", token=viewer)["export"]["endpoint"]
        assert shown == f"http://127.0.0.1:{port}/v1/traces"
        log = cluster.log()
        assert "secret" not in log and "HTTP Request" not in log
    finally:
        cluster.stop()
        collector.shutdown()


def _kv(key: str, value: str) -> dict[str, Any]:
    return {"key": key, "value": {"stringValue": value}}


def _imported_trace(trace: str) -> dict[str, Any]:
    """An OTLP/JSON trace from an agent that knows nothing of Titan: a failed boss agent and
    the researcher it called."""
    def span(sid: str, parent: str | None, name: str, agent: str, **extra: Any) -> Any:
        return {"traceId": trace, "spanId": sid, "name": name, "kind": 1,
                "startTimeUnixNano": str(time.time_ns()),
                "endTimeUnixNano": str(time.time_ns() + 10**6),
                "attributes": [_kv("gen_ai.operation.name", "invoke_agent"),
                               _kv("gen_ai.agent.name", agent)],
                **({"parentSpanId": parent} if parent else {}), **extra}
    return {"resourceSpans": [{"resource": {"attributes": [_kv("service.name", "rt")]},
                               "scopeSpans": [{"spans": [
        span("00000000000000a1", None, "invoke_agent boss", "boss",
             status={"code": 2, "message": "it broke"}),
        span("00000000000000a2", "00000000000000a1", "invoke_agent researcher",
             "researcher")]}]}]}


def _send_trace(cluster: Cluster, body: dict[str, Any]) -> None:
    reply = httpx.post(f"{cluster.url}/v1/traces", content=json.dumps(body), timeout=30,
                       headers={"Authorization": f"Bearer {cluster.admin_token}",
                                "Content-Type": "application/json"})
    assert reply.status_code == 200, reply.text


def test_an_imported_trace_goes_out_again_with_its_agents_and_errors(tmp_path: Path) -> None:
    collector = _Collector()
    cluster = Cluster(tmp_path, env={
        "TITAN_OTLP_ENDPOINT": f"http://127.0.0.1:{collector.server_address[1]}",
        "TITAN_OTLP_REEXPORT": "on"})
    trace = "7c1e" + "0" * 27 + "1"
    try:
        cluster.start_master()
        _send_trace(cluster, _imported_trace(trace))
        wait_for(lambda: len(collector.spans) >= 2, timeout=30)
        out = {s.name: s for s in collector.spans}
        for name, agent in (("invoke_agent boss", "boss"),
                            ("invoke_agent researcher", "researcher")):
            attrs = {a.key: a.value.string_value for a in out[name].attributes}
            assert (attrs["gen_ai.operation.name"], attrs["gen_ai.agent.name"],
                    attrs["openinference.span.kind"]) == ("invoke_agent", agent, "AGENT")
        assert out["invoke_agent boss"].status.message == "it broke"
        assert out["invoke_agent boss"].trace_id.hex() == trace
        assert cluster.api("GET", "/otlp")["export"]["reexport"] is True
    finally:
        cluster.stop()
        collector.shutdown()


def test_an_imported_trace_is_not_sent_to_the_collector_it_came_through(
        tmp_path: Path) -> None:
    # The agent sends its spans to a collector and to Titan: the collector has them already.
    collector = _Collector()
    cluster = Cluster(tmp_path, env={
        "TITAN_OTLP_ENDPOINT": f"http://127.0.0.1:{collector.server_address[1]}"})
    trace = "7c1e" + "0" * 27 + "2"
    try:
        cluster.start_master()
        _send_trace(cluster, _imported_trace(trace))
        wait_for(lambda: cluster.api("GET", f"/runs/otel-{trace}")["status"] == "failed")
        # A run of Titan's own, recorded after: the export goes in order, so once its root
        # span is at the collector, the imported trace's spans would have been before it.
        run_script(cluster, '''
import titan
with titan.trace.run("native-agent"):
    with titan.trace.action("step", inputs={"i": 1}) as a:
        a.outputs = 1
''')
        wait_for(lambda: any(s.name == "invoke_agent native-agent" for s in collector.spans),
                 timeout=30)
        assert [s.name for s in collector.spans if s.trace_id.hex() == trace] == []
        assert cluster.api("GET", "/otlp")["export"]["reexport"] is False
    finally:
        cluster.stop()
        collector.shutdown()


def _statuses(cluster: Cluster) -> dict[str, str]:
    return {r["id"]: r["status"] for r in cluster.api("GET", "/runs?limit=100")["runs"]}


def test_two_titans_pointed_at_each_other_pass_a_run_across_once(tmp_path: Path) -> None:
    a, b = Cluster(tmp_path / "a"), Cluster(tmp_path / "b")
    tokens = {}
    for me in (a, b):  # each master's admin token made here: the other one sends with it
        me.data.mkdir(mode=0o700, parents=True)
        tokens[me.url] = f"tt_{me.port}_" + "k" * 40
        (me.data / "admin.token").write_text(tokens[me.url])
        (me.data / "admin.token").chmod(0o600)
    for me, other in ((a, b), (b, a)):
        me.env.update(TITAN_OTLP_ENDPOINT=other.url,
                      TITAN_OTLP_HEADERS=f"authorization=Bearer%20{tokens[other.url]}")
    source = '''
import titan
with titan.trace.run("%s") as run:
    with titan.trace.action("step", inputs={"i": 1}) as a:
        a.outputs = 1
    print(run.id)
'''
    try:
        a.start_master()
        b.start_master()
        assert (a.url, b.url) == (b.env["TITAN_OTLP_ENDPOINT"], a.env["TITAN_OTLP_ENDPOINT"])
        on_a = run_script(a, source % "agent-a").stdout.strip()
        copy_a = f"otel-{trace_id(on_a).hex()}"
        wait_for(lambda: _statuses(b).get(copy_a) == "completed", timeout=30)
        # B's own run, recorded after: once A has it, anything B sent before is at A too.
        on_b = run_script(b, source % "agent-b").stdout.strip()
        copy_b = f"otel-{trace_id(on_b).hex()}"
        wait_for(lambda: _statuses(a).get(copy_b) == "completed", timeout=30)
        # Each holds its own run and the other's, once: B did not send A's run back to A.
        for me, runs in ((a, {on_a, copy_b}), (b, {on_b, copy_a})):
            assert set(_statuses(me)) == runs
    finally:
        a.stop()
        b.stop()
