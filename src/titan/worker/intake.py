"""What both ways of taking jobs share: counting busy slots, accepting assignments, cancels.

A worker takes its jobs over the worker channel (:mod:`titan.worker.channel`) or over HTTP
long-polls (:mod:`titan.worker.poller`); the daemon drives either through this surface.

``slots`` is what the worker offers, which :meth:`Intake.resize` changes while it runs when its
executor's room does (Ray's free CPUs): never above ``limit``, the slots it registered with
(the master never leases a worker more than those).
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from titan import errors
from titan.worker.assignment import Assignment, Key
from titan.worker.supervisor import Supervisor

log = logging.getLogger("titan.worker")


class Intake:
    """Busy slots and the assignments that fill them; subclasses bring the transport."""

    def __init__(self, *, slots: int, burst: bool, supervisor: Supervisor) -> None:
        self.slots = slots
        self.limit = slots
        self.burst = burst
        self._supervisor = supervisor
        self._cond = threading.Condition()
        self._busy = 0

    # ------------------------------------------------------------------ the daemon's surface

    def start(self) -> None:
        raise NotImplementedError

    def drain(self) -> None:
        """Take no more jobs (cancels keep coming), and hand the services running here back
        to the master, which starts them on another worker."""
        self._stop_taking()
        self._supervisor.release_services()

    def _stop_taking(self) -> None:
        """Take no more jobs; cancels keep coming."""
        raise NotImplementedError

    def wake(self) -> None:
        """Let waiting threads notice that the worker stopped."""
        with self._cond:
            self._cond.notify_all()

    def settled(self) -> bool:
        """Draining: whether every job the master leased to this worker has arrived (the
        daemon leaves only then, once they have ended)."""
        return True

    def on_finished(self, key: Key) -> None:
        """An attempt ended and its result is queued (I/O thread)."""
        raise NotImplementedError

    def on_acked(self, results: list[dict[str, Any]]) -> None:
        """The master committed a report (reporter thread)."""

    def resize(self, slots: int) -> None:
        """Offer ``slots`` (at most :attr:`limit`) from now on. More is offered at once; less
        takes effect as running jobs end (the master may have been offered their slots
        already)."""
        slots = max(0, min(self.limit, slots))
        with self._cond:
            change, self.slots = slots - self.slots, slots
            if change:
                self._resized(change)
                self._cond.notify_all()

    def _resized(self, change: int) -> None:
        """The offer changed by ``change`` slots (with ``_cond`` held)."""

    @property
    def busy(self) -> int:
        with self._cond:
            return self._busy

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no slot is busy; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: self._busy <= 0, timeout)

    def cancel(self, entry: Any) -> None:
        """Kill the attempt a ``{"id", "attempt"}`` cancel names, if it runs here; one with
        ``"stop": grace`` is a service to stop gracefully instead."""
        try:
            key: Key = (int(entry["id"]), int(entry["attempt"]))
            grace = None if entry.get("stop") is None else float(entry["stop"])
        except (KeyError, TypeError, ValueError, AttributeError):
            log.error("malformed cancel %r", entry)
            return
        if grace is not None:
            self._supervisor.stop(key, grace)
        else:
            # Why, in the master's words (an older master gives none).
            self._supervisor.cancel(key, why=str(entry.get("why") or "cancelled")[:300])

    # ------------------------------------------------------------------ for subclasses

    def _take(self, jobs: list[Any]) -> list[Assignment]:
        """Count the assignments of a delivery as busy slots (with ``_cond`` held); returns
        those to start, leaving out an attempt already here (delivered twice)."""
        accepted: list[Assignment] = []
        # One slot per attempt, even listed twice in one delivery: the slot a duplicate took
        # would never be freed (the attempt ends once), and a worker that lost enough of them
        # stayed live with free slots the master could never fill.
        taken: set[Key] = set()
        for raw in jobs:
            try:
                assignment = Assignment.from_json(raw)
            except errors.ValidationFailed as exc:
                log.error("%s", exc)
                continue
            if assignment.key in self._supervisor or assignment.key in taken:
                continue  # delivered twice (a retried poll, a reconnect): it already runs
            taken.add(assignment.key)
            self._busy += 1
            accepted.append(assignment)
        if self._busy > self.limit:
            # Expected while some of its jobs wait on the master, which lends their slots.
            log.debug("running %d jobs on %d slots (slots lent by waiting jobs)",
                      self._busy, self.slots)
        return accepted

    def _start(self, accepted: list[Assignment], cancels: list[Any]) -> None:
        for assignment in accepted:
            self._supervisor.start(assignment)
        for cancel in cancels:
            self.cancel(cancel)
