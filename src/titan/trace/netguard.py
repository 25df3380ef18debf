"""In a replay, outbound connections other than to the master are refused and reported.

A replay must not reach the world: every call that matters is served from the recording. A
connection the agent opens itself (an ``httpx.get`` outside any ``@titan.tool``) is a *leak* —
the recording cannot answer it, and a live answer could differ or cost money. The guard wraps
``socket.socket.connect``/``connect_ex`` (which ``socket.create_connection``, ``http.client``,
``urllib``, ``requests``, ``httpx`` and asyncio's sockets all end in), lets through the master,
Unix sockets and the hosts in ``TITAN_REPLAY_ALLOW_HOSTS`` (comma-separated ``host`` or
``host:port``, for a database the agent reads), and records anything else as an action on the
``network`` channel — refused (``ConnectionRefusedError``), or let through with ``--allow-live``.
"""

from __future__ import annotations

import os
import socket
import time
from typing import Any
from urllib.parse import urlsplit

_installed = False
_allowed: set[tuple[str, int | None]] = set()


def _resolve(host: str) -> set[str]:
    try:
        return {str(info[4][0]) for info in socket.getaddrinfo(host, None)}
    except OSError:
        return {host}


def _allow(host: str, port: int | None) -> None:
    for ip in _resolve(host) | {host}:
        _allowed.add((ip, port))


def _allowed_address(address: Any) -> bool:
    if not isinstance(address, tuple) or len(address) < 2:
        return True  # Unix sockets and anything not host:port
    host, port = str(address[0]), int(address[1])
    return (host, port) in _allowed or (host, None) in _allowed


def install() -> None:
    """Guard this process's sockets (once): called when its replay session starts."""
    global _installed
    if _installed:
        return
    _installed = True
    master = os.environ.get("TITAN_MASTER_URL")
    if master:
        parts = urlsplit(master)
        _allow(parts.hostname or "127.0.0.1", parts.port or (443 if parts.scheme == "https"
                                                             else 80))
    if os.environ.get("TITAN_HOST"):
        _allow(os.environ["TITAN_HOST"], int(os.environ.get("TITAN_PORT") or 9090))
    for item in filter(None, (x.strip() for x in
                              os.environ.get("TITAN_REPLAY_ALLOW_HOSTS", "").split(","))):
        host, _, port = item.rpartition(":") if item.count(":") == 1 else (item, "", "")
        _allow(host or item, int(port) if port.isdigit() else None)

    original_connect = socket.socket.connect
    original_connect_ex = socket.socket.connect_ex

    def connect(self: socket.socket, address: Any) -> None:
        if self.family in (socket.AF_INET, socket.AF_INET6) and not _allowed_address(address):
            _leak(address)
        return original_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        if self.family in (socket.AF_INET, socket.AF_INET6) and not _allowed_address(address):
            try:
                _leak(address)
            except ConnectionRefusedError:
                import errno

                return errno.ECONNREFUSED
        return original_connect_ex(self, address)

    socket.socket.connect = connect  # type: ignore[method-assign,assignment]
    socket.socket.connect_ex = connect_ex  # type: ignore[method-assign,assignment]


def _leak(address: Any) -> None:
    """Record the connection as a leak; raise unless the replay allows live calls."""
    from titan.trace import context, replay
    from titan.trace.actions import emit

    session = replay.active()
    host, port = str(address[0]), int(address[1])
    allowed = session is not None and session.allow_live
    run = context.current_run()
    message = (f"replay of {session.original if session else '?'}: a connection to "
               f"{host}:{port} was not intercepted by Titan (wrap the call in @titan.tool so "
               "it is recorded and served on replay)")
    exc = ConnectionRefusedError(111, message)
    if run is not None:
        emit(run, channel="network", name="connect", inputs={"host": host, "port": port},
             outputs=None, started_at=time.time(), duration_ns=0,
             outcome="success" if allowed else "blocked", error=None if allowed else exc,
             replay_status="live" if allowed else "refused")
    if not allowed:
        raise exc
