"""A master that froze while a request waited for its reply: told apart from a slow one.

A leader paused (SIGSTOP, a frozen VM, a host that stopped scheduling it) keeps its sockets:
the kernel accepts connections for it and holds what is sent, and nothing answers. A new
connection finds that out within the proof's bound (:mod:`titan.client.plain_http`), but a
request already sent on a pooled connection waited out the whole read timeout (60 s, or a
long-poll's hold) before the client asked the standby that had taken over meanwhile.

Silence alone says nothing — a long-poll is silent by design, an export may take a while — so
a client given several masters, once a reply has been silent for :data:`STALL_AFTER`
seconds, asks the same master for its health on a connection of its own. A master that
answers that (with anything: a standby's 503, a leader's 200) is alive, and the wait goes on.
One that does not answer within :data:`PROBE_TIMEOUT` has stopped: the request ends as a
read timeout, which the transport's retry rules send on to the next master when the request
may go again (:mod:`titan.client.retrying`). The probe carries no token: whatever holds the
port learns nothing from it.
"""

from __future__ import annotations

import select
import socket
import time
from collections.abc import Callable

import httpx

#: Seconds of a reply's silence after which the master is asked whether it is still there.
STALL_AFTER = 5.0
#: Seconds the master has to answer that question on a connection of its own.
PROBE_TIMEOUT = 3.0
_HEALTH = b"/api/v1/health"


def answers(origin: tuple[str, int], host: bytes, timeout: float = PROBE_TIMEOUT) -> bool:
    """Whether the server at ``origin`` answers a health request, with anything, within
    ``timeout`` seconds on a new connection."""
    try:
        with socket.create_connection(origin, timeout=timeout) as sock:
            sock.sendall(b"GET " + _HEALTH + b" HTTP/1.1\r\nHost: " + host
                         + b"\r\nConnection: close\r\n\r\n")
            return bool(sock.recv(1))
    except OSError:
        return False


def await_reply(sock: socket.socket, read_timeout: float | None,
                alive: Callable[[], bool]) -> None:
    """Return once the reply's first bytes can be read from ``sock`` (its timeout then set
    to what is left of ``read_timeout``); ``httpx.ReadTimeout`` when ``read_timeout`` passes
    first, or when the reply has been silent for :data:`STALL_AFTER` and ``alive()`` says
    the master is not answering any more."""
    start = time.monotonic()
    while True:
        left = None if read_timeout is None else read_timeout - (time.monotonic() - start)
        if left is not None and left <= 0:
            raise httpx.ReadTimeout("timed out")
        step = STALL_AFTER if left is None else min(STALL_AFTER, left)
        readable, _, _ = select.select([sock], [], [], step)
        if readable:
            rest = None if read_timeout is None else \
                max(0.001, read_timeout - (time.monotonic() - start))
            sock.settimeout(rest)
            return
        if left is not None and left <= step:
            raise httpx.ReadTimeout("timed out")
        if not alive():
            raise httpx.ReadTimeout(
                f"no reply for {time.monotonic() - start:.0f} s and the master does not "
                f"answer a new connection either: it stopped (paused, frozen)")
