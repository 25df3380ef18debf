"""Trace and span ids derived from Titan's own ids, so re-exports and their parents line up.

A run is one trace. Its trace id is a hash of the run id — except for a run that came in over
OTLP (``otel-<32 hex>``), which gets its own trace id back. Every span id is a hash of (run id,
what the span stands for: the run, an actor path, an action) — except an action whose id is a
16-hex OTLP span id, which keeps it. Hashing instead of remembering means the exporter needs
no memory of what it sent: an action exported today names as its parent the actor span sent
when the run ends, maybe hours later and from another master, and a run exported twice lands
on the same spans.
"""

from __future__ import annotations

import hashlib
import re

#: The run id of an imported trace is this prefix and the trace id in hex.
IMPORTED_RUN_PREFIX = "otel-"
_TRACE_HEX = re.compile(r"^[0-9a-f]{32}\Z")
_SPAN_HEX = re.compile(r"^[0-9a-f]{16}\Z")
_ZERO_SPAN = "0" * 16


def run_id_of_trace(trace_hex: str) -> str:
    """The run an imported trace becomes."""
    return IMPORTED_RUN_PREFIX + trace_hex


def is_imported_run(run_id: str) -> bool:
    """Whether ``run_id`` has the form of an imported trace's run (``otel-`` and 32 hex
    digits): the receiver's, which nobody else may create (``otel-agent-1a2b`` may be)."""
    return run_id.startswith(IMPORTED_RUN_PREFIX) \
        and _TRACE_HEX.match(run_id.removeprefix(IMPORTED_RUN_PREFIX)) is not None


def action_id_of_span(span_hex: str) -> str:
    """The action an imported span becomes: its span id, so a re-delivered span is a known
    action (the run service drops it as a duplicate)."""
    return span_hex


def trace_id(run_id: str) -> bytes:
    """The 16-byte trace id of a run."""
    tail = run_id.removeprefix(IMPORTED_RUN_PREFIX)
    if tail != run_id and _TRACE_HEX.match(tail) and tail != "0" * 32:
        return bytes.fromhex(tail)
    return _digest("trace", run_id, "")[:16]


def run_span_id(run_id: str) -> bytes:
    """The span of the run itself: the root of its trace."""
    return _span("run", run_id, "")


def actor_span_id(run_id: str, actor: str) -> bytes:
    """The span of one actor path of the run (a stage, a job, a sub-agent)."""
    return _span("actor", run_id, actor)


def action_span_id(run_id: str, action_id: str) -> bytes:
    """The span of one action."""
    if _SPAN_HEX.match(action_id) and action_id != _ZERO_SPAN:
        return bytes.fromhex(action_id)
    return _span("action", run_id, action_id)


def _span(kind: str, run_id: str, key: str) -> bytes:
    span = _digest(kind, run_id, key)[:8]
    # An all-zero span id means "no span" in OTLP; a hash lands there once in 2^64 tries.
    return span if any(span) else b"\x00" * 7 + b"\x01"


def _digest(kind: str, run_id: str, key: str) -> bytes:
    return hashlib.sha256(f"titan\0{kind}\0{run_id}\0{key}".encode()).digest()
