"""DAG retention on a running cluster: ``titan dags prune``, ``POST /dags/prune`` and the
master's ``TITAN_DAG_RETENTION`` sweep delete old DAG runs with their jobs and logs, and keep
the latest run of each name and the stages of agent runs.

Runs are aged by moving their end back in the master's SQLite file (the window is at least an
hour: a test cannot wait for one)."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.integration.harness import Cluster
from tests.integration.test_cli import on_terminal, titan
from titan.errors import NotFound
from titan_sdk import TitanJob

DAY = 86_400.0


def age(c: Cluster, days: float = 3) -> None:
    """Every finished DAG run (and its jobs) ended ``days`` earlier than it did."""
    with sqlite3.connect(c.data / "titan.db", timeout=30) as db:
        db.execute("UPDATE dags SET finished_at = finished_at - ? WHERE finished_at IS NOT NULL",
                   (days * DAY,))
        db.execute("UPDATE jobs SET finished_at = finished_at - ? WHERE finished_at IS NOT NULL",
                   (days * DAY,))


def submit(c: Cluster, body: dict[str, Any], key: str | None) -> Any:
    headers = {"Authorization": f"Bearer {c.admin_token}", "Content-Type": "application/json"}
    if key is not None:
        headers["Idempotency-Key"] = key
    req = urllib.request.Request(f"{c.url}/api/v1/dags", data=json.dumps(body).encode(),
                                 method="POST", headers=headers)
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


def refused(c: Cluster, body: Any, token: str | None = None) -> tuple[int, str]:
    try:
        c.api("POST", "/dags/prune", body, token=token)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    raise AssertionError(f"{body!r} was accepted")


def test_old_dag_runs_go_with_their_jobs_and_logs_and_the_latest_stays(
        cluster: Cluster, tmp_path: Path) -> None:
    client = cluster.client()
    script = cluster.script("hello.py", "import sys\nprint('hello from', sys.argv[1])\n")
    runs = [client.submit_dag("etl", [TitanJob(job_id="extract", filename=script,
                                               args=[str(n)])]) for n in (1, 2, 3)]
    # A run submitted with an Idempotency-Key, as an HTTP client that retries would send it.
    keyed = {"name": "keyed", "jobs": [{"job_id": "k", "filename": "hello.py", "args": ["k"],
                                        "script_sha256": hashlib.sha256(
                                            Path(script).read_bytes()).hexdigest()}]}
    keyed_runs = [submit(cluster, keyed, key) for key in ("key-of-the-first-keyed-run", None)]
    for dag in keyed_runs:
        assert client.wait_dag(dag["id"], timeout=60)["status"] == "COMPLETED"
    stage = client.submit_dag("R1_PLAN", [TitanJob(job_id="plan", filename=script, args=["p"])],
                              agent_run_id="R1")
    for dag in (*runs, stage):
        assert client.wait_dag(dag["id"], timeout=60)["status"] == "COMPLETED"
    old_job = client.get_dag("etl#1")["jobs"][0]["id"]
    assert "hello from 1" in client.fetch_logs(old_job)
    age(cluster)

    operator = client.create_token("operator", "ops")["token"]
    code, said = refused(cluster, {"older_than": "1d"}, token=operator)
    assert code == 403 and "delete old runs and DAGs" in said, said
    for bad in ({}, {"older_than": "3m"}, {"older_than": 30}, {"older_than": "1d", "x": 1},
                {"older_than": "1d", "dry_run": "yes"}, ["1d"]):
        code, said = refused(cluster, bad)
        assert code == 400 and "invalid_request" in said, (bad, said)

    # A dry run lists the two older runs of etl: not its latest, not the agent run's stage.
    dry = titan(cluster, "dags", "prune", "--older-than", "1d", "--dry-run").stdout
    assert "would delete 3 DAG run(s)" in dry, dry
    # Each by the name a user knows it by (they were bare row ids: a QA pass).
    listed = [line.split("  (finished ")[0] for line in dry.splitlines()[1:]]
    assert listed == ["  etl#1", "  etl#2", "  keyed#1"], dry
    assert "  (finished 20" in dry.splitlines()[1], dry  # the year, in ISO 8601
    assert dry.splitlines()[1].endswith(f", id {runs[0]['id']})"), dry
    reply = client.api("POST", "/dags/prune", json={"older_than": "1d", "dry_run": True})
    assert [(d["ref"], d["name"], d["run"], d["id"]) for d in reply["dags"]] == [
        ("etl#1", "etl", 1, runs[0]["id"]), ("etl#2", "etl", 2, runs[1]["id"]),
        ("keyed#1", "keyed", 1, keyed_runs[0]["id"])]
    assert client.get_dag("etl#1")["status"] == "COMPLETED"  # nothing deleted
    assert client.api("POST", "/dags/prune", json={"older_than": "4d"})["pruned"] == 0
    # On a terminal it says how much would go and asks; anything but y deletes nothing.
    asked = on_terminal(cluster, "dags", "prune", "--older-than", "1d", answer=b"\n")
    assert asked.returncode == 1, asked
    assert ("delete 3 DAG run(s) finished more than 1d ago, with their jobs and logs? [y/N]"
            in asked.stderr), asked.stderr
    assert "nothing deleted" in asked.stderr and asked.stdout == "", asked
    assert client.get_dag("etl#1")["status"] == "COMPLETED"

    done = titan(cluster, "dags", "prune", "--older-than", "1d").stdout
    assert "deleted 3 DAG run(s) finished more than 1d ago" in done, done
    # Sent again with its key, the pruned run is not there to answer with: a clear 404.
    with pytest.raises(urllib.error.HTTPError) as gone:
        submit(cluster, keyed, "key-of-the-first-keyed-run")
    assert gone.value.code == 404 and "deleted by retention" in gone.value.read().decode()
    for ref in ("etl#1", "etl#2"):
        with pytest.raises(NotFound):
            client.get_dag(ref)
    with pytest.raises(NotFound):
        client.fetch_logs(old_job)
    assert "hello from 3" in client.fetch_logs("etl/extract")
    assert client.get_dag("R1_PLAN")["agent_run_id"] == "R1"
    assert [d["run"] for d in client.list_dags(name="etl")] == [3]
    # Run numbers go on from the latest.
    fourth = client.submit_dag("etl", [TitanJob(job_id="extract", filename=script, args=["4"])])
    assert fourth["run"] == 4
    assert client.wait_dag(fourth["id"], timeout=60)["status"] == "COMPLETED"

    # The master's hourly sweep (at start, then every hour) with TITAN_DAG_RETENTION set.
    age(cluster)
    cluster.stop()
    cluster.env["TITAN_DAG_RETENTION"] = "2d"
    cluster.up()
    client = cluster.client()
    deadline = time.monotonic() + 30
    while [d["run"] for d in client.list_dags(name="etl")] != [4]:
        assert time.monotonic() < deadline, client.list_dags(name="etl")
        time.sleep(0.1)
    assert "retention: deleted 1 finished DAG run(s)" in cluster.log()
    assert client.get_dag("R1_PLAN")["status"] == "COMPLETED"
