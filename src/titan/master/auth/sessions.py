"""Dashboard sessions: sign in once with a token, then a cookie that reads; the write key (CSRF
token) that changes, handed out only at sign-in.

The cookie holds no secret of its own: ``<token id>.<session id>.<expiry>.<mac>``, an HMAC
with the master's secret (kept in the database, so any master sharing it accepts the cookie).
Every request re-checks that the token it came from is still live and that the session was
not signed out (both cached for a few seconds; the master that signs a session out forgets it
at once, others within the cache's lifetime), so revoking a token ends its sessions too, and
signing out ends the session for good even if the cookie was copied.

**A session a squatter could take ends with the master process that signed it in.** While a
master is down, anyone on the host can listen on its dashboard port, and a browser sends the
cookie to whatever answers there (a page loaded, an open tab's live socket reconnecting on its
own): a cookie taken that way would be the session itself, for 30 days, once the master is
back. That is every session signed in over plain HTTP, and over HTTPS on a loopback address
too (``127.0.0.1``, ``localhost``: browsers count plain HTTP there as secure, and send even a
``Secure`` cookie to ``http://127.0.0.1:<port>``). Such a session is also signed with a key
this process drew at start and kept only in memory (its session id says so: ``p…``): after a
restart, or on another master sharing the database, it is refused and the person signs in
again (``titan dashboard`` prints the link). Over HTTPS on a host name, where nobody else can
answer for the master, a session lasts its 30 days across restarts and masters.

A browser sends cookies with requests other sites make it send, and to every port of the
host (``SameSite=Strict`` counts every port of ``127.0.0.1`` as the same site): a job's
service, another local user's dev server, any page on another port the signed-in person opens
gets the cookie. So the cookie reads, and nothing more. A request authenticated by it that
changes state must also carry the session's **write key** (the CSRF token, in the
``X-CSRF-Token`` header or a form's ``csrf_token`` field): an HMAC of the cookie under a key of
its own (:func:`write_key`), which the cookie does not give and no page carries. Only the
sign-in reply hands it out (``dashboard/login.py``), and that page keeps it in the browser's
storage for the dashboard's origin — scheme, host *and port*, which browsers do keep apart —
from where the dashboard's script sends it. A cookie taken by another port fetches pages and
reads the API, but cannot mint a token, cancel a job or sign the session out. The key of a
session bound to its master process (above) is bound to it too.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
import time
from typing import TYPE_CHECKING
from urllib.parse import parse_qs

from starlette.requests import HTTPConnection, Request
from starlette.responses import Response

from titan.errors import Forbidden, Unauthorized
from titan.master.auth import tokens as auth

if TYPE_CHECKING:
    from titan.master.context import Ctx

COOKIE = "titan_session"
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"
LIFETIME = 30 * 24 * 3600.0
DASHBOARD_ROLES = frozenset({"admin", "operator", "viewer"})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: What a cookie-authenticated write without the session's write key is told.
NO_WRITE_KEY = ("this change needs the session's write key, which only the browser that "
                "signed in holds (in its storage for the dashboard's address): sign in again "
                "to make changes from here")


#: How a session id begins when the session is bound to the master process (above).
PROCESS_BOUND = "p"


def outlives_restarts(scheme: str, host: str | None) -> bool:
    """Whether a session signed in at ``scheme://host`` may outlive this master process:
    only over HTTPS, and not on a loopback address (where browsers send the cookie over plain
    HTTP too)."""
    if scheme != "https" or not host:
        return False
    name = host.strip("[]").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return False
    try:
        return not ipaddress.ip_address(name).is_loopback
    except ValueError:
        return True  # a host name


def _key(ctx: Ctx, session_id: str, use: bytes = b"titan-session") -> bytes:
    assert ctx.engine.secret is not None
    if session_id.startswith(PROCESS_BOUND):
        return hashlib.sha256(use + b"-process:" + ctx.process_key + b":"
                              + ctx.engine.secret.encode()).digest()
    return hashlib.sha256(use + b":" + ctx.engine.secret.encode()).digest()


def _mac(key: bytes, message: str) -> str:
    return hmac.new(key, message.encode(), hashlib.sha256).hexdigest()[:40]


def _principal(row: dict[str, object] | None) -> auth.Principal | None:
    if row is None or row["revoked_at"] is not None or row["role"] not in DASHBOARD_ROLES:
        return None
    return auth.Principal(role=str(row["role"]), token_id=str(row["id"]), name=str(row["name"]))


async def login(ctx: Ctx, token: str, *, lasting: bool) -> tuple[auth.Principal, str]:
    """Check a raw token and open a session for it: (principal, cookie value). Unless
    ``lasting`` (:func:`outlives_restarts`), the session ends with this master process."""
    token = token.strip()
    row = await ctx.engine.read(lambda tx: tx.token_by_hash(auth.token_hash(token))) if token else None
    return _opened(ctx, row, "unknown or revoked token", lasting)


async def login_with_code(ctx: Ctx, code: str, *,
                          lasting: bool) -> tuple[auth.Principal, str]:
    """As :func:`login`, with a one-time code (auth/sign_in_codes.py) for the token."""
    token_id = ctx.sign_in_codes.redeem(code.strip())
    if token_id is None:
        raise Unauthorized("this sign-in link was used already or is more than a minute old: "
                           "run `titan dashboard --open` again, or sign in with a token")
    row = await ctx.engine.read(lambda tx: tx.token_by_id(token_id))
    return _opened(ctx, row, "the token this link was made for has been revoked", lasting)


def _opened(ctx: Ctx, row: dict[str, object] | None, unknown: str,
            lasting: bool) -> tuple[auth.Principal, str]:
    principal = _principal(row)
    if principal is None:
        if row is not None and row["revoked_at"] is None:
            raise Unauthorized(f"a {row['role']} token cannot sign in to the dashboard")
        raise Unauthorized(unknown)
    expires = int(time.time() + LIFETIME)
    session_id = ("" if lasting else PROCESS_BOUND) + secrets.token_hex(12)
    body = f"{principal.token_id}.{session_id}.{expires}"
    return principal, f"{body}.{_mac(_key(ctx, session_id), body)}"


def _verified(ctx: Ctx, cookie: str) -> tuple[str, str, int] | None:
    """(token id, session id, expiry) of a cookie we signed that has not expired."""
    try:
        token_id_s, session_id, expires_s, mac = cookie.split(".")
        expires = int(expires_s)
    except ValueError:
        return None
    body = f"{token_id_s}.{session_id}.{expires_s}"
    if not auth.matches(mac, _mac(_key(ctx, session_id), body)) or expires < time.time():
        return None
    return token_id_s, session_id, expires


async def principal_of(ctx: Ctx, cookie: str) -> auth.Principal | None:
    """The principal a session cookie stands for, or None when it is forged, expired, signed
    out, or its token was revoked."""
    found = _verified(ctx, cookie)
    if found is None:
        return None
    token_id_s, session_id, _ = found
    ended_key = "session-ended:" + session_id
    hit, ended = ctx.tokens.get(ended_key)
    if not hit:
        ended = await ctx.engine.read(lambda tx: tx.session_ended(session_id))
        ctx.tokens.put(ended_key, ended)
    if ended:
        return None
    cache_key = "session:" + token_id_s
    cached: auth.Principal | None
    hit, cached = ctx.tokens.get(cache_key)
    if not hit:
        cached = _principal(await ctx.engine.read(lambda tx: tx.token_by_id(token_id_s)))
        ctx.tokens.put(cache_key, cached)
    return cached


async def ended_here(ctx: Ctx, cookie: str) -> bool:
    """Whether ``cookie`` is a session of this master's tokens that no longer opens anything
    (signed out, expired, revoked, or signed in to this master's previous process). A cookie
    of another master on the same host — browsers keep one per host, whatever the port — is
    not: it is left alone."""
    token_id = cookie.split(".", 1)[0]
    if not token_id or await principal_of(ctx, cookie) is not None:
        return False
    return await ctx.engine.read(lambda tx: tx.token_by_id(token_id)) is not None


async def logout(ctx: Ctx, cookie: str) -> None:
    """End the session server-side: the cookie stops working here at once, even where a copy
    of it survives the browser's (on other masters sharing the database, within seconds)."""
    found = _verified(ctx, cookie)
    if found is None:
        return
    _, session_id, expires = found
    now = time.time()
    await ctx.engine.run(lambda tx: tx.end_session(session_id, float(expires), now))
    ctx.tokens.put("session-ended:" + session_id, True)
    ctx.hub.revoked()  # its parked long-polls end now


def write_key(ctx: Ctx, cookie: str) -> str:
    """The write key of the session ``cookie`` opens: what its requests that change state
    must send besides (module docstring). Derived apart from the cookie's own MAC, so holding
    the cookie gives nothing of it; handed out only by the sign-in reply."""
    parts = cookie.split(".")
    session_id = parts[1] if len(parts) == 4 else ""
    return _mac(_key(ctx, session_id, b"titan-write-key"), cookie)


async def check_csrf(ctx: Ctx, conn: HTTPConnection, cookie: str, method: str) -> None:
    """A cookie-authenticated request that changes state must carry the session's write key."""
    if method in SAFE_METHODS:
        return
    sent = conn.headers.get(CSRF_HEADER)
    if (sent is None and isinstance(conn, Request)
            and conn.headers.get("content-type", "").startswith("application/x-www-form-urlencoded")):
        # A plain HTML form. Parsed here rather than with request.form(), which would need
        # python-multipart; the body stays cached for the route to read again.
        body = await conn.body()
        if len(body) <= 1 << 20:
            values = parse_qs(body.decode("latin-1")).get(CSRF_FIELD)
            sent = values[0] if values else None
    if not sent or not auth.matches(sent, write_key(ctx, cookie)):
        raise Forbidden(NO_WRITE_KEY, code="csrf_failed")


def same_origin(conn: HTTPConnection) -> bool:
    """A browser always sends Origin on a WebSocket handshake; a cookie-authenticated socket
    opened by another site's page is refused (cross-site WebSocket hijacking)."""
    origin = conn.headers.get("origin")
    if origin is None:
        return True  # not a browser
    # The whole origin, scheme included: a page served over https (another server on this
    # host and port, behind a proxy) is not the plain-http dashboard, and vice versa.
    scheme = {"ws": "http", "wss": "https"}.get(conn.url.scheme, conn.url.scheme)
    return origin.lower() == f"{scheme}://{conn.headers.get('host', '')}".lower()


def set_cookie(response: Response, cookie: str, secure: bool = False) -> None:
    response.set_cookie(COOKIE, cookie, max_age=int(LIFETIME), httponly=True, samesite="strict",
                        secure=secure, path="/")


def clear_cookie(response: Response) -> None:
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
