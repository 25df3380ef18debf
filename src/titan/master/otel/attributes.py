"""A span's attributes, read as whatever its sender wrote: the first of several spellings
present, as text, a count or a number, and text made fit for a database column.

The GenAI conventions, OpenInference and OpenLLMetry name the same thing differently (a
model is ``gen_ai.request.model``, ``llm.model_name`` or ``embedding.model_name``) and type
it as they please (a count as a double, an array where a string was due), so each reader here
takes any shape and keeps what fits; :mod:`.incoming` and :mod:`.actors` name the spellings.
"""

from __future__ import annotations

import json
import math
from typing import Any

from titan.master.otel.messages import whole_number
from titan.master.runs.ingest import MAX_TOKENS

#: OpenLLMetry's name of a tool or agent, whose span is ``<name>.tool`` (read as tags only,
#: its tool calls had no inputs or outputs).
LOOP_NAME = "traceloop.entity.name"


def first(a: dict[str, Any], *keys: str) -> Any:
    """The first of these attributes present (OpenLLMetry's entity values, always JSON, as
    JSON: a result "ok" is '"ok"')."""
    key = next((k for k in keys if a.get(k) is not None), None)
    if key is None or not key.startswith("traceloop.entity.") or not isinstance(a[key], str):
        return None if key is None else a[key]
    try:
        return json.loads(a[key])
    except (ValueError, RecursionError):
        return a[key]


def first_str(a: dict[str, Any], *keys: str) -> str | None:
    """The first of these attributes that is text (of an array, its first text element);
    a number or a boolean names no model or tool, and an array is not spelled as Python's
    list (``['m']``)."""
    for k in keys:
        v = a.get(k)
        if isinstance(v, list):
            v = next((x for x in v if isinstance(x, str) and x), None)
        if isinstance(v, str) and v:
            return v
    return None


def first_int(a: dict[str, Any], *keys: str) -> int | None:
    """The first of these attributes that is a count: a whole number from 0 to 10^15, sent
    as an integer, a double with no fraction (100.0: some SDKs send every number so) or
    ASCII digits."""
    for k in keys:
        v = a.get(k)
        if isinstance(v, str):
            v = whole_number(v.strip())
        elif isinstance(v, float) and v.is_integer():
            v = int(v)
        if isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= MAX_TOKENS:
            return v
    return None


def number(v: Any) -> float | None:
    """A finite number sent as an integer, a double or its text (``"0.25"``), else None."""
    if isinstance(v, bool) or not isinstance(v, int | float | str) \
            or isinstance(v, str) and not v.isascii():  # float() reads '٣' as 3
        return None
    try:
        value = float(v)
    except (ValueError, OverflowError):  # not a number; an integer past any double
        return None
    return value if math.isfinite(value) else None


def clean(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` without NUL characters, which no database text column
    holds (PostgreSQL refuses them)."""
    return text.replace("\x00", "\ufffd")[:limit]
