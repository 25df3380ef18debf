"""Rendering: the Jinja2 environment, its formatting filters, and the page/twin responses.

Every page is one function that builds a plain dict; :func:`twin` registers it twice — as the
HTML page and as ``<path>.json`` — so the JSON twin is by construction exactly the data the
template rendered. Auth is the API's own (:func:`titan.master.api.deps.principal`: a bearer
token or the session cookie); an HTML page without either redirects to the sign-in page,
while a JSON twin answers 401 with the API's error body, like any API route.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from jinja2 import Environment, PackageLoader

from titan.errors import APIError, NotFound, Unauthorized, ValidationFailed
from titan.formats import HOST_HEADER, cut_text, iso
from titan.master.api.deps import API_PREFIX, ctx, principal
from titan.master.auth import sessions
from titan.master.auth import tokens as auth
from titan.master.context import Ctx
from titan.master.scheduling.state import JOB_STATES, TERMINAL
from titan.status import DAG_STATUSES, RUN_STATUSES
from titan.url_paths import quote_ref

STATIC = Path(__file__).parent / "static"
Data = dict[str, Any]
Builder = Callable[[Request, Ctx, auth.Principal], Awaitable[Data]]
OPERATORS = frozenset({"admin", "operator"})


def _static_version() -> str:
    """A digest of the shipped assets: part of their URLs, so a new release is never served
    stale JS from a browser cache."""
    h = hashlib.sha256()
    for path in sorted(STATIC.glob("*")):
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:10]


def int_param(request: Request, name: str, default: int, lo: int, hi: int) -> int:
    raw = request.query_params.get(name)
    if raw in (None, ""):
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValidationFailed(f"{name} must be an integer, got {raw[:40]!r}",
                               details={"field": name}) from None
    if not lo <= value <= hi:
        # A bound no list comes near (2**62, as far as the database counts) read "between 0
        # and 4611686018427387904": say what it means.
        top = f"to {hi:,}" if hi < 10**12 else "up (no list is longer than 2^62)"
        raise ValidationFailed(f"{name} must be a whole number from {lo:,} {top}, got "
                               f"{raw[:40]}", details={"field": name})
    return value



# -- formatting --------------------------------------------------------------------------------
def absolute(ts: float | None) -> str:
    if ts is None:
        return ""
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def ago(ts: float | None, now: float | None = None) -> str:
    """'12 s ago', '3 min ago', 'in 5 min': what the page's JS keeps up to date."""
    if ts is None:
        return "—"
    delta = (now if now is not None else time.time()) - ts
    future, delta = delta < 0, abs(delta)
    if delta < 5:
        return "just now"
    for size, unit in ((86400, "d"), (3600, "h"), (60, "min"), (1, "s")):
        if delta >= size:
            text = f"{int(delta // size)} {unit}"
            return f"in {text}" if future else f"{text} ago"
    return "just now"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    m, s = divmod(int(seconds), 60)
    if m < 60:
        return f"{m}m {s:02d}s"
    h, m = divmod(m, 60)
    return f"{h}h {m:02d}m"


def size(n: int | None) -> str:
    if n is None:
        return "—"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


def thousands(n: int | None) -> str:
    """A count as people read one: "1,234,567" (as ``plural`` and the pages' scripts write
    it); "—" for none. Not named ``count``: that is Jinja's own ``length``."""
    return "—" if n is None else f"{n:,}"


def plural(n: int | None, word: str) -> str:
    """A count and its noun, as the pages' scripts write one (Titan.plural): "1 action",
    "1,204 actions"."""
    n = n or 0
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def dag_href(name: str, run: int | None = None) -> str:
    """The visualizer's URL for a DAG run (names may hold '?', '%', spaces: quoted)."""
    href = "/dags/DAG-" + quote(name, safe="")
    return f"{href}?run={run}" if run is not None else href


def qs(params: dict[str, Any]) -> str:
    """A query string of the non-empty parameters (pager links keep the filters)."""
    return "?" + urlencode({k: v for k, v in params.items() if v not in (None, "")})


env = Environment(loader=PackageLoader("titan.dashboard", "templates"), autoescape=True,
                  trim_blocks=True, lstrip_blocks=True)
# ``ref``: a key or name as one path segment of an API address (``/`` and a segment of dots
# escaped, which urlencode left alone: the key ".." linked to the key listing).
env.filters.update(iso=iso, absolute=absolute, ago=ago, duration=duration, size=size,
                   ref=quote_ref, plural=plural, cut=cut_text, thousands=thousands)
env.globals.update(dag_href=dag_href, qs=qs, JOB_STATES=JOB_STATES, TERMINAL_STATES=TERMINAL,
                   DAG_STATUSES=DAG_STATUSES, RUN_STATUSES=RUN_STATUSES,
                   static_version=_static_version())


# -- responses ---------------------------------------------------------------------------------
R = TypeVar("R", bound=Response)


def _security_headers(request: Request, response: R) -> R:
    # The dashboard needs nothing from elsewhere: a strict policy makes any markup injection
    # that slipped past escaping inert (no inline script, no eval, no foreign source).
    # connect-src names the WebSocket origin: older browsers do not count ws: as 'self'.
    host = request.headers.get("host", "")
    ws = "wss" if request.url.scheme == "https" else "ws"
    # The Host header as a source only when it is one (a master open to any name checks
    # nothing else about it): a header such as "h *; script-src *" must not widen the policy.
    socket_source = f" {ws}://{host}" if HOST_HEADER.fullmatch(host) else ""
    response.headers["Content-Security-Policy"] = (
        f"default-src 'self'; script-src 'self'; style-src 'self'; "
        f"img-src 'self' data:; "
        f"connect-src 'self'{socket_source}; frame-ancestors 'none'; base-uri 'none'; "
        f"form-action 'self'")
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["Cache-Control"] = "no-store"
    return response


def chrome(request: Request, p: auth.Principal | None, page: str) -> Data:
    """What every template needs besides its data: who is signed in, and how. Never the
    session's write key: a cookie sent to another port of the host fetches any page
    (master/auth/sessions.py)."""
    cookie = request.cookies.get(sessions.COOKIE)
    role = p.role if p is not None else ""
    return {"page": page, "role": role, "user": (p.name or p.role) if p else "",
            "can_operate": role in OPERATORS, "signed_in_by_cookie": cookie is not None}


def html(request: Request, template: str, data: Data, page: str,
         p: auth.Principal | None, status: int = 200) -> HTMLResponse:
    body = env.get_template(template).render(d=data, c=chrome(request, p, page))
    return _security_headers(request, HTMLResponse(body, status_code=status))


def wants_page(request: Request) -> bool:
    """Whether an error on this request is answered with a page rather than JSON: always on
    a dashboard page's route; on a path no route matched, when a browser navigates there
    (it asks for text/html) outside the API and the pages' .json twins."""
    route = request.scope.get("route")
    if route is not None:
        return getattr(route, "response_class", None) is HTMLResponse
    path = request.url.path
    return (not path.startswith(API_PREFIX) and not path.endswith(".json")
            and "text/html" in request.headers.get("accept", ""))


async def error_page(request: Request, error: APIError) -> Response:
    """The page an error is shown as; signing in is the answer to a 401."""
    if isinstance(error, Unauthorized):
        return login_redirect(request)
    p = getattr(request.state, "principal", None)
    if p is None:
        # No page's route ran (an unknown address, a job id that is not a number): who is
        # signed in is still worth the header's user and Sign out, as on every other page.
        try:
            p = await principal(request)
        except Exception:  # noqa: BLE001 - no session, or none readable: the page without
            p = None
    page = getattr(request.state, "page", "")
    return html(request, "error.html", {"error": error.to_body()["error"]}, page, p,
                status=error.status)


def login_redirect(request: Request) -> RedirectResponse:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse("/login?next=" + quote(target, safe=""), status_code=303)


async def reader(request: Request) -> auth.Principal:
    p = await principal(request)
    auth.check_role(p, auth.READ, "read")
    return p


def twin(router: APIRouter, paths: list[str], template: str, page: str) -> Callable[[Builder], Builder]:
    """Register ``builder`` as the HTML page at each of ``paths`` and its JSON twin at the
    first path + ``.json`` (declared first: ``{name}.json`` must win over ``{name}``)."""

    def register(builder: Builder) -> Builder:
        async def as_json(request: Request) -> Response:
            p = await reader(request)
            try:
                return JSONResponse(await builder(request, ctx(request), p))
            except NotFound as missing:
                # ``/runs/r1.json``: no run ``r1`` — but a run named ``r1.json`` has its page
                # here (its twin is ``r1.json.json``), rather than at no address at all. The
                # suffix is the last parameter's: ``/evaluations/e/tasks/t.json`` is task
                # ``t.json``'s page when evaluation e has no task ``t``.
                params = dict(request.scope.get("path_params") or {})
                name = next(reversed(params), None)
                if name is None or not isinstance(params[name], str):
                    raise  # a job's page takes a number: no name of it ends in .json
                request.scope["path_params"] = params | {name: params[name] + ".json"}
                try:
                    return await as_html(request)
                except Exception:  # noqa: BLE001 - no such page either (a job's id is a number)
                    request.scope["path_params"] = params
                    raise missing from None

        async def as_html(request: Request) -> Response:
            # An error raised here is drawn by the app's one error handler (error_page): it
            # needs to know the page and who asked, for the navigation around the message.
            request.state.page = page
            p = request.state.principal = await reader(request)
            data = await builder(request, ctx(request), p)
            return html(request, template, data, page, p)

        router.add_api_route(paths[0] + ".json", as_json, methods=["GET"], include_in_schema=False)
        for path in paths:
            router.add_api_route(path, as_html, methods=["GET"], include_in_schema=False,
                                 response_class=HTMLResponse)
        return builder

    return register
