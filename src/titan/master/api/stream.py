"""The live event stream: WebSocket ``/api/v1/events``.

What the dashboard's pages subscribe to so they patch themselves instead of polling. A client
picks what it wants at connect time (``?types=job_updated,dag_updated&dag=12&job=345``, or
``?run=<id>`` for one agent run's actions) and
may move its log subscription later by sending ``{"job": 345}``. Log lines are only ever sent
for the one job a client names: a busy cluster writes far more of them than a page shows.

Frames are JSON: ``{"type": "hello", "ping": seconds}`` first, then ``{"type": T, "data": {...}}``
per event, ``{"type": "resync"}`` when the client fell so far behind that events were dropped
(it refetches the JSON twin of its page), and ``{"type": "ping"}`` after ``ping`` quiet seconds
(``TITAN_EVENTS_PING``), so a client can tell a quiet stream from a dead socket. Authentication: a bearer header, ``?token=``, or the
dashboard's session cookie from a page of the same origin.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from titan.errors import APIError
from titan.master.api.body import INT64_MAX
from titan.master.api.deps import API_PREFIX, token_principal
from titan.master.api.query import QueryRule
from titan.master.auth import sessions
from titan.master.auth import tokens as auth
from titan.master.context import Ctx
from titan.master.events import Event

router = APIRouter(prefix=API_PREFIX, tags=["events"])
log = logging.getLogger("titan.master")

EVENT_TYPES = frozenset({
    "job_updated", "dag_created", "dag_updated", "agent_run_updated", "worker_updated",
    "store_updated", "log_lines", "run_created", "run_updated", "run_completed", "run_failed",
    "action_created", "schedule_updated", "evaluation_updated", "eval_run_updated",
})
_DAG_SCOPED = frozenset({"job_updated", "dag_updated", "log_lines"})
_RUN_SCOPED = frozenset({"run_created", "run_updated", "run_completed", "run_failed",
                         "action_created", "agent_run_updated"})
# WebSocket close codes in the application range (4000-4999), like HTTP's 401/400.
_CLOSE_UNAUTHORIZED = 4401
_CLOSE_BAD_REQUEST = 4400
_CLOSE_FORBIDDEN = 4403  # a worker credential: workers do not read events
#: How often an open stream's credential is checked again (a cache lookup): a token revoked,
#: a session signed out or a job's attempt ended stops its streams within this, as it stops
#: its requests at once.
RECHECK_SECONDS = 2.0


class Filter:
    """Which events one client gets; changed in place when it sends a new log subscription."""

    def __init__(self, types: frozenset[str], dag: int | None, job: int | None,
                 run: str | None = None, dag_name: str | None = None) -> None:
        self.types, self.dag, self.job, self.run = types, dag, job, run
        self.dag_name = dag_name

    def __call__(self, event: Event) -> bool:
        kind, data = event["type"], event["data"]
        if kind not in self.types:
            return False
        if self.run is not None and kind in _RUN_SCOPED:
            # A replay of the run is news to the run's page too (its Simulation tab's list).
            return bool(data.get("run_id", data.get("id")) == self.run
                        or data.get("replay_of") == self.run)
        if kind == "log_lines":
            return self.job is not None and data.get("job") == self.job
        if kind == "dag_updated" and self.dag_name is not None and data.get("name") == self.dag_name:
            return True  # another run of the DAG: the visualizer's run picker says its status
        if self.dag is not None and kind in _DAG_SCOPED:
            return bool(data.get("dag_id", data.get("id")) == self.dag)
        return True


def parse_filter(params: Any) -> Filter:
    raw = params.get("types")
    types = EVENT_TYPES
    if raw:
        asked = frozenset(t.strip() for t in raw.split(",") if t.strip())
        unknown = asked - EVENT_TYPES
        if unknown:
            raise APIError(f"unknown event type(s) {', '.join(sorted(unknown))}; "
                           f"known: {', '.join(sorted(EVENT_TYPES))}")
        types = asked
    return Filter(types, _int(params.get("dag"), "dag"), _int(params.get("job"), "job"),
                  params.get("run") or None, params.get("dag_name") or None)


def _int(value: str | None, name: str) -> int | None:
    if value is None or value == "":
        return None
    try:
        number = _id(value)
    except ValueError:
        raise APIError(f"{name} must be a numeric id (1 to 2^63-1, as other integer "
                       f"parameters), got {value[:40]!r}") from None
    return number


def _id(value: Any) -> int:
    """A numeric id as a query parameter or a command gives it: an integer of the signed
    64-bit range the database holds, from 1 (``dag=-1`` and ``dag=2**63`` were taken)."""
    number = int(value) if not isinstance(value, bool) else -1
    if not 1 <= number <= INT64_MAX:
        raise ValueError(value)
    return number


async def _authenticate(c: Ctx, ws: WebSocket) -> auth.Principal:
    header = ws.headers.get("authorization")
    if header is not None:
        return await token_principal(c, auth.bearer(header))
    token = ws.query_params.get("token")
    if token:
        return await token_principal(c, token)
    cookie = ws.cookies.get(sessions.COOKIE)
    if cookie is not None and sessions.same_origin(ws):
        found = await sessions.principal_of(c, cookie)
        if found is not None:
            return found
    raise APIError("sign in first: a bearer token, ?token= or the dashboard's session",
                   code="unauthorized", status=401)


#: What /events takes (no route class reads a WebSocket's signature: api/query.py).
_EVENTS_QUERY = QueryRule(frozenset({"token", "types", "dag", "dag_name", "job", "run"}))


@router.websocket("/events")
async def events(ws: WebSocket) -> None:
    c: Ctx = ws.app.state.ctx
    try:
        auth.check_role(await _authenticate(c, ws), auth.READ, "read events")
        _EVENTS_QUERY.check(ws.scope.get("query_string", b""), ws.query_params)
        flt = parse_filter(ws.query_params)
    except APIError as exc:
        code = {401: _CLOSE_UNAUTHORIZED, 403: _CLOSE_FORBIDDEN}.get(exc.status, _CLOSE_BAD_REQUEST)
        # Accepted first: a close before the handshake completes reaches the client as a bare
        # HTTP 403, without the code and reason that say what was wrong.
        await ws.accept()
        await ws.close(code=code, reason=exc.message[:120])
        return
    await ws.accept()
    sub = c.hub.subscribe(flt)
    reader = asyncio.create_task(_read_commands(c, ws, flt))
    guard = asyncio.create_task(_credential_ends(c, ws))
    ping = c.config.events_ping_seconds
    batch: asyncio.Future[Any] | None = None
    try:
        await ws.send_text(json.dumps({"type": "hello", "ping": ping}))
        while not reader.done() and not guard.done():
            batch = batch or asyncio.ensure_future(sub.next_batch())
            done, _ = await asyncio.wait({batch, reader, guard}, timeout=ping,
                                         return_when=asyncio.FIRST_COMPLETED)
            if not done:
                # Quiet: say so, so a page whose socket died without a close (a laptop
                # asleep, a NAT that forgot the connection) notices the silence.
                await ws.send_text('{"type":"ping"}')
                continue
            if batch not in done:
                batch.cancel()
                batch = None
                break
            batch_done, batch = batch, None
            items, overflowed = batch_done.result()
            if overflowed:
                await ws.send_text('{"type":"resync"}')
            for event in items:
                await ws.send_text(json.dumps(event, separators=(",", ":"), default=str))
        ended = guard.result() if guard.done() else (reader.result() if reader.done() else None)
        if ended is not None:
            await ws.close(code=_CLOSE_UNAUTHORIZED, reason=ended[:120])
    except (WebSocketDisconnect, RuntimeError):
        pass  # the client went away mid-send
    finally:
        if batch is not None:
            batch.cancel()
        c.hub.unsubscribe(sub)
        for task in (reader, guard):
            task.cancel()
            with contextlib.suppress(BaseException):
                await task


async def _still_allowed(c: Ctx, ws: WebSocket) -> str | None:
    """None while the stream's credential still reads events; else why it does not."""
    try:
        auth.check_role(await _authenticate(c, ws), auth.READ, "read events")
    except APIError as exc:
        return exc.message
    except Exception as exc:
        if not c.storage.unavailable(exc):
            raise
        # The database is away: the credential cannot be read, which does not end it (a
        # PostgreSQL restart closed every open page's stream).
        log.debug("events: credential not re-checked, the database is unavailable")
    return None


async def _credential_ends(c: Ctx, ws: WebSocket) -> str:
    """Returns (why) once the credential the stream was opened with stops being valid."""
    while True:
        await asyncio.sleep(RECHECK_SECONDS)
        if (why := await _still_allowed(c, ws)) is not None:
            return why


async def _read_commands(c: Ctx, ws: WebSocket, flt: Filter) -> str | None:
    """Messages from the client: ``{"job": id|null}`` moves its log subscription, once the
    credential is checked again (a revoked one gets no other job's lines). Returns when the
    client goes away (None) or the credential has ended (why)."""
    while True:
        try:
            text = await ws.receive_text()
        except (WebSocketDisconnect, RuntimeError):
            return None
        try:
            msg = json.loads(text)
            if isinstance(msg, dict) and "job" in msg:
                job = msg["job"]
                job = None if job is None else _id(job)
                if (why := await _still_allowed(c, ws)) is not None:
                    return why
                flt.job = job
        except (ValueError, TypeError):
            log.debug("ignoring a malformed events message: %.200s", text)
