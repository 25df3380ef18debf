"""A worker whose executor's room changes while it runs (Ray's free CPUs): the intake offers
what the executor can run now, over HTTP polls and over the worker channel, and a Ray job's
environment carries only what belongs on another machine.

The channel's master end is a real WebSocket server that records every frame: the credit a
worker grants is the thing under test, so the frames are checked in the order they came.
"""

from __future__ import annotations

import json
import queue
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.unit.test_worker_poller import Reports, Runs, ScriptedMaster
from websockets.sync.server import ServerConnection, serve

from titan.worker.channel import ChannelIntake
from titan.worker.poller import Poller
from titan.worker.ray_executor import shipped_env

WAIT = 10.0


def _job(i: int) -> dict[str, Any]:
    return {"id": i, "attempt": 1, "job_id": f"j{i}", "filename": "x.py"}


# ---------------------------------------------------------------------------- HTTP polls


def test_the_poller_offers_what_the_executor_can_run_now() -> None:
    master, runs, stopped = ScriptedMaster(), Runs(), threading.Event()
    poller = Poller(slots=3, burst=False, call=master.call, supervisor=runs,  # type: ignore[arg-type]
                    reporter=Reports(), stopped=stopped,  # type: ignore[arg-type]
                    on_burst_done=lambda: None, on_error=lambda exc: None)
    poller.resize(1)  # before the first poll: the executor has room for one job
    poller.start()
    try:
        call = master.next()
        while not call.long:
            call.answer()
            call = master.next()
        assert call.offer == 1
        poller.resize(10)  # room grew (never past the slots registered: 3)
        assert poller.slots == 3
        fetch = master.next()
        assert not fetch.long and fetch.offer == 2  # the new slots, offered at once
    finally:
        stopped.set()
        poller.wake()
        for open_call in master.open:
            open_call.answer()
        while not master.calls.empty():
            master.calls.get().answer()


# ---------------------------------------------------------------------------- the channel


class ChannelMaster:
    """The master's end of one worker channel: records frames, sends what the test says."""

    def __init__(self) -> None:
        self.frames: queue.Queue[dict[str, Any]] = queue.Queue()
        self._ws: ServerConnection | None = None
        self._server = serve(self._serve, "127.0.0.1", 0, compression=None)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        self.url = f"ws://127.0.0.1:{self._server.socket.getsockname()[1]}/channel"

    def _serve(self, ws: ServerConnection) -> None:
        self._ws = ws
        for text in ws:
            self.frames.put(json.loads(text))

    def next(self) -> dict[str, Any]:
        return self.frames.get(timeout=WAIT)

    def send(self, message: dict[str, Any]) -> None:
        assert self._ws is not None
        self._ws.send(json.dumps(message))

    def close(self) -> None:
        self._server.shutdown()


class Started(Runs):
    """The supervisor stand-in, telling a waiting test when jobs have started."""

    def __init__(self) -> None:
        super().__init__()
        self.cond = threading.Condition()

    def start(self, assignment: Any) -> bool:
        with self.cond:
            super().start(assignment)
            self.cond.notify_all()
        return True


@pytest.fixture
def channel() -> Iterator[tuple[ChannelIntake, ChannelMaster, Started]]:
    master, runs, stopped = ChannelMaster(), Started(), threading.Event()
    intake = ChannelIntake(url=master.url, headers=dict, slots=4,
                           supervisor=runs, held=list,  # type: ignore[arg-type]
                           stopped=stopped, hard=threading.Event(), reattach=lambda: None,
                           on_error=lambda exc: None)
    yield intake, master, runs
    stopped.set()
    intake.wake()
    master.close()


def _connected(intake: ChannelIntake, master: ChannelMaster, slots: int) -> dict[str, Any]:
    """Open the channel offering ``slots``; returns the hello the master read."""
    intake.resize(slots)
    intake.connect_first()
    intake.start()
    return master.next()


def _deliver(master: ChannelMaster, runs: Started, *ids: int) -> None:
    master.send({"t": "jobs", "jobs": [_job(i) for i in ids], "cancel": []})
    with runs.cond:
        assert runs.cond.wait_for(lambda: len(runs.started) >= len(ids), WAIT)


def test_the_channel_grants_grown_room_at_once_and_keeps_slots_when_it_shrinks(
        channel: tuple[ChannelIntake, ChannelMaster, Started]) -> None:
    intake, master, runs = channel
    assert _connected(intake, master, 2) == {"t": "hello", "credit": 2, "running": []}
    _deliver(master, runs, 1, 2)
    intake.resize(1)  # Ray filled up: one of the two slots is not offered again
    intake.on_finished((1, 1))
    intake.on_finished((2, 1))
    assert master.next() == {"t": "credit", "n": 1}
    intake.resize(4)  # room again
    assert master.next() == {"t": "credit", "n": 3}


def test_a_report_returns_only_the_slots_the_executor_still_has(
        channel: tuple[ChannelIntake, ChannelMaster, Started]) -> None:
    intake, master, runs = channel
    assert _connected(intake, master, 2)["credit"] == 2
    master.send({"t": "welcome", "credit_in_reports": True})
    _deliver(master, runs, 1, 2)  # after the welcome: frames are read in order
    intake.resize(1)  # both slots busy, the master holds no credit: one ended job keeps its
    intake.on_finished((1, 1))
    intake.on_finished((2, 1))
    results = [{"id": i, "attempt": 1, "exit_code": 0, "error": None, "timed_out": False}
               for i in (1, 2)]
    intake.post({"logs": [], "results": results}, lambda reply, error: None)
    report = master.next()
    assert report["t"] == "report" and report["credit"] == 1
    intake.resize(3)
    assert master.next() == {"t": "credit", "n": 2}


def test_an_attempt_delivered_twice_in_one_frame_takes_one_slot(
        channel: tuple[ChannelIntake, ChannelMaster, Started]) -> None:
    # A re-registration and the channel's hello once both queued an undelivered job: it came
    # twice in one frame, took two slots and freed one, and after a few failovers the worker
    # stayed live with free slots it never offered again.
    intake, master, runs = channel
    assert _connected(intake, master, 2)["credit"] == 2
    master.send({"t": "jobs", "jobs": [_job(7), _job(7)], "cancel": []})
    with runs.cond:
        assert runs.cond.wait_for(lambda: runs.started, WAIT)
    assert runs.started == [7] and intake.busy == 1
    # The master spent two credits on that frame: the one the duplicate took no slot for
    # comes back at once.
    assert master.next() == {"t": "credit", "n": 1}
    intake.on_finished((7, 1))
    assert master.next() == {"t": "credit", "n": 1}
    assert intake.busy == 0


def test_a_job_pushed_again_while_it_runs_gives_its_credit_back() -> None:
    # A re-registration that raced a push makes the master push a running job again: it
    # spent a credit the worker takes no slot for, and gets it back.
    class Holding(Started):
        def __contains__(self, key: object) -> bool:
            return isinstance(key, tuple) and key[0] in self.started

    master, runs, stopped = ChannelMaster(), Holding(), threading.Event()
    intake = ChannelIntake(url=master.url, headers=dict, slots=2,
                           supervisor=runs, held=list,  # type: ignore[arg-type]
                           stopped=stopped, hard=threading.Event(), reattach=lambda: None,
                           on_error=lambda exc: None)
    try:
        assert _connected(intake, master, 2)["credit"] == 2
        _deliver(master, runs, 7)
        master.send({"t": "jobs", "jobs": [_job(7)], "cancel": []})
        assert master.next() == {"t": "credit", "n": 1}
        assert runs.started == [7] and intake.busy == 1
    finally:
        stopped.set()
        intake.wake()
        master.close()


# ---------------------------------------------------------------------------- environment


def test_a_ray_job_gets_only_the_credentials_passed_to_every_job() -> None:
    environ = {"PATH": "/worker/bin", "HOME": "/home/worker", "OPENAI_API_KEY": "sk-1",
               "GITHUB_TOKEN": "gh", "TITAN_JOB_ENV_PASS": "MY_SECRET", "MY_SECRET": "s",
               "TITAN_TOKEN": "tt_" + "x" * 30}
    # PATH and HOME describe the worker's machine; the job gets its Ray node's.
    assert shipped_env(environ) == {"OPENAI_API_KEY": "sk-1", "MY_SECRET": "s"}


def test_the_worker_offers_what_its_executor_can_run_now(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from titan.worker.daemon import Worker

    worker = Worker("http://127.0.0.1:9", None, [], 4, str(tmp_path), use_zygote=False)
    assert worker.capabilities == ["GENERAL"]  # none named: the executor's
    room: list[int | None] = [None]
    monkeypatch.setattr(worker._runner, "capacity", lambda: room[0])
    worker._fit_slots()  # a local executor's size does not change: the slots stay
    assert worker.poller.slots == 4
    room[0] = 1  # Ray is nearly full
    worker._fit_slots()
    assert worker.poller.slots == 1
    room[0] = 9  # never more than the slots registered
    worker._fit_slots()
    assert worker.poller.slots == 4


def test_a_worker_refuses_what_its_executor_cannot_do(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from titan import errors
    from titan.worker.daemon import Worker

    def worker(**kw: Any) -> Worker:
        return Worker("http://127.0.0.1:9", None, [], 2, str(tmp_path), use_zygote=False, **kw)

    with pytest.raises(errors.ConfigError, match="executor must be one of local, ray"):
        worker(executor="k8s")
    with pytest.raises(errors.ConfigError, match="do not apply to --executor ray"):
        worker(executor="ray", sandbox=True)
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    with pytest.raises(errors.ConfigError, match=r"pip install 'titan-agents\[ray\]'"):
        worker(executor="ray", ray_address="127.0.0.1:1")
