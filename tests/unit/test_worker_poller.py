"""The poller's slot accounting against a master that answers when the test says so.

The master is scripted call by call (each poll blocks until the test answers it), so races
the real master allows are replayed deterministically. The supervisor and reporter are
stand-ins that only record: the poller is the thing under test.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from titan.worker.poller import POLL_WAIT, Poller

WAIT = 10.0


class Call:
    def __init__(self, action: str, body: dict[str, Any]) -> None:
        self.action, self.body = action, body
        self._answered = threading.Event()
        self._reply: dict[str, Any] = {}

    @property
    def long(self) -> bool:
        return self.action == "poll" and self.body["wait"] > 0

    @property
    def offer(self) -> int:
        return int(self.body["free_slots"])

    def answer(self, *job_ids: int, cancel: tuple[int, ...] = ()) -> None:
        self._reply = {"jobs": [{"id": i, "attempt": 1, "job_id": f"j{i}", "filename": "x.py"}
                                for i in job_ids],
                       "cancel": [{"id": i, "attempt": 1} for i in cancel]}
        self._answered.set()

    def wait(self) -> dict[str, Any]:
        assert self._answered.wait(WAIT * 3)
        return self._reply


class ScriptedMaster:
    def __init__(self) -> None:
        self.calls: queue.Queue[Call] = queue.Queue()
        self.open: list[Call] = []

    def call(self, action: str, body: dict[str, Any], **_kw: Any) -> dict[str, Any]:
        call = Call(action, body)
        self.calls.put(call)
        return call.wait()

    def next(self) -> Call:
        call = self.calls.get(timeout=WAIT)
        self.open.append(call)
        return call


class Runs:
    """Supervisor stand-in: records what it is asked to start and kill."""

    def __init__(self) -> None:
        self.started: list[int] = []
        self.cancelled: list[tuple[int, int]] = []
        self.why: list[str] = []

    def __contains__(self, key: object) -> bool:
        return False

    def start(self, assignment: Any) -> bool:
        self.started.append(assignment.id)
        return True

    def cancel(self, key: tuple[int, int], reason: str = "cancelled",
               why: str = "cancelled") -> bool:
        self.cancelled.append(key)
        self.why.append(why)
        return True

    def release_services(self) -> None:
        """A draining worker hands its services back: none run here."""


class Reports:
    results_pending = 0


@pytest.fixture
def rig() -> Iterator[tuple[Poller, ScriptedMaster, Runs, threading.Event]]:
    master, runs, stopped = ScriptedMaster(), Runs(), threading.Event()
    done = threading.Event()
    poller = Poller(slots=1, burst=False, call=master.call, supervisor=runs,  # type: ignore[arg-type]
                    reporter=Reports(), stopped=stopped,  # type: ignore[arg-type]
                    on_burst_done=done.set, on_error=lambda exc: None)
    poller.start()
    yield poller, master, runs, stopped
    stopped.set()
    poller.wake()
    for call in master.open:
        call.answer()
    while not master.calls.empty():
        master.calls.get().answer()


def _park_long_poll(master: ScriptedMaster) -> Call:
    """Answer quick fetches until the long-poll arrives; return it, unanswered."""
    while True:
        call = master.next()
        if call.long:
            return call
        call.answer()


def test_one_long_poll_offers_the_free_slots_and_jobs_start(rig: Any) -> None:
    poller, master, runs, _ = rig
    first = _park_long_poll(master)
    assert first.offer == 1 and first.body["wait"] == POLL_WAIT
    first.answer(7, cancel=(3,))
    again = master.next()
    assert again.long and again.offer == 0  # full: still open, so cancels arrive at once
    assert runs.started == [7] and runs.cancelled == [(3, 1)]
    assert runs.why == ["cancelled"]  # an entry without "why" (an older master)
    assert poller.busy == 1


def test_a_job_arriving_on_the_superseded_long_poll_is_not_offered_twice(rig: Any) -> None:
    """The master delivers jobs it leased on whichever answer it builds next: a job taken
    for a quick fetch may arrive on the answer to the long-poll that fetch superseded, after
    the fetch itself came back empty. Until that answer is in, the slot stays spoken for."""
    poller, master, runs, _ = rig
    _park_long_poll(master).answer(1)
    parked = master.next()
    assert parked.long and parked.offer == 0
    poller.on_finished((1, 1))  # the queue had a backlog: fetch at once
    fetch = master.next()
    assert not fetch.long and fetch.offer == 1
    fetch.answer()  # empty: the job it leased went onto the parked poll's answer
    poller.on_acked([{"id": 1, "attempt": 1}])  # a result landed: normally worth a fetch
    parked.answer(2)
    nxt = master.next()
    assert nxt.long and nxt.offer == 0, (nxt.action, nxt.body)
    assert runs.started == [1, 2]
    assert poller.busy == 1


def test_freed_slots_are_fetched_and_offered_again(rig: Any) -> None:
    poller, master, runs, _ = rig
    _park_long_poll(master).answer(1)
    parked = master.next()
    poller.on_finished((1, 1))
    fetch = master.next()
    assert not fetch.long and fetch.offer == 1
    parked.answer()  # superseded by the fetch: comes back empty
    fetch.answer()  # nothing ready yet
    nxt = master.next()
    assert nxt.long and nxt.offer == 1  # the freed slot is on offer again
    assert poller.busy == 0


def test_drain_takes_back_the_offer_of_the_parked_long_poll(rig: Any) -> None:
    poller, master, runs, _ = rig
    parked = _park_long_poll(master)
    assert parked.offer == 1
    poller.drain()
    withdraw = master.next()
    assert not withdraw.long and withdraw.offer == 0
    parked.answer()
    withdraw.answer()
    nxt = master.next()
    assert nxt.long and nxt.offer == 0
    assert runs.started == []


def test_burst_is_not_over_while_the_superseded_long_poll_may_bring_jobs() -> None:
    """A burst worker's empty fetch is no empty queue while the long-poll it superseded is
    unanswered: the jobs leased for the fetch come on that answer. The worker decided on the
    fetch alone and left with its jobs leased and never started (a QA pass)."""
    master, runs, stopped = ScriptedMaster(), Runs(), threading.Event()
    done = threading.Event()
    poller = Poller(slots=2, burst=True, call=master.call, supervisor=runs,  # type: ignore[arg-type]
                    reporter=Reports(), stopped=stopped,  # type: ignore[arg-type]
                    on_burst_done=done.set, on_error=lambda exc: None)
    poller.start()
    try:
        first, second = master.next(), master.next()
        parked, fetch = (first, second) if first.long else (second, first)
        assert parked.offer == 0 and fetch.offer == 2
        fetch.answer()  # empty: the jobs it leased went onto the parked poll's answer
        assert not done.wait(0.3) and not poller.settled()
        parked.answer(1, 2)
        again = master.next()  # the long-poll goes out again, offering nothing
        assert again.long and again.offer == 0
        assert runs.started == [1, 2] and not done.is_set()
        for key in ((1, 1), (2, 1)):
            poller.on_finished(key)
        poller.on_acked([{"id": 1, "attempt": 1}, {"id": 2, "attempt": 1}])
        fetch = master.next()  # for what the results made ready
        assert not fetch.long and fetch.offer == 2
        fetch.answer()  # nothing
        assert not done.wait(0.3)  # the parked poll it superseded has not answered yet
        again.answer()
        assert done.wait(WAIT) and poller.settled()
    finally:
        stopped.set()
        poller.wake()
        for call in master.open:
            call.answer()
        while not master.calls.empty():
            master.calls.get().answer()
