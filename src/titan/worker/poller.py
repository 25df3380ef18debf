"""Filling the worker's slots: slot accounting, the long-poll and the quick fetches.

Two threads ask the master for work, each blocked on what ends its wait:

* **titan-poll** keeps exactly one long-poll open at all times, offering the free slots not
  offered elsewhere (0 when full or draining, so cancels still arrive at once).
* **titan-fetch** asks with ``wait: 0`` for the slots that freed up while the long-poll was
  parked offering fewer. The master answers the parked poll when the fetch arrives (a newer
  poll supersedes it, docs/api.md), so the long-poll comes straight back and is re-sent
  offering every free slot. A fetch follows each acknowledged result (a child job becomes
  ready only once its parent's result is committed) and, while the queue has a backlog,
  each finished job (no need to wait for the report to find more work). In burst mode every
  job is taken this way and the long-poll offers nothing.

Slots are counted as *credit*: the jobs the master may still send. Each poll sent adds its
offer; each job received spends one. A poll's unspent credit is only written off once no poll
is in flight at all, because the master hands the jobs it leased to whichever answer it builds
next — a job taken for a quick fetch can arrive on the answer to the long-poll it superseded,
even one that offered nothing. So the worker never holds more jobs than slots.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from titan.worker.assignment import Key
from titan.worker.connection import WAIT_MARGIN
from titan.worker.intake import Intake
from titan.worker.reporter import Reporter
from titan.worker.supervisor import Supervisor

log = logging.getLogger("titan.worker")

POLL_WAIT = 20

#: ``call(action, body, timeout=...)``: a worker API call that survives master restarts.
Call = Callable[..., Any]


class Poller(Intake):
    """Slot accounting and the two threads that fill the slots."""

    def __init__(self, *, slots: int, burst: bool, call: Call, supervisor: Supervisor,
                 reporter: Reporter, stopped: threading.Event,
                 on_burst_done: Callable[[], None],
                 on_error: Callable[[BaseException], None],
                 on_settled: Callable[[], None] = lambda: None) -> None:
        super().__init__(slots=slots, burst=burst, supervisor=supervisor)
        self._call = call
        self._reporter = reporter
        self._stopped = stopped
        self._on_burst_done = on_burst_done
        self._on_error = on_error
        self._on_settled = on_settled
        self._credit = 0  # jobs the master may still send on the polls in flight
        self._in_flight = 0  # polls sent and not answered yet (long-poll and fetch)
        self._long_offer = 0  # what the long-poll in flight offered
        self._fetching = False
        self._dirty = True  # something changed since the last fetch: maybe there is work
        self._backlog = False  # the last poll filled every slot it offered
        self._draining = False
        self._withdraw = False  # draining: take back the slots the parked long-poll offers

    # ------------------------------------------------------------------ control

    def start(self) -> None:
        for target, name in ((self._poll_loop, "titan-poll"), (self._fetch_loop, "titan-fetch")):
            threading.Thread(target=target, name=name, daemon=True).start()

    def _stop_taking(self) -> None:
        """Take no more jobs (polls keep running, offering nothing, for cancels).

        A long-poll parked offering slots would still take a job for up to its whole wait;
        a ``wait: 0`` poll offering none (and saying ``draining``) supersedes it at once, and
        it comes back to be re-sent offering nothing. Sent even when nothing was offered: the
        master shows the worker as draining from that moment, not a long-poll later.
        """
        with self._cond:
            self._draining = True
            self._withdraw = True
            self._cond.notify_all()

    def settled(self) -> bool:
        # Every poll that could carry a job is answered (its credit written off) and every
        # job that came is counted as busy: nothing leased to this worker is still on its way.
        with self._cond:
            return self._credit == 0 and self._busy == 0

    def _resized(self, change: int) -> None:
        if change > 0:
            self._dirty = True  # a quick fetch offers the new slots (the long-poll is parked)

    # ------------------------------------------------------------------ events

    def on_finished(self, _key: Key) -> None:
        """An attempt ended and its result is queued (I/O thread)."""
        with self._cond:
            self._busy -= 1
            if self._backlog:
                self._dirty = True
            self._cond.notify_all()

    def on_acked(self, results: list[dict[str, Any]]) -> None:
        """The master committed a report; with results in it, children may be ready."""
        if results:
            with self._cond:
                self._dirty = True
                self._cond.notify_all()

    # ------------------------------------------------------------------ replies

    def _unoffered(self) -> int:
        return max(0, self.slots - self._busy - self._credit)

    def _sending(self, offer: int) -> None:
        self._in_flight += 1
        self._credit += offer

    def _answered(self, jobs: int) -> None:
        self._in_flight -= 1
        self._credit = max(0, self._credit - jobs)
        if self._in_flight == 0:
            self._credit = 0  # every answer is in: nothing more can come
        if self._credit == 0 and self._draining:
            self._on_settled()  # the daemon may be waiting for this to leave

    def _accept(self, reply: Any, *, offer: int, long_poll: bool) -> int:
        """Start the jobs of a poll reply and kill its cancels; returns how many jobs came."""
        jobs = list(reply.get("jobs") or []) if isinstance(reply, dict) else []
        cancels = list(reply.get("cancel") or []) if isinstance(reply, dict) else []
        with self._cond:
            # Settling the credit and counting the jobs in one step: between the two, another
            # thread would see slots that are neither offered nor busy and offer them twice.
            self._answered(len(jobs))
            if long_poll:
                self._long_offer = 0
            else:
                self._fetching = False
            if offer > 0:
                self._backlog = len(jobs) >= offer
            accepted = self._take(jobs)
            self._cond.notify_all()
        self._start(accepted, cancels)
        return len(jobs)

    # ------------------------------------------------------------------ threads

    def _poll_loop(self) -> None:
        try:
            while not self._stopped.is_set():
                with self._cond:
                    # A quick fetch in flight holds slots it may hand back empty; offering
                    # now would leave those slots offered by nobody for a whole long-poll.
                    self._cond.wait_for(lambda: not self._fetching or self._stopped.is_set())
                    offer = 0 if (self._draining or self.burst) else self._unoffered()
                    self._long_offer = offer
                    self._sending(offer)
                try:
                    reply = self._call("poll", {"free_slots": offer, "wait": POLL_WAIT,
                                                "draining": self._draining},
                                       timeout=POLL_WAIT + WAIT_MARGIN)
                except BaseException:
                    with self._cond:
                        self._answered(0)
                        self._long_offer = 0
                        self._cond.notify_all()
                    raise
                self._accept(reply, offer=offer, long_poll=True)
        except Exception as exc:  # any failure here must stop the worker visibly
            self._on_error(exc)

    def _fetch_loop(self) -> None:
        def wanted() -> bool:
            return self._stopped.is_set() or self._withdraw or (
                self._dirty and not self._draining and self._unoffered() > 0
            )

        try:
            while True:
                with self._cond:
                    self._cond.wait_for(wanted)
                    if self._stopped.is_set():
                        return
                    self._dirty = self._withdraw = False
                    offer = 0 if self._draining else self._unoffered()
                    self._fetching = True
                    self._sending(offer)
                try:
                    reply = self._call("poll", {"free_slots": offer, "wait": 0,
                                                "draining": self._draining})
                except BaseException:
                    with self._cond:
                        self._answered(0)
                        self._fetching = False
                        self._cond.notify_all()
                    raise
                got = self._accept(reply, offer=offer, long_poll=False)
                if self.burst and got == 0 and self._burst_finished():
                    log.info("burst: the queue is empty; stopping")
                    self._on_burst_done()
                    return
        except Exception as exc:  # any failure here must stop the worker visibly
            self._on_error(exc)

    def _burst_finished(self) -> bool:
        """Empty queue, nothing running, every result acknowledged, and nothing changed
        while we asked: a burst worker's work is done.

        An empty answer to the fetch is not yet an empty queue: the jobs the master leased
        for it may come on the answer to the long-poll it superseded (see the module
        docstring), which lands moments later. Deciding on the fetch's answer alone, the
        worker left with those jobs leased to it and never started (a QA pass: 4 runs in 6),
        so the decision waits until every poll is answered (no credit left)."""
        with self._cond:
            self._cond.wait_for(lambda: self._credit == 0 or self._dirty
                                or self._stopped.is_set())
            return (self._credit == 0 and not self._dirty and self._busy == 0
                    and self._reporter.results_pending == 0)
