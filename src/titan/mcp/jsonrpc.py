"""Which JSON-RPC messages the SDK would leave unanswered, and the error that answers each.

The SDK reads a message it cannot validate as nothing at all. Over stdio it dropped the line
without a word; over HTTP (the master's ``/mcp``) a request whose id is neither a string nor
an integer (null, 1.5, an object) was taken for a notification, answered ``202 Accepted`` with
no body, and the client waited for its timeout; a batch or ``"jsonrpc": "1.0"`` came back as
``-32602`` with pydantic's multi-line report and a null id (QA passes). JSON-RPC 2.0 answers
such a message with ``-32700`` (parse error) or ``-32600`` (invalid request), naming the
request's id where it can be read and null otherwise; a message that names a key twice in
one object is an invalid request too (titan/repeated_keys.py, as the API's bodies), and so is
one holding a lone UTF-16 surrogate, which no reply can encode (an id holding one made the
refusal that echoed it a 500). :func:`refusal` says which, for both
ways in (:mod:`titan.mcp.stdio`, :mod:`titan.master.api.mcp`); :func:`unsupported_version`
answers an HTTP request whose ``MCP-Protocol-Version`` header names no version served.
"""

from __future__ import annotations

import json
import re
from typing import Any

from mcp import types
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS, MODERN_PROTOCOL_VERSIONS
from pydantic import ValidationError

from titan.repeated_keys import first_repeated

#: The protocol versions this server speaks: the handshake's and the per-request envelope's.
SUPPORTED_VERSIONS = (*HANDSHAKE_PROTOCOL_VERSIONS, *MODERN_PROTOCOL_VERSIONS)
#: The most of a refused ``MCP-Protocol-Version`` header an answer repeats.
_SHOWN_VERSION = 64
#: A lone surrogate can only come in escaped (raw, it is not UTF-8): looked for when one is.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_SURROGATE = re.compile("[\ud800-\udfff]")


def refusal(text: str) -> types.JSONRPCError | None:
    """The error that answers the message ``text``, or None when the SDK is to have it (a
    message it serves, nothing at all, a response: JSON-RPC never answers one)."""
    if not text.strip():
        return None
    try:
        message = json.loads(text)
    except ValueError:
        return _error(None, types.PARSE_ERROR, "Parse error: the message is not JSON")
    if not isinstance(message, dict):
        batch = " (batches are not supported)" if isinstance(message, list) else ""
        return _error(None, types.INVALID_REQUEST,
                      f"Invalid Request: a message is one JSON-RPC object{batch}")
    if "method" not in message and ("result" in message or "error" in message):
        return None
    ident = message.get("id")
    readable = ident if isinstance(ident, str) or (
        isinstance(ident, int) and not isinstance(ident, bool)) else None
    where = _surrogate_at(message) if _SURROGATE_ESCAPE.search(text) else None
    if where is not None:
        # Said where, as the API's bodies say it; the SDK's answer named nothing, and an id
        # holding one is not repeated (no reply could carry it).
        return _error(None if where == "id" else readable, types.INVALID_REQUEST,
                      f"Invalid Request: {where}: a string holds a lone UTF-16 surrogate (an "
                      "unpaired \\ud800-\\udfff escape); send text as valid Unicode")
    if "id" in message and readable is None:
        # The SDK reads it as a notification, which nobody answers.
        return _error(None, types.INVALID_REQUEST,
                      "Invalid Request: an id is a string or an integer")
    repeated = first_repeated(text, message)
    if repeated is not None:
        # The SDK's parser keeps the last ({"method": "ping", "method": "tools/list"} ran
        # tools/list) where a proxy or a log may read the first: neither is taken.
        return _error(None if repeated == "id" else readable, types.INVALID_REQUEST,
                      f"Invalid Request: the key {repeated!r} appears more than once in its "
                      "object (JSON readers disagree on which one counts: send it once)")
    try:
        types.jsonrpc_message_adapter.validate_json(text, by_name=False)  # as the SDK reads it
    except ValidationError:
        return _error(readable, types.INVALID_REQUEST, f"Invalid Request: {_why(message)}")
    return None


def unsupported_version(header: str | None, text: str) -> types.JSONRPCError | None:
    """The error that answers a request at ``/mcp`` whose ``MCP-Protocol-Version`` header
    (``header``; None when absent, which the protocol reads as 2025-03-26) is not a version
    this server speaks, or None. The SDK sent every such value to its newest era's checks,
    which refused it as ``-32602 params._meta must be an object ...`` (a QA pass: 1999-01-01,
    an empty value, 10,000 characters); the protocol asks for a 400 that says so. The code and
    ``data`` are the protocol's for an unsupported version (``-32022``, ``supported`` and
    ``requested``), which a client that negotiates reads to pick one."""
    if header is None or header in SUPPORTED_VERSIONS:
        return None
    shown = header if len(header) <= _SHOWN_VERSION else header[:_SHOWN_VERSION] + "..."
    supported = list(SUPPORTED_VERSIONS)
    return types.JSONRPCError(jsonrpc="2.0", id=_id_of(text), error=types.ErrorData(
        code=types.UNSUPPORTED_PROTOCOL_VERSION,
        message=f"Unsupported protocol version: MCP-Protocol-Version {shown!r} is not one this "
                f"server speaks (supported: {', '.join(supported)})",
        data={"supported": supported, "requested": shown}))


def _id_of(text: str) -> str | int | None:
    """The request id of the message ``text`` where one can be read (a string or an integer)."""
    try:
        message = json.loads(text)
    except ValueError:
        return None
    ident = message.get("id") if isinstance(message, dict) else None
    return ident if isinstance(ident, str) or (
        isinstance(ident, int) and not isinstance(ident, bool)) else None


def _surrogate_at(message: Any) -> str | None:
    """The path (``params.arguments.key``) of the first key or string in ``message`` holding a
    lone surrogate, or None. A stack, not recursion: the message may nest deeply."""
    stack: list[tuple[Any, str]] = [(message, "")]
    while stack:
        value, path = stack.pop()
        if isinstance(value, str):
            if _SURROGATE.search(value):
                return path or "message"
        elif isinstance(value, dict):
            for key in value:
                if _SURROGATE.search(key):
                    return f"a key in {path or 'the message'}"
            stack.extend((item, f"{path}.{key}" if path else key)
                         for key, item in reversed(value.items()))
        elif isinstance(value, list):
            stack.extend((item, f"{path}[{i}]") for i, item in reversed(list(enumerate(value))))
    return None


def _why(message: dict[str, Any]) -> str:
    if message.get("jsonrpc") != "2.0":
        return '"jsonrpc" must be "2.0"'
    if not isinstance(message.get("method"), str):
        return '"method" must be a string'
    if "params" in message and not isinstance(message["params"], dict):
        return '"params" must be an object'
    return "not a JSON-RPC 2.0 request or notification this server reads"


def _error(ident: str | int | None, code: int, message: str) -> types.JSONRPCError:
    return types.JSONRPCError(jsonrpc="2.0", id=ident,
                              error=types.ErrorData(code=code, message=message))
