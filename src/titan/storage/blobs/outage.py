"""A blob store that cannot be reached: the error a request gets, and the outage said on the
master's log once, not as a traceback per request.

An object store that is down or refusing connections, one throttling or failing with 5xx, a
directory whose network mount went away: each is the place's state, not the request's fault
nor a bug, and passes (or an operator makes it pass) without a restart. The store raises
:class:`~titan.errors.BlobStoreUnavailable` (503, ``Retry-After``: clients ask again, as for
``database_unavailable``), made by :meth:`Outage.failed`, which logs the outage's first
refusal, then a count every :data:`SAY_EVERY` seconds while it lasts, and its end at the next
call that succeeds. It was a ``500 internal_error`` ("a bug in the master") with a botocore
traceback in the log for every upload, download and submission.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from titan.errors import BlobStoreUnavailable

log = logging.getLogger("titan.master")

#: While the store stays away, refusals are counted in one line this often.
SAY_EVERY = 30.0


class Outage:
    """One store's outages: :meth:`failed` at each refusal, :meth:`ok` after each call that
    reached it (a bool check while the store is up)."""

    def __init__(self, clock: Any = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._since: float | None = None  # when the current outage began (None: none)
        self._said = 0.0  # when the last line about it was logged
        self._quiet = 0  # refusals since then, not logged one by one
        self.refused = 0  # refusals in the current outage

    @property
    def down(self) -> bool:
        return self._since is not None

    def failed(self, message: str, *, reason: str, store: str) -> BlobStoreUnavailable:
        """The refusal to raise (``message`` says what happened and what to do; ``reason``:
        ``unreachable``, ``credentials`` or ``failing``), said on the log as described
        above."""
        now = self._clock()
        with self._lock:
            self.refused += 1
            if self._since is None:
                self._since, self._said, self._quiet = now, now, 0
                log.warning("blob store unavailable: %s; requests that need it answer 503 "
                            "blob_store_unavailable until it is back", message)
            elif now - self._said >= SAY_EVERY:
                log.warning("blob store still unavailable: %d more request(s) answered 503 "
                            "(last: %s)", self._quiet + 1, message)
                self._said, self._quiet = now, 0
            else:
                self._quiet += 1
        return BlobStoreUnavailable(message, details={"store": store, "reason": reason})

    def ok(self) -> None:
        if self._since is None:
            return
        with self._lock:
            if self._since is None:
                return
            log.info("blob store back after %.0f s (%d request(s) answered 503 meanwhile)",
                        self._clock() - self._since, self.refused)
            self._since, self.refused = None, 0
