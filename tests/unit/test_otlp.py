"""OTLP both ways, without processes: the wire format, the two mappings, the receiver's holding
of spans until their parent is known, and the exporter's queue when the collector is down.

The receiver records through a stand-in run service that checks every action with the real
ingestion parser (``titan.master.runs.ingest``), so what the mapping produces is what
``POST /runs/{id}/actions`` accepts. The end-to-end tests are
``tests/integration/test_otlp_ingest.py`` and ``test_otlp_export.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gzip
import json
import re
import socket
import threading
import time
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from titan.errors import APIError, ConfigError, PayloadTooLarge, ValidationFailed
from titan.master.auth.tokens import Principal
from titan.master.otel import actors, holding, ids, incoming, outgoing, traces, wire
from titan.master.otel.exporter import Exporter
from titan.master.otel.receiver import Receiver
from titan.master.otel.settings import ExportSettings, hold_seconds
from titan.master.runs.ingest import parse_actions, parse_run

T0 = 1_760_000_000.0
TRACE = "5b8efff798038103d269b633813fc60c"
ADMIN = Principal(role="admin", name="test")


def span(span_id: str, parent: str | None = None, name: str = "step", *,
         attrs: dict[str, Any] | None = None, start: float = 0.0, duration: float = 1.0,
         error: str | None = None, service: str = "svc") -> wire.Span:
    return wire.Span(trace_id=TRACE, span_id=span_id, parent_id=parent, name=name,
                     kind=wire.INTERNAL, start_ns=int((T0 + start) * 1e9),
                     end_ns=int((T0 + start + duration) * 1e9), attributes=attrs or {},
                     status_code=wire.STATUS_ERROR if error else 0,
                     status_message=error or "", resource={"service.name": service})


AGENT = {"openinference.span.kind": "AGENT"}
LLM_OI = {
    "openinference.span.kind": "LLM", "llm.model_name": "gpt-4o-mini", "llm.provider": "openai",
    "llm.input_messages.0.message.role": "system",
    "llm.input_messages.0.message.content": "be brief",
    "llm.input_messages.1.message.role": "user", "llm.input_messages.1.message.content": "hi",
    "llm.output_messages.0.message.role": "assistant",
    "llm.output_messages.0.message.content": "hello",
    "llm.output_messages.0.message.tool_calls.0.tool_call.id": "call_1",
    "llm.output_messages.0.message.tool_calls.0.tool_call.function.name": "lookup",
    "llm.output_messages.0.message.tool_calls.0.tool_call.function.arguments": '{"q": 1}',
    "llm.invocation_parameters": '{"temperature": 0.2, "model": "gpt-4o-mini"}',
    "llm.token_count.prompt": 12, "llm.token_count.completion": 5,
    "llm.token_count.prompt_details.cache_read": 2, "session.id": "s-1",
}


def fixed_price(model: str, usage: Any) -> tuple[float | None, str]:
    if model == "openai/gpt-4o-mini":
        return usage.input_tokens * 0.01 + usage.output_tokens * 0.02, "registered"
    return None, "unknown"


# -- the wire ---------------------------------------------------------------------------------
def test_json_bodies_spell_ids_in_hex_and_gzip_is_bounded() -> None:
    body = {"resourceSpans": [{"resource": {"attributes": [
        {"key": "service.name", "value": {"stringValue": "svc"}}]},
        "scopeSpans": [{"scope": {"name": "s"}, "spans": [
            {"traceId": TRACE, "spanId": "00f067aa0ba902b7", "name": "chat", "kind": 3,
             "startTimeUnixNano": "1760000000000000000", "endTimeUnixNano": 1760000001000000000,
             "attributes": [{"key": "n", "value": {"intValue": "7"}},
                            {"key": "l", "value": {"arrayValue": {"values": [
                                {"doubleValue": 1.5}, {"boolValue": True}]}}}]},
            {"traceId": "", "spanId": "00f067aa0ba902b8", "name": "no trace"}]}]}]}
    raw = json.dumps(body).encode()
    spans, rejected = wire.decode(gzip.compress(raw), "application/json; charset=utf-8", "gzip",
                                  1 << 20)
    assert rejected == 1 and len(spans) == 1
    s = spans[0]
    assert (s.trace_id, s.span_id, s.parent_id, s.kind) == (TRACE, "00f067aa0ba902b7", None, 3)
    assert s.attributes == {"n": 7, "l": [1.5, True]} and s.resource == {"service.name": "svc"}
    assert s.end_ns - s.start_ns == 1_000_000_000 and s.scope == "s"
    with pytest.raises(PayloadTooLarge):  # a gzip bomb stops at the limit
        wire.decode(gzip.compress(b" " * 200_000), "application/json", "gzip", 100_000)
    # A body in several gzip members (a streaming writer's): only the first was read, and a
    # protobuf body cut there parsed, the spans of the other members gone without a word.
    proto = ExportTraceServiceRequest()
    for i in range(2):
        proto.resource_spans.add().scope_spans.add().spans.add(
            trace_id=bytes.fromhex(TRACE), span_id=bytes([1] * 7 + [i + 1]), name=f"s{i}")
    data = proto.SerializeToString()
    first = ExportTraceServiceRequest(resource_spans=proto.resource_spans[:1])
    half = first.ByteSize()  # the second resource's start: the first member parses alone
    assert len(ExportTraceServiceRequest.FromString(data[:half]).resource_spans) == 1
    members = gzip.compress(data[:half]) + gzip.compress(data[half:]) + b"\0" * 8
    spans, _ = wire.decode(members, "application/x-protobuf", "gzip", 1 << 20)
    assert [s.name for s in spans] == ["s0", "s1"]
    with pytest.raises(PayloadTooLarge):  # the limit counts every member
        wire.decode(gzip.compress(b" " * 60_000) * 2, "application/json", "gzip", 100_000)
    with pytest.raises(ValidationFailed, match="not valid gzip"):
        wire.decode(gzip.compress(data) + b"junk", "application/x-protobuf", "gzip", 1 << 20)
    with pytest.raises(ValidationFailed, match="must be hex"):
        wire.decode(raw.replace(TRACE.encode(), b"not-hex"), "application/json", None, 1 << 20)


def test_bad_bodies_say_what_is_wrong() -> None:
    with pytest.raises(ValidationFailed, match="not an OTLP ExportTraceServiceRequest in "
                                               "protobuf"):
        wire.decode(b"\xff\xff\xff garbage", "application/x-protobuf", None, 1 << 20)
    with pytest.raises(APIError) as exc:
        wire.decode(b"{}", "text/plain", None, 1 << 20)
    assert exc.value.status == 415
    with pytest.raises(APIError, match="Content-Encoding 'br' is not supported") as exc:
        wire.decode(b"{}", "application/json", "br", 1 << 20)
    assert exc.value.status == 415  # a coding the server does not take (RFC 9110)
    assert wire.decode(b"", "application/x-protobuf", None, 10) == ([], 0)  # nothing to send


# -- ids --------------------------------------------------------------------------------------
def test_ids_are_derived_and_an_imported_trace_keeps_its_own() -> None:
    assert ids.trace_id("run-1") == ids.trace_id("run-1") != ids.trace_id("run-2")
    assert ids.trace_id(ids.run_id_of_trace(TRACE)).hex() == TRACE
    assert ids.action_span_id("r", "00f067aa0ba902b7").hex() == "00f067aa0ba902b7"
    assert len(ids.action_span_id("r", "a" * 32)) == 8
    assert ids.actor_span_id("r", "PLAN") != ids.actor_span_id("r", "PLAN/a") != \
        ids.run_span_id("r")


# -- the mapping in ---------------------------------------------------------------------------
def test_an_openinference_llm_span_becomes_a_priced_call_llm() -> None:
    action = incoming.action_of(span("00000000000000a1", "00000000000000a0", "ChatCompletion",
                                     attrs=LLM_OI), "svc/agent", 3, fixed_price)
    [row] = parse_actions({"actions": [action]}, now=T0)  # what the ingestion API accepts
    assert (row["channel"], row["name"], row["model"], row["ordinal"]) == (
        "llm", "call_llm", "gpt-4o-mini", 3)
    assert (row["input_tokens"], row["output_tokens"], row["cached_tokens"]) == (12, 5, 2)
    assert row["cost_usd"] == pytest.approx(0.22) and row["cost_source"] == "registered"
    assert row["inputs"]["messages"] == [{"role": "system", "content": "be brief"},
                                         {"role": "user", "content": "hi"}]
    assert row["inputs"]["params"] == {"temperature": 0.2}
    assert row["outputs"]["text"] == "hello"
    assert row["outputs"]["tool_calls"] == [{"id": "call_1", "type": "function", "function": {
        "name": "lookup", "arguments": '{"q": 1}'}}]
    assert row["parent_id"] == "00000000000000a0" and row["id"] == "00000000000000a1"
    assert row["tags"]["otel"]["attributes"] == {"session.id": "s-1"}


def test_attributes_named_for_credentials_are_never_copied_into_tags() -> None:
    attrs = {"http.request.header.authorization": ["Bearer x"], "http.request.header.cookie":
             "sid=1", "db.password": "p", "aws.secret_access_key": "s", "oauth.id_token": "t",
             "openai.api_key": "k", "llm.usage.total_tokens": 9, "session.id": "s-1",
             "http.request.header.content-type": ["application/json"],
             "http.request.header.x-amz-security-token": ["t"],
             "http.request.header.x-api-token": ["t"], "gcp.private_key": "-----BEGIN"}
    tags = incoming.action_of(span("00000000000000a2", attrs=attrs), "svc", None,
                              fixed_price)["tags"]["otel"]
    assert tags["attributes"] == {"llm.usage.total_tokens": 9, "session.id": "s-1",
                                  "http.request.header.content-type": ["application/json"]}
    assert tags["attributes_dropped"] == [
        "aws.secret_access_key", "db.password", "gcp.private_key",
        "http.request.header.authorization", "http.request.header.cookie",
        "http.request.header.x-amz-security-token", "http.request.header.x-api-token",
        "oauth.id_token", "openai.api_key"]


def test_genai_spans_tools_and_errors() -> None:
    chat = span("00000000000000b1", name="chat claude", attrs={
        "gen_ai.operation.name": "chat", "gen_ai.request.model": "claude-x",
        "gen_ai.provider.name": "anthropic", "gen_ai.usage.input_tokens": 9,
        "gen_ai.usage.output_tokens": 4, "gen_ai.request.max_tokens": 100,
        "gen_ai.input.messages": json.dumps([{"role": "user", "parts": [
            {"type": "text", "content": "weather?"}]}]),
        "gen_ai.output.messages": json.dumps([{"role": "assistant", "parts": [
            {"type": "tool_call", "id": "c1", "name": "weather", "arguments": {"city": "Oslo"}}],
            "finish_reason": "tool_call"}]), "llm.cost.total": 0.5})
    tool = span("00000000000000b2", name="execute_tool weather", attrs={
        "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "weather",
        "gen_ai.tool.call.arguments": '{"city": "Oslo"}'}, error="timeout")
    tool.events.append(("exception", tool.end_ns, {"exception.type": "TimeoutError"}))
    rows = parse_actions({"actions": [incoming.action_of(chat, "svc", None, fixed_price),
                                      incoming.action_of(tool, "svc", None, fixed_price)]},
                         now=T0)
    llm, called = rows
    assert llm["inputs"]["messages"] == [{"role": "user", "content": "weather?"}]
    assert llm["inputs"]["params"] == {"max_tokens": 100}
    assert llm["outputs"]["finish_reason"] == "tool_call"
    assert llm["outputs"]["tool_calls"][0]["function"]["name"] == "weather"
    assert (llm["cost_usd"], llm["cost_source"]) == (0.5, "span")  # stated beats priced
    assert (called["channel"], called["name"], called["inputs"]) == ("tool", "weather",
                                                                      {"city": "Oslo"})
    assert (called["outcome"], called["error_type"], called["error_message"]) == (
        "error", "TimeoutError", "timeout")


def test_numbers_and_names_are_read_by_one_rule_whatever_their_type() -> None:
    # A count sent as a double (100.0) was dropped while text "1000" was read; an array
    # model was stored as "['m']"; a negative or absurd cost left the call with no cost
    # source where an unpriced call is "unknown".
    def row(attrs: dict[str, Any]) -> dict[str, Any]:
        action = incoming.action_of(span("00000000000000e1", attrs={
            "openinference.span.kind": "LLM", **attrs}), "svc", 0, fixed_price)
        [parsed] = parse_actions({"actions": [action]}, now=T0)
        return parsed

    got = row({"llm.model_name": "gpt-4o-mini", "llm.provider": "openai",
               "llm.token_count.prompt": "1000",
               "llm.token_count.completion": 100.0})
    assert (got["input_tokens"], got["output_tokens"]) == (1000, 100)
    assert got["cost_usd"] == pytest.approx(12.0) and got["cost_source"] == "registered"
    for bad in (1.5, -3, True, "1e3", float("inf")):
        assert row({"llm.token_count.prompt": bad})["input_tokens"] is None, bad
    got = row({"gen_ai.request.model": ["gpt-4o-mini", "other"],
               "gen_ai.provider.name": ["openai"], "llm.token_count.prompt": 1})
    assert got["model"] == "gpt-4o-mini" and got["inputs"]["model"] == "gpt-4o-mini"
    assert row({"gen_ai.request.model": [7]})["model"] is None
    assert row({"gen_ai.response.model": 4, "llm.model_name": "m"})["model"] == "m"
    assert row({"llm.model_name": "m", "llm.cost.total": "0.25"})["cost_usd"] == 0.25
    for cost in (-50.0, 1e300, "x", float("nan"), 10**400):
        got = row({"llm.model_name": "gpt-4o", "llm.cost.total": cost})
        assert (got["cost_usd"], got["cost_source"]) == (None, "unknown"), cost
    got = row({"llm.model_name": "gpt-4o-mini", "llm.provider": "openai", "llm.cost.total": -1,
               "llm.token_count.prompt": 10, "llm.token_count.completion": 1})
    assert (got["cost_usd"], got["cost_source"]) == (pytest.approx(0.12), "registered")


def test_a_call_missing_a_token_count_has_no_known_cost() -> None:
    # input_tokens=250000.5 (no count) beside output_tokens=10 was priced as 10 tokens out.
    def row(attrs: dict[str, Any]) -> dict[str, Any]:
        action = incoming.action_of(span("00000000000000e2", attrs=attrs), "svc", 0,
                                    fixed_price)
        [parsed] = parse_actions({"actions": [action]}, now=T0)
        return parsed

    chat = {"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o-mini",
            "gen_ai.provider.name": "openai"}
    for counts in ({"gen_ai.usage.input_tokens": 250000.5, "gen_ai.usage.output_tokens": 10},
                   {"gen_ai.usage.input_tokens": 100},
                   {"gen_ai.usage.output_tokens": 10}):
        got = row({**chat, **counts})
        assert (got["cost_usd"], got["cost_source"]) == (None, "unknown"), counts
    got = row({**chat, "gen_ai.usage.input_tokens": 100, "gen_ai.usage.output_tokens": 10})
    assert (got["cost_usd"], got["cost_source"]) == (pytest.approx(1.2), "registered")
    # An embedding has no output: its input count is all it needs.
    got = row({"gen_ai.operation.name": "embeddings", "gen_ai.request.model": "gpt-4o-mini",
               "gen_ai.provider.name": "openai", "gen_ai.usage.input_tokens": 100})
    assert (got["cost_usd"], got["cost_source"]) == (pytest.approx(1.0), "registered")


# -- the mapping out, and back ----------------------------------------------------------------
def stored(**kw: Any) -> dict[str, Any]:
    row = {"id": "a" * 32, "parent_id": None, "actor": "bot/critic", "channel": "llm",
           "name": "call_llm", "ordinal": 0, "outcome": "success", "model": "openai/gpt-x",
           "input_tokens": 100, "output_tokens": 20, "cached_tokens": 10,
           "reasoning_tokens": None, "cost_usd": 0.002, "cost_source": "registered",
           "started_at": T0, "duration_ns": 2_000_000, "replay_status": None,
           "error_type": None, "error_message": None,
           "inputs": json.dumps({"model": "openai/gpt-x", "messages": [
               {"role": "user", "content": "judge it"}], "params": {"max_tokens": 50}}),
           "outputs": json.dumps({"text": "fine", "finish_reason": "stop"})}
    return {**row, **kw}


def test_an_llm_action_goes_out_in_both_conventions_and_comes_back() -> None:
    out = outgoing.action_span("run-1", "bot", stored(), content=True)
    attrs = wire.attributes_of(out.attributes)
    assert out.name == "chat openai/gpt-x" and out.kind == wire.CLIENT
    assert out.parent_span_id == ids.actor_span_id("run-1", "bot/critic")
    assert attrs["gen_ai.operation.name"] == "chat"
    assert (attrs["gen_ai.request.model"], attrs["gen_ai.provider.name"]) == ("openai/gpt-x",
                                                                             "openai")
    assert (attrs["gen_ai.usage.input_tokens"], attrs["gen_ai.usage.output_tokens"]) == (100, 20)
    assert (attrs["llm.token_count.prompt"], attrs["llm.token_count.total"]) == (100, 120)
    assert attrs["gen_ai.request.max_tokens"] == 50
    assert json.loads(attrs["gen_ai.input.messages"]) == [
        {"role": "user", "parts": [{"type": "text", "content": "judge it"}]}]
    request = ExportTraceServiceRequest()
    request.resource_spans.add().scope_spans.add().spans.append(out)
    [back], _ = wire.spans_of(request)
    again = parse_actions({"actions": [incoming.action_of(back, "bot", None)]}, now=T0)[0]
    assert (again["model"], again["input_tokens"], again["output_tokens"]) == (
        "openai/gpt-x", 100, 20)
    assert again["inputs"]["messages"] == [{"role": "user", "content": "judge it"}]
    assert again["outputs"]["text"] == "fine" and again["cost_usd"] == 0.002
    bare = wire.attributes_of(outgoing.action_span("run-1", "bot", stored(), False).attributes)
    assert "gen_ai.input.messages" not in bare and "input.value" not in bare
    assert bare["gen_ai.usage.input_tokens"] == 100


def test_an_llm_actions_tool_calls_go_out_and_come_back() -> None:
    call = {"id": "call_1", "type": "function",
            "function": {"name": "lookup", "arguments": '{"q": 1}'}}
    row = stored(outputs=json.dumps({"text": "", "finish_reason": "tool_calls",
                                     "tool_calls": [call]}))
    out = outgoing.action_span("run-1", "bot", row, content=True)
    attrs = wire.attributes_of(out.attributes)
    assert json.loads(attrs["gen_ai.output.messages"])[0]["parts"][1] == {
        "type": "tool_call", "id": "call_1", "name": "lookup", "arguments": '{"q": 1}'}
    request = ExportTraceServiceRequest()
    request.resource_spans.add().scope_spans.add().spans.append(out)
    [back], _ = wire.spans_of(request)
    again = parse_actions({"actions": [incoming.action_of(back, "bot", None)]}, now=T0)[0]
    assert again["outputs"]["tool_calls"] == [call]


def test_a_run_is_a_tree_of_stages_jobs_and_sub_agents() -> None:
    run = {"id": "R_1a2b", "agent_id": "R", "status": "failed", "error": "boom",
           "created_at": T0, "started_at": T0, "ended_at": T0 + 60, "cost_usd": 1.0}
    dags = [{"id": 1, "name": "R_1a2b_PLAN", "run": 1, "status": "COMPLETED",
             "submitted_at": T0 + 1, "started_at": T0 + 2, "finished_at": T0 + 30}]
    jobs = [{"id": 7, "dag_id": 1, "job_id": "planner", "state": "COMPLETED", "attempt": 1,
             "submitted_at": T0 + 1, "started_at": T0 + 3, "finished_at": T0 + 29}]
    acts = [("PLAN/planner", T0 + 4, 10**9), ("PLAN/planner/critic", T0 + 5, 10**9),
            ("R", T0 + 40, 10**9)]
    spans = {s.name: s for s in outgoing.run_spans(run, dags, jobs, acts)}
    root = spans["invoke_agent R"]
    assert not root.parent_span_id and root.status.code == wire.STATUS_ERROR
    assert spans["invoke_workflow PLAN"].parent_span_id == root.span_id
    assert spans["invoke_agent planner"].parent_span_id == spans["invoke_workflow PLAN"].span_id
    critic = spans["invoke_agent critic"]
    assert critic.parent_span_id == ids.actor_span_id("R_1a2b", "PLAN/planner")
    assert critic.span_id == ids.actor_span_id("R_1a2b", "PLAN/planner/critic")
    assert critic.start_time_unix_nano == int((T0 + 5) * 1e9)
    assert len(spans) == 4  # the run's own actor (R) is the run's span


def test_an_imported_trace_goes_out_in_its_own_shape() -> None:
    # Exported again, an imported trace got an `invoke_agent <service>` root above its own
    # root (and actor spans for its sub-agents beside its AGENT spans).
    run_id = ids.run_id_of_trace(TRACE)
    sent = [span("00000000000000a1", None, "support", attrs=AGENT),
            span("00000000000000a2", "00000000000000a1", "researcher", attrs=AGENT),
            span("00000000000000a3", "00000000000000a2", "ChatCompletion", attrs=LLM_OI)]
    actors = ["svc", "svc/support", "svc/support/researcher"]
    pairs = enumerate(zip(sent, actors, strict=True))
    rows = parse_actions({"actions": [incoming.action_of(s, actor, i, fixed_price)
                                      for i, (s, actor) in pairs]}, now=T0)
    out = [outgoing.action_span(run_id, "svc", r, content=False) for r in rows]
    assert [(o.trace_id.hex(), o.span_id.hex(), o.parent_span_id.hex()) for o in out] == [
        (TRACE, s.span_id, s.parent_id or "") for s in sent]
    run = {"id": run_id, "agent_id": "svc", "status": "completed", "created_at": T0,
           "started_at": T0, "ended_at": T0 + 9}
    assert outgoing.run_spans(run, [], [], [(a, T0, 10**9) for a in actors]) == []
    # A run of Titan's own keeps its root of Titan's.
    native = outgoing.action_span("run-1", "svc", dict(rows[0], actor="svc"), content=False)
    assert native.parent_span_id == ids.run_span_id("run-1")


def test_an_imported_traces_agents_and_errors_go_out_as_they_came() -> None:
    # Exported again, its invoke_agent spans went out as CHAIN spans without the operation
    # or the agent's name, and "it broke" as "Error: it broke".
    run_id = ids.run_id_of_trace(TRACE)
    genai = {"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "boss"}
    sent = [span("00000000000000b1", None, "invoke_agent boss", attrs=genai, error="it broke"),
            span("00000000000000b2", "00000000000000b1", "researcher", attrs=AGENT),
            span("00000000000000b3", "00000000000000b2", "plan")]
    actors = ["rt", "rt/boss", "rt/boss/researcher"]
    pairs = enumerate(zip(sent, actors, strict=True))
    rows = parse_actions({"actions": [incoming.action_of(s, actor, i, fixed_price)
                                      for i, (s, actor) in pairs]}, now=T0)
    boss, researcher, plan = (outgoing.action_span(run_id, "rt", r, content=False)
                              for r in rows)
    got = {kv.key: kv.value.string_value for kv in boss.attributes}
    assert (got["gen_ai.operation.name"], got["gen_ai.agent.name"],
            got["openinference.span.kind"]) == ("invoke_agent", "boss", "AGENT")
    assert boss.name == "invoke_agent boss"
    assert (boss.status.code, boss.status.message) == (wire.STATUS_ERROR, "it broke")
    got = {kv.key: kv.value.string_value for kv in researcher.attributes}
    assert (got["gen_ai.agent.name"], got["openinference.span.kind"]) == ("researcher", "AGENT")
    got = {kv.key: kv.value.string_value for kv in plan.attributes}
    assert got["openinference.span.kind"] == "CHAIN" and "gen_ai.agent.name" not in got
    # A run of Titan's own still says the error's type in its status.
    native = outgoing.action_span("run-1", "svc", dict(rows[0], actor="svc"), content=False)
    assert native.status.message == "Error: it broke"


# -- the receiver ------------------------------------------------------------------------------
class FakeRuns:
    """The run service's three calls the receiver makes, checking bodies as it does."""

    def __init__(self) -> None:
        self.runs: dict[str, dict[str, Any]] = {}
        self.actions: dict[str, dict[str, dict[str, Any]]] = {}

    async def create_run(self, body: dict[str, Any], who: Principal) -> tuple[Any, bool]:
        fields = parse_run(body, creating=True)
        created = fields["id"] not in self.runs
        self.runs.setdefault(fields["id"], {**fields, "status": "running"})
        self.actions.setdefault(fields["id"], {})
        return self.runs[fields["id"]], created

    async def ingest(self, run_id: str, body: dict[str, Any], who: Principal) -> dict[str, Any]:
        rows = parse_actions(body, now=T0)
        known = self.actions[run_id]
        fresh = [r for r in rows if r["id"] not in known]
        known.update((r["id"], r) for r in fresh)
        return {"accepted": len(fresh), "duplicates": len(rows) - len(fresh)}

    async def update_run(self, run_id: str, body: dict[str, Any], who: Principal) -> Any:
        self.runs[run_id].update(parse_run(body, creating=False))
        return self.runs[run_id]


def receiver(hold: float = 60.0) -> tuple[Receiver, FakeRuns, list[float]]:
    runs, now = FakeRuns(), [T0 + 100]
    return Receiver(runs, hold, fixed_price, clock=lambda: now[0]), runs, now  # type: ignore[arg-type]


def test_spans_wait_for_their_agent_and_a_resent_span_is_one_action() -> None:
    async def go() -> None:
        rx, runs, _ = receiver()
        run_id = ids.run_id_of_trace(TRACE)
        # Children end (and are sent) first: their sub-agent's span comes in a later request.
        await rx.receive([span("00000000000000c3", "00000000000000c2", "ChatCompletion",
                               attrs=LLM_OI, start=2)], 0, ADMIN)
        assert runs.runs[run_id]["agent_id"] == "svc" and runs.actions[run_id] == {}
        await rx.receive([span("00000000000000c2", "00000000000000c1", "researcher",
                               attrs=AGENT, start=1, duration=5)], 0, ADMIN)
        assert runs.actions[run_id] == {}  # still waiting for the root
        await rx.receive([span("00000000000000c1", None, "support", attrs=AGENT, duration=9)],
                         0, ADMIN)
        got = runs.actions[run_id]
        assert {a["name"]: a["actor"] for a in got.values()} == {
            "support": "svc", "researcher": "svc/support",
            "call_llm": "svc/support/researcher"}
        assert runs.runs[run_id]["status"] == "completed"
        assert runs.runs[run_id]["ended_at"] == pytest.approx(T0 + 9)
        await rx.receive([span("00000000000000c1", None, "support", attrs=AGENT)], 0, ADMIN)
        assert len(got) == 3 and rx.stats()["duplicate_spans"] == 1
    asyncio.run(go())


def test_sub_agents_past_the_actor_limit_stay_apart() -> None:
    # Actor paths were cut at 500 characters: sub-agents deeper than ~60 levels all became
    # one actor. A long path keeps its tail after a hash of the whole of it.
    async def go() -> None:
        rx, runs, _ = receiver()
        n = 200
        chain = [span(f"{i + 1:016x}", f"{i:016x}" if i else None, f"agent{i}", attrs=AGENT,
                      start=i * 1e-3) for i in range(n)]
        await rx.receive(chain[::-1], 0, ADMIN)
        got = runs.actions[ids.run_id_of_trace(TRACE)]
        paths = [got[s.span_id]["actor"] for s in chain]
        assert len(got) == n and len(set(paths)) == n  # each sub-agent its own actor
        assert max(len(a) for a in paths) <= actors.ACTOR_CHARS
        assert paths[5] == "svc/" + "/".join(f"agent{i}" for i in range(5))
        deep = paths[-1]
        assert re.fullmatch(r"…[0-9a-f]{12}/agent\d+(/agent\d+)+", deep)  # whole names
        assert deep.endswith("/agent197/agent198") and len(deep) > 480
        assert actors.actor_path("a/" * 400) == actors.actor_path("a/" * 400)
    asyncio.run(go())


class FakeKnown:
    """The database's answer to the receiver's lookups, from the stand-in run service."""

    def __init__(self, runs: FakeRuns) -> None:
        self.fake = runs

    async def runs(self, run_ids: Any) -> set[str]:
        return {r for r in run_ids if r in self.fake.runs}

    async def actions(self, run_id: str, wanted: Any) -> list[dict[str, Any]]:
        held = self.fake.actions.get(run_id, {})
        return [{k: held[i][k] for k in ("id", "actor", "tags")} for i in wanted if i in held]


def test_deep_sub_agents_cost_memory_by_span_and_survive_a_restart() -> None:
    # The receiver remembered each span's whole actor path: a chain of N nested agents cost N²
    # characters (a 1 MB request of 10,000 held ~500 MB until the trace was forgotten), and
    # after a restart a late child of a deep sub-agent, placed from its parent's recorded
    # (shortened) path, landed under an actor of its own, beside its siblings'.
    async def go() -> None:
        rx, runs, _ = receiver()
        n = 1500
        chain = [span(f"{i + 1:016x}", f"{i:016x}" if i else None, f"agent{i}", attrs=AGENT,
                      start=i * 1e-3) for i in range(n)]
        child = span("00000000000a0001", chain[-1].span_id, "call", start=2)
        await rx.receive([child, *chain[::-1]], 0, ADMIN)
        [trace] = rx.traces.values()
        assert max(len(a) for a in trace.actors.values()) <= actors.ACTOR_CHARS
        got = runs.actions[ids.run_id_of_trace(TRACE)]
        assert len({got[s.span_id]["actor"] for s in chain}) == n
        # A restart: nothing remembered, what is recorded is asked of the database.
        again = Receiver(runs, 60.0, fixed_price, clock=lambda: T0 + 100,  # type: ignore[arg-type]
                         known=FakeKnown(runs))  # type: ignore[arg-type]
        late = span("00000000000a0002", chain[-1].span_id, "call", start=3)
        await again.receive([late], 0, ADMIN)
        assert got[late.span_id]["actor"] == got[child.span_id]["actor"]
        assert got[late.span_id]["actor"].endswith(f"/agent{n - 1}")
        assert again.stats()["held_spans"] == 0
    asyncio.run(go())


def test_a_parent_that_never_comes_is_given_up_after_the_hold() -> None:
    async def go() -> None:
        rx, runs, now = receiver(hold=30)
        run_id = ids.run_id_of_trace(TRACE)
        await rx.receive([span("00000000000000d2", "00000000000000d1", "tool call",
                               attrs={"openinference.span.kind": "TOOL", "tool.name": "t"},
                               error="bad")], 0, ADMIN)
        await rx._release(now[0] + 10)
        assert runs.actions[run_id] == {}
        await rx._release(now[0] + 31)
        [action] = runs.actions[run_id].values()
        assert (action["actor"], action["name"], action["parent_id"], action["outcome"]) == (
            "svc", "t", "00000000000000d1", "error")
        assert rx.stats()["released_unparented"] == 1 and rx.stats()["held_spans"] == 0
    asyncio.run(go())


def test_held_spans_are_bounded_by_size_too(monkeypatch: pytest.MonkeyPatch) -> None:
    # A few requests of large orphan spans a second held gigabytes for the hold time: the
    # count limit (20,000 spans) never came near.
    monkeypatch.setattr(holding, "MAX_HELD_BYTES", 1_000_000)

    async def go() -> None:
        rx, runs, _ = receiver(hold=120)
        run_id = ids.run_id_of_trace(TRACE)
        big = {"input.value": "x" * 400_000}
        for i in range(5):
            await rx.receive([span(f"00000000000000e{i}", "00000000000000ff", "step",
                                   attrs=big, start=i)], 0, ADMIN)
            assert rx._held_bytes() <= 1_000_000
        # The oldest went as they are (under the run's own actor); the newest still wait.
        assert rx.stats()["held_spans"] == 2 and rx.stats()["released_unparented"] == 3
        assert len(runs.actions[run_id]) == 3
    asyncio.run(go())


def test_a_chain_waiting_on_a_missing_ancestor_goes_together_and_cycles_end() -> None:
    async def go() -> None:
        rx, runs, now = receiver(hold=30)
        run_id = ids.run_id_of_trace(TRACE)
        # call_llm <- researcher (an agent) <- a parent that never comes; and a broken pair
        # of spans that name each other as parents.
        await rx.receive([span("00000000000000e3", "00000000000000e2", "ChatCompletion",
                               attrs=LLM_OI)], 0, ADMIN)
        now[0] += 20
        await rx.receive([span("00000000000000e2", "00000000000000e1", "researcher",
                               attrs=AGENT),
                          span("00000000000000f1", "00000000000000f2", "a"),
                          span("00000000000000f2", "00000000000000f1", "b")], 0, ADMIN)
        # The pair is recorded at once: no span still to come could resolve it.
        got = {a["name"]: a["actor"] for a in runs.actions[run_id].values()}
        assert got == {"a": "svc", "b": "svc"}
        await rx._release(now[0] + 11)  # the call's wait is over; the agent's is not
        got = {a["name"]: a["actor"] for a in runs.actions[run_id].values()}
        assert got == {"a": "svc", "b": "svc", "researcher": "svc",
                       "call_llm": "svc/researcher"}
        await rx._release(now[0] + 31)
        assert len(runs.actions[run_id]) == 4 and rx.stats()["held_spans"] == 0
    asyncio.run(go())


class CountingRuns(FakeRuns):
    """Keeps each action as it came, unchecked: a 20,000-span test times the receiver, not
    the ingestion parser."""

    async def ingest(self, run_id: str, body: dict[str, Any], who: Principal) -> dict[str, Any]:
        known = self.actions[run_id]
        fresh = [a for a in body["actions"] if a["id"] not in known]
        known.update((a["id"], a) for a in fresh)
        return {"accepted": len(fresh), "duplicates": len(body["actions"]) - len(fresh)}


def test_a_long_chain_whose_top_never_comes_is_released_in_one_walk() -> None:
    # One request of 20,000 spans, each the parent of the next, the top's parent never sent:
    # when the hold ran out each span walked the chain up to find its top, N² steps on the
    # event loop (the master answered nothing for ~111 s). An agent half way down the chain
    # makes the actors below it its own.
    n, middle = 20_000, 10_000

    async def go() -> None:
        runs, now = CountingRuns(), [T0 + 100]
        rx = Receiver(runs, 30.0, fixed_price, clock=lambda: now[0])  # type: ignore[arg-type]
        chain = [span(f"{i + 2:016x}", f"{i + 1:016x}", f"step {i}",
                      attrs=AGENT if i == middle else None, start=i * 1e-3)
                 for i in range(n)]
        await rx.receive(chain[::-1], 0, ADMIN)
        assert rx.stats()["held_spans"] == n
        started = time.perf_counter()
        await rx._release(now[0] + 31)
        took = time.perf_counter() - started
        got = runs.actions[ids.run_id_of_trace(TRACE)]
        assert len(got) == n and rx.stats()["held_spans"] == 0
        assert rx.stats()["released_unparented"] == 1  # the top alone: the rest hang from it
        for i, s in enumerate(chain):
            action = got[s.span_id]
            assert action["parent_id"] == f"{i + 1:016x}"
            assert action["actor"] == ("svc" if i <= middle else f"svc/step {middle}")
        assert took < 20, took  # a sanity bound (about a second here), not a benchmark
    asyncio.run(go())


def test_many_roots_end_their_run_once() -> None:
    # Each root span of a trace was an update of its run, all but the first refused: a
    # request of 20,000 roots made 20,000 commits with the receiver's lock held.
    class Counting(CountingRuns):
        updates = 0

        async def update_run(self, run_id: str, body: dict[str, Any], who: Principal) -> Any:
            Counting.updates += 1
            return await super().update_run(run_id, body, who)

    async def go() -> None:
        runs = Counting()
        rx = Receiver(runs, 30.0, fixed_price, clock=lambda: T0 + 100)  # type: ignore[arg-type]
        roots = [span(f"{i + 1:016x}", None, f"root {i}", start=i, duration=0.5)
                 for i in range(1000)]
        await rx.receive(roots[::-1], 0, ADMIN)
        await rx.receive([span("00000000000f0000", None, "later root", start=5000)], 0, ADMIN)
        run = runs.runs[ids.run_id_of_trace(TRACE)]
        assert Counting.updates == 1 and len(runs.actions[ids.run_id_of_trace(TRACE)]) == 1001
        assert (run["status"], run["ended_at"]) == ("completed", pytest.approx(T0 + 0.5))
    asyncio.run(go())


# -- the exporter ------------------------------------------------------------------------------
def test_settings() -> None:
    s = ExportSettings.parse("http://collector:4318/", "opt-in", "api_key=a%20b, x=1", "off")
    assert s is not None and s.url == "http://collector:4318/v1/traces"
    assert s.headers == {"api_key": "a b", "x": "1"} and not s.content
    assert s.wants({"tags": ["otlp"]}) and s.wants({"tags": {"otlp": True}})
    assert not s.wants({"tags": ["other"]}) and not s.wants({"tags": None})
    assert ExportSettings.parse(None, "opt-in", "k=v", "off") is None
    # A typo is said at start with no endpoint too, not on the day export is turned on.
    for bad in ((None, "bogus", None, None), (None, None, "novalue", None),
                (None, None, None, "maybe")):
        with pytest.raises(ConfigError):
            ExportSettings.parse(*bad)
    for bad in (("ftp://x", None, None, None), ("http://", None, None, None),
                ("https:///v1/traces", None, None, None), ("http://[x]:1", None, None, None),
                ("http://c:99999", None, None, None),
                ("collector:4318", None, None, None), ("http://x", "some", None, None),
                ("http://x", None, "novalue", None), ("http://x", None, None, "maybe"),
                # what no request can carry: it failed every export, after a clean start
                ("http://x", None, "a b=c", None), ("http://x", None, "k=v%0d%0aX:%201", None),
                ("http://x", None, "k=caf%C3%A9", None)):
        with pytest.raises(ConfigError):
            ExportSettings.parse(*bad)
    assert ExportSettings.parse("http://x", None, "k=a%09b", None).headers == {"k": "a\tb"}
    assert hold_seconds(None) == 120.0 and hold_seconds("5") == 5.0


def test_runs_imported_over_otlp_go_out_only_when_reexport_is_on() -> None:
    imported, native = {"id": "otel-" + "ab" * 16, "tags": ["otlp"]}, {"id": "run-1"}
    default = ExportSettings.parse("http://x", None, None, None)
    assert default is not None and not default.reexport
    assert not default.wants(imported) and default.wants(native)
    again = ExportSettings.parse("http://x", None, None, None, "on")
    assert again is not None and again.reexport and again.wants(imported)
    opt_in = ExportSettings.parse("http://x", "opt-in", None, None, "off")
    assert opt_in is not None and not opt_in.wants(imported)  # tagged otlp, still not sent
    with pytest.raises(ConfigError, match="TITAN_OTLP_REEXPORT"):
        ExportSettings.parse(None, None, None, None, "sometimes")


@pytest.mark.parametrize(("endpoint", "url"), [
    ("http://c:4318", "http://c:4318/v1/traces"),
    ("http://c:4318?k=v", "http://c:4318/v1/traces?k=v"),
    ("http://c:4318/?k=v", "http://c:4318/v1/traces?k=v"),
    ("https://c/otel/v1/traces?k=v&x=%20", "https://c/otel/v1/traces?k=v&x=%20"),
    ("http://u:p@c:4318/api/?k=v#frag", "http://u:p@c:4318/api/v1/traces?k=v"),
])
def test_the_endpoint_gets_its_path_before_its_query(endpoint: str, url: str) -> None:
    s = ExportSettings.parse(endpoint, None, None, None)
    assert s is not None and s.url == url
    assert s.shown_url == url.split("?")[0].replace("u:p@", "")
    with pytest.raises(ConfigError):
        hold_seconds("-1")


def test_a_collector_that_is_down_costs_the_run_nothing_and_drops_are_counted() -> None:
    gate = threading.Event()
    posts: list[bytes] = []

    def collector(request: httpx.Request) -> httpx.Response:
        gate.wait(30)  # a collector that hangs until the offers are all made
        posts.append(request.content)
        return httpx.Response(503, text="down")

    settings = ExportSettings("http://collector/v1/traces")
    exporter = Exporter(settings, storage=None, max_spans=10, interval=0.01, grace=0.2,  # type: ignore[arg-type]
                        transport=httpx.MockTransport(collector))
    exporter.start()
    run = {"id": "run-1", "agent_id": "bot", "tags": None}
    try:
        for _ in range(40):  # 40 spans offered while the collector hangs: 10 fit the queue
            exporter.actions_recorded(run, [stored()])
        assert not posts  # every offer returned while the collector had answered nothing
        gate.set()
        deadline = time.time() + 10
        while exporter.stats()["dropped_spans"] < 40 and time.time() < deadline:
            time.sleep(0.02)
    finally:
        exporter.stop()
    stats = exporter.stats()
    assert stats["dropped_spans"] == 40 and stats["exported_spans"] == 0
    # At most 10 spans were in the hanging request (taken from a queue of 10: how many came
    # before the thread woke depends on the machine's load) and 10 waited: 20 or more were
    # dropped on arrival. (>= 29 assumed the first request held one span: flaky when loaded.)
    assert stats["queue_full_drops"] >= 20 and stats["failed_requests"] >= 2  # retried 503s
    assert stats["last_error"] == "HTTP 503: down" and posts


def _answering(answer: Any) -> tuple[str, threading.Event]:
    """A real socket server that reads each request and hands the connection to ``answer``
    (until the returned event is set)."""
    server = socket.create_server(("127.0.0.1", 0))
    done = threading.Event()

    def serve(conn: socket.socket) -> None:
        with conn:
            conn.settimeout(5)
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(65536)
            head, _, rest = data.partition(b"\r\n\r\n")
            length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))  # type: ignore[union-attr]
            while len(rest) < length:
                rest += conn.recv(65536)
            with contextlib.suppress(OSError):
                answer(conn, done)

    def accept() -> None:
        with server:
            server.settimeout(0.2)
            while not done.is_set():
                with contextlib.suppress(TimeoutError):
                    threading.Thread(target=serve, args=(server.accept()[0],),
                                     daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    return f"http://127.0.0.1:{server.getsockname()[1]}/v1/traces", done


def _trickle(conn: socket.socket, done: threading.Event) -> None:
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n")
    while not done.wait(0.1):  # a byte well within each read's timeout, for ever
        conn.sendall(b"x")


def _trickle_head(conn: socket.socket, done: threading.Event) -> None:
    conn.sendall(b"HTTP/1.1 200 OK\r\nX-Slow: ")
    while not done.wait(0.1):  # headers that never end, a byte within each read's timeout
        conn.sendall(b"x")


def _flood(conn: socket.socket, done: threading.Event) -> None:
    conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
    while not done.is_set():  # a stream that never ends: a wrong URL
        conn.sendall(b"4000\r\n" + b"x" * 0x4000 + b"\r\n")


@pytest.mark.parametrize(("answer", "said"), [
    (_trickle, "its answer not whole after 1 s"), (_flood, "is TITAN_OTLP_ENDPOINT"),
    (_trickle_head, "no whole answer within 1 s")])
def test_an_answer_that_never_ends_fails_the_request_and_is_logged_once(
        answer: Any, said: str, caplog: pytest.LogCaptureFixture) -> None:
    # A collector (or whatever TITAN_OTLP_ENDPOINT named) that answered a byte at a time, or
    # without end, held the export thread for good: httpx's timeout bounds each read, not the
    # request. Nothing was exported, counted as failed or logged, while the queue filled.
    url, done = _answering(answer)
    exporter = Exporter(ExportSettings(url), storage=None, interval=0.01,  # type: ignore[arg-type]
                        timeout=1.0)
    exporter.start()
    run = {"id": "run-1", "agent_id": "bot", "tags": None}
    try:
        exporter.actions_recorded(run, [stored()])
        deadline = time.time() + 10
        while exporter.stats()["dropped_spans"] < 1 and time.time() < deadline:
            time.sleep(0.05)
        exporter.actions_recorded(run, [stored(id="b" * 32)])
        while exporter.stats()["dropped_spans"] < 2 and time.time() < deadline:
            time.sleep(0.05)
        assert time.time() < deadline, "the export thread is still waiting for the answer"
    finally:
        done.set()
        exporter.stop()
    stats = exporter.stats()
    assert (stats["dropped_spans"], stats["exported_spans"]) == (2, 0)
    assert stats["failed_requests"] == 2  # not tried again: the collector may have them
    assert said in stats["last_error"]
    warned = [r.getMessage() for r in caplog.records if "OTLP export" in r.getMessage()]
    assert len(warned) == 1 and said in warned[0]


def test_a_collector_slower_than_the_runs_is_logged_once_when_spans_are_dropped(
        caplog: pytest.LogCaptureFixture) -> None:
    # A collector that answers, only slower than spans come: every request succeeded, so the
    # spans dropped on arrival (queue_full_drops) left nothing in the log.
    gate = threading.Event()

    def collector(request: httpx.Request) -> httpx.Response:
        gate.wait(30)
        return httpx.Response(200)

    exporter = Exporter(ExportSettings("http://collector/v1/traces"), storage=None,  # type: ignore[arg-type]
                        max_spans=10, interval=0.01, transport=httpx.MockTransport(collector))
    exporter.start()
    run = {"id": "run-1", "agent_id": "bot", "tags": None}
    caplog.set_level("INFO", logger="titan.master")
    try:
        exporter.actions_recorded(run, [stored()])
        deadline = time.time() + 10
        while exporter.stats()["queued_spans"] and time.time() < deadline:
            time.sleep(0.01)  # the first batch is at the collector, which holds it
        for _ in range(40):  # 10 fit the queue, 30 are dropped: one warning
            exporter.actions_recorded(run, [stored()])
        said = [r.getMessage() for r in caplog.records if "OTLP" in r.getMessage()]
        assert len(said) == 1 and "queue is full" in said[0] and "collector" in said[0]
        gate.set()
        while exporter.stats()["exported_spans"] < 11 and time.time() < deadline:
            time.sleep(0.01)
        for _ in range(2):  # rounds with room: its end is said once
            exporter.actions_recorded(run, [stored()])
            while exporter.stats()["queued_spans"] and time.time() < deadline:
                time.sleep(0.01)
    finally:
        exporter.stop()
    stats = exporter.stats()
    assert (stats["exported_spans"], stats["dropped_spans"], stats["failed_requests"]) == (
        13, 30, 0)
    said = [r.getMessage() for r in caplog.records if "OTLP" in r.getMessage()]
    assert len(said) == 2 and "room again" in said[1], said


def test_spans_reach_the_collector_grouped_by_run() -> None:
    got: list[ExportTraceServiceRequest] = []

    def collector(request: httpx.Request) -> httpx.Response:
        assert request.headers["content-type"] == "application/x-protobuf"
        assert request.headers["authorization"] == "Bearer k"
        got.append(ExportTraceServiceRequest.FromString(request.content))
        return httpx.Response(200)

    settings = ExportSettings("http://collector/v1/traces", mode="opt-in",
                              headers={"authorization": "Bearer k"})
    exporter = Exporter(settings, storage=None, interval=0.01,  # type: ignore[arg-type]
                        transport=httpx.MockTransport(collector))
    exporter.start()
    exporter.actions_recorded({"id": "r1", "agent_id": "bot", "tags": ["otlp"]},
                              [stored(id="a1"), stored(id="a2", channel="tool", name="search")])
    exporter.actions_recorded({"id": "r2", "agent_id": "bot", "tags": []}, [stored()])
    exporter.stop()
    assert exporter.stats()["exported_spans"] == 2
    [request] = got
    [rs] = request.resource_spans
    assert wire.attributes_of(rs.resource.attributes)["service.name"] == "bot"
    names = [s.name for s in rs.scope_spans[0].spans]
    assert names == ["chat openai/gpt-x", "execute_tool search"]


# -- hostile senders -----------------------------------------------------------------------------
HOSTILE = [
    {"llm.input_messages.².message.role": "user"},
    {"gen_ai.usage.input_tokens": "²"},
    {"gen_ai.usage.input_tokens": "9" * 5000},
    {"gen_ai.usage.input_tokens": 10**16},
    {"llm.input_messages.0.message": "hello"},
    {"llm.input_messages.0.message.contents.0.message_content": "x"},
    {"llm.output_messages.0.message.tool_calls.0.tool_call.function": "f"},
    {"llm.output_messages.0.message.tool_calls.0.tool_call": 7},
    {"llm.output_messages.0.message.tool_calls": 5},
    {"gen_ai.input.messages": '[{"role":"user","parts":5}]'},
    {"gen_ai.completion.0.tool_calls": 5},
    {"gen_ai.prompt.0.tool_calls": 5},
    {"llm.cost.total": 1e308},
    {"gen_ai.request.model": "m\x00odel", "gen_ai.usage.input_tokens": 3},
]


@pytest.mark.parametrize("attrs", HOSTILE, ids=range(len(HOSTILE)))
@pytest.mark.parametrize("kind", [{"openinference.span.kind": "LLM"},
                                  {"gen_ai.operation.name": "chat"}], ids=["oi", "genai"])
def test_what_a_sender_writes_never_breaks_the_mapping(attrs: dict[str, Any],
                                                       kind: dict[str, Any]) -> None:
    # Attributes are whatever the sender wrote: an action comes out, and the run service's
    # own checks take it (no NUL, costs and token counts within bounds).
    action = incoming.action_of(span("00000000000000e1", name="c\x00hat", attrs={**kind, **attrs}),
                                "svc", 0, fixed_price)
    [row] = parse_actions({"actions": [action]}, now=T0)
    assert "\x00" not in row["name"] and (row["cost_usd"] or 0) <= 1e9
    assert (row["input_tokens"] or 0) <= 10**15


class RefusingRuns(FakeRuns):
    """A run service that refuses every action named ``refuse-me``, as the real one refuses
    an invalid action: the whole batch, naming each bad one by index."""

    async def ingest(self, run_id: str, body: dict[str, Any], who: Principal) -> dict[str, Any]:
        bad = [i for i, a in enumerate(body["actions"]) if a["name"] == "refuse-me"]
        if bad:
            raise ValidationFailed("invalid action batch", details={"errors": [
                {"index": i, "field": "name", "message": "refused"} for i in bad]})
        return await super().ingest(run_id, body, who)


def test_a_refused_span_is_counted_once_and_spares_its_neighbours_and_other_traces() -> None:
    async def go() -> None:
        runs = RefusingRuns()
        rx = Receiver(runs, 60.0, fixed_price, clock=lambda: T0 + 100)  # type: ignore[arg-type]
        other = "6b8efff798038103d269b633813fc60c"
        good_root = dataclasses.replace(span("00000000000000f1", None, "fine"), trace_id=other)
        got = await rx.receive([
            good_root,
            span("00000000000000a1", None, "root"),
            span("00000000000000a2", "00000000000000a1", "refuse-me"),
            span("00000000000000a3", "00000000000000a1", "kept")], 0, ADMIN)
        assert (got["refused"], got["accepted"]) == (1, 3) and "refused" in got["why"]
        mine, theirs = ids.run_id_of_trace(TRACE), ids.run_id_of_trace(other)
        assert {a["name"] for a in runs.actions[mine].values()} == {"root", "kept"}
        assert {a["name"] for a in runs.actions[theirs].values()} == {"fine"}
        assert runs.runs[mine]["status"] == runs.runs[theirs]["status"] == "completed"
        # Nothing is held to be tried again, at the hold's end or at shutdown.
        assert rx.stats()["held_spans"] == 0 and rx.stats()["rejected_spans"] == 1
        await rx._release(T0 + 10_000)
        await rx.stop()
        assert rx.stats()["rejected_spans"] == 1
    asyncio.run(go())


class BrokenRuns(FakeRuns):
    """A run service that fails on the actions named ``poison`` as a bug would: not a
    refusal, an exception, every time."""

    async def ingest(self, run_id: str, body: dict[str, Any], who: Principal) -> dict[str, Any]:
        if any(a["name"] == "poison" for a in body["actions"]):
            raise UnicodeEncodeError("utf-8", "\udc80", 0, 1, "surrogates not allowed")
        return await super().ingest(run_id, body, who)


@pytest.mark.parametrize("transient", [False, True])
def test_a_trace_that_cannot_be_recorded_holds_back_no_other(transient: bool) -> None:
    # A span a bug could not store was held and tried again with every trace after it, for
    # ever: none of them was ever recorded. Each trace is recorded on its own: the others
    # go in with the same request; the failing one waits again when the failure is the
    # database being away, else it is dropped.
    async def go() -> None:
        runs = BrokenRuns()
        rx = Receiver(runs, 60.0, fixed_price, clock=lambda: T0 + 100,  # type: ignore[arg-type]
                      transient=lambda exc: transient)
        other = "6b8efff798038103d269b633813fc60c"
        with pytest.raises(UnicodeEncodeError):
            await rx.receive([
                span("00000000000000a1", None, "poison"),
                dataclasses.replace(span("00000000000000f1", None, "fine"), trace_id=other)],
                0, ADMIN)
        theirs = ids.run_id_of_trace(other)
        assert {a["name"] for a in runs.actions[theirs].values()} == {"fine"}
        if transient:
            with pytest.raises(UnicodeEncodeError):
                await rx._release(T0 + 10_000)
            assert rx.stats()["held_spans"] == 1  # the poison waits for the database
        else:
            await rx._release(T0 + 10_000)
            assert rx.stats()["held_spans"] == 0
    asyncio.run(go())


class SlowRuns(FakeRuns):
    """A run service whose commits wait until let go, as a busy database's do."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()

    async def ingest(self, run_id: str, body: dict[str, Any], who: Principal) -> dict[str, Any]:
        await self.gate.wait()
        return await super().ingest(run_id, body, who)


def test_spans_being_written_still_count_as_held_and_a_failed_write_holds_them_at_size() -> None:
    # held_spans fell to 0 while released spans were still being written (a poller saw "all
    # done" with the run half recorded); and spans put back after a failed write were held at
    # 0 bytes, out of MAX_HELD_BYTES' reach.
    async def go() -> None:
        runs, now = SlowRuns(), [T0 + 100]
        rx = Receiver(runs, 30.0, fixed_price, clock=lambda: now[0])  # type: ignore[arg-type]
        orphans = [span(f"00000000000000a{i}", "00000000000000ff", "step", start=i,
                        attrs={"input.value": "x" * 1000}) for i in range(3)]
        await rx.receive(orphans, 0, ADMIN)
        release = asyncio.create_task(rx._release(now[0] + 31))
        await asyncio.sleep(0.05)
        assert not release.done() and rx.stats()["held_spans"] == 3  # being written
        runs.gate.set()
        await release
        assert rx.stats()["held_spans"] == 0 and rx.stats()["recorded_spans"] == 3

        broken = BrokenRuns()
        rx = Receiver(broken, 30.0, fixed_price, clock=lambda: now[0],  # type: ignore[arg-type]
                      transient=lambda exc: True)
        poison = [span("00000000000000b1", None, "poison", attrs={"input.value": "y" * 5000})]
        with pytest.raises(UnicodeEncodeError):
            await rx.receive(poison, 0, ADMIN)
        assert rx.stats()["held_spans"] == 1
        assert rx._held_bytes() == holding.size_of(poison[0]) > 5000
    asyncio.run(go())


class GatedRuns(FakeRuns):
    """Commits of the ``bulk`` agent's runs wait until let go; counts those waiting at once."""

    def __init__(self) -> None:
        super().__init__()
        self.gate, self.waiting, self.most = asyncio.Event(), 0, 0

    async def ingest(self, run_id: str, body: dict[str, Any], who: Principal) -> dict[str, Any]:
        if self.runs[run_id]["agent_id"] == "bulk":
            self.waiting += 1
            self.most = max(self.most, self.waiting)
            await self.gate.wait()
            self.waiting -= 1
        return await super().ingest(run_id, body, who)


def test_one_senders_many_traces_hold_no_other_sender_up() -> None:
    # A Collector's batch of thousands of short traces held the receiver's one lock for the
    # whole request (three commits per trace, one after the other): another agent's one-span
    # request waited past its exporter's 10 s timeout. Now each trace has its own lock and a
    # request's traces are recorded side by side, their commits sharing transactions.
    async def go() -> None:
        runs = GatedRuns()
        rx = Receiver(runs, 60.0, fixed_price, clock=lambda: T0 + 100)  # type: ignore[arg-type]
        bulk = [dataclasses.replace(span("00000000000000a1", None, "r", service="bulk"),
                                    trace_id=f"{i + 1:032x}") for i in range(200)]
        big = asyncio.create_task(rx.receive(bulk, 0, ADMIN))
        while runs.waiting < traces.PARALLEL:  # its first traces are being written
            await asyncio.sleep(0)
        other = "6b8efff798038103d269b633813fc60c"
        small = dataclasses.replace(span("00000000000000f1", None, "small", service="agent"),
                                    trace_id=other)
        got = await asyncio.wait_for(rx.receive([small], 0, ADMIN), timeout=30)  # a hang guard
        assert got["accepted"] == 1 and not big.done()
        assert runs.runs[ids.run_id_of_trace(other)]["status"] == "completed"
        assert runs.most == traces.PARALLEL  # side by side, and no more
        runs.gate.set()
        assert (await big)["accepted"] == 200
        assert rx.stats()["recorded_spans"] == 201 and rx.stats()["held_spans"] == 0
        # A trace sent again while its first delivery is being written is one action.
        runs.gate.clear()
        first = asyncio.create_task(rx.receive([dataclasses.replace(
            span("00000000000000b1", None, "again", service="bulk"), trace_id=f"{999:032x}")],
            0, ADMIN))
        while runs.waiting < 1:
            await asyncio.sleep(0)
        resent = asyncio.create_task(rx.receive([dataclasses.replace(
            span("00000000000000b1", None, "again", service="bulk"), trace_id=f"{999:032x}")],
            0, ADMIN))
        for _ in range(3):  # it finds the span being written, then waits for the trace
            await asyncio.sleep(0)
        runs.gate.set()
        await first, await resent
        assert len(runs.actions[ids.run_id_of_trace(f"{999:032x}")]) == 1
        assert rx.stats()["duplicate_spans"] == 1
    asyncio.run(go())


def test_a_span_the_mapping_cannot_read_is_kept_bare(monkeypatch: pytest.MonkeyPatch) -> None:
    real = incoming.action_of

    def picky(s: wire.Span, *args: Any, **kw: Any) -> dict[str, Any]:
        if s.name == "odd":
            raise KeyError("surprise")
        return real(s, *args, **kw)

    monkeypatch.setattr(incoming, "action_of", picky)

    async def go() -> None:
        rx, runs, _ = receiver()
        await rx.receive([span("00000000000000b1", None, "root"),
                          span("00000000000000b2", "00000000000000b1", "odd")], 0, ADMIN)
        acts = {a["name"]: a for a in runs.actions[ids.run_id_of_trace(TRACE)].values()}
        assert acts["odd"]["parent_id"] == "00000000000000b1"
        assert "surprise" in acts["odd"]["tags"]["otel"]["unreadable"]
    asyncio.run(go())


def test_a_root_with_a_huge_error_and_a_blank_service_still_end_their_run() -> None:
    async def go() -> None:
        rx, runs, _ = receiver()
        root = span("00000000000000d1", None, "root", error="x" * 200_000, service=" \x00 ")
        await rx.receive([root], 0, ADMIN)
        run = runs.runs[ids.run_id_of_trace(TRACE)]
        assert (run["status"], run["agent_id"]) == ("failed", "otel")
        assert run["error"].startswith("Error: xxx") and len(run["error"]) == 100_000
    asyncio.run(go())
