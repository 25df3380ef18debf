"""A blob store out of reach: an S3 server stopped, a directory's mount gone. Every call that
needs it raises BlobStoreUnavailable (503, said once on the log), never the driver's error
(which the master answered as a 500 "bug" with a traceback), nor "no blob" for a blob merely
out of reach; and once the store is back, the same calls work with nothing reopened.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from tests.moto_s3 import AWS_ENV, s3_server
from titan.errors import BlobStoreUnavailable
from titan.storage.blobs import BlobSettings, BlobStore, open_blob_store


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    yield data


def _write(store: BlobStore, data: bytes) -> str:
    return asyncio.run(store.write(_chunks(data)))[0]


def _all_refused(store: BlobStore, sha: str, reason: str) -> list[BlobStoreUnavailable]:
    """Every kind of call, each refused as unavailable; the refusals."""
    calls: list[Callable[[], object]] = [
        lambda: store.size(sha), lambda: store.present([sha]), lambda: store.read_bytes(sha),
        lambda: b"".join(store.read(sha, 1, 5)), lambda: _write(store, os.urandom(3000)),
        lambda: store.write_bytes(b"new"), lambda: store.delete("0" * 64),
        lambda: store.owner("ab" * 8), lambda: store.users("ab" * 8)]
    refusals = []
    for call in calls:
        with pytest.raises(BlobStoreUnavailable) as refused:
            call()
        assert refused.value.status == 503 and refused.value.code == "blob_store_unavailable"
        assert refused.value.details["reason"] == reason
        refusals.append(refused.value)
    return refusals


def _said(caplog: pytest.LogCaptureFixture, text: str) -> int:
    return sum(text in r.getMessage() for r in caplog.records)


def test_an_s3_store_whose_server_stopped_is_unavailable_then_back(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    for key in [k for k in os.environ if k.startswith("AWS_")]:
        monkeypatch.delenv(key)
    for key, value in AWS_ENV.items():
        monkeypatch.setenv(key, value)
    caplog.set_level(logging.INFO, "titan.master")
    with s3_server() as server:
        store = open_blob_store(BlobSettings("s3", tmp_path / "spool", bucket=server.bucket(),
                                             prefix="t", endpoint_url=server.url), None)  # type: ignore[arg-type]
        data = os.urandom(5000)
        sha = _write(store, data)
        server.stop()

        refusals = _all_refused(store, sha, "unreachable")
        message = refusals[0].message
        assert message.startswith(f"the blob store s3://{store.bucket}/t at {server.url} "
                                  "cannot be reached (Could not connect to the endpoint URL")
        assert message.endswith("nothing was stored or read: try again shortly")
        assert _said(caplog, "blob store unavailable: ") == 1  # once, not per call
        assert _said(caplog, "blob store back") == 0

        server.start()
        assert store.read_bytes(sha) == data and store.size(sha) == len(data)
        assert _write(store, b"after") == hashlib.sha256(b"after").hexdigest()
        assert _said(caplog, "blob store back after") == 1
        assert not [r for r in caplog.records if r.exc_info]


def test_a_directory_store_whose_mount_went_away_is_unavailable_not_empty(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "titan.master")
    root = tmp_path / "blobs"
    store = open_blob_store(BlobSettings("directory", tmp_path / "spool", directory=root),
                            None)  # type: ignore[arg-type]
    data = os.urandom(5000)
    sha = _write(store, data)
    assert store.size("0" * 64) is None  # a blob not there is not an outage

    # Unmounted: the mount point is left, empty.
    root.rename(tmp_path / "away")
    root.mkdir()
    refusals = _all_refused(store, sha, "unreachable")
    assert refusals[0].message == (
        f"the blob store cannot reach {root}: it is gone (unmounted, or removed?); nothing "
        "was stored or read: mount it again (or point TITAN_BLOB_DIR at it) and try again")
    assert list(root.iterdir()) == []  # nothing written onto the bare mount point
    assert _said(caplog, "blob store unavailable: ") == 1

    root.rmdir()
    (tmp_path / "away").rename(root)
    assert store.read_bytes(sha) == data
    assert store.size("0" * 64) is None
    assert _said(caplog, "blob store back after") == 1
