"""In a replay, outbound connections other than to the master are refused and reported.

A replay must not reach the world: every call that matters is served from the recording. A
connection the agent opens itself (an ``httpx.get`` outside any ``@titan.tool``) is a *leak* —
the recording cannot answer it, and a live answer could differ or cost money. The guard wraps
``socket.socket.connect``/``connect_ex`` (which ``socket.create_connection``, ``http.client``,
``urllib``, ``requests``, ``httpx`` and asyncio's sockets all end in), lets through the masters
(``TITAN_MASTER_URL``, every one of ``TITAN_MASTER_URLS``: a standby may become the leader
mid-replay), Unix sockets and the hosts in ``TITAN_REPLAY_ALLOW_HOSTS`` (comma-separated
``host`` or ``host:port``, for a database the agent reads), and records anything else as an
action on the ``network`` channel — refused (``ConnectionRefusedError``), or let through with
``--allow-live``. A call the replay decided to make live (past a fork point, or allowed)
opens its own connections inside :func:`through`: they are that call, recorded as it, and go
through unreported.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from contextvars import ContextVar, Token
from typing import Any
from urllib.parse import urlsplit

_installed = False
_on_leak: Callable[[str, int], None] | None = None
#: Set while a call the replay let through live runs (:func:`through`).
_live: ContextVar[bool] = ContextVar("titan_replay_live_call", default=False)


def through() -> Token[bool]:
    """Let this context's connections through, unreported, until :func:`end_through`: a
    live call of the replay runs here."""
    return _live.set(True)


def end_through(token: Token[bool]) -> None:
    _live.reset(token)
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
    if _live.get() or not isinstance(address, tuple) or len(address) < 2:
        return True  # Unix sockets and anything not host:port
    host, port = str(address[0]), int(address[1])
    return (host, port) in _allowed or (host, None) in _allowed


def install(on_leak: Callable[[str, int], None]) -> None:
    """Guard this process's sockets (once): called when its replay session starts.

    ``on_leak(host, port)`` hears of each connection outside the allowed addresses; it raises
    (``ConnectionRefusedError``) to refuse it, or returns to let it through. The guard knows
    nothing of runs and recordings: the replay that installs it decides and records."""
    global _installed, _on_leak
    if _installed:
        return
    _installed = True
    _on_leak = on_leak
    # Every master of the job's Titan: the SDK turns to a standby when it becomes the leader.
    masters = [os.environ.get("TITAN_MASTER_URL") or "",
               *os.environ.get("TITAN_MASTER_URLS", "").split(",")]
    for master in filter(None, (m.strip() for m in masters)):
        parts = urlsplit(master if "://" in master else "http://" + master)
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
            _report(address)
        return original_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        if self.family in (socket.AF_INET, socket.AF_INET6) and not _allowed_address(address):
            try:
                _report(address)
            except ConnectionRefusedError:
                import errno

                return errno.ECONNREFUSED
        return original_connect_ex(self, address)

    socket.socket.connect = connect  # type: ignore[method-assign,assignment]
    socket.socket.connect_ex = connect_ex  # type: ignore[method-assign,assignment]


def _report(address: Any) -> None:
    if _on_leak is not None:
        _on_leak(str(address[0]), int(address[1]))
