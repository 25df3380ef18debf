"""Signing in and out of the dashboard.

``titan up`` prints a one-click link, ``/login?token=...&next=/``, Jupyter-style: the token
is exchanged for the session cookie, and the browser goes on at once, so the token leaves the
address bar after one hop (the browser's history keeps the link: docs/security.md). Without a
token the page is a small form.

The reply to a sign-in is the one page that carries the session's write key
(``master/auth/sessions.py``): a short page whose script (``static/live.js``) keeps the key in
the origin's ``localStorage`` — every tab of the dashboard reads it there, and it outlives a
browser restart as the cookie does — and replaces itself with ``next``. No other page has
it, so a cookie sent to another port of the host fetches pages that give no way to write.
Signing in again in the same browser ends the session it held before (its key may be what
the browser lost). ``next`` is honoured only as a path on this site: an open redirect would let a crafted
link bounce a signed-in user anywhere.

A sign-in another page starts (a link or a form on it: the browser says so in
``Sec-Fetch-Site``, or in ``Origin``) is not done at once: it would sign the visitor in with the
other site's token, silently (login CSRF). A link asks the person to confirm on this site's
own form, filled in; a form posted from elsewhere is refused.
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from titan.dashboard.render import html
from titan.errors import Unauthorized
from titan.master.api.deps import ctx
from titan.master.auth import sessions

router = APIRouter()
MAX_FORM = 16 * 1024


def safe_next(target: str | None) -> str:
    """A local path to go to after signing in; anything else becomes '/'."""
    if (not target or not target.startswith("/") or target.startswith("//")
            or "\\" in target or any(ch < " " or ch == "\x7f" for ch in target)):
        return "/"
    return target


async def _form(request: Request) -> dict[str, str]:
    # Parsed here: Starlette's form parser needs python-multipart, which Titan does not ship.
    body = await request.body()
    if len(body) > MAX_FORM:
        return {}
    fields = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
    return {k: v[0] for k, v in fields.items()}


def _form_page(request: Request, next_: str, error: str | None = None,
               status: int = 200, token: str = "", ended: bool = False,
               code: str = "") -> Response:
    return html(request, "login.html", {"next": next_, "error": error, "token": token,
                                        "code": code, "ended": ended}, "login", None,
                status=status)


def _from_another_site(request: Request, *, posted: bool) -> bool:
    """Whether another page started this sign-in. Browsers say where a request comes from
    (``Sec-Fetch-Site``): only this dashboard's own pages (``same-origin``) or a person
    (``none``: a link typed, pasted or opened from a terminal) may sign in — ``same-site``
    is any other port of 127.0.0.1, or any host of the company's domain. A browser that does
    not say sends ``Origin`` with a form, which must then be this dashboard's."""
    site = request.headers.get("sec-fetch-site")
    if site is not None:
        return site not in ("same-origin", "none")
    origin = request.headers.get("origin")
    if not posted or origin is None:
        return False  # a link opened by hand from an old browser, or a client that is no browser
    # Host and port only: behind a proxy that ends TLS the scheme seen here is not the page's.
    return urlsplit(origin).netloc != request.headers.get("host", "")


async def _sign_in(request: Request, token: str, next_: str, code: str | None = None) -> Response:
    """Sign in with ``token``, or with ``code``, a one-time code made for one
    (``titan dashboard --open``: auth/sign_in_codes.py)."""
    lasting = sessions.outlives_restarts(request.url.scheme, request.url.hostname)
    c = ctx(request)
    try:
        if code:
            _, cookie = await sessions.login_with_code(c, code, lasting=lasting)
        else:
            _, cookie = await sessions.login(c, token, lasting=lasting)
    except Unauthorized as exc:
        return _form_page(request, next_, exc.message, status=401)
    previous = request.cookies.get(sessions.COOKIE)
    if previous:
        await sessions.logout(c, previous)
    response = html(request, "signed_in.html", {"next": next_,
                                                "write_key": sessions.write_key(c, cookie)},
                    "login", None)
    sessions.set_cookie(response, cookie, secure=request.url.scheme == "https")
    return response


@router.get("/login", include_in_schema=False)
async def login_page(request: Request) -> Response:
    next_ = safe_next(request.query_params.get("next"))
    token = request.query_params.get("token")
    code = request.query_params.get("code")
    if (token is not None or code) and _from_another_site(request, posted=False):
        # Not used here: a page elsewhere may not spend a code (or a token) on the visitor's
        # behalf. The form asks first, and posts it from this site.
        return _form_page(request, next_, "This sign-in link was opened from another site. "
                          "Sign in only if you opened it yourself.", token=token or "",
                          code=code or "")
    if code:
        return await _sign_in(request, "", next_, code=code)
    if token is not None:
        return await _sign_in(request, token, next_)
    # Sent here with a cookie of this master's that no longer opens anything: say why, once.
    cookie = request.cookies.get(sessions.COOKIE)
    ended = bool(cookie) and await sessions.ended_here(ctx(request), cookie or "")
    response = _form_page(request, next_, ended=ended)
    if ended:
        sessions.clear_cookie(response)
    return response


@router.post("/login", include_in_schema=False)
async def login_form(request: Request) -> Response:
    form = await _form(request)
    if _from_another_site(request, posted=True):
        return _form_page(request, safe_next(form.get("next")), "Sign in from this page: a "
                          "form on another site may not sign you in.", status=403)
    return await _sign_in(request, form.get("token", ""), safe_next(form.get("next")),
                          code=form.get("code") or None)


@router.post("/logout", include_in_schema=False)
async def logout(request: Request) -> Response:
    cookie = request.cookies.get(sessions.COOKIE)
    if cookie is not None:
        # The write key, as every change: a cookie another port of the host was sent does not
        # sign the person out.
        await sessions.check_csrf(ctx(request), request, cookie, request.method)
        await sessions.logout(ctx(request), cookie)
    response = RedirectResponse("/login", status_code=303)
    sessions.clear_cookie(response)
    return response
