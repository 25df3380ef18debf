"""catchup: all fires every missed tick once, oldest first, with no hole: a single tick missed
while a run still runs waits its turn as a backfill of several does, and a backfill tick whose
run cannot start leaves the ticks queued after it to be tried. On a real engine and SQLite
file with a fake clock (the harness of test_schedule_service.py): a master away for minutes
is a clock moved, not a test that waits."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.unit.test_schedule_service import MIN, T0, Master, body, scenario

from titan.errors import BlobStoreUnavailable


async def _started(m: Master, name: str) -> list[float]:
    return [f["tick"] for f in await m.fires(name) if f["outcome"] == "submitted"]


async def _end_running(m: Master, name: str) -> None:
    """The run started last ends (cancelled: no worker runs it); a queued tick starts."""
    going = [f for f in await m.fires(name) if f["outcome"] == "submitted"][-1]
    await m.engine.cancel_dag(going["dag_id"], "WAITING")
    await m.settle()


def test_a_single_missed_tick_waits_its_turn_and_leaves_no_hole(tmp_path: Path) -> None:
    # Under overlap: skip or queue, a backfill of two missed ticks waited behind the running
    # run, but one missed tick alone was skipped ("the previous run was still running"): a
    # master away twice left 10:25 unfired between the backfill's 10:15 and what came after.
    async def test(url: str, clock: list[float]) -> None:
        m = await Master(url, clock).start()
        for overlap in ("skip", "queue"):
            await m.schedules.create(body(overlap, catchup="all", overlap=overlap), "ops")
        clock[0] = T0 + 3 * MIN + 0.01  # 10:05: each fires, and that run goes on
        for rec in list(m.schedules.recs.values()):
            await m.schedules.tick(rec)
        await m.stop()
        clock[0] = T0 + 14 * MIN  # away 10:05-10:16: 10:10 and 10:15 are a backfill
        m = await Master(url, clock).start()
        await m.stop()
        clock[0] = T0 + 24 * MIN  # away again 10:16-10:26: 10:20 and 10:25 missed
        m = await Master(url, clock).start()
        await m.stop()
        clock[0] = T0 + 29 * MIN + 30  # away 10:26-10:31:30: only 10:30, 90 s late
        m = await Master(url, clock).start()
        for overlap in ("skip", "queue"):
            fires = await m.fires(overlap)
            assert [(f["tick"], f["outcome"]) for f in fires] == [
                (T0 + 3 * MIN, "submitted"),
                *((T0 + k * MIN, "queued") for k in (8, 13, 18, 23, 28))], overlap
            for _ in range(5):
                await _end_running(m, overlap)
            assert await _started(m, overlap) == [T0 + k * MIN for k in (3, 8, 13, 18, 23, 28)]
        await m.stop()

    scenario(tmp_path, test)


def test_an_on_time_tick_still_follows_the_overlap_policy(tmp_path: Path) -> None:
    # The line is the misfire grace: a tick less than 60 s late (a restart, or the master
    # was up) is on time, and overlap: skip skips it while the last run goes on.
    async def test(url: str, clock: list[float]) -> None:
        m = await Master(url, clock).start()
        await m.schedules.create(body("s", catchup="all", overlap="skip"), "ops")
        clock[0] = T0 + 3 * MIN + 0.01
        await m.schedules.tick(m.schedules.get("s"))
        clock[0] = T0 + 8 * MIN + 59  # 10:10, 59 s late
        await m.schedules.tick(m.schedules.get("s"))
        assert [f["outcome"] for f in await m.fires("s")] == ["submitted", "skipped"]
        await m.stop()

    scenario(tmp_path, test)


def test_a_backfill_tick_that_cannot_start_fails_alone_and_the_next_are_tried(
        tmp_path: Path) -> None:
    # A queued tick whose run could not start dropped every tick queued after it ("the run
    # could not start"), never tried: one refusal of the blob store emptied the backfill.
    async def test(url: str, clock: list[float]) -> None:
        m = await Master(url, clock).start()
        await m.schedules.create(body("b", catchup="all", overlap="skip"), "ops")
        clock[0] = T0 + 3 * MIN + 0.01
        await m.schedules.tick(m.schedules.get("b"))
        await m.stop()
        clock[0] = T0 + 19 * MIN  # away 10:05-10:21: 10:10, 10:15, 10:20 wait in turn
        m = await Master(url, clock).start()
        submit, refused = m.engine.submit_dag, []

        async def once_refused(*args: Any, **kw: Any) -> int:
            if not refused:
                refused.append(args[0])
                raise BlobStoreUnavailable("the blob store is unreachable for now")
            return await submit(*args, **kw)

        m.engine.submit_dag = once_refused  # type: ignore[method-assign]
        await _end_running(m, "b")  # 10:10's run cannot start; 10:15's starts
        await _end_running(m, "b")  # and then 10:20's
        assert refused == ["b"]
        assert [(f["tick"], f["outcome"]) for f in await m.fires("b")] == [
            (T0 + 3 * MIN, "submitted"), (T0 + 8 * MIN, "failed"),
            (T0 + 13 * MIN, "submitted"), (T0 + 18 * MIN, "submitted")]
        failed = (await m.fires("b"))[1]
        assert failed["error"] == "the blob store is unreachable for now"
        await m.stop()

    scenario(tmp_path, test)
