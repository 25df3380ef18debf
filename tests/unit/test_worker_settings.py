"""What the worker takes from its environment and from its master's replies: a value out of
range is bounded or refused with one line, never a thread's traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from titan.errors import ConfigError
from titan.worker.daemon import run_worker
from titan.worker.lease_thread import MAX_HEARTBEAT, MIN_HEARTBEAT, seconds_from_master
from titan.worker.loop import IOLoop
from titan.worker.runner import Runner
from titan.worker.settings import env_choice


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


@pytest.mark.parametrize(("raw", "taken"), [
    (None, "1"), ("", "1"), (" ", "1"), ("0", "0"), ("1", "1"), ("info", "INFO")])
def test_a_setting_of_named_values_takes_one_of_them(monkeypatch: pytest.MonkeyPatch,
                                                     raw: str | None, taken: str) -> None:
    if raw is not None:
        monkeypatch.setenv("TITAN_SOMETHING", raw)
    assert env_choice("TITAN_SOMETHING", "1", ("0", "1", "INFO")) == taken


def test_a_setting_of_named_values_refuses_any_other(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TITAN_SOMETHING", "maybe")
    with pytest.raises(ConfigError) as told:
        env_choice("TITAN_SOMETHING", "1", ("0", "1"))
    assert str(told.value) == "TITAN_SOMETHING must be one of 0, 1 (got 'maybe')"


def test_an_unknown_log_level_stops_the_worker_with_one_line(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    # TITAN_LOG_LEVEL=LOUD was taken silently as "warnings only".
    monkeypatch.setenv("TITAN_LOG_LEVEL", "LOUD")
    assert run_worker("http://127.0.0.1:1", "x", [], 1, str(tmp_path)) == 2
    assert caplog.messages == [
        "TITAN_LOG_LEVEL must be one of DEBUG, INFO, WARNING, ERROR (got 'LOUD')"]


def test_an_unknown_lean_zygote_setting_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    # TITAN_ZYGOTE_LEAN=maybe was taken silently as "1".
    monkeypatch.setenv("TITAN_ZYGOTE_LEAN", "maybe")
    with pytest.raises(ConfigError, match=r"^TITAN_ZYGOTE_LEAN must be one of 0, 1 \(got 'maybe'\)$"):
        Runner(IOLoop())  # refused before the loop is used
