"""MCP at ``/mcp`` (streamable HTTP): the caller's bearer token checked as the API checks it,
its tool calls looped back through the API with that token.

Why loop back rather than call the master's services: the API's role checks stay the only
ones. A tool that reached the scheduler or the store directly would need its own copy of who
may submit, approve or write; a tool that calls the API as its caller can do nothing the
caller could not do with curl. The loop costs no socket: :class:`AppTransport` hands each
request of the (synchronous) client, on its worker thread, to this master's own ASGI app on
the event loop — the Host check, the body guard and the routes' role checks included.

The SDK's session manager runs stateless, with JSON replies: each POST is a whole exchange and
nothing is kept per client — no session for a standby's takeover to lose, no open event stream
to hold the master up when it stops. That gives up server-to-client requests (sampling,
elicitation), which no tool makes; ``GET`` (an event stream) and ``DELETE`` (ending a session)
are 405, as the protocol has it for a server without them. A body the SDK would leave unanswered
(an id of null was a 202 with nothing in it) is answered here with JSON-RPC's error, and an
``MCP-Protocol-Version`` header naming no version served with a 400 that lists those served
(:mod:`titan.mcp.jsonrpc`). The SDK costs a master about half a
second to import, so the first request loads it and starts the manager, and the master stops
it (:meth:`McpEndpoint.stop`); without the ``mcp`` package the route answers 501 naming the
extra that brings it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
from fastapi.responses import JSONResponse
from starlette.datastructures import Headers
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from titan.client import TitanClient
from titan.errors import APIError, Unauthorized
from titan.master.api.body import require_json
from titan.master.api.deps import PRINCIPAL, token_principal
from titan.master.auth import tokens as auth
from titan.master.config import MasterConfig

log = logging.getLogger("titan.master.mcp")
MCP_PATH = "/mcp"
#: The loopback client's base URL: a loopback name, so the Host check lets it in.
_LOOPBACK_URL = "http://127.0.0.1"


class McpEndpoint:
    """The ASGI app behind ``POST /mcp``: one per master app (:meth:`route`)."""

    def __init__(self, config: MasterConfig) -> None:
        self._body_limit = config.max_body_bytes
        self._manager: Any = None  # the SDK's StreamableHTTPSessionManager, once started
        self._refusal: Any = None  # titan.mcp.jsonrpc.refusal, imported with the SDK
        self._unsupported_version: Any = None  # titan.mcp.jsonrpc.unsupported_version
        self._starting = asyncio.Lock()
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def route(self) -> Route:
        return Route(MCP_PATH, endpoint=self, methods=["POST"], name="mcp")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await _authenticate(scope)
            # The SDK answered another type with a plain-text 400, "Invalid Content-Type
            # header": the API's 415 and error body instead, as on every route.
            require_json(Headers(scope=scope).get("content-type"))
            manager = self._manager or await self._start(scope["app"])
        except APIError as exc:
            # 401 with WWW-Authenticate, as the protocol's authorization section asks.
            headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
            await JSONResponse(exc.to_body(), status_code=exc.status, headers=headers)(
                scope, receive, send)
            return
        body = await _body(receive)
        if body is None:  # the client went away
            return
        # A message the SDK would leave unanswered (an id of null or 1.5 was a 202 with no
        # body, a batch a -32602 and pydantic's report): answered as JSON-RPC has it; and a
        # protocol version it does not speak (a -32602 about params._meta) as MCP has it.
        text = body.decode("utf-8", errors="replace")
        error = self._refusal(text) or self._unsupported_version(
            Headers(scope=scope).get("mcp-protocol-version"), text)
        if error is not None:
            await JSONResponse(error.model_dump(by_alias=True, mode="json", exclude_unset=True),
                               status_code=400)(scope, receive, send)
            return
        await manager.handle_request(scope, _replay(body, receive), send)

    async def _start(self, app: ASGIApp) -> Any:
        async with self._starting:  # two first requests at once start it once
            if self._manager is not None:
                return self._manager
            try:
                # Here, not at the top: an optional dependency, and half a second to import.
                from mcp.server.transport_security import TransportSecuritySettings

                from titan.mcp.jsonrpc import refusal, unsupported_version
                from titan.mcp.tools import build_server
            except ModuleNotFoundError as exc:
                if (exc.name or "").split(".")[0] != "mcp":
                    raise
                raise APIError("this master has no MCP SDK: install it with "
                               "pip install 'titan-agents[mcp]' and restart the master",
                               code="mcp_unavailable", status=501) from None
            loopback = _Loopback(app, asyncio.get_running_loop())
            server = build_server(loopback.client)
            # The app it returns is not used: the manager it makes is served here, behind the
            # master's own Host check (so the SDK's is off) and body limit.
            server.streamable_http_app(
                stateless_http=True, json_response=True, max_request_body_size=self._body_limit,
                transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False))
            manager = server.session_manager
            ready = asyncio.Event()
            self._task = asyncio.create_task(self._run(manager, ready), name="titan-mcp")
            await ready.wait()
            if self._task.done():  # it failed to start: say why
                self._task.result()
            self._refusal = refusal
            self._unsupported_version = unsupported_version
            self._manager = manager
            log.info("MCP server started at %s", MCP_PATH)
            return manager

    async def _run(self, manager: Any, ready: asyncio.Event) -> None:
        # The manager's task group lives as long as this task: requests start their exchanges
        # in it, and leaving run() cancels whatever is still in flight.
        try:
            async with manager.run():
                ready.set()
                await self._stopping.wait()
        finally:
            ready.set()

    async def stop(self) -> None:
        """Stop the manager (a master that never served MCP has nothing to stop)."""
        self._stopping.set()
        if self._task is not None:
            try:
                await self._task
            except Exception:  # it failed to start, and the request that started it said so
                log.exception("the MCP server failed")


async def _body(receive: Receive) -> bytes | None:
    """The request's body whole (the body guard has bounded it), or None on a disconnect."""
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """``receive`` for the SDK: the body already read, then the connection's own messages
    (a disconnect)."""
    given = False

    async def replay() -> Message:
        nonlocal given
        if given:
            return await receive()
        given = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


async def _authenticate(scope: Scope) -> auth.Principal:
    """The caller, by bearer token only: a dashboard session's cookie does not count here (an
    MCP client is not a page, and a cookie would let other sites' pages call tools)."""
    principal: auth.Principal | None = scope.get(PRINCIPAL)  # the body guard's, for a body
    header = Headers(scope=scope).get("authorization")
    if header is None:
        raise Unauthorized("MCP clients send Authorization: Bearer <token> (an admin, operator "
                           "or viewer token)")
    token = auth.bearer(header)
    if principal is None:
        principal = await token_principal(scope["app"].state.ctx, token)
    auth.check_role(principal, auth.READ, "use the MCP server")
    return principal


class _Loopback:
    """Clients for tool calls: each one calls this master's API with the token of the request
    that carried the call."""

    def __init__(self, app: ASGIApp, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = AppTransport(app, loop)

    @contextmanager
    def client(self, request: Any) -> Iterator[TitanClient]:
        # Every call over HTTP carries its request; its token was checked by _authenticate.
        token = auth.bearer(request.headers.get("authorization"))
        client = TitanClient(url=_LOOPBACK_URL, token=token, transport=self._transport)
        try:
            yield client
        finally:
            client.close()


class AppTransport(httpx.BaseTransport):
    """httpx into this master's own ASGI app, for a client on a worker thread: each request
    runs through the app on the event loop, and the thread waits for its reply."""

    def __init__(self, app: ASGIApp, loop: asyncio.AbstractEventLoop) -> None:
        self._app = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        self._loop = loop

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        request.read()  # the body whole, on this thread: only bytes cross to the loop
        future = asyncio.run_coroutine_threadsafe(self._send(request), self._loop)
        return future.result()

    async def _send(self, request: httpx.Request) -> httpx.Response:
        response = await self._app.handle_async_request(request)
        # Read on the loop too, so the sync client gets a body it can read on its thread.
        body = b"".join([chunk async for chunk in response.aiter_raw()])
        return httpx.Response(response.status_code, headers=response.headers, content=body)
