"""A master that froze mid-reply, told from one that is only slow (client/stalls.py)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from titan.client import stalls


@pytest.fixture
def frozen() -> Iterator[tuple[str, int]]:
    """A listening socket nobody accepts on: the kernel takes connections, nothing answers."""
    server = socket.create_server(("127.0.0.1", 0), backlog=8)
    try:
        yield server.getsockname()[:2]
    finally:
        server.close()


@pytest.fixture
def alive() -> Iterator[tuple[str, int]]:
    """A server that answers every connection with a line."""
    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            with conn:
                conn.recv(1024)
                conn.sendall(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n")
    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[:2]
    finally:
        stop.set()
        thread.join(5)
        server.close()


def test_answers_tells_a_live_server_from_a_frozen_or_gone_one(
        frozen: tuple[str, int], alive: tuple[str, int]) -> None:
    assert stalls.answers(alive, b"h") is True  # a standby's 503 is an answer
    started = time.monotonic()
    assert stalls.answers(frozen, b"h", timeout=0.5) is False
    assert time.monotonic() - started < 3
    gone = socket.create_server(("127.0.0.1", 0))
    port = gone.getsockname()[1]
    gone.close()
    assert stalls.answers(("127.0.0.1", port), b"h", timeout=0.5) is False


def test_a_silent_reply_ends_only_once_the_master_stops_answering(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stalls, "STALL_AFTER", 0.2)
    ours, theirs = socket.socketpair()
    with ours, theirs:
        asked: list[float] = []

        def still_there() -> bool:
            asked.append(time.monotonic())
            if len(asked) == 3:  # a slow reply comes after two checks found the master there
                theirs.sendall(b"HTTP/1.1 200 OK\r\n")
            return True
        stalls.await_reply(ours, 30, still_there)
        assert len(asked) == 3 and ours.gettimeout() is not None and ours.gettimeout() <= 30
        stuck, peer = socket.socketpair()
        with stuck, peer, pytest.raises(httpx.ReadTimeout, match="stopped"):
            stalls.await_reply(stuck, 30, lambda: False)
        started = time.monotonic()
        quiet, _peer = socket.socketpair()
        with quiet, _peer, pytest.raises(httpx.ReadTimeout, match="timed out"):
            stalls.await_reply(quiet, 0.5, lambda: True)  # the read timeout still bounds it
        assert time.monotonic() - started < 3
