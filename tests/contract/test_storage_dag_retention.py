"""DAG retention in storage, on SQLite and PostgreSQL alike: which DAG runs may go (finished
before the cutoff, in no agent run, not the latest of their name, not held by the
scheduler), and that deleting one takes its jobs, attempts and log lines and nothing else."""

from __future__ import annotations

from tests.contract import test_storage as base
from tests.contract.test_storage_schedules import fire, schedule_row
from titan.storage import Storage
from titan.storage.base import Transaction

storage = base.storage  # the parametrised SQLite/PostgreSQL fixture (emptied per test)
CUTOFF = 1000.0


def finished_dag(tx: Transaction, name: str, run: int, finished_at: float | None,
                 status: str = "COMPLETED", agent_run_id: str | None = None) -> int:
    dag_id = tx.insert_dag(base.dag_row(name, run, agent_run_id))
    tx.update_dags({dag_id: {"status": status, "finished_at": finished_at}})
    return dag_id


def with_history(tx: Transaction, dag_id: int, job_id: str) -> int:
    """A job of ``dag_id`` with two attempts and their log lines; the job's row id."""
    job = tx.insert_jobs([base.job_row(dag_id, job_id)])[0]
    for attempt in (1, 2):
        tx.insert_attempts([{"job": job, "attempt": attempt, "worker_id": "w",
                             "started_at": 1.0, "state": "RUNNING"}])
        tx.add_log_lines([{"job": job, "attempt": attempt, "seq": seq, "stream": "stdout",
                           "ts": 1.0, "line": f"line {seq}"} for seq in range(1, 4)])
    return job


def test_only_old_finished_loose_runs_that_are_not_the_latest_may_go(storage: Storage) -> None:
    with storage.transaction() as tx:
        tx.ensure_agent_run("agent-1", 1.0)
        old = [finished_dag(tx, "etl", run, 10.0 * run) for run in (1, 2, 3)]
        latest = finished_dag(tx, "etl", 4, 50.0)  # old too, but the latest of its name
        failed = finished_dag(tx, "flaky", 1, 20.0, status="FAILED")
        partial = finished_dag(tx, "flaky", 2, 30.0, status="PARTIAL")
        cancelled = finished_dag(tx, "flaky", 3, 40.0, status="CANCELLED")
        finished_dag(tx, "flaky", 4, None, status="RUNNING")  # the latest: running
        recent = finished_dag(tx, "fresh", 1, CUTOFF + 1)
        finished_dag(tx, "fresh", 2, CUTOFF + 2)
        stage = finished_dag(tx, "agent-1_PLAN", 1, 10.0, agent_run_id="agent-1")
        finished_dag(tx, "agent-1_PLAN", 2, 10.0, agent_run_id="agent-1")
        running = tx.insert_dag(base.dag_row("busy", 1))  # WAITING, never finished
        finished_dag(tx, "busy", 2, 10.0)
    with storage.transaction() as tx:
        found = tx.prunable_dags(CUTOFF, 100)
        assert found == sorted([*old, failed, partial, cancelled])
        assert not {latest, recent, stage, running} & set(found)
        assert tx.prunable_dags(CUTOFF, 2) == sorted(found)[:2]  # oldest first
        # The scheduler's own (a retry just brought one back): skipped, the limit still met.
        assert tx.prunable_dags(CUTOFF, 2, skip={old[0]}) == sorted(found)[1:3]
        assert tx.prunable_dags(0.0, 100) == []


def test_deleting_a_run_takes_its_jobs_attempts_and_logs_and_nothing_else(
        storage: Storage) -> None:
    with storage.transaction() as tx:
        doomed = finished_dag(tx, "nightly", 1, 10.0)
        kept = finished_dag(tx, "nightly", 2, 20.0)
        doomed_job = with_history(tx, doomed, "extract")
        kept_job = with_history(tx, kept, "extract")
        sid = tx.insert_schedule(schedule_row("nightly"))
        assert sid is not None
        tx.record_fire(fire(sid, 300.0, dag_id=doomed))
        tx.record_fire(fire(sid, 600.0, dag_id=kept))
        tx.add_blob("a" * 64, 1, 1.0)
        file_id = tx.add_file({"name": "report.md", "sha256": "a" * 64, "size": 1,
                               "store_key": None, "dag_id": doomed, "job": doomed_job,
                               "created_at": 1.0})
    with storage.transaction() as tx:
        assert tx.delete_dags([doomed]) == 1
        assert tx.delete_dags([]) == 0
    with storage.transaction() as tx:
        assert tx.get_dag(doomed) is None and tx.get_job(doomed_job) is None
        assert tx.attempts_of(doomed_job) == []
        assert tx.log_lines(doomed_job, 1) == [] and tx.log_lines(doomed_job, 2) == []
        # The other run of the name is whole.
        assert tx.get_dag(kept) is not None and tx.get_job(kept_job) is not None
        assert len(tx.attempts_of(kept_job)) == 2 and len(tx.log_lines(kept_job, 2)) == 3
        # The schedule keeps its ticks; the deleted run's no longer names a DAG.
        fires = {f["tick"]: f for f in tx.schedule_fires(sid, 10)}
        assert fires[300.0]["dag_id"] is None and fires[600.0]["dag_id"] == kept
        assert tx.schedule_states()[sid]["last_dag_id"] == kept
        # What the job published stays here: the master deletes the older versions after
        # (prunable_files(orphaned=True), test_storage_files.py), never the newest.
        assert tx.latest_file(name="report.md")["id"] == file_id
        # The run number goes on from the highest kept.
        assert tx.insert_next_dag(base.dag_row("nightly", 1))[1] == 3


def test_many_runs_go_in_chunks(storage: Storage) -> None:
    with storage.transaction() as tx:
        ids = [finished_dag(tx, "bulk", run, 1.0) for run in range(1, 452)]
        for dag_id in ids[:3]:
            with_history(tx, dag_id, "j")
    with storage.transaction() as tx:
        found = tx.prunable_dags(CUTOFF, 1000)
        assert found == ids[:-1]
        assert tx.delete_dags(found) == 450
    with storage.transaction() as tx:
        assert [d["id"] for d in tx.list_dags(name="bulk")[0]] == [ids[-1]]


def test_log_lines_go_a_bounded_number_at_a_time(storage: Storage) -> None:
    # A DAG of millions of lines deleted in one transaction held the writer for seconds.
    with storage.transaction() as tx:
        doomed = [finished_dag(tx, "big", run, 10.0) for run in (1, 2)]
        kept = finished_dag(tx, "big", 3, 10.0)
        jobs = [with_history(tx, dag_id, "j") for dag_id in (*doomed, kept)]  # 6 lines each
    counts = []
    while True:
        with storage.transaction() as tx:
            counts.append(tx.delete_log_lines(doomed, 5))
        if counts[-1] < 5:
            break
    assert counts == [5, 5, 2]
    with storage.transaction() as tx:
        for job in jobs[:2]:
            assert tx.log_lines(job, 1) == [] and tx.log_lines(job, 2) == []
        assert len(tx.log_lines(jobs[2], 1)) == 3 and len(tx.log_lines(jobs[2], 2)) == 3
        assert tx.delete_log_lines(doomed, 5) == 0
