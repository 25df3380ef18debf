"""How a worker reaches its master's worker channel: the URL, a socket the master proved it
owns, the WebSocket over it, and the frames reports travel in (:mod:`titan.worker.channel`
keeps the connection: hello, reconnects, credits and acks)."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

from websockets.datastructures import Headers
from websockets.exceptions import InvalidStatus
from websockets.http11 import Response
from websockets.sync.client import ClientConnection, connect

from titan.client.http_wire import Reply
from titan.client.master_check import bearer_token, connect_proven
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
    exception's text may carry one from a file name) and UTF-8 cannot carry it."""
    frame = json.dumps(message, separators=(",", ":"), ensure_ascii=False)
    if not frame.isascii():
        try:
            frame.encode()
        except UnicodeEncodeError:
            frame = json.dumps(message, separators=(",", ":"))
    return frame


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
                   ping_interval=ping_seconds, ping_timeout=ping_seconds, close_timeout=1)


def _refusal(reply: Reply) -> InvalidStatus:
    """The master's refusal of the proof, as the handshake's refusal would have been."""
    return InvalidStatus(Response(reply.status_code, "", Headers(
        [(k.decode("latin-1"), v.decode("latin-1")) for k, v in reply.raw_headers]),
        reply.content))
