"""Asking a plain-HTTP server to prove it is the master before a token goes to it.

The exchange and what it proves are :mod:`titan.master_proof`'s. Here is the client's side,
on the socket the token would then travel on: the SDK's pooled connections
(:mod:`titan.client.plain_http`) and a worker's channel (:mod:`titan.worker.channel`, which
upgrades the same socket to a WebSocket), so a server that answers is the one that gets the
token. Each socket is checked once, before its first request with a token.
"""

from __future__ import annotations

import json
import socket
from urllib.parse import quote, urlsplit

import httpx

from titan import master_proof
from titan.client.http_wire import Reply, read_reply, request_head

#: Refusals to the proof request passed on as the request's answer: a standby naming the
#: leader (the client goes there, if it is one of its masters, and asks again). A 401
#: ("unknown token") is not: anyone can say it, and taken as final it stopped every worker
#: and turned clients from a leader they could have tried (MasterUnproven, retried).
PASSED_ON = (503,)


class MasterUnproven(httpx.ConnectError):
    """The server did not prove it is the master: nothing was sent, as if it were not there
    (so the retry policy waits for the master to come back, then asks again)."""


class TokenUnknown(MasterUnproven):
    """The server answered the proof that it does not know the token: a master given a
    wrong token says so, and so can anyone on its port. A worker that has never reached its
    master takes it as final; one that has, as a master away."""


def bearer_token(authorization: str | bytes | None) -> str | None:
    """The token of an ``Authorization: Bearer`` header, None without one."""
    if authorization is None:
        return None
    if isinstance(authorization, bytes):
        authorization = authorization.decode("latin-1")
    scheme, _, value = authorization.partition(" ")
    return value.strip() or None if scheme.lower() == "bearer" else None


def prove(sock: socket.socket, host: bytes, token: str, url: str) -> Reply | None:
    """Ask the server on ``sock`` for the proof of ``token``'s master. None when it proved
    it; a standby's refusal (503, naming the leader) to pass on instead of the request;
    :class:`MasterUnproven` for anything else. ``host``: the Host header; ``url``: the
    request's (its path may put the API under a prefix, behind a proxy). The socket's
    timeout applies."""
    parts = urlsplit(url)
    where = f"http://{parts.netloc.rsplit('@', 1)[-1]}"  # http: or ws:, both plain
    prefix = parts.path.partition("/api/v1/")[0] if "/api/v1/" in parts.path else ""
    nonce = master_proof.new_nonce()
    # "for": the path about to be called (no secret), which an evaluation's tool proxy
    # counts a wrong token against (the call itself is then never sent). Without its NULs:
    # the master refuses any URL with one (400), and a proof refused so read as an impostor
    # ("did not prove it is the Titan master") where the call itself gets a clean 400.
    called = quote(parts.path, safe="/%").replace("%00", "")
    target = (f"{quote(prefix, safe='/%')}{master_proof.PATH}?nonce={nonce}"
              f"&ref={quote(master_proof.token_ref(token), safe='')}&for={called}")
    head = request_head("GET", target.encode("ascii"), [(b"host", host)])
    try:
        sock.sendall(head)
        with sock.makefile("rb") as fp:
            status, headers, content, keep = read_reply(fp, "GET")
    except TimeoutError:
        # Connected (the kernel accepts for it) and silent: a master that froze (SIGSTOP,
        # a paused VM). Nothing was sent, so the client may turn to another master at once.
        raise MasterUnproven(
            f"the server at {where} accepted the connection and did not answer the master's "
            f"proof within {sock.gettimeout() or 0:g} s (a master that froze?)") from None
    answer = None
    if status == 200:
        try:
            answer = json.loads(content).get("proof")
        except (ValueError, AttributeError):
            answer = None
        proven = master_proof.proves(token, nonce, answer)
        if proven and keep:
            return None
        # A proof on a connection the server then closes proves nothing about the next one.
        why = "it closed the connection after its answer" if proven else \
            "its answer is not the proof"
    elif status in PASSED_ON and _is_titan_error(content):
        if not keep:
            headers = [*headers, (b"connection", b"close")]
        return Reply(status, headers, content, where + master_proof.PATH)
    elif status == 401:
        raise TokenUnknown(
            f"the server at {where} answered that it does not know this token: if it is your "
            "master, the token is wrong (TITAN_TOKEN, `titan token list`); it was not sent")
    elif status == 404 and _is_titan_error(content):
        # A Titan from before the proof answers its own 404: the usual cause is an upgrade
        # of this side first. Still unproven (anyone can write that body): nothing is sent.
        raise MasterUnproven(
            f"the server at {where} answers like a Titan master older than this client (it "
            "has no master proof, which this Titan needs before it sends a token), so the "
            "token was not sent: upgrade the master first (pip install -U titan-agents where "
            "it runs, then restart it), then its workers and clients")
    else:
        why = f"it answered {status}"
    raise MasterUnproven(
        f"the server at {where} did not prove it is the Titan master this token belongs to "
        f"({why}), so the token was not sent. If the master is restarting this passes; if "
        "another program holds its port, that program may be trying to collect tokens: "
        "`titan up --tls` closes this")


def connect_proven(url: str, token: str | None,
                   timeout: float) -> socket.socket | Reply | None:
    """For a plain ``http://``/``ws://`` URL and a token: a connected socket whose server
    proved it is the token's master, or the master's refusal (a :class:`Reply`). None when
    there is nothing to prove here (TLS checks the server itself; no token, nothing to
    protect): the caller connects as it would have."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "ws") or token is None or not parts.hostname:
        return None
    host = parts.netloc.rsplit("@", 1)[-1]
    sock = socket.create_connection((parts.hostname, parts.port or 80), timeout=timeout)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        refused = prove(sock, host.encode("idna"), token, url)
    except httpx.TransportError as exc:  # an OSError to a WebSocket client: "gone, retry"
        sock.close()
        raise ConnectionError(str(exc)) from exc
    except BaseException:
        sock.close()
        raise
    if refused is not None:
        sock.close()
        return refused
    sock.settimeout(None)
    return sock


def _is_titan_error(content: bytes) -> bool:
    try:
        body = json.loads(content)
    except ValueError:
        return False
    return isinstance(body, dict) and isinstance(body.get("error"), dict)
