"""The meeting point of writes that name blobs and garbage collection's deletions
(``master/scheduling/blob_holds.py``), step by step on one event loop."""

from __future__ import annotations

import asyncio

from titan.master.scheduling.blob_holds import BlobHolds

A, B, C = "a" * 64, "b" * 64, "c" * 64


def test_a_blob_held_since_the_collection_began_is_spared() -> None:
    async def main() -> None:
        holds = BlobHolds()
        async with holds.hold([A]):  # held when the collection begins
            holds.watch()
        async with holds.hold([B]):  # held (and committed) after it began
            pass
        assert holds.condemn([A, B, C]) == [C]
        holds.unwatch()
        # The next collection starts afresh: nothing held now.
        holds.watch()
        assert holds.condemn([A, B]) == [A, B]
        holds.unwatch()

    asyncio.run(main())


def test_a_write_wanting_a_condemned_blob_waits_for_the_batch() -> None:
    async def main() -> None:
        holds = BlobHolds()
        holds.known.update({A, B})
        holds.watch()
        assert holds.condemn([A]) == [A]
        assert holds.known == {B}  # a submission reads whether it is still there
        order: list[str] = []

        async def write() -> None:
            async with holds.hold([A, B]):
                order.append("write holds")

        task = asyncio.create_task(write())
        await asyncio.sleep(0.05)
        assert order == []  # waiting for the deletion
        async with holds.hold([B]):  # a blob not condemned is not waited for
            order.append("other write")
        order.append("batch done")
        holds.acquit()
        await task
        assert order == ["other write", "batch done", "write holds"]
        holds.unwatch()

    asyncio.run(main())


def test_a_write_in_flight_is_spared_without_a_watch_too() -> None:
    async def main() -> None:
        holds = BlobHolds()
        entered, leave = asyncio.Event(), asyncio.Event()

        async def write() -> None:
            async with holds.hold([A]):
                entered.set()
                await leave.wait()

        task = asyncio.create_task(write())
        await entered.wait()
        assert holds.condemn([A, B]) == [B]
        holds.acquit()
        leave.set()
        await task
        assert holds.condemn([A]) == [A]
        holds.acquit()

    asyncio.run(main())
