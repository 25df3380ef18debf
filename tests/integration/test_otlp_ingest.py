"""OTLP in, end to end: an agent that knows nothing of Titan — the ``openai`` client
instrumented with OpenInference, exported by the OpenTelemetry SDK's OTLP/HTTP exporter
(protobuf, gzip) — talks to the scripted OpenAI-compatible server, and its trace shows up on
a real master as a run: LLM calls with usage and cost, tool calls, sub-agents from the span
tree. Then JSON-encoded GenAI spans, re-delivery, and what the route refuses.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.fake_llm_api import Reply, serve
from tests.integration.harness import Cluster, isolated_cluster
from titan import TitanJob
from titan.errors import ValidationFailed
from titan.master.otel.ids import run_id_of_trace

pytestmark = pytest.mark.slow

AGENT = '''
import json, sys
from openai import OpenAI
from openinference.instrumentation.openai import OpenAIInstrumentor
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

master, token, llm = sys.argv[1:4]
auth = {"Authorization": "Bearer " + token}
memory = InMemorySpanExporter()
provider = TracerProvider(resource=Resource.create({"service.name": "support-bot"}))
# Each span is sent as it ends: children before the agents above them, each on its own.
provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(
    endpoint=master + "/v1/traces", headers=auth, compression=Compression.Gzip)))
provider.add_span_processor(SimpleSpanProcessor(memory))
OpenAIInstrumentor().instrument(tracer_provider=provider)
tracer = provider.get_tracer("support-bot")
client = OpenAI(base_url=llm, api_key="unused", max_retries=0)
LOOKUP = {"type": "function", "function": {"name": "lookup_order", "parameters": {
    "type": "object", "properties": {"id": {"type": "integer"}}}}}

with tracer.start_as_current_span("support", attributes={
        "openinference.span.kind": "AGENT", "input.value": "Where is order 42?"}) as root:
    first = client.chat.completions.create(
        model="fake-gpt", messages=[{"role": "user", "content": "Where is order 42?"}],
        tools=[LOOKUP], temperature=0.1)
    call = first.choices[0].message.tool_calls[0]
    with tracer.start_as_current_span(call.function.name, attributes={
            "openinference.span.kind": "TOOL", "tool.name": call.function.name,
            "input.value": call.function.arguments}) as step:
        step.set_attribute("output.value", json.dumps({"status": "shipped"}))
    with tracer.start_as_current_span("researcher", attributes={
            "openinference.span.kind": "AGENT"}):
        client.chat.completions.create(
            model="fake-gpt", messages=[{"role": "user", "content": "Summarise it."}])
    try:  # a call that fails: its span names the model only in llm.invocation_parameters
        client.chat.completions.create(
            model="fake-gpt", messages=[{"role": "user", "content": "Anything else?"}])
    except Exception:
        pass
    trace_id = format(root.get_span_context().trace_id, "032x")
provider.force_flush()
# OTLP exporters retry: the whole trace again must not become new actions.
again = OTLPSpanExporter(endpoint=master + "/v1/traces", headers=auth)
print(json.dumps({"trace": trace_id, "resent": again.export(memory.get_finished_spans()).name}))
provider.shutdown()
'''


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    root = tmp_path_factory.mktemp("otlp-in")
    prices = root / "prices.json"  # $ per million tokens
    prices.write_text(json.dumps({"fake-gpt": {"input": 1.0, "output": 2.0}}))
    c = isolated_cluster(root, slots=1, env={"TITAN_LLM_PRICES": str(prices)})
    try:
        yield c
    finally:
        c.stop()


def actions_of(cluster: Cluster, run_id: str) -> list[dict[str, Any]]:
    return cluster.api("GET", f"/runs/{run_id}/actions?limit=1000&preview=100000")["actions"]


def post(cluster: Cluster, body: bytes, content_type: str, token: str | None = "admin",
         path: str = "/v1/traces", **headers: str) -> httpx.Response:
    auth = {} if token is None else {
        "Authorization": f"Bearer {cluster.admin_token if token == 'admin' else token}"}
    return httpx.post(cluster.url + path, content=body, timeout=30,
                      headers={"Content-Type": content_type, **auth, **headers})


def test_an_openinference_agent_becomes_a_run(cluster: Cluster) -> None:
    with serve() as llm:
        llm.queue(Reply(text="", prompt_tokens=30, completion_tokens=8,
                        tool_calls=(("call_1", "lookup_order", '{"id": 42}'),)),
                  Reply(text="Order 42 has shipped.", prompt_tokens=12, completion_tokens=5),
                  Reply(status=500, error="boom upstream"))
        env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
        done = subprocess.run(
            [sys.executable, "-c", AGENT, cluster.url, cluster.admin_token, llm.url + "/v1"],
            capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["resent"] == "SUCCESS"
    run_id = run_id_of_trace(out["trace"])
    run = cluster.api("GET", f"/runs/{run_id}")
    assert (run["status"], run["agent_id"], run["tags"]) == ("completed", "support-bot",
                                                             ["otlp-import"])
    acts = actions_of(cluster, run_id)
    assert len(acts) == 6 and run["action_count"] == 6  # the resent trace added nothing
    [failed] = [a for a in acts if a["outcome"] == "error"]
    # Its model was lost (no llm.model_name on a failed call's span): "a model with no
    # known price" was all the run could say of it.
    assert (failed["name"], failed["actor"], failed["model"]) == (
        "call_llm", "support-bot/support", "fake-gpt")
    assert failed["inputs"]["model"] == "fake-gpt" and failed["cost_source"] == "unknown"
    by = {(a["name"], a["actor"]): a for a in acts if a is not failed}
    assert set(by) == {("support", "support-bot"), ("call_llm", "support-bot/support"),
                       ("lookup_order", "support-bot/support"),
                       ("researcher", "support-bot/support"),
                       ("call_llm", "support-bot/support/researcher")}
    asked = by["call_llm", "support-bot/support"]
    assert (asked["channel"], asked["model"]) == ("llm", "fake-gpt")
    assert asked["usage"]["input_tokens"] == 30 and asked["usage"]["output_tokens"] == 8
    assert asked["cost_usd"] == pytest.approx(46e-6) and asked["cost_source"] == "registered"
    assert asked["inputs"]["messages"] == [{"role": "user", "content": "Where is order 42?"}]
    assert asked["inputs"]["params"]["temperature"] == 0.1
    [call] = asked["outputs"]["tool_calls"]
    assert call["function"] == {"name": "lookup_order", "arguments": '{"id": 42}'}
    tool = by["lookup_order", "support-bot/support"]
    assert (tool["channel"], tool["inputs"], tool["outputs"]) == ("tool", {"id": 42},
                                                                   {"status": "shipped"})
    support = by["support", "support-bot"]
    assert asked["parent_id"] == tool["parent_id"] == support["id"]
    summary = by["call_llm", "support-bot/support/researcher"]
    assert summary["outputs"]["text"] == "Order 42 has shipped."
    assert run["cost_usd"] == pytest.approx(46e-6 + 22e-6)
    assert {r["actor"] for r in run["by_actor"]} >= {"support-bot/support/researcher"}
    assert [r["id"] for r in cluster.api("GET", "/runs?agent=support-bot")["runs"]] == [run_id]
    # On the Runs page (its JSON twin) like any run.
    page = httpx.get(cluster.url + "/runs.json", params={"agent": "support-bot"}, timeout=30,
                     headers={"Authorization": f"Bearer {cluster.admin_token}"}).json()
    assert [r["id"] for r in page["runs"]] == [run_id]
    ingest = cluster.api("GET", "/otlp")["ingest"]
    assert ingest["duplicate_spans"] >= 6 and ingest["held_spans"] == 0


def genai_trace(trace: str) -> dict[str, Any]:
    now = time.time_ns()

    def kv(key: str, value: Any) -> dict[str, Any]:
        if isinstance(value, int):
            return {"key": key, "value": {"intValue": str(value)}}
        return {"key": key, "value": {"stringValue": value}}

    def span(sid: str, parent: str, name: str, start: int, attrs: dict[str, Any],
             error: str | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "traceId": trace, "spanId": sid, "parentSpanId": parent, "name": name, "kind": 1,
            "startTimeUnixNano": str(now + start * 10**6),
            "endTimeUnixNano": str(now + (start + 5) * 10**6),
            "attributes": [kv(k, v) for k, v in attrs.items()]}
        if error:
            out["status"] = {"code": 2, "message": error}
        return out

    spans = [
        span("1000000000000001", "", "invoke_agent planner", 0, {
            "gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "planner"}),
        span("1000000000000002", "1000000000000001", "chat fake-gpt", 1, {
            "gen_ai.operation.name": "chat", "gen_ai.request.model": "fake-gpt",
            "gen_ai.usage.input_tokens": 1000, "gen_ai.usage.output_tokens": 500,
            "gen_ai.input.messages": json.dumps([{"role": "user", "parts": [
                {"type": "text", "content": "plan a trip"}]}])}),
        span("1000000000000003", "1000000000000001", "execute_tool book", 2, {
            "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "book",
            "gen_ai.tool.call.arguments": '{"city": "Oslo"}'}, error="sold out"),
    ]
    return {"resourceSpans": [{
        "resource": {"attributes": [kv("service.name", "trip-agent")]},
        "scopeSpans": [{"scope": {"name": "manual"}, "spans": spans}]}]}


def test_json_genai_spans_and_redelivery(cluster: Cluster) -> None:
    trace = "2f0c8a7e1d3b4c5a6e7f8091a2b3c4d5"
    body = gzip.compress(json.dumps(genai_trace(trace)).encode())
    for _ in range(2):  # the second delivery is a duplicate of the first
        reply = post(cluster, body, "application/json", path="/api/v1/otlp/v1/traces",
                     **{"Content-Encoding": "gzip"})
        assert reply.status_code == 200, reply.text
        assert reply.headers["content-type"].startswith("application/json")
        assert reply.json() == {}
    run_id = run_id_of_trace(trace)
    run = cluster.api("GET", f"/runs/{run_id}")
    assert (run["status"], run["agent_id"], run["action_count"]) == ("completed",
                                                                     "trip-agent", 3)
    by = {a["name"]: a for a in actions_of(cluster, run_id)}
    chat, book = by["call_llm"], by["book"]
    assert chat["actor"] == book["actor"] == "trip-agent/planner"
    assert chat["cost_usd"] == pytest.approx(0.002)  # 1000 x $1 + 500 x $2 per million
    assert chat["inputs"]["messages"] == [{"role": "user", "content": "plan a trip"}]
    assert (book["outcome"], book["error"]["message"], book["inputs"]) == (
        "error", "sold out", {"city": "Oslo"})


def test_a_body_in_several_gzip_members_is_read_whole(cluster: Cluster) -> None:
    # Only the first member was inflated: a JSON body split in two was a 400, a protobuf one
    # cut at a message's end lost the spans after it without a word.
    trace = "bf0c8a7e1d3b4c5a6e7f8091a2b3c4d5"
    raw = json.dumps(genai_trace(trace)).encode()
    body = gzip.compress(raw[:100]) + gzip.compress(raw[100:])
    reply = post(cluster, body, "application/json", **{"Content-Encoding": "gzip"})
    assert reply.status_code == 200 and reply.json() == {}, reply.text
    assert cluster.api("GET", f"/runs/{run_id_of_trace(trace)}")["action_count"] == 3


def test_a_lone_surrogate_in_an_attributes_json_is_kept_as_a_replacement(
        cluster: Cluster) -> None:
    # '{"a": "\\udc80"}' as a tool's arguments: the master could not encode it, answered 500,
    # and held the span to retry for ever, with every trace after it in the batch.
    trace = "3f0c8a7e1d3b4c5a6e7f8091a2b3c4d6"
    body = genai_trace(trace)
    spans = body["resourceSpans"][0]["scopeSpans"][0]["spans"]
    for kv in spans[2]["attributes"]:
        if kv["key"] == "gen_ai.tool.call.arguments":
            kv["value"]["stringValue"] = '{"city": "Os\\udc80lo"}'
    reply = post(cluster, json.dumps(body).encode(), "application/json")
    assert reply.status_code == 200, reply.text
    run_id = run_id_of_trace(trace)
    book = {a["name"]: a for a in actions_of(cluster, run_id)}["book"]
    assert book["inputs"] == {"city": "Os\ufffdlo"}
    assert cluster.api("GET", f"/runs/{run_id}")["action_count"] == 3


def test_openllmetry_decorated_tools_and_agents_keep_their_names_and_content(
        cluster: Cluster) -> None:
    # traceloop-sdk's @workflow / @agent / @tool spans are "<name>.<kind>", with the name in
    # traceloop.entity.name and the call's {"args", "kwargs"} and result in
    # traceloop.entity.input / output: a tool call was "get_weather.tool" with no inputs or
    # outputs (they were only in its tags), and the agent's calls ran as "app/research.agent".
    trace = "9f0c8a7e1d3b4c5a6e7f8091a2b3c4d5"
    now = time.time_ns()

    def span(sid: str, parent: str, kind: str, name: str, **extra: str) -> dict[str, Any]:
        attrs = {"traceloop.span.kind": kind, "traceloop.entity.name": name, **extra}
        return {"traceId": trace, "spanId": sid, "parentSpanId": parent,
                "name": f"{name}.{kind}", "kind": 1, "startTimeUnixNano": str(now),
                "endTimeUnixNano": str(now + 10**6), "attributes": [
                    {"key": k, "value": {"stringValue": v}} for k, v in attrs.items()]}
    spans = [
        span("2000000000000001", "", "workflow", "trip",
             **{"traceloop.entity.input": '{"args": ["Oslo"], "kwargs": {}}',
                "traceloop.entity.output": '"booked"'}),
        span("2000000000000002", "2000000000000001", "agent", "research"),
        span("2000000000000003", "2000000000000002", "tool", "get_weather",
             **{"traceloop.entity.input": '{"args": [], "kwargs": {"city": "Oslo"}}',
                "traceloop.entity.output": '{"sky": "clear"}'})]
    body = {"resourceSpans": [{"resource": {"attributes": [
        {"key": "service.name", "value": {"stringValue": "app"}}]},
        "scopeSpans": [{"scope": {"name": "traceloop.tracer"}, "spans": spans[::-1]}]}]}
    reply = post(cluster, json.dumps(body).encode(), "application/json")
    assert reply.status_code == 200 and reply.json() == {}, reply.text
    by = {a["name"]: a for a in actions_of(cluster, run_id_of_trace(trace))}
    assert set(by) == {"trip.workflow", "research.agent", "get_weather"}
    tool = by["get_weather"]
    assert (tool["channel"], tool["actor"]) == ("tool", "app/research")
    assert tool["inputs"] == {"args": [], "kwargs": {"city": "Oslo"}}
    assert tool["outputs"] == {"sky": "clear"}
    assert "traceloop.entity.input" not in tool["tags"]["otel"]["attributes"]
    flow = by["trip.workflow"]
    assert (flow["inputs"], flow["outputs"]) == ({"args": ["Oslo"], "kwargs": {}}, "booked")


def test_a_protobuf_string_that_is_not_utf8_costs_only_that_character(
        cluster: Cluster) -> None:
    # A Go or JS sender's attribute holding raw bytes (an http.url, a header), passed on by a
    # Collector: protobuf's parser refused the whole request with 400, and the exporter
    # dropped every other span of the batch with it (a 400 is never retried).
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

    request = ExportTraceServiceRequest()
    rs = request.resource_spans.add()
    rs.resource.attributes.append(KeyValue(key="service.name",
                                           value=AnyValue(string_value="gateway")))
    spans = rs.scope_spans.add().spans
    trace, now = bytes.fromhex("af0c8a7e1d3b4c5a6e7f8091a2b3c4d5"), time.time_ns()
    for i, url in enumerate(("/ok", "/bad-QQQ")):
        s = spans.add(trace_id=trace, span_id=bytes([0x30, 0, 0, 0, 0, 0, 0, i + 1]),
                      name=f"GET {url}", start_time_unix_nano=now,
                      end_time_unix_nano=now + 10**6)
        if i:
            s.parent_span_id = spans[0].span_id
        s.attributes.append(KeyValue(key="http.url", value=AnyValue(string_value=url)))
    body = request.SerializeToString().replace(b"QQQ", b"\xff\xc3(")  # in a name and a url
    reply = post(cluster, body, "application/x-protobuf")
    assert reply.status_code == 200 and reply.content == b"", reply.text
    acts = {a["id"]: a for a in actions_of(cluster, run_id_of_trace(trace.hex()))}
    bad = acts["3000000000000002"]
    assert bad["name"] == "GET /bad-\ufffd\ufffd("
    assert bad["tags"]["otel"]["attributes"]["http.url"] == "/bad-\ufffd\ufffd("
    assert acts["3000000000000001"]["name"] == "GET /ok"


def test_a_span_started_years_before_its_end_is_placed_at_its_end(cluster: Cluster) -> None:
    # A start in 2001 (a sender's clock set late) and an end now: a duration past the run
    # service's ~3 years, so the span was refused — a root one still ended its run, empty.
    trace = "8f0c8a7e1d3b4c5a6e7f8091a2b3c4d5"
    body = genai_trace(trace)
    spans = body["resourceSpans"][0]["scopeSpans"][0]["spans"]
    for s in spans[:2]:  # the agent (the root) and its chat
        s["startTimeUnixNano"] = str(978_307_200 * 10**9)  # 2001-01-01
    reply = post(cluster, json.dumps(body).encode(), "application/json")
    assert reply.status_code == 200 and reply.json() == {}, reply.text
    run_id = run_id_of_trace(trace)
    run = cluster.api("GET", f"/runs/{run_id}")
    assert (run["status"], run["action_count"]) == ("completed", 3)
    ended = int(spans[0]["endTimeUnixNano"]) / 1e9
    assert run["started_at"] == pytest.approx(ended) and run["ended_at"] == pytest.approx(ended)
    by = {a["name"]: a for a in actions_of(cluster, run_id)}
    assert (by["call_llm"]["duration_ns"], by["call_llm"]["started_at"]) == (
        0, pytest.approx(int(spans[1]["endTimeUnixNano"]) / 1e9))
    # A trace whose root has not come yet: its run starts where its spans were placed (it
    # started in 2001, and stayed so while the root never came).
    trace = "8f0c8a7e1d3b4c5a6e7f8091a2b3c4d6"
    body = genai_trace(trace)
    spans = body["resourceSpans"][0]["scopeSpans"][0]["spans"]
    del spans[0]
    spans[0]["startTimeUnixNano"] = str(978_307_200 * 10**9)
    assert post(cluster, json.dumps(body).encode(), "application/json").status_code == 200
    run = cluster.api("GET", f"/runs/{run_id_of_trace(trace)}")
    assert run["status"] == "running" and run["started_at"] == pytest.approx(
        min(int(spans[0]["endTimeUnixNano"]), int(spans[1]["startTimeUnixNano"])) / 1e9)


def test_what_the_route_refuses(cluster: Cluster) -> None:
    reply = post(cluster, b"\x0a\xff\xff\xff\xff garbage", "application/x-protobuf")
    assert reply.status_code == 400
    assert "not an OTLP ExportTraceServiceRequest in protobuf" in reply.json()["error"][
        "message"]
    assert post(cluster, b"\x0a\x00", "application/x-protobuf", token=None).status_code == 401
    viewer = cluster.api("POST", "/tokens", {"role": "viewer"})["token"]
    refused = post(cluster, b"\x0a\x00", "application/x-protobuf", token=viewer)
    assert refused.status_code == 403 and "that takes an admin or operator token" in refused.text
    assert post(cluster, b"{}", "text/plain").status_code == 415
    # The runs of imported traces are the receiver's: a run made under such an id had a
    # trace's spans merged into it, its times rewritten.
    with pytest.raises(ValidationFailed, match="runs of OpenTelemetry traces"):
        cluster.client().api("POST", "/runs", json={"id": "otel-" + "ab" * 16})
    # Only that form: an agent named otel-... gets run ids from its name as any other.
    assert cluster.client().api("POST", "/runs", json={"id": "otel-agent-1a2b3c"})["id"] == \
        "otel-agent-1a2b3c"
    # A span with no span id is rejected alone, and said so: OTLP's partial success.
    broken = genai_trace("3f0c8a7e1d3b4c5a6e7f8091a2b3c4d5")
    broken["resourceSpans"][0]["scopeSpans"][0]["spans"][2]["spanId"] = ""
    reply = post(cluster, json.dumps(broken).encode(), "application/json")
    assert reply.json()["partialSuccess"]["rejectedSpans"] == "1"
    # Attributes no instrumentation writes, beside another trace's spans: recorded as well
    # as they can be, never a 500 (which held the request's other spans back for good).
    odd, fine = "6f0c8a7e1d3b4c5a6e7f8091a2b3c4d5", "7f0c8a7e1d3b4c5a6e7f8091a2b3c4d5"
    body = genai_trace(odd)
    chat = body["resourceSpans"][0]["scopeSpans"][0]["spans"][1]
    chat["attributes"] += [{"key": k, "value": {"stringValue": v}} for k, v in (
        ("gen_ai.usage.input_tokens", "²"), ("gen_ai.input.messages", '[{"parts": 5}]'),
        ("llm.input_messages.0.message", "hello"))]
    body["resourceSpans"] += genai_trace(fine)["resourceSpans"]
    reply = post(cluster, json.dumps(body).encode(), "application/json")
    assert reply.status_code == 200, reply.text
    for trace in (odd, fine):
        run = cluster.api("GET", f"/runs/{run_id_of_trace(trace)}")
        assert (run["status"], run["action_count"]) == ("completed", 3)
    # A client that hangs up half way through its body (an exporter timing out) is no error
    # of the master's: it was logged as an "internal error" with two tracebacks.
    for path in ("/v1/traces", "/api/v1/runs"):
        with socket.create_connection(("127.0.0.1", cluster.port)) as s:
            s.sendall(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{cluster.port}\r\n"
                      f"Authorization: Bearer {cluster.admin_token}\r\nContent-Type: "
                      "application/json\r\nContent-Length: 1000\r\n\r\n{".encode())
            time.sleep(0.3)
    time.sleep(0.5)
    assert cluster.api("GET", "/health")
    log = cluster.log()
    assert "internal error" not in log and "Exception in ASGI application" not in log, log[-3000:]


def test_a_parent_that_never_comes_is_recorded_under_the_run(make_cluster: Any,
                                                              cluster: Cluster) -> None:
    prices = cluster.env["TITAN_LLM_PRICES"]  # known prices: LiteLLM's map is never loaded
    short = make_cluster(env={"TITAN_OTLP_HOLD": "0.5", "TITAN_LLM_PRICES": prices})
    short.start_master()  # a master whose spans wait half a second; no worker needed
    trace = "4f0c8a7e1d3b4c5a6e7f8091a2b3c4d5"
    orphan = genai_trace(trace)
    spans = orphan["resourceSpans"][0]["scopeSpans"][0]["spans"]
    del spans[0]  # the agent's span never arrives (a crashed process, a remote parent)
    assert post(short, json.dumps(orphan).encode(), "application/json").status_code == 200
    run_id = run_id_of_trace(trace)
    deadline = time.time() + 20
    while short.api("GET", f"/runs/{run_id}")["action_count"] < 2:
        assert time.time() < deadline, short.log()
        time.sleep(0.1)
    acts = actions_of(short, run_id)
    assert {a["actor"] for a in acts} == {"trip-agent"}
    assert {a["parent_id"] for a in acts} == {"1000000000000001"}  # the link is kept
    assert short.api("GET", f"/runs/{run_id}")["status"] == "running"  # no root yet


def test_spans_titan_exported_itself_are_not_imported_again(make_cluster: Any,
                                                            cluster: Cluster) -> None:
    # TITAN_OTLP_ENDPOINT pointed at the master itself (or a collector fanning out back into
    # it): each native run came in again as otel-<trace id>, its cost counted twice.
    loop = make_cluster(env={"TITAN_LLM_PRICES": cluster.env["TITAN_LLM_PRICES"]})
    loop.start_master()
    token = loop.admin_token
    loop.kill_master()
    loop.env.update(TITAN_OTLP_ENDPOINT=loop.url,
                    TITAN_OTLP_HEADERS=f"authorization=Bearer%20{token}")
    loop.start_master()
    loop.api("POST", "/runs", {"id": "loop-1", "agent_id": "looper"})
    loop.api("POST", "/runs/loop-1/actions", {"actions": [
        {"id": f"a{i}", "name": "call_llm", "channel": "llm", "actor": "looper",
         "started_at": time.time(), "model": "fake-gpt",
         "usage": {"input_tokens": 10, "output_tokens": 5}} for i in range(3)]})
    loop.api("PATCH", "/runs/loop-1", {"status": "completed"})
    deadline = time.time() + 30
    while True:  # 3 actions and the run's span, sent to itself and skipped
        otlp = loop.api("GET", "/otlp")
        if otlp["ingest"]["skipped_spans"] >= 4:
            break
        assert time.time() < deadline, (otlp, loop.log()[-3000:])
        time.sleep(0.2)
    assert otlp["export"]["exported_spans"] >= 4 and otlp["ingest"]["recorded_spans"] == 0
    assert [r["id"] for r in loop.api("GET", "/runs?limit=100")["runs"]] == ["loop-1"]


def test_after_a_restart_a_resent_span_and_a_late_child_need_no_wait(make_cluster: Any,
                                                                     cluster: Cluster) -> None:
    # The receiver's memory of a trace is gone after a restart: a span sent again waited out
    # the whole hold and counted as released unparented before it was found a duplicate, and
    # a late child of a sub-agent recorded before the restart waited too, and lost its actor.
    prices = cluster.env["TITAN_LLM_PRICES"]
    m = make_cluster(env={"TITAN_OTLP_HOLD": "600", "TITAN_LLM_PRICES": prices})
    m.start_master()
    trace = "5f0c8a7e1d3b4c5a6e7f8091a2b3c4d5"
    body = genai_trace(trace)  # invoke_agent planner (the root), a chat and a tool under it
    assert post(m, json.dumps(body).encode(), "application/json").status_code == 200
    run_id = run_id_of_trace(trace)
    assert m.api("GET", f"/runs/{run_id}")["action_count"] == 3
    m.kill_master()
    m.start_master()
    late = genai_trace(trace)
    spans = late["resourceSpans"][0]["scopeSpans"][0]["spans"]
    spans[2]["spanId"] = "1000000000000004"  # a late tool call under the planner
    del spans[0]  # the chat (spans[0] now) is sent again, and the late call
    assert post(m, json.dumps(late).encode(), "application/json").status_code == 200
    ingest = m.api("GET", "/otlp")["ingest"]
    assert (ingest["duplicate_spans"], ingest["held_spans"], ingest["released_unparented"],
            ingest["recorded_spans"]) == (1, 0, 0, 1), ingest
    acts = {a["id"]: a for a in actions_of(m, run_id)}
    assert len(acts) == 4 and acts["1000000000000004"]["actor"] == "trip-agent/planner"


#: A job that learnt a trace's id before its spans came in (a `traceparent` header its
#: service was sent) and claims the trace's run: a stage into `otel-<trace id>`, then writes.
CLAIMER = """
import json, os, sys, time, urllib.error, urllib.request

def send(method, path, body=None):
    req = urllib.request.Request(
        os.environ["TITAN_MASTER_URL"] + "/api/v1" + path, method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": "Bearer " + os.environ["TITAN_TOKEN"],
                 "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code

run, sha = sys.argv[1], sys.argv[2]
stage = {"name": "CLAIM", "agent_run_id": run,
         "jobs": [{"job_id": "s", "filename": "claimer.py", "script_sha256": sha}]}
print("stage", send("POST", "/dags", stage), flush=True)
deadline = time.time() + 30
while send("GET", f"/runs/{run}") != 200 and time.time() < deadline:
    time.sleep(0.1)
forged = {"actions": [{"id": "forged", "name": "book", "started_at": time.time()}]}
print("write", send("POST", f"/runs/{run}/actions", forged), flush=True)
print("end", send("PATCH", f"/runs/{run}", {"status": "failed", "error": "forged"}), flush=True)
"""


def test_a_job_cannot_claim_the_run_of_a_trace_before_it_comes_in(cluster: Cluster) -> None:
    """An imported trace's run, ``otel-<trace id>``, is the receiver's: ``POST /runs`` of
    such an id was refused, but a stage submitted into one made it, started by the
    submitter. A job that knew the id first (a ``traceparent`` its service was sent) then
    owned the run the trace's spans went into, and could write into it and end it."""
    trace = "8f0c8a7e1d3b4c5a6e7f8091a2b3c4d5"
    run_id = run_id_of_trace(trace)
    client = cluster.client()
    script = cluster.scripts / "claimer.py"
    script.write_text(CLAIMER)
    sha = hashlib.sha256(script.read_bytes()).hexdigest()
    client.submit_dag("CLAIMER", [TitanJob("claim", str(script), args=[run_id, sha])])
    deadline = time.time() + 60
    while "stage" not in client.fetch_logs("CLAIMER/claim") and time.time() < deadline:
        time.sleep(0.1)
    reply = post(cluster, json.dumps(genai_trace(trace)).encode(), "application/json")
    assert reply.status_code == 200, reply.text
    assert client.wait("CLAIMER/claim", timeout=60)["state"] == "COMPLETED"
    logs = client.fetch_logs("CLAIMER/claim")
    assert "stage 400" in logs and "write 403" in logs and "end 403" in logs, logs
    run = cluster.api("GET", f"/runs/{run_id}")
    assert (run["status"], run["action_count"], run["error"]) == ("completed", 3, None), run
    assert run["started_by"]["role"] == "admin", run
    # Nor may a person's token make one so (as POST /runs of that id is refused).
    with pytest.raises(ValidationFailed, match="runs of OpenTelemetry traces"):
        client.api("POST", "/dags", json={"name": "CLAIM2", "agent_run_id": "otel-" + "cd" * 16,
                                         "jobs": [{"job_id": "s", "filename": "claimer.py",
                                                   "script_sha256": sha}]})
