"""Storing and deleting the same blob, one at a time: what was stored lately is never deleted.

Garbage collection forgets a blob in the database, then deletes its body from the store. An
upload of the same content may come in between or during: the content is new to a client
whose blob was just forgotten (``POST /blobs/missing`` said so), or it is the same bytes
under a new name (a file) that the store takes as already there — a directory's file is
renamed over, a database's or a bucket's write is skipped. Deleted after such a write, the
body is gone while the upload records it again: a row naming nothing.

So every store passes each write of a body — the check for one already there included —
and each deletion through this gate, per blob name:

- a deletion waits for nothing and takes no blob being written now, nor one written within
  :data:`SETTLE` seconds: that write's row may still be on its way to the database (an
  upload records its blob after the store took it; a batch of actions, in the transaction
  that stores the actions);
- a write waits while its blob is being deleted, then finds it gone and writes it whole.

Only the leader writes blobs and collects them, so the gate is the process's own: a lock
and a table of recent writes, which keeps a name for :data:`SETTLE` seconds.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager

#: A blob written within this many seconds is not deleted: its record may not have reached
#: the database yet (a write and its record are seconds apart, unless the database is away).
SETTLE = 900.0


class BlobGate:
    def __init__(self, settle: float = SETTLE,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.settle = settle
        self.clock = clock
        self._cond = threading.Condition()
        self._writing: Counter[str] = Counter()
        self._deleting: set[str] = set()
        self._written: OrderedDict[str, float] = OrderedDict()  # oldest first

    @contextmanager
    def writing(self, sha256: str) -> Iterator[None]:
        """Around a body's write, and the look for one already there that may skip it."""
        with self._cond:
            while sha256 in self._deleting:
                self._cond.wait()
            self._writing[sha256] += 1
        try:
            yield
        finally:
            with self._cond:
                self._writing[sha256] -= 1
                if not self._writing[sha256]:
                    del self._writing[sha256]
                self._written[sha256] = self.clock()
                self._written.move_to_end(sha256)
                self._forget_old()  # the table holds SETTLE seconds of writes, no more

    @contextmanager
    def deleting(self, sha256: str) -> Iterator[bool]:
        """Around a body's deletion: yields whether it may go (False: being written, or
        written lately)."""
        with self._cond:
            self._forget_old()
            free = sha256 not in self._writing and sha256 not in self._written \
                and sha256 not in self._deleting
            if free:
                self._deleting.add(sha256)
        try:
            yield free
        finally:
            if free:
                with self._cond:
                    self._deleting.discard(sha256)
                    self._cond.notify_all()

    def _forget_old(self) -> None:
        cutoff = self.clock() - self.settle
        while self._written:
            sha, at = next(iter(self._written.items()))
            if at >= cutoff:
                return
            del self._written[sha]
