"""The blob store contract: one suite, run against every store.

The directory store on a temporary directory, the database store on a PostgreSQL database of
this module's own, and the S3 store on a real (local) S3 server: moto's, started on a free
port for this module. What each keeps on the master's own disk (the directory store's files,
the others' spool) goes to ``local_disk``: a temporary directory, or for a test of a full
disk a small tmpfs (tests/small_disk.py).
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from tests import moto_s3, small_disk
from titan.errors import BlobStoreUnwritable, ConfigError, NotFound, ValidationFailed
from titan.storage import open_storage
from titan.storage import schema as t
from titan.storage.blobs import CHUNK, BlobSettings, BlobStore, open_blob_store
from titan.storage.blobs.database import DatabaseBlobStore

#: Past one S3 multipart part (8 MiB) and many database chunks (1 MiB), and not a multiple of
#: either, so the last chunk is short.
BIG = 11 * CHUNK + 12_345


@dataclass
class Backend:
    store: BlobStore
    #: What the store holds besides whole blobs (temporary files, rows, unfinished uploads):
    #: the same before and after a write that failed.
    leftovers: Callable[[], Any]
    #: How many pieces the store keeps a blob in (None: one file, nothing to count).
    pieces: Callable[[str], int | None]


@pytest.fixture(scope="module")
def s3_server() -> Iterator[str]:
    """A moto S3 server on a free port; its endpoint URL."""
    with moto_s3.s3_server() as server:
        yield server.url


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Credentials for moto, and none of the developer's AWS settings."""
    for key in [k for k in os.environ if k.startswith("AWS_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    # moto's threaded server can fail a PUT with a 500 when another PUT of the same key lands
    # at once (it closes the replaced object's buffer while the first computes its ETag);
    # retried as any client retries S3's 500s, with a few more attempts than the default 3.
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "8")


def _s3_client(endpoint: str) -> Any:
    import boto3

    return boto3.client("s3", endpoint_url=endpoint)


@pytest.fixture
def local_disk(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Path]:
    """Where a store keeps what it keeps on the master's disk; ``"tmpfs"`` (indirect): a
    2 MiB disk of the test's own, to fill."""
    if getattr(request, "param", None) != "tmpfs":
        yield tmp_path
        return
    with small_disk.mounted(tmp_path / "disk", "2m") as disk:
        yield disk


@pytest.fixture(params=["directory", "postgres", "s3"])
def backend(request: pytest.FixtureRequest, local_disk: Path) -> Iterator[Backend]:
    spool = local_disk / "spool"
    if request.param == "directory":
        store = open_blob_store(BlobSettings("directory", spool, directory=local_disk / "blobs"),
                                None)  # type: ignore[arg-type]
        tmp = local_disk / "blobs" / "tmp"
        yield Backend(store, lambda: sorted(tmp.iterdir()), lambda sha: None)
        return
    if request.param == "postgres":
        storage = open_storage(request.getfixturevalue("postgres_url"))
        try:
            store = open_blob_store(BlobSettings("database", spool), storage)
            assert isinstance(store, DatabaseBlobStore)
            engine = store.engine

            def rows() -> int:
                with engine.connect() as conn:
                    return int(conn.execute(sa.select(sa.func.count())
                                            .select_from(t.blob_chunks)).scalar_one())

            def pieces(sha: str) -> int:
                with engine.connect() as conn:
                    return int(conn.execute(sa.select(sa.func.count()).where(
                        t.blob_chunks.c.sha256 == sha)).scalar_one())

            yield Backend(store, rows, pieces)
            store.close()
        finally:
            storage.close()
        return
    endpoint = request.getfixturevalue("s3_server")
    request.getfixturevalue("aws_env")
    bucket = f"titan-{os.urandom(4).hex()}"
    client = _s3_client(endpoint)
    client.create_bucket(Bucket=bucket)
    store = open_blob_store(BlobSettings("s3", spool, bucket=bucket, prefix="team/blobs",
                                         endpoint_url=endpoint), None)  # type: ignore[arg-type]

    def objects() -> tuple[list[str], list[str]]:
        listed = client.list_objects_v2(Bucket=bucket).get("Contents", [])
        uploads = client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
        return sorted(o["Key"] for o in listed), sorted(u["Key"] for u in uploads)

    def parts(sha: str) -> int:
        # A multipart upload's ETag ends in "-<number of parts>"; a single PUT's has no dash.
        etag = client.head_object(Bucket=bucket, Key=f"team/blobs/{sha[:2]}/{sha}")["ETag"]
        return int(etag.strip('"').rpartition("-")[2]) if "-" in etag else 1

    yield Backend(store, objects, parts)


async def _stream(data: bytes, piece: int = 64 * 1024) -> AsyncIterator[bytes]:
    for i in range(0, len(data), piece):
        yield data[i:i + piece]
        await asyncio.sleep(0)


async def _broken(data: bytes) -> AsyncIterator[bytes]:
    async for chunk in _stream(data):
        yield chunk
    raise ConnectionResetError("the client went away")


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_a_streamed_write_reads_back(backend: Backend) -> None:
    store = backend.store
    data = os.urandom(300_000)
    assert asyncio.run(store.write(_stream(data, 7_777))) == (sha(data), len(data))
    assert store.exists(sha(data)) and store.size(sha(data)) == len(data)
    assert store.read_bytes(sha(data)) == data
    assert store.read_bytes(sha(data), limit=len(data) - 1) is None  # too big for the caller
    assert b"".join(store.read(sha(data), 1000, 2000)) == data[1000:2000]
    assert b"".join(store.read(sha(data), len(data) - 5)) == data[-5:]
    # With the right name given, the same content is accepted again and changes nothing.
    assert asyncio.run(store.write(_stream(data), expect=sha(data))) == (sha(data), len(data))
    assert store.read_bytes(sha(data)) == data


def test_content_that_does_not_match_its_name_is_refused(backend: Backend) -> None:
    store = backend.store
    before = backend.leftovers()
    data, other = os.urandom(5000), os.urandom(5000)
    with pytest.raises(ValidationFailed, match="does not match"):
        asyncio.run(store.write(_stream(data), expect=sha(other)))
    assert not store.exists(sha(data)) and not store.exists(sha(other))
    assert backend.leftovers() == before


def test_write_bytes_is_idempotent(backend: Backend) -> None:
    store = backend.store
    data = os.urandom(CHUNK + 10)
    assert store.write_bytes(data) == sha(data)
    assert store.write_bytes(data) == sha(data)
    assert store.read_bytes(sha(data)) == data
    assert backend.pieces(sha(data)) in (None, 1, 2)  # not written twice over
    assert store.present([sha(data), sha(b"nope")]) == {sha(data)}


def test_an_empty_blob_is_a_blob(backend: Backend) -> None:
    store = backend.store
    assert store.write_bytes(b"") == sha(b"")
    assert store.size(sha(b"")) == 0 and store.read_bytes(sha(b"")) == b""
    assert asyncio.run(store.write(_stream(b""))) == (sha(b""), 0)


def test_a_big_blob_goes_in_chunks_and_streams_back(backend: Backend) -> None:
    store = backend.store
    data = os.urandom(BIG)
    assert asyncio.run(store.write(_stream(data))) == (sha(data), BIG)
    assert store.size(sha(data)) == BIG
    pieces = backend.pieces(sha(data))
    assert pieces is None or pieces > 1  # 12 rows in the database, a multipart upload in S3
    digest, count = hashlib.sha256(), 0
    for chunk in store.read(sha(data)):
        assert 0 < len(chunk) <= CHUNK  # streamed, never whole
        digest.update(chunk)
        count += 1
    assert digest.hexdigest() == sha(data) and count >= BIG // CHUNK
    # A range across chunk boundaries, and one inside the last (short) chunk.
    lo, hi = 3 * CHUNK - 100, 5 * CHUNK + 100
    assert b"".join(store.read(sha(data), lo, hi)) == data[lo:hi]
    assert b"".join(store.read(sha(data), BIG - 10, BIG)) == data[-10:]


def test_concurrent_writes_of_the_same_content_make_one_blob(backend: Backend) -> None:
    store = backend.store
    data = os.urandom(3 * CHUNK + 1)
    start = threading.Barrier(6)

    def put(_: int) -> str:
        start.wait()
        return store.write_bytes(data)

    with ThreadPoolExecutor(6) as pool:
        assert set(pool.map(put, range(6))) == {sha(data)}

    async def uploads() -> list[tuple[str, int]]:
        return await asyncio.gather(*(store.write(_stream(data)) for _ in range(4)))

    assert set(asyncio.run(uploads())) == {(sha(data), len(data))}
    assert store.read_bytes(sha(data)) == data
    assert backend.pieces(sha(data)) in (None, 1, 4)  # 4 chunks once, never 8


def test_a_failed_upload_leaves_nothing(backend: Backend) -> None:
    store = backend.store
    before = backend.leftovers()
    data = os.urandom(2 * CHUNK)
    with pytest.raises(ConnectionResetError):
        asyncio.run(store.write(_broken(data)))
    assert not store.exists(sha(data))
    assert backend.leftovers() == before


# The directory store writes through a temporary file renamed at the end: the test above.
@pytest.mark.parametrize("backend", ["postgres", "s3"], indirect=True)
def test_a_store_that_fails_midway_leaves_nothing(backend: Backend) -> None:
    """The remote write itself broken off (a dropped connection, a crash): whole or absent."""
    store = backend.store
    data = os.urandom(BIG)

    class Broken(io.BytesIO):
        def read(self, n: int | None = -1) -> bytes:
            if self.tell() >= 8 * CHUNK:  # the second S3 part, the ninth database chunk
                raise OSError("disk read error")
            return super().read(n)

    before = backend.leftovers()
    with pytest.raises(OSError, match="disk read error"):
        store._store(sha(data), len(data), Broken(data))  # type: ignore[attr-defined]
    assert not store.exists(sha(data))
    assert backend.leftovers() == before


@pytest.mark.parametrize("local_disk", ["tmpfs"], indirect=True)
def test_a_full_disk_refuses_the_write_and_leaves_nothing(backend: Backend,
                                                          local_disk: Path) -> None:
    """The directory store's disk, or the spool's of the others: a refusal that says where
    and what to do (a 507 to the client), not an OSError (a 500 "bug in the master"); no
    temporary file left, nothing under the blob's name; and the same write once freed."""
    store = backend.store
    data = os.urandom(CHUNK + CHUNK // 2)  # past the in-memory spool: it goes to the disk
    before = backend.leftovers()
    filler = small_disk.fill(local_disk, leave=256 * 1024)  # the write starts, then fails
    with pytest.raises(BlobStoreUnwritable, match="disk is full") as refused:
        asyncio.run(store.write(_stream(data)))
    assert refused.value.status == 507 and str(local_disk) in refused.value.message
    assert not store.exists(sha(data))
    assert backend.leftovers() == before
    assert not any(p.is_file() for p in (local_disk / "spool").rglob("*"))
    filler.unlink()
    assert asyncio.run(store.write(_stream(data))) == (sha(data), len(data))
    assert store.read_bytes(sha(data)) == data


def test_invalid_names_are_refused(backend: Backend) -> None:
    store = backend.store
    for name in ("../../etc/passwd", "A" * 64, "0" * 63, "", "0" * 63 + "/"):
        for call in (store.size, store.exists, store.read_bytes, lambda n: store.present([n]),
                     lambda n: next(store.read(n))):
            with pytest.raises(ValidationFailed):
                call(name)
        with pytest.raises(ValidationFailed):
            asyncio.run(store.write(_stream(b"x"), expect=name))


def test_a_missing_blob(backend: Backend) -> None:
    store = backend.store
    absent = sha(os.urandom(16))
    assert store.size(absent) is None and not store.exists(absent)
    assert store.read_bytes(absent) is None and store.present([absent]) == set()
    with pytest.raises(NotFound):
        next(store.read(absent))


def test_an_unreachable_bucket_stops_the_master(s3_server: str, aws_env: None,
                                                tmp_path: Path) -> None:
    settings = BlobSettings("s3", tmp_path, bucket="no-such-bucket", endpoint_url=s3_server)
    with pytest.raises(ConfigError, match="no-such-bucket"):
        open_blob_store(settings, None)  # type: ignore[arg-type]


def test_the_database_store_needs_postgresql(tmp_path: Path) -> None:
    storage = open_storage(f"sqlite:///{tmp_path / 'titan.db'}")
    try:
        with pytest.raises(ConfigError, match="PostgreSQL"):
            open_blob_store(BlobSettings("database", tmp_path / "spool"), storage)
    finally:
        storage.close()
