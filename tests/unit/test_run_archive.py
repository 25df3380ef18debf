"""The 90-day rule with the clock set forward instead of waiting: Retention's sweep archives
the finished runs that started more than ``archive_days`` ago, once each, whatever their
class; running runs wait for their end, 0 days turns archiving off, and the setting is
checked."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from titan.errors import ConfigError, Conflict
from titan.master.config import MasterConfig
from titan.master.runs.retention import DAY, Retention
from titan.storage import Storage, open_storage
from titan.storage.base import RunQuery, Transaction

T = TypeVar("T")
T0 = 1_700_000_000.0


class _Engine:
    """What Retention uses of the engine: writes and reads in a transaction, an events hub."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self.hub = self
        self.events: list[tuple[str, dict[str, Any]]] = []

    async def run(self, fn: Callable[[Transaction], T]) -> T:
        with self.storage.transaction() as tx:
            return fn(tx)

    read = run

    def publish(self, kind: str, data: dict[str, Any]) -> None:
        self.events.append((kind, data))


@pytest.fixture
def storage(tmp_path: Path) -> Iterator[Storage]:
    s = open_storage(f"sqlite:///{tmp_path / 'titan.db'}")
    with s.transaction() as tx:
        for run_id, start, status, klass in (
                ("a", T0, "completed", "standard"), ("b", T0 + 5 * DAY, "failed", "legal_hold"),
                ("live", T0, "running", "standard"), ("c", T0 + 30 * DAY, "cancelled",
                                                      "standard")):
            tx.create_run({"id": run_id, "created_at": start, "started_at": start,
                           "status": status, "retention_class": klass})
    yield s
    s.close()


def archived(storage: Storage) -> dict[str, float]:
    with storage.transaction() as tx:
        return {r["id"]: r["archived_at"] for r in tx.iter_runs(RunQuery(archived=True))}


def test_the_sweep_archives_what_aged_past_the_days(storage: Storage) -> None:
    now = [T0 + 89 * DAY]
    keeper = Retention(_Engine(storage), 90, clock=lambda: now[0])
    assert asyncio.run(keeper.sweep()) == []  # 89 days: nothing yet
    now[0] = T0 + 91 * DAY
    assert asyncio.run(keeper.sweep()) == ["a"]  # running 'live' waits for its end
    now[0] = T0 + 200 * DAY
    assert asyncio.run(keeper.sweep()) == ["b", "c"]  # a legal hold is archived too
    assert archived(storage) == {"a": T0 + 91 * DAY, "b": T0 + 200 * DAY,
                                 "c": T0 + 200 * DAY}
    assert asyncio.run(keeper.sweep()) == []  # once each


def test_a_run_taken_out_of_the_archive_by_hand_stays_out_a_whole_window(
        storage: Storage) -> None:
    # It was archived again at the next hourly sweep: it was as old as before.
    now = [T0 + 91 * DAY]
    keeper = Retention(_Engine(storage), 90, clock=lambda: now[0])
    assert asyncio.run(keeper.sweep()) == ["a"]
    now[0] = T0 + 100 * DAY
    asyncio.run(keeper.set_archived("a", False))
    now[0] = T0 + 100 * DAY + 3600
    assert "a" not in asyncio.run(keeper.sweep()) and "a" not in archived(storage)
    now[0] = T0 + 189 * DAY  # still within 90 days of being taken out
    assert "a" not in asyncio.run(keeper.sweep())
    now[0] = T0 + 191 * DAY
    assert "a" in asyncio.run(keeper.sweep())


def test_zero_days_never_archives(storage: Storage) -> None:
    keeper = Retention(_Engine(storage), 0, clock=lambda: T0 + 10_000 * DAY)
    assert asyncio.run(keeper.sweep()) == [] and archived(storage) == {}


def test_archiving_by_hand_is_announced(storage: Storage) -> None:
    engine = _Engine(storage)
    keeper = Retention(engine, 90, clock=lambda: T0 + 1)
    run = asyncio.run(keeper.set_archived("a", True))
    assert run["archived_at"] == T0 + 1
    assert engine.events == [("run_updated", engine.events[0][1])]
    assert engine.events[0][1]["id"] == "a" and engine.events[0][1]["archived_at"] == T0 + 1
    assert asyncio.run(keeper.set_archived("a", False))["archived_at"] is None


def test_a_run_still_in_use_is_not_archived_by_hand(storage: Storage) -> None:
    # Hidden from the registry and the intercepts, a running run (even blocked over its
    # budget) left the dashboard saying nothing needed a look (QA). So is one whose stage
    # still runs, or that a running replay reads.
    engine = _Engine(storage)
    keeper = Retention(engine, 90, clock=lambda: T0 + 1)
    with pytest.raises(Conflict, match="still running"):
        asyncio.run(keeper.set_archived("live", True))
    with storage.transaction() as tx:
        tx.create_run({"id": "a-replay-1", "created_at": T0, "started_at": T0,
                       "status": "running", "replay_of": "a"})
    with pytest.raises(Conflict):
        asyncio.run(keeper.set_archived("a", True))
    assert archived(storage) == {} and engine.events == []


@pytest.mark.parametrize(("raw", "days"), [(None, 90.0), ("", 90.0), ("0", 0.0),
                                           ("30", 30.0), ("0.5", 0.5)])
def test_the_setting(raw: str | None, days: float) -> None:
    assert MasterConfig(run_archive_days=raw).archive_days == days


@pytest.mark.parametrize("raw", ["-1", "ninety", "nan", "inf", "1e400", "-inf"])
def test_a_bad_setting_is_a_config_error(raw: str) -> None:
    with pytest.raises(ConfigError, match="TITAN_RUN_ARCHIVE_DAYS"):
        MasterConfig(run_archive_days=raw).check()


@pytest.mark.parametrize("value", ["3m", "90", "90 days", "30m", "0d", "nand",
                                   "\u0663d", "\uff19\uff10d"])  # not ASCII digits
def test_a_retention_that_is_not_hours_or_days_fails_at_start(value: str) -> None:
    # "3m" was read as minutes (someone who meant months lost almost every run); "90" or
    # "90 days" started a master that kept every run, its error lost in a background task.
    with pytest.raises(ConfigError, match="TITAN_RUN_RETENTION must be a number of hours or days"):
        MasterConfig(run_retention=value).check()


def test_a_retention_of_hours_or_days_is_taken() -> None:
    for value in ("12h", "90d", "1.5d", "24H"):
        MasterConfig(run_retention=value).check()
        MasterConfig(dag_retention=value).check()


@pytest.mark.parametrize("value", ["3m", "30", "30 days", "0h"])
def test_a_dag_retention_that_is_not_hours_or_days_fails_at_start(value: str) -> None:
    with pytest.raises(ConfigError, match="TITAN_DAG_RETENTION must be a number of hours or days"):
        MasterConfig(dag_retention=value).check()


def test_a_window_reaching_back_before_1970_says_so() -> None:
    # "must be at least 1h" was the answer to 30000d: the window was too long, not too short.
    with pytest.raises(ConfigError, match="reaches back before 1970"):
        MasterConfig(run_retention="30000d").check()
