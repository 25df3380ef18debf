"""Slot lending on a real engine and SQLite file (master/scheduling/lending.py): a job parked
in a wait on the master lends its worker slot, once however many waits it has open, only
while it runs there with the attempt its token names, and only on a worker that said it can
run more jobs than its slots, one per waiting job."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.unit.test_engine_fast_path import ADMIN, jobs_of, scenario, specs

from titan.master.auth.tokens import Principal
from titan.master.scheduling import worker_protocol as proto
from titan.master.scheduling.engine import Engine
from titan.master.scheduling.lending import lending
from titan.master.scheduling.state import READY, RUNNING, Changes, WorkerRec, capacity, lent_slots


async def one_running(engine: Engine, *, lend: bool) -> tuple[int, int]:
    """Worker w1 (one slot) runs job "a"; job "b" waits READY behind it. Their ids."""
    await proto.register(engine, {"worker_id": "w1", "slots": 1, "lend": lend}, ADMIN)
    dag_id = await engine.submit_dag("step", specs(("a", 5), ("b", 0)), None)
    reply = await proto.poll(engine, "w1", 1, 0.0)
    assert [j["job_id"] for j in reply["jobs"]] == ["a"]
    rows = await jobs_of(engine, dag_id)
    assert rows["b"]["state"] == READY
    return rows["a"]["id"], rows["b"]["id"]


def job_token(job_id: int, attempt: int = 1) -> Principal:
    return Principal(role="job", job=job_id, attempt=attempt)


def test_a_waiting_job_lends_its_slot_once_and_takes_it_back(tmp_path: Path) -> None:
    async def test(engine: Engine, _queued: list[Changes]) -> None:
        a, b = await one_running(engine, lend=True)
        worker = engine.sched.workers["w1"]
        poll = asyncio.create_task(proto.poll(engine, "w1", 0, 10.0))  # offers nothing
        with lending(engine, job_token(a)):
            # The parked worker is leased "b" at once, on the slot "a" lends.
            reply = await asyncio.wait_for(poll, 5)
            assert [j["job_id"] for j in reply["jobs"]] == ["b"]
            assert engine.sched.jobs[b].state == RUNNING and worker.running == {a, b}
            # A second wait of the same job (another thread) lends nothing more.
            with lending(engine, job_token(a)):
                assert lent_slots(worker) == 1 and capacity(worker, 0) == 0
            assert worker.waiting == {a: 1}
        assert worker.waiting == {} and lent_slots(worker) == 0
        # Over its slot now, the worker is leased nothing until both have ended.
        assert capacity(worker, 1) == -1

    scenario(tmp_path, test)


def test_only_a_running_attempt_on_a_lending_worker_lends(tmp_path: Path) -> None:
    async def test(engine: Engine, _queued: list[Changes]) -> None:
        a, _b = await one_running(engine, lend=False)
        worker = engine.sched.workers["w1"]
        with lending(engine, job_token(a)):  # a Ray worker: its room is Ray's CPUs
            assert worker.waiting == {} and capacity(worker, 0) == 0
        worker.lends = True
        for who in (job_token(a, attempt=2),              # an attempt that ended
                    Principal(role="operator", job=a),    # not a job's token
                    job_token(a + 100)):                  # no such job
            with lending(engine, who):
                assert worker.waiting == {} and capacity(worker, 0) == 0
        # A job the master no longer counts on the worker (its lease ran out) lends nothing,
        # even while its old request still waits.
        with lending(engine, job_token(a)):
            assert lent_slots(worker) == 1
            worker.running.discard(a)
            assert lent_slots(worker) == 0

    scenario(tmp_path, test)


def test_every_waiting_job_lends_its_slot() -> None:
    # Capped at the worker's slots, 2x-slots orchestrators (and one nested on one slot)
    # waited for ever: a lent slot went to another orchestrator, which waited in turn (QA).
    worker = WorkerRec(id="w", name="w", hostname="h", capabilities=frozenset({"GENERAL"}),
                       slots=2, last_seen=0.0, lends=True, running={1, 2, 3, 4},
                       waiting={1: 1, 2: 3, 3: 1, 9: 1})  # 9: no longer on this worker
    assert lent_slots(worker) == 3
    assert capacity(worker, 0) == 1  # 4 running on 2 slots, 3 of them waiting: one more
    worker.running.discard(4)
    assert capacity(worker, 0) == 2
