"""OTLP/HTTP trace bodies: protobuf or JSON in (gzip or not), spans as plain records.

The messages are ``opentelemetry-proto``'s generated classes. A body is decoded whole before
anything is recorded, so a malformed one is a 400 that says what is wrong and stores nothing;
JSON is read by :mod:`.wire_json`, and neither may carry more than ``MAX_SPANS`` spans (413).
A span whose trace, span or parent id is malformed (the wrong length, or an all-zero trace or
span id) is rejected alone, and said so in OTLP's partial success. A gzip body
is inflated only up to the same limit as a plain one: a small bomb is a 413, not a gigabyte.
A protobuf body whose strings are not all UTF-8 (a Go or JS sender's bytes, passed on by a
Collector) is read again with each bad byte as U+FFFD (:func:`_repaired`): protobuf's parser
refused the whole request, every other span in it with it (exporters drop a batch on a 400).
"""

from __future__ import annotations

import base64
import json
import math
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory
from google.protobuf.descriptor import FieldDescriptor, FileDescriptor
from google.protobuf.message import DecodeError, Message
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTracePartialSuccess,
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import (
    AnyValue,
    ArrayValue,
    KeyValue,
    KeyValueList,
)

from titan.errors import APIError, PayloadTooLarge, ValidationFailed
from titan.master.otel.wire_json import MAX_SPANS, from_json, too_many

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
#: Span kinds and status codes as OTLP numbers them.
INTERNAL, SERVER, CLIENT = 1, 2, 3
STATUS_OK, STATUS_ERROR = 1, 2
_INT64 = 2**63


@dataclass
class Span:
    """One received span, ids in lowercase hex, attribute values as plain Python values."""

    trace_id: str
    span_id: str
    parent_id: str | None
    name: str
    kind: int
    start_ns: int
    end_ns: int
    attributes: dict[str, Any]
    status_code: int = 0
    status_message: str = ""
    #: (name, time in ns, attributes) of each event: where exceptions are recorded.
    events: list[tuple[str, int, dict[str, Any]]] = field(default_factory=list)
    resource: dict[str, Any] = field(default_factory=dict)
    scope: str = ""
    #: About how much memory the resource's text takes (measured once per resource, which
    #: its spans share: measured per span, 1,000 spans of a resource with 100,000
    #: attributes walked it 1,000 times on the event loop).
    resource_size: int = 0


def media_type(content_type: str | None) -> str:
    return (content_type or "").partition(";")[0].strip().lower()


def decode(body: bytes, content_type: str | None, content_encoding: str | None, limit: int,
           loads: Callable[[bytes], Any] = json.loads) -> tuple[list[Span], int]:
    """The spans of an ``ExportTraceServiceRequest``, and how many were rejected (ids that
    name no span); raises a 400, 413 or 415 for a body that cannot be read. ``loads`` parses
    a JSON body (the API passes its strict parser: depth, numbers, surrogates)."""
    encoding = (content_encoding or "identity").strip().lower()
    if encoding == "gzip":
        body = _gunzip(body, limit)
    elif encoding != "identity":
        # 415, as HTTP has it for a content coding the server does not take (RFC 9110,
        # 15.5.16): an exporter tells it from a body it sent wrong (400) and can fall back.
        raise APIError(f"Content-Encoding {content_encoding!r} is not supported: send gzip "
                       "or nothing", code="unsupported_media_type", status=415,
                       details={"field": "Content-Encoding"})
    media = media_type(content_type)
    request = ExportTraceServiceRequest()
    if media in (PROTOBUF, "application/protobuf"):
        try:
            try:
                request.ParseFromString(body)
            except DecodeError:
                request.ParseFromString(_repaired(body))
        except DecodeError as exc:
            raise ValidationFailed(f"the body is not an OTLP ExportTraceServiceRequest in "
                                   f"protobuf: {exc}", details={"field": "body"}) from None
    elif media == JSON:
        from_json(loads(body) if body.strip() else {}, request)
    else:
        raise APIError(f"Content-Type must be {PROTOBUF} or {JSON}, got "
                       f"{content_type or 'none'!r}", code="unsupported_media_type", status=415)
    return spans_of(request)


def _lenient() -> tuple[type[Message], frozenset[str]]:
    """``ExportTraceServiceRequest`` with every string field read as bytes (the same wire
    format, unchecked), and the full names of those fields."""
    pool, strings, added = descriptor_pool.DescriptorPool(), set(), set()

    def as_bytes(msg: descriptor_pb2.DescriptorProto, scope: str) -> None:
        for f in msg.field:
            if f.type == FieldDescriptor.TYPE_STRING:
                f.type = FieldDescriptor.TYPE_BYTES
                strings.add(f"{scope}.{msg.name}.{f.name}")
        for nested in msg.nested_type:
            as_bytes(nested, f"{scope}.{msg.name}")

    def add(file: FileDescriptor) -> None:
        if file.name not in added:
            added.add(file.name)
            for dependency in file.dependencies:
                add(dependency)
            proto = descriptor_pb2.FileDescriptorProto()
            file.CopyToProto(proto)
            for msg in proto.message_type:
                as_bytes(msg, proto.package)
            pool.Add(proto)

    add(ExportTraceServiceRequest.DESCRIPTOR.file)
    name = ExportTraceServiceRequest.DESCRIPTOR.full_name
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(name)), frozenset(strings)


_LENIENT: tuple[type[Message], frozenset[str]] | None = None


def _repaired(body: bytes) -> bytes:
    """The request with each string's bytes that are not UTF-8 as U+FFFD; DecodeError for a
    body that is not a request at all."""
    global _LENIENT
    if _LENIENT is None:  # built on first need (decoding runs in worker threads: a race
        _LENIENT = _lenient()  # builds it twice, harmlessly)
    cls, strings = _LENIENT
    lenient = cls()
    lenient.ParseFromString(body)

    def fix(m: Message) -> None:
        for f, value in m.ListFields():
            repeated = f.is_repeated
            if f.message_type is not None:
                for child in value if repeated else (value,):
                    fix(child)
            elif f.full_name in strings:
                good = [v.decode("utf-8", "replace").encode() for v in
                        (value if repeated else (value,))]
                if repeated:
                    value[:] = good
                else:
                    setattr(m, f.name, good[0])

    fix(lenient)
    data: bytes = lenient.SerializeToString()
    return data


def _gunzip(body: bytes, limit: int) -> bytes:
    """The body inflated, every member of it: gzip allows several one after the other (a
    streaming writer's, ``cat a.gz b.gz``), and only the first was read — a protobuf body
    cut there could parse, its later spans silently gone. Zero bytes after the last member
    are padding, as gzip reads them."""
    out = bytearray()
    while True:
        inflater = zlib.decompressobj(wbits=31)  # gzip framing only
        try:
            out += inflater.decompress(body, limit + 1 - len(out))
        except zlib.error as exc:
            raise ValidationFailed(f"the body is not valid gzip: {exc}",
                                   details={"field": "body"}) from None
        if len(out) > limit or inflater.unconsumed_tail:
            raise PayloadTooLarge(f"request bodies here are limited to {limit:,} bytes, "
                                  "uncompressed", details={"limit": limit})
        if not inflater.eof:
            raise ValidationFailed("the gzip body is truncated", details={"field": "body"})
        body = inflater.unused_data.lstrip(b"\0")
        if not body:
            return bytes(out)


def spans_of(request: ExportTraceServiceRequest) -> tuple[list[Span], int]:
    """The request's spans, and how many were rejected for their ids; a 413 past
    :data:`MAX_SPANS` (counted before any is read)."""
    count = sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans)
    if count > MAX_SPANS:
        raise too_many(count)
    spans: list[Span] = []
    rejected = 0
    for rs in request.resource_spans:
        resource = attributes_of(rs.resource.attributes)
        resource_size = size_of_value(resource)
        for ss in rs.scope_spans:
            for s in ss.spans:
                parent = s.parent_span_id
                # A parent id of the wrong length names no span, yet is not "no parent"
                # either: taken for a root, such a span ended its run with its own status.
                # An all-zero one is "no parent", as some senders spell a root.
                if len(s.trace_id) != 16 or not any(s.trace_id) or len(s.span_id) != 8 \
                        or not any(s.span_id) or len(parent) not in (0, 8):
                    rejected += 1
                    continue
                spans.append(Span(
                    trace_id=s.trace_id.hex(), span_id=s.span_id.hex(),
                    parent_id=parent.hex() if any(parent) else None,
                    name=s.name, kind=int(s.kind), start_ns=int(s.start_time_unix_nano),
                    end_ns=int(s.end_time_unix_nano), attributes=attributes_of(s.attributes),
                    status_code=int(s.status.code), status_message=s.status.message,
                    events=[(e.name, int(e.time_unix_nano), attributes_of(e.attributes))
                            for e in s.events],
                    resource=resource, scope=ss.scope.name, resource_size=resource_size))
    return spans, rejected


def size_of_value(value: Any) -> int:
    """About how much memory a value's text takes: its strings' and bytes' length (numbers
    and the rest at a nominal 16 bytes)."""
    if isinstance(value, str | bytes):
        return len(value)
    if isinstance(value, dict):
        return sum(len(str(k)) + size_of_value(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return sum(size_of_value(v) for v in value)
    return 16


def attributes_of(pairs: Any) -> dict[str, Any]:
    return {kv.key: value_of(kv.value) for kv in pairs}


def value_of(v: AnyValue) -> Any:
    """An attribute value as Python: arrays as lists, key-value lists as dicts."""
    which = v.WhichOneof("value")
    if which == "string_value":
        return v.string_value
    if which == "bool_value":
        return v.bool_value
    if which == "int_value":
        return int(v.int_value)
    if which == "double_value":
        x = float(v.double_value)
        return x if math.isfinite(x) else repr(x)  # JSON (and the database) hold no NaN
    if which == "array_value":
        return [value_of(x) for x in v.array_value.values]
    if which == "kvlist_value":
        return {kv.key: value_of(kv.value) for kv in v.kvlist_value.values}
    if which == "bytes_value":
        return base64.b64encode(v.bytes_value).decode()
    return None


def any_value(v: Any) -> AnyValue:
    """A Python value as an attribute value (the inverse of :func:`value_of`)."""
    if isinstance(v, bool):
        return AnyValue(bool_value=v)
    if isinstance(v, int):
        return AnyValue(int_value=v) if -_INT64 <= v < _INT64 else AnyValue(string_value=str(v))
    if isinstance(v, float):
        return AnyValue(double_value=v)
    if isinstance(v, str):
        return AnyValue(string_value=v)
    if isinstance(v, list | tuple):
        return AnyValue(array_value=ArrayValue(values=[any_value(x) for x in v]))
    if isinstance(v, dict):
        return AnyValue(kvlist_value=KeyValueList(values=key_values(v)))
    if v is None:
        return AnyValue()
    return AnyValue(string_value=str(v))


def key_values(attributes: dict[str, Any]) -> list[KeyValue]:
    """Attributes as OTLP key-values; None values are left out (OTLP has no null)."""
    return [KeyValue(key=k, value=any_value(v)) for k, v in attributes.items() if v is not None]


def response(media: str, rejected: int, message: str = "") -> bytes:
    """The success reply, in the request's encoding (partial success when spans were
    rejected)."""
    if media == JSON:
        if not rejected:
            return b"{}"
        text: str = json_format.MessageToJson(ExportTraceServiceResponse(
            partial_success=ExportTracePartialSuccess(rejected_spans=rejected,
                                                      error_message=message)), indent=None)
        return text.encode()
    reply = ExportTraceServiceResponse()
    if rejected:
        reply.partial_success.rejected_spans = rejected
        reply.partial_success.error_message = message
    data: bytes = reply.SerializeToString()
    return data
