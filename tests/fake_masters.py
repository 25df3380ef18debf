"""Masters that lead or stand by, over real HTTP on free loopback ports: for the failover of
the SDK's transport and the worker's connection (a standby answers as docs/api.md says:
``503 not_leader`` naming the leader, ``Retry-After: 1``, ``X-Titan-Leader``).

A :class:`FakeMaster` answers every route; what it answers is set by its ``role`` (which a
test may change while clients run, as a failover would) and its ``routes`` (a leader's
answers by ``"METHOD /api/v1/path"``; anything else gets ``200 {"master": url, ...}``). A
leader proves it holds the tokens in its ``tokens`` (titan/master_proof.py), as a real one
does before a client sends one; those exchanges are kept apart, in ``proofs``.
:func:`refusing_url` is an address where nothing listens.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from titan import master_proof

Route = Callable[["FakeMaster", dict[str, Any]], tuple[int, Any]]


def refusing_url() -> str:
    """The URL of a loopback port nothing listens on: connections are refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def standby_body(leader: str | None, epoch: int = 7) -> dict[str, Any]:
    message = (f"this Titan master is a standby; the leader is at {leader}" if leader
               else "this Titan master is a standby and no leader is known yet")
    return {"error": {"code": "not_leader", "message": message,
                      "details": {"leader": leader, "epoch": epoch}}}


#: The tokens the tests' clients and workers use, which a fake leader proves it holds.
TOKENS = ("t", "wt", "secret")


def answer_proof(path: str, tokens: set[str] | tuple[str, ...] = TOKENS) -> tuple[int, Any]:
    """A master's answer to ``GET /api/v1/master-proof?nonce=&ref=`` holding ``tokens``."""
    query = parse_qs(urlsplit(path).query)
    nonce, ref = query.get("nonce", [""])[0], query.get("ref", [""])[0]
    held = [t for t in tokens if master_proof.token_ref(t) == ref]
    if not held:
        return 401, {"error": {"code": "unauthorized", "message": "unknown or revoked token",
                               "details": {}}}
    return 200, {"proof": master_proof.proof(master_proof.token_hash(held[0]), nonce)}


class FakeMaster:
    """One master: ``role`` is ``"leader"`` or ``"standby"`` (naming ``leader``)."""

    def __init__(self, role: str = "leader", leader: str | None = None,
                 *, leader_in_header_only: bool = False) -> None:
        self.role = role
        self.leader = leader
        #: Name the leader only in X-Titan-Leader (the body's ``details.leader`` null).
        self.leader_in_header_only = leader_in_header_only
        self.routes: dict[str, Route] = {}
        #: The tokens it proves it holds (GET /api/v1/master-proof), and the proofs asked.
        self.tokens: set[str] = set(TOKENS)
        self.proofs: list[str] = []
        #: Every request received: (method, path with query, decoded JSON body, else its bytes,
    #: or None).
        self.requests: list[tuple[str, str, Any]] = []
        self.lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        master = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                with master.lock:
                    master._connections.add(self.connection)

            def finish(self) -> None:
                with master.lock:
                    master._connections.discard(self.connection)
                super().finish()

            def log_message(self, *args: Any) -> None:
                pass

            def _answer(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:  # a file's bytes (an upload), kept as they came
                    body = raw
                proof = self.path.startswith(master_proof.PATH + "?")
                with master.lock:
                    (master.proofs.append(self.path) if proof
                     else master.requests.append((method, self.path, body)))
                    role, leader = master.role, master.leader
                headers: dict[str, str] = {}
                if proof and role != "standby":
                    status, reply = master.prove(self.path)
                elif role == "standby":
                    status: int = 503
                    reply: Any = standby_body(None if master.leader_in_header_only else leader)
                    headers["Retry-After"] = "1"
                    if leader:
                        headers["X-Titan-Leader"] = leader
                    if self.headers.get("Upgrade", "").lower() == "websocket":
                        status, reply = 403, b""  # refused before the handshake
                else:
                    route = master.routes.get(f"{method} {self.path.split('?')[0]}")
                    status, reply = route(master, {"path": self.path, "body": body}) if route \
                        else (200, {"master": master.url, "method": method, "path": self.path})
                data = reply if isinstance(reply, bytes) else json.dumps(reply).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                self._answer("GET")

            def do_POST(self) -> None:
                self._answer("POST")

            def do_PUT(self) -> None:
                self._answer("PUT")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True).start()

    def prove(self, path: str) -> tuple[int, Any]:
        with self.lock:
            tokens = set(self.tokens)
        return answer_proof(path, tokens)

    def seen(self, method: str | None = None) -> list[str]:
        """The paths received (of one method, if given)."""
        with self.lock:
            return [p for m, p, _ in self.requests if method is None or m == method]

    def drop_connections(self) -> None:
        """Close the connections open now (clients connect, and prove, again)."""
        with self.lock:
            connections = list(self._connections)
        for conn in connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self) -> None:
        """Stop listening and drop the open connections: from now on connections are
        refused, as by a master that died."""
        self.server.shutdown()
        self.server.server_close()
        with self.lock:
            connections, self._connections = self._connections, set()
        for conn in connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


@contextmanager
def masters(*roles: str) -> Iterator[list[FakeMaster]]:
    """Start one :class:`FakeMaster` per role (``"leader"``/``"standby"``); every standby
    names the first leader. All are closed afterwards."""
    made = [FakeMaster(role) for role in roles]
    leader = next((m.url for m in made if m.role == "leader"), None)
    for m in made:
        m.leader = leader
    try:
        yield made
    finally:
        for m in made:
            m.close()
