"""The engine's sweep of silent workers while the wall clock steps (NTP), on a real engine and
SQLite file; the clock is the one thing faked.

When a worker was last seen is read on the wall clock; the sweeper's own sleep is timed on the
monotonic one, and a gap between the two says the wall clock stepped. A step back an hour
kept a dead worker live for the hour; a step forward lost every worker at once."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from titan.master.auth.tokens import Principal
from titan.master.config import MasterConfig
from titan.master.events import EventHub
from titan.master.scheduling import worker_protocol as proto
from titan.master.scheduling.engine import Engine
from titan.storage import open_storage

LEASE = 1.0  # the sweeper looks every third of it


def swept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, step: float,
          heartbeats: bool) -> str:
    """Register worker "w", step the wall clock by ``step`` seconds, let the sweeper look
    for 2.5 leases (the worker heartbeating from half a lease after the step, or silent);
    the worker's state then."""
    offset = [0.0]
    wall = time.time
    monkeypatch.setattr(time, "time", lambda: wall() + offset[0])
    storage = open_storage(f"sqlite:///{tmp_path / 'titan.db'}")

    async def run() -> str:
        engine = Engine(MasterConfig(lease_seconds=LEASE), storage, EventHub())
        await engine.start()
        try:
            await proto.register(engine, {"worker_id": "w", "slots": 1},
                                 Principal(role="admin"))
            offset[0] = step  # while the sweeper sleeps: the sleep that spans it sees it
            await asyncio.sleep(LEASE / 2)
            for _ in range(20):
                if heartbeats and engine.sched.workers["w"].state == "live":
                    engine.worker("w")
                await asyncio.sleep(LEASE / 10)
            return engine.sched.workers["w"].state
        finally:
            await engine.stop()
            storage.close()

    return asyncio.run(run())


def test_a_worker_silent_after_the_clock_stepped_back_is_lost(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert swept(tmp_path, monkeypatch, -3600.0, heartbeats=False) == "lost"


def test_a_step_forward_loses_no_worker_that_heartbeats(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert swept(tmp_path, monkeypatch, 3600.0, heartbeats=True) == "live"


def test_a_lost_worker_keeps_when_it_was_last_seen_across_a_stall(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A stall (SIGSTOP of the master, a clock step) gives the workers still heard a lease to
    speak again; one already lost or stopped is not one of them: `titan workers` showed a
    host lost at 12:30:29 as last seen at 12:31:01, when the master resumed (a QA pass)."""
    offset = [0.0]
    wall = time.time
    monkeypatch.setattr(time, "time", lambda: wall() + offset[0])
    storage = open_storage(f"sqlite:///{tmp_path / 'titan.db'}")

    async def run() -> tuple[float, float]:
        engine = Engine(MasterConfig(lease_seconds=LEASE), storage, EventHub())
        await engine.start()
        try:
            await proto.register(engine, {"worker_id": "gone", "slots": 1},
                                 Principal(role="admin"))
            for _ in range(40):  # silent: lost after a lease
                if engine.sched.workers["gone"].state == "lost":
                    break
                await asyncio.sleep(LEASE / 10)
            seen = engine.sched.workers["gone"].last_seen
            offset[0] = 600.0  # the sweeper's next look sees a stall
            await asyncio.sleep(LEASE)
            return seen, engine.sched.workers["gone"].last_seen
        finally:
            await engine.stop()
            storage.close()

    before, after = asyncio.run(run())
    assert after == before
