"""JSON for the worker channel's frames: orjson where it can, the stdlib where it cannot.

Every job pushed and every report is a frame each way, and the stdlib's encoder and parser
were ~3 % of the master's CPU under load (py-spy, issue 17). orjson refuses a few things the
channel must still carry: a lone surrogate (an exception's text may hold one from a file
name) and an integer past 64 bits; those frames take the stdlib's path. Two differences
remain, both on values no frame is built with: orjson writes a NaN or an infinity as
``null`` (the stdlib wrote ``NaN``, which the master's HTTP bodies refuse anyway), and it
encodes datetimes, UUIDs and dataclasses the stdlib would refuse. Parsing takes the stdlib's
path for what orjson refuses (``NaN``, deep nesting), so every frame read before is read.
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
