"""OTLP in against hostile senders: ``POST /v1/traces`` on one real master, sent bodies no
exporter writes — malformed and truncated protobuf, JSON of the wrong types at every level,
nesting thousands deep, huge and countless attributes, parent cycles, bad ids and times,
gzip bombs, too many spans — and tokens that may not send. Each is a clear 4xx (or OTLP's
partial success, the fine spans kept), and afterwards the master still answers and every
run it recorded still reads back through the API.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from tests.integration.harness import Cluster, isolated_cluster
from titan import TitanJob
from titan.master.otel.ids import run_id_of_trace

pytestmark = pytest.mark.slow

LIMIT = 8 * 1024 * 1024  # TITAN_MAX_BODY_BYTES here: big enough for a huge attribute
NOW = time.time_ns()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    # The default hold (120 s): a span whose parent never comes stays held for the whole
    # module, so nothing here passes by waiting it out.
    c = isolated_cluster(tmp_path_factory.mktemp("otlp-hostile"), slots=1,
                         env={"TITAN_MAX_BODY_BYTES": str(LIMIT)})
    try:
        yield c
    finally:
        c.stop()


def post(cluster: Cluster, body: bytes, content_type: str = "application/json",
         token: str | None = "admin", **headers: str) -> httpx.Response:
    auth = {} if token is None else {
        "Authorization": f"Bearer {cluster.admin_token if token == 'admin' else token}"}
    return httpx.post(cluster.url + "/v1/traces", content=body, timeout=120,
                      headers={"Content-Type": content_type, **auth, **headers})


def span(trace: str, sid: str, parent: str = "", **fields: Any) -> dict[str, Any]:
    return {"traceId": trace, "spanId": sid, "parentSpanId": parent, "name": f"step {sid}",
            "kind": 1, "startTimeUnixNano": str(NOW), "endTimeUnixNano": str(NOW + 10**6),
            **fields}


def request(*spans: dict[str, Any], service: str = "hostile") -> dict[str, Any]:
    return {"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name",
                                     "value": {"stringValue": service}}]},
        "scopeSpans": [{"scope": {"name": "fuzz"}, "spans": list(spans)}]}]}


def encoded(body: dict[str, Any]) -> bytes:
    return json.dumps(body).encode()


def run_of(cluster: Cluster, trace: str) -> dict[str, Any] | None:
    try:
        run: dict[str, Any] = cluster.api("GET", f"/runs/{run_id_of_trace(trace)}")
    except OSError as exc:  # urllib's HTTPError
        assert getattr(exc, "code", None) == 404, exc
        return None
    return run


def actions_of(cluster: Cluster, trace: str) -> dict[str, dict[str, Any]]:
    found = cluster.api("GET", f"/runs/{run_id_of_trace(trace)}/actions?limit=1000")
    return {a["id"]: a for a in found["actions"]}


def refused(reply: httpx.Response, status: int, *words: str) -> str:
    assert reply.status_code == status, (reply.status_code, reply.text[:500])
    message: str = reply.json()["error"]["message"]
    for word in words:
        assert word in message, message
    return message


def pb_request(trace: str, *spans: tuple[str, str], service: str = "hostile",
               attributes: list[KeyValue] | None = None) -> ExportTraceServiceRequest:
    """Spans (span id, parent id, hex) of one trace, in protobuf."""
    out = ExportTraceServiceRequest()
    rs = out.resource_spans.add()
    rs.resource.attributes.append(KeyValue(key="service.name",
                                           value=AnyValue(string_value=service)))
    ss = rs.scope_spans.add()
    for sid, parent in spans:
        s = ss.spans.add(trace_id=bytes.fromhex(trace), span_id=bytes.fromhex(sid),
                         parent_span_id=bytes.fromhex(parent), name=f"step {sid}",
                         start_time_unix_nano=NOW, end_time_unix_nano=NOW + 10**6)
        s.attributes.extend(attributes or [])
    return out


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def deep_protobuf(trace: str, depth: int) -> bytes:
    """A request whose one span has an attribute of arrays ``depth`` deep, written on the wire
    by hand (protobuf's own parser refuses to build it)."""
    value = _field(1, b"x")  # AnyValue.string_value
    for _ in range(depth):
        value = _field(5, _field(1, value))  # AnyValue.array_value -> ArrayValue.values
    attribute = _field(1, b"deep") + _field(2, value)  # KeyValue
    s = (_field(1, bytes.fromhex(trace)) + _field(2, b"\x01" * 8) + _field(5, b"deep")
         + _field(9, attribute))  # Span: trace_id, span_id, name, attributes
    return _field(1, _field(2, _field(2, s)))  # request.resource_spans.scope_spans.spans


# -- bodies that cannot be read: a 400 (or 415) that stores nothing ---------------------------

def _json(body: Any) -> bytes:
    return json.dumps(body).encode()


def _with_span(trace: str, **fields: Any) -> bytes:
    """A fine root span, and beside it one with ``fields`` set (wrongly)."""
    return _json(request(span(trace, "1000000000000001"),
                         span(trace, "1000000000000002", "1000000000000001", **fields)))


def _attribute(trace: str, value: Any) -> bytes:
    return _with_span(trace, attributes=[{"key": "a", "value": value}])


def _nested(trace: str, depth: int, kind: str) -> bytes:
    inner = '{"stringValue": "x"}'
    if kind == "kvlist":
        text = '{"kvlistValue": {"values": [{"key": "k", "value": ' * depth + inner + \
               "}]}}" * depth
    else:
        text = '{"arrayValue": {"values": [' * depth + inner + "]}}" * depth
    return _attribute(trace, "HERE").replace(b'"HERE"', text.encode())


UNREADABLE: dict[str, tuple[str, Callable[[str], bytes], int, str]] = {
    # name: (content type, body for a trace, status, words the error holds)
    "protobuf garbage": ("application/x-protobuf",
                         lambda t: b"\x0a\xff\xff\xff\xff\x0f garbage", 400, "protobuf"),
    "protobuf truncated": ("application/x-protobuf", lambda t: pb_request(
        t, ("1000000000000001", "")).SerializeToString()[:-5], 400, "protobuf"),
    "protobuf nested 1000 deep": ("application/x-protobuf",
                                  lambda t: deep_protobuf(t, 1000), 400, "protobuf"),
    "protobuf nested 100000 deep": ("application/x-protobuf",
                                    lambda t: deep_protobuf(t, 100_000), 400, "protobuf"),
    "json truncated": ("application/json", lambda t: _json(request(span(t, "1" * 16)))[:-7],
                       400, "JSON"),
    "json not utf-8": ("application/json",
                       lambda t: _json(request(span(t, "1" * 16, name="QQ"))).replace(
                           b"QQ", b"\xff\xfe"), 400, "UTF-8"),
    "json array at the top": ("application/json", lambda t: _json([request()]), 400,
                              "object"),
    "json null at the top": ("application/json", lambda t: b"null", 400, "object"),
    "resourceSpans a string": ("application/json", lambda t: _json({"resourceSpans": "x"}),
                               400, "resourceSpans"),
    "resourceSpans of strings": ("application/json",
                                 lambda t: _json({"resourceSpans": ["x", request(
                                     span(t, "1" * 16))["resourceSpans"][0]]}),
                                 400, "resourceSpans[0]", "object"),
    "resource a string": ("application/json", lambda t: _json({"resourceSpans": [
        {"resource": "r", "scopeSpans": [{"spans": [span(t, "1" * 16)]}]}]}), 400,
        "resourceSpans[0].resource", "object"),
    "scopeSpans an object": ("application/json", lambda t: _json({"resourceSpans": [
        {"scopeSpans": {"spans": [span(t, "1" * 16)]}}]}), 400, "scopeSpans"),
    "scope an array": ("application/json", lambda t: _json({"resourceSpans": [
        {"scopeSpans": [{"scope": ["x"], "spans": [span(t, "1" * 16)]}]}]}), 400,
        "scopeSpans[0].scope", "object"),
    "spans of numbers": ("application/json", lambda t: _json({"resourceSpans": [
        {"scopeSpans": [{"spans": [span(t, "1" * 16), 1]}]}]}), 400, "spans"),
    "traceId a number": ("application/json", lambda t: _with_span(t, traceId=5), 400,
                         "traceId"),
    "spanId an array": ("application/json", lambda t: _with_span(t, spanId=["ab"]), 400,
                        "spanId"),
    "spanId not hex": ("application/json", lambda t: _with_span(t, spanId="zz" * 8), 400,
                       "spanId", "hex"),
    "parentSpanId not hex": ("application/json", lambda t: _with_span(
        t, parentSpanId="qq" * 8), 400, "parentSpanId", "hex"),
    "name a number": ("application/json", lambda t: _with_span(t, name=5), 400, "name"),
    "name an object": ("application/json", lambda t: _with_span(t, name={"a": 1}), 400,
                       "name"),
    "start not a number": ("application/json",
                           lambda t: _with_span(t, startTimeUnixNano="soon"), 400,
                           "startTimeUnixNano"),
    "start negative": ("application/json",
                       lambda t: _with_span(t, startTimeUnixNano="-5"), 400,
                       "startTimeUnixNano"),
    "start past 64 bits": ("application/json",
                           lambda t: _with_span(t, startTimeUnixNano=str(2**64 + 5)), 400,
                           "startTimeUnixNano"),
    "end a fraction": ("application/json", lambda t: _with_span(t, endTimeUnixNano=1.5), 400,
                       "endTimeUnixNano"),
    "status a string": ("application/json", lambda t: _with_span(t, status="error"), 400,
                        "spans[1].status", "object"),
    "status an array": ("application/json", lambda t: _with_span(t, status=["code"]), 400,
                        "status"),
    "attributes an object": ("application/json", lambda t: _with_span(
        t, attributes={"a": 1}), 400, "attributes"),
    "attributes of nulls": ("application/json", lambda t: _with_span(t, attributes=[None]),
                            400, "attributes"),
    "attribute value a string": ("application/json", lambda t: _attribute(t, "x"), 400,
                                 "attributes[0].value", "object"),
    "attribute value an array": ("application/json", lambda t: _attribute(t, ["x"]), 400,
                                 "attributes[0].value", "object"),
    "attribute key a number": ("application/json", lambda t: _with_span(
        t, attributes=[{"key": 5, "value": {"intValue": "1"}}]), 400, "key"),
    "intValue not a number": ("application/json",
                              lambda t: _attribute(t, {"intValue": "many"}), 400,
                              "intValue"),
    "arrayValue an array": ("application/json",
                            lambda t: _attribute(t, {"arrayValue": ["x"]}), 400,
                            "arrayValue", "object"),
    "bytesValue not base64": ("application/json",
                              lambda t: _attribute(t, {"bytesValue": "!!!!!!!!"}), 400,
                              "bytesValue", "base64"),
    "events of strings": ("application/json", lambda t: _with_span(t, events=["boom"]), 400,
                          "events[0]", "object"),
    "kvlist 1000 deep": ("application/json", lambda t: _nested(t, 1000, "kvlist"), 400,
                         "nested deeper"),
    "array 100000 deep": ("application/json", lambda t: _nested(t, 100_000, "array"), 400,
                          "nested deeper"),
    "brackets 1000000 deep": ("application/json", lambda t: b"[" * 10**6 + b"]" * 10**6,
                              400, "nested deeper"),
    "gzip not gzip": ("application/json", lambda t: b"\x1f\x8b\x08\x00 not really", 400,
                      "gzip"),
    "gzip truncated": ("application/json", lambda t: gzip.compress(
        _json(request(span(t, "1" * 16))))[:-12], 400, "gzip"),
    "wrong content type": ("text/plain", lambda t: _json(request(span(t, "1" * 16))), 415,
                           "Content-Type"),
    "no content type": ("", lambda t: _json(request(span(t, "1" * 16))), 415,
                        "Content-Type"),
}
_GZIPPED = {"gzip not gzip", "gzip truncated"}


@pytest.mark.parametrize("case", sorted(UNREADABLE))
def test_a_body_that_cannot_be_read_is_refused_whole_and_stores_nothing(
        cluster: Cluster, case: str) -> None:
    content_type, make, status, *words = UNREADABLE[case]
    trace = hashlib.sha256(case.encode()).hexdigest()[:32]
    headers = {"Content-Encoding": "gzip"} if case in _GZIPPED else {}
    refused(post(cluster, make(trace), content_type, **headers), status, *words)
    assert run_of(cluster, trace) is None  # the fine span beside the bad one is not half-kept
    assert cluster.api("GET", "/health")["status"] == "ok"


def test_moderate_nesting_is_read_and_kept(cluster: Cluster) -> None:
    # What the refusals above must not catch: a kvlist ten deep, and arrays forty deep in
    # protobuf, are an instrumentation's (a tool's JSON arguments as a kvlist).
    trace = "a10c8a7e1d3b4c5a6e7f8091a2b3c4d5"
    assert post(cluster, _nested(trace, 10, "kvlist")).status_code == 200
    found = actions_of(cluster, trace)["1000000000000002"]["tags"]["otel"]["attributes"]["a"]
    for _ in range(10):
        found = found["k"]
    assert found == "x"
    trace = "a20c8a7e1d3b4c5a6e7f8091a2b3c4d5"
    reply = post(cluster, deep_protobuf(trace, 40), "application/x-protobuf")
    assert reply.status_code == 200, reply.text
    assert run_of(cluster, trace) is not None


# -- readable bodies with bad spans: partial success, the fine spans kept ---------------------

def test_spans_with_malformed_ids_are_rejected_alone(cluster: Cluster) -> None:
    trace = "b10c8a7e1d3b4c5a6e7f8091a2b3c4d5"
    root, fine = "b000000000000001", "b000000000000002"
    body = request(
        span(trace, root), span(trace, fine, root),
        span(trace, "b0000001", root),  # a span id of 4 bytes
        span(trace, "b0" * 12, root),  # of 12
        span(trace, "00" * 8, root),  # all zero: "no span"
        span("b10c8a7e", "b000000000000003", root),  # a trace id of 4 bytes
        span("00" * 16, "b000000000000004", root),  # all zero
        # A parent id of the wrong length is no parent: the span was taken for a root, and
        # ended the run with its own status (an error, here) before the real root came.
        span(trace, "b000000000000005", "b0b0", status={"code": 2, "message": "fake root"}),
        span(trace, "b000000000000006", "b0" * 9))
    reply = post(cluster, encoded(body))
    assert reply.status_code == 200, reply.text
    partial = reply.json()["partialSuccess"]
    assert partial["rejectedSpans"] == "7" and "malformed" in partial["errorMessage"], partial
    assert set(actions_of(cluster, trace)) == {root, fine}
    run = run_of(cluster, trace)
    assert run is not None and (run["status"], run["error"]) == ("completed", None), run


def test_parent_cycles_and_self_parents_are_recorded_at_once(cluster: Cluster) -> None:
    # A parent of B and B of A, or a span its own parent: no span of the request can ever
    # come that resolves them, so they waited out TITAN_OTLP_HOLD (two minutes by default)
    # before the run showed them.
    trace = "c10c8a7e1d3b4c5a6e7f8091a2b3c4d5"
    a, b, me, child = "c000000000000001", "c000000000000002", "c000000000000003", \
        "c000000000000004"
    body = request(span(trace, a, b), span(trace, b, a), span(trace, me, me),
                   span(trace, child, me, attributes=[
                       {"key": "openinference.span.kind", "value": {"stringValue": "TOOL"}}]))
    reply = post(cluster, encoded(body))
    assert reply.status_code == 200 and reply.json() == {}, reply.text
    acts = actions_of(cluster, trace)
    assert set(acts) == {a, b, me, child}
    assert {acts[a]["parent_id"], acts[b]["parent_id"]} == {a, b}
    assert acts[me]["parent_id"] == me and acts[child]["parent_id"] == me
    run = run_of(cluster, trace)
    assert run is not None and run["status"] == "running" and run["action_count"] == 4
    # A parent in another trace may still come (a remote parent): that one waits, held.
    other = "c20c8a7e1d3b4c5a6e7f8091a2b3c4d5"
    before = cluster.api("GET", "/otlp")["ingest"]["held_spans"]
    assert post(cluster, encoded(request(span(other, "c000000000000005", a)))).json() == {}
    assert cluster.api("GET", "/otlp")["ingest"]["held_spans"] == before + 1
    assert run_of(cluster, other) is not None


def test_duplicate_span_ids_within_and_across_requests(cluster: Cluster) -> None:
    trace, again = "d10c8a7e1d3b4c5a6e7f8091a2b3c4d5", "d20c8a7e1d3b4c5a6e7f8091a2b3c4d5"
    root, sid = "d000000000000001", "d000000000000002"
    first = request(span(trace, root), span(trace, sid, root, name="first"),
                    span(trace, sid, root, name="second"))
    assert post(cluster, encoded(first)).status_code == 200
    assert post(cluster, encoded(first)).status_code == 200  # a retry, whole
    # The same span id under another parent, and in another trace.
    moved = request(span(trace, sid, sid, name="third"), span(again, sid, name="other"))
    assert post(cluster, encoded(moved)).status_code == 200
    acts = actions_of(cluster, trace)
    assert set(acts) == {root, sid} and acts[sid]["parent_id"] == root
    assert actions_of(cluster, again)[sid]["name"] == "other"


def test_strings_that_are_not_utf8_in_protobuf(cluster: Cluster) -> None:
    trace = "e10c8a7e1d3b4c5a6e7f8091a2b3c4d5"
    body = pb_request(trace, ("e000000000000001", ""), service="svc-QQ", attributes=[
        KeyValue(key="key-QQ", value=AnyValue(string_value="value-QQ"))])
    body.resource_spans[0].scope_spans[0].spans[0].status.message = "boom-QQ"
    body.resource_spans[0].scope_spans[0].spans[0].status.code = 2
    raw = body.SerializeToString().replace(b"QQ", b"\xc3\x28")
    reply = post(cluster, raw, "application/x-protobuf")
    assert reply.status_code == 200, reply.text
    act = actions_of(cluster, trace)["e000000000000001"]
    assert act["tags"]["otel"]["attributes"] == {"key-\ufffd(": "value-\ufffd("}
    run = run_of(cluster, trace)
    assert run is not None and run["agent_id"] == "svc-\ufffd("
    assert (run["status"], run["error"]) == ("failed", "Error: boom-\ufffd(")


def test_timestamps_out_of_any_range(cluster: Cluster) -> None:
    trace = "f10c8a7e1d3b4c5a6e7f8091a2b3c4d5"
    top = str(2**64 - 1)
    body = request(
        span(trace, "f000000000000001", startTimeUnixNano=top, endTimeUnixNano=top),
        span(trace, "f000000000000002", "f000000000000001", startTimeUnixNano="0",
             endTimeUnixNano="0"),
        span(trace, "f000000000000003", "f000000000000001", startTimeUnixNano=str(NOW),
             endTimeUnixNano=str(NOW - 3600 * 10**9)),  # ends an hour before it starts
        span(trace, "f000000000000004", "f000000000000001", startTimeUnixNano=str(2**63),
             endTimeUnixNano=str(2**63 - 1)))
    before = time.time()
    reply = post(cluster, encoded(body))
    assert reply.status_code == 200 and reply.json() == {}, reply.text
    acts = actions_of(cluster, trace)
    assert len(acts) == 4
    for act in acts.values():
        assert before - 86_400 <= act["started_at"] <= time.time() + 86_400, act
        assert 0 <= act["duration_ns"] <= 10**6, act
    run = run_of(cluster, trace)
    assert run is not None and run["status"] == "completed"
    assert run["ended_at"] >= run["started_at"]


# -- size: huge values, countless attributes and spans, bombs ---------------------------------

def _stalls_while(cluster: Cluster, send: Callable[[], httpx.Response]) -> tuple[
        httpx.Response, float]:
    """``send``'s reply, and the longest /health took meanwhile (the event loop's stall)."""
    worst, done = [0.0], threading.Event()

    def probe() -> None:
        while not done.is_set():
            t = time.monotonic()
            httpx.get(cluster.url + "/api/v1/health", timeout=120)
            worst[0] = max(worst[0], time.monotonic() - t)
            time.sleep(0.05)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    try:
        reply = send()
    finally:
        done.set()
        thread.join()
    return reply, worst[0]


def test_huge_and_countless_attributes_are_kept_within_bounds(cluster: Cluster) -> None:
    trace = "a30c8a7e1d3b4c5a6e7f8091a2b3c4d5"
    huge = "x" * (LIMIT - 4096)
    body = request(
        span(trace, "a000000000000001", attributes=[
            {"key": "big", "value": {"stringValue": huge[:LIMIT // 2]}},
            {"key": "k" * (LIMIT // 3), "value": {"intValue": "1"}}]),
        span(trace, "a000000000000002", "a000000000000001", name="n" * 100_000))
    reply = post(cluster, encoded(body))
    assert reply.status_code == 200, reply.text
    acts = actions_of(cluster, trace)
    assert len(acts["a000000000000001"]["tags"]["otel"]["attributes"]["big"]) <= 501
    assert len(acts["a000000000000002"]["name"]) <= 200
    many = request(span("a40c8a7e1d3b4c5a6e7f8091a2b3c4d5", "a000000000000001", attributes=[
        {"key": f"k{i}", "value": {"intValue": str(i)}} for i in range(100_000)]))
    reply = post(cluster, encoded(many))
    assert reply.status_code == 200, reply.text
    act = actions_of(cluster, "a40c8a7e1d3b4c5a6e7f8091a2b3c4d5")["a000000000000001"]
    assert act["tags"]["otel"]["attributes_truncated"] is True


def test_a_huge_resource_costs_once_not_once_a_trace(cluster: Cluster) -> None:
    # The run's agent is read from the resource's service.name, each character tested for
    # being printable — on the event loop, for every new trace: one resource of a few MB
    # over a thousand one-span traces held the master (health included) for minutes ...
    pb = ExportTraceServiceRequest()
    rs = pb.resource_spans.add()
    rs.resource.attributes.append(KeyValue(key="service.name", value=AnyValue(
        string_value="svc" + "x" * (LIMIT // 2))))
    # ... and, measured for each span held (its size bounds what is held), its 100,000
    # attributes walked once a span.
    rs.resource.attributes.extend(KeyValue(key=f"r{i}", value=AnyValue(int_value=i))
                                  for i in range(100_000))
    spans = rs.scope_spans.add().spans
    for i in range(1000):
        spans.add(trace_id=bytes.fromhex("a5") + i.to_bytes(15, "big"),
                  span_id=b"\xa5" * 7 + b"\x01", name="s", start_time_unix_nano=NOW,
                  end_time_unix_nano=NOW + 1)
    started = time.monotonic()
    reply, stall = _stalls_while(cluster, lambda: post(
        cluster, pb.SerializeToString(), "application/x-protobuf"))
    assert reply.status_code == 200, reply.text
    assert time.monotonic() - started < 60 and stall < 5, (time.monotonic() - started, stall)
    run = run_of(cluster, "a5" + "00" * 14 + "07")
    assert run is not None and run["agent_id"] == ("svc" + "x" * 197)


def test_too_many_spans_in_one_request_is_a_413(cluster: Cluster) -> None:
    # 64 MiB of protobuf holds 1.6 million bare spans: read into Python, ~2 GB of memory and
    # a 30-second stall of the event loop for one request of an operator's token.
    trace = "a60c8a7e1d3b4c5a6e7f8091a2b3c4d5"
    pb = ExportTraceServiceRequest()
    spans = pb.resource_spans.add().scope_spans.add().spans
    for i in range(1, 50_002):
        spans.add(trace_id=bytes.fromhex(trace), span_id=i.to_bytes(8, "big"),
                  parent_span_id=(i + 1).to_bytes(8, "big"))
    reply, stall = _stalls_while(cluster, lambda: post(
        cluster, pb.SerializeToString(), "application/x-protobuf"))
    refused(reply, 413, "50,000 spans")
    assert run_of(cluster, trace) is None
    as_json = {"resourceSpans": [{"scopeSpans": [{"spans": [
        {"traceId": trace, "spanId": f"{i:016x}"} for i in range(1, 50_002)]}]}]}
    refused(post(cluster, encoded(as_json)), 413, "50,000 spans")
    assert run_of(cluster, trace) is None
    # A request at the limit is taken.
    del spans[50_000:]
    assert post(cluster, pb.SerializeToString(), "application/x-protobuf").status_code == 200


def test_bodies_past_the_limit_and_gzip_bombs_are_413s(cluster: Cluster) -> None:
    refused(post(cluster, b" " * (LIMIT + 1)), 413, "limited")
    bomb = gzip.compress(b" " * (1024**3), compresslevel=9)  # 1 GiB in ~1 MB
    rss = _rss(cluster)
    refused(post(cluster, bomb, **{"Content-Encoding": "gzip"}), 413, "uncompressed")
    # Members one after another, each under the limit and all together past it.
    member = gzip.compress(b" " * (LIMIT // 2))
    refused(post(cluster, member * 3, **{"Content-Encoding": "gzip"}), 413, "uncompressed")
    assert _rss(cluster) - rss < 256 * 1024 * 1024
    refused(post(cluster, b"{}", **{"Content-Encoding": "br"}), 415, "Content-Encoding")


def _rss(cluster: Cluster) -> int:
    assert cluster.master is not None
    with open(f"/proc/{cluster.master.pid}/status") as f:
        return int(f.read().split("VmRSS:")[1].split()[0]) * 1024


# -- who may send -----------------------------------------------------------------------------

SENDER = """
import os, urllib.error, urllib.request
req = urllib.request.Request(os.environ["TITAN_MASTER_URL"] + "/v1/traces", data=b"{}",
                             method="POST", headers={"Content-Type": "application/json",
                             "Authorization": "Bearer " + os.environ["TITAN_TOKEN"]})
try:
    with urllib.request.urlopen(req, timeout=30) as r:
        print("status", r.status, flush=True)
except urllib.error.HTTPError as e:
    print("status", e.code, e.read().decode(), flush=True)
"""


def test_only_operators_and_admins_may_send(cluster: Cluster) -> None:
    body = encoded(request(span("a70c8a7e1d3b4c5a6e7f8091a2b3c4d5", "a000000000000001")))
    refused(post(cluster, body, token=None), 401, "token")
    refused(post(cluster, body, token="tt_not-a-token"), 401)
    viewer = cluster.api("POST", "/tokens", {"role": "viewer"})["token"]
    refused(post(cluster, body, token=viewer), 403, "admin or operator")
    worker = (cluster.data / "worker.token").read_text().strip()
    refused(post(cluster, body, token=worker), 403, "admin or operator")
    assert run_of(cluster, "a70c8a7e1d3b4c5a6e7f8091a2b3c4d5") is None
    client = cluster.client()
    script = cluster.script("sender.py", SENDER)
    client.submit_dag("SENDER", [TitanJob("send", script)])
    assert client.wait("SENDER/send", timeout=60)["state"] == "COMPLETED"
    logs = client.fetch_logs("SENDER/send")
    assert "status 403" in logs and "job" in logs, logs
    operator = cluster.api("POST", "/tokens", {"role": "operator"})["token"]
    assert post(cluster, body, token=operator).status_code == 200
    assert run_of(cluster, "a70c8a7e1d3b4c5a6e7f8091a2b3c4d5") is not None


def test_z_every_run_still_reads_back(cluster: Cluster) -> None:
    """Last: after all of the above, the master is up, has logged no internal error, and
    every run it recorded (the Runs page's list) reads back with its actions."""
    runs = cluster.api("GET", "/runs?limit=500")["runs"]
    assert len(runs) >= 10
    for run in runs:
        assert cluster.api("GET", f"/runs/{run['id']}")["id"] == run["id"]
        cluster.api("GET", f"/runs/{run['id']}/actions?limit=100")
    log = (cluster.root / "master.log").read_text(errors="replace")
    assert "internal error" not in log and "Traceback" not in log, log[-5000:]
    assert cluster.master is not None and cluster.master.poll() is None
