"""The master's outermost guards: HEAD answered as GET without its body; the Host header and
the URL checked before any route, and every answer marked ``X-Content-Type-Options: nosniff``.

Before routing, so a refusal is answered in the format of the route the path would reach
(a dashboard page's error page, JSON elsewhere: the error handlers' one rule,
:func:`titan.dashboard.render.wants_page`).
"""

from __future__ import annotations

from urllib.parse import unquote_to_bytes

from fastapi import Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Match, Route, WebSocketRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from titan.dashboard import render
from titan.errors import APIError, NotFound, ValidationFailed
from titan.formats import HOST_HEADER
from titan.master.api.downloads import HEAD_ONLY
from titan.master.config import MasterConfig

_LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}
NOSNIFF = (b"x-content-type-options", b"nosniff")


class HeadAsGet:
    """Answer ``HEAD`` on every ``GET`` route as ``GET`` would, headers only (RFC 9110 section
    9.3.2): FastAPI's routes take only the methods they name, so HEAD on ``/api/v1/health``
    or a download was ``405`` while ``HEAD /api/v1/openapi.json`` (a Starlette route) was 200.

    The request goes on as a GET marked :data:`~titan.master.api.downloads.HEAD_ONLY` in its
    scope (a download then reads none of its blob) and every body chunk of the answer is
    dropped; its headers, ``Content-Length`` included, are the GET's. A route without GET
    still answers ``405`` (its ``Allow`` does not name HEAD)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return

        async def headers_only(message: Message) -> None:
            if message["type"] == "http.response.body" and message.get("body"):
                message = {**message, "body": b""}
            await send(message)

        await self.app({**scope, "method": "GET", HEAD_ONLY: True}, receive, headers_only)


class HostCheck:
    """Refuse requests whose Host header names another site (DNS-rebinding defence), any
    whose URL carries a NUL character, and any with two Authorization headers; mark every
    answer ``nosniff``.

    A master bound to loopback answers only to loopback names; bound to all interfaces it
    answers to any name (the operator chose exposure; tokens still apply). No name, id, key
    or filter may hold a NUL: PostgreSQL's text refuses it (a 500 deep in a query), SQLite's
    keeps it (a row no other database could hold), so it is refused here, for every route.
    A browser must take every answer as the type it says, not guess one from its bytes: a
    job's log (``logs.txt``), a run export or a downloaded file holding HTML is text, not a
    page (the dashboard's pages said so; ``logs.txt`` did not)."""

    def __init__(self, app: ASGIApp, config: MasterConfig) -> None:
        self.app = app
        self.open = config.listens_everywhere
        self.allowed = _LOOPBACK | {config.host} | set(config.allowed_hosts)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            send = _nosniff(send)
        if scope["type"] in ("http", "websocket") and not self.open:
            hosts = [v.decode("latin-1") for k, v in scope.get("headers", ()) if k == b"host"]
            host = hosts[0] if hosts else ""
            name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
            # Two Host lines are refused whatever they say (RFC 9112 section 3.2): which one a
            # proxy or parser believes differs (h11 refused them itself, httptools does not).
            # A port that is not a number is refused too: the header is echoed into the
            # dashboard's Content-Security-Policy.
            if len(hosts) > 1 or host and (name not in self.allowed
                                           or not HOST_HEADER.fullmatch(host)):
                if scope["type"] == "http":
                    what = f"Host {host!r} is not allowed" if len(hosts) < 2 else \
                        "a request may carry one Host header"
                    body = APIError(what, code="bad_host").to_body()
                    # Closed, so a body the request announced is never received.
                    await JSONResponse(body, status_code=400, headers={"Connection": "close"})(
                        scope, receive, send)
                else:  # refused before the handshake: the server answers HTTP 403, not a 500
                    await send({"type": "websocket.close", "code": 1008})
                return
        if scope["type"] == "http" and scope["path"].endswith("/") and scope["path"] != "/":
            answer = _trailing_slash(scope)
            if answer is not None:
                await answer(scope, receive, send)
                return
        if scope["type"] == "websocket" and _credentials(scope) > 1:
            await send({"type": "websocket.close", "code": 1008})  # (as for two Hosts)
            return
        if scope["type"] == "http" and (problem := _url_problem(scope) or _header_problem(scope)):
            # A browser at a dashboard address (/store?prefix=%00) gets the error page, as
            # for any other bad filter; the API and programs get the JSON body.
            request = Request(_with_route(scope), receive)
            response = await render.error_page(request, problem) \
                if render.wants_page(request) else \
                JSONResponse(problem.to_body(), status_code=400)
            response.headers["Connection"] = "close"
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


#: Paths of programs, not of pages: a wrong one is an error body, never a redirect.
_API_PATHS = ("/api/", "/mcp", "/v1/")


def _trailing_slash(scope: Scope) -> Response | None:
    """The answer to a path that is a route's with a '/' added (None: another path): a 404
    naming the route on the API, a redirect to it on a page. Starlette redirected with an
    absolute ``http://`` Location (wrong behind TLS or a proxy), while ``/api/v1/dags/``
    reached the route of one DAG and answered "no DAG ''"."""
    path = scope["path"]
    bare = path.rstrip("/")
    routes = [r for r in getattr(scope.get("app"), "routes", ()) if isinstance(r, BaseRoute)]
    as_sent = any(r.matches(scope)[0] != Match.NONE for r in routes)
    without = {**scope, "path": bare}
    # A path a route takes is left to it (/dags/x/ is the DAG "x/", PUT /files/ a file with
    # no name), unless the path without the slash is a fixed route of the same method
    # (GET /dags/ is GET /dags, not the DAG '').
    if not any((match := r.matches(without)[0]) != Match.NONE and (
            not as_sent or match == Match.FULL and not getattr(r, "param_convertors", None))
            for r in routes):
        return None
    if not path.startswith(_API_PATHS):
        query = scope.get("query_string", b"").decode("latin-1")
        return RedirectResponse(bare + (f"?{query}" if query else ""), status_code=307)
    err = NotFound(f"no route {path}: the API's paths end without '/' ({bare})",
                   details={"path": bare})
    return JSONResponse(err.to_body(), status_code=404)


def upgrade_required(routes: list[BaseRoute]) -> list[Route]:
    """For each WebSocket route, an HTTP route of its path answering ``426 Upgrade Required``
    with the error body (a plain GET of ``/api/v1/events`` was a bare 404 "Not Found")."""

    async def refuse(request: Request) -> Response:
        err = APIError(f"{request.url.path} is a WebSocket: open it with a WebSocket client "
                       "(ws:// or wss://, Upgrade: websocket)", code="upgrade_required",
                       status=426)
        return JSONResponse(err.to_body(), status_code=426,
                            headers={"Upgrade": "websocket", "Connection": "Upgrade"})

    return [Route(r.path, refuse, methods=["GET"], include_in_schema=False)
            for r in routes if isinstance(r, WebSocketRoute)]


def _with_route(scope: Scope) -> Scope:
    """``scope`` with the route its path would reach (the middleware runs before routing), so
    a refusal is answered in that route's format: a dashboard page's with its error page."""
    app = scope.get("app")
    for route in getattr(getattr(app, "router", None), "routes", ()):
        if route.matches(scope)[0] == Match.FULL:
            return {**scope, "route": route}
    return scope


def _url_problem(scope: Scope) -> ValidationFailed | None:
    """What makes a request's URL unfit for any route: a NUL, or a percent-escape that is not
    UTF-8 (the server decodes ``%FF`` to U+FFFD, so ``/store/values/%FF`` addressed the key
    "\ufffd", and ``?agent=%FF`` filtered by it)."""
    query = scope.get("query_string", b"")
    if "\x00" in scope["path"] or b"%00" in query:
        return ValidationFailed("a URL may not contain NUL characters (%00)")
    raw = scope.get("raw_path") or b""
    for part, decoded in ((raw, "\ufffd" in scope["path"]), (query, b"%" in query)):
        if decoded:  # only then is there anything to check
            try:
                unquote_to_bytes(part).decode("utf-8")
            except UnicodeDecodeError:
                return ValidationFailed("a URL's percent-escapes must encode UTF-8 text (%FF "
                                        "does not)")
    return None


def _credentials(scope: Scope) -> int:
    return sum(1 for k, _ in scope.get("headers", ()) if k == b"authorization")


def _header_problem(scope: Scope) -> ValidationFailed | None:
    """Two Authorization headers: the first was used, where a proxy or a log may take the
    second (or join them); which one is meant is not for the master to guess."""
    if _credentials(scope) > 1:
        return ValidationFailed("a request may carry one Authorization header",
                                details={"header": "Authorization"})
    return None


def _nosniff(send: Send) -> Send:
    """``send`` with ``nosniff`` added to the response's headers where it is not set yet."""
    async def marked(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = list(message.get("headers") or ())
            if not any(k.lower() == NOSNIFF[0] for k, _ in headers):
                message = {**message, "headers": [*headers, NOSNIFF]}
        await send(message)
    return marked
