"""Blob garbage collection against DAG submissions, on a real engine, SQLite file and blob
directory: a submission naming a script a collection is deleting waits for it and is refused
(the client uploads it again); a script a submission holds while a collection runs stays.

Each store is opened again after its blob is written, as a restarted master would: a master
keeps whatever it wrote itself lately (storage/blobs/gate.py), which the test's backdated
rows cannot show."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from titan.errors import InvalidDAG
from titan.master.blob_gc import BlobCollector
from titan.master.config import MasterConfig
from titan.master.events import EventHub
from titan.master.scheduling.engine import Engine
from titan.master.scheduling.validation import validate_dag
from titan.storage import open_storage
from titan.storage.blobs import DirectoryBlobStore

DAY = 86_400.0
SCRIPT = b"print('hello')\n"


def scenario(tmp_path: Path,
             test: Callable[[Engine, DirectoryBlobStore, str], Awaitable[None]]) -> None:
    storage = open_storage(f"sqlite:///{tmp_path / 'titan.db'}")
    sha = DirectoryBlobStore(tmp_path / "blobs").write_bytes(SCRIPT)
    store = DirectoryBlobStore(tmp_path / "blobs")  # (a master started since)

    async def run() -> None:
        engine = Engine(MasterConfig(data_dir=str(tmp_path)), storage, EventHub())
        await engine.start()
        try:
            await engine.run(lambda tx: tx.add_blob(sha, len(SCRIPT), time.time() - 3 * DAY))
            await test(engine, store, sha)
        finally:
            await engine.stop()

    try:
        asyncio.run(run())
    finally:
        storage.close()


def specs(sha: str) -> list[dict[str, object]]:
    return validate_dag("etl", [{"job_id": "x", "filename": "x.py", "script_sha256": sha}],
                        max_jobs=10)[1]


def test_a_submission_naming_a_script_being_deleted_waits_and_is_refused(
        tmp_path: Path) -> None:
    async def test(engine: Engine, store: DirectoryBlobStore, sha: str) -> None:
        holds = engine.blob_holds
        holds.known.add(sha)  # submitted before: taken as there without a read
        holds.watch()
        assert holds.condemn([sha]) == [sha]  # a collection's batch, about to go
        submission = asyncio.create_task(engine.submit_dag("etl", specs(sha), None))
        await asyncio.sleep(0.1)
        assert not submission.done()  # it waits for the batch
        assert await engine.run(lambda tx: tx.delete_blobs([sha], time.time() - DAY)) \
            == [(sha, len(SCRIPT))]
        assert store.delete(sha)
        holds.unwatch()
        with pytest.raises(InvalidDAG, match="was not uploaded, or was collected") as refused:
            await submission
        assert refused.value.details["sha256"] == sha

    scenario(tmp_path, test)


def test_a_script_held_by_a_submission_in_flight_stays_and_is_then_named(
        tmp_path: Path) -> None:
    async def test(engine: Engine, store: DirectoryBlobStore, sha: str) -> None:
        collector = BlobCollector(engine, store, "1d")
        async with engine.blob_holds.hold([sha]):  # between its check and its commit
            done = await collector.collect()
        assert (done["blobs"], done["kept"]) == (0, 1) and store.read_bytes(sha) == SCRIPT
        await engine.submit_dag("etl", specs(sha), None)
        await engine.run(lambda tx: tx.add_blob(sha, len(SCRIPT), time.time() - 3 * DAY))
        # Named by the job now: a collection keeps it without anyone holding it.
        assert (await collector.collect())["blobs"] == 0 and store.exists(sha)

    scenario(tmp_path, test)


def test_a_script_nothing_names_or_holds_goes(tmp_path: Path) -> None:
    async def test(engine: Engine, store: DirectoryBlobStore, sha: str) -> None:
        collector = BlobCollector(engine, store, "1d")
        assert (await collector.collect(dry_run=True))["sha256"] == [sha]
        assert store.exists(sha)
        done = await collector.collect()
        assert (done["blobs"], done["bytes"], done["sha256"]) == (1, len(SCRIPT), [sha])
        assert not store.exists(sha)
        with pytest.raises(InvalidDAG, match="was collected"):
            await engine.submit_dag("etl", specs(sha), None)

    scenario(tmp_path, test)


def test_a_collection_on_an_unwritable_store_is_one_warning_line(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The master's own collection (hourly, after a prune) on a full or read-only blob disk
    logged 'collecting unused blobs failed' with a whole traceback, for a condition the
    store already words (BlobStoreUnwritable): one warning line now."""
    from tests import small_disk

    with small_disk.mounted(tmp_path / "disk", "2m") as disk:
        async def test(engine: Engine, store: DirectoryBlobStore, sha: str) -> None:
            collector = BlobCollector(engine, store, "1d")
            small_disk.remount(disk, read_only=True)
            try:
                with caplog.at_level(logging.WARNING, logger="titan.master"):
                    await collector._quietly()  # what the hourly sweep and soon() run
            finally:
                small_disk.remount(disk, read_only=False)
            said = [r for r in caplog.records if "blob gc" in r.getMessage()]
            assert len(said) == 1 and said[0].exc_info is None, said
            assert "not collecting now" in said[0].getMessage()
            assert "read-only" in said[0].getMessage()
            assert store.exists(sha)

        (disk / "blobs").mkdir()
        (tmp_path / "blobs").symlink_to(disk / "blobs")  # the database stays writable
        scenario(tmp_path, test)
