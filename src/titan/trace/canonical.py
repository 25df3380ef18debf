"""Canonical JSON: one spelling per value, so equal inputs hash equal on every machine.

Keys sorted, no insignificant whitespace, UTF-8 kept as is, integers and floats as Python's
``json`` writes them. The SDK uses it to key replays; the master uses it to store and hash what
any client sends, so a batch from another language hashes like one from Python. Values JSON
cannot hold are converted the way a person reading the trace would want them: dataclasses and
pydantic models as their fields, sets sorted, bytes as a short marker, anything else by repr.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import re
from collections.abc import Callable, Iterable
from typing import Any

_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")
_encoder = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                            allow_nan=False, default=lambda o: jsonable(o))
# Every recorded action is canonicalised twice (inputs, outputs), on the caller's thread and
# again by the master: the C encoder is made once here rather than by each ``encode`` call
# (about 1 µs of the 3 to 5 µs a small value takes). Without a circular-reference check (its
# marker dict could not be shared between threads): a value holding itself raises
# RecursionError instead of ValueError, as dumps' fallback did already.
_make_c_encoder: Callable[..., Callable[[Any, int], Iterable[str]]] | None = getattr(
    json.encoder, "c_make_encoder", None)
_c_encode = None if _make_c_encoder is None else _make_c_encoder(
    None, _encoder.default, json.encoder.encode_basestring, None, ":", ",", True, False, False)


def jsonable(value: Any) -> Any:
    """A JSON-representable stand-in for a value ``json`` cannot encode."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    dump = getattr(value, "model_dump", None)  # pydantic v2
    if callable(dump):
        return dump(mode="json")
    if isinstance(value, set | frozenset):
        return sorted((jsonable(v) if not isinstance(v, str | int | float) else v
                       for v in value), key=repr)
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, bytes | bytearray):
        data = bytes(value)
        if len(data) <= 256:
            return {"$bytes": base64.b64encode(data).decode()}
        return {"$bytes_sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
    if hasattr(value, "isoformat"):
        return value.isoformat()
    # Without its memory address: "<Obj object at 0x7f...>" differs on every run, so a
    # replay read each such value as changed (an output mismatch, an input mismatch).
    return _ADDRESS.sub("", repr(value))


def dumps(value: Any) -> str:
    """The canonical JSON text of ``value``. NaN and infinities become strings (JSON has
    none), so a model's odd float never makes an action unrecordable."""
    try:
        if _c_encode is None or isinstance(value, str):
            text = _encoder.encode(value)
        else:
            text = "".join(_c_encode(value, 0))
    except (ValueError, TypeError, RecursionError):
        # A NaN, keys of mixed or non-JSON types ({1: "a", "b": 2}, {(1, 2): "x"}), a value
        # holding itself: recorded as plain JSON (keys as text, the loop marked) rather than
        # failing the call that is being recorded.
        text = _encoder.encode(_plain(value, set()))
    return text if text.isascii() else utf8(text)


def utf8(text: str) -> str:
    """``text`` as UTF-8 can carry it: a lone surrogate (a file name read with
    ``surrogateescape``, ``os.fsdecode(b"\\xff")``) becomes U+FFFD. Sent as it was, it could
    not be encoded: the recorder kept retrying that batch, and nothing after it was recorded."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return _SURROGATE.sub("\ufffd", text)
    return text


_SURROGATE = re.compile("[\ud800-\udfff]")


def _plain(value: Any, seen: set[int]) -> Any:
    if isinstance(value, float):
        return value if value == value and value not in (float("inf"), float("-inf")) \
            else repr(value)
    if value is None or isinstance(value, str | int | bool):
        return value
    if id(value) in seen:
        return f"<cycle: {type(value).__name__}>"
    if isinstance(value, dict):
        seen.add(id(value))
        out = {k if isinstance(k, str) else _key(k): _plain(v, seen) for k, v in value.items()}
        seen.discard(id(value))
        return out
    if isinstance(value, list | tuple):
        seen.add(id(value))
        items = [_plain(v, seen) for v in value]
        seen.discard(id(value))
        return items
    return _plain(jsonable(value), seen) if not isinstance(value, type) else repr(value)


def _key(key: Any) -> str:
    """A dict key as JSON spells it: numbers, booleans and None as json writes them, others
    by repr."""
    if key is None or isinstance(key, bool | int | float):
        return json.dumps(key)
    return repr(key)


def digest(text: str) -> str:
    """sha256 hex of canonical JSON text."""
    return hashlib.sha256(text.encode()).hexdigest()
