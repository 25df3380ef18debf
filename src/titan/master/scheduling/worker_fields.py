"""The fields of a worker's requests, checked: registration, polls, heartbeats, reports and
the channel's messages. Bodies are checked whole before anything is applied, so a malformed
request is a 400 that changes nothing (never a 500, never half a report)."""

from __future__ import annotations

import re
from typing import Any

from titan.errors import ValidationFailed
from titan.formats import label_problem
from titan.storage.base import Row

#: A version string as a worker may state it (PEP 440's characters, and a local part).
_VERSION = re.compile(r"[0-9A-Za-z.+!_-]{1,64}")


def int_field(value: Any, field: str, *, default: int | None = None, lo: int = 0,
              hi: int = 2**62) -> int:
    if value is None and default is not None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ValidationFailed(f"{field} must be an integer between {lo} and {hi}, got {value!r}",
                               details={"field": field})
    return value


def number_field(value: Any, field: str, *, default: float) -> float:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
        raise ValidationFailed(f"{field} must be a number, got {value!r}", details={"field": field})
    return float(value)


def entries(body: Row, field: str) -> list[Row]:
    items = body.get(field) or []
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise ValidationFailed(f"'{field}' must be a list of objects", details={"field": field})
    return items


def attempt_key(item: Row, field: str) -> tuple[int, int]:
    return (int_field(item.get("id"), f"{field}[].id"),
            int_field(item.get("attempt"), f"{field}[].attempt"))


def worker_version(body: Row, user_agent: str | None) -> str | None:
    """The Titan version a registering worker runs: its body's ``version``, else its
    User-Agent's ``titan-worker/<version>`` (an earlier worker says it only there). A worker
    may say anything: only a plain version string is kept, None otherwise."""
    said = body.get("version")
    if not isinstance(said, str):
        agent = re.match(r"titan-worker/(\S+)", user_agent or "")
        said = agent.group(1) if agent else None
    return said if said is not None and _VERSION.fullmatch(said) else None


def label(body: Row, field: str, default: str) -> str:
    """A worker's name or host name: free text, but shown on pages and written to the
    master's log, where a newline forged a log line and an escape sequence reached the
    terminal of whoever read it (a fleet QA pass). Refused, as a DAG name with one is."""
    value = str(body.get(field) or default)
    why = label_problem(value, f"worker {field}", limit=255, blank=True)
    if why is not None:
        raise ValidationFailed(why, details={"field": field})
    return value
