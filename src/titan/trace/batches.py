"""What one request of recorded actions holds: each action's JSON, how many and how large,
and which of them a master's refusal names.

The recorder (:mod:`titan.trace.recorder`) sends a run's queued actions in batches of at most
:data:`MAX_BATCH` actions and :data:`MAX_BATCH_BYTES`; a batch the master finds too large is
halved until each part fits. One action larger than :data:`MAX_ACTION_BYTES` is sent with its
payloads replaced by a note of their size and SHA-256: over the master's body limit (64 MiB by
default) a master ends the upload by closing the connection, which reads as a master out of
reach, and the action was sent again for ever, with every action after it held behind it.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from titan import errors
from titan.trace import canonical

MAX_BATCH = 2000
#: Bytes of actions sent in one request at most (the master's default body limit is 64 MiB):
#: a batch of large payloads goes in several requests, and one the master still finds too
#: large is split (a 413 refused every action of it, small ones included).
MAX_BATCH_BYTES = 16 * 1024 * 1024
#: An action whose JSON is larger goes with its payloads noted, not sent (see above).
MAX_ACTION_BYTES = 60 << 20
#: A request body this large that fails to send may have been refused for its size: the
#: recorder asks whether the master answers before calling it out of reach.
LARGE_BODY = 1 << 20


def encode(meta: dict[str, Any], inputs: str, outputs: str | None) -> str:
    """One action's JSON, splicing in the already-canonical inputs and outputs."""
    head = canonical.utf8(json.dumps(meta, separators=(",", ":"), ensure_ascii=False,
                                     default=str))
    return f'{head[:-1]},"inputs":{inputs},"outputs":{outputs or "null"}}}'


def fitted(meta: dict[str, Any], inputs: str, outputs: str | None) -> str:
    """:func:`encode`, with payloads too large to send replaced by a note of what they were
    (``{"titan_payload_omitted": {"bytes": n, "sha256": "..."}}``), the action kept."""
    text = encode(meta, inputs, outputs)
    if len(text) * 4 <= MAX_ACTION_BYTES or len(text.encode()) <= MAX_ACTION_BYTES:
        return text
    return encode(meta, _noted(inputs), None if outputs is None else _noted(outputs))


def _noted(payload: str) -> str:
    if len(payload) < 1 << 20:
        return payload
    raw = payload.encode()
    return json.dumps({"titan_payload_omitted": {
        "bytes": len(raw), "sha256": hashlib.sha256(raw).hexdigest(),
        "why": f"the action was over {MAX_ACTION_BYTES >> 20} MiB, more than one request may "
               "carry"}}, sort_keys=True, separators=(",", ":"))


def refused_indexes(exc: errors.APIError, size: int) -> set[int]:
    """The positions in a batch the master's 400 names: ``details.errors[].index`` (an
    action's fields), or ``details.field`` as ``actions[3]...`` (a value JSON itself refuses
    there: an integer past 64 bits, nesting past 64 levels)."""
    details = exc.details if isinstance(exc.details, dict) else {}
    found = details.get("errors")
    if isinstance(found, list):
        return {e["index"] for e in found if isinstance(e, dict)
                and type(e.get("index")) is int and 0 <= e["index"] < size}
    where = re.match(r"actions\[(\d+)\]", str(details.get("field") or ""))
    return {int(where.group(1))} if where and int(where.group(1)) < size else set()
