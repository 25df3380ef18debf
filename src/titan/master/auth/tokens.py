"""Tokens and roles.

Stored tokens (admin, operator, viewer, worker) are random strings kept only as sha256 hashes.
Job tokens are not stored at all: ``tj.<job>.<attempt>.<mac>`` is an HMAC over the attempt
with the master's secret (shared through the database, so any master can check it). A job
token carries its fence: once that attempt no longer owns the job, its writes are refused.
An evaluation agent's token (``ta.<job>.<attempt>.<mac>``) is the same HMAC under a key of its
own, held by an evaluation's agent under test: a coding run's job hands it to the agent it
runs, and the worker hands it, instead of a job token, to the job that is a non-coding run's
agent. Its principal (role ``agent``) calls its run's tool proxy (evaluations/proxy.py), records
actions into its run and reads that run's totals (:data:`RECORD`, :data:`RUN_READ`), while its
attempt runs; every other route refuses it (403).
Worker credentials (``tw.<token id>.<worker id>.<mac>``) are HMACs too: registering with a
worker token returns one bound to the worker it registered, and every later call for that
worker must carry it, so one worker cannot act for another. The token id inside lets a
revoked worker token end the credentials it obtained.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from titan.errors import ConfigError, Forbidden, Unauthorized
from titan.master_proof import token_hash

__all__ = ["ADMIN", "FETCH", "OPERATE", "READ", "RECORD", "ROLES", "RUN_READ", "WORKER", "WRITE",
           "JobTokens",
           "Principal", "TokenCache", "WorkerCredentials", "bearer", "check_role",
           "check_worker", "new_token", "token_hash"]

ROLES = ("admin", "operator", "viewer", "worker")
# What each kind of request needs; a job token acts as an operator fenced to its attempt.
# A worker leases and reports, and downloads the scripts it runs (FETCH); it reads nothing else.
READ = frozenset({"admin", "operator", "viewer", "job"})
FETCH = READ | {"worker"}
WRITE = frozenset({"admin", "operator", "job"})
WORKER = frozenset({"admin", "worker"})
# Decisions a person makes (approving a gate): never a job's own token.
OPERATE = frozenset({"admin", "operator"})
# Recording actions into a run, and reading a run's totals (an LLM call's budget check): an
# evaluation's agent under test too (role ``agent``), into and of its own run only
# (runs/job_scope.py). It reaches nothing else: its task's answer key, the store, submitting.
RECORD = WRITE | {"agent"}
RUN_READ = READ | {"agent"}
ADMIN = frozenset({"admin"})
_CACHE_SECONDS = 10.0


def matches(sent: str, expected: str) -> bool:
    """Whether ``sent`` (from a request: any text) is ``expected``, in constant time. As bytes:
    ``hmac.compare_digest`` raises on a str with a character past ASCII, and a cookie or
    header holding one was a 500 with a traceback rather than a refusal."""
    return hmac.compare_digest(sent.encode("utf-8", "surrogatepass"),
                               expected.encode("utf-8", "surrogatepass"))


@dataclass(frozen=True)
class Principal:
    role: str
    token_id: str | None = None
    job: int | None = None
    attempt: int | None = None
    name: str | None = None  # the token's name: who approved a gate, shown in the dashboard
    worker: str | None = None  # a worker credential's worker; None for a bare worker token


def new_token() -> str:
    return "tt_" + secrets.token_urlsafe(32)


#: The shortest value a data dir's token file may hold (new_token() writes 46 characters).
MIN_TOKEN_FILE_LENGTH = 32


def read_token_file(path: Path) -> str:
    """The token in a data dir's ``admin.token`` or ``worker.token`` ('' when there is none
    yet: the master writes one). Whatever the file held was made a live token of its role:
    ``x`` an admin token, a value with a space one no client can send, and bytes that are not
    text stopped the master with a traceback (a QA pass). Refused, saying the way out."""
    try:
        raw = path.read_bytes() if path.exists() else b""
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        token = raw.decode("ascii").strip()
    except UnicodeDecodeError:
        token, why = "", "it is not plain ASCII text"
    else:
        why = ("a space or control character in it" if any(
            c.isspace() or not c.isprintable() for c in token) else
            f"{len(token)} character{'s' * (len(token) != 1)}, fewer than "
            f"{MIN_TOKEN_FILE_LENGTH}"
            if 0 < len(token) < MIN_TOKEN_FILE_LENGTH else "")
    if why:
        raise ConfigError(f"{path} does not hold a usable token ({why}): delete the file and "
                          "start the master again to get a new one")
    return token


class JobTokens:
    """Job tokens (``tj.``) and evaluation agents' tokens (``ta.``), both of one attempt."""

    def __init__(self, secret: str) -> None:
        # A key per kind: an agent's token must never verify as its job's, nor the reverse.
        self._keys = {"tj": secret.encode(),
                      "ta": hashlib.sha256(b"titan-eval-agent:" + secret.encode()).digest()}

    def _mac(self, job: int, attempt: int, kind: str = "tj") -> str:
        msg = f"{job}.{attempt}".encode()
        return hmac.new(self._keys[kind], msg, hashlib.sha256).hexdigest()[:32]

    def issue(self, job: int, attempt: int) -> str:
        return f"tj.{job}.{attempt}.{self._mac(job, attempt)}"

    def issue_agent(self, job: int, attempt: int) -> str:
        """The token of the agent under test of this attempt: the agent a coding run's job
        runs, or the job itself when it is a non-coding run's agent."""
        return f"ta.{job}.{attempt}.{self._mac(job, attempt, 'ta')}"

    def verify(self, token: str) -> Principal | None:
        return self._verify(token, "tj", "job")

    def verify_agent(self, token: str) -> Principal | None:
        """The attempt whose agent under test holds ``token`` (role ``agent``), or None."""
        return self._verify(token, "ta", "agent")

    def _verify(self, token: str, kind: str, role: str) -> Principal | None:
        try:
            prefix, job_s, attempt_s, mac = token.split(".")
            job, attempt = int(job_s), int(attempt_s)
        except ValueError:
            return None
        if prefix != kind or not matches(mac, self._mac(job, attempt, kind)):
            return None
        return Principal(role=role, job=job, attempt=attempt)


class WorkerCredentials:
    def __init__(self, secret: str) -> None:
        self._key = hashlib.sha256(b"titan-worker:" + secret.encode()).digest()

    def _mac(self, token_id: str, worker_id: str) -> str:
        msg = f"{token_id}.{worker_id}".encode()
        return hmac.new(self._key, msg, hashlib.sha256).hexdigest()[:40]

    def issue(self, token_id: str, worker_id: str) -> str:
        return f"tw.{token_id}.{worker_id}.{self._mac(token_id, worker_id)}"

    def verify(self, credential: str) -> Principal | None:
        # Token ids never hold a dot; worker ids may, so the mac is split off the right.
        _, _, rest = credential.partition(".")
        token_id, _, rest = rest.partition(".")
        worker_id, _, mac = rest.rpartition(".")
        if not token_id or not worker_id or not matches(
                mac, self._mac(token_id, worker_id)):
            return None
        return Principal(role="worker", token_id=token_id, worker=worker_id)


def check_worker(principal: Principal, worker_id: str) -> None:
    """A worker credential acts only for its own worker; a bare worker token only registers."""
    if principal.role != "worker" or principal.worker == worker_id:
        return
    if principal.worker is None:
        # What a worker from before per-worker credentials does: say the fix, not the rule.
        raise Forbidden("a worker token only registers workers; calls for a worker need the "
                        "credential its registration returned (a worker of an older Titan "
                        "calls so: upgrade titan where it runs)",
                        code="worker_credential_required", details={"worker_id": worker_id})
    raise Forbidden(f"this credential belongs to worker {principal.worker}, not {worker_id}",
                    code="wrong_worker", details={"worker_id": worker_id})


class TokenCache:
    """Remembers recent lookups so each request does not cost a database read (principals
    by token digest or id, and whether a dashboard session was signed out)."""

    def __init__(self) -> None:
        self._entries: dict[str, tuple[float, Any]] = {}

    def get(self, digest: str) -> tuple[bool, Any]:
        entry = self._entries.get(digest)
        if entry is None or entry[0] < time.monotonic():
            return False, None
        return True, entry[1]

    def put(self, digest: str, principal: Any) -> None:
        if len(self._entries) > 10_000:
            self._entries.clear()
        self._entries[digest] = (time.monotonic() + _CACHE_SECONDS, principal)

    def clear(self) -> None:
        self._entries.clear()


#: What a request without a credential is told, on every route (the API's, /mcp's and OTLP's
#: said it in two ways).
NO_CREDENTIAL = ("a token is required: send Authorization: Bearer <token> (or sign in to the "
                 "dashboard)")


def bearer(header: str | None) -> str:
    if not header:
        raise Unauthorized(NO_CREDENTIAL)
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise Unauthorized("the Authorization header must be 'Bearer <token>'")
    return value.strip()


def _an(word: str) -> str:
    return f"{'an' if word[:1] in ('a', 'e', 'i', 'o', 'u') else 'a'} {word}"


def takers(allowed: frozenset[str]) -> str:
    """Who may, in words: ``an admin or operator token``; ``..., or a job's own``."""
    people = [role for role in ROLES if role in allowed]
    said = ""
    if people:
        said = _an(", ".join(people[:-1]) + " or " + people[-1] if len(people) > 1
                   else people[0]) + " token"
    if "job" in allowed:
        said += ", or a job's own" if said else "a job's own token"
    return said


def check_role(principal: Principal, allowed: frozenset[str], action: str) -> None:
    """Forbidden unless the principal's role is ``allowed``; the message says what was asked
    (``action``) and who may, so a refusal reads right whatever the command was."""
    if principal.role not in allowed:
        why = (" (an evaluation agent's token calls its run's tools, answers and records into "
               "its own run, nothing else)" if principal.role == "agent" else "")
        raise Forbidden(f"{_an(principal.role)} token may not {action}; that takes "
                        f"{takers(allowed)}{why}", details={"role": principal.role})
