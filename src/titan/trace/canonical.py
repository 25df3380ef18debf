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
from collections.abc import Callable, Iterable
from typing import Any

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
    return repr(value)


def dumps(value: Any) -> str:
    """The canonical JSON text of ``value``. NaN and infinities become strings (JSON has
    none), so a model's odd float never makes an action unrecordable."""
    try:
        if _c_encode is None or isinstance(value, str):
            return _encoder.encode(value)
        return "".join(_c_encode(value, 0))
    except ValueError:
        return _encoder.encode(_finite(value))


def _finite(value: Any) -> Any:
    if isinstance(value, float) and value != value or value in (float("inf"), float("-inf")):
        return repr(value)
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def digest(text: str) -> str:
    """sha256 hex of canonical JSON text."""
    return hashlib.sha256(text.encode()).hexdigest()
