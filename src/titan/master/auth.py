"""Tokens and roles.

Stored tokens (admin, operator, viewer, worker) are random strings kept only as sha256 hashes.
Job tokens are not stored at all: ``tj.<job>.<attempt>.<mac>`` is an HMAC over the attempt
with the master's secret (shared through the database, so any master can check it). A job
token carries its fence: once that attempt no longer owns the job, its writes are refused.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

from titan.errors import Forbidden, Unauthorized

ROLES = ("admin", "operator", "viewer", "worker")
# What each kind of request needs; a job token acts as an operator fenced to its attempt.
READ = frozenset({"admin", "operator", "viewer", "worker", "job"})
WRITE = frozenset({"admin", "operator", "job"})
WORKER = frozenset({"admin", "worker"})
# Decisions a person makes (approving a gate): never a job's own token.
OPERATE = frozenset({"admin", "operator"})
ADMIN = frozenset({"admin"})
_CACHE_SECONDS = 10.0


@dataclass(frozen=True)
class Principal:
    role: str
    token_id: str | None = None
    job: int | None = None
    attempt: int | None = None
    name: str | None = None  # the token's name: who approved a gate, shown in the dashboard


def new_token() -> str:
    return "tt_" + secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class JobTokens:
    def __init__(self, secret: str) -> None:
        self._key = secret.encode()

    def _mac(self, job: int, attempt: int) -> str:
        msg = f"{job}.{attempt}".encode()
        return hmac.new(self._key, msg, hashlib.sha256).hexdigest()[:32]

    def issue(self, job: int, attempt: int) -> str:
        return f"tj.{job}.{attempt}.{self._mac(job, attempt)}"

    def verify(self, token: str) -> Principal | None:
        try:
            _, job_s, attempt_s, mac = token.split(".")
            job, attempt = int(job_s), int(attempt_s)
        except ValueError:
            return None
        if not hmac.compare_digest(mac, self._mac(job, attempt)):
            return None
        return Principal(role="job", job=job, attempt=attempt)


class TokenCache:
    """Remembers recent lookups so each request does not cost a database read."""

    def __init__(self) -> None:
        self._entries: dict[str, tuple[float, Principal | None]] = {}

    def get(self, digest: str) -> tuple[bool, Principal | None]:
        entry = self._entries.get(digest)
        if entry is None or entry[0] < time.monotonic():
            return False, None
        return True, entry[1]

    def put(self, digest: str, principal: Principal | None) -> None:
        if len(self._entries) > 10_000:
            self._entries.clear()
        self._entries[digest] = (time.monotonic() + _CACHE_SECONDS, principal)

    def clear(self) -> None:
        self._entries.clear()


def bearer(header: str | None) -> str:
    if not header:
        raise Unauthorized()
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise Unauthorized("the Authorization header must be 'Bearer <token>'")
    return value.strip()


def check_role(principal: Principal, allowed: frozenset[str], action: str) -> None:
    if principal.role not in allowed:
        raise Forbidden(f"a {principal.role} token may not {action}",
                        details={"role": principal.role})
