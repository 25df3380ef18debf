"""Shared request plumbing: the context of a request and the auth dependencies."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request

from titan.errors import NotLeader, StaleAttempt, Unauthorized
from titan.master.auth import sessions
from titan.master.auth import tokens as auth
from titan.master.context import Ctx
from titan.master.events import Guard

API_PREFIX = "/api/v1"
#: Where the body guard (api/limits.py) leaves the principal it authenticated by bearer, and
#: a write route (api/body.py) the one a session authenticated with its write key.
PRINCIPAL = "titan.principal"


def ctx(request: Request) -> Ctx:
    ctx_: Ctx = request.app.state.ctx
    return ctx_


async def principal(request: Request) -> auth.Principal:
    """Who is asking: a bearer token, else the dashboard's session cookie (whose requests
    that change state must carry the session's write key, the CSRF token)."""
    found: auth.Principal | None = request.scope.get(PRINCIPAL)
    if found is not None:  # authenticated by the body guard before it let the body in
        return found
    return await _credential(request, csrf=True)


async def _credential(request: Request, csrf: bool) -> auth.Principal:
    c = ctx(request)
    header = request.headers.get("authorization")
    cookie = request.cookies.get(sessions.COOKIE) if header is None else None
    if cookie is not None:
        found_session = await sessions.principal_of(c, cookie)
        if found_session is None:
            raise Unauthorized("the dashboard session expired or its token was revoked; sign in again")
        if csrf:
            await sessions.check_csrf(c, request, cookie, request.method)
        return found_session
    return await token_principal(c, auth.bearer(header))


def still_valid(request: Request) -> Guard:
    """A long-poll's guard (``hub.until(..., guard=)``): checks the request's credential
    again, as its next request would (a cache lookup; a read when the cache has forgotten
    it), and raises what that request would get — 401 for a token revoked or a session
    signed out, 409 ``stale_attempt`` for a job token whose attempt ended."""
    c = ctx(request)

    async def check() -> None:
        try:
            await _credential(request, csrf=False)  # the request itself passed its CSRF check
        except Exception as exc:
            if not c.storage.unavailable(exc):
                raise
            # The database is away: the credential cannot be read, which does not end it
            # (as for an open WebSocket); the wait goes on.
    return check


async def token_principal(c: Ctx, token: str) -> auth.Principal:
    if token.startswith(("tj.", "ta.")):
        assert c.engine.job_tokens is not None
        # ``ta.``: an evaluation's agent under test (role ``agent``). Routes take it only where
        # their roles name it (auth.RECORD, auth.RUN_READ), the tool proxy for its own run
        # (evaluations/proxy.py); everywhere else it is a 403 (docs/security.md).
        agent = token.startswith("ta.")
        found = c.engine.job_tokens.verify_agent(token) if agent \
            else c.engine.job_tokens.verify(token)
        if found is None:
            raise Unauthorized("invalid evaluation agent token" if agent
                               else "invalid job token")
        # A job token lives as long as its attempt runs: one read from a log, or kept by a
        # process the job left behind, must not read the store and runs for ever after
        # (writes were fenced already; now reads are too, with the same answer).
        assert found.job is not None and found.attempt is not None
        if not c.engine.sched.is_current(found.job, found.attempt):
            await _still_leading(c)
            raise StaleAttempt(f"{'agent' if agent else 'job'} token of attempt "
                               f"{found.attempt}: that attempt no longer runs its job (it "
                               "ended, or the job was given to another)")
        return found
    if token.startswith("tw."):
        return await _worker_credential(c, token)
    digest = auth.token_hash(token)
    cached: auth.Principal | None
    hit, cached = c.tokens.get(digest)
    if not hit:
        row = await c.engine.read(lambda tx: tx.token_by_hash(digest))
        cached = None
        if row is not None and row["revoked_at"] is None:
            cached = auth.Principal(role=row["role"], token_id=row["id"], name=row["name"])
        c.tokens.put(digest, cached)
    if cached is None:
        raise Unauthorized("unknown or revoked token")
    return cached


async def _still_leading(c: Ctx) -> None:
    """Before a refusal read from memory that ends a job (a stale attempt): NotLeader if
    another master leads now. A leader paused past its timeout wakes with the memory of
    before its replacement, and told a job the new leader runs that its attempt was over:
    the job failed. Sent on to the leader, it runs on. One read, on a rare path."""
    leadership = getattr(c.storage, "leadership", None)
    if leadership is None or leadership.epoch is None:
        return
    info = await asyncio.to_thread(leadership.leader)
    if info is not None and info.epoch != leadership.epoch:
        raise NotLeader(f"this master (epoch {leadership.epoch}) was replaced by the leader "
                        f"at {info.url} (epoch {info.epoch})", details={"leader": info.url})


async def _worker_credential(c: Ctx, credential: str) -> auth.Principal:
    assert c.engine.worker_credentials is not None
    found = c.engine.worker_credentials.verify(credential)
    if found is None:
        raise Unauthorized("invalid worker credential")
    # The worker token it came from must still be live: revoking it ends its credentials.
    # Cached like a token lookup, so the worker's hot path costs no database read.
    key = "id:" + str(found.token_id)
    hit, issuer = c.tokens.get(key)
    if not hit:
        row = await c.engine.read(lambda tx: tx.token_by_id(str(found.token_id)))
        issuer = None
        if row is not None and row["revoked_at"] is None:
            issuer = auth.Principal(role=row["role"], token_id=row["id"], name=row["name"])
        c.tokens.put(key, issuer)
    if issuer is None or issuer.role not in auth.WORKER:
        if found.worker:
            # Lost now, not at the channel's next credential check (2 s): meanwhile a job it
            # could not fetch went back and forth to it, hundreds of attempts (a QA pass).
            c.engine.lose_worker_now(found.worker, "its worker token was revoked",
                                     distrusted=True)
        raise Unauthorized("the worker token this credential came from was revoked")
    return auth.Principal(role="worker", token_id=issuer.token_id, name=issuer.name,
                          worker=found.worker)


#: The dependencies that authenticate the request (api/query.py lets them answer first).
AUTHENTICATING: set[Callable[..., Awaitable[auth.Principal]]] = {principal}


def _require(allowed: frozenset[str], action: str,
             fenced: bool = False) -> Callable[..., Awaitable[auth.Principal]]:
    # One flat dependency (not one depending on another): FastAPI's per-dependency cost is a
    # measurable share of a request on the hot routes.
    async def dep(request: Request) -> auth.Principal:
        p = await principal(request)
        auth.check_role(p, allowed, action)
        if fenced:
            ctx(request).engine.check_fence(p)
        return p
    AUTHENTICATING.add(dep)
    return dep


async def _worker_self(request: Request) -> auth.Principal:
    p = await principal(request)
    auth.check_role(p, auth.WORKER, "act as a worker")
    auth.check_worker(p, request.path_params["worker_id"])
    return p


AUTHENTICATING.add(_worker_self)


async def _ctx(request: Request) -> Ctx:
    # async on purpose: FastAPI runs a plain ``def`` dependency in its thread pool, a hop to
    # another thread and back (~0.2 ms) on every request that names the context.
    return ctx(request)


CtxDep = Annotated[Ctx, Depends(_ctx)]
# Any token, whatever its role (GET /whoami says which).
Caller = Annotated[auth.Principal, Depends(principal)]
Reader = Annotated[auth.Principal, Depends(_require(auth.READ, "read"))]
Writer = Annotated[auth.Principal, Depends(_require(auth.WRITE, "change anything", fenced=True))]
# Recording actions, and reading a run's totals: also an evaluation's agent under test, into
# and of its own run only (runs/job_scope.py).
RunRecorder = Annotated[auth.Principal, Depends(_require(auth.RECORD, "record actions",
                                                         fenced=True))]
RunReader = Annotated[auth.Principal, Depends(_require(auth.RUN_READ, "read"))]
# Asking which blobs the master lacks is an upload's first step: refused to a worker token it
# said "may not read" to `titan schedule create`, a write (a QA pass).
Uploader = Annotated[auth.Principal, Depends(_require(auth.WRITE, "upload scripts or files"))]
WorkerAuth = Annotated[auth.Principal, Depends(_require(auth.WORKER, "act as a worker"))]
# Calls for /workers/{worker_id}/...: that worker's own credential (or an admin).
WorkerSelf = Annotated[auth.Principal, Depends(_worker_self)]
# Downloading a script or blob to run it: readers and workers.
Fetcher = Annotated[auth.Principal, Depends(_require(auth.FETCH, "download files"))]
Operator = Annotated[auth.Principal, Depends(_require(auth.OPERATE, "approve or reject a gate"))]
# Archiving runs and setting an agent's budget: an operator's decision (it said "approve or
# reject a gate" on these routes too).
RunKeeper = Annotated[auth.Principal, Depends(_require(auth.OPERATE, "archive runs or set "
                                                                     "an agent's budget"))]
# Starting a replay runs a run's code again on the cluster: a person's decision, not a job's.
Replayer = Annotated[auth.Principal, Depends(_require(auth.OPERATE, "start a replay"))]
# Evaluations are set up and dispatched by people (the seed's "workflow manage" permission).
EvalManager = Annotated[auth.Principal, Depends(_require(auth.OPERATE, "manage evaluations"))]
Admin = Annotated[auth.Principal, Depends(_require(auth.ADMIN, "manage tokens"))]
# Deleting history (retention's prunes) is an admin's decision: a 403 said "manage tokens".
Pruner = Annotated[auth.Principal, Depends(_require(auth.ADMIN, "delete old runs and DAGs"))]
# Deleting a file or an artifact (every version of it) is a person's decision: not a job's,
# which may only add versions, nor a viewer's.
FileDeleter = Annotated[auth.Principal, Depends(_require(auth.OPERATE,
                                                         "delete files or artifacts"))]
Collector = Annotated[auth.Principal, Depends(_require(auth.ADMIN, "collect unused blobs"))]
# A schedule starts runs on its own for as long as it exists: a person's decision, never a
# job's (a job could otherwise outlive itself as a schedule).
ScheduleManager = Annotated[auth.Principal, Depends(_require(auth.OPERATE, "manage schedules"))]
# Traces over OTLP name runs of their own: a person's token, never a job's (fenced to its own
# run) or a worker's.
OtlpSender = Annotated[auth.Principal, Depends(_require(
    auth.OPERATE, "send OTLP traces"))]
