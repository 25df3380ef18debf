"""The schedule service on a real engine and SQLite file, with a fake clock: each tick is one
run committed with its fire, a restarted master picks up where the database says (catch-up
applied, no tick twice), overlap skip and queue, pause, resume, run now, delete.

No worker is registered, so a submitted DAG stays unfinished until it is cancelled: that is
what "the previous run still runs" means to the overlap policy."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from titan.errors import Conflict, InvalidDAG, NotFound, ValidationFailed
from titan.master.config import MasterConfig
from titan.master.events import EventHub
from titan.master.schedules.service import Schedules
from titan.master.scheduling.engine import Engine
from titan.storage import open_storage
from titan.storage.base import Row, Transaction

T = TypeVar("T")
SHA = "ab" * 32
T0 = dt.datetime(2024, 5, 1, 10, 2, tzinfo=dt.UTC).timestamp()  # 10:02 UTC
MIN = 60.0


class Master:
    """One master's engine and schedules on ``url``, on a clock the test moves."""

    def __init__(self, url: str, clock: list[float]) -> None:
        self.engine = Engine(MasterConfig(), open_storage(url), EventHub())
        self.schedules = Schedules(self.engine, clock=lambda: clock[0])

    async def start(self) -> Master:
        await self.engine.start()
        await self.schedules.start()
        await self.settle()
        return self

    async def stop(self) -> None:
        await self.schedules.stop()
        await self.engine.stop()
        self.engine.storage.close()

    async def settle(self) -> None:
        """Let armed timers that are due (and what they start) run to the end."""
        for _ in range(100):
            await asyncio.sleep(0.01)
            if not self.schedules._tasks:
                return

    async def read(self, fn: Callable[[Transaction], T]) -> T:
        return await self.engine.read(fn)

    async def fires(self, name: str) -> list[Row]:
        """Oldest first."""
        def q(tx: Transaction) -> list[Row]:
            row = tx.get_schedule(name)
            assert row is not None
            return tx.schedule_fires(row["id"], 100)[::-1]
        return await self.read(q)

    async def dags(self) -> list[Row]:
        return await self.read(lambda tx: tx.list_dags(limit=100, newest_first=False)[0])


def body(name: str = "nightly", **kw: Any) -> Row:
    return {"name": name, "cron": "*/5 * * * *", "timezone": "UTC",
            "jobs": [{"job_id": "etl", "filename": "etl.py", "script_sha256": SHA}], **kw}


def scenario(tmp_path: Path, test: Callable[[str, list[float]], Awaitable[None]]) -> None:
    url = f"sqlite:///{tmp_path / 'titan.db'}"
    storage = open_storage(url)
    with storage.transaction() as tx:
        tx.add_blob(SHA, 10, time.time())
    storage.close()
    asyncio.run(test(url, [T0]))


def test_a_tick_submits_one_run_with_its_fire(tmp_path: Path) -> None:
    async def test(url: str, clock: list[float]) -> None:
        m = await Master(url, clock).start()
        view = await m.schedules.create(body(), "ops")
        assert view["next_fire_at"] == T0 + 3 * MIN and len(view["next_fires"]) == 5
        assert view["created_by"] == "ops" and view["jobs"][0]["job_id"] == "etl"
        clock[0] = T0 + 3 * MIN + 0.01
        await m.schedules.tick(m.schedules.get("nightly"))
        [fire] = await m.fires("nightly")
        [dag] = await m.dags()
        assert fire["tick"] == T0 + 3 * MIN and fire["outcome"] == "submitted"
        assert fire["dag_id"] == dag["id"] and dag["schedule"] == "nightly"
        assert dag["name"] == "nightly" and fire["dag_status"] == "WAITING"
        row = await m.read(lambda tx: tx.get_schedule("nightly"))
        assert row is not None and row["next_fire_at"] == T0 + 8 * MIN
        assert row["last_fire_at"] == T0 + 3 * MIN
        # The unique (schedule, tick) key: the same tick submitted again starts nothing.
        rec = m.schedules.get("nightly")
        assert await m.schedules._submit(rec, T0 + 3 * MIN, T0 + 8 * MIN) is None
        assert len(await m.dags()) == 1
        await m.stop()

    scenario(tmp_path, test)


missed_policy = {"skipper": "skip", "latest": "latest"}


def test_a_restart_fires_nothing_twice_and_catches_up_as_told(tmp_path: Path) -> None:
    async def test(url: str, clock: list[float]) -> None:
        m = await Master(url, clock).start()
        for name, catchup in (("skipper", "skip"), ("latest", "latest"), ("every", "all")):
            await m.schedules.create(body(name, catchup=catchup), "ops")
        clock[0] = T0 + 3 * MIN + 0.01  # 10:05: each fires once
        for rec in list(m.schedules.recs.values()):
            await m.schedules.tick(rec)
        await m.stop()
        # Back at once: nothing is due, nothing fires again.
        m = await Master(url, clock).start()
        assert len(await m.dags()) == 3
        await m.stop()
        # Down from 10:05 to 11:02: ticks 10:10 ... 11:00 were missed (11 of them).
        clock[0] = T0 + 60 * MIN
        m = await Master(url, clock).start()
        fired = {name: [f["tick"] for f in await m.fires(name)
                        if f["outcome"] == "submitted"][1:]
                 for name in ("skipper", "latest", "every")}
        assert fired["skipper"] == []
        assert fired["latest"] == [T0 + 58 * MIN]
        assert fired["every"] == [T0 + (3 + 5 * i) * MIN for i in range(1, 12)]
        # The history says what was missed, once, at the first tick missed (it said nothing:
        # only the master's log did).
        for name, fired_how in (("skipper", "fires none of them"),
                                ("latest", "fired only the latest, 2024-05-01T11:00:00+00:00")):
            [missed] = [f for f in await m.fires(name) if f["outcome"] == "skipped"]
            assert missed["tick"] == T0 + 8 * MIN and missed["dag_id"] is None
            assert missed["error"] == (
                "missed: this tick and those after it until 2024-05-01T11:02:00+00:00 fell "
                f"while no master ran on time (catchup: {missed_policy[name]} {fired_how})")
        assert [f["outcome"] for f in await m.fires("every")].count("skipped") == 0
        for name in fired:
            row = await m.read(lambda tx, name=name: tx.get_schedule(name))  # type: ignore[misc]
            assert row is not None and row["next_fire_at"] == T0 + 63 * MIN
        assert len(await m.dags()) == 3 + 0 + 1 + 11
        await m.stop()

    scenario(tmp_path, test)


def test_overlap_skip_and_queue(tmp_path: Path) -> None:
    async def test(url: str, clock: list[float]) -> None:
        m = await Master(url, clock).start()
        await m.schedules.create(body("skipping", overlap="skip"), "ops")
        await m.schedules.create(body("queueing", overlap="queue"), "ops")
        for k in (3, 8, 13):  # three ticks while the first run never ends (no worker)
            clock[0] = T0 + k * MIN
            for rec in list(m.schedules.recs.values()):
                await m.schedules.tick(rec)
        skipping = await m.fires("skipping")
        assert [f["outcome"] for f in skipping] == ["submitted", "skipped", "skipped"]
        assert "still running" in skipping[1]["error"]
        queueing = await m.fires("queueing")
        assert [f["outcome"] for f in queueing] == ["submitted", "queued", "skipped"]
        # The first run ends: the queued tick starts now, as the run of that fire.
        first = queueing[0]["dag_id"]
        await m.engine.cancel_dag(first, "WAITING")
        await m.settle()
        queueing = await m.fires("queueing")
        assert queueing[1]["outcome"] == "submitted" and queueing[1]["dag_id"] not in (None, first)
        assert queueing[1]["tick"] == T0 + 8 * MIN
        await m.stop()

    scenario(tmp_path, test)


def test_catchup_all_under_skip_or_queue_runs_every_missed_tick_one_after_another(
        tmp_path: Path) -> None:
    # catchup: all with overlap: queue ran the first missed tick, queued the second and
    # skipped the rest; with overlap: skip only the first ran. The backfill a user asked for
    # was lost: now each missed tick waits its turn, oldest first, across a restart too.
    async def test(url: str, clock: list[float]) -> None:
        m = await Master(url, clock).start()
        for overlap in ("skip", "queue", "allow"):
            await m.schedules.create(body(overlap, catchup="all", overlap=overlap), "ops")
        clock[0] = T0 + 3 * MIN + 0.01  # 10:05: each fires once, and that run never ends
        for rec in list(m.schedules.recs.values()):
            await m.schedules.tick(rec)
        await m.stop()
        clock[0] = T0 + 14 * MIN  # down from 10:05 to 10:16: 10:10 and 10:15 were missed
        m = await Master(url, clock).start()
        for overlap in ("skip", "queue"):
            fires = await m.fires(overlap)
            assert [(f["tick"], f["outcome"]) for f in fires] == [
                (T0 + 3 * MIN, "submitted"), (T0 + 8 * MIN, "queued"),
                (T0 + 13 * MIN, "queued")], overlap
        assert [f["outcome"] for f in await m.fires("allow")] == ["submitted"] * 3
        # A regular tick while the backfill waits: one tick waits at most, as before.
        clock[0] = T0 + 18 * MIN + 0.01
        await m.schedules.tick(m.schedules.get("queue"))
        assert (await m.fires("queue"))[-1]["outcome"] == "skipped"
        await m.stop()
        m = await Master(url, clock).start()  # the backlog survives a restart, in order
        for overlap in ("skip", "queue"):
            for k in (8, 13):
                fires = await m.fires(overlap)
                going = [f for f in fires if f["outcome"] == "submitted"][-1]
                await m.engine.cancel_dag(going["dag_id"], "WAITING")
                await m.settle()
                started = [f for f in await m.fires(overlap) if f["outcome"] == "submitted"]
                assert started[-1]["tick"] == T0 + k * MIN, (overlap, k)
            assert [f["outcome"] for f in await m.fires(overlap)].count("queued") == 0
        await m.stop()

    scenario(tmp_path, test)


def test_a_queued_tick_survives_a_restart(tmp_path: Path) -> None:
    async def test(url: str, clock: list[float]) -> None:
        m = await Master(url, clock).start()
        await m.schedules.create(body("q", overlap="queue"), "ops")
        for k in (3, 8):
            clock[0] = T0 + k * MIN
            await m.schedules.tick(m.schedules.get("q"))
        first = (await m.fires("q"))[0]["dag_id"]
        await m.stop()
        m = await Master(url, clock).start()
        assert [f["outcome"] for f in await m.fires("q")] == ["submitted", "queued"]
        await m.engine.cancel_dag(first, "WAITING")
        await m.settle()
        assert [f["outcome"] for f in await m.fires("q")] == ["submitted", "submitted"]
        await m.stop()

    scenario(tmp_path, test)


def test_a_run_by_hand_never_hides_the_run_still_going_before_or_after_a_restart(
        tmp_path: Path) -> None:
    # overlap: queue. A run by hand recorded while a tick waited has a higher fire id than
    # the queued tick's, which becomes a run later: the restarted master took the manual run
    # (long finished) for the last one and started a second run beside the queued tick's.
    async def test(url: str, clock: list[float]) -> None:
        m = await Master(url, clock).start()
        await m.schedules.create(body("q", overlap="queue"), "ops")
        for k in (3, 8):  # a run, then a tick queued behind it
            clock[0] = T0 + k * MIN
            await m.schedules.tick(m.schedules.get("q"))
        first = (await m.fires("q"))[0]["dag_id"]
        manual = await m.schedules.run_now("q")
        await m.engine.cancel_dag(manual, "WAITING")  # by hand, ended while the first goes
        await m.settle()
        clock[0] = T0 + 13 * MIN  # the first run still goes and a tick waits: skipped
        await m.schedules.tick(m.schedules.get("q"))
        assert [f["outcome"] for f in await m.fires("q")] == [
            "submitted", "queued", "submitted", "skipped"]
        assert "DAG" not in (await m.fires("q"))[-1]["error"]  # named q#1, not by its id
        await m.engine.cancel_dag(first, "WAITING")  # the queued tick's run starts
        await m.settle()
        fires = await m.fires("q")
        queued_run = fires[1]["dag_id"]
        assert fires[1]["outcome"] == "submitted" and queued_run not in (None, first, manual)
        await m.stop()
        m = await Master(url, clock).start()  # the queued tick's run still goes
        assert m.schedules.get("q").last_dag_id == queued_run
        clock[0] = T0 + 18 * MIN
        await m.schedules.tick(m.schedules.get("q"))
        assert (await m.fires("q"))[-1]["outcome"] == "queued"
        assert len([d for d in await m.dags() if d["status"] in ("WAITING", "RUNNING")]) == 1
        await m.stop()

    scenario(tmp_path, test)


def test_pause_resume_run_now_and_delete(tmp_path: Path) -> None:
    async def test(url: str, clock: list[float]) -> None:
        m = await Master(url, clock).start()
        await m.schedules.create(body(overlap="queue"), "ops")
        clock[0] = T0 + 3 * MIN
        await m.schedules.tick(m.schedules.get("nightly"))
        clock[0] = T0 + 8 * MIN
        await m.schedules.tick(m.schedules.get("nightly"))  # queued behind the first run
        paused = await m.schedules.pause("nightly")
        assert paused["paused"] and paused["next_fire_at"] is None and paused["next_fires"] == []
        assert [f["outcome"] for f in paused["fires"]] == ["skipped", "submitted"]  # newest first
        assert m.schedules.get("nightly").timer is None
        clock[0] = T0 + 30 * MIN
        await m.schedules.tick(m.schedules.get("nightly"))  # nothing happens while paused
        # Resuming goes on from the next tick: those that fell while paused are not missed.
        resumed = await m.schedules.resume("nightly")
        assert not resumed["paused"] and resumed["next_fire_at"] == T0 + 33 * MIN
        # By hand: a run now, whatever the overlap policy, recorded with no tick.
        dag_id = await m.schedules.run_now("nightly")
        fire = (await m.fires("nightly"))[-1]
        assert fire["tick"] is None and fire["dag_id"] == dag_id
        assert len(await m.dags()) == 2
        await m.schedules.delete("nightly")
        assert await m.read(lambda tx: tx.get_schedule("nightly")) is None
        assert [d["schedule"] for d in await m.dags()] == ["nightly", "nightly"]  # they stay
        await m.stop()

    scenario(tmp_path, test)


def test_create_checks_the_whole_body(tmp_path: Path) -> None:
    async def test(url: str, clock: list[float]) -> None:
        m = await Master(url, clock).start()
        await m.schedules.create(body(), "ops")
        with pytest.raises(Conflict, match="exists already"):
            await m.schedules.create(body(), "ops")
        with pytest.raises(ValidationFailed, match="unknown field 'crontab'"):
            await m.schedules.create({**body("x"), "crontab": "* * * * *"}, "ops")
        with pytest.raises(ValidationFailed, match="catchup must be one of"):
            await m.schedules.create(body("x", catchup="sometimes"), "ops")
        with pytest.raises(ValidationFailed, match="'localtime' is not an IANA time zone"):
            await m.schedules.create(body("x", timezone="localtime"), "ops")
        with pytest.raises(InvalidDAG, match="was not uploaded"):
            await m.schedules.create(body("x", jobs=[
                {"job_id": "a", "filename": "a.py", "script_sha256": "cd" * 32}]), "ops")
        view = await m.schedules.create(body("later", paused=True, dag_name="DAG-etl"), "ops")
        assert view["paused"] and view["next_fire_at"] is None and view["dag_name"] == "etl"
        assert [v["name"] for v in await m.schedules.views()] == ["later", "nightly"]
        await m.stop()

    scenario(tmp_path, test)


def test_an_update_changes_the_rule_policies_and_dag_from_the_next_tick(tmp_path: Path) -> None:
    async def test(url: str, clock: list[float]) -> None:
        m = await Master(url, clock).start()
        await m.schedules.create(body(overlap="queue"), "ops")
        clock[0] = T0 + 3 * MIN
        await m.schedules.tick(m.schedules.get("nightly"))
        clock[0] = T0 + 8 * MIN
        await m.schedules.tick(m.schedules.get("nightly"))  # queued behind the first run
        # Only what is given changes; a new rule moves the next tick to its first after now.
        view = await m.schedules.update("nightly", {"cron": "0 * * * *",
                                                    "timezone": "Europe/Paris"})
        assert (view["cron"], view["timezone"]) == ("0 * * * *", "Europe/Paris")
        assert view["next_fire_at"] == T0 + 58 * MIN and view["overlap"] == "queue"
        assert m.schedules.get("nightly").queued  # still queue: still queued
        # Leaving "queue" drops the queued tick, with why.
        view = await m.schedules.update("nightly", {"overlap": "allow", "catchup": "all"})
        assert view["fires"][0]["outcome"] == "skipped"
        assert "overlap policy changed" in view["fires"][0]["error"]
        assert view["next_fire_at"] == T0 + 58 * MIN  # the rule did not change
        # A new DAG: the next tick runs it, under its new name.
        view = await m.schedules.update("nightly", {"dag_name": "DAG-etl2", "jobs": [
            {"job_id": "load", "filename": "etl.py", "script_sha256": SHA}]})
        assert view["dag_name"] == "etl2" and [j["job_id"] for j in view["jobs"]] == ["load"]
        clock[0] = T0 + 58 * MIN
        await m.schedules.tick(m.schedules.get("nightly"))
        latest = (await m.dags())[-1]
        assert latest["name"] == "etl2" and latest["schedule"] == "nightly"
        # A restart loads the changed schedule as it was stored.
        await m.stop()
        m = await Master(url, clock).start()
        rec = m.schedules.get("nightly")
        assert (rec.rule.expr, rec.catchup, rec.overlap, rec.dag_name) == (
            "0 * * * *", "all", "allow", "etl2")
        assert rec.next_fire_at == T0 + 118 * MIN
        # A paused schedule stays paused whatever its new rule.
        await m.schedules.pause("nightly")
        view = await m.schedules.update("nightly", {"cron": "*/10 * * * *"})
        assert view["paused"] and view["next_fire_at"] is None
        # Bad updates change nothing.
        for bad, match in (({"paused": False}, "use pause or resume"),
                           ({"name": "other"}, "cannot change"), ({}, "nothing to update"),
                           ({"cron": "61 * * * *"}, "cron"),
                           ({"overlap": "sometimes"}, "overlap must be one of"),
                           # Files of the zone database that are no IANA zone: "localtime"
                           # is whatever the machine running the master is set to.
                           ({"timezone": "localtime"}, "not an IANA time zone"),
                           ({"timezone": "Factory"}, "not an IANA time zone"),
                           ({"timezone": {"name": "UTC"}}, "timezone must be an IANA name"),
                           ({"jobs": []}, "no jobs"),
                           # A DAG name given is checked, new jobs or not (it was ignored).
                           ({"dag_name": "", "jobs": [{"job_id": "x", "filename": "etl.py",
                                                       "script_sha256": SHA}]}, "DAG name")):
            with pytest.raises(ValidationFailed, match=match):
                await m.schedules.update("nightly", bad)
        assert (await m.schedules.view("nightly"))["cron"] == "*/10 * * * *"
        with pytest.raises(NotFound):
            await m.schedules.update("nobody", {"cron": "* * * * *"})
        with pytest.raises(NotFound):  # not "nothing to update": there is nothing there
            await m.schedules.update("nobody", {})
        # An update that waited for the schedule's lock while it was deleted changes nothing.
        rec = m.schedules.get("nightly")
        await rec.lock.acquire()
        deleting = asyncio.ensure_future(m.schedules.delete("nightly"))
        await asyncio.sleep(0)
        updating = asyncio.ensure_future(m.schedules.update("nightly", {"cron": "0 * * * *"}))
        await asyncio.sleep(0)
        rec.lock.release()
        await deleting
        with pytest.raises(NotFound):
            await updating
        assert await m.read(lambda tx: tx.get_schedule("nightly")) is None
        await m.stop()

    scenario(tmp_path, test)


def test_a_tick_whose_run_cannot_start_is_recorded_failed_and_the_next_comes(
        tmp_path: Path) -> None:
    async def test(url: str, clock: list[float]) -> None:
        m = await Master(url, clock).start()
        await m.schedules.create(body(), "ops")

        def lose_the_script(tx: Transaction) -> None:  # what no master ever does: for the test
            from sqlalchemy import delete

            from titan.storage import schema
            tx.conn.execute(delete(schema.blobs))  # type: ignore[attr-defined]

        await m.engine.run(lose_the_script)
        m.engine.blob_holds.known.clear()
        clock[0] = T0 + 3 * MIN
        await m.schedules.tick(m.schedules.get("nightly"))
        [fire] = await m.fires("nightly")
        assert fire["outcome"] == "failed" and "was not uploaded" in fire["error"]
        assert m.schedules.get("nightly").next_fire_at == T0 + 8 * MIN
        assert m.schedules.get("nightly").timer is not None and await m.dags() == []
        await m.stop()

    scenario(tmp_path, test)


def test_a_tick_just_after_a_suspended_machine_wakes_fires(tmp_path: Path) -> None:
    # The loop's clock is monotonic, and a suspended machine's stops: a timer armed before a
    # laptop's lid closed overnight still had its full sleep to go when it opened. With 5
    # minutes of it, the 11:00 tick falling 10 s after the wake was looked at up to ~5 min
    # late, and `catchup: skip` dropped it as missed (over 60 s late), though the master ran.
    async def test(url: str, clock: list[float]) -> None:
        m = await Master(url, clock).start()
        await m.schedules.create(body("morning", cron="0 11 * * *"), "ops")
        rec = m.schedules.get("morning")
        assert rec.timer is not None
        loop = asyncio.get_running_loop()
        still = rec.timer.when() - loop.time()  # monotonic time left: the suspend stops it
        # Suspended from 10:02 to 10:59:50 (wall); the timer wakes `still` after the resume.
        clock[0] = T0 + 57 * MIN + 50 + still
        rec.timer.cancel()
        rec.timer = None
        await m.schedules.tick(rec)  # what the timer does when it goes off
        while rec.next_fire_at == T0 + 58 * MIN:  # woken before the tick: armed again
            assert rec.timer is not None
            clock[0] += rec.timer.when() - loop.time()
            rec.timer.cancel()
            rec.timer = None
            await m.schedules.tick(rec)
        assert [f["tick"] for f in await m.fires("morning")] == [T0 + 58 * MIN]
        await m.stop()

    scenario(tmp_path, test)
