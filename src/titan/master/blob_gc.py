"""Blob garbage collection: blobs nothing names, unused for a grace period, deleted.

``POST /api/v1/blobs/gc``, ``titan admin blobs gc`` and, hourly and after a prune, the
master itself (``TITAN_BLOB_GC``, the grace period: ``1d`` unless set; ``off`` stops it). A
prune deletes runs and DAGs; this deletes the scripts, payloads and files only they named.

A collection, mark and sweep:

1. **Mark.** The recorded blobs last stored or used before the grace period began (the
   ``blobs`` table's ``used_at``), less every one the database names anywhere
   (``storage/blob_refs.py``, the one list), read a page at a time.
2. **Sweep**, :data:`BATCH` at a time: the batch is condemned on the event loop (a write in
   flight that holds one of them spares it: ``scheduling/blob_holds.py``); forgotten in one
   transaction of the writer, which forgets only those still unused (a blob stored again or
   vouched for since is used now); then each body is deleted through the store's gate,
   which keeps one being written now or lately (``storage/blobs/gate.py``). A body that
   stays (kept by the gate, or its deletion failed) is recorded again, as used now.

Only blobs this database recorded are ever deleted: a body in the store that no row names
(another database's, or one whose upload never got recorded) is left alone, and a store
whose owner record names another database is not collected at all (:meth:`BlobStore.owner`).
A batch is recorded (``meta`` :data:`PENDING`) in the transaction that forgets it, so a
master stopped before its bodies went deletes them at its next collection.

Costs: the mark reads every table of the list once, a page at a time, off the event loop,
and holds the stale rows' names meanwhile (some 200 bytes each); a collection that finds no
stale row reads nothing else.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import secrets
import time
from typing import Any

from titan.errors import BlobStoreUnavailable, BlobStoreUnwritable, Conflict, ValidationFailed
from titan.formats import human_size
from titan.master.blob_mark import DATABASE_ID
from titan.master.scheduling.engine import Engine
from titan.storage.base import Row, Transaction
from titan.storage.blobs import BlobStore
from titan.windows import deletion_cutoff

log = logging.getLogger("titan.master")

ENV = "TITAN_BLOB_GC"
DEFAULT_MIN_AGE = "1d"
#: Blobs condemned and forgotten per batch (one transaction of the writer each).
BATCH = 500
#: The master's own collections: the first this long after it starts, then hourly.
FIRST_SWEEP = 300.0
SWEEP_SECONDS = 3600.0
#: Names listed in an answer (the counts are whole).
SHOWN = 1000
#: ``meta`` key: the batch whose bodies are being deleted (a JSON list of names; ``[]``:
#: none). This database's id, which the store's owner record names, is blob_mark's.
PENDING = "blob_gc_pending"


def min_age_cutoff(min_age: Any) -> float:
    """The 'before' time of a grace period (``1d``, ``12h``; an hour at least)."""
    if not isinstance(min_age, str):
        raise ValidationFailed('min_age must be a string such as "1d" or "12h"',
                               details={"field": "min_age"})
    return deletion_cutoff(min_age, "min_age", field="min_age")


class BlobCollector:
    """Collecting the blob store's garbage, one collection at a time."""

    def __init__(self, engine: Engine, blobs: BlobStore, min_age: str | None) -> None:
        self.engine = engine
        self.blobs = blobs
        #: The master's own collections' grace period; None: it collects only when asked.
        self.min_age = min_age
        self._lock = asyncio.Lock()
        self._soon: asyncio.Task[Any] | None = None

    async def collect(self, min_age: str | None = None, *, dry_run: bool = False) -> Row:
        """Delete every recorded blob unused for ``min_age`` that nothing names (with
        ``dry_run``: say which, delete nothing); what went, or would."""
        age = (self.min_age or DEFAULT_MIN_AGE) if min_age is None else min_age
        before = min_age_cutoff(age)
        async with self._lock:
            started = time.monotonic()
            await self._check_owner()
            if not dry_run:
                await self._finish_pending()
            holds = self.engine.blob_holds
            holds.watch()  # before the database is read: see blob_holds.py
            try:
                unnamed = await self.engine.read(lambda tx: _unnamed(tx, before))
                if dry_run:
                    gone, kept = sorted(unnamed.items()), 0
                else:
                    gone, kept = await self._sweep(unnamed, before)
            finally:
                holds.unwatch()
        seconds = round(time.monotonic() - started, 3)
        size = sum(n for _, n in gone)
        if gone and not dry_run:
            log.info("blob gc: deleted %d blob(s), %s, unused for over %s and named by "
                     "nothing (%d kept: in use again meanwhile); %.1f s", len(gone),
                     human_size(size), age, kept, seconds)
        return {"dry_run": dry_run, "min_age": age, "before": before, "blobs": len(gone),
                "bytes": size, "sha256": [sha for sha, _ in gone[:SHOWN]], "kept": kept,
                "seconds": seconds}

    async def _sweep(self, unnamed: dict[str, int],
                     before: float) -> tuple[list[tuple[str, int]], int]:
        holds = self.engine.blob_holds
        names = sorted(unnamed)
        gone: list[tuple[str, int]] = []
        kept = 0
        for i in range(0, len(names), BATCH):
            batch = holds.condemn(names[i:i + BATCH])
            try:
                forgotten = await self.engine.run(
                    functools.partial(_forget, batch=batch, before=before)) if batch else []
                left = set(await asyncio.to_thread(self._delete_bodies, forgotten))
                if forgotten:  # a body that stays keeps its record
                    await self.engine.run(functools.partial(_settle, left=left,
                                                            now=time.time()))
            finally:
                holds.acquit()
            gone.extend(row for row in forgotten if row not in left)
            kept += len(names[i:i + BATCH]) - len(forgotten) + len(left)
        return gone, kept

    def _delete_bodies(self, rows: list[tuple[str, int]]) -> list[tuple[str, int]]:
        """Delete the bodies of ``rows`` (blocking); those that stay."""
        left = []
        for sha, size in rows:
            try:
                if not self.blobs.delete(sha):
                    left.append((sha, size))
            except Exception as exc:  # noqa: BLE001 - one body's failure is not the batch's
                log.warning("blob gc: could not delete blob %s from %s: %r (kept, recorded "
                            "again)", sha[:12], self.blobs.description, exc)
                left.append((sha, size))
        return left

    async def _finish_pending(self) -> None:
        """Delete the bodies of the batch a stopped master forgot but did not delete."""
        def pending(tx: Transaction) -> list[str]:
            names = json.loads(tx.get_meta(PENDING) or "[]")
            return sorted(set(names) - tx.blobs_present(names))  # recorded again: kept

        names = await self.engine.read(pending)
        if names:
            log.info("blob gc: deleting the bodies of %d blob(s) a stopped master had "
                     "forgotten", len(names))
            left = await asyncio.to_thread(self._delete_bodies, [(n, 0) for n in names])
            sizes = await asyncio.to_thread(lambda: [(n, self.blobs.size(n)) for n, _ in left])
            await self.engine.run(functools.partial(
                _settle, left={(n, z) for n, z in sizes if z is not None}, now=time.time()))

    async def _check_owner(self) -> None:
        """Conflict unless this database owns the store (claimed at its first collection)."""
        def mine(tx: Transaction) -> str:
            found = tx.get_meta(DATABASE_ID)
            if found is None:
                found = secrets.token_hex(16)
                tx.set_meta(DATABASE_ID, found)
            return found

        found: str | None = await self.engine.read(lambda tx: tx.get_meta(DATABASE_ID))
        me = found if found is not None else await self.engine.run(mine)
        owner = await asyncio.to_thread(self.blobs.owner, me)
        others = sorted(await asyncio.to_thread(self.blobs.users, me) - {me})
        if owner == me and others:
            # Another database's masters use this store too (each says so at its start),
            # and may need blobs this one recorded and no longer names: the same content.
            raise Conflict(
                f"the blob store ({self.blobs.description}) is shared with another Titan "
                f"database ({others[0][:40]}; this one is {me}): collecting it would delete "
                "blobs that database uses. Give each database a store of its own; if that "
                "database is gone for good, delete its record (users/"
                f"{others[0][:40]} at the store's root) and collect again",
                details={"shared_with": [o[:100] for o in others[:10]], "database": me})
        if owner != me:
            raise Conflict(
                f"the blob store ({self.blobs.description}) belongs to another Titan "
                f"database ({owner[:40]}; this one is {me}): collecting it here would delete "
                "blobs that database uses and this one does not know of. Give each database "
                "a store of its own; if that database is gone for good, delete the store's "
                "owner record ('owner' at its root) and collect again",
                details={"owner": owner[:100], "database": me})

    def soon(self) -> None:
        """A collection now, in the background (after a prune), unless the master's own
        collections are off or one is running."""
        if self.min_age is None or self._lock.locked() \
                or self._soon is not None and not self._soon.done():
            return
        self._soon = asyncio.get_running_loop().create_task(self._quietly())

    async def _quietly(self) -> None:
        try:
            await self.collect()
        except Conflict as exc:  # the store is another database's: said, not a traceback
            log.warning("blob gc: not collecting: %s", exc.message)
        except (BlobStoreUnwritable, BlobStoreUnavailable) as exc:  # expected, said so
            log.warning("blob gc: not collecting now, tried again within the hour: %s",
                        exc.message)
        except Exception:
            log.exception("blob gc: collecting unused blobs failed")

    def stop(self) -> None:
        if self._soon is not None:
            self._soon.cancel()

    async def keep_collecting(self) -> None:
        """Forever (a task of the master): collect a while after start, then hourly."""
        await asyncio.sleep(FIRST_SWEEP)
        while True:
            await self._quietly()
            await asyncio.sleep(SWEEP_SECONDS)


def _unnamed(tx: Transaction, before: float) -> dict[str, int]:
    """The mark: recorded blobs unused since ``before`` that the database names nowhere."""
    stale = dict(tx.stale_blobs(before))
    if stale:
        for sha in tx.blob_references():
            stale.pop(sha, None)
    return stale


def _forget(tx: Transaction, batch: list[str], before: float) -> list[tuple[str, int]]:
    gone = tx.delete_blobs(batch, before)
    if gone:  # with the forgetting: a master stopped before the bodies go finishes it
        tx.set_meta(PENDING, json.dumps([sha for sha, _ in gone]))
    return gone


def _settle(tx: Transaction, left: set[tuple[str, int]], now: float) -> None:
    """The batch's bodies are dealt with: those that stayed are recorded again."""
    for sha, size in sorted(left):
        tx.add_blob(sha, size, now)
    tx.set_meta(PENDING, "[]")

