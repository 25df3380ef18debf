"""Schedules in storage, on SQLite and PostgreSQL alike: a name taken once, a tick recorded
once, queued fires started or dropped once, fires read back with their DAG, and what a
restarted master needs (each schedule's last run and its queued fire)."""

from __future__ import annotations

from typing import Any

from tests.contract import test_storage as base
from titan.storage import Storage
from titan.storage.base import Row

storage = base.storage  # the parametrised SQLite/PostgreSQL fixture (emptied per test)
JOBS = [{"job_id": "etl", "filename": "etl.py", "args": ["--day", "1"], "env": {}}]


def schedule_row(name: str, **kw: Any) -> Row:
    return {"name": name, "dag_name": name, "cron": "*/5 * * * *", "timezone": "Europe/Paris",
            "jobs": JOBS, "catchup": "skip", "overlap": "allow", "paused": False,
            "next_fire_at": 300.0, "last_fire_at": None, "created_at": 1.0,
            "created_by": "ops", "updated_at": 1.0, **kw}


def fire(schedule_id: int, tick: float | None, outcome: str = "submitted",
         dag_id: int | None = None) -> Row:
    return {"schedule_id": schedule_id, "tick": tick, "fired_at": (tick or 0) + 0.5,
            "outcome": outcome, "dag_id": dag_id, "error": None}


def dag(storage: Storage, name: str, run: int, schedule: str | None = None) -> int:
    with storage.transaction() as tx:
        row = base.dag_row(name, run)
        if schedule is not None:
            row["schedule"] = schedule
        return tx.insert_dag(row)


def test_a_schedule_round_trips_and_its_name_is_taken_once(storage: Storage) -> None:
    with storage.transaction() as tx:
        sid = tx.insert_schedule(schedule_row("nightly"))
        assert sid is not None
        assert tx.insert_schedule(schedule_row("nightly", cron="0 * * * *")) is None
        tx.insert_schedule(schedule_row("hourly", paused=True, next_fire_at=None))
    with storage.transaction() as tx:
        row = tx.get_schedule("nightly")
        assert row is not None and row["id"] == sid and row["jobs"] == JOBS
        assert row["cron"] == "*/5 * * * *" and row["paused"] is False
        assert [r["name"] for r in tx.list_schedules()] == ["hourly", "nightly"]
        assert tx.list_schedules()[0]["paused"] is True
        tx.update_schedule(sid, {"next_fire_at": 600.0, "last_fire_at": 300.0})
        tx.update_schedule(sid, {"jobs": [{"job_id": "b", "args": ["ü"]}], "cron": "0 * * * *"})
    with storage.transaction() as tx:
        row = tx.get_schedule("nightly")
        assert row is not None and (row["next_fire_at"], row["last_fire_at"]) == (600.0, 300.0)
        assert row["jobs"] == [{"job_id": "b", "args": ["ü"]}] and row["cron"] == "0 * * * *"
        assert tx.get_schedule("nope") is None


def test_a_tick_is_recorded_once_a_run_by_hand_any_number_of_times(storage: Storage) -> None:
    d1, d2 = dag(storage, "nightly", 1, "nightly"), dag(storage, "nightly", 2, "nightly")
    with storage.transaction() as tx:
        sid = tx.insert_schedule(schedule_row("nightly"))
        assert sid is not None
        first = tx.record_fire(fire(sid, 300.0, dag_id=d1))
        assert first is not None
        assert tx.record_fire(fire(sid, 300.0, dag_id=d2)) is None  # the same tick: refused
        assert tx.record_fire(fire(sid, None, dag_id=d2)) is not None  # by hand: no tick
        assert tx.record_fire(fire(sid, None)) is not None
    with storage.transaction() as tx:
        fires = tx.schedule_fires(sid, 10)
        assert [f["tick"] for f in fires] == [None, None, 300.0]  # newest first
        assert fires[1]["dag_id"] == d2 and fires[1]["dag_name"] == "nightly"
        assert fires[1]["dag_run"] == 2 and fires[1]["dag_status"] == "WAITING"
        assert fires[0]["dag_id"] is None and fires[0]["dag_status"] is None
        assert len(tx.schedule_fires(sid, 2)) == 2
        assert tx.get_dag(d1)["schedule"] == "nightly"  # type: ignore[index]


def test_queued_fires_start_or_drop_once(storage: Storage) -> None:
    d1, d2 = dag(storage, "q", 1), dag(storage, "q", 2)
    with storage.transaction() as tx:
        sid = tx.insert_schedule(schedule_row("q", overlap="queue"))
        assert sid is not None
        tx.record_fire(fire(sid, 300.0, dag_id=d1))
        queued = tx.record_fire(fire(sid, 600.0, "queued"))
        assert queued is not None
        later = tx.record_fire(fire(sid, 900.0, "queued"))
    with storage.transaction() as tx:
        states = tx.schedule_states()
        assert states == {sid: {"last_dag_id": d1, "live": [d1],
                                "queued": [{"id": queued, "tick": 600.0},
                                           {"id": later, "tick": 900.0}]}}
        assert tx.start_queued_fire(queued, d2)
        assert not tx.start_queued_fire(queued, d2)  # started already
    with storage.transaction() as tx:
        assert tx.schedule_states()[sid]["last_dag_id"] == d2
        assert tx.drop_queued_fires(sid, "paused") == 1
        assert tx.drop_queued_fires(sid, "paused") == 0
        outcomes = [(f["tick"], f["outcome"], f["error"]) for f in tx.schedule_fires(sid, 10)]
        assert outcomes == [(900.0, "skipped", "paused"), (600.0, "submitted", None),
                            (300.0, "submitted", None)]
        assert tx.schedule_states()[sid]["queued"] == []


def test_a_queued_fire_that_cannot_start_fails_alone(storage: Storage) -> None:
    d1 = dag(storage, "b", 1)
    with storage.transaction() as tx:
        sid = tx.insert_schedule(schedule_row("b", overlap="skip", catchup="all"))
        assert sid is not None
        tx.record_fire(fire(sid, 300.0, dag_id=d1))
        first = tx.record_fire(fire(sid, 600.0, "queued"))
        later = tx.record_fire(fire(sid, 900.0, "queued"))
        assert first is not None and later is not None
    with storage.transaction() as tx:
        assert tx.fail_queued_fire(first, "the run could not start: gone")
        assert not tx.fail_queued_fire(first, "again")  # no longer queued
        assert tx.schedule_states()[sid]["queued"] == [{"id": later, "tick": 900.0}]
        outcomes = [(f["tick"], f["outcome"], f["error"]) for f in tx.schedule_fires(sid, 10)]
        assert outcomes == [(900.0, "queued", None),
                            (600.0, "failed", "the run could not start: gone"),
                            (300.0, "submitted", None)]


def test_the_last_run_is_the_one_started_last_and_live_ones_are_listed(storage: Storage) -> None:
    # overlap: queue, and a run by hand while a tick waits: the queued fire (the older id)
    # becomes the run after the manual one, and is the last run, whatever the fire ids say.
    d1, manual = dag(storage, "m", 1), dag(storage, "m", 2)
    with storage.transaction() as tx:
        sid = tx.insert_schedule(schedule_row("m", overlap="queue"))
        assert sid is not None
        tx.record_fire(fire(sid, 300.0, dag_id=d1))
        queued = tx.record_fire(fire(sid, 600.0, "queued"))
        assert queued is not None
        tx.record_fire(fire(sid, None, dag_id=manual))
        tx.update_dags({d1: {"status": "COMPLETED"}, manual: {"status": "COMPLETED"}})
    d3 = dag(storage, "m", 3)
    with storage.transaction() as tx:
        assert tx.start_queued_fire(queued, d3)
    with storage.transaction() as tx:
        assert tx.schedule_states()[sid] == {"last_dag_id": d3, "live": [d3], "queued": []}
        tx.update_dags({d3: {"status": "RUNNING"}})
        assert tx.schedule_states()[sid]["live"] == [d3]
        tx.update_dags({d3: {"status": "PARTIAL"}})
        assert tx.schedule_states()[sid]["live"] == []
        # The run started last, read alone: ticks skipped since (a long run under overlap:
        # skip) push it out of the latest fires, where the last run was all that was shown.
        for tick in (900.0, 1200.0, 1500.0):
            tx.record_fire(fire(sid, tick, "skipped"))
        [last] = tx.schedule_fires(sid, 1, started=True)
        assert (last["id"], last["dag_id"], last["dag_run"]) == (queued, d3, 3)
        assert [f["dag_id"] for f in tx.schedule_fires(sid, 3)] == [None, None, None]
        assert [f["dag_id"] for f in tx.schedule_fires(sid, 10, started=True)] == [
            d3, manual, d1]


def test_deleting_a_schedule_takes_its_fires_and_leaves_its_runs(storage: Storage) -> None:
    d1 = dag(storage, "gone", 1, "gone")
    with storage.transaction() as tx:
        sid = tx.insert_schedule(schedule_row("gone"))
        assert sid is not None
        tx.record_fire(fire(sid, 300.0, dag_id=d1))
        assert tx.delete_schedule(sid)
        assert not tx.delete_schedule(sid)
    with storage.transaction() as tx:
        assert tx.get_schedule("gone") is None and tx.schedule_fires(sid, 10) == []
        assert tx.schedule_states() == {}
        assert tx.get_dag(d1)["schedule"] == "gone"  # type: ignore[index]
        # The name is free again.
        assert tx.insert_schedule(schedule_row("gone")) is not None
