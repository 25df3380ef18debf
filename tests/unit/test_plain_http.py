"""The SDK's lean HTTP path (titan/client/plain_http.py, http_wire.py) against a scripted
server on a real socket: replies framed every way HTTP/1.1 frames them, keep-alive reuse, a
connection the server closed while idle, and the errors the retry policy reads."""

from __future__ import annotations

import contextlib
import io
import json
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator

import httpx
import pytest
from tests.fake_masters import answer_proof

from titan import master_proof
from titan.client.http_wire import read_reply, request_head
from titan.client.lean_requests import LeanRequests
from titan.client.plain_http import PlainHTTPTransport

Handler = Callable[[socket.socket, bytes], bool]  # (conn, request) -> keep the connection?


class Server:
    """Accepts connections; answers each request with ``handler`` and records what came.
    Proves it holds the token ``t`` first, as a master does (tests/fake_masters.py); those
    exchanges are kept in ``proofs``, apart."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.requests: list[bytes] = []
        self.proofs: list[bytes] = []
        self.connections = 0
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):  # a client may hang up mid-request
            buf = b""
            while True:
                while b"\r\n\r\n" not in buf:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buf += data
                head, _, buf = buf.partition(b"\r\n\r\n")
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                while len(buf) < length:
                    buf += conn.recv(65536)
                body, buf = buf[:length], buf[length:]
                if head.startswith(b"GET " + master_proof.PATH.encode() + b"?"):
                    self.proofs.append(head)
                    status, answer = answer_proof(head.split(b" ")[1].decode())
                    data = json.dumps(answer).encode()
                    conn.sendall(b"HTTP/1.1 %d -\r\ncontent-length: %d\r\n\r\n%s"
                                 % (status, len(data), data))
                    continue
                self.requests.append(head + b"\r\n\r\n" + body)
                if not self.handler(conn, head):
                    return


@pytest.fixture
def lean() -> Iterator[Callable[[Handler], tuple[Server, LeanRequests]]]:
    made: list[tuple[Server, PlainHTTPTransport]] = []

    def make(handler: Handler) -> tuple[Server, LeanRequests]:
        server = Server(handler)
        transport = PlainHTTPTransport(httpx.HTTPTransport())
        made.append((server, transport))
        return server, LeanRequests(transport, {"Authorization": "Bearer t"}, 5.0)

    yield make
    for server, transport in made:
        server.sock.close()
        transport.close()


def json_reply(body: bytes = b'{"ok":true}') -> Handler:
    def handler(conn: socket.socket, _head: bytes) -> bool:
        conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                     b"content-length: %d\r\n\r\n%s" % (len(body), body))
        return True
    return handler


def test_a_request_is_written_as_httpx_would_and_the_connection_is_reused(lean) -> None:
    server, client = lean(json_reply())
    url = f"http://127.0.0.1:{server.port}"
    reply = client.send(url, "PUT", "/api/v1/store/values/a%2Fb ü",
                        {"wait": True, "fast": False, "skip": None, "n": 2.5},
                        {"value": "é"}, None, {"Idempotency-Key": "k1"}, None)
    assert reply.status_code == 200 and reply.json() == {"ok": True}
    assert reply.url == f"{url}/api/v1/store/values/a%2Fb ü"
    client.send(url, "GET", "/api/v1/health", None, None, None, None, None)
    assert server.connections == 1  # kept alive
    assert len(server.proofs) == 1  # asked once, before the connection's first token
    first = server.requests[0]
    assert first.startswith(
        b"PUT /api/v1/store/values/a%2Fb%20%C3%BC?wait=true&fast=false&n=2.5 HTTP/1.1\r\n")
    assert b"\r\nhost: 127.0.0.1:%d\r\n" % server.port in first
    assert b"\r\nauthorization: Bearer t\r\n" in first
    assert b"\r\nidempotency-key: k1\r\n" in first
    assert b"\r\ncontent-type: application/json\r\n" in first
    assert first.endswith(b'\r\n\r\n{"value":"\xc3\xa9"}')
    # A body-less POST says so (uvicorn would wait for a body otherwise).
    client.send(url, "POST", "/x", None, None, None, None, None)
    assert b"\r\ncontent-length: 0\r\n" in server.requests[-1]


def test_a_connection_the_server_closed_while_idle_is_not_reused(lean) -> None:
    def once(conn: socket.socket, head: bytes) -> bool:
        json_reply()(conn, head)
        return False  # then close, as a server whose keep-alive ran out does

    server, client = lean(once)
    url = f"http://127.0.0.1:{server.port}"
    for _ in range(3):
        assert client.send(url, "POST", "/x", None, {}, None, None, None).status_code == 200
        time.sleep(0.1)  # idle: the server's close has arrived before the next call
    assert server.connections == 3


def test_a_header_that_would_split_the_request_is_refused() -> None:
    with pytest.raises(httpx.LocalProtocolError):
        request_head("GET", b"/x", [(b"authorization", b"Bearer t\r\nX-Admin: 1")])
    with pytest.raises(httpx.LocalProtocolError):
        request_head("GET", b"/x y", [])


@pytest.mark.parametrize(("wire", "status", "body", "keep"), [
    (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", 200, b"hello", True),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
     b"3;ext=1\r\nhel\r\n2\r\nlo\r\n0\r\nTrailer: x\r\n\r\n", 200, b"hello", True),
    (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
     200, b"ok", True),
    (b"HTTP/1.1 204 No Content\r\n\r\n", 204, b"", True),
    (b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok", 200, b"ok",
     False),
    (b"HTTP/1.0 200 OK\r\n\r\nuntil the end", 200, b"until the end", False),
], ids=["length", "chunked", "interim", "no-content", "close", "close-delimited"])
def test_replies_framed_every_way(wire: bytes, status: int, body: bytes, keep: bool) -> None:
    assert read_reply(io.BufferedReader(io.BytesIO(wire)), "GET")[::2] == (status, body)
    assert read_reply(io.BufferedReader(io.BytesIO(wire)), "GET")[3] is keep


@pytest.mark.parametrize("wire", [
    b"",
    b"SSH-2.0-OpenSSH\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
    b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"HTTP/1.1 200 OK\r\nX: " + b"a" * 70_000 + b"\r\n\r\n",
], ids=["nothing", "not-http", "truncated", "bad-header", "bad-length", "bad-chunk", "long"])
def test_a_broken_reply_is_a_protocol_error_the_retry_policy_reads_as_lost(wire: bytes) -> None:
    with pytest.raises(httpx.RemoteProtocolError):
        read_reply(io.BufferedReader(io.BytesIO(wire)), "GET")


def test_nothing_listening_is_a_connect_error(lean) -> None:
    _, client = lean(json_reply())
    with socket.socket() as unused:  # a port bound by no listener
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
        with pytest.raises(httpx.ConnectError):
            client.send(f"http://127.0.0.1:{port}", "GET", "/x", None, None, None, None, None)


def test_a_server_that_does_not_answer_is_a_read_timeout(lean) -> None:
    server, client = lean(lambda conn, head: True)  # reads the request, never answers
    with pytest.raises(httpx.ReadTimeout):
        client.send(f"http://127.0.0.1:{server.port}", "GET", "/x", None, None, None, None,
                    0.2)


def test_httpx_on_the_transport_streams_and_keeps_alive() -> None:
    payload = b"x" * 300_000
    server = Server(json_reply(payload))
    try:
        with httpx.Client(transport=PlainHTTPTransport(httpx.HTTPTransport())) as http:
            url = f"http://127.0.0.1:{server.port}/big"
            with http.stream("GET", url) as response:
                assert b"".join(response.iter_bytes()) == payload
            assert http.get(url).content == payload
            assert http.post(url, content=iter([b"a", b"b"])).status_code == 200
        assert server.connections == 1
        # A body of unknown length goes chunked (this server reads the chunks as a request,
        # after it has answered the head: wait for its thread to record them).
        deadline = time.monotonic() + 5
        while len(server.requests) < 4 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(server.requests) == 4
        assert b"transfer-encoding: chunked" in server.requests[-2].lower()
        assert server.requests[-1] == b"1\r\na\r\n1\r\nb\r\n0\r\n\r\n"
    finally:
        server.sock.close()


def test_a_forked_child_makes_its_https_pool_at_its_first_https_request_not_at_the_fork() -> None:
    # Made in the at-fork hook, it loaded the CA bundle (~100 ms) in every child: a worker's
    # subprocess job runs those hooks between its fork and its exec, and paid it for nothing.
    made: list[int] = []

    def renew() -> httpx.BaseTransport:
        made.append(os.getpid())
        return httpx.MockTransport(lambda request: httpx.Response(204))

    transport = PlainHTTPTransport(renew(), renew=renew)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report what it saw, then leave without Python's exit hooks
        try:
            at_fork = len(made)
            status = transport.handle_request(httpx.Request("GET", "https://example.test/")).status_code
            again = transport.handle_request(httpx.Request("GET", "https://example.test/"))
            os.write(w, f"{at_fork} {len(made)} {status} {again.status_code}".encode())
        finally:
            os._exit(0)
    os.close(w)
    said = os.read(r, 100).decode()
    os.close(r)
    os.waitpid(pid, 0)
    assert said == "1 2 204 204", said  # none made at the fork; one at the first request
    assert made == [os.getpid()]  # the parent's own, untouched
