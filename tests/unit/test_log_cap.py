"""The log an attempt keeps is capped (TITAN_MAX_LOG_MB): a job printing without end filled
the master's disk at the speed it printed. Past the cap one line says so and the rest is
dropped but for the attempt's ending, written when it ends; the job runs on."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.unit.test_engine_fast_path import ADMIN, jobs_of, scenario, specs

from titan.master.scheduling import log_cap
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
        # The job itself is untouched: it ends as it ends, and what it printed last (its
        # traceback, its summary) is written then: at most the cap's worth (10,000 bytes here,
        # 64 KiB at most), after a line saying how many lines were dropped in between.
        await proto.report(engine, "w1", {"logs": [
            {"id": job["id"], "attempt": 1, "seq": 181, "stream": "stderr",
             "line": "Traceback (most recent call last):"},
            {"id": job["id"], "attempt": 1, "seq": 182, "stream": "stderr",
             "line": "RuntimeError: the loop ran away"}],
            "results": [{"id": job["id"], "attempt": 1, "exit_code": 1}]})
        assert (await jobs_of(engine, dag_id))["a"]["state"] == "FAILED"
        rows = await engine.read(lambda tx: tx.log_lines(job["id"], 1))
        ending = rows[76:]
        assert ending[-1]["line"] == "RuntimeError: the loop ran away"
        assert ending[-2]["line"] == "Traceback (most recent call last):"
        gap, *tail = ending
        # 104 lines past the cap's (seq 77 to 180) and the 2 last ones.
        assert gap["line"] == (f"[titan: {106 - len(tail)} lines past TITAN_MAX_LOG_MB "
                               f"were not kept; the attempt's last {len(tail)} follow]")
        assert sum(len(r["line"]) + 32 for r in tail) <= 10_000 and len(tail) >= 70
        seqs = [r["seq"] for r in rows]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
        assert seqs[76] == tail[0]["seq"] - 1  # the gap line in the last dropped line's place

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


def test_an_ending_within_its_bound_is_written_whole(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TITAN_MAX_LOG_MB", str(10_000 / 2**20))

    async def test(engine: Engine, _queued: list[Changes]) -> None:
        await proto.register(engine, {"worker_id": "w1", "slots": 1}, ADMIN)
        await engine.submit_dag("noisy", specs(("a", 0)), None)
        [job] = (await proto.poll(engine, "w1", 1, 0.0))["jobs"]
        line = "z" * 468  # 500 bytes a line with its overhead: 20 fit
        await proto.report(engine, "w1", {"logs": [
            {"id": job["id"], "attempt": 1, "seq": i, "line": line} for i in range(1, 25)],
            "results": [{"id": job["id"], "attempt": 1, "exit_code": 1}]})
        first = await engine.read(lambda tx: tx.log_lines(job["id"], 1))
        # 20 kept, the cap's line, then the 4 lines past it, whole: no gap line.
        assert [r["seq"] for r in first] == list(range(1, 25))
        assert "reached TITAN_MAX_LOG_MB" in first[20]["line"]
        assert all(r["line"] == line for r in first[21:])
    scenario(tmp_path, test)


def test_a_retry_counts_afresh() -> None:
    log = log_cap.attempt_log(None, 1)
    row = {"seq": 1, "line": "x" * 68, "stream": "stdout", "continues": False}  # 100 bytes
    assert log.keep(row, 150) == [row]
    assert "reached TITAN_MAX_LOG_MB" in log.keep({**row, "seq": 2}, 150)[0]["line"]
    assert log.keep({**row, "seq": 3}, 150) == []
    assert log_cap.attempt_log(log, 1) is log
    again = log_cap.attempt_log(log, 2)
    assert again.attempt == 2 and again.keep(row, 150) == [row] and not again.tail
