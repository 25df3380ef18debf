"""Group commit: many small writes, one transaction, acknowledged only after it commits.

The master's hot path is a stream of tiny state changes (a job leased, a result, a store
write). Committing each alone caps throughput at the disk's commit rate; committing them
together costs one commit per batch. A single writer thread takes whatever queued while the
previous commit ran, runs it in one transaction, commits, and only then resolves each caller's
future — so "acknowledged" still means "durable". Operations run in submission order, so the
database always holds a prefix of what the master decided.

If a batch fails, each operation is retried alone so one bad request cannot sink its
neighbours; operations must therefore touch only the database (no other side effects). A batch
that fails because the database is away is not failed but tried again until it is back. One
whose statement the database cancelled (a ``statement_timeout`` or ``lock_timeout`` set by its
DBA) is tried a few times — a lock held for a moment is let go — and then failed like any
other: a statement too slow for the setting is cancelled every time, and waiting it out for
ever held up every write queued behind it. But not one submitted with ``keep=True``: the
scheduler's own changes, which its memory holds already. Failed, memory and database would
disagree for good (a job COMPLETED in memory, RUNNING in the database: its result, sent again,
refused as stale; after a restart, run again), so such a write is tried again until it
commits, as while the database is away, and said so on the log and in ``GET /health``.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import secrets
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from titan.errors import NotLeader, statement_cancelled, unstorable
from titan.storage.base import Storage, Transaction

T = TypeVar("T")
log = logging.getLogger("titan.storage")

_STOP = object()

#: The waits before a batch whose statement the database cancelled is tried again: three
#: tries in all, ~1.3 s of waiting, enough for a lock held for a moment to be let go.
CANCELLED_WAITS = (0.25, 1.0)


class GroupCommitWriter:
    def __init__(self, storage: Storage, *, max_batch: int = 1000) -> None:
        self._storage = storage
        self._max_batch = max_batch
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="titan-db-writer", daemon=True)
        self._stopping = threading.Event()
        self._warned = 0.0
        self._cancel_said = -60.0
        self._last: asyncio.Future[Any] | None = None  # the newest future handed out
        #: When the batch now waiting for the database found it away (monotonic); 0 when none.
        self.away_since = 0.0
        #: The database's error that batch waits out (its first line), for ``GET /health``.
        self.away_reason = ""
        #: When the batch now being written began (monotonic); 0 while the writer is idle. A
        #: batch that hangs (a database that stopped answering, not refusing) shows here only.
        self.busy_since = 0.0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()  # a batch waiting for the database gives up
        self._queue.put(_STOP)
        self._thread.join(timeout=30)

    def submit(self, op: Callable[[Transaction], T], *, keep: bool = False) -> asyncio.Future[T]:
        """Queue ``op`` for the next group transaction, now (so call order is commit order);
        the future resolves with its result once committed. ``keep``: what ``op`` writes was
        decided already (the scheduler's changes): a statement of it the database cancels is
        tried again until it commits, never failed (the module's docstring)."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[T] = loop.create_future()
        self._queue.put((_Kept(op) if keep else op, fut, loop))
        self._last = fut
        return fut

    def after_queued(self) -> asyncio.Future[None]:
        """A future resolved once everything submitted before it has settled, with no
        transaction of its own: what a change with nothing to write waits for, so that what
        it announces still comes after what was committed before it."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()

        def done(_prev: Any = None) -> None:
            if not fut.done():
                fut.set_result(None)

        prev = self._last
        if prev is None or prev.done() or prev.get_loop() is not loop:
            loop.call_soon(done)
        else:
            prev.add_done_callback(done)
        self._last = fut
        return fut

    async def run(self, op: Callable[[Transaction], T]) -> T:
        """Run ``op`` inside the next group transaction; return its result once committed."""
        return await self.submit(op)

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is _STOP:
                return
            batch = [first]
            while len(batch) < self._max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    self._queue.put(_STOP)
                    break
                batch.append(item)
            self.busy_since = time.monotonic()
            try:
                self._commit(batch)
            finally:
                self.busy_since = 0.0

    def _commit(self, batch: list[Any]) -> None:
        results = self._commit_waiting(batch)
        if results is None:
            return
        self._settle([(fut, loop, result, None)
                      for (_op, fut, loop), result in zip(batch, results, strict=True)])

    def _commit_waiting(self, batch: list[Any]) -> list[Any] | None:
        """Commit ``batch``; return its results, or None once its futures were failed.

        While the database is away (a restart, the network, a full disk) the batch is tried
        again, in order, until it is back, rather than failed: the scheduler has already
        decided in memory what the batch records, so failing it would leave memory and
        database disagreeing. A COMMIT whose answer was lost with its connection is looked
        up by the mark the transaction left (:meth:`Storage.committed`), so it is never
        applied twice."""
        delay, away_since, lost_commit, cancels = 0.05, 0.0, 0, 0
        while True:
            try:
                if lost_commit and self._storage.committed(lost_commit):
                    break  # ``results`` are the committed attempt's
                mark, lost_commit, stage = secrets.randbits(62) | 1, 0, "ops"
                results: list[Any] = []
                with self._storage.write_transaction(mark) as tx:
                    for i, (op, _fut, _loop) in enumerate(batch):
                        if i:  # what the one before put off reading sees it as it left it
                            tx.reads_due()
                        results.append(op(tx))
                    stage = "commit"
                break
            except NotLeader as exc:  # replaced by another master: nothing more is written
                self._settle([(fut, loop, None, exc) for _op, fut, loop in batch])
                return None
            except Exception as exc:
                cancelled = self._storage.cancelled(exc) is not None
                if cancelled and cancels < len(CANCELLED_WAITS) and not self._stopping.is_set():
                    self._stopping.wait(CANCELLED_WAITS[cancels])
                    cancels += 1
                    continue
                # A kept write alone (its batch isolated first: another write may be the slow
                # one) is waited out as an outage is.
                held = cancelled and len(batch) == 1 and isinstance(batch[0][0], _Kept)
                if not (held or self._storage.unavailable(exc)) or self._stopping.is_set():
                    self._isolate(batch)
                    return None
                if stage == "commit" and not lost_commit:
                    lost_commit = mark
                now = time.monotonic()
                if not away_since or now - self._warned > 30:
                    self._warned = now
                    if held:
                        log.warning("the database keeps cancelling a write of the scheduler's "
                                    "(%s): it is tried again until it commits, and the writes "
                                    "after it wait; see docs/troubleshooting.md, 'A statement "
                                    "cancelled by the database'", str(exc).splitlines()[0][:300])
                    else:
                        log.warning("the database is unavailable (%s): %d write(s) wait for it",
                                    str(exc).splitlines()[0][:300], len(batch))
                away_since = away_since or now
                self.away_reason = str(exc).splitlines()[0][:300]
                self.away_since = away_since
                self._stopping.wait(delay)
                delay = min(delay * 2, 1.0)
        if away_since:
            self.away_since = 0.0
            log.warning("the database is back after %.1fs", time.monotonic() - away_since)
        return results

    def _isolate(self, batch: list[Any]) -> None:
        if len(batch) == 1:
            op, fut, loop = batch[0]
            error = _current_exception()
            said = self._storage.unstorable(error)
            cancelled = self._storage.cancelled(error)
            if said is not None:  # the request's fault (a NUL byte, a string too long)
                error = unstorable(said)
                error.__cause__ = _current_exception()
            elif cancelled is not None:  # tried again already: its setting is said
                error = statement_cancelled(cancelled)
                error.__cause__ = _current_exception()
                self._say_cancelled(error.message)
            self._settle([(fut, loop, None, error)])
            return
        for item in batch:  # isolate the failing operation
            self._commit([item])

    def _say_cancelled(self, message: str) -> None:
        """On the log, for the operator who can change the setting: a line a minute at most
        (a setting too short cancels every write of a kind)."""
        now = time.monotonic()
        if now - self._cancel_said >= 60:
            self._cancel_said = now
            log.warning("a write was refused after %d tries: %s", len(CANCELLED_WAITS) + 1,
                        message)

    @staticmethod
    def _settle(outcomes: list[tuple[asyncio.Future[Any], asyncio.AbstractEventLoop, Any,
                                     BaseException | None]]) -> None:
        """Resolve a batch's futures with one wake-up of each event loop, not one per future:
        waking a loop from another thread is a system call (a write to its self-pipe)."""
        by_loop: dict[asyncio.AbstractEventLoop, list[Any]] = {}
        for fut, loop, result, error in outcomes:
            by_loop.setdefault(loop, []).append((fut, result, error))

        def settle(items: list[Any]) -> None:
            for fut, result, error in items:
                if fut.done():
                    continue
                if error is not None:
                    fut.set_exception(error)
                else:
                    fut.set_result(result)

        for loop, items in by_loop.items():
            try:
                loop.call_soon_threadsafe(settle, items)
            except RuntimeError:  # the loop is closed: nobody is waiting any more
                log.debug("writer results dropped: event loop closed")


def _current_exception() -> BaseException:
    import sys

    exc = sys.exc_info()[1]
    assert exc is not None
    return exc


class _Kept:
    """A write submitted with ``keep=True``: called as the write it wraps."""

    __slots__ = ("op",)

    def __init__(self, op: Callable[[Transaction], Any]) -> None:
        self.op = op

    def __call__(self, tx: Transaction) -> Any:
        return self.op(tx)
