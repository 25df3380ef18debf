"""Streamed calls (downloads, uploads) to a leader that froze: real `titan master` processes on
one PostgreSQL database, the SDK given both, the leader paused with SIGSTOP while a file goes
to or from it. The call is found stuck within seconds (client/stalls.py), and goes to the
standby that took over meanwhile when it may go again, instead of waiting out its read or
write timeout (60 s) against a master that will never answer."""

from __future__ import annotations

import hashlib
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import fresh_postgres_database
from tests.integration.test_standby_masters import Master
from titan.client import TitanClient

Start = Callable[..., Master]
#: Larger than what loopback's socket buffers hold in flight (a few MiB each way), so the
#: transfer is still under way when the leader is paused.
SIZE = 48 << 20


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Start]:
    started: list[Master] = []
    with fresh_postgres_database("titan_standby_streams") as url:
        def run(name: str) -> Master:
            m = Master(tmp_path, name, url, dict(os.environ, PYTHONUNBUFFERED="1",
                                                 TITAN_BLOB_STORE="database",
                                                 TITAN_LEADER_TIMEOUT="2"))
            started.append(m)
            return m
        try:
            yield run
        finally:
            for m in started:
                m.stop()


@pytest.fixture
def big(tmp_path: Path) -> tuple[Path, str]:
    path = tmp_path / "big.bin"
    data = os.urandom(SIZE)
    path.write_bytes(data)
    return path, hashlib.sha256(data).hexdigest()


def _two(start: Start) -> tuple[Master, Master]:
    a = start("a")
    a.wait_answering()
    b = start("b")
    b.wait_answering()
    return a, b


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def test_a_download_from_a_leader_that_froze_mid_body_starts_again_on_the_new_leader(
        start: Start, big: tuple[Path, str], tmp_path: Path) -> None:
    """The leader is paused while the file's body streams to the client: its reply stops
    mid-body, its sockets stay open. The download is written through a temp file, so it can
    start again from nothing: it does, from the standby that took over."""
    a, b = _two(start)
    source, sha = big
    out = tmp_path / "out"
    out.mkdir()
    paused = threading.Event()

    def pause_mid_body() -> None:
        # The download's temp file beside the target (titan.atomic) holds its first bytes:
        # the body is on its way from a.
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if any(p.stat().st_size > 0 for p in out.glob(".*.tmp")):
                os.kill(a.proc.pid, signal.SIGSTOP)
                paused.set()
                return
            time.sleep(0.002)

    with TitanClient(url=[a.url, b.url], token=a.token) as client:
        client.upload_file(source)
        assert client.url == a.url
        pauser = threading.Thread(target=pause_mid_body, daemon=True)
        pauser.start()
        try:
            started = time.monotonic()
            saved = Path(client.fetch_artifact(source.name, out / "copy.bin"))
            took = time.monotonic() - started
            pauser.join(5)
            assert paused.is_set(), "the download ended before the leader could be paused"
            assert _sha256(saved) == sha and client.url == b.url
            assert [p.name for p in out.iterdir()] == ["copy.bin"]  # no temp file left
            assert took < 30, f"{took:.1f} s before the download was taken from the new leader"
        finally:
            os.kill(a.proc.pid, signal.SIGCONT)
    assert a.proc.wait(timeout=30) == 75, a.log()  # woken, it finds itself replaced


def test_an_upload_to_a_leader_that_froze_goes_to_the_new_leader(
        start: Start, big: tuple[Path, str]) -> None:
    """The leader is paused as a file is being uploaded to it on a pooled connection: its
    kernel takes the first megabytes, then the write blocks. A PUT may go again: the upload
    goes to the standby that took over, in seconds, not after the write timeout."""
    a, b = _two(start)
    source, sha = big
    with TitanClient(url=[a.url, b.url], token=a.token) as client:
        client.store_put("k", "before the pause")  # a proven connection to a, pooled
        os.kill(a.proc.pid, signal.SIGSTOP)
        try:
            started = time.monotonic()
            reply = client.upload_file(source)
            took = time.monotonic() - started
            assert reply["sha256"] == sha and client.url == b.url  # b has the whole file
            assert took < 30, f"{took:.1f} s before the upload went to the new leader"
        finally:
            os.kill(a.proc.pid, signal.SIGCONT)
    assert a.proc.wait(timeout=30) == 75, a.log()
