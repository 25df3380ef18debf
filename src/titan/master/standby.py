"""A master that may be a standby: answers "not the leader" until it leads, then is the master.

Several ``titan master`` processes may share one PostgreSQL database (storage/leadership.py
elects one). Each binds its port at once, so clients and load balancers can tell a standby
from a dead host, and wraps the real application in :class:`LeaderGate`:

- while it does not lead, every request gets ``503 not_leader`` naming the leader on record
  (``X-Titan-Leader``, ``Retry-After: 1``), a WebSocket upgrade is refused before the
  handshake, and a dashboard page says where the leader is. A standby never answers from the
  database: what it would say could already be stale;
- once it leads, it starts the application exactly as a restarted master does (recovery from
  the database), serves it, and heartbeats through the writer (so a stuck writer stops the
  heartbeat as surely as a dead process);
- if a write finds it replaced (a standby took over while it was paused or cut off), it stops
  the process: whatever it held in memory is not to be trusted, and a supervisor
  (systemd ``Restart=always``) brings it back as a standby. :data:`EXIT_REPLACED` is its code.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import json
import logging
import os
import signal
from collections.abc import Callable
from typing import Any

from starlette.types import Receive, Scope, Send

from titan.errors import NotLeader
from titan.storage.leadership import LeaderInfo, Leadership, describe

log = logging.getLogger("titan.master")


class _RefusedUpgradeIsNotAnError(logging.Filter):
    """uvicorn's sans-io WebSocket protocol (0.54) logs "ASGI callable returned without
    completing handshake." at ERROR after a ``websocket.http.response`` — the standby's 503 to
    a worker's channel, sent on purpose at every failover: an error line per worker that
    operators would chase. Dropped; any other line passes."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "returned without completing handshake" not in record.getMessage()


_QUIET_REFUSALS = _RefusedUpgradeIsNotAnError()

#: The exit status of a master that found itself replaced by another leader.
EXIT_REPLACED = 75
#: How often a standby tries the leadership (a dead leader's lock is free at once).
POLL_SECONDS = 0.25


class LeaderGate:
    """ASGI wrapper of the master's app: a standby's answers until this master leads."""

    def __init__(self, app: Any, leadership: Leadership, *, heartbeat: float,
                 on_leading: Callable[[], None] | None = None) -> None:
        self.app = app
        self.leadership = leadership
        self.heartbeat = heartbeat
        logging.getLogger("uvicorn.error").addFilter(_QUIET_REFUSALS)  # added once, however many gates
        self.on_leading = on_leading
        #: How to stop the process once replaced (the server's graceful exit); default SIGTERM.
        self.stop_serving: Callable[[], None] = lambda: os.kill(os.getpid(), signal.SIGTERM)
        self.leading = False
        #: Set once a write found this master replaced: the process is stopping.
        self.replaced: NotLeader | None = None
        self._known: LeaderInfo | None = None
        self._task: asyncio.Task[None] | None = None
        self._lifespan: contextlib.AbstractAsyncContextManager[Any] | None = None

    # -- ASGI -------------------------------------------------------------------------------
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._serve_lifespan(receive, send)
        elif self.leading:
            await self.app(scope, receive, send)
        elif scope["type"] == "websocket":
            if "websocket.http.response" in (scope.get("extensions") or {}):
                # The standby's 503 (naming the leader), as to any request: closed before the
                # handshake, the upgrade reads as a 403, a refusal a worker cannot tell from
                # the leader's own.
                await self._answer(scope, send, prefix="websocket.http.response")
            else:
                await send({"type": "websocket.close", "code": 1013})  # try again later
        else:
            await self._answer(scope, send)

    async def _serve_lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self._startup()
                except BaseException as exc:
                    await send({"type": "lifespan.startup.failed", "message": repr(exc)})
                    raise
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self._shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _startup(self) -> None:
        if self.leadership.epoch is not None:
            # Already leads (it won the first try): serve nothing before the app is ready.
            await self._enter()
        else:
            await self._refresh_known()
            log.info("standby: %s leads (epoch %s); waiting to take over",
                     self._known.url if self._known else "no master yet",
                     self._known.epoch if self._known else "-")
        self._task = asyncio.create_task(self._run())

    async def _shutdown(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._exit()

    # -- leading ----------------------------------------------------------------------------
    async def _run(self) -> None:
        try:
            while not self.leading:
                if await asyncio.to_thread(self.leadership.try_lead):
                    await self._enter()
                    break
                await self._refresh_known()
                await asyncio.sleep(POLL_SECONDS)
            await self._keep_leading()
        except asyncio.CancelledError:
            raise
        except NotLeader as exc:
            self._stop(exc)
        except Exception:  # noqa: BLE001 - a master that cannot lead must not look alive
            log.exception("leadership failed")
            self._stop(NotLeader("leadership failed"))

    async def _enter(self) -> None:
        lifespan = self.app.router.lifespan_context(self.app)
        await lifespan.__aenter__()
        self._lifespan = lifespan
        self.leading = True
        if self.on_leading is not None:
            self.on_leading()

    async def _exit(self) -> None:
        self.leading = False
        lifespan, self._lifespan = self._lifespan, None
        if lifespan is not None:
            await lifespan.__aexit__(None, None, None)

    async def _keep_leading(self) -> None:
        """Heartbeat until a write finds this master replaced or another took the lock."""
        engine = self.app.state.ctx.engine
        leadership = self.leadership

        def beat(tx: Any) -> None:
            leadership.heartbeat(tx.conn)

        while True:
            # Fenced like every write: raises NotLeader if replaced. While the database is
            # away the writer holds the beat until it is back; the lock is checked meanwhile,
            # each heartbeat, so GET /health says at once that it cannot be confirmed.
            beating = asyncio.ensure_future(engine.run(beat))
            while not (await asyncio.wait({beating}, timeout=self.heartbeat))[0]:
                await self._check_lock()
            try:
                beating.result()
            except NotLeader:
                raise
            except Exception as exc:  # noqa: BLE001 - the database away: the next beat retries
                log.warning("leader heartbeat failed: %s", exc)
            await self._check_lock()
            await asyncio.sleep(self.heartbeat)

    async def _check_lock(self) -> None:
        """NotLeader when another master holds the leadership lock now."""
        leadership = self.leadership
        if not await asyncio.to_thread(leadership.holds_lock):
            info = await asyncio.to_thread(leadership.leader)
            known = describe(info)
            newer = known["leader"] and known["epoch"] != leadership.epoch
            where = f"the leader at {known['leader']}" if newer else "another master"
            # Worded as the fenced write's NotLeader: either way this master was replaced.
            raise NotLeader(f"this master was replaced by {where}, which holds the "
                            "leadership lock", details=known)

    def _stop(self, exc: NotLeader) -> None:
        """Replaced: stop serving at once, then stop the process (uvicorn's graceful exit)."""
        self.replaced = exc
        self.leading = False
        log.error("%s; stopping (restart this master to rejoin as a standby)", exc)
        self.stop_serving()

    # -- a standby's answers ------------------------------------------------------------------
    @property
    def known_leader(self) -> str | None:
        """The leader's URL as last read (None before any master led)."""
        return self._known.url if self._known else None

    async def _refresh_known(self) -> None:
        try:
            self._known = await asyncio.to_thread(self.leadership.leader)
        except Exception as exc:  # noqa: BLE001 - the database away: say what was last known
            log.debug("could not read the leader: %s", exc)

    async def _answer(self, scope: Scope, send: Send, prefix: str = "http.response") -> None:
        known = describe(self._known)
        leader = known["leader"]
        err = NotLeader(
            f"this Titan master is a standby; the leader is at {leader}" if leader else
            "this Titan master is a standby and no leader is known yet; try again shortly",
            details=known)
        headers = [(b"retry-after", b"1"), (b"connection", b"close"),
                   (b"x-content-type-options", b"nosniff")]  # as the master's (http_guard)
        if leader:
            headers.append((b"x-titan-leader", leader.encode()))
        accept = dict(scope.get("headers") or []).get(b"accept", b"")
        if b"text/html" in accept and not scope.get("path", "").startswith("/api/"):
            link = (f'<a href="{html.escape(leader)}">{html.escape(leader)}</a>'
                    if leader else "not known yet")
            body = (f"<!doctype html><title>Titan standby</title><h1>Standby master</h1>"
                    f"<p>This master is a standby. The leader is {link}.</p>").encode()
            headers.append((b"content-type", b"text/html; charset=utf-8"))
        else:
            body = json.dumps(err.to_body()).encode()
            headers.append((b"content-type", b"application/json"))
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": f"{prefix}.start", "status": 503, "headers": headers})
        await send({"type": f"{prefix}.body", "body": body})
