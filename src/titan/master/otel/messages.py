"""GenAI messages as spans carry them, read as Titan's (OpenAI-shaped) chat messages.

Three spellings reach the OTLP receiver: OpenInference's flattened
``llm.input_messages.N.message.*`` attributes, OpenLLMetry's ``gen_ai.prompt.N.*``, and the
GenAI convention's ``gen_ai.input.messages`` (JSON: messages of typed parts). A span's
attributes are whatever its sender wrote, so every reader here takes any shape and keeps what
fits (:mod:`.incoming` maps the rest of the span).
"""

from __future__ import annotations

import json
from typing import Any

from titan.storage.base import Row


def read_messages(a: dict[str, Any], openinference: str, openllmetry: str,
              genai: str) -> list[Row] | None:
    """OpenAI-shaped messages from whichever spelling the span uses: OpenInference's
    flattened ``llm.*_messages.N.message.*``, OpenLLMetry's ``gen_ai.prompt.N.*``, or the
    GenAI convention's ``gen_ai.*.messages`` (JSON, messages of typed parts)."""
    flat = _unflatten(a, openinference)
    if flat:
        return [_openinference_message(as_obj(m.get("message"))) for m in flat]
    flat = _unflatten(a, openllmetry)
    if flat:
        return [_openai_message(m) for m in flat]
    value = parsed(a.get(genai))
    return from_parts(value) if isinstance(value, list) else None


def _openinference_message(m: Row) -> Row:
    out: Row = {"role": m.get("role"), "content": m.get("content")}
    if out["content"] is None and isinstance(m.get("contents"), list):
        out["content"] = "".join(str(as_obj(c.get("message_content")).get("text") or "")
                                 for c in m["contents"] if isinstance(c, dict))
    calls = [as_obj(c.get("tool_call")) for c in as_list(m.get("tool_calls"))
             if isinstance(c, dict)]
    if calls:
        out["tool_calls"] = [{"id": c.get("id"), "type": "function", "function": {
            "name": as_obj(c.get("function")).get("name"),
            "arguments": as_obj(c.get("function")).get("arguments")}} for c in calls]
    for key in ("name", "tool_call_id"):
        if m.get(key) is not None:
            out[key] = m[key]
    return out


def _openai_message(m: Row) -> Row:
    out: Row = {k: m[k] for k in ("role", "content", "finish_reason", "tool_call_id")
                if m.get(k) is not None}
    calls = [c for c in as_list(m.get("tool_calls")) if isinstance(c, dict)]
    if calls:
        out["tool_calls"] = [{"id": c.get("id"), "type": "function", "function": {
            "name": c.get("name"), "arguments": c.get("arguments")}} for c in calls]
    return out


def from_parts(messages: list[Any]) -> list[Row]:
    """GenAI's ``{"role", "parts": [{"type": "text" | "tool_call" | ...}]}`` as OpenAI's
    ``{"role", "content", "tool_calls"}``."""
    out: list[Row] = []
    for m in messages:
        if not isinstance(m, dict):
            continue
        parts = [p for p in as_list(m.get("parts")) if isinstance(p, dict)]
        msg: Row = {"role": m.get("role"), "content": m.get("content", text_of(parts))}
        calls = [p for p in parts if p.get("type") == "tool_call"]
        if calls:
            msg["tool_calls"] = [{"id": p.get("id"), "type": "function", "function": {
                "name": p.get("name"), "arguments": p.get("arguments")}} for p in calls]
        answer = next((p for p in parts if p.get("type") == "tool_call_response"), None)
        if answer is not None:
            msg.update(tool_call_id=answer.get("id"), content=answer.get("response"))
        if m.get("finish_reason"):
            msg["finish_reason"] = m["finish_reason"]
        out.append(msg)
    return out


def text_of(parts: list[Any]) -> str:
    return "".join(str(p.get("content") or "") for p in parts
                   if isinstance(p, dict) and p.get("type", "text") == "text")


def _unflatten(a: dict[str, Any], prefix: str) -> list[Row]:
    """``prefix.0.message.role = "user"`` ... as ``[{"message": {"role": "user"}}, ...]``."""
    tree: dict[Any, Any] = {}
    for key, value in a.items():
        if not key.startswith(prefix):
            continue
        parts: list[Any] = [whole_number(p) for p in key[len(prefix):].split(".")]
        if not isinstance(parts[0], int):  # gen_ai.prompt.name is no message
            continue
        node = tree
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                break
            node = child
        else:
            node[parts[-1]] = value
    listed = _lists(tree)
    return [x for x in listed if isinstance(x, dict)] if isinstance(listed, list) else []


def _lists(node: Any) -> Any:
    if not isinstance(node, dict):
        return node
    if node and all(isinstance(k, int) for k in node):
        return [_lists(node[k]) for k in sorted(node)]
    return {str(k): _lists(v) for k, v in node.items()}


def whole_number(part: str) -> int | str:
    """A key part or count that is a whole number, as one: ASCII digits only (``str.isdigit``
    takes '²', which ``int`` refuses) and short enough for ``int`` to read."""
    return int(part) if part.isascii() and part.isdigit() and len(part) <= 18 else part


def as_obj(value: Any) -> Row:
    """``value`` when a sender put an object where one belongs, else an empty one: a span's
    attributes are whatever its sender wrote."""
    return value if isinstance(value, dict) else {}


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def parsed(value: Any) -> Any:
    """A JSON string as its value (instrumentations send structures as JSON text)."""
    if isinstance(value, str) and value[:1] in ("{", "["):
        try:
            return json.loads(value)
        except (ValueError, RecursionError):
            return value
    return value


