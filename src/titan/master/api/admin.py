"""Health, tokens and agent runs."""

from __future__ import annotations

import secrets
import time
from typing import Any

from fastapi import APIRouter, Body, Query, Request
from fastapi.responses import JSONResponse

import titan
from titan.errors import (
    Conflict,
    DatabaseUnavailable,
    Forbidden,
    NotFound,
    Unauthorized,
    ValidationFailed,
)
from titan.formats import label_problem
from titan.master.api.body import JSONRoute
from titan.master.api.deps import API_PREFIX, Admin, Caller, CtxDep, Reader
from titan.master.api.limits import PROXY_CALL
from titan.master.api.params import Offset
from titan.master.auth import audit, sessions
from titan.master.auth import tokens as auth
from titan.master.auth.sign_in_codes import CODE_SECONDS
from titan.master.scheduling.views import agent_run_view
from titan.master_proof import proof as proof_of
from titan.storage.base import Row, Transaction

router = APIRouter(prefix=API_PREFIX, route_class=JSONRoute)


#: How long a write may wait for the database before ``GET /health`` answers 503: a commit on
#: a busy disk is no outage. Shorter than the default leader timeout (5 s) after which a
#: standby takes over from a leader gone silent (a network partition), so a cut-off leader
#: stops looking healthy before its successor starts to.
STALL_GRACE = 3.0


@router.get("/health", tags=["admin"], summary="Liveness (no token needed)")
async def health(c: CtxDep) -> Any:
    # A standby never gets here: it answers 503 not_leader (master/standby.py). What this says
    # is read from state the writer and the leadership loop keep, never from a query: a load
    # balancer may ask it often, and a query would wait behind the very outage it reports.
    leadership = getattr(c.storage, "leadership", None)
    epoch = leadership.epoch if leadership is not None else None
    body: Row = {"status": "ok", "version": titan.__version__, "time": time.time(),
                 "role": "leader", "epoch": epoch}
    problem = _unavailable(c, leadership)
    if problem is None:
        return body
    reason, since = problem
    body.update(status="unavailable", reason=reason, since_seconds=round(since, 1))
    # The error object every 503 of Titan's carries: a client (the SDK, a worker) reads it as
    # the master's own word — "the master's database is unavailable", waited out — where a
    # bare body read as a proxy's 503.
    body["error"] = {"code": DatabaseUnavailable.code, "message": f"unavailable: {reason}",
                     "details": {"since_seconds": body["since_seconds"]}}
    return JSONResponse(body, status_code=503, headers={"Retry-After": "5"})


def _unavailable(c: Any, leadership: Any) -> tuple[str, float] | None:
    """Why this leader cannot vouch for itself now, and for how long; None when it can.

    Its leadership lock unconfirmed (the database unreachable when it checked, each
    heartbeat): said at once, as PostgreSQL frees the lock of a connection it lost and a
    standby takes it within a poll. A write waiting past :data:`STALL_GRACE` (the database
    refusing it: away, disk full; or not answering at all): nothing this master decides is
    recorded, its heartbeat included."""
    now = time.monotonic()
    if leadership is not None and leadership.unconfirmed_since:
        return (f"cannot confirm the leadership: the database is unreachable "
                f"({leadership.unconfirmed_reason})", now - leadership.unconfirmed_since)
    writer = c.engine.writer
    if writer.away_since and now - writer.away_since >= STALL_GRACE:
        return (f"writes wait for the database: {writer.away_reason}",
                now - writer.away_since)
    if writer.busy_since and now - writer.busy_since >= STALL_GRACE:
        return "a write has had no answer from the database", now - writer.busy_since
    return None


@router.get("/master-proof", tags=["admin"],
            summary="Prove this master holds a token, before the client sends it (no token)")
async def master_proof(c: CtxDep, nonce: str = Query(..., pattern="^[0-9a-f]{32}$"),
                       ref: str = Query(..., min_length=4, max_length=400),
                       for_path: str | None = Query(None, alias="for", max_length=2000)
                       ) -> Row:
    # Over plain HTTP a client asks this on each new connection before its token goes out:
    # only a process that can verify the token can answer (titan/master_proof.py). ``for``:
    # the path it is about to call, so a tool proxy call with a wrong token still counts
    # against its evaluation run (proxy_misconfigured), as the call itself would have.
    digest = await c.proofs.digest(ref) or c.evals.token_digest(ref)
    if digest is None:
        proxied = PROXY_CALL.match(for_path or "")
        if proxied:
            c.evals.proxy.unproven(proxied.group(1))
        raise Unauthorized("unknown token")
    return {"proof": proof_of(digest, nonce)}


@router.get("/whoami", tags=["admin"], summary="Who the calling token is (any token)")
async def whoami(c: CtxDep, p: Caller, request: Request) -> Row:
    # `titan dashboard` asks before it prints a sign-in link: a worker's token made one
    # that answered 401 (a QA pass); and prints it on the dashboard's own port, the banner's,
    # not on the API's it asked (a second sign-in there left the tabs open on the banner's
    # without their write key).
    return {"role": p.role, "name": p.name, "token_id": p.token_id,
            "dashboard": p.role in sessions.DASHBOARD_ROLES,
            "dashboard_url": c.config.dashboard_url_as_seen(request.headers.get("host"))}


@router.post("/sign-in-codes", tags=["admin"], status_code=201,
             summary="A one-time code that signs a browser in as the calling token")
async def sign_in_code(c: CtxDep, p: Caller) -> Row:
    # What `titan dashboard --open` hands the browser, whose command line every local user
    # reads, instead of the token (auth/sign_in_codes.py).
    if p.role not in sessions.DASHBOARD_ROLES or p.token_id is None:
        raise Forbidden(f"a {p.role} token cannot sign in to the dashboard: use an admin, "
                        "operator or viewer token")
    return {"code": c.sign_in_codes.issue(p.token_id), "expires_in": CODE_SECONDS}


@router.post("/tokens", tags=["admin"], status_code=201, summary="Create a token")
async def create_token(c: CtxDep, p: Admin, request: Request,
                       body: dict[str, Any] = Body(...)) -> Row:
    # Unknown fields are refused before this (api/body.py): {"nmae": ...} made a token named
    # after its role.
    role = body.get("role")
    if role not in auth.ROLES:
        raise ValidationFailed(f"role must be one of {', '.join(auth.ROLES)}, got {role!r}",
                               details={"field": "role"})
    name = body.get("name")
    if name is None:
        name = role
    # Shown in `titan token list` and the dashboard: 5 was stored as "5", a 100 KB name cut
    # to 200 characters without a word, and a newline or a U+202E showed another name.
    problem = label_problem(name, "name")
    if problem is not None:
        raise ValidationFailed(problem, details={"field": "name"})
    token = auth.new_token()
    session = _via_session(request)
    row = {"id": "tok-" + secrets.token_hex(6), "token_hash": auth.token_hash(token),
           "role": role, "name": name, "created_at": time.time(),
           "created_by": audit.who(p, session)[:300]}
    await c.engine.run(lambda tx: tx.add_token(row))
    c.proofs.token_created()
    audit.token_created(p, session, _address(request), row["id"], role, name)
    return {"id": row["id"], "token": token, "role": role, "name": name}


@router.get("/tokens", tags=["admin"], summary="List tokens (never their secrets)")
async def list_tokens(c: CtxDep, p: Admin) -> Row:
    rows = await c.engine.read(lambda tx: tx.list_tokens())
    return {"tokens": [{k: r[k] for k in ("id", "role", "name", "created_at", "created_by",
                                          "revoked_at")}
                       for r in rows]}


@router.delete("/tokens/{token_id}", tags=["admin"], summary="Revoke a token")
async def revoke_token(c: CtxDep, p: Admin, request: Request, token_id: str) -> Row:
    now = time.time()

    def op(tx: Transaction) -> bool:
        # The last live admin token is kept: revoked, nobody could mint or revoke a token
        # again, and a restart kept serving the revoked admin.token (a CLI QA pass).
        live = [t for t in tx.list_tokens() if not t.get("revoked_at")]
        if any(t["id"] == token_id and t["role"] == "admin" for t in live) \
                and sum(t["role"] == "admin" for t in live) == 1:
            raise Conflict(f"token {token_id} is the last admin token: revoked, no one could "
                           "manage tokens again; create another first (titan token create "
                           "--role admin), then revoke this one", code="last_admin_token")
        return tx.revoke_token(token_id, now)

    if not await c.engine.run(op):
        raise NotFound(f"no live token {token_id!r}")
    c.tokens.clear()
    c.hub.revoked()  # its parked long-polls end now, with a 401
    audit.token_revoked(p, _via_session(request), _address(request), token_id)
    return {"id": token_id, "revoked": True}


def _via_session(request: Request) -> bool:
    return "authorization" not in request.headers  # the dashboard's cookie, then


def _address(request: Request) -> str:
    return request.client.host if request.client is not None else "an unknown address"


@router.get("/agent-runs", tags=["agent runs"], summary="Agent runs with their stages")
async def agent_runs(c: CtxDep, p: Reader, limit: int = Query(50, ge=1, le=500),
                     offset: Offset = 0) -> Row:
    def q(tx: Transaction) -> Row:
        rows, total = tx.list_agent_runs(limit, offset)
        return {"agent_runs": [agent_run_view(tx, r) for r in rows], "total": total}

    return await c.engine.read(q)


@router.get("/agent-runs/{run_id}", tags=["agent runs"], summary="One agent run")
async def agent_run(c: CtxDep, p: Reader, run_id: str) -> Row:
    def q(tx: Transaction) -> Row:
        row = tx.get_agent_run(run_id)
        if row is None:
            raise NotFound(f"no agent run {run_id!r}")
        return agent_run_view(tx, row)

    return await c.engine.read(q)
