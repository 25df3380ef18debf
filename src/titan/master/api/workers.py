"""The worker protocol's routes (logic in :mod:`titan.master.scheduling.worker_protocol`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from fastapi import APIRouter, Body, Request, WebSocket, WebSocketDisconnect

from titan.errors import APIError, ValidationFailed
from titan.master.api.body import JSONRoute
from titan.master.api.deps import (
    API_PREFIX,
    CtxDep,
    Reader,
    WorkerAuth,
    WorkerSelf,
    token_principal,
)
from titan.master.api.query import QueryRule
from titan.master.api.stream import RECHECK_SECONDS
from titan.master.auth import tokens as auth
from titan.master.context import Ctx
from titan.master.scheduling import worker_fields as fields
from titan.master.scheduling import worker_protocol as proto
from titan.master.scheduling import worker_views
from titan.master.scheduling.worker_channel import WorkerChannel
from titan.storage.base import Row

#: Close codes of the worker channel (WebSocket's application range mirrors HTTP statuses).
#: 4404 with reason ``unknown_worker``: register again, then reconnect.
CLOSE_CODES = {400: 4400, 401: 4401, 403: 4403, 404: 4404, 409: 4409, 413: 4413}
#: RFC 6455's "Try Again Later": the master cannot serve the channel for now.
TRY_AGAIN_LATER = 1013
log = logging.getLogger("titan.master")

router = APIRouter(prefix=API_PREFIX, route_class=JSONRoute, tags=["workers"])


#: The longest poll a worker may ask for (seconds): a longer one was cut to this silently.
MAX_POLL_WAIT = 60.0


def _text(body: Row, field: str, limit: int) -> None:
    """An optional string field of at most ``limit`` characters (a 100 KB name was taken and
    cut, a hostname of 5 made "5"). Its characters are the protocol's to check."""
    value = body.get(field)
    if value is None or isinstance(value, str) and len(value) <= limit:
        return
    got = f"{len(value)} characters" if isinstance(value, str) else type(value).__name__
    raise ValidationFailed(f"{field} must be a string of at most {limit} characters, got {got}",
                           details={"field": field})


def _flag(body: Row, field: str) -> None:
    if body.get(field) is not None and not isinstance(body[field], bool):
        raise ValidationFailed(f"{field} must be true or false, got {body[field]!r}",
                               details={"field": field})


def _clock(body: Row) -> None:
    """``now``, the worker's clock: a number of seconds (``"yesterday"`` was taken, and no
    sample made)."""
    now = body.get("now")
    if now is not None:
        fields.number_field(now, "now", default=0.0)


@router.post("/workers/register", summary="A worker joins (or re-joins with its old id)")
async def register(request: Request, c: CtxDep, p: WorkerAuth,
                   body: dict[str, Any] = Body(...)) -> Row:
    _text(body, "name", 200)
    _text(body, "hostname", 255)
    _text(body, "version", 64)
    if body.get("pid") is not None:
        fields.int_field(body["pid"], "pid", lo=0, hi=2**31 - 1)
    _flag(body, "lend")
    _flag(body, "name_given")
    _clock(body)
    return await proto.register(c.engine, body, p, request.headers.get("user-agent"))


@router.post("/workers/{worker_id}/poll", summary="Long-poll for jobs and cancels")
async def poll(c: CtxDep, p: WorkerSelf, request: Request, worker_id: str,
               body: dict[str, Any] = Body(...)) -> Row:
    wait = fields.number_field(body.get("wait"), "wait", default=20.0)
    if not 0 <= wait <= MAX_POLL_WAIT:  # -1 and 1e9 were taken (and made 0 and 60)
        raise ValidationFailed(f"wait must be between 0 and {MAX_POLL_WAIT:g} seconds, got "
                               f"{wait:g}", details={"field": "wait"})
    _flag(body, "draining")
    return await proto.poll(c.engine, worker_id,
                            fields.int_field(body.get("free_slots"), "free_slots", default=0),
                            wait, draining=body.get("draining") is True,
                            gone=lambda: _disconnected(request))


async def _disconnected(request: Request) -> None:
    """Returns once the client has gone: its body is read, so the only message left is the
    connection's close (or the response's end, after which nobody waits for this)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


@router.post("/workers/{worker_id}/heartbeat", summary="Renew leases")
async def heartbeat(c: CtxDep, p: WorkerSelf, worker_id: str, body: dict[str, Any] = Body(...)) -> Row:
    _clock(body)
    return await proto.heartbeat(c.engine, worker_id, body)


@router.post("/workers/{worker_id}/report", summary="Log lines and results")
async def report(c: CtxDep, p: WorkerSelf, worker_id: str, body: dict[str, Any] = Body(...)) -> Row:
    return await proto.report(c.engine, worker_id, body)


@router.post("/workers/{worker_id}/deregister", summary="A draining worker leaves")
async def deregister(c: CtxDep, p: WorkerSelf, worker_id: str) -> Row:
    return await proto.deregister(c.engine, worker_id)


@router.get("/workers", summary="Workers, queue depths, and jobs no worker can run")
async def list_workers(c: CtxDep, p: Reader) -> Row:
    return await worker_views.workers_view(c.engine)


async def _credential_ends(c: Ctx, credential: str) -> str:
    """Returns (why) once the worker's credential stops being valid: checked every 2 s, as
    the event stream's (a lookup in the token cache)."""
    while True:
        await asyncio.sleep(RECHECK_SECONDS)
        try:
            await token_principal(c, credential)
        except APIError as exc:
            return exc.message
        except Exception as exc:
            # Not known to be revoked (the database is away, most likely): checked again
            # next time. Taken as revoked, a database restart lost every connected worker,
            # and their running jobs ran again.
            if not c.storage.unavailable(exc):
                log.exception("worker channel: re-checking a worker's credential failed")


#: The channel takes no query parameter (api/query.py; no route class wraps a WebSocket).
_CHANNEL_QUERY = QueryRule(frozenset())


@router.websocket("/workers/{worker_id}/channel")
async def channel(ws: WebSocket, worker_id: str) -> None:
    """The worker channel (:mod:`titan.master.scheduling.worker_channel`): jobs pushed as their
    lease commits, results and acks on one connection. Needs the worker's own credential."""
    c: Ctx = ws.app.state.ctx
    # Accepted before anything is checked: a close before the handshake completes reaches the
    # client as a bare HTTP 403, without the code and reason that say what was wrong.
    await ws.accept()

    async def receive() -> str | None:
        try:
            return await ws.receive_text()
        except (WebSocketDisconnect, RuntimeError):
            return None

    try:
        credential = auth.bearer(ws.headers.get("authorization"))
        who = await token_principal(c, credential)
        auth.check_role(who, auth.WORKER, "act as a worker")
        auth.check_worker(who, worker_id)
        _CHANNEL_QUERY.check(ws.scope.get("query_string", b""), ws.query_params)
        serving = asyncio.create_task(
            WorkerChannel(c.engine, worker_id, receive, ws.send_text).serve())
        guard = asyncio.create_task(_credential_ends(c, credential))
        try:
            await asyncio.wait({serving, guard}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            guard.cancel()
        if not serving.done():
            # Its token was revoked: the worker is lost at once, so nothing more is leased
            # to it (jobs pushed to it failed for good, unable to fetch their scripts).
            c.engine.lose_worker_now(worker_id, "its worker token was revoked",
                                     distrusted=True)
            with contextlib.suppress(Exception):
                await ws.close(code=4401, reason=guard.result()[:120])
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(serving, 5)
            return
        serving.result()  # the APIError that ended the channel, if one did
    except APIError as exc:
        with contextlib.suppress(Exception):
            await ws.close(code=CLOSE_CODES.get(exc.status, 4400),
                           reason=f"{exc.code}: {exc.message}"[:120])
        return
    except (WebSocketDisconnect, RuntimeError):
        return
    except Exception as exc:
        if not c.storage.unavailable(exc):
            raise
        # Its credential could not be checked (the database is away): 1013, "try again
        # later", not an internal error the worker answered by reconnecting at once, a
        # traceback in the log each time, ~130 a second.
        log.warning("worker channel of %s: the database is unavailable (%s)", worker_id,
                    str(exc).splitlines()[0][:160])
        with contextlib.suppress(Exception):
            await ws.close(code=TRY_AGAIN_LATER, reason="database_unavailable: try again later")
        return
    with contextlib.suppress(Exception):
        await ws.close()
