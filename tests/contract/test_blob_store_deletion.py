"""Deleting from a blob store — garbage collection's call — on every store (directory,
PostgreSQL, S3 on moto): a blob goes whole; one written lately, or being written, stays; a
write that meets a deletion of its blob waits for it and leaves the blob whole; and the
first database to claim a store owns it."""

from __future__ import annotations

import asyncio
import os
import threading

import pytest

from tests.contract import test_blob_stores as stores
from tests.contract.test_blob_stores import Backend, _stream, sha
from titan.errors import NotFound, ValidationFailed
from titan.storage.blobs import CHUNK
from titan.storage.blobs.database import DatabaseBlobStore
from titan.storage.blobs.gate import SETTLE, BlobGate

# The same stores as the contract's, as fixtures.
backend, local_disk, s3_server, aws_env = (stores.backend, stores.local_disk, stores.s3_server,
                                           stores.aws_env)


def _clocked(backend: Backend) -> list[float]:
    """The store's gate on a clock the test moves."""
    clock = [1_000.0]
    backend.store.gate = BlobGate(clock=lambda: clock[0])
    return clock


def test_a_blob_goes_whole_once_its_last_write_is_old(backend: Backend) -> None:
    store, clock = backend.store, _clocked(backend)
    data = os.urandom(2 * CHUNK + 5)
    name = store.write_bytes(data)
    assert not store.delete(name)  # written lately: its record may be on its way
    assert store.read_bytes(name) == data
    clock[0] += SETTLE + 1
    assert store.delete(name)
    assert not store.exists(name) and store.present([name]) == set()
    with pytest.raises(NotFound):
        list(store.read(name))
    assert store.delete(name)  # not there: nothing to do
    # Uploaded again, it is whole again (no piece of the old one left to meet).
    assert asyncio.run(store.write(_stream(data))) == (name, len(data))
    assert store.read_bytes(name) == data
    assert not store.delete(name)


def test_the_same_content_written_again_lately_stays(backend: Backend) -> None:
    store, clock = backend.store, _clocked(backend)
    data = os.urandom(10_000)
    name = store.write_bytes(data)
    clock[0] += SETTLE + 1
    # Stored again (a store that finds it there writes nothing): still a write to keep.
    assert asyncio.run(store.write(_stream(data), expect=name)) == (name, len(data))
    assert not store.delete(name)
    clock[0] += SETTLE + 1
    assert store.write_bytes(data) == name
    assert not store.delete(name)
    assert store.read_bytes(name) == data


def test_a_write_meeting_the_deletion_of_its_blob_waits_and_leaves_it_whole(
        backend: Backend) -> None:
    store, clock = backend.store, _clocked(backend)
    data = os.urandom(CHUNK + 77)
    name = store.write_bytes(data)
    clock[0] += SETTLE + 1
    for write in (lambda: store.write_bytes(data),
                  lambda: asyncio.run(store.write(_stream(data), expect=name))):
        done = threading.Event()

        def writer(write=write, done=done) -> None:  # type: ignore[no-untyped-def]
            write()
            done.set()

        with store.gate.deleting(name) as free:
            assert free
            thread = threading.Thread(target=writer)
            thread.start()
            # A store that skips content it finds would find it now, and skip it.
            assert not done.wait(0.3), "the write did not wait for the deletion"
            store._delete(name)
        thread.join(30)
        assert done.is_set()
        assert store.read_bytes(name) == data  # written after the deletion: whole
        assert not store.delete(name)  # and written lately
        clock[0] += SETTLE + 1


def test_a_deletion_meeting_a_write_in_progress_keeps_the_blob(backend: Backend) -> None:
    store = backend.store
    data = os.urandom(1000)
    with store.gate.writing(sha(data)):
        assert not store.delete(sha(data))
        store.write_bytes(data)  # (the same process may write it again meanwhile)
    assert store.read_bytes(sha(data)) == data


def test_the_first_database_to_claim_a_store_owns_it(backend: Backend) -> None:
    store = backend.store
    first, second = "a" * 32, "b" * 32
    assert store.owner(first) == first
    if isinstance(store, DatabaseBlobStore):  # the database's own rows: never another's
        assert store.owner(second) == second
    else:
        assert store.owner(second) == first
        assert store.owner(first) == first


def test_each_database_using_a_store_is_recorded_once(backend: Backend) -> None:
    store = backend.store
    first, second = "c" * 32, "d" * 32
    assert first in store.users(first)
    if isinstance(store, DatabaseBlobStore):  # the database's own rows: no other user
        assert store.users(second) == {second}
    else:
        assert {first, second} <= store.users(second)
        assert store.users(first) == store.users(second)  # recorded once each
    with pytest.raises(ValidationFailed):
        store.users("../owner")
