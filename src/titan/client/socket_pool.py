"""Keep-alive sockets to plain-HTTP masters: a pool per transport, a socket taken out for one
exchange and given back while it is fresh, by the process that opened it only, and never more
idle than the pool keeps (:mod:`titan.client.plain_http`).

A process forked from one with a pool starts it empty, with a lock of its own
(:meth:`SocketPool.forked`): a socket both processes read from hands each one the other's
replies, and a lock another thread held at the fork would never be released in the child.
"""

from __future__ import annotations

import os
import select
import socket
import threading
import time

import httpx


class Connection:
    """One keep-alive socket to a master, and what the pool knows of it."""

    __slots__ = ("sock", "idle_since", "proven", "pid")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.idle_since = 0.0
        #: The process that opened it: the only one that may pool it (a reply being read
        #: when the process forked must not put the shared socket in the child's pool).
        self.pid = os.getpid()
        #: The token the server on this socket proved it is the master of (master_check).
        self.proven: str | None = None

    def usable(self, now: float, expiry: float) -> bool:
        """Idle for less than ``expiry`` and not closed by the server meanwhile (a socket
        that is readable while no request is out holds an EOF or garbage: either way not a
        reply to what we are about to send)."""
        if now - self.idle_since >= expiry:
            return False
        try:
            readable, _, _ = select.select([self.sock], [], [], 0)
        except (OSError, ValueError):
            return False
        return not readable

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


class SocketPool:
    """Idle keep-alive sockets by origin (host, port), at most ``max_keepalive`` each, each
    reused within ``keepalive_expiry`` seconds of its last exchange."""

    def __init__(self, max_keepalive: int, keepalive_expiry: float) -> None:
        self._max_keepalive = max_keepalive
        self._expiry = keepalive_expiry
        self._idle: dict[tuple[str, int], list[Connection]] = {}
        self._lock = threading.Lock()
        self.closed = False

    def checkout(self, origin: tuple[str, int], connect_timeout: float | None) -> Connection:
        """An idle socket to ``origin`` still usable, else a new one (httpx's connect errors)."""
        now = time.monotonic()
        with self._lock:
            idle = self._idle.get(origin)
            while idle:
                conn = idle.pop()  # the most recently used: the least likely to be stale
                if conn.usable(now, self._expiry):
                    return conn
                conn.close()
        try:
            sock = socket.create_connection(origin, timeout=connect_timeout)
        except TimeoutError as exc:
            raise httpx.ConnectTimeout(str(exc) or "timed out connecting") from exc
        except OSError as exc:
            raise httpx.ConnectError(str(exc) or type(exc).__name__) from exc
        # Without it, a request written in two segments waits out the server's delayed ACK.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return Connection(sock)

    def release(self, origin: tuple[str, int], conn: Connection) -> None:
        """``conn`` back after a whole exchange: kept idle, or closed when the pool is closed
        or full, or when another process opened it."""
        conn.idle_since = time.monotonic()
        with self._lock:
            idle = self._idle.setdefault(origin, [])
            if self.closed or len(idle) >= self._max_keepalive or conn.pid != os.getpid():
                conn.close()
            else:
                idle.append(conn)

    def close(self) -> None:
        """Close the idle sockets; any given back later is closed too."""
        with self._lock:
            self.closed = True
            idle = [c for conns in self._idle.values() for c in conns]
            self._idle.clear()
        for conn in idle:
            conn.close()

    def forked(self) -> None:
        """In a child just forked: the parent's sockets closed (their descriptors only, see
        :meth:`~titan.client.plain_http.PlainHTTPTransport._forked`), and a lock of its own."""
        self._lock = threading.Lock()
        inherited, self._idle = self._idle, {}
        for conns in inherited.values():
            for conn in conns:
                conn.close()
