"""A master that froze mid-reply, or mid-request, told from one that is only slow
(client/stalls.py), and what the SDK's streamed calls (file uploads and downloads) do then."""

from __future__ import annotations

import io
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.fake_masters import FakeMaster, masters

from titan import errors
from titan.client import TitanClient, http_wire, stalls


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


def test_a_body_that_stops_coming_ends_once_the_master_stops_answering(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A streamed reply read through WatchedReader: a slow piece is waited for while the
    master answers; a body that stops mid-way, its master gone silent, ends in seconds."""
    monkeypatch.setattr(stalls, "STALL_AFTER", 0.2)
    ours, theirs = socket.socketpair()
    with ours, theirs:
        there = [True]
        body = io.BufferedReader(stalls.WatchedReader(ours, 30, lambda: there[0]), 1024)
        theirs.sendall(b"first")
        assert body.read1(1024) == b"first"
        threading.Timer(0.5, theirs.sendall, (b"second",)).start()  # slow, not stopped
        assert body.read1(1024) == b"second"
        there[0] = False  # frozen: the rest never comes, and the master answers nothing
        started = time.monotonic()
        with pytest.raises(httpx.ReadTimeout, match="stopped"):
            body.read1(1024)
        assert time.monotonic() - started < 3
        body.close()
        assert ours.fileno() != -1  # the pool's socket: closing the reader leaves it open


def test_a_request_the_master_stops_taking_ends_once_it_stops_answering(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """An upload to a master that froze: its kernel's buffers fill, then nothing more goes.
    Watched, the write ends as a write timeout once the master does not answer either."""
    monkeypatch.setattr(stalls, "STALL_AFTER", 0.2)
    ours, theirs = socket.socketpair()
    with ours, theirs:
        ours.settimeout(30)
        started = time.monotonic()
        with pytest.raises(httpx.WriteTimeout, match="stopped"):
            http_wire.send(ours, b"x" * (64 << 20), lambda: False)  # nobody reads theirs
        assert time.monotonic() - started < 3
        asked: list[bool] = []

        def still_there() -> bool:
            asked.append(True)
            return True

        fresh, peer = socket.socketpair()
        with fresh, peer:
            fresh.settimeout(30)

            def drain() -> None:  # slow to start, then reads it all: the write goes on
                time.sleep(0.6)
                got = 0
                while got < 8 << 20:
                    got += len(peer.recv(1 << 20))
            reader = threading.Thread(target=drain)
            reader.start()
            assert http_wire.send(fresh, b"y" * (8 << 20), still_there) == (True, None)
            reader.join(30)
            assert asked  # it was asked, it answered, and the wait went on
            assert fresh.gettimeout() == 30  # the write timeout, as it was given


@pytest.fixture
def two(clean_client_env: Path, frozen: tuple[str, int],
        monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, FakeMaster]]:
    """A frozen master first (connections taken, nothing answered), then a leader."""
    monkeypatch.setattr(stalls, "STALL_AFTER", 0.2)
    monkeypatch.setattr(stalls, "PROBE_TIMEOUT", 0.5)
    monkeypatch.setenv("TITAN_MASTER_RESTART_GRACE", "5")
    with masters("leader") as (leader,):
        yield f"http://{frozen[0]}:{frozen[1]}", leader


@pytest.mark.parametrize("size", [1 << 10, 32 << 20])  # taken whole by its kernel, or not
def test_an_upload_to_a_frozen_master_goes_on_only_when_it_may_go_again(
        two: tuple[str, FakeMaster], tmp_path: Path, size: int) -> None:
    """A file upload goes through httpx's client, not the lean path: watched all the same.
    A PUT may go again: to the next master, in seconds. A POST without an idempotency key
    may not: reported, in seconds too, and sent nowhere else."""
    stuck, leader = two
    upload = tmp_path / "data.bin"
    upload.write_bytes(os.urandom(size))
    with TitanClient(url=[stuck, leader.url]) as client:
        started = time.monotonic()
        client.upload_file(upload)
        assert time.monotonic() - started < 5 and client.url == leader.url
        assert leader.seen("PUT") == ["/api/v1/files/data.bin"]
    with TitanClient(url=[stuck, leader.url]) as client:
        started = time.monotonic()
        with pytest.raises(errors.ConnectionFailed, match="did not answer in time"):
            client._transport.send("POST", "/runs/batch", body=upload)
        assert time.monotonic() - started < 5
        assert leader.seen("POST") == []


def test_a_download_from_a_frozen_master_is_taken_from_the_next(
        two: tuple[str, FakeMaster], tmp_path: Path) -> None:
    stuck, leader = two
    leader.routes["GET /api/v1/files/notes.txt"] = lambda m, req: (200, b"the notes")
    with TitanClient(url=[stuck, leader.url]) as client:
        started = time.monotonic()
        saved = client.fetch_artifact("notes.txt", tmp_path / "notes.txt")
        assert time.monotonic() - started < 5 and client.url == leader.url
    assert Path(saved).read_bytes() == b"the notes"
