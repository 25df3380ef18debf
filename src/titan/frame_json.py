"""JSON for the worker channel's frames: orjson where it can, the stdlib where it cannot.

Every job pushed and every report is a frame each way, and the stdlib's encoder and parser
were ~3 % of the master's CPU under load (py-spy, issue 17). orjson refuses a few things the
channel must still carry as it did: a lone surrogate (an exception's text may hold one from a
file name), an integer past 64 bits, NaN; those frames take the stdlib's path, so what goes
through is exactly what went through before, only faster.
"""

from __future__ import annotations

import json
from typing import Any

import orjson


def dumps(value: Any) -> str:
    """Compact JSON text; UTF-8 as it is where orjson writes it, ``\\u`` escapes otherwise."""
    try:
        return orjson.dumps(value).decode()
    except (orjson.JSONEncodeError, UnicodeDecodeError):
        return json.dumps(value, separators=(",", ":"))


def loads(text: str | bytes) -> Any:
    """Parse a frame; raises ValueError (or RecursionError, nested past the stdlib's depth)
    as ``json.loads`` does."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)
