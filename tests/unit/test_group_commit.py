"""The group-commit writer on a real SQLite file: one transaction per batch, each caller's
future resolved only after the commit, a failing operation isolated from its neighbours, and
one wake-up of the event loop per batch however many futures it resolves."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from titan.storage import Storage, open_storage
from titan.storage.base import Transaction
from titan.storage.writer import GroupCommitWriter


@pytest.fixture
def storage(tmp_path: Path) -> Iterator[Storage]:
    s = open_storage(f"sqlite:///{tmp_path / 'titan.db'}")
    s.migrate()
    yield s
    s.close()


def put(key: str, value: str) -> Any:
    def op(tx: Transaction) -> str:
        tx.set_meta(key, value)
        return value
    return op


def boom(tx: Transaction) -> None:
    tx.set_meta("half-written", "yes")
    raise RuntimeError("this operation fails")


def test_a_batch_commits_together_and_a_failure_stays_its_own(storage: Storage) -> None:
    writer = GroupCommitWriter(storage)

    async def main() -> list[Any]:
        loop = asyncio.get_running_loop()
        wakeups = 0
        real = loop.call_soon_threadsafe

        def counting(*args: Any, **kwargs: Any) -> Any:
            nonlocal wakeups
            wakeups += 1
            return real(*args, **kwargs)

        loop.call_soon_threadsafe = counting  # type: ignore[method-assign]
        # Queued before the writer runs: one batch of six, submitted in order.
        futures = [writer.submit(put(f"k{i}", f"v{i}")) for i in range(5)]
        futures.insert(2, writer.submit(boom))
        writer.start()
        results = await asyncio.gather(*futures, return_exceptions=True)
        # The batch failed as a whole, so each operation was committed alone: six commits,
        # six wake-ups; then the held operation's batch and a clean batch of five behind it: one
        # wake-up each.
        assert wakeups == 6
        # The writer is held inside an operation while five more queue up behind it.
        release = threading.Event()
        held = writer.submit(lambda tx: release.wait(10))
        await asyncio.sleep(0.05)
        clean = [writer.submit(put(f"c{i}", "x")) for i in range(5)]
        release.set()
        await asyncio.gather(held, *clean)
        assert wakeups == 8
        return results

    try:
        results = asyncio.run(main())
    finally:
        writer.stop()
    assert results[:2] == ["v0", "v1"] and results[3:] == ["v2", "v3", "v4"]
    assert isinstance(results[2], RuntimeError)
    with storage.transaction() as tx:
        assert [tx.get_meta(f"k{i}") for i in range(5)] == [f"v{i}" for i in range(5)]
        assert tx.get_meta("half-written") is None  # the failing operation left nothing


def test_a_change_with_nothing_to_write_settles_after_what_was_queued_before(
        storage: Storage) -> None:
    writer = GroupCommitWriter(storage)
    gate = threading.Event()

    def slow(tx: Transaction) -> str:
        gate.wait(5)
        tx.set_meta("slow", "done")
        return "slow"

    async def main() -> list[str]:
        order: list[str] = []
        first = writer.after_queued()  # nothing queued yet: settles at once
        await asyncio.wait_for(first, 1)
        queued = writer.submit(slow)
        queued.add_done_callback(lambda _f: order.append("commit"))
        empty = writer.after_queued()
        empty.add_done_callback(lambda _f: order.append("nothing to write"))
        await asyncio.sleep(0.05)
        assert not empty.done(), "settled before the commit queued ahead of it"
        gate.set()
        await asyncio.wait_for(empty, 5)
        later = writer.after_queued()  # chained after the empty one, which is done
        await asyncio.wait_for(later, 1)
        return order

    writer.start()
    try:
        assert asyncio.run(main()) == ["commit", "nothing to write"]
    finally:
        writer.stop()
    with storage.transaction() as tx:
        assert tx.get_meta("slow") == "done"


def test_on_postgres_a_queued_write_that_fails_at_commit_stays_its_own(
        postgres_url: str) -> None:
    # On PostgreSQL a write nobody reads goes with the COMMIT (storage/deferred.py), so its
    # failure shows at the batch's commit, after every operation ran: the batch is still taken
    # apart and each operation committed alone, the failing one failing by itself.
    from tests.contract.test_storage import empty_tables

    storage = open_storage(postgres_url)
    storage.migrate()
    empty_tables(storage)
    writer = GroupCommitWriter(storage)

    def record(key: str) -> Any:
        def op(tx: Transaction) -> str:
            tx.store_put(f"after-{key}", "written", 1.0)
            tx.record_idempotent(key, "POST /x", "[1]", 1.0)
            return key
        return op

    async def main() -> list[Any]:
        futures = [writer.submit(record(f"key-{i:016d}")) for i in range(3)]
        futures.insert(1, writer.submit(record(f"key-{0:016d}")))  # taken by the first
        writer.start()
        return await asyncio.gather(*futures, return_exceptions=True)

    try:
        results = asyncio.run(main())
    finally:
        writer.stop()
    try:
        assert results[0] == "key-0000000000000000" and results[2:] == [
            "key-0000000000000001", "key-0000000000000002"]
        assert "duplicate key" in str(results[1])
        with storage.read_transaction() as tx:
            assert [tx.store_get(f"after-key-{i:016d}") for i in range(3)] == ["written"] * 3
    finally:
        storage.close()


def test_a_put_off_read_is_done_before_the_next_operation_of_its_batch(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from titan.storage import open_storage
    from titan.storage.writer import GroupCommitWriter

    # Between two operations of one group transaction, never before the first.
    calls: list[str] = []
    storage = open_storage(f"sqlite:///{tmp_path / 't.db'}")
    storage.migrate()
    writer = GroupCommitWriter(storage)
    try:
        batch = []
        for name in ("first", "second", "third"):
            batch.append((lambda tx, n=name: calls.append(n), None, None))
        original = storage.write_transaction

        def spying(mark: int = 0):  # type: ignore[no-untyped-def]
            import contextlib

            @contextlib.contextmanager
            def cm():  # type: ignore[no-untyped-def]
                with original(mark) as tx:
                    tx.reads_due = lambda: calls.append("due")  # type: ignore[method-assign]
                    yield tx
            return cm()

        storage.write_transaction = spying  # type: ignore[method-assign]
        assert writer._commit_waiting(batch) == [None, None, None]
        assert calls == ["first", "due", "second", "due", "third"]
    finally:
        storage.close()
