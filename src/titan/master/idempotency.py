"""Writes a client may send twice: answered once, from the ``Idempotency-Key`` it sent.

A job's ``store_incr`` whose reply is lost when the master dies mid-request is retried by the
SDK (:mod:`titan.retry`); without a key the retry would count twice. The SDK sends a random
key per logical call, the same on each retry. :func:`once` wraps the write's transaction
function: it looks the key up and, if the write already committed, returns the recorded
result instead of applying it again; otherwise it applies the write and records the result
in the SAME transaction. Both statements ride in the group commit the write was going to use
anyway, so the check costs no extra round trip, and a write and its record can never be
committed one without the other (a crash between them would otherwise re-apply or lose it).

A key names one request of one caller (:func:`scope_of`: the caller's token, the method and
path, and a digest of what it asks — its body, and the query parameters that define it):
reusing it for another request is refused (400), so a client bug cannot read another
request's answer, and another caller sending the same key is refused rather than answered
with the first caller's result. Keys are kept ``TITAN_IDEMPOTENCY_TTL`` seconds
(default 900: far beyond a client's ``TITAN_MASTER_RESTART_GRACE`` of retries plus one request
timeout) and pruned by the engine's housekeeping.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from fastapi import Request

from titan.errors import ValidationFailed
from titan.master.auth.tokens import Principal
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


async def scope_of(request: Request, caller: Principal, query: Mapping[str, Any] | None = None,
                   content: str | None = None) -> str:
    """The request a key names: ``<caller> <digest> <method> <path>``. The digest covers the
    query parameters ``query`` that define the request (not those that only say how long to
    wait: a retry of a held request asks for what is left of its hold) and the body as sent,
    or ``content`` (a streamed upload's sha256, its body read already). The caller is its
    token (a job's token: the attempt's), so one caller's key never answers another."""
    who = caller.token_id or (f"job {caller.job}.{caller.attempt}" if caller.job is not None
                              else caller.role)
    asked = hashlib.sha256(json.dumps(dict(query or {}), sort_keys=True).encode())
    asked.update(content.encode() if content is not None else await request.body())
    return (f"{_digest(who.encode())} {asked.hexdigest()[:32]} "
            f"{request.method} {request.url.path}")[:MAX_SCOPE]


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def _mismatch(recorded: str, scope: str) -> ValidationFailed:
    """The refusal of a key recorded for another request: which one, when it was the same
    caller's (another caller's request is none of this one's business)."""
    same_caller = recorded.split(" ", 1)[0] == scope.split(" ", 1)[0]
    request = " ".join(recorded.split(" ")[2:]) if same_caller else ""
    if same_caller and request == " ".join(scope.split(" ")[2:]):
        said = f"the same {request} with other content (body or parameters)"
    elif same_caller:
        said = request
    else:
        said = "another caller's"
    return ValidationFailed(
        f"this {IDEMPOTENCY_HEADER} was used for another request ({said}); "
        "send a fresh key per request", details={"header": IDEMPOTENCY_HEADER})


def once(key: str | None, scope: str,
         op: Callable[[Transaction], T], *,
         next_run_of: str | None = None) -> Callable[[Transaction], tuple[T, bool]]:
    """``op`` made safe to repeat under ``key``: returns (result, replayed).

    The result must be JSON (a number, a list of numbers...): it is what a repeat returns.
    ``next_run_of``: the DAG name ``op`` inserts a run of, read with the key (one statement).
    """
    def run(tx: Transaction) -> tuple[T, bool]:
        if key is None:
            return op(tx), False
        found = tx.idempotent_result(key, next_run_of=next_run_of)
        if found is not None:
            if found[0] != scope:
                raise _mismatch(found[0], scope)
            return json.loads(found[1]), True
        result = op(tx)
        tx.record_idempotent(key, scope, json.dumps(result), time.time())
        return result, False

    return run


def prune(ttl: float) -> Callable[[Transaction], Any]:
    """The housekeeping write that forgets keys older than ``ttl`` seconds."""
    before = time.time() - ttl
    return lambda tx: tx.prune_idempotency(before)
