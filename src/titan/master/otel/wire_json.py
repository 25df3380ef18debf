"""OTLP/JSON bodies read into an ``ExportTraceServiceRequest``: ids from hex, the shape checked.

OTLP's JSON encoding is protobuf's JSON mapping with one twist: trace and span ids are hex,
not base64, so they are turned into base64 before protobuf's parser sees them.

Protobuf's parser, told to ignore unknown fields (as OTLP requires of receivers, for newer
senders), also ignored values of the wrong type where an object belongs: a span's
``"status": "error"`` was read character by character as field names none of which exists,
``"value": "x"`` made an attribute with no value, ``"resourceSpans": ["x"]`` no spans at all —
each taken with a 200, the sender never told. So before it parses, every known field is checked
against the message's own description (:func:`_check_shapes`): an object where a message
belongs, an array where a repeated field does, base64 in a bytes field (protobuf's decoder
drops the characters it does not know). Unknown fields and ``null`` (a field's default, in
protobuf's mapping) pass.
"""

from __future__ import annotations

import base64
import re
from typing import Any

from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from titan.errors import PayloadTooLarge, ValidationFailed

#: Spans one request may carry: each becomes a Python record, held on the event loop until
#: its parent is known; 64 MiB of protobuf holds 1.6 million bare ones (about 2 GB read in,
#: and the event loop stalled for half a minute). SDKs send 512 a request, the Collector's
#: batch processor 8,192.
MAX_SPANS = 50_000
_BASE64 = re.compile(r"[A-Za-z0-9+/_-]*=*")


def too_many(count: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"a request here carries at most {MAX_SPANS:,} spans, this one "
                           f"{count:,}: send smaller batches", details={
                               "limit_spans": MAX_SPANS, "spans": count})


def from_json(value: Any, into: ExportTraceServiceRequest) -> None:
    """Fill ``into`` from OTLP's JSON encoding (hex ids) of a request; a 400 naming the field
    for a value of the wrong shape, a 413 for more than :data:`MAX_SPANS` spans."""
    if not isinstance(value, dict):
        raise ValidationFailed("an OTLP JSON body must be an object with resourceSpans",
                               details={"field": "body"})
    _check_shapes(value, ExportTraceServiceRequest.DESCRIPTOR)
    count = 0
    for r, rs in enumerate(_items(value, "resourceSpans", "resource_spans")):
        for s, ss in enumerate(_items(rs, "scopeSpans", "scope_spans")):
            spans = _items(ss, "spans", "spans")
            count += len(spans)
            if count > MAX_SPANS:
                raise too_many(_count(value))
            for i, span in enumerate(spans):
                where = f"resourceSpans[{r}].scopeSpans[{s}].spans[{i}]"
                _hex_to_base64(span, where, ("traceId", "trace_id"), ("spanId", "span_id"),
                               ("parentSpanId", "parent_span_id"))
                for k, link in enumerate(_items(span, "links", "links")):
                    _hex_to_base64(link, f"{where}.links[{k}]", ("traceId", "trace_id"),
                                   ("spanId", "span_id"))
    try:
        json_format.ParseDict(value, into, ignore_unknown_fields=True)
    except (json_format.ParseError, ValueError, TypeError, RecursionError) as exc:
        raise ValidationFailed(f"the body is not an OTLP ExportTraceServiceRequest in JSON: "
                               f"{exc}", details={"field": "body"}) from None


def _count(value: dict[str, Any]) -> int:
    return sum(len(_items(ss, "spans", "spans"))
               for rs in _items(value, "resourceSpans", "resource_spans")
               for ss in _items(rs, "scopeSpans", "scope_spans"))


def _check_shapes(value: dict[str, Any], message: Descriptor) -> None:
    """Raise a 400 for the first known field whose value is not of its kind (an object for a
    message, an array for a repeated field, base64 for bytes). A stack, not recursion: this
    runs before anything bounds the nesting when the body comes from elsewhere than the API."""
    stack: list[tuple[dict[str, Any], Descriptor, str]] = [(value, message, "")]
    while stack:
        obj, desc, path = stack.pop()
        for key, item in obj.items():
            field = desc.fields_by_camelcase_name.get(key) or desc.fields_by_name.get(key)
            if field is None or item is None:
                continue
            where = f"{path}.{key}" if path else key
            if field.is_repeated:
                if not isinstance(item, list):
                    raise _wrong(where, "an array", item)
                elements = [(f"{where}[{i}]", x) for i, x in enumerate(item)]
            else:
                elements = [(where, item)]
            for at, x in elements:
                if field.type == FieldDescriptor.TYPE_MESSAGE:
                    if not isinstance(x, dict):
                        raise _wrong(at, "an object", x)
                    stack.append((x, field.message_type, at))
                elif field.type == FieldDescriptor.TYPE_BYTES and not (
                        isinstance(x, str) and _BASE64.fullmatch(x)):
                    raise _wrong(at, "base64 text" if field.json_name == "bytesValue"
                                 else "hex text", x)


def _wrong(where: str, expected: str, got: Any) -> ValidationFailed:
    return ValidationFailed(f"{where} must be {expected}, got {_kind(got)}",
                            details={"field": where})


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "an array" if isinstance(value, list) else "an object"


def _items(parent: Any, camel: str, snake: str) -> list[Any]:
    if not isinstance(parent, dict):
        return []
    found = parent.get(camel, parent.get(snake))
    return [x for x in found if isinstance(x, dict)] if isinstance(found, list) else []


def _hex_to_base64(obj: dict[str, Any], where: str, *keys: tuple[str, str]) -> None:
    for camel, snake in keys:
        for key in (camel, snake):
            value = obj.get(key)
            if not isinstance(value, str) or not value:
                continue
            try:
                raw = bytes.fromhex(value)
            except ValueError:
                raise ValidationFailed(f"{where}.{key} must be hex (OTLP/JSON spells ids in "
                                       f"hex), got {value[:40]!r}",
                                       details={"field": f"{where}.{key}"}) from None
            obj[key] = base64.b64encode(raw).decode()
