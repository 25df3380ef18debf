"""Writes a client may send twice: answered once, from the ``Idempotency-Key`` it sent.

A job's ``store_incr`` whose reply is lost when the master dies mid-request is retried by the
SDK (:mod:`titan.retry`); without a key the retry would count twice. The SDK sends a random
key per logical call, the same on each retry. :func:`once` wraps the write's transaction
function: it looks the key up and, if the write already committed, returns the recorded
result instead of applying it again; otherwise it applies the write and records the result
in the SAME transaction. Both statements ride in the group commit the write was going to use
anyway, so the check costs no extra round trip, and a write and its record can never be
committed one without the other (a crash between them would otherwise re-apply or lose it).

A key names one request (method and path): reusing it for another is refused (400), so a
client bug cannot read someone else's answer. Keys are kept ``TITAN_IDEMPOTENCY_TTL`` seconds
(default 900: far beyond a client's ``TITAN_MASTER_RESTART_GRACE`` of retries plus one request
timeout) and pruned by the engine's housekeeping.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from typing import Any, TypeVar

from fastapi import Request

from titan.errors import ValidationFailed
from titan.retry import IDEMPOTENCY_HEADER
from titan.storage.base import Transaction

T = TypeVar("T")

_KEY = re.compile(r"[A-Za-z0-9_\-]{16,100}")
MAX_SCOPE = 1200


def key_of(request: Request) -> str | None:
    """The request's ``Idempotency-Key`` header, checked, or None when it sent none."""
    raw = request.headers.get(IDEMPOTENCY_HEADER)
    if raw is None:
        return None
    if not _KEY.fullmatch(raw):
        raise ValidationFailed(
            f"the {IDEMPOTENCY_HEADER} header must be 16 to 100 characters of A-Z a-z 0-9 _ -",
            details={"header": IDEMPOTENCY_HEADER},
        )
    return raw


def scope_of(request: Request) -> str:
    return f"{request.method} {request.url.path}"[:MAX_SCOPE]


def once(key: str | None, scope: str,
         op: Callable[[Transaction], T]) -> Callable[[Transaction], tuple[T, bool]]:
    """``op`` made safe to repeat under ``key``: returns (result, replayed).

    The result must be JSON (a number, a list of numbers...): it is what a repeat returns.
    """
    def run(tx: Transaction) -> tuple[T, bool]:
        if key is None:
            return op(tx), False
        found = tx.idempotent_result(key)
        if found is not None:
            if found[0] != scope:
                raise ValidationFailed(
                    f"this {IDEMPOTENCY_HEADER} was used for another request ({found[0]}); "
                    "send a fresh key per request",
                    details={"header": IDEMPOTENCY_HEADER},
                )
            return json.loads(found[1]), True
        result = op(tx)
        tx.record_idempotent(key, scope, json.dumps(result), time.time())
        return result, False

    return run


def prune(ttl: float) -> Callable[[Transaction], Any]:
    """The housekeeping write that forgets keys older than ``ttl`` seconds."""
    before = time.time() - ttl
    return lambda tx: tx.prune_idempotency(before)
