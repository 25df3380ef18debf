"""Who may send a body, and how big: checked before a byte of it is read.

FastAPI reads and parses a request's JSON body before the route's dependencies run, so the
token check used to come after the whole body was in memory: 300 MB without a token cost the
master a gigabyte (issue 15 item 3). :class:`BodyGuard` is a pure ASGI middleware in front of
every route that, for any request carrying a body (a ``Content-Length`` or a chunked
``Transfer-Encoding``):

1. authenticates it from the headers alone — a bearer token (stored, job or worker
   credential), the dashboard's session cookie, or for the evaluation tool proxy the run's own
   token — and answers 401 at once otherwise, without reading the body;
2. answers 413 at once when ``Content-Length`` is over the route's limit;
3. counts a streamed body as the route reads it and stops it with 413 the moment it crosses
   the limit, however it is framed.

Refusals sent before the body was read carry ``Connection: close``: the client's unsent
bytes are then never received, instead of being read and discarded. Requests without a body
(every GET) pass untouched. A bearer-authenticated principal is handed to the route
(``scope[PRINCIPAL]``) so it is not looked up twice.
"""

from __future__ import annotations

import re
from typing import Any

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from titan.errors import APIError, PayloadTooLarge, Unauthorized
from titan.master.api.deps import PRINCIPAL, token_principal
from titan.master.api.mcp import MCP_PATH
from titan.master.api.otlp import TRACE_PATHS
from titan.master.auth import sessions
from titan.master.auth import tokens as auth
from titan.master.config import MasterConfig

#: Raw uploads (streamed to the blob store): the upload limit.
_UPLOADS = re.compile(r"^/api/v1/(blobs/[^/]+|files/.+|artifacts)$")
#: The evaluation tool proxy: the agent under test holds the run's token, not an API token.
PROXY_CALL = re.compile(r"^/api/v1/runs/([^/]+)/(tools/[^/]+|eval/(response|events|coding))$")
#: OTLP/HTTP trace bodies: the JSON body limit, also at the root where collectors take them.
_OTLP = frozenset(TRACE_PATHS)
#: Routes anyone may call (sign-in gives the credential): no check, and a small body.
_PUBLIC = frozenset({"/login", "/api/v1/health", "/api/v1/master-proof",
                     "/api/v1/openapi.json", "/api/v1/docs"})
_PUBLIC_LIMIT = 16 * 1024
_DASHBOARD_LIMIT = 1 << 20


class _TooLarge(Exception):
    """The streamed body crossed the limit (raised from the route's receive)."""


class BodyGuard:
    def __init__(self, app: ASGIApp, config: MasterConfig) -> None:
        self.app = app
        self.json_limit = config.max_body_bytes
        self.upload_limit = config.max_upload_bytes

    def _limit(self, path: str) -> int:
        if path in _PUBLIC:
            return _PUBLIC_LIMIT
        if path in _OTLP:
            return self.json_limit
        if path == MCP_PATH:  # MCP's JSON-RPC, at the root: the API's JSON limit
            return self.json_limit
        if path.startswith("/api/"):
            return self.upload_limit if _UPLOADS.match(path) else self.json_limit
        return _DASHBOARD_LIMIT

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length: int | None = None
        chunked = False
        bearer: str | None = None
        cookie: str | None = None
        for key, value in scope["headers"]:
            if key == b"content-length":
                try:
                    length = int(value)
                except ValueError:
                    await _refuse(send, APIError("Content-Length is not a number"))
                    return
            elif key == b"transfer-encoding":
                chunked = b"chunked" in value.lower()
            elif key == b"authorization":
                bearer = value.decode("latin-1")
            elif key == b"cookie":
                cookie = value.decode("latin-1")
        if not chunked and not length:
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        limit = self._limit(path)
        try:
            if path not in _PUBLIC:
                principal = await _authenticate(scope, path, bearer, cookie)
                if principal is not None:
                    scope[PRINCIPAL] = principal
            if length is not None and length > limit:
                raise PayloadTooLarge(_too_large(path, limit), details={"limit": limit})
        except APIError as exc:
            await _refuse(send, exc)
            return
        await self._counted(scope, receive, send, limit)

    async def _counted(self, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        seen = 0
        tripped = False
        started = False

        async def counted_receive() -> Message:
            nonlocal seen, tripped
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    tripped = True
                    raise _TooLarge
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                if tripped:  # the rest of the body stays unread: end the connection
                    message = {**message, "headers": [*message.get("headers", ()),
                                                      (b"connection", b"close")]}
            await send(message)

        try:
            await self.app(scope, counted_receive, guarded_send)
        except _TooLarge:
            if started:
                raise
            path = scope["path"]
            await _refuse(send, PayloadTooLarge(_too_large(path, limit),
                                                details={"limit": limit}))


def _too_large(path: str, limit: int) -> str:
    what = "uploads" if _UPLOADS.match(path) else "request bodies"
    return f"{what} here are limited to {limit:,} bytes"


async def _authenticate(scope: Scope, path: str, bearer: str | None,
                        cookie_header: str | None) -> auth.Principal | None:
    """Who sends this body, from its headers alone; raises Unauthorized."""
    c = scope["app"].state.ctx
    proxied = PROXY_CALL.match(path)
    if bearer is not None:
        token = auth.bearer(bearer)
        if proxied is not None:
            if not await c.evals.proxy.may_call(proxied.group(1), token,
                                                lambda t: token_principal(c, t)):
                raise Unauthorized(f"this token may not call tools for run {proxied.group(1)}")
            return None
        return await token_principal(c, token)
    session = _cookie(cookie_header)
    if session is not None and await sessions.principal_of(c, session) is not None:
        return None  # the route re-checks it, with the CSRF token it needs
    raise Unauthorized(auth.NO_CREDENTIAL)


def _cookie(header: str | None) -> str | None:
    if not header:
        return None
    for part in header.split(";"):
        name, _, value = part.strip().partition("=")
        if name == sessions.COOKIE:
            return value.strip('"')
    return None


async def _refuse(send: Send, exc: APIError) -> None:
    body = JSONResponse(exc.to_body()).body  # as every other error body is written
    headers: list[Any] = [(b"content-type", b"application/json"),
                          (b"content-length", str(len(body)).encode()),
                          (b"connection", b"close")]
    if exc.status == 401:
        headers.append((b"www-authenticate", b"Bearer"))
    await send({"type": "http.response.start", "status": exc.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
