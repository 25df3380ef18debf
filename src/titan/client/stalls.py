"""A master that froze while a request was sent to it or its reply awaited: told apart from a
slow one.

A leader paused (SIGSTOP, a frozen VM, a host that stopped scheduling it) keeps its sockets:
the kernel accepts connections for it and holds what is sent, and nothing answers. A new
connection finds that out within the proof's bound (:mod:`titan.client.plain_http`), but a
request already sent on a pooled connection waited out the whole read timeout (60 s, or a
long-poll's hold) before the client asked the standby that had taken over meanwhile; a
download whose body stopped mid-way waited as long for its next bytes, and an upload, once
the paused master's kernel buffers were full, as long to write its next piece.

Silence alone says nothing — a long-poll is silent by design, an export may take a while — so
a client given several masters, once a reply has been silent (or the master has taken
nothing of a request) for :data:`STALL_AFTER` seconds, asks the same master for its health on
a connection of its own. A master that answers that (with anything: a standby's 503, a
leader's 200) is alive, and the wait goes on. One that does not answer within
:data:`PROBE_TIMEOUT` has stopped: the request ends as a read (or write) timeout, which the
client's retry rules send on to the next master when the request may go again
(:mod:`titan.client.retrying`), and report otherwise. Whole replies are watched on the lean
path (:meth:`~titan.client.plain_http.PlainHTTPTransport.exchange`); requests through httpx's
client (streams, file uploads) carry the :data:`WATCH` extension, and their bodies are read
through a :class:`WatchedReader`. The probe carries no token: whatever holds the port learns
nothing from it. Over https the sockets are httpcore's, and a frozen master is waited out.
"""

from __future__ import annotations

import io
import select
import socket
import time
from collections.abc import Callable
from typing import Any

import httpx

#: Seconds of a reply's silence after which the master is asked whether it is still there.
STALL_AFTER = 5.0
#: Seconds the master has to answer that question on a connection of its own.
PROBE_TIMEOUT = 3.0
_HEALTH = b"/api/v1/health"
#: The request extension (``httpx.Request.extensions``) that asks the plain-HTTP transport
#: to watch a request sent through httpx's client (a stream, a file upload) this way.
WATCH = "titan.stalls"
#: Bytes a watched reply is read from its socket at a time (at most).
_BUFFER = 1 << 16


def answers(origin: tuple[str, int], host: bytes, timeout: float | None = None) -> bool:
    """Whether the server at ``origin`` answers a health request, with anything, within
    ``timeout`` seconds (:data:`PROBE_TIMEOUT`) on a new connection."""
    try:
        with socket.create_connection(
                origin, timeout=PROBE_TIMEOUT if timeout is None else timeout) as sock:
            sock.sendall(b"GET " + _HEALTH + b" HTTP/1.1\r\nHost: " + host
                         + b"\r\nConnection: close\r\n\r\n")
            return bool(sock.recv(1))
    except OSError:
        return False


def await_reply(sock: socket.socket, read_timeout: float | None,
                alive: Callable[[], bool]) -> None:
    """Return once the reply's next bytes can be read from ``sock`` (its timeout then set
    to what is left of ``read_timeout``); ``httpx.ReadTimeout`` when ``read_timeout`` passes
    first, or when the reply has been silent for :data:`STALL_AFTER` and ``alive()`` says
    the master is not answering any more."""
    _await(sock, read_timeout, alive, writing=False)


def await_writable(sock: socket.socket, write_timeout: float | None,
                   alive: Callable[[], bool]) -> None:
    """Return once more of a request can be written to ``sock``; ``httpx.WriteTimeout`` when
    ``write_timeout`` passes first, or when the master has taken nothing for
    :data:`STALL_AFTER` and ``alive()`` says it is not answering any more (a paused master's
    kernel takes the first megabytes of an upload, then its buffers are full)."""
    _await(sock, write_timeout, alive, writing=True)


def _await(sock: socket.socket, timeout: float | None, alive: Callable[[], bool], *,
           writing: bool) -> None:
    error = httpx.WriteTimeout if writing else httpx.ReadTimeout
    start = time.monotonic()
    while True:
        left = None if timeout is None else timeout - (time.monotonic() - start)
        if left is not None and left <= 0:
            raise error("timed out")
        step = STALL_AFTER if left is None else min(STALL_AFTER, left)
        readable, writable, _ = select.select([] if writing else [sock],
                                              [sock] if writing else [], [], step)
        if readable or writable:
            rest = None if timeout is None else \
                max(0.001, timeout - (time.monotonic() - start))
            sock.settimeout(rest)
            return
        if left is not None and left <= step:
            raise error("timed out")
        if not alive():
            raise error(
                f"{'nothing taken' if writing else 'no reply'} for "
                f"{time.monotonic() - start:.0f} s and the master does not answer a new "
                f"connection either: it stopped (paused, frozen)")


class WatchedReader(io.RawIOBase):
    """A reply read from ``sock`` as :func:`await_reply` waits for it, before every read
    from the socket: a body that stops coming mid-way (a download whose master froze) is
    found out as its first bytes would be. Each read may take up to ``read_timeout``, as
    httpx's read timeout bounds each read. Closing it leaves the socket open (its pool's)."""

    def __init__(self, sock: socket.socket, read_timeout: float | None,
                 alive: Callable[[], bool]) -> None:
        super().__init__()
        self._sock, self._timeout, self._alive = sock, read_timeout, alive

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        await_reply(self._sock, self._timeout, self._alive)
        return self._sock.recv_into(buffer)


class WatchedSocket:
    """A socket as :class:`http.client.HTTPResponse` reads a reply from it (its ``makefile``,
    all that HTTPResponse uses of a socket), each read through a :class:`WatchedReader`."""

    def __init__(self, sock: socket.socket, read_timeout: float | None,
                 alive: Callable[[], bool]) -> None:
        self._sock, self._timeout, self._alive = sock, read_timeout, alive

    def makefile(self, mode: str) -> io.BufferedReader:
        return io.BufferedReader(WatchedReader(self._sock, self._timeout, self._alive),
                                 _BUFFER)
