"""httpx's transport for plain-HTTP masters, on sockets and the standard library's parser.

Every SDK call, job store write and worker request to a local master went through httpcore
and h11: ~0.2 ms of the caller's CPU per request on a 2-core VM, as much as the master's own
work for a store get (``bench/dispatch.py``). For ``http://`` this transport writes the
request in one ``sendall`` and reads the reply with :class:`http.client.HTTPResponse` (the C
parts of the standard library), over a small pool of keep-alive sockets
(:mod:`titan.client.socket_pool`); httpx's client above it (headers, timeouts, errors,
streaming) is unchanged, and ``https://`` goes to the httpcore transport it was given, so
TLS, pinning and CA files work exactly as before.

A pool belongs to the process that made it: a child forked from it (``multiprocessing``'s
fork start method, ``os.fork`` in a job script) starts with an empty pool, a fresh lock and a
fresh fallback (:func:`_after_fork_in_child`), since a socket both processes read from
hands each one the other's replies.

Errors are httpx's, chosen as httpcore chooses them, because the retry policy
(:mod:`titan.retry`) reads them: nothing sent (``ConnectError``/``ConnectTimeout``: any
method may go again) against the reply lost (``RemoteProtocolError``/``ReadError``/
``WriteError``: only a replayable request may).
"""

from __future__ import annotations

import contextlib
import http.client
import os
import socket
import ssl
import threading
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import httpx

from titan.client import stalls
from titan.client.http_wire import Reply, despite, read_reply, refused, request_head, send
from titan.client.master_check import bearer_token, prove
from titan.client.socket_pool import Connection, SocketPool

CHUNK = 1 << 16


class _Body(httpx.SyncByteStream):
    """A reply's body, read as the caller asks; the socket goes back to the pool once the
    body has been read to its end (and the server keeps the connection), else it is closed."""

    def __init__(self, pool: SocketPool, origin: tuple[str, int], conn: Connection,
                 response: http.client.HTTPResponse) -> None:
        self._pool, self._origin, self._conn, self._response = pool, origin, conn, response
        self._done = False

    def __iter__(self) -> Iterator[bytes]:
        response = self._response
        try:
            while True:
                chunk = response.read1(CHUNK) if response.length != 0 else b""
                if not chunk:
                    if response.length:  # read1 says end-of-file with bytes still owed
                        raise httpx.RemoteProtocolError(
                            "the master closed the connection before the whole reply came")
                    self._done = True
                    return
                yield chunk
        except TimeoutError as exc:
            raise httpx.ReadTimeout(str(exc) or "timed out reading the reply") from exc
        except (http.client.HTTPException, OSError) as exc:
            raise httpx.ReadError(str(exc) or type(exc).__name__) from exc

    def close(self) -> None:
        conn, self._conn = self._conn, None  # type: ignore[assignment]
        if conn is None:
            return
        response = self._response
        keep = self._done and not response.will_close
        response.close()  # its buffered reader only: the socket is ours
        if keep:
            self._pool.release(self._origin, conn)
        else:
            conn.close()


class PlainHTTPTransport(httpx.BaseTransport):
    """``http://`` on pooled sockets; anything else to ``fallback``. ``renew`` makes a
    fallback like it for a forked child (whose inherited one holds the parent's sockets);
    without it, the child's https requests go through the inherited one."""

    def __init__(self, fallback: httpx.BaseTransport, *, max_keepalive: int = 16,
                 keepalive_expiry: float = 4.0,
                 renew: Callable[[], httpx.BaseTransport] | None = None) -> None:
        #: None in a forked child until it asks for one (:meth:`_forked`).
        self._fallback: httpx.BaseTransport | None = fallback
        self._renew = renew
        self._pool = SocketPool(max_keepalive, keepalive_expiry)
        #: Guards the making of a forked child's fallback.
        self._lock = threading.Lock()
        _POOLS.add(self)

    def _forked(self) -> None:
        """In a child just forked: forget the parent's sockets, lock and fallback pool.

        The inherited descriptors are closed, which ends nothing for the parent: a socket's
        FIN goes out when its last descriptor closes (the parent still holds one), and no
        ``shutdown()`` is made. Kept open instead, they would outlive the parent's close
        (its server would see no FIN while the child lives) and leak one descriptor each.
        The locks (the pool's, and the one guarding the fallback) are made anew: another
        thread of the parent may have held one at the fork, and no thread of the child would
        ever release it."""
        self._lock = threading.Lock()
        self._pool.forked()
        if self._renew is not None and not self._pool.closed:
            # The old fallback is dropped, not closed: httpcore's close only closes its
            # sockets' descriptors too, but takes its pool's lock, which may be held. The
            # new one is made at the child's first https request, not here: it loads the
            # CA bundle (~100 ms), and most children never ask (a worker's subprocess job
            # runs these hooks between its fork and its exec: every fresh job paid it).
            self._fallback = None

    def close(self) -> None:
        self._pool.close()
        if self._fallback is not None:
            self._fallback.close()

    # ------------------------------------------------------------------ one exchange

    def _proven(self, conn: Connection, origin: tuple[str, int], host: bytes,
                token: str | None, url: str, timeout: float | None) -> Reply | None:
        """Before a token's first request on a socket: the server's proof that it is the
        master (:mod:`titan.client.master_check`), or the master's refusal to answer with.
        A refusal leaves the socket as the master left it (in the pool, or closed)."""
        if token is None or conn.proven == token:
            return None
        conn.sock.settimeout(timeout)  # a small exchange, bounded as a connection is
        refused = prove(conn.sock, host or _host_header(origin), token, url)
        if refused is None:
            conn.proven = token
        elif refused.headers.get("connection", "").lower() == "close":
            conn.close()
        else:
            self._pool.release(origin, conn)
        return refused

    def _fallback_transport(self) -> httpx.BaseTransport:
        fallback = self._fallback
        if fallback is None:
            with self._lock:
                if self._fallback is None:
                    assert self._renew is not None  # only _forked leaves it None
                    self._fallback = self._renew()
                fallback = self._fallback
        return fallback

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        if url.scheme != "http":
            return self._fallback_transport().handle_request(request)
        timeouts: dict[str, Any] = request.extensions.get("timeout") or {}
        origin = (url.host, url.port or 80)
        head = _head(request)
        host = request.headers.get("host", "").encode("latin-1")
        alive = _alive(origin, host) if request.extensions.get(stalls.WATCH) else None
        conn = self._pool.checkout(origin, timeouts.get("connect"))
        sock = conn.sock
        with _failing(conn):
            refused = self._proven(conn, origin, host, bearer_token(
                request.headers.get("authorization")), str(url),
                _proof_timeout(timeouts.get("connect"), timeouts.get("read")))
            if refused is not None:
                return httpx.Response(refused.status_code, headers=refused.raw_headers,
                                      content=refused.content)
            sock.settimeout(timeouts.get("write"))
            sent, failed = _send(sock, head, request, alive)
            sock.settimeout(timeouts.get("read"))
            # Watched, every read of the reply (its head, each piece of a streamed body)
            # first makes sure the master is still there when it is slow to come.
            source: Any = sock if alive is None else \
                stalls.WatchedSocket(sock, timeouts.get("read"), alive)
            response = http.client.HTTPResponse(source, method=request.method)
            despite(response.begin, failed)
            if not sent:  # the server answered before the whole body came: not reusable
                response.will_close = True
        headers = [(k.encode("latin-1"), v.encode("latin-1"))
                   for k, v in response.msg.items()]
        return httpx.Response(response.status, headers=headers,
                              stream=_Body(self._pool, origin, conn, response),
                              extensions={"http_version": b"HTTP/1.1",
                                          "reason_phrase": response.reason.encode("latin-1")})


    def exchange(self, origin: tuple[str, int], head: bytes, body: bytes | None, *,
                 method: str, url: str, connect_timeout: float | None,
                 read_timeout: float | None, host: bytes = b"",
                 token: str | None = None, watch: bool = False) -> Reply:
        """One whole request and reply without httpx's client around it: the SDK's calls
        (:meth:`titan.client.transport.Transport.call`). ``head`` is the request line and
        headers, ending in the blank line (:func:`request_head`); ``token``, the one in its
        Authorization header, and ``host``, its Host header. ``watch``: a reply silent for a
        while makes the master be asked whether it is still there, and one that froze ends
        the wait as a read timeout (:mod:`titan.client.stalls`: another master may lead)."""
        conn = self._pool.checkout(origin, connect_timeout)
        sock = conn.sock
        with _failing(conn):
            refused = self._proven(conn, origin, host, token, url,
                                   _proof_timeout(connect_timeout, read_timeout))
            if refused is not None:
                return refused
            sock.settimeout(read_timeout)
            alive = _alive(origin, host) if watch else None
            sent, failed = send(sock, head + body if body else head, alive)
            if alive is not None and failed is None:
                stalls.await_reply(sock, read_timeout, alive)
            with sock.makefile("rb") as fp:
                status, headers, content, keep = despite(lambda: read_reply(fp, method),
                                                         failed)
        if keep and sent:
            self._pool.release(origin, conn)
        else:
            conn.close()
        return Reply(status, headers, content, url)


def tcp_transport(*, max_connections: int, max_keepalive: int,
                  verify: ssl.SSLContext | bool = True) -> httpx.BaseTransport:
    """A pooled transport with TCP_NODELAY: without it, a request written as headers then
    body waits for the server's delayed ACK (about 40 ms per call on Linux). Plain HTTP takes
    the lean path of :mod:`titan.client.plain_http`; https goes through httpcore, ``verify``
    saying how the master is checked (:mod:`titan.client.tls`)."""
    def tls() -> httpx.BaseTransport:
        return httpx.HTTPTransport(
            limits=httpx.Limits(max_connections=max_connections,
                                max_keepalive_connections=max_keepalive, keepalive_expiry=4.0),
            socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
            verify=verify,
        )
    return PlainHTTPTransport(tls(), max_keepalive=max_keepalive, keepalive_expiry=4.0,
                              renew=tls)


#: Every pool of this process, for :func:`_after_fork_in_child`.
_POOLS: weakref.WeakSet[PlainHTTPTransport] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    """A forked child's pools start empty (:meth:`PlainHTTPTransport._forked`): sharing a
    keep-alive socket with the parent, each process read replies meant for the other (a
    store_get answered with another process's value, or with the head of its reply)."""
    for pool in list(_POOLS):
        pool._forked()


os.register_at_fork(after_in_child=_after_fork_in_child)


def _head(request: httpx.Request) -> bytes:
    """The request line and headers, refusing what would split them (a CR or LF in a
    header: h11 refused those itself; a token read from the environment must not smuggle a
    header in)."""
    return request_head(request.method, request.url.raw_path, list(request.headers.raw))


@contextlib.contextmanager
def _failing(conn: Connection) -> Iterator[None]:
    """On any failure of an exchange: the connection closed (its state is unknown), and
    httpx's error for what went wrong raised."""
    try:
        yield
    except BaseException as exc:
        conn.close()
        mapped = _mapped(exc)
        if mapped is exc:
            raise
        raise mapped from exc


def _proof_timeout(connect: float | None, read: float | None) -> float | None:
    """How long a server may take to prove it is the master: as long as a connection may
    take. Bounded by the read timeout instead (60 s), a leader that froze held every new
    connection, and `titan status` given its standby as well, for a minute before the
    standby that took over was asked (a fleet QA pass)."""
    bounds = [t for t in (connect, read) if t is not None]
    return min(bounds) if bounds else None


def _host_header(origin: tuple[str, int]) -> bytes:
    host, port = origin
    return (f"[{host}]" if ":" in host else host).encode("idna") + b":%d" % port


def _alive(origin: tuple[str, int], host: bytes) -> Callable[[], bool]:
    """Whether the master at ``origin`` still answers (:func:`titan.client.stalls.answers`)."""
    return lambda: stalls.answers(origin, host or _host_header(origin))


def _send(sock: socket.socket, head: bytes, request: httpx.Request,
          alive: Callable[[], bool] | None = None) -> tuple[bool, OSError | None]:
    """The request written as :func:`~titan.client.http_wire.send` writes it: a streamed
    body (a file upload) stops at the server's early answer too, and with ``alive`` at a
    master that froze."""
    stream = request.stream
    if isinstance(stream, httpx.ByteStream):  # the usual case: all in one segment
        return send(sock, head + b"".join(stream), alive)
    chunked = request.headers.get("transfer-encoding", "").lower() == "chunked"
    sent, failed = send(sock, head, alive)
    for chunk in stream:  # type: ignore[union-attr]  # a sync stream: this is a sync client
        if not sent:
            break
        if chunk:
            if refused(sock):
                return False, None
            sent, failed = send(sock, b"%x\r\n%s\r\n" % (len(chunk), chunk) if chunked
                                else chunk, alive)
    if sent and chunked:
        sent, failed = send(sock, b"0\r\n\r\n", alive)
    return sent, failed


def _mapped(exc: BaseException) -> BaseException:
    """httpx's error for what went wrong after the connection was made."""
    if isinstance(exc, httpx.HTTPError):
        return exc
    if isinstance(exc, TimeoutError):
        return httpx.ReadTimeout(str(exc) or "timed out")
    if isinstance(exc, http.client.RemoteDisconnected | http.client.BadStatusLine
                  | http.client.IncompleteRead | ConnectionResetError):
        return httpx.RemoteProtocolError(str(exc) or type(exc).__name__)
    if isinstance(exc, BrokenPipeError):
        return httpx.WriteError(str(exc) or "the connection was closed while writing")
    if isinstance(exc, OSError | http.client.HTTPException):
        return httpx.ReadError(str(exc) or type(exc).__name__)
    return exc
