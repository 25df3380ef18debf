"""JSON objects that name a key twice: found, for every reader of JSON Titan serves.

Neither ``json`` nor orjson refuses a key written twice in one object: each keeps the last,
silently, so ``{"role": "viewer", "role": "admin"}`` made an admin token while a proxy or a
log reading the first saw a viewer's, and ``{"method": "ping", "method": "tools/list"}`` at
``/mcp`` ran ``tools/list``. The API's bodies (master/api/body.py) and the MCP messages
(mcp/jsonrpc.py, over HTTP and stdio) refuse such text, naming the key by its path.

Telling costs one ``orjson.dumps`` of the parse, in C: each member of an object is written
with one ``:`` outside strings, and orjson writes a ``:`` inside a string as itself, so the
text and its parse written out again have as many ``:`` exactly when no member was dropped,
unless the text spelt one as ``\\u003a`` (then, and when they differ, the text is read again,
keeping every pair, to know).
"""

from __future__ import annotations

import json
import re
from typing import Any

import orjson

#: A ``:`` written as an escape in a JSON string (or text that looks like one).
_ESCAPED_COLON = re.compile(rb"\\u003[aA]")


def first_repeated(raw: str | bytes, value: Any) -> str | None:
    """The path (``a.b[2].c``) of the first key the JSON text ``raw`` names twice in one
    object, or None; ``value`` is ``raw`` as already parsed."""
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
    colons = data.count(b":")
    if colons == 0:
        return None
    try:
        kept = orjson.dumps(value).count(b":")
    except orjson.JSONEncodeError:  # (a value orjson cannot write: read it again to be sure)
        kept = -1
    if kept == colons and (b"\\u003" not in data or _ESCAPED_COLON.search(data) is None):
        return None
    return _repeated(data)


class _Pairs(dict[str, Any]):
    """An object as ``json`` reads it, remembering the first key it met twice."""

    repeated: str | None = None


def _pairs(pairs: list[tuple[str, Any]]) -> _Pairs:
    found = _Pairs()
    for key, item in pairs:
        if key in found and found.repeated is None:
            found.repeated = key
        found[key] = item
    return found


def _repeated(data: bytes) -> str | None:
    stack: list[tuple[Any, str]] = [(json.loads(data, object_pairs_hook=_pairs), "")]
    while stack:
        x, path = stack.pop()
        if isinstance(x, _Pairs):
            if x.repeated is not None:
                return f"{path}.{x.repeated}" if path else x.repeated
            stack.extend((v, f"{path}.{k}" if path else k) for k, v in reversed(x.items()))
        elif isinstance(x, list):
            stack.extend((v, f"{path}[{i}]") for i, v in reversed(list(enumerate(x))))
    return None
