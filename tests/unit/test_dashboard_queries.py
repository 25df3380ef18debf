"""The data behind the dashboard's pages, read from a real SQLite database in-process."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from titan.dashboard import queries
from titan.errors import NotFound, ValidationFailed
from titan.master.scheduling.engine_submission import job_row
from titan.master.scheduling.validation import validate_dag
from titan.storage import Storage, Transaction, open_storage

SHA = "0" * 64


@pytest.fixture
def storage(tmp_path: Path) -> Iterator[Storage]:
    s = open_storage(f"sqlite:///{tmp_path / 'titan.db'}")
    try:
        yield s
    finally:
        s.close()


def add_dag(tx: Transaction, name: str, jobs: list[tuple[str, list[str], str]],
            agent_run_id: str | None = None, status: str = "COMPLETED", run: int = 1,
            at: float | None = None) -> tuple[int, list[int]]:
    """A DAG as the engine would store it; jobs are (job_id, parents, state)."""
    now = at if at is not None else time.time()
    _, specs = validate_dag(name, [{"job_id": j, "filename": "a.py", "script_sha256": SHA,
                                    "parents": p} for j, p, _ in jobs], max_jobs=100_000)
    if agent_run_id:
        tx.ensure_agent_run(agent_run_id, now)
    dag_id = tx.insert_dag({"name": name, "run": run, "agent_run_id": agent_run_id,
                            "submitted_at": now, "started_at": now, "status": status,
                            "cancelled": False, "job_count": len(specs)})
    rows = [dict(job_row(s, i, now, 0), dag_id=dag_id, state=jobs[i][2])
            for i, s in enumerate(specs)]
    return dag_id, tx.insert_jobs(rows)


def count_queries(storage: Storage) -> list[int]:
    counter = [0]

    def bump(*_: Any) -> None:
        counter[0] += 1

    event.listen(storage.engine, "before_cursor_execute", bump)  # type: ignore[attr-defined]
    return counter


def test_dag_detail_lays_out_the_graph_as_flat_arrays(storage: Storage) -> None:
    with storage.transaction() as tx:
        add_dag(tx, "etl", [("a", [], "COMPLETED"), ("b", ["a"], "FAILED"),
                            ("c", ["a"], "SKIPPED")], status="PARTIAL")
        dag_id, ids = add_dag(tx, "etl", [("a", [], "RUNNING"), ("b", ["a"], "PENDING")],
                              status="RUNNING", run=2)
        add_dag(tx, "etl-other", [("x", [], "COMPLETED")])  # a name containing "etl"
        d = queries.dag_detail(tx, "etl", None)
        assert d["dag"]["id"] == dag_id and d["dag"]["run"] == 2
        g = d["layout"]
        assert g["id"] == ids and g["job"] == ["a", "b"] and g["state"] == ["RUNNING", "PENDING"]
        assert (g["x"], g["y"], g["edges"]) == ([0, 1], [0, 0], [0, 1])
        assert [r["run"] for r in d["runs"]] == [2, 1]  # exact name only, newest first
        assert d["dag"]["counts"]["RUNNING"] == 1 and d["dag"]["counts"]["PENDING"] == 1
        first = queries.dag_detail(tx, "etl", 1)
        assert first["layout"]["state"] == ["COMPLETED", "FAILED", "SKIPPED"]
        with pytest.raises(NotFound):
            queries.dag_detail(tx, "etl", 9)
        with pytest.raises(NotFound):
            queries.dag_detail(tx, "nope", None)


def test_the_run_picker_keeps_its_runs_past_many_namesakes(
        storage: Storage, monkeypatch: pytest.MonkeyPatch) -> None:
    # More newer DAGs containing the name than the picker lists: the substring query's page
    # held only them, and the DAG's own older runs could not be picked (QA).
    monkeypatch.setattr(queries, "RUNS_LISTED", 5)
    with storage.transaction() as tx:
        for run in (1, 2):
            add_dag(tx, "ab", [("a", [], "COMPLETED")], run=run)
        for i in range(6):
            add_dag(tx, f"ab-{i}", [("a", [], "COMPLETED")])
        assert [r["run"] for r in queries.dag_detail(tx, "ab", None)["runs"]] == [2, 1]


def test_dag_detail_lists_waiting_gates(storage: Storage) -> None:
    with storage.transaction() as tx:
        add_dag(tx, "gated", [("build", [], "COMPLETED"), ("ok", ["build"], "WAITING_APPROVAL")],
                status="RUNNING")
        d = queries.dag_detail(tx, "gated", None)
        assert [g["job_id"] for g in d["approvals"]] == ["ok"]
        assert set(d["approvals"][0]) >= {"id", "job_id", "hitl_message", "approval_deadline"}


def test_dag_list_filters_and_pages(storage: Storage) -> None:
    with storage.transaction() as tx:
        for i in range(7):
            add_dag(tx, f"page-{i}", [("a", [], "COMPLETED")])
        add_dag(tx, "broken", [("a", [], "FAILED")], status="FAILED")
        d = queries.dag_list(tx, None, "page-", 3, 0)
        assert d["total"] == 7 and [g["name"] for g in d["dags"]] == ["page-6", "page-5", "page-4"]
        assert (d["prev_offset"], d["next_offset"]) == (None, 3)
        last = queries.dag_list(tx, None, "page-", 3, 6)
        assert [g["name"] for g in last["dags"]] == ["page-0"]
        assert (last["prev_offset"], last["next_offset"]) == (3, None)
        failed = queries.dag_list(tx, "failed", None, 50, 0)
        assert [g["name"] for g in failed["dags"]] == ["broken"] and failed["status"] == "FAILED"
        assert failed["dags"][0]["counts"]["FAILED"] == 1
        with pytest.raises(ValidationFailed):
            queries.dag_list(tx, "SOMETIMES", None, 50, 0)


def test_agent_runs_group_stages_in_submission_order(storage: Storage) -> None:
    with storage.transaction() as tx:
        run = "RESEARCH_1a9ac3"
        for label, state in (("PLAN", "COMPLETED"), ("ITER1", "COMPLETED"), ("EVAL1", "FAILED"),
                             ("ITER2", "RUNNING")):
            status = {"COMPLETED": "COMPLETED", "FAILED": "FAILED", "RUNNING": "RUNNING"}[state]
            add_dag(tx, f"{run}_{label}", [("j", [], state)], agent_run_id=run, status=status)
        d = queries.agent_runs(tx, 50, 0)
        (r,) = d["runs"]
        assert [(s["label"], s["status"]) for s in r["stages"]] == [
            ("PLAN", "COMPLETED"), ("ITER1", "COMPLETED"), ("EVAL1", "FAILED"), ("ITER2", "RUNNING")]
        assert r["iteration"] == 2 and r["status"] == "RUNNING"
        assert [(f["label"], f["failed_jobs"], f["jobs"]) for f in r["failed"]] == [("EVAL1", 1, 1)]


def test_agent_runs_page_costs_a_query_per_run_not_per_stage(storage: Storage) -> None:
    # 1,000 agent runs of 4 stages: the first page of 50 must not read all of them, nor
    # count jobs stage by stage.
    with storage.transaction() as tx:
        for r in range(1000):
            for label in ("PLAN", "ITER1", "EVAL1", "SYNTH"):
                add_dag(tx, f"R{r:04d}_{label}", [("j", [], "COMPLETED")],
                        agent_run_id=f"R{r:04d}", at=1000.0 + r)
    counter = count_queries(storage)
    with storage.transaction() as tx:
        d = queries.agent_runs(tx, 50, 0)
    assert d["total"] == 1000 and len(d["runs"]) == 50
    assert d["runs"][0]["id"] == "R0999" and d["next_offset"] == 50
    assert all(len(r["stages"]) == 4 for r in d["runs"])
    # + 1: the runs without stages the default view leaves out are counted (one query).
    assert counter[0] <= 2 + 2 * 50 + 3, counter[0]


def test_job_detail_and_store(storage: Storage) -> None:
    with storage.transaction() as tx:
        _, (job,) = add_dag(tx, "one", [("a", [], "COMPLETED")])
        d = queries.job_detail(tx, job)
        assert d["job"]["ref"] == "one#1/a" and d["job"]["attempts"] == []
        assert d["dag"]["name"] == "one"
        with pytest.raises(NotFound):
            queries.job_detail(tx, job + 100)
        tx.store_put("k:small", "v", 1.0)
        tx.store_put("k:big", "x" * (queries.VALUE_SHOWN + 10), 2.0)
        tx.store_sadd("k:set", "m1", 3.0)
        tx.store_sadd("k:set", "m2", 3.0)
        tx.store_put("other", "no", 4.0)
        s = queries.store(tx, "k:", 100)
        by_key = {k["key"]: k for k in s["keys"]}
        assert set(by_key) == {"k:small", "k:big", "k:set"} and not s["more"]
        assert by_key["k:small"]["value"] == "v"
        assert by_key["k:big"]["truncated"] and len(by_key["k:big"]["value"]) == queries.VALUE_SHOWN
        assert by_key["k:set"]["members"] == ["m1", "m2"] and by_key["k:set"]["member_count"] == 2
        first = queries.store(tx, "k:", 2)
        assert first["more"] and first["next_after"] == "k:set"
        # The next page, by key: past the page limit the pager used to link to itself.
        rest = queries.store(tx, "k:", 2, first["next_after"])
        assert [k["key"] for k in first["keys"] + rest["keys"]] == ["k:big", "k:set", "k:small"]
        assert not rest["more"] and rest["next_after"] is None


def test_the_store_page_reads_a_fixed_number_of_queries_not_one_per_key(
        storage: Storage) -> None:
    # 1,000 keys (values, some published as artifacts, and sets): the page read each key's
    # value, its artifact and its members one query at a time, 2,000+ queries for a page.
    with storage.transaction() as tx:
        tx.add_blob("a" * 64, 10, 1.0)
        for i in range(900):
            tx.store_put(f"k:{i:04d}", "v" * (i % 7) + ("x" * (queries.VALUE_SHOWN + 5)
                                                          if i == 3 else ""), 1.0 + i)
            if i % 3 == 0:
                for version in range(2):  # the newest file published under the key wins
                    tx.add_file({"name": f"r{i}-{version}.txt", "sha256": "a" * 64,
                                 "size": 100 + version, "store_key": f"k:{i:04d}",
                                 "dag_id": None, "job": None, "created_at": 1.0})
        for i in range(900, 1000):
            for m in range(queries.MEMBERS_SHOWN + 1 if i == 900 else 3):
                tx.store_sadd(f"k:{i:04d}", f"m{m:04d}", 1.0)
    counter = count_queries(storage)
    started = time.perf_counter()
    with storage.transaction() as tx:
        s = queries.store(tx, "k:", 1000)
    elapsed = time.perf_counter() - started
    assert len(s["keys"]) == 1000 and not s["more"]
    assert counter[0] <= 8, counter[0]
    assert elapsed < 2.0, elapsed
    by_key = {k["key"]: k for k in s["keys"]}
    assert by_key["k:0000"]["artifact"] == {"name": "r0-1.txt", "size": 101}
    assert by_key["k:0001"]["artifact"] is None and by_key["k:0001"]["value"] == "v"
    big = by_key["k:0003"]
    assert big["truncated"] and len(big["value"]) == queries.VALUE_SHOWN
    assert big["size"] == queries.VALUE_SHOWN + 5 + 3
    assert by_key["k:0900"]["member_count"] == queries.MEMBERS_SHOWN + 1
    assert by_key["k:0900"]["members"] == [f"m{m:04d}" for m in range(queries.MEMBERS_SHOWN)]
    assert by_key["k:0901"]["members"] == ["m0000", "m0001", "m0002"]
