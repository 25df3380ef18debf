"""An agent's step on the engine's fast path (issue 17: one commit per hop), on a real engine
and SQLite file with workers on the HTTP poll protocol.

A submission that a parked worker can take at once carries its own leases: the jobs commit
RUNNING with their first attempt in the submission's transaction, in the scheduler's order,
never past a worker's slots, and a worker lost before that commit lands loses them at once.
Whoever waits for a job or DAG gets its answer read in the commit that finished it."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from titan.master.auth.tokens import Principal
from titan.master.config import MasterConfig
from titan.master.events import EventHub
from titan.master.scheduling import worker_protocol as proto
from titan.master.scheduling.engine import Engine
from titan.master.scheduling.scheduler import Scheduler
from titan.master.scheduling.state import READY, Changes, DagRec, JobRec, WorkerRec
from titan.master.scheduling.validation import validate_dag
from titan.master.scheduling.views import dag_with_jobs
from titan.master.scheduling.worker_channel import WorkerChannel
from titan.storage import open_storage
from titan.storage.base import Row

SHA = "cd" * 32
ADMIN = Principal(role="admin")


def scenario(tmp_path: Path, test: Callable[[Engine, list[Changes]], Awaitable[None]]) -> None:
    url = f"sqlite:///{tmp_path / 'titan.db'}"
    storage = open_storage(url)
    with storage.transaction() as tx:
        tx.add_blob(SHA, 10, time.time())

    async def run() -> None:
        engine = Engine(MasterConfig(), storage, EventHub())
        queued: list[Changes] = []  # every change set queued after a submission committed
        submit = engine.submit

        def spy(ch: Changes, extra: Any = None) -> asyncio.Future[Any]:
            queued.append(ch)
            return submit(ch, extra)

        engine.submit = spy  # type: ignore[method-assign]
        await engine.start()
        try:
            await test(engine, queued)
        finally:
            await engine.stop()
            storage.close()

    asyncio.run(run())


def specs(*jobs: tuple[str, int]) -> list[Row]:
    _name, out = validate_dag("step", [{"job_id": j, "filename": f"{j}.py", "script_sha256": SHA,
                                        "priority": p} for j, p in jobs], max_jobs=100)
    return out


async def parked(engine: Engine, worker_id: str, slots: int) -> asyncio.Task[Row]:
    """A worker registered with ``slots`` and its long-poll parked, offering them all."""
    await proto.register(engine, {"worker_id": worker_id, "slots": slots}, ADMIN)
    task = asyncio.create_task(proto.poll(engine, worker_id, slots, 10.0))
    for _ in range(100):
        worker = engine.sched.workers[worker_id]
        if worker.poll is not None and not worker.poll.done():
            return task
        await asyncio.sleep(0.01)
    raise AssertionError("the poll never parked")


async def jobs_of(engine: Engine, dag_id: int) -> dict[str, Row]:
    rows = await engine.read(lambda tx: tx.jobs_of_dags([dag_id]))
    return {r["job_id"]: r for r in rows}


def test_the_submission_commits_the_leases_a_parked_worker_can_take(tmp_path: Path) -> None:
    async def test(engine: Engine, queued: list[Changes]) -> None:
        poll = await parked(engine, "w1", 2)
        queued.clear()
        dag_id = await engine.submit_dag("step", specs(("low", 0), ("high", 5), ("mid", 1)), None)
        # The two best by priority were leased by the submission itself: no change set queued
        # after it carries their lease.
        assert not any(ch.new_attempts for ch in queued)
        reply = await asyncio.wait_for(poll, 5)
        assert sorted(j["job_id"] for j in reply["jobs"]) == ["high", "mid"]
        assert {j["attempt"] for j in reply["jobs"]} == {1}
        rows = await jobs_of(engine, dag_id)
        assert {k: r["state"] for k, r in rows.items()} == {
            "high": "RUNNING", "mid": "RUNNING", "low": "READY"}
        for key in ("high", "mid"):
            r = rows[key]
            assert r["worker_id"] == "w1" and r["attempt"] == 1 and r["started_at"]
            assert r["lease_expires_at"] > time.time()
            attempts = await engine.read(lambda tx, i=r["id"]: tx.attempts_of(i))
            assert [(a["attempt"], a["worker_id"], a["state"]) for a in attempts] == [
                (1, "w1", "RUNNING")]
        assert rows["low"]["ready_at"] is not None and rows["low"]["worker_id"] is None
        dag = await engine.read(lambda tx: tx.get_dag(dag_id))
        assert dag is not None and dag["status"] == "RUNNING" and dag["started_at"]
        assert engine.sched.workers["w1"].reserved == 0
        assert engine.sched.workers["w1"].running == {rows["high"]["id"], rows["mid"]["id"]}
        # The third waits for a slot, as it always did.
        assert engine.sched.jobs[rows["low"]["id"]].state == READY

    scenario(tmp_path, test)


def test_two_submissions_never_lease_past_the_workers_slots(tmp_path: Path) -> None:
    async def test(engine: Engine, queued: list[Changes]) -> None:
        poll = await parked(engine, "w1", 1)
        a, b = await asyncio.gather(engine.submit_dag("one", specs(("a", 0)), None),
                                    engine.submit_dag("two", specs(("b", 0)), None))
        reply = await asyncio.wait_for(poll, 5)
        assert len(reply["jobs"]) == 1
        states = sorted([(await jobs_of(engine, a))["a"]["state"],
                         (await jobs_of(engine, b))["b"]["state"]])
        assert states == ["READY", "RUNNING"]
        assert engine.sched.workers["w1"].reserved == 0

    scenario(tmp_path, test)


def test_a_worker_lost_before_the_submission_commits_loses_its_leases_at_once(
        tmp_path: Path) -> None:
    async def test(engine: Engine, queued: list[Changes]) -> None:
        poll = await parked(engine, "w1", 1)
        loop = asyncio.get_running_loop()

        def lose() -> None:
            ch = Changes()
            engine.sched.lose_worker(engine.sched.workers["w1"], ch)
            engine.submit(ch)

        # Inside the submission's transaction, on the writer's thread: the worker goes away
        # before the commit that leased it a job comes back to the event loop.
        dag_id = await engine.submit_dag(
            "step", specs(("a", 0)), None,
            within=lambda _tx, _dag: loop.call_soon_threadsafe(lose))
        poll.cancel()  # a lost worker's poll is never answered with jobs
        job = engine.sched.jobs[(await jobs_of(engine, dag_id))["a"]["id"]]
        # Queued again at once (PENDING: no live worker is left to run it), not left
        # RUNNING on a worker that is gone until its lease ran out.
        assert job.state == "PENDING" and job.worker_id is None and job.lease_losses == 1
        # Its next worker runs it as attempt 2; attempt 1 is on record as lost.
        await proto.register(engine, {"worker_id": "w2", "slots": 1}, ADMIN)
        reply = await proto.poll(engine, "w2", 1, 0.0)
        assert [(j["job_id"], j["attempt"]) for j in reply["jobs"]] == [("a", 2)]
        attempts = await engine.read(lambda tx: tx.attempts_of(job.id))
        assert [(a["attempt"], a["state"]) for a in attempts] == [(1, "LOST"), (2, "RUNNING")]

    scenario(tmp_path, test)


def test_a_lease_lost_in_flight_goes_out_once_after_a_rejoin_and_a_hello(
        tmp_path: Path) -> None:
    # The worker re-registers (listing what it holds) and then says hello on its channel: both
    # look for leases it never received. Each used to queue the job, which went out twice and
    # cost two credits, and the worker's slots leaked one per such job.
    async def test(engine: Engine, queued: list[Changes]) -> None:
        await proto.register(engine, {"worker_id": "w1", "slots": 2}, ADMIN)
        await engine.submit_dag("step", specs(("a", 0)), None)
        lost = await proto.poll(engine, "w1", 2, 0.0)  # leased; the reply never arrives
        assert [j["job_id"] for j in lost["jobs"]] == ["a"]
        await proto.register(engine, {"worker_id": "w1", "slots": 2, "running": []}, ADMIN)
        frames: asyncio.Queue[str | None] = asyncio.Queue()
        sent: asyncio.Queue[Any] = asyncio.Queue()

        async def send(text: str) -> None:
            decoded = json.loads(text)
            for message in decoded if isinstance(decoded, list) else [decoded]:
                await sent.put(message)

        async def next_jobs() -> list[str]:
            while True:
                message = await asyncio.wait_for(sent.get(), 5)
                if message["t"] == "jobs":
                    return [j["job_id"] for j in message["jobs"]]

        channel = WorkerChannel(engine, "w1", frames.get, send)
        serving = asyncio.create_task(channel.serve())
        await frames.put(json.dumps({"t": "hello", "credit": 2, "running": []}))
        assert await next_jobs() == ["a"]
        # One credit spent on the one job: the other slot still takes the next job.
        await engine.submit_dag("next", specs(("b", 0)), None)
        assert await next_jobs() == ["b"]
        await frames.put(None)
        await asyncio.wait_for(serving, 5)

    scenario(tmp_path, test)


def test_a_caller_cancelled_while_it_waits_does_not_lose_the_commits_notices(
        tmp_path: Path) -> None:
    # A request handler cancelled while awaiting a commit (its client went away, a worker's
    # channel closed) cancelled the commit's future with it: the writer committed, but the
    # events, the waiters' answers and store_wait notices of that commit were dropped.
    async def test(engine: Engine, queued: list[Changes]) -> None:
        published: list[str] = []
        publish = engine.hub.publish

        def spy(kind: str, data: Row) -> None:
            published.append(kind)
            publish(kind, data)

        engine.hub.publish = spy  # type: ignore[method-assign]
        ch = Changes()
        ch.events.append(("probe", {}))
        waiter = asyncio.ensure_future(engine.submit(ch, extra=lambda tx: None))
        await asyncio.sleep(0)
        waiter.cancel()
        for _ in range(200):
            if "probe" in published:
                break
            await asyncio.sleep(0.01)
        assert "probe" in published

    scenario(tmp_path, test)


def test_nothing_is_leased_past_a_job_queued_before_it() -> None:
    sched = Scheduler(lease_seconds=15, affinity_wait=0.5, retry_backoff=1, retry_backoff_max=60)
    worker = WorkerRec(id="w", name="w", hostname="", capabilities=frozenset({"GENERAL"}),
                       slots=1, last_seen=0.0)
    ch = Changes()
    sched.add_worker(worker, ch)
    assert not sched.queued_for(worker)
    dag = DagRec(id=1, name="d", run=1, agent_run_id=None, status="WAITING", started_at=None)
    row = {"job_id": "q", "parents": [], "job_type": "RUN"}
    sched.load(dag, [JobRec(id=7, dag_id=1, job_id="q", requirement="GENERAL", priority=0,
                            delay=0, affinity=False, max_attempts=1, state=READY, attempt=0,
                            row=row)], ch)
    assert sched.queued_for(worker)
    sched.take(worker, 1, ch)
    assert not sched.queued_for(worker)  # leased: the stale heap entry is dropped


def test_a_waiter_gets_its_answer_read_in_the_commit_that_finished(tmp_path: Path) -> None:
    async def test(engine: Engine, queued: list[Changes]) -> None:
        poll = await parked(engine, "w1", 1)
        dag_id = await engine.submit_dag("step", specs(("a", 0)), None)
        [job] = (await asyncio.wait_for(poll, 5))["jobs"]
        on_dag = engine.hub.waiter(("dag", dag_id))
        on_job = engine.hub.waiter(("job", job["id"]))
        await proto.report(engine, "w1", {"results": [
            {"id": job["id"], "attempt": 1, "exit_code": 0}]})
        dag = await asyncio.wait_for(on_dag, 5)
        assert dag == await engine.read(lambda tx: dag_with_jobs(tx, dag_id))
        assert dag["status"] == "COMPLETED" and dag["jobs"][0]["state"] == "COMPLETED"
        finished = await asyncio.wait_for(on_job, 5)
        assert finished["id"] == job["id"] and finished["exit_code"] == 0
        assert [a["state"] for a in finished["attempts"]] == ["COMPLETED"]

    scenario(tmp_path, test)


def test_a_waiter_that_comes_while_the_finishing_change_waits_its_turn_gets_the_answer_too(
        tmp_path: Path) -> None:
    """Who waits is asked when the finishing transaction runs, not when the change is queued:
    a client that starts waiting while the writer is busy with something else still gets the
    answer read in that commit (no read of its own after)."""
    async def test(engine: Engine, queued: list[Changes]) -> None:
        poll = await parked(engine, "w1", 1)
        await engine.submit_dag("step", specs(("a", 0)), None)
        [job] = (await asyncio.wait_for(poll, 5))["jobs"]
        busy = asyncio.ensure_future(engine.run(lambda tx: time.sleep(0.3)))
        report = asyncio.create_task(proto.report(engine, "w1", {"results": [
            {"id": job["id"], "attempt": 1, "exit_code": 0}]}))
        for _ in range(100):  # the result is applied in memory and its change queued
            if engine.sched.jobs.get(job["id"]) is None or \
                    engine.sched.jobs[job["id"]].state == "COMPLETED":
                break
            await asyncio.sleep(0.005)
        assert not busy.done(), "the writer was to be busy while the waiter came"
        on_job = engine.hub.waiter(("job", job["id"]))
        finished = await asyncio.wait_for(on_job, 5)
        assert finished is not None and finished["id"] == job["id"]
        assert finished["state"] == "COMPLETED"
        await report
        await busy

    scenario(tmp_path, test)


def test_recent_job_names_keep_the_newest_job_of_a_name_and_forget_the_oldest_names() -> None:
    from titan.master.scheduling.refs import RecentJobNames

    names = RecentJobNames(limit=2)
    names.note("plan", 7)
    names.note("plan", 5)  # an older job noted late: the newer one stays
    assert names.newest("plan") == 7
    for ref in ("7", "DAG-x/plan", "x#2/plan"):  # ids and dag/job refs are not plain names
        assert names.newest(ref) is None
    names.note("act", 8)
    names.note("plan", 9)  # used again: the most recent of the two
    names.note("third", 10)  # past the limit: "act" goes
    assert (names.newest("act"), names.newest("plan"), names.newest("third")) == (None, 9, 10)


def test_a_superseded_poll_never_hands_over_a_lease_before_it_commits(tmp_path: Path) -> None:
    """DESIGN: acknowledged only once durable. A quick poll (wait 0) supersedes the parked
    long-poll and leases the ready job; the superseded poll, answered meanwhile, found that
    job in the worker's hand-over list and sent it while its lease was still in the writer's
    queue — a master dying then would have run the job twice (a QA pass on burst workers)."""
    async def test(engine: Engine, queued: list[Changes]) -> None:
        await proto.register(engine, {"worker_id": "w1", "slots": 1}, ADMIN)
        dag_id = await engine.submit_dag("step", specs(("a", 0)), None)
        long_poll = asyncio.create_task(proto.poll(engine, "w1", 0, 10.0))  # offers no slot
        for _ in range(100):
            worker = engine.sched.workers["w1"]
            if worker.poll is not None and not worker.poll.done():
                break
            await asyncio.sleep(0.01)
        gate = threading.Event()
        blocked = engine.writer.submit(lambda tx: gate.wait(10))  # the writer is busy
        quick = asyncio.create_task(proto.poll(engine, "w1", 1, 0.0))
        done, _ = await asyncio.wait({long_poll, quick}, timeout=0.5)
        # Neither poll may carry the job while its lease is not committed.
        for task in done:
            assert task.result()["jobs"] == [], "a lease went out before its commit"
        gate.set()
        await blocked
        replies = [await asyncio.wait_for(t, 5) for t in (long_poll, quick)]
        sent = [j["job_id"] for r in replies for j in r["jobs"]]
        assert sent == ["a"]
        assert (await jobs_of(engine, dag_id))["a"]["state"] == "RUNNING"

    scenario(tmp_path, test)
