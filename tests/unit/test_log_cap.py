"""The log an attempt keeps is capped (TITAN_MAX_LOG_MB): a job printing without end filled
the master's disk at the speed it printed. Past the cap one line says so and the rest is
dropped; the job runs on."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.unit.test_engine_fast_path import ADMIN, jobs_of, scenario, specs

from titan.master.scheduling import worker_protocol as proto
from titan.master.scheduling.engine import Engine
from titan.master.scheduling.state import Changes


def test_an_attempt_keeps_its_log_up_to_the_cap(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TITAN_MAX_LOG_MB", str(10_000 / 2**20))  # 10,000 bytes

    async def test(engine: Engine, _queued: list[Changes]) -> None:
        await proto.register(engine, {"worker_id": "w1", "slots": 1}, ADMIN)
        dag_id = await engine.submit_dag("noisy", specs(("a", 0)), None)
        [job] = (await proto.poll(engine, "w1", 1, 0.0))["jobs"]

        def lines(attempt: int, first: int, n: int) -> list[dict[str, object]]:
            return [{"id": job["id"], "attempt": attempt, "seq": first + i,
                     "line": f"{i:04d} " + "x" * 95} for i in range(n)]

        # 100 characters and ~32 of overhead a line: 75 fit in 10,000.
        await proto.report(engine, "w1", {"logs": lines(1, 1, 60)})
        await proto.report(engine, "w1", {"logs": lines(1, 61, 60)})
        await proto.report(engine, "w1", {"logs": lines(1, 121, 60)})
        kept = await engine.read(lambda tx: tx.log_lines(job["id"], 1))
        assert len(kept) == 76
        assert [r["seq"] for r in kept[:75]] == list(range(1, 76))
        assert "TITAN_MAX_LOG_MB" in kept[-1]["line"] and "not kept" in kept[-1]["line"]
        # The job itself is untouched: it ends as it ends.
        await proto.report(engine, "w1", {"results": [{"id": job["id"], "attempt": 1,
                                                       "exit_code": 0}]})
        assert (await jobs_of(engine, dag_id))["a"]["state"] == "COMPLETED"

    scenario(tmp_path, test)


def test_no_cap_when_set_to_zero(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TITAN_MAX_LOG_MB", "0")

    async def test(engine: Engine, _queued: list[Changes]) -> None:
        await proto.register(engine, {"worker_id": "w1", "slots": 1}, ADMIN)
        await engine.submit_dag("noisy", specs(("a", 0)), None)
        [job] = (await proto.poll(engine, "w1", 1, 0.0))["jobs"]
        await proto.report(engine, "w1", {"logs": [
            {"id": job["id"], "attempt": 1, "seq": i, "line": "y" * 1000} for i in range(1, 201)]})
        assert len(await engine.read(lambda tx: tx.log_lines(job["id"], 1))) == 200

    scenario(tmp_path, test)
