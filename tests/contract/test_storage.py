"""The storage contract: one suite, run against SQLite and PostgreSQL alike."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from titan.errors import ConfigError, ValidationFailed
from titan.storage import Storage, open_storage, schema
from titan.storage.migrations import LATEST


@pytest.fixture(params=["sqlite", "postgres"])
def storage(request: pytest.FixtureRequest, tmp_path) -> Iterator[Storage]:  # type: ignore[no-untyped-def]
    if request.param == "sqlite":
        s = open_storage(f"sqlite:///{tmp_path / 'titan.db'}")
    else:
        url = request.getfixturevalue("postgres_url")
        s = open_storage(url)
        empty_tables(s)
    yield s
    s.close()


def empty_tables(s: Storage) -> None:
    """Every table the schema defines, emptied (a test starts from a fresh database's state;
    derived from the schema, so a table added later is never left out)."""
    with s.transaction() as tx:
        conn = tx.conn  # type: ignore[attr-defined]
        tables = ", ".join(f'"{table.name}"' for table in schema.metadata.sorted_tables
                           if table.name != schema.schema_migrations.name)
        conn.execute(sa.text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))


def dag_row(name: str, run: int, agent_run_id: str | None = None) -> dict:
    return {"name": name, "run": run, "agent_run_id": agent_run_id, "submitted_at": 1.0,
            "status": "WAITING", "cancelled": False, "job_count": 1}


def job_row(dag_id: int, job_id: str, position: int = 0, parents: list[str] | None = None) -> dict:
    return {"dag_id": dag_id, "job_id": job_id, "position": position, "filename": "a.py",
            "script_sha256": "0" * 64, "job_type": "RUN_PAYLOAD", "args": ["--x", "ü"],
            "parents": parents or [], "env": {"K": "V"}, "priority": 1, "delay": 0.0,
            "affinity": False, "requirement": "GENERAL", "max_attempts": 1, "runner": "auto",
            "state": "PENDING", "submitted_at": 1.0}


def test_migrate_is_idempotent(storage: Storage) -> None:
    assert storage.migrate() == LATEST
    assert storage.migrate() == LATEST


def test_meta_roundtrip(storage: Storage) -> None:
    with storage.transaction() as tx:
        assert tx.get_meta("k") is None
        tx.set_meta("k", "v1")
        tx.set_meta("k", "v2")
    with storage.transaction() as tx:
        assert tx.get_meta("k") == "v2"


def test_rollback_on_error_stores_nothing(storage: Storage) -> None:
    with pytest.raises(RuntimeError):
        with storage.transaction() as tx:
            tx.store_put("k", "v", 1.0)
            raise RuntimeError("boom")
    with storage.transaction() as tx:
        assert tx.store_get("k") is None


def test_dags_runs_and_lookup(storage: Storage) -> None:
    with storage.transaction() as tx:
        d1, run = tx.insert_next_dag(dag_row("nightly", 7))  # the run given is ignored
        assert run == 1
        tx.insert_jobs([job_row(d1, "plan")])
        assert tx.insert_next_dag(dag_row("other", 1))[1] == 1  # numbered per name
        d2, run = tx.insert_next_dag(dag_row("nightly", 1))
        assert run == 2
        ids = tx.insert_jobs([job_row(d2, "plan"), job_row(d2, "train", 1, ["plan"])])
    with storage.transaction() as tx:
        assert tx.find_dag("nightly")["id"] == d2
        assert tx.find_dag("nightly", 1)["id"] == d1
        assert tx.find_dag("nope") is None
        latest = tx.find_job("plan")
        assert latest["id"] == ids[0] and latest["dag_id"] == d2
        assert tx.find_job("plan", "nightly", 1)["dag_id"] == d1
        assert tx.find_job("train")["parents"] == ["plan"]
        assert tx.get_job(ids[1])["args"] == ["--x", "ü"]
        assert tx.get_job(ids[1])["env"] == {"K": "V"}
        assert [j["job_id"] for j in tx.jobs_of_dags([d2])] == ["plan", "train"]


def test_insert_jobs_returns_ids_in_order(storage: Storage) -> None:
    with storage.transaction() as tx:
        d = tx.insert_dag(dag_row("big", 1))
        ids = tx.insert_jobs([job_row(d, f"j{i}", i) for i in range(300)])
    with storage.transaction() as tx:
        for i in (0, 150, 299):
            assert tx.get_job(ids[i])["job_id"] == f"j{i}"


def test_jobs_of_one_dag_that_differ_in_which_columns_are_null_keep_every_value(
        storage: Storage) -> None:
    # A submission's rows go in grouped by the columns they set (a NULL is left out of its
    # row's statement): every row must come back as it went in, in its place.
    rows = []
    for i in range(12):
        row = job_row(0, f"j{i}", i, parents=[f"j{p}" for p in range(i % 3)])
        if i % 2:
            row.update(state="READY", ready_at=2.5, timeout=30.0)
        else:
            row.update(timeout=None, ready_at=None, hitl_message=None)
        if i % 4 == 3:
            row.update(parents=["j0", 'quote"d', "üñí", "back\\slash"], args=[], env={})
        rows.append(row)
    with storage.transaction() as tx:
        d = tx.insert_dag(dag_row("shapes", 1))
        for row in rows:
            row["dag_id"] = d
        ids = tx.insert_jobs(rows)
    with storage.transaction() as tx:
        for row, job_id in zip(rows, ids, strict=True):
            got = tx.get_job(job_id)
            assert got is not None and got["position"] == row["position"]
            for key in ("job_id", "state", "ready_at", "timeout", "parents", "args", "env",
                        "port", "attempt", "is_archive"):
                want = row.get(key, 0 if key in ("port", "attempt") else
                               False if key == "is_archive" else None)
                assert got[key] == want, (row["job_id"], key, got[key], want)


def test_list_dags_filters_and_counts(storage: Storage) -> None:
    with storage.transaction() as tx:
        tx.ensure_agent_run("R1", 1.0)
        tx.ensure_agent_run("R1", 2.0)
        a = tx.insert_dag(dag_row("R1_PLAN", 1, "R1"))
        b = tx.insert_dag(dag_row("R1_ITER1", 1, "R1"))
        c = tx.insert_dag(dag_row("other_100%", 1))
        tx.insert_jobs([job_row(a, "p"), job_row(b, "r0"), job_row(b, "r1", 1)])
        tx.update_dags({a: {"status": "COMPLETED"}})
        j = tx.find_job("r0")
        tx.update_jobs({j["id"]: {"state": "RUNNING", "attempt": 1}})
    with storage.transaction() as tx:
        rows, total = tx.list_dags()
        assert total == 3 and [r["id"] for r in rows] == [c, b, a]
        assert [r["id"] for r in tx.list_dags(status="COMPLETED")[0]] == [a]
        assert [r["id"] for r in tx.list_dags(name="100%")[0]] == [c]
        assert [r["id"] for r in tx.list_dags(name="R1_")[0]] == [b, a]
        assert [r["id"] for r in tx.list_dags(agent_run_id="R1", newest_first=False)[0]] == [a, b]
        assert tx.list_dags(limit=1, offset=1)[0][0]["id"] == b
        counts = tx.job_counts([a, b, c])
        assert counts[b] == {"PENDING": 1, "RUNNING": 1} and counts[c] == {}
        # A run's progress: the jobs of all its stages, by state.
        assert tx.run_job_counts(["R1", "R1", "nobody"]) == {
            "R1": {"PENDING": 2, "RUNNING": 1}, "nobody": {}}
        assert tx.run_job_counts([]) == {}
        assert [d["id"] for d in tx.unfinished_dags()] == [b, c]
    with storage.transaction() as tx:
        # ITER1 submitted again: its first run is history, not progress still to make.
        b2 = tx.insert_dag(dag_row("R1_ITER1", 2, "R1"))
        tx.insert_jobs([job_row(b2, "r0")])
        assert tx.run_job_counts(["R1"]) == {"R1": {"PENDING": 2}}
        tx.delete_dags([b2])
    with storage.transaction() as tx:
        runs, n = tx.list_agent_runs(10, 0)
        assert n == 1 and runs[0]["id"] == "R1" and runs[0]["created_at"] == 1.0
        # Where each sits in that order (newest first, ties by id): the page that holds it.
        for run_id, at in (("R0", 0.5), ("R3", 3.0), ("R2", 3.0)):
            tx.ensure_agent_run(run_id, at)
        order = [r["id"] for r in tx.list_agent_runs(10, 0)[0]]
        assert order == ["R2", "R3", "R1", "R0"]
        assert [tx.agent_run_position(r) for r in order] == [0, 1, 2, 3]
        assert tx.agent_run_position("nobody") is None
        # Only those with a stage (the Agent Runs page's default): R1 and R2's.
        tx.insert_dag(dag_row("R2_PLAN", 1, "R2"))
        runs, n = tx.list_agent_runs(10, 0, staged=True)
        assert (n, [r["id"] for r in runs]) == (2, ["R2", "R1"])
        assert tx.list_agent_runs(1, 1, staged=True)[0][0]["id"] == "R1"
        assert [tx.agent_run_position(r, staged=True) for r in ("R2", "R1", "R3")] == [
            0, 1, None]


def test_attempts_and_logs(storage: Storage) -> None:
    with storage.transaction() as tx:
        d = tx.insert_dag(dag_row("d", 1))
        (j,) = tx.insert_jobs([job_row(d, "a")])
        tx.insert_attempts([{"job": j, "attempt": 1, "worker_id": "w", "started_at": 1.0, "state": "RUNNING"}])
        tx.insert_attempts([{"job": j, "attempt": 1, "worker_id": "w", "started_at": 1.0, "state": "RUNNING"}])
        tx.finish_attempts([(j, 1, {"state": "FAILED", "exit_code": 3, "finished_at": 2.0})])
        lines = [{"job": j, "attempt": 1, "seq": i, "stream": "stdout", "ts": 1.0, "line": f"l{i} ✓"}
                 for i in range(1, 6)]
        tx.add_log_lines(lines)
        tx.add_log_lines(lines[2:])  # a resent batch is harmless
    with storage.transaction() as tx:
        (att,) = tx.attempts_of(j)
        assert att["state"] == "FAILED" and att["exit_code"] == 3
        assert [r["line"] for r in tx.log_lines(j, 1)] == [f"l{i} ✓" for i in range(1, 6)]
        assert [r["seq"] for r in tx.log_lines(j, 1, after=3)] == [4, 5]
        assert len(tx.log_lines(j, 1, limit=2)) == 2
        assert tx.log_lines(j, 2) == []
        assert all("continues" not in r for r in tx.log_lines(j, 1))
    with storage.transaction() as tx:  # a line cut at 64 KiB: its pieces say so
        tx.add_log_lines([{"job": j, "attempt": 2, "seq": 1, "stream": "stdout", "ts": 1.0,
                           "line": "piece", "continues": True},
                          {"job": j, "attempt": 2, "seq": 2, "stream": "stdout", "ts": 1.0,
                           "line": "end", "continues": False}])
    with storage.transaction() as tx:
        assert [(r["line"], r.get("continues")) for r in tx.log_lines(j, 2)] == [
            ("piece", True), ("end", None)]


def test_log_lines_stop_at_max_bytes(storage: Storage) -> None:
    """A read of log lines bounded in bytes as well as in lines (a line is up to 64 KiB, so
    10,000 of them were 640 MB): the first (or, with ``tail``, the last) lines that fit, and
    always one, however long."""
    with storage.transaction() as tx:
        d = tx.insert_dag(dag_row("d", 1))
        (j,) = tx.insert_jobs([job_row(d, "a")])
        tx.add_log_lines([{"job": j, "attempt": 1, "seq": i, "stream": "stdout", "ts": 1.0,
                           "line": str(i % 10) * (100 if i != 4 else 1000)}
                          for i in range(1, 9)])
    with storage.transaction() as tx:
        def seqs(**kw: object) -> list[int]:
            return [r["seq"] for r in tx.log_lines(j, 1, **kw)]  # type: ignore[arg-type]
        assert seqs(max_bytes=250) == [1, 2]
        assert seqs(max_bytes=300) == [1, 2, 3]
        assert seqs(after=3, max_bytes=10) == [4]  # one line, however long
        assert seqs(after=4, max_bytes=10_000) == [5, 6, 7, 8]
        assert seqs(after=4, limit=2, max_bytes=10_000) == [5, 6]
        assert seqs(tail=True, max_bytes=250) == [7, 8]
        assert seqs(tail=True, max_bytes=1100, after=2) == [5, 6, 7, 8]  # not 4 (1000) too
        assert seqs(tail=True, limit=3, max_bytes=10_000) == [6, 7, 8]
        assert [r["line"] for r in tx.log_lines(j, 1, after=1, max_bytes=100)] == ["2" * 100]


def test_a_job_or_dag_read_at_once_equals_its_rows_read_one_by_one(storage: Storage) -> None:
    """The joined reads behind a waiter's answer (a job with its DAG and attempts, a DAG with
    its jobs) give exactly the rows the single-table reads give, column for column."""
    with storage.transaction() as tx:
        d = tx.insert_dag(dag_row("joined", 1))
        a, b, c = tx.insert_jobs([job_row(d, "a", 0), job_row(d, "b", 1, ["a"]),
                                  job_row(d, "c", 2)])
        tx.insert_attempts([{"job": a, "attempt": n, "worker_id": f"w{n}", "started_at": float(n),
                             "state": "RUNNING"} for n in (2, 1)])
        tx.finish_attempts([(a, 1, {"state": "FAILED", "exit_code": 1, "finished_at": 1.5,
                                    "error": "boom"})])
        empty = tx.insert_dag(dag_row("empty", 1))
    with storage.transaction() as tx:
        for job in (a, b, c):
            got = tx.job_dag_attempts(job)
            assert got is not None
            assert got == (tx.get_job(job), tx.get_dag(d), tx.attempts_of(job))
        assert [x["attempt"] for x in tx.job_dag_attempts(a)[2]] == [1, 2]
        assert tx.job_dag_attempts(b)[2] == []
        assert tx.job_dag_attempts(10**9) is None
        assert tx.dag_and_jobs(d) == (tx.get_dag(d), tx.jobs_of_dags([d]))
        assert [j["job_id"] for j in tx.dag_and_jobs(d)[1]] == ["a", "b", "c"]
        assert tx.dag_and_jobs(empty) == (tx.get_dag(empty), [])
        assert tx.dag_and_jobs(10**9) is None
        # A page of them, in submission order, with the total (filtered by state).
        every = tx.jobs_of_dags([d])
        assert tx.dag_jobs_page(d, None, 2, 0) == (every[:2], 3)
        assert tx.dag_jobs_page(d, None, 2, 2) == (every[2:], 3)
        assert tx.dag_jobs_page(d, [every[1]["state"]], 10, 0)[1] == 3
        assert tx.dag_jobs_page(d, ["FAILED"], 10, 0) == ([], 0)
        assert tx.dag_jobs_page(empty, None, 10, 0) == ([], 0)


def test_a_scheduler_step_writes_its_rows_in_batches_of_mixed_shapes(storage: Storage) -> None:
    """A step's changes go to the driver grouped by the columns they set: every row of every
    shape lands, and a row's columns never leak into another's."""
    with storage.transaction() as tx:
        d1, d2 = tx.insert_dag(dag_row("b1", 1)), tx.insert_dag(dag_row("b2", 1))
        jobs = tx.insert_jobs([job_row(d1, f"j{i}", i) for i in range(5)])
        tx.insert_attempts([{"job": j, "attempt": 1, "worker_id": f"w{j}", "started_at": 1.0,
                             "state": "RUNNING"} for j in jobs[:4]]
                           + [{"job": jobs[4], "attempt": 1, "worker_id": "w", "state": "RUNNING",
                               "started_at": 2.0, "exit_code": None},
                              {"job": jobs[0], "attempt": 1, "worker_id": "again",
                               "started_at": 9.0, "state": "RUNNING"}])  # already recorded
        tx.update_jobs({jobs[0]: {"state": "RUNNING", "attempt": 1},
                        jobs[1]: {"state": "COMPLETED"},
                        jobs[2]: {"state": "RUNNING", "attempt": 1},
                        jobs[3]: {"args": ["x", 1], "state": "READY"}})
        tx.finish_attempts([(jobs[1], 1, {"state": "COMPLETED", "exit_code": 0,
                                          "finished_at": 3.0}),
                            (jobs[3], 1, {"state": "FAILED", "exit_code": 2,
                                          "finished_at": 4.0, "error": "boom"}),
                            (jobs[2], 1, {"state": "COMPLETED", "exit_code": 0,
                                          "finished_at": 5.0})])
        tx.update_dags({d1: {"status": "RUNNING", "started_at": 1.0},
                        d2: {"status": "CANCELLED"}})
    with storage.transaction() as tx:
        rows = {j: tx.get_job(j) for j in jobs}
        assert [rows[j]["state"] for j in jobs] == ["RUNNING", "COMPLETED", "RUNNING", "READY",
                                                    "PENDING"]
        assert rows[jobs[0]]["attempt"] == 1 and rows[jobs[3]]["args"] == ["x", 1]
        assert rows[jobs[1]]["args"] == ["--x", "ü"]
        outcomes = {j: tx.attempts_of(j)[0] for j in jobs}
        assert outcomes[jobs[0]]["worker_id"] == f"w{jobs[0]}"  # not "again"
        assert [(outcomes[j]["state"], outcomes[j]["exit_code"]) for j in jobs[1:4]] == [
            ("COMPLETED", 0), ("COMPLETED", 0), ("FAILED", 2)]
        assert outcomes[jobs[3]]["error"] == "boom" and outcomes[jobs[2]]["error"] is None
        assert (tx.get_dag(d1)["status"], tx.get_dag(d1)["started_at"]) == ("RUNNING", 1.0)
        assert (tx.get_dag(d2)["status"], tx.get_dag(d2)["started_at"]) == ("CANCELLED", None)


@pytest.mark.parametrize("value", ["", "plain", "ünïcødé ✓ 🚀 中文", "x" * 100_000, "line1\nline2\t"])
def test_store_values(storage: Storage, value: str) -> None:
    with storage.transaction() as tx:
        tx.store_put("k:ü", value, 1.0)
    with storage.transaction() as tx:
        assert tx.store_get("k:ü") == value
        assert tx.store_get("missing") is None


def test_store_incr_sets_delete_keys(storage: Storage) -> None:
    with storage.transaction() as tx:
        assert tx.store_incr("n", 1, 1.0) == 1
        assert tx.store_incr("n", 5, 1.0) == 6
        assert tx.store_incr("n", -2, 1.0) == 4
        assert tx.store_sadd("s", "b", 1.0) == 1
        assert tx.store_sadd("s", "a", 1.0) == 1
        assert tx.store_sadd("s", "a", 2.0) == 0
        tx.store_put("p:1", "x", 1.0)
        tx.store_put("p%2", "x", 1.0)
    with storage.transaction() as tx:
        assert tx.store_smembers("s") == ["a", "b"]
        assert tx.store_smembers("none") == []
        assert [k["key"] for k in tx.store_keys("p", 10)] == ["p%2", "p:1"]
        assert [k["key"] for k in tx.store_keys("p%", 10)] == ["p%2"]
        assert {k["key"]: k["kind"] for k in tx.store_keys("", 10)} == {
            "n": "value", "s": "set", "p:1": "value", "p%2": "value"}
        # A page after the last key of the one before: values and sets alike.
        assert [k["key"] for k in tx.store_keys("", 2)] == ["n", "p%2"]
        assert [k["key"] for k in tx.store_keys("", 2, after="p%2")] == ["p:1", "s"]
        assert tx.store_keys("", 2, after="s") == []
        assert [k["key"] for k in tx.store_keys("p", 10, after="p%2")] == ["p:1"]
    # Pages follow the database's own order throughout (a merge by code point disagreed with
    # a PostgreSQL collation sorting "B" with "b", and a page boundary skipped keys).
    with storage.transaction() as tx:
        for key in ("Ba", "ab", "Cc", "éa"):
            tx.store_put(key, "v", 1.0)
        tx.store_sadd("Ca", "m", 1.0)
    with storage.transaction() as tx:
        seen, after = [], None
        while True:
            page = [k["key"] for k in tx.store_keys("", 2, after=after)]
            seen += page
            if len(page) < 2:
                break
            after = page[-1]
        mine = [k for k in seen if k[0] in "BCaé"]
        assert sorted(mine) == sorted(["Ba", "ab", "Cc", "éa", "Ca"]) and len(set(seen)) == \
            len(seen)
        assert tx.store_delete("s") is True
        assert tx.store_delete("s") is False
        assert tx.store_smembers("s") == []
    with storage.transaction() as tx:
        tx.store_put("text", "abc", 1.0)
    with pytest.raises(ValidationFailed):
        with storage.transaction() as tx:
            tx.store_incr("text", 1, 1.0)
    # A counter is ASCII digits with one sign, within 64 bits: int() would read more.
    for odd in ("1_000", " 7", "٣", "+1"):
        with storage.transaction() as tx:
            tx.store_put("odd", odd, 1.0)
        with pytest.raises(ValidationFailed, match="not an integer"):
            with storage.transaction() as tx:
                tx.store_incr("odd", 1, 1.0)
    with storage.transaction() as tx:
        assert tx.store_incr("big", 2**63 - 1, 1.0) == 2**63 - 1
    with pytest.raises(ValidationFailed, match="64-bit"):
        with storage.transaction() as tx:
            tx.store_incr("big", 1, 1.0)
    with storage.transaction() as tx:
        assert tx.store_get("big") == str(2**63 - 1)


def test_a_page_of_keys_reads_its_values_and_sets_at_once(storage: Storage) -> None:
    # What the Store page reads for a page of keys: values cut in the database (with their
    # whole length, in characters), the first members of each set (with its size).
    with storage.transaction() as tx:
        tx.store_put("a", "ünïcødé ✓ 🚀 中文", 1.0)
        tx.store_put("b", "x" * 1000, 1.0)
        tx.store_put("e", "", 1.0)
        for m in ("c", "a", "b", "d"):
            tx.store_sadd("s", m, 1.0)
        tx.store_sadd("t", "only", 1.0)
    with storage.transaction() as tx:
        assert tx.store_values_cut(["a", "b", "e", "s", "missing"], 5) == {
            "a": ("ünïcø", 14), "b": ("xxxxx", 1000), "e": ("", 0)}
        assert tx.store_values_cut([], 5) == {}
        assert tx.store_members_cut(["s", "t", "a", "missing"], 3) == {
            "s": (["a", "b", "c"], 4), "t": (["only"], 1)}
        # More keys than one IN list holds.
        many = [f"k{i}" for i in range(1200)] + ["a"]
        assert set(tx.store_values_cut(many, 1)) == {"a"}
        assert set(tx.store_members_cut(many + ["t"], 1)) == {"t"}


def test_store_incr_quotes_a_long_key_cut_short(storage: Storage) -> None:
    # A key may be 1,024 characters: the message quotes its start, the details keep it whole.
    key = "k" * 1_000
    with storage.transaction() as tx:
        tx.store_put(key, "abc", 1.0)
        tx.store_put(key + "big", str(2**63 - 1), 1.0)
    for which, value, said in ((key, "abc", "which is not an integer"),
                               (key + "big", str(2**63 - 1), "64-bit counter range")):
        with pytest.raises(ValidationFailed) as exc:
            with storage.transaction() as tx:
                tx.store_incr(which, 1, 1.0)
        message = str(exc.value.message)
        assert message.startswith(f"store key '{'k' * 79}…' ") and said in message, message
        assert len(message) < 200 and exc.value.details == {"key": which}
        with storage.transaction() as tx:
            assert tx.store_get(which) == value
    with pytest.raises(ValidationFailed, match="store key 'short' holds 'abc', which"):
        with storage.transaction() as tx:
            tx.store_put("short", "abc", 1.0)
            tx.store_incr("short", 1, 1.0)


def test_store_kinds_says_what_a_key_holds(storage: Storage) -> None:
    # What the API asks before a value or a set is read or written (one kind per key).
    with storage.transaction() as tx:
        tx.store_put("v", "", 1.0)  # an empty value is a value
        tx.store_sadd("s", "m", 1.0)
        tx.store_put("both", "x", 1.0)  # as keys written before one kind per key are
        tx.store_sadd("both", "m", 1.0)
        tx.store_sadd("s%", "m", 1.0)  # not matched by pattern: "s%" is no prefix of "s"
    with storage.transaction() as tx:
        assert tx.store_kinds("v") == ("value",)
        assert tx.store_kinds("s") == ("set",)
        assert tx.store_kinds("both") == ("value", "set")
        assert tx.store_kinds("none") == ()
        assert tx.store_kinds("S") == ()


def test_a_key_past_what_the_index_holds_is_the_requests_fault(storage: Storage) -> None:
    # 3,072 bytes of UTF-8 that do not compress: PostgreSQL's btree refuses the index row
    # (SQLSTATE 54000), which the writer waited out for ever as "the database is away".
    key = "".join(chr(0x4E00 + (i * 7919) % 20000) for i in range(1024))
    if storage.engine.dialect.name == "sqlite":
        with storage.transaction() as tx:
            tx.store_put(key, "v", 1.0)
        with storage.transaction() as tx:
            assert tx.store_get(key) == "v"
        return
    with pytest.raises(Exception) as exc:
        with storage.transaction() as tx:
            tx.store_put(key, "v", 1.0)
    assert not storage.unavailable(exc.value)
    said = storage.unstorable(exc.value)
    assert said is not None and "store_values_pkey" in said, said


def test_a_nul_bound_on_the_client_is_the_requests_fault(storage: Storage) -> None:
    # PostgreSQL's text holds no NUL. A write deferred to go with the COMMIT is bound on the
    # client (storage/deferred.py), where psycopg raises its own DataError, not SQLAlchemy's:
    # read as neither unstorable nor the database away, it was a 500.
    if storage.engine.dialect.name == "sqlite":
        with storage.transaction() as tx:
            tx.store_put("nul", "a\x00b", 1.0)
        return
    with pytest.raises(Exception) as exc:
        with storage.write_transaction() as tx:
            tx.store_put("nul", "a\x00b", 1.0)
    assert not storage.unavailable(exc.value)
    said = storage.unstorable(exc.value)
    assert said is not None and "NUL" in said, said


def test_a_statement_the_database_cancelled_is_said_as_such_not_as_the_database_away(
        storage: Storage) -> None:
    # SQLSTATE 57014 (statement_timeout) and 55P03 (lock_timeout) are psycopg
    # OperationalErrors: read as the database away, the writer tried them again for ever.
    if storage.engine.dialect.name == "sqlite":  # no such settings: nothing is "cancelled"
        with pytest.raises(Exception) as exc, storage.transaction() as tx:
            tx.conn.execute(sa.text("SELECT * FROM no_such_table"))  # type: ignore[attr-defined]
        assert storage.cancelled(exc.value) is None
        return
    with pytest.raises(Exception) as exc, storage.transaction() as tx:
        tx.conn.execute(sa.text("SET LOCAL statement_timeout = '50ms'"))  # type: ignore[attr-defined]
        tx.conn.execute(sa.text("SELECT pg_sleep(2)"))  # type: ignore[attr-defined]
    assert not storage.unavailable(exc.value) and storage.unstorable(exc.value) is None
    assert "statement timeout" in (storage.cancelled(exc.value) or ""), exc.value
    holder = storage.engine.connect()
    try:
        holder.execute(sa.text("LOCK TABLE store_values IN ACCESS EXCLUSIVE MODE"))
        with pytest.raises(Exception) as exc, storage.transaction() as tx:
            tx.conn.execute(sa.text("SET LOCAL lock_timeout = '50ms'"))  # type: ignore[attr-defined]
            tx.store_put("k", "v", 1.0)
    finally:
        holder.rollback()
        holder.close()
    assert not storage.unavailable(exc.value)
    assert "lock timeout" in (storage.cancelled(exc.value) or ""), exc.value


def test_store_incr_is_atomic_across_threads(storage: Storage) -> None:
    def bump() -> None:
        for _ in range(25):
            with storage.transaction() as tx:
                tx.store_incr("counter", 1, 1.0)

    threads = [threading.Thread(target=bump) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with storage.transaction() as tx:
        assert tx.store_get("counter") == "100"


def test_tokens(storage: Storage) -> None:
    with storage.transaction() as tx:
        tx.add_token({"id": "t1", "token_hash": "h1", "role": "viewer", "name": "n", "created_at": 1.0})
    with storage.transaction() as tx:
        assert tx.token_by_hash("h1")["role"] == "viewer"
        assert tx.token_by_hash("nope") is None
        assert tx.revoke_token("t1", 2.0) is True
        assert tx.revoke_token("t1", 3.0) is False
        assert tx.list_tokens()[0]["revoked_at"] == 2.0
        by_id = tx.token_by_id("t1")
        assert tx.token_by_id("nope") is None and tx.token_by_id("h1") is None
    # By id, revoked or not: what a worker credential is checked against.
    assert by_id is not None
    assert (by_id["id"], by_id["role"], by_id["name"], by_id["revoked_at"]) == (
        "t1", "viewer", "n", 2.0)


def test_one_scheduler_per_database(storage: Storage) -> None:
    """Two masters on one database would both start the same jobs: the second is refused
    until the first lets go, on SQLite (a file lock) and PostgreSQL (an advisory lock)."""
    url = storage.url  # type: ignore[attr-defined]
    storage.claim_scheduler()
    storage.claim_scheduler()  # claiming again is a no-op, not a conflict with itself
    other = open_storage(url)
    try:
        with pytest.raises(ConfigError):
            other.claim_scheduler()
        with other.transaction() as tx:  # refused the scheduler, not the data
            tx.set_meta("k", "v")
        storage.close()
        other.claim_scheduler()
        third = open_storage(url)
        try:
            with pytest.raises(ConfigError):
                third.claim_scheduler()
        finally:
            third.close()
    finally:
        other.close()


def test_blobs_and_files(storage: Storage) -> None:
    a, b = "a" * 64, "b" * 64
    with storage.transaction() as tx:
        tx.add_blob(a, 10, 1.0)
        tx.add_blob(a, 10, 1.0)
        tx.add_blob(b, 20, 1.0)
        f1 = tx.add_file({"name": "report.md", "sha256": a, "size": 10, "store_key": "r:1",
                          "dag_id": 7, "job": 3, "created_at": 1.0})
        f2 = tx.add_file({"name": "report.md", "sha256": b, "size": 20, "store_key": None,
                          "dag_id": None, "job": None, "created_at": 2.0})
    with storage.transaction() as tx:
        assert tx.blobs_present([a, b, "c" * 64]) == {a, b}
        assert tx.latest_file(name="report.md")["id"] == f2
        assert tx.latest_file(store_key="r:1")["id"] == f1
        assert tx.latest_file(name="nope") is None
        # An archive job's pinned upload: that name with that content, older ones included.
        assert tx.latest_file(name="report.md", sha256=a)["id"] == f1
        assert tx.latest_file(name="other.md", sha256=a) is None
        assert [f["id"] for f in tx.list_files(dag_id=7)] == [f1]
        assert [f["id"] for f in tx.list_files()] == [f2, f1]
        assert [f["id"] for f in tx.list_files(limit=1)] == [f2]
        assert [f["id"] for f in tx.list_files(limit=1, before=f2)] == [f1]
        assert tx.list_files(before=f1) == []


def test_workers(storage: Storage) -> None:
    row = {"id": "w1", "name": "gpu-box", "hostname": "h", "capabilities": ["GPU", "GENERAL"],
           "slots": 4, "state": "live", "registered_at": 1.0, "last_seen_at": 1.0}
    with storage.transaction() as tx:
        tx.upsert_worker(row)  # a worker that said no version: NULL
        (w,) = tx.list_workers()
        assert w["version"] is None
        # Re-registered on another Titan: its version is the last one it said.
        tx.upsert_worker(dict(row, slots=8, last_seen_at=2.0, version="0.1.0+local.1"))
        tx.update_worker("w1", {"state": "lost"})
    with storage.transaction() as tx:
        (w,) = tx.list_workers()
        assert w["slots"] == 8 and w["state"] == "lost" and w["capabilities"] == ["GPU", "GENERAL"]
        assert w["registered_at"] == 1.0 and w["version"] == "0.1.0+local.1"


def test_workers_long_gone_are_forgotten(storage: Storage) -> None:
    """Every restart and --burst run registers a worker: the list grew for ever (a QA pass)."""
    def worker(wid: str, state: str, seen: float) -> dict[str, object]:
        return {"id": wid, "name": wid, "hostname": "h", "capabilities": ["GENERAL"],
                "slots": 1, "state": state, "registered_at": 1.0, "last_seen_at": seen}
    with storage.transaction() as tx:
        for row in (worker("old-stopped", "stopped", 10.0), worker("old-lost", "lost", 10.0),
                    worker("old-live", "live", 10.0), worker("new-lost", "lost", 500.0)):
            tx.upsert_worker(row)
    with storage.transaction() as tx:
        assert sorted(tx.forget_workers(100.0)) == ["old-lost", "old-stopped"]
    with storage.transaction() as tx:
        assert sorted(w["id"] for w in tx.list_workers()) == ["new-lost", "old-live"]
        assert tx.forget_workers(100.0) == []


def test_a_version_1_database_gains_the_gate_columns(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """An existing database (made before approval gates) is brought up to date on open."""
    url = f"sqlite:///{tmp_path / 'old.db'}"
    open_storage(url).close()
    engine = sa.create_engine(url)
    with engine.begin() as conn:  # turn it back into what version 1 created
        for column in ("approval_deadline", "decided_by", "decided_at", "decision_comment"):
            conn.execute(sa.text(f"ALTER TABLE jobs DROP COLUMN {column}"))
        # ... and undo versions 3 (agent telemetry), 4 (replay), 9 (compliance) and 17 (run
        # liveness): tables, indexes, columns.
        for name in ("ix_agent_runs_started", "ix_agent_runs_agent", "ix_agent_runs_replay_of",
                     "ix_agent_runs_archived", "ix_agent_runs_alive"):
            conn.execute(sa.text(f"DROP INDEX {name}"))
        conn.execute(sa.text("DROP TABLE actions"))
        conn.execute(sa.text("DROP TABLE agents"))
        for col in sa.inspect(conn).get_columns("agent_runs"):
            if col["name"] not in ("id", "created_at"):
                conn.execute(sa.text(f"ALTER TABLE agent_runs DROP COLUMN {col['name']}"))
        conn.execute(sa.text("DELETE FROM schema_migrations WHERE version > 1"))
    engine.dispose()
    s = open_storage(url)
    try:
        with s.transaction() as tx:
            dag_id = tx.insert_dag(dag_row("old", 1))
            [job] = tx.insert_jobs([job_row(dag_id, "gate")])
            tx.update_jobs({job: {"decided_by": "alice", "approval_deadline": 5.0}})
        with s.transaction() as tx:
            row = tx.get_job(job)
        assert row is not None and row["decided_by"] == "alice"
    finally:
        s.close()


def test_graph_of_dag_is_the_lean_view_of_jobs_of_dags(storage: Storage) -> None:
    with storage.transaction() as tx:
        dag_id = tx.insert_dag(dag_row("g", 1))
        tx.insert_jobs([job_row(dag_id, "a"), job_row(dag_id, "b", 1, parents=["a"])])
        tx.insert_jobs([job_row(tx.insert_dag(dag_row("other", 1)), "x")])
    with storage.transaction() as tx:
        graph = tx.graph_of_dag(dag_id)
        full = tx.jobs_of_dags([dag_id])
    assert graph == [{k: j[k] for k in ("id", "job_id", "parents", "state", "job_type")}
                     for j in full]
    assert [g["parents"] for g in graph] == [[], ["a"]]


def test_idempotent_writes_apply_once_and_are_pruned(storage: Storage) -> None:
    from titan.master.idempotency import once

    incr = once("k" * 24, "POST /api/v1/store/incr/n", lambda tx: tx.store_incr("n", 1, 1.0))
    with storage.transaction() as tx:
        assert incr(tx) == (1, False)
    with storage.transaction() as tx:  # the retry after a lost reply: answered, not applied
        assert incr(tx) == (1, True)
        assert tx.store_get("n") == "1"
    # The write and its key commit together: a rolled-back write leaves no key behind.
    failing = once("f" * 24, "POST /x", lambda tx: 1 // 0)
    with pytest.raises(ZeroDivisionError), storage.transaction() as tx:
        failing(tx)
    with storage.transaction() as tx:
        assert tx.idempotent_result("f" * 24) is None
        with pytest.raises(ValidationFailed, match="Idempotency-Key"):
            once("k" * 24, "POST /api/v1/store/sets/n", lambda tx: 1)(tx)
        assert tx.prune_idempotency(time.time() + 1) == 1
        assert tx.idempotent_result("k" * 24) is None


def test_ended_sessions_are_remembered_until_they_would_have_expired(storage: Storage) -> None:
    with storage.transaction() as tx:
        assert tx.session_ended("s1") is False
        tx.end_session("s1", expires_at=100.0, now=10.0)
        tx.end_session("s1", expires_at=100.0, now=10.0)  # signing out twice is harmless
        tx.end_session("s2", expires_at=50.0, now=10.0)
    with storage.transaction() as tx:
        assert tx.session_ended("s1") and tx.session_ended("s2")
        tx.end_session("s3", expires_at=200.0, now=60.0)  # s2's cookie expired at 50: forgotten
        assert not tx.session_ended("s2") and tx.session_ended("s1")


def test_a_postgresql_connection_killed_while_idle_is_replaced_before_use(
        postgres_url: str) -> None:
    """The pool checks a connection only when it sat idle (no round trip per transaction
    under load), which is exactly when a server restart or a cut link leaves it dead."""
    from titan.storage import dialects

    s = open_storage(postgres_url)
    try:
        with s.transaction() as tx:
            pids = {tx.conn.execute(sa.text("SELECT pg_backend_pid()")).scalar()}  # type: ignore[attr-defined]
        with sa.create_engine(postgres_url, isolation_level="AUTOCOMMIT").connect() as admin:
            for pid in pids:
                admin.execute(sa.text("SELECT pg_terminate_backend(:p)"), {"p": pid})
        time.sleep(dialects.PING_AFTER_IDLE * 2)  # idle past the threshold, as after a restart
        with s.transaction() as tx:
            fresh = tx.conn.execute(sa.text("SELECT pg_backend_pid()")).scalar()  # type: ignore[attr-defined]
        assert fresh not in pids
    finally:
        s.close()


def test_boolean_columns_read_as_bools_on_every_read_path(storage: Storage) -> None:
    # The hot reads skip SQLAlchemy's result processing (storage/compiled.py): SQLite's 0/1
    # reached the API as integers where PostgreSQL answered true/false.
    with storage.transaction() as tx:
        d = tx.insert_dag(dag_row("bools", 1))
        ids = tx.insert_jobs([job_row(d, "p"),
                              {**job_row(d, "c", 1, ["p"]), "affinity": True,
                               "is_archive": True}])
    with storage.transaction() as tx:
        joined = tx.job_dag_attempts(ids[1])
        assert joined is not None
        dag_and_jobs = tx.dag_and_jobs(d)
        assert dag_and_jobs is not None
        reads = {
            "get_job": [tx.get_job(ids[0]), tx.get_job(ids[1])],
            "find_job": [tx.find_job("p"), tx.find_job("c")],
            "find_job by DAG": [tx.find_job("p", "bools"), tx.find_job("c", "bools")],
            "job_dag_attempts": [tx.job_dag_attempts(ids[0])[0], joined[0]],  # type: ignore[index]
            "dag_and_jobs": dag_and_jobs[1],
            "jobs_of_dags (one)": tx.jobs_of_dags([d]),
            "jobs_of_dags (many)": tx.jobs_of_dags([d, d + 1]),
            "dag_jobs_page": tx.dag_jobs_page(d, None, 10, 0)[0],
        }
        for how, (p, c) in reads.items():
            got = [(p["affinity"], p["is_archive"]), (c["affinity"], c["is_archive"])]
            assert all(type(v) is bool for pair in got for v in pair), (how, got)
            assert got == [(False, False), (True, True)], (how, got)
        for how, dag in {"get_dag": tx.get_dag(d), "job_dag_attempts": joined[1],
                         "dag_and_jobs": dag_and_jobs[0], "find_dag": tx.find_dag("bools")}.items():
            assert dag is not None and dag["cancelled"] is False, (how, dag)


def test_a_compiled_read_turns_every_boolean_it_selects_into_a_bool(storage: Storage) -> None:
    # Any shape, not only the tables' rows read today: a Boolean among other columns, a
    # labelled one, a NULL one (an outer join's missing row stays None).
    from titan.storage import compiled

    def build() -> sa.Select[tuple[object, ...]]:
        return sa.select(sa.literal(1, sa.Integer).label("n"),
                         sa.literal(True, sa.Boolean).label("yes"),
                         sa.cast(sa.null(), sa.Boolean).label("unknown"),
                         sa.literal(False, sa.Boolean).label("no"))

    with storage.transaction() as tx:
        conn = tx.conn  # type: ignore[attr-defined]
        row = compiled.execute(conn, "test_booleans", build, {}).one()
    assert dict(row._mapping) == {"n": 1, "yes": True, "unknown": None, "no": False}
    assert [type(v) for v in row] == [int, bool, type(None), bool]
