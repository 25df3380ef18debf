"""The master's answer to an error no handler took: 503 while the database is away (one warning
line, then a count every 30 s), 503 statement_cancelled when it cancelled the statement, 500 database_corrupt while its file is damaged (one error line
every 30 s), else a 500 with one traceback; nothing reaches the server.

Starlette runs an ``Exception`` handler from its outermost ``ServerErrorMiddleware``, which sends
the handler's answer and then raises the error again, for the server to log: uvicorn's
``Exception in ASGI application`` with the whole traceback, after the handler's own line. A
PostgreSQL outage logged that (two psycopg/SQLAlchemy tracebacks) on every refused read. This
middleware sits inside it and ends every error here: the expected one (the database away) as
the warning it is, the unexpected one with its traceback, once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from fastapi import Request
from fastapi.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from titan.errors import (
    APIError,
    BlobStoreUnavailable,
    DatabaseCorrupt,
    DatabaseUnavailable,
    MasterStopping,
    statement_cancelled,
)

log = logging.getLogger("titan.master")

Answer = Callable[[Request, APIError], Awaitable[Response]]

#: Where the backup and restore procedure is written down.
RESTORE_DOCS = "docs/deployment.md#backup-and-restore"
#: While the database stays away, refused requests are counted in one line this often.
AWAY_EVERY = 30.0


class ErrorGuard:
    """Answer what escaped every handler, log it once, and raise nothing to the server.

    ``answer`` turns an :class:`APIError` into the response the app gives (the error page on a
    dashboard page, JSON elsewhere). A request refused because the database is away answers
    ``503 database_unavailable`` with ``Retry-After: 1``; the first such refusal of an outage
    is logged as ``database unavailable on GET /path: ...``, the next ones are counted and said
    at most every :data:`AWAY_EVERY` seconds (the writer logs the outage's start and end:
    ``titan.storage.writer``). Anything else is a bug: ``internal error on GET /path`` with its
    traceback, and a 500. An error after the answer began cannot change it: it is logged the
    same way and the connection ends there."""

    def __init__(self, app: ASGIApp, answer: Answer) -> None:
        self.app = app
        self.answer = answer
        self._away_said = 0.0  # monotonic time the last "unavailable" line was logged
        self._away_quiet = 0  # refusals since then, not logged one by one
        self._last_refusal = 0.0
        self._corrupt_said = 0.0  # monotonic time the last "corrupt" line was logged
        self._corrupt_failed = 0
        self._cut = 0  # requests cut by the server's stop (said once)
        self._cancel_said = -60.0  # monotonic time a cancelled statement was last logged

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def watched(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, watched)
        except asyncio.CancelledError:
            if not self._stopping(scope):
                raise
            # Cancelled by the server at the end of a graceful shutdown: a request still
            # waiting then (a write held by an unwritable database) was one "Exception in
            # ASGI application" traceback each (a QA pass). Answered, counted, not raised.
            self._cut += 1
            if self._cut == 1:
                log.warning("stopping: requests still waiting were answered 503 "
                            "master_stopping (their writes may or may not have committed)")
            if not started:
                request = Request(scope, receive)
                response = await self.answer(request, MasterStopping(
                    "this Titan master stopped before this request was answered; what it "
                    "wrote may or may not have been committed: check, then ask again (the "
                    "next master, or this one restarted, answers)"))
                await response(scope, receive, send)
        except Exception as exc:  # noqa: BLE001 - the last place an error can be answered
            request = Request(scope, receive)
            corrupt = self._corrupt(scope, exc)
            if corrupt is not None:
                self._say_corrupt(request, corrupt)
                err: APIError = DatabaseCorrupt(
                    f"the master's database is corrupt ({corrupt}): stop the master and "
                    f"restore the database from a backup ({RESTORE_DOCS})")
            elif (cancelled := self._cancelled(scope, exc)) is not None:
                err = statement_cancelled(cancelled)
                now = time.monotonic()
                if now - self._cancel_said >= 60:  # the operator's to change: a line a minute
                    self._cancel_said = now
                    log.warning("%s %s: %s", request.method, request.url.path, err.message)
            elif self._database_away(scope, exc):
                self._say_away(request, exc)
                err = DatabaseUnavailable(
                    "the database is unavailable for now; try again shortly")
            elif started and isinstance(exc.__cause__, APIError):
                # Said on purpose after the answer began (Starlette re-raises it so): a blob
                # store that went away in the middle of a download. Not a bug; the store said
                # its outage on the log (storage/blobs/outage.py).
                said = exc.__cause__
                log.log(logging.DEBUG if isinstance(said, BlobStoreUnavailable) else
                        logging.WARNING, "%s %s: answer cut short: %s", request.method,
                        request.url.path, said.message)
                return
            else:
                log.exception("internal error on %s %s", request.method, request.url.path)
                err = APIError(f"internal error: {exc!r}", code="internal_error", status=500)
            if started:
                return  # the server closes the connection: the answer cannot be completed
            response = await self.answer(request, err)
            if isinstance(err, DatabaseUnavailable):
                response.headers["Retry-After"] = "1"
            await response(scope, receive, send)

    @staticmethod
    def _stopping(scope: Scope) -> bool:
        app = scope.get("app")
        ctx = getattr(getattr(app, "state", None), "ctx", None)
        return ctx is not None and bool(ctx.engine.stopping)

    @staticmethod
    def _database_away(scope: Scope, exc: Exception) -> bool:
        app = scope.get("app")
        ctx = getattr(getattr(app, "state", None), "ctx", None)
        return ctx is not None and bool(ctx.storage.unavailable(exc))

    @staticmethod
    def _cancelled(scope: Scope, exc: Exception) -> str | None:
        app = scope.get("app")
        ctx = getattr(getattr(app, "state", None), "ctx", None)
        return ctx.storage.cancelled(exc) if ctx is not None else None

    @staticmethod
    def _corrupt(scope: Scope, exc: Exception) -> str | None:
        app = scope.get("app")
        ctx = getattr(getattr(app, "state", None), "ctx", None)
        return ctx.storage.corrupt(exc) if ctx is not None else None

    def _say_corrupt(self, request: Request, said: str) -> None:
        """One error line (no traceback: nothing in the master to debug), then a count of
        the requests it failed every AWAY_EVERY seconds."""
        now = time.monotonic()
        self._corrupt_failed += 1
        if now - self._corrupt_said < AWAY_EVERY:
            return
        first = not self._corrupt_said
        self._corrupt_said = now
        log.error("the database is corrupt (%s, on %s %s; %d request(s) failed on it%s): stop "
                  "the master and restore the database from a backup, see %s", said,
                  request.method, request.url.path, self._corrupt_failed,
                  "" if first else " so far", RESTORE_DOCS)

    def _say_away(self, request: Request, exc: Exception) -> None:
        """One line at an outage's first refusal, then one every AWAY_EVERY s counting them."""
        now = time.monotonic()
        said = str(exc).strip().splitlines()
        what = said[0][:200] if said else type(exc).__name__
        where = f"{request.method} {request.url.path}"
        if now - self._last_refusal > AWAY_EVERY:  # a new outage (or the first)
            self._away_said, self._away_quiet = now, 0
            log.warning("database unavailable on %s: %s; requests that need it answer 503 "
                        "until it is back", where, what)
        elif now - self._away_said >= AWAY_EVERY:
            log.warning("database still unavailable: %d more request(s) answered 503 "
                        "(last: %s: %s)", self._away_quiet + 1, where, what)
            self._away_said, self._away_quiet = now, 0
        else:
            self._away_quiet += 1
        self._last_refusal = now
