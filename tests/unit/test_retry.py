"""The one retry policy (titan.retry) the SDK and the worker share."""

from __future__ import annotations

import time

import httpx
import pytest
from tests.conftest import free_port

from titan import retry
from titan.client import TitanClient
from titan.errors import ConfigError, ConnectionFailed


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_pauses_grow_exponentially_within_jitter_bounds_and_cap() -> None:
    for rand in (lambda: 0.0, lambda: 0.999999):
        pauses = [retry.pause(n, start=0.05, cap=2.0, rand=rand) for n in range(10)]
        steps = [min(2.0, 0.05 * 2 ** n) for n in range(10)]
        for p, step in zip(pauses, steps, strict=True):
            assert step / 2 <= p <= step  # never under half the step, never over it
    assert retry.pause(1000, start=0.05, cap=2.0) <= 2.0  # no overflow on long outages


def test_jitter_spreads_a_crowd_of_clients() -> None:
    draws = {round(retry.pause(3, start=0.05, cap=2.0), 4) for _ in range(50)}
    assert len(draws) > 10


def test_backoff_honours_the_grace_deadline() -> None:
    clock = Clock()
    backoff = retry.Backoff(5.0, clock=clock, rand=lambda: 1.0)
    total = 0.0
    while (delay := backoff.next_delay()) is not None:
        total += delay
        clock.now += delay
    assert total == pytest.approx(5.0)  # the last pause is cut to the deadline, then it stops
    assert backoff.tries > 3


def test_backoff_without_grace_never_gives_up() -> None:
    clock = Clock()
    backoff = retry.Backoff(None, clock=clock)
    for _ in range(1000):
        delay = backoff.next_delay()
        assert delay is not None and delay <= 2.0
        clock.now += delay


def test_zero_grace_gives_up_at_once() -> None:
    assert retry.Backoff(0.0).next_delay() is None


def test_restart_grace_setting() -> None:
    assert retry.restart_grace({}) == 60.0
    assert retry.restart_grace({"TITAN_MASTER_RESTART_GRACE": "2.5"}) == 2.5
    for bad in ("-1", "soon", "nan", "inf"):
        with pytest.raises(ConfigError, match="TITAN_MASTER_RESTART_GRACE"):
            retry.restart_grace({"TITAN_MASTER_RESTART_GRACE": bad})


def test_which_failures_are_retried() -> None:
    req = httpx.Request("POST", "http://m/x")
    not_sent = [httpx.ConnectError("refused", request=req), httpx.ConnectTimeout("t", request=req),
                httpx.PoolTimeout("p", request=req)]
    lost = [httpx.ReadError("reset", request=req), httpx.RemoteProtocolError("eof", request=req),
            httpx.WriteError("pipe", request=req)]
    for exc in not_sent:  # nothing reached the master: always safe
        assert retry.retryable_error(exc, replayable=False)
    for exc in lost:  # the master may have applied it: only when repeating is harmless
        assert retry.retryable_error(exc, replayable=True)
        assert not retry.retryable_error(exc, replayable=False)
    # A master that is up but slow: retrying would only multiply the wait.
    assert not retry.retryable_error(httpx.ReadTimeout("slow", request=req), replayable=True)
    for status in (502, 503, 504):
        assert retry.retryable_status(status, replayable=True)
        assert not retry.retryable_status(status, replayable=False)
    for status in (400, 401, 404, 409, 413, 500):
        assert not retry.retryable_status(status, replayable=True)


def test_replayable_requests() -> None:
    for method in ("GET", "put", "DELETE"):
        assert retry.replayable(method)
    assert not retry.replayable("POST")
    assert not retry.replayable("POST", {"Content-Type": "application/json"})
    assert retry.replayable("POST", {"idempotency-key": retry.new_key()})
    assert retry.new_key() != retry.new_key() and len(retry.new_key()) >= 16


def test_a_callers_bound_caps_the_grace_widened_or_not() -> None:
    clock = Clock()
    backoff = retry.Backoff(60.0, clock=clock, rand=lambda: 1.0, until=clock.now + 5)
    assert backoff.deadline == clock.now + 5 and backoff.caller_bound and backoff.span == 5.0
    backoff.widen(120.0)  # a master said it is restarting: still not past the caller's bound
    total = 0.0
    while (delay := backoff.next_delay()) is not None:
        total += delay
        clock.now += delay
    assert total == pytest.approx(5.0)
    # A bound further than the grace leaves the grace in charge.
    assert not retry.Backoff(2.0, clock=clock, until=clock.now + 10).caller_bound
    assert retry.Backoff(None, clock=clock, until=clock.now + 3).deadline == clock.now + 3


def test_retrying_within_bounds_every_call_of_a_block(monkeypatch: pytest.MonkeyPatch) -> None:
    """An MCP tool call must answer in time whatever TITAN_MASTER_RESTART_GRACE says: the
    calls in a ``retrying_within`` block stop retrying at its end (a real refused port)."""
    monkeypatch.setenv("TITAN_MASTER_RESTART_GRACE", "60")
    monkeypatch.setenv("TITAN_JOB_UID", "7")  # in a job: an outage is a restart, given 60 s
    client = TitanClient(host="127.0.0.1", port=free_port(), token="t")
    with client.retrying_within(0.5), client.retrying_within(30):  # the earlier end holds
        began = time.monotonic()
        with pytest.raises(ConnectionFailed, match=r"tries within 0\.5s"):
            client.store_get("k")
        with pytest.raises(ConnectionFailed):
            client.get_job("j")  # the block's end, not a fresh 0.5 s
        assert time.monotonic() - began < 1.5
    client.close()
