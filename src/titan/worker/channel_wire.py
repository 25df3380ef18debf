"""How a worker reaches its master's worker channel: the URL, a socket the master proved it
owns, the WebSocket over it, the frames reports travel in, and how its ends are said
(:mod:`titan.worker.channel` keeps the connection: hello, reconnects, credits and acks)."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import MutableMapping
from typing import Any
from urllib.parse import urlsplit

from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.http11 import Response
from websockets.sync.client import ClientConnection, connect

from titan import frame_json
from titan.client.http_wire import Reply
from titan.client.master_check import bearer_token, connect_proven
from titan.client.masters import not_leader
from titan.client.tls import client_context

#: A handshake's time limit: a loaded master may take a while; a frozen one is found by the
#: question to /health that follows a connection lost without a word, not by this.
OPEN_TIMEOUT = 10.0


def channel_url(master_url: str, worker_id: str) -> str:
    """The worker channel's WebSocket URL on the master at ``master_url``."""
    base = "wss://" + master_url[8:] if master_url.startswith("https://") \
        else "ws://" + master_url.removeprefix("http://")
    return f"{base}/api/v1/workers/{worker_id}/channel"


def channel_master(url: str) -> str:
    """The root URL of the master serving the worker channel at ``url``."""
    parts = urlsplit(url)
    return f"{'https' if parts.scheme == 'wss' else 'http'}://{parts.netloc}"



def report_frame(message: dict[str, Any]) -> str:
    """A report as the text frame it travels in: UTF-8 as it is (``ensure_ascii`` wrote each
    emoji as 12 bytes, and a batch of 2 MiB of lines became a frame past the master's limit,
    refused and sent again for ever), or escaped when a string holds a lone surrogate (an
    exception's text may carry one from a file name) and UTF-8 cannot carry it
    (:func:`titan.frame_json.dumps`)."""
    return frame_json.dumps(message)


def dial(target: str, headers: dict[str, str], ping_seconds: float) -> ClientConnection:
    """A WebSocket to the channel at ``target``, or the master's refusal (InvalidStatus)."""
    # Over ws:// the server first proves it is the master, on the socket the handshake (and
    # the credential in it) then goes over (client/master_check.py).
    sock = connect_proven(target, bearer_token(headers.get("Authorization")), OPEN_TIMEOUT)
    if isinstance(sock, Reply):
        raise _refusal(sock)
    # legacy=True: a direct connection, not a with-block (it lives across threads and
    # reconnects; websockets 17.1 deprecated the unmarked form).
    return connect(target, additional_headers=headers, compression=None, sock=sock,
                   proxy=None, open_timeout=OPEN_TIMEOUT, max_size=None,
                   user_agent_header=None, ssl=client_context(target), legacy=True,
                   ping_interval=ping_seconds, ping_timeout=ping_seconds, close_timeout=1,
                   logger=_LIBRARY_LOG)


class _LibraryLog(logging.LoggerAdapter):  # type: ignore[type-arg]
    """The websockets library's log for a channel: an error of its own that is only the
    connection ending (its keepalive's "keepalive ping failed", with the traceback of a
    ``ConnectionClosedError: sent 1011 (internal error) keepalive ping timeout`` when a
    master froze) is kept at DEBUG; the channel says the end in one line of its own
    (:func:`ended`). Any other error of the library's stays an error."""

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        exc = sys.exc_info()[1] if kwargs.get("exc_info") is True else kwargs.get("exc_info")
        if level >= logging.ERROR and isinstance(exc, ConnectionClosed | TimeoutError | OSError):
            level = logging.DEBUG
        super().log(level, msg, *args, **kwargs)

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, Any]:
        return msg, kwargs


_LIBRARY_LOG = _LibraryLog(logging.getLogger("websockets.client"))


def ended(closed: ConnectionClosed | None) -> str:
    """How a connection its master did not close ended, in words: ``it stopped answering``
    (the keepalive's pong late), ``it closed the connection without a word``."""
    sent = closed.sent if closed is not None else None
    if sent is not None and sent.code == 1011:  # the keepalive gave up (a frozen master)
        return f"it stopped answering ({sent.reason or 'keepalive ping timeout'})"
    return "it closed the connection without a word"


def refusal(exc: InvalidStatus) -> str:
    """A refusal of the upgrade by a master that does not lead, in words: a standby's ``503
    not_leader`` names the leader when it knows it (an older standby refuses with 403)."""
    response = exc.response
    try:
        body = json.loads(response.body or b"")
    except ValueError:
        body = None
    standby = not_leader(response.status_code, response.headers, body)
    if standby is None:
        return f"not the leader (it refused the channel: HTTP {response.status_code})"
    return f"a standby (it names the leader {standby.leader})" if standby.leader \
        else "a standby that does not know the leader yet"


def _refusal(reply: Reply) -> InvalidStatus:
    """The master's refusal of the proof, as the handshake's refusal would have been."""
    return InvalidStatus(Response(reply.status_code, "", Headers(
        [(k.decode("latin-1"), v.decode("latin-1")) for k, v in reply.raw_headers]),
        reply.content))


def retry_line(where: str, exc: BaseException, advice: str | None,
               said: str | None, hint: str | None = None) -> tuple[int, str] | None:
    """The line a failed connection to the channel of ``where`` is said in, and its level:
    ``said`` when given (a standby looking for the leader; nothing when empty), the TLS
    ``advice`` when there is one, else that the master is unreachable and why (with
    ``hint``, what might fix it: ``TlsFailures.hint``)."""
    if said is not None:
        return (logging.WARNING, f"worker channel: {said}; retrying") if said else None
    if advice is not None:
        return logging.ERROR, f"worker channel: {advice}; retrying"
    if hint:
        return (logging.ERROR,
                f"worker channel: master {where} unreachable ({exc}); {hint}; retrying")
    return logging.WARNING, f"worker channel: master {where} unreachable ({exc}); retrying"
