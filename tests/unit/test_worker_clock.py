"""A worker's clock as the master estimates it (scheduling/worker_clock.py) and what the
master's log says of it (worker_protocol._clock_said): a sample delayed on its way (a heartbeat
that waited through a master's restart) neither shifts log times nor warns, and a warning is
withdrawn when the estimate comes back."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import pytest
from tests.fake_masters import FakeMaster

from titan.master.scheduling import worker_protocol
from titan.master.scheduling.state import WorkerRec
from titan.master.scheduling.worker_clock import WorkerClock
from titan.worker.connection import MasterConnection
from titan.worker.lease_thread import stamped


def test_the_offset_is_the_least_delayed_of_two_samples_that_agree() -> None:
    c = WorkerClock()
    assert c.offset == 0.0 and c.shift(100.0) == 100.0
    c.sample(1000.0, 1060.02)  # 60 s behind, 20 ms on the way: one sample proves nothing
    assert c.offset == 0.0
    c.sample(1005.0, 1065.01)  # a second that agrees
    assert round(c.offset, 2) == 60.01 and round(c.shift(1000.0), 2) == 1060.01
    c.sample(990.0, 1090.0)  # a heartbeat that waited 40 s on its way: more, never less
    assert round(c.offset, 2) == 60.01
    for bad in (None, "1000", True, float("nan"), float("inf")):
        c.sample(bad, 5000.0)
    assert round(c.offset, 2) == 60.01
    c.sample(2000.0, 2000.01)  # its clock set right: one sample is not enough ...
    assert round(c.offset, 2) == 60.01
    c.sample(2005.0, 2005.02)  # ... two that agree are, however small the older ones
    assert c.offset == 0.0  # within a second: times are kept as they are


def test_a_heartbeat_delayed_by_an_outage_is_no_offset() -> None:
    # A worker on the master's own host; the master restarts: the first heartbeat it hears
    # waited 4.8 s. It was "4.8 s behind the master's" at once, its log lines shifted.
    c = WorkerClock()
    c.sample(1000.0, 1004.8)
    assert c.offset == 0.0 and c.news() is None
    c.sample(1005.0, 1005.003)  # the next heartbeat: they disagree, no estimate yet
    assert c.offset == 0.0 and c.news() is None
    c.sample(1010.0, 1010.002)  # two agree: on time
    assert c.offset == 0.0 and c.news() is None


def test_the_warning_is_said_once_then_again_only_when_the_estimate_moves() -> None:
    c = WorkerClock()
    for t in range(3):
        c.sample(1000.0 + t, 1003.0 + t)
    assert c.news() == 3.0 and c.news() is None  # said once, not on every heartbeat
    c.sample(1004.0, 1007.5)  # within TOLERANCE of what was said: nothing new
    assert c.news() is None
    for t in range(5, 7):  # stepped further behind (all older samples move out of the window)
        c.sample(1000.0 + t, 1010.0 + t)
    for t in range(7, 10):
        c.sample(1000.0 + t, 1010.0 + t)
    assert c.news() == 10.0
    for t in range(10, 12):  # set right: the warning is withdrawn
        c.sample(1000.0 + t, 1000.0 + t + 0.01)
    assert c.offset == 0.0 and c.news() == 0.0 and c.news() is None


def test_the_masters_log_says_withdraws_and_keeps_quiet(caplog: pytest.LogCaptureFixture) -> None:
    w = WorkerRec(id="w-1", name="box", hostname="h", capabilities=frozenset({"GENERAL"}),
                  slots=1, last_seen=0)
    with caplog.at_level(logging.INFO, logger="titan.master"):
        worker_protocol._clock_said(w, 1000.0, 1004.8)  # a heartbeat that waited: quiet
        worker_protocol._clock_said(w, 1005.0, 1005.01)
        worker_protocol._clock_said(w, 1010.0, 1010.01)
        assert caplog.messages == []
        for t in range(5):  # stepped 60 s behind (older samples leave the window)
            worker_protocol._clock_said(w, 1015.0 + 5 * t, 1075.0 + 5 * t + 0.01)
        for t in range(4):  # and set right again
            worker_protocol._clock_said(w, 1100.0 + 5 * t, 1100.0 + 5 * t + 0.01)
    assert caplog.messages == [
        "worker w-1 (box): its clock is 60.0 s behind the master's; the times of its jobs' "
        "log lines are shifted by that, their durations are measured on its monotonic clock",
        "worker w-1 (box): its clock is now within 2 s of the master's; the times of its "
        "jobs' log lines are kept as they are"]


def test_a_call_retried_through_an_outage_says_when_each_try_was_sent() -> None:
    """The worker's side: ``now`` is stamped on each try, not once for all of them (a
    heartbeat retried through a master's 5 s restart said it was sent 5 s before it was)."""
    master = FakeMaster()
    tries: list[float] = []

    def restarting(_m: FakeMaster, request: dict[str, Any]) -> tuple[int, Any]:
        tries.append(time.time())
        return (502, {}) if len(tries) < 4 else (200, {"cancel": []})

    master.routes["POST /api/v1/workers/w-1/heartbeat"] = restarting
    conn = MasterConnection(master.url, "wt", threading.Event())
    try:
        conn.call("POST", "/workers/w-1/heartbeat", lambda: stamped({"running": []}))
    finally:
        conn.close()
        master.close()
    said = [body["now"] for _, _, body in master.requests]
    assert len(said) == 4 and said == sorted(said) and len(set(said)) == 4
    for sent, received in zip(said, tries, strict=True):
        assert 0 <= received - sent < 0.2  # each try's own time, not the first one's
    assert said[-1] - said[0] >= 0.2  # the backoff's pauses in between
