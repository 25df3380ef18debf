"""Shared request plumbing: the master context and the auth dependencies."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from titan.errors import Unauthorized
from titan.master import auth, sessions
from titan.master.config import MasterConfig
from titan.master.engine import Engine
from titan.master.evaluations import Evaluations
from titan.master.events import EventHub
from titan.master.replays import Replays
from titan.master.telemetry import Telemetry
from titan.storage.base import Storage
from titan.storage.blobs import BlobStore

API_PREFIX = "/api/v1"


@dataclass
class Ctx:
    config: MasterConfig
    storage: Storage
    engine: Engine
    hub: EventHub
    blobs: BlobStore
    tokens: auth.TokenCache
    runs: Telemetry
    replays: Replays
    evals: Evaluations


def ctx(request: Request) -> Ctx:
    ctx_: Ctx = request.app.state.ctx
    return ctx_


async def principal(request: Request) -> auth.Principal:
    """Who is asking: a bearer token, else the dashboard's session cookie (whose requests
    that change state must carry the CSRF token)."""
    c = ctx(request)
    header = request.headers.get("authorization")
    cookie = request.cookies.get(sessions.COOKIE) if header is None else None
    if cookie is not None:
        found_session = await sessions.principal_of(c, cookie)
        if found_session is None:
            raise Unauthorized("the dashboard session expired or its token was revoked; sign in again")
        await sessions.check_csrf(c, request, cookie, request.method)
        return found_session
    return await token_principal(c, auth.bearer(header))


async def token_principal(c: Ctx, token: str) -> auth.Principal:
    if token.startswith("tj."):
        assert c.engine.job_tokens is not None
        found = c.engine.job_tokens.verify(token)
        if found is None:
            raise Unauthorized("invalid job token")
        return found
    digest = auth.token_hash(token)
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
    return dep


CtxDep = Annotated[Ctx, Depends(ctx)]
Reader = Annotated[auth.Principal, Depends(_require(auth.READ, "read"))]
Writer = Annotated[auth.Principal, Depends(_require(auth.WRITE, "change anything", fenced=True))]
WorkerAuth = Annotated[auth.Principal, Depends(_require(auth.WORKER, "act as a worker"))]
Operator = Annotated[auth.Principal, Depends(_require(auth.OPERATE, "approve or reject a gate"))]
# Starting a replay runs a run's code again on the cluster: a person's decision, not a job's.
Replayer = Annotated[auth.Principal, Depends(_require(auth.OPERATE, "start a replay"))]
# Evaluations are set up and dispatched by people (the seed's "workflow manage" permission).
EvalManager = Annotated[auth.Principal, Depends(_require(auth.OPERATE, "manage evaluations"))]
Admin = Annotated[auth.Principal, Depends(_require(auth.ADMIN, "manage tokens"))]
