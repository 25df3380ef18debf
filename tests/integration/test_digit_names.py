"""DAG names and job ids of digits alone are refused, by the SDK and by the master: a
reference of digits is a numeric id, so ``fetch_logs("1")`` read another DAG's job 1 and
``get_dag("7")`` another DAG. Those stored before the rule stay reachable by the forms that
are never an id (``7#1``, ``DAG-7``, ``dag/3``)."""

from __future__ import annotations

import urllib.error
from pathlib import Path

import pytest

from tests.integration.harness import Cluster
from titan import errors
from titan.client.pipeline import load_pipeline
from titan.storage import open_storage
from titan_sdk import TitanJob

pytestmark = pytest.mark.slow


def test_digits_alone_are_refused_by_the_sdk_and_the_master(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path)
    try:
        cluster.start_master()
        client = cluster.client()
        script = cluster.script("mine.py", "print('mine')\n")
        with pytest.raises(errors.ValidationFailed, match=r"job_id '1' is only digits.*"
                           r"internal id.*'job_1'") as job:
            TitanJob("1", script)
        assert job.value.details["field"] == "job_id"
        with pytest.raises(errors.ValidationFailed, match=r"DAG name '7' is only digits"):
            client.submit_dag("7", [TitanJob("seven", script)])
        assert TitanJob("job_1", script).job_id == "job_1"  # and '1.5', 'x1', '²': names
        # The master says the same to any client (the SDK's check is its own rule).
        for name, job_id, said in [("ok", "3", "job_id '3' is only digits"),
                                   ("7", "seven", "DAG name '7' is only digits"),
                                   ("DAG-7", "seven", "DAG name '7' is only digits")]:
            with pytest.raises(urllib.error.HTTPError) as refused:
                cluster.api("POST", "/dags", {"name": name, "jobs": [
                    {"job_id": job_id, "filename": "mine.py", "script_sha256": "0" * 64}]})
            assert refused.value.code == 400
            body = refused.value.read().decode()
            assert said in body and "invalid_dag" in body, body
        # A pipeline's `id: 1` (a YAML number) is refused with its file and line.
        pipeline = tmp_path / "scripts" / "p.yaml"
        pipeline.write_text("name: p\njobs:\n  - id: 1\n    file: mine.py\n")
        with pytest.raises(errors.ValidationFailed, match=r"p\.yaml:3: .*'1' is only digits"):
            load_pipeline(pipeline)
        with pytest.raises(errors.ValidationFailed, match="schedule name '9' is only digits"):
            client.schedule_dag("9", [TitanJob("a", script)], cron="0 * * * *")
    finally:
        cluster.stop()


def test_names_of_digits_stored_before_the_rule_stay_reachable(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path)
    cluster.data.mkdir(parents=True)
    storage = open_storage(f"sqlite:///{cluster.data / 'titan.db'}")
    storage.migrate()
    with storage.transaction() as tx:  # what an older master let through
        dag, _ = tx.insert_next_dag({"name": "7", "run": 1, "agent_run_id": None,
                                     "submitted_at": 1.0, "status": "COMPLETED",
                                     "cancelled": False, "job_count": 1})
        tx.insert_jobs([{"dag_id": dag, "job_id": "3", "position": 0, "filename": "a.py",
                         "script_sha256": "0" * 64, "job_type": "RUN_PAYLOAD", "args": [],
                         "parents": [], "env": {}, "priority": 1, "delay": 0.0,
                         "affinity": False, "requirement": "GENERAL", "max_attempts": 1,
                         "runner": "auto", "state": "SUCCEEDED", "submitted_at": 1.0}])
    storage.close()
    try:
        cluster.start_master()
        client = cluster.client()
        for ref in ("7#1", "DAG-7", "DAG-7#1"):
            assert client.get_dag(ref)["name"] == "7", ref
        for ref in ("7/3", "7#1/3", "DAG-7/3"):
            found = client.get_job(ref)
            assert (found["dag"], found["job_id"]) == ("7", "3"), ref
    finally:
        cluster.stop()
