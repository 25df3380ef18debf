"""A TCP proxy a chaos test can break: cut every connection and refuse new ones for a while
(what a client sees when its server restarts or its network drops), or stall them (bytes stop
flowing, sockets stay open: a partition the peers have not noticed).

Threads and blocking sockets, so it needs nothing but the standard library and works for any
protocol on top (PostgreSQL's, HTTP, WebSocket).
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading
import time


class TcpProxy:
    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(256)
        self.port = int(self._listener.getsockname()[1])
        self._lock = threading.Lock()
        self._pairs: set[tuple[socket.socket, socket.socket]] = set()
        self._refuse_until = 0.0
        self._stalled = threading.Event()
        self._closed = False
        #: Cut each connection once it has carried this many bytes from the server (a
        #: server killed mid-reply), when set.
        self.cut_after: int | None = None
        #: Connections cut (each side counted once) and refused, for the test's report.
        self.cut_count = 0
        self.refused = 0
        threading.Thread(target=self._accept, name="proxy-accept", daemon=True).start()

    # -- what a test does ---------------------------------------------------------------------
    def cut(self, down_for: float = 0.0) -> None:
        """Close every proxied connection at once and refuse new ones for ``down_for`` s."""
        with self._lock:
            self._refuse_until = time.monotonic() + down_for
            pairs, self._pairs = self._pairs, set()
        for a, b in pairs:
            for s in (a, b):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                with contextlib.suppress(OSError):
                    s.close()
        self.cut_count += len(pairs)

    def stall(self) -> None:
        """Stop forwarding bytes in both directions; sockets stay open."""
        self._stalled.set()

    def resume(self) -> None:
        self._stalled.clear()

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(OSError):
            self._listener.close()
        self.cut()

    # -- plumbing -------------------------------------------------------------------------------
    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if time.monotonic() < self._refuse_until:
                self.refused += 1
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            for s in (client, upstream):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                s.settimeout(None)
            pair = (client, upstream)
            with self._lock:
                self._pairs.add(pair)
            threading.Thread(target=self._pump, args=(pair,), name="proxy-pump",
                             daemon=True).start()

    def _pump(self, pair: tuple[socket.socket, socket.socket]) -> None:
        a, b = pair
        peer = {a: b, b: a}
        carried = 0
        try:
            while True:
                if self._stalled.is_set():
                    time.sleep(0.05)
                    if pair not in self._pairs:
                        return
                    continue
                readable, _, _ = select.select([a, b], [], [], 0.2)
                for s in readable:
                    data = s.recv(65536)
                    if not data:
                        return
                    peer[s].sendall(data)
                    if s is b:
                        carried += len(data)
                        if self.cut_after is not None and carried >= self.cut_after:
                            return
        except (OSError, ValueError):
            return
        finally:
            with self._lock:
                self._pairs.discard(pair)
            for s in (a, b):
                with contextlib.suppress(OSError):
                    s.close()
