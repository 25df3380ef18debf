"""A registering worker refused its name waits for the master's ``retry_after`` — a value the
master sends, so never trusted to be sane: it must neither spin nor wait past its bound."""

from __future__ import annotations

import math

from titan.worker.lease_thread import retry_wait


def test_a_hint_within_the_bound_is_waited_for() -> None:
    assert retry_wait({"retry_after": 4.8}, 15.0) == 4.8
    assert retry_wait({"retry_after": 2}, 15.0) == 2.0


def test_no_hint_or_one_past_the_bound_gives_up() -> None:
    assert retry_wait({}, 15.0) is None
    assert retry_wait(None, 15.0) is None
    assert retry_wait({"retry_after": 20.0}, 15.0) is None
    assert retry_wait({"retry_after": 1.0}, -0.5) is None  # the bound has passed


def test_hostile_values_neither_spin_nor_wait_for_ever() -> None:
    # A negative hint once made the give-up check never true: a 0.05 s loop for ever.
    assert retry_wait({"retry_after": -100}, 15.0) == 0.05
    assert retry_wait({"retry_after": -100}, 0.01) is None
    for bad in (math.nan, math.inf, -math.inf, True, "5", [5], {"s": 5}):
        assert retry_wait({"retry_after": bad}, 15.0) is None, bad
    assert retry_wait({"retry_after": 1e308}, 15.0) is None
