"""Blobs that writes in flight are about to name, and those garbage collection is deleting.

A write that names blobs a client chose — a DAG's scripts, a schedule's, a run's recorded
code, an evaluation's agent — checks that they are there, then commits the rows naming them.
Garbage collection reads what the database names, then deletes what nothing named. The two
meet here, on the event loop, where each step below is atomic:

- the write **holds** its blobs (:meth:`BlobHolds.hold`) from before its check until its
  commit; a blob being deleted is waited for first, and then found gone (a clean "was not
  uploaded");
- a collection **watches** from before it reads the database (:meth:`watch`): every blob a
  write holds from then on, or held then, is spared (:meth:`condemn`), since its row may
  have committed after the collection read that table. It deletes the rest, named
  condemned until the batch is done (:meth:`acquit`).

So a blob is deleted only if no write held it at any time since the collection began — and
a write that began later waits for the deletion and sees its result. Blobs a write stores
itself (an upload, a large payload) are the blob store's gate's and the ``used_at`` time's
to protect, not this.

:attr:`BlobHolds.known` is the engine's cache of blobs it knows are there (a submission of a
script submitted before needs no read); a blob condemned leaves it.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager


class BlobHolds:
    def __init__(self) -> None:
        #: Blobs known to be there: checked once, since no deletion took them.
        self.known: set[str] = set()
        self._held: Counter[str] = Counter()
        self._seen: set[str] | None = None  # while a collection watches
        self._condemned: set[str] = set()
        self._acquitted = asyncio.Event()
        self._acquitted.set()

    @asynccontextmanager
    async def hold(self, shas: Iterable[str]) -> AsyncIterator[None]:
        """Hold ``shas`` until the block ends: check them and commit what names them inside."""
        wanted = {s for s in shas if s}
        while wanted & self._condemned:
            await self._acquitted.wait()
        self._held.update(wanted)
        if self._seen is not None:
            self._seen |= wanted
        try:
            yield
        finally:
            self._held.subtract(wanted)
            for sha in wanted:
                if self._held[sha] <= 0:
                    del self._held[sha]

    def watch(self) -> None:
        """A collection begins (before it reads what the database names)."""
        self._seen = set(self._held)

    def condemn(self, shas: Iterable[str]) -> list[str]:
        """Of ``shas``, those no write held since :meth:`watch`: they may be deleted now, and
        a write that wants one waits until :meth:`acquit`."""
        seen = self._seen if self._seen is not None else set()
        doomed = sorted(s for s in shas if s not in seen and s not in self._held)
        if doomed:
            self._condemned.update(doomed)
            self.known.difference_update(doomed)
            self._acquitted.clear()
        return doomed

    def acquit(self) -> None:
        """The condemned batch is done (deleted, or found in use and kept)."""
        self._condemned.clear()
        self._acquitted.set()

    def unwatch(self) -> None:
        """The collection ended."""
        self._seen = None
        self.acquit()
