"""What the worker takes from its environment and from its master's replies: a value out of
range is bounded or refused with one line, never a thread's traceback."""

from __future__ import annotations

import pytest

from titan.worker.lease_thread import MAX_HEARTBEAT, MIN_HEARTBEAT, seconds_from_master


@pytest.mark.parametrize(("said", "taken"), [
    (5, 5.0), ("5", 5.0),
    # A master that took TITAN_LEASE_SECONDS=1e300: the heartbeat wait overflowed.
    (1e300, MAX_HEARTBEAT), (float("inf"), MAX_HEARTBEAT), (1e-300, MIN_HEARTBEAT),
    # Nothing usable: the worker's own default.
    (None, 7.0), (0, 7.0), (-1, 7.0), (float("nan"), 7.0), ("soon", 7.0), ([1], 7.0),
])
def test_a_heartbeat_period_from_the_master_is_bounded(said: object, taken: float) -> None:
    assert seconds_from_master({"heartbeat_seconds": said}, "heartbeat_seconds", 7.0,
                               MIN_HEARTBEAT, MAX_HEARTBEAT) == taken


def test_a_bounded_period_is_said(caplog: pytest.LogCaptureFixture) -> None:
    seconds_from_master({"heartbeat_seconds": 1e300}, "heartbeat_seconds", 7.0, 0.1, 1200)
    assert "the master's heartbeat_seconds of 1e+300s is out of 0.1-1200s: 1200s it is" \
        in caplog.text
