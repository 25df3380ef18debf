"""What any token may send gets the same answer on PostgreSQL as on SQLite: values past what a
PostgreSQL column or index holds are refused at the API, naming the field, before anything is
decided in memory; text PostgreSQL cannot hold never leaves a record half written. Each case
against a real master on each database."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import pytest

from tests.integration.harness import Cluster
from titan import TitanJob

MakeCluster = Callable[..., Cluster]


@pytest.fixture(params=["sqlite", "postgres"])
def either(request: pytest.FixtureRequest, make_cluster: MakeCluster) -> Cluster:
    if request.param == "sqlite":
        return make_cluster().start_master()
    return make_cluster(database_url=request.getfixturevalue("postgres_url")).start_master()


def call(c: Cluster, method: str, path: str, body: Any = None,
         token: str | None = None) -> tuple[int, Any]:
    req = urllib.request.Request(
        f"{c.url}/api/v1{path}", method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {token or c.admin_token}",
                 "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def refused(got: tuple[int, Any], field: str) -> dict[str, Any]:
    """The 400 of a value the API refuses, naming ``field`` (the same on either database)."""
    status, reply = got
    assert status == 400, got
    error = reply["error"]
    assert error["code"] == "invalid_request", error
    assert error["details"].get("field") == field, error
    return dict(error)


def leased_job(c: Cluster, dag: str) -> tuple[str, str, dict[str, Any]]:
    """A worker registered with the cluster's worker token (its id and credential) and the
    one job of a new DAG ``dag``, leased to it."""
    token = (c.data / "worker.token").read_text().strip()
    status, reg = call(c, "POST", "/workers/register",
                       {"name": "bare", "capabilities": [dag.upper()], "slots": 1}, token=token)
    assert status == 200, reg
    wid, credential = reg["worker_id"], reg["credential"]
    script = c.script(f"{dag}.py", "print('never run here')\n")
    c.client().submit_dag(dag, [TitanJob(job_id="j", filename=script, requirement=dag.upper())])
    status, polled = call(c, "POST", f"/workers/{wid}/poll", {"free_slots": 1, "wait": 10},
                          token=credential)
    assert status == 200 and len(polled["jobs"]) == 1, polled
    return wid, credential, polled["jobs"][0]


def test_a_log_line_numbered_past_32_bits_is_refused_before_the_result_beside_it(
        either: Cluster) -> None:
    # log_lines.seq is PostgreSQL's INTEGER. A worker's report numbering a line 2^31 was taken
    # whole in memory (the result beside it finished the job there) and then refused by the
    # database: 400 unstorable_value, the job RUNNING in the database for good, finished in
    # memory, so the worker's resent result was "rejected". SQLite stored the line.
    c = either
    wid, credential, job = leased_job(c, "seq-past-32")
    attempt = {"id": job["id"], "attempt": job["attempt"]}
    result = {**attempt, "exit_code": 0, "elapsed": 0.1}
    line = {**attempt, "seq": 2**31, "stream": "stdout", "ts": 1.7e9, "line": "hi"}
    error = refused(call(c, "POST", f"/workers/{wid}/report",
                         {"logs": [line], "results": [result]}, token=credential), "logs[].seq")
    assert "2147483647" in error["message"], error
    # Nothing was applied: the same report with the line numbered within bounds is taken.
    assert call(c, "POST", f"/workers/{wid}/report",
                {"logs": [{**line, "seq": 2**31 - 1}], "results": [result]},
                token=credential) == (200, {"rejected": []})
    got = c.api("GET", "/jobs/" + quote("seq-past-32#1/j", safe=""))
    assert got["state"] == "COMPLETED", got
    logs = c.api("GET", "/jobs/" + quote("seq-past-32#1/j", safe="") + "/logs")
    assert [(ln["seq"], ln["line"]) for ln in logs["lines"]] == [(2**31 - 1, "hi")]
