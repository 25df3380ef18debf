"""What any token may send gets the same answer on PostgreSQL as on SQLite: values past what a
PostgreSQL column or index holds are refused at the API, naming the field, before anything is
decided in memory; text PostgreSQL cannot hold never leaves a record half written. Each case
against a real master on each database."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import quote

import pytest

from tests.conftest import PG_ADMIN_URL, free_port
from tests.integration.harness import Cluster
from titan import TitanJob

MakeCluster = Callable[..., Cluster]


@pytest.fixture(params=["sqlite", "postgres"])
def either(request: pytest.FixtureRequest, make_cluster: MakeCluster) -> Cluster:
    # Loopback allowed: the HTTP agents of evaluations below listen on it (docs/security.md).
    env = {"TITAN_EGRESS_ALLOW": "127.0.0.1"}
    if request.param == "sqlite":
        return make_cluster(env=env).start_master()
    return make_cluster(database_url=request.getfixturevalue("postgres_url"),
                        env=env).start_master()


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


class AnswersWithNul(BaseHTTPRequestHandler):
    """An HTTP agent under evaluation whose answer holds a NUL: escaped in its JSON, or a raw
    byte (then its body is no JSON at all); a third task it never answers."""

    def do_POST(self) -> None:  # noqa: N802
        asked = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        said = asked["user_instruction"]
        if said == "hang":
            time.sleep(30)
            return
        body = (b'{"final_response": "a\\u0000b"}' if said == "escaped"
                else b'{"final_response": "a\x00b"}')
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def nul_agent() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), AnswersWithNul)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/"
    finally:
        server.shutdown()


def settled(c: Cluster, evaluation: str, tasks: list[str]) -> dict[str, Any]:
    """Each task's latest run once none of them is pending or running (20 s at most)."""
    deadline = time.monotonic() + 20
    while True:
        rows = {r["task_id"]: r["run"] for r in c.client().evaluation(evaluation)["tasks"]}
        if all(rows[t] and rows[t]["status"] not in ("pending", "running") for t in tasks):
            return rows
        assert time.monotonic() < deadline, rows
        time.sleep(0.2)


def test_an_agent_s_answer_with_a_nul_settles_its_run(either: Cluster, nul_agent: str) -> None:
    # PostgreSQL's text holds no NUL. An HTTP agent answering one (escaped in its JSON, or a
    # raw byte, which the run's error detail and raw answer then quoted) had its run's write
    # refused there: the run stayed `running` for good, where SQLite completed or failed it.
    # A job agent's POST /eval/response with one was a 400 there, a 200 on SQLite. The
    # answer is the agent's: kept with U+FFFD for the NUL, as a job's log keeps one.
    c = either
    client = c.client()
    client.create_evaluation("nul-answers", {
        "name": "nul", "kind": "http", "url": nul_agent, "timeout_s": 60, "judge": False}, [
        {"id": t, "user_instruction": t} for t in ("escaped", "raw", "hang")])
    runs = {r["task_id"]: r["id"] for r in client.run_evaluation("nul-answers")}
    rows = settled(c, "nul-answers", ["escaped", "raw"])
    assert rows["escaped"]["status"] == "completed", rows
    trace = client.evaluation_run("nul-answers", "escaped", runs["escaped"])
    assert trace["final_response"] == "a\ufffdb"
    assert (rows["raw"]["status"], rows["raw"]["error_class"]) == (
        "failed", "agent_bad_response"), rows
    trace = client.evaluation_run("nul-answers", "raw", runs["raw"])
    assert "a\ufffdb" in trace["debug"]["error_detail"], trace["debug"]
    # A job agent answers through the API (titan.evals.respond()): the same.
    hang = runs["hang"]
    assert call(c, "POST", f"/runs/{hang}/eval/response", {"final_response": "c\x00d"}) == (
        200, {"accepted": True, "soft_warnings": []})
    assert client.evaluation_run("nul-answers", "hang", hang)["final_response"] == "c\ufffdd"
    client.cancel_evaluation("nul-answers")


def test_an_agent_id_past_200_characters_is_refused_when_its_budget_is_set(
        either: Cluster) -> None:
    # agents.id is PostgreSQL's varchar(200), as every agent_id a run names: PATCH /agents/{id}
    # checked nothing, so a longer id was a 400 unstorable_value there naming no field, while
    # SQLite made an agent no run can belong to (POST /runs refuses such an agent_id).
    c = either
    longest, past = "日" * 200, "日" * 201
    assert call(c, "PATCH", "/agents/" + quote(longest, safe=""),
                {"budget_usd": 2.5})[1]["budget_usd"] == 2.5
    error = refused(call(c, "PATCH", "/agents/" + quote(past, safe=""), {"budget_usd": 2.5}),
                    "agent_id")
    assert "200 characters" in error["message"], error
    status, reply = call(c, "POST", "/runs", {"agent_id": past})
    assert status == 400 and "agent_id" in reply["error"]["message"], reply
    assert call(c, "GET", "/agents/" + quote(past, safe=""))[0] == 404


def test_a_sign_of_life_for_a_run_id_with_a_nul_is_a_400_naming_runs(either: Cluster) -> None:
    # No run id holds a NUL (PostgreSQL's text cannot): POST /runs/alive looked such an id up
    # and answered 400 unstorable_value, naming no field, on PostgreSQL, {"alive": []} on
    # SQLite.
    c = either
    assert call(c, "POST", "/runs", {"id": "alive-nul", "watched": True})[0] == 201
    error = refused(call(c, "POST", "/runs/alive", {"runs": ["alive-nul", "alive\x00nul"]}),
                    "runs")
    assert "NUL" in error["message"], error
    assert call(c, "POST", "/runs/alive", {"runs": ["alive-nul"]}) == (
        200, {"alive": ["alive-nul"]})


@contextlib.contextmanager
def icu_database() -> Iterator[str]:
    """A database of its own whose text sorts by ICU's en-US collation, as a PostgreSQL set up
    with a language's locale sorts it (initdb takes the system's: en_US.UTF-8, most often),
    not by code point as the test server's C locale does; dropped afterwards. Skips where
    the server has no ICU."""
    import sqlalchemy as sa

    name = f"titan_icu_{os.getpid()}_{secrets.token_hex(4)}"
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}" TEMPLATE template0 ENCODING '
                                 "'UTF8' LOCALE_PROVIDER icu ICU_LOCALE 'en-US'"))
    except sa.exc.DBAPIError as exc:
        admin.dispose()
        pytest.skip(f"no database with an ICU collation here: {exc.orig}")
    try:
        yield f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgres-icu"])
def collating(request: pytest.FixtureRequest, make_cluster: MakeCluster) -> Iterator[Cluster]:
    if request.param == "sqlite":
        yield make_cluster().start_master()
        return
    request.getfixturevalue("postgres_url")  # skips where no PostgreSQL answers
    with icu_database() as url:
        c = make_cluster(database_url=url).start_master()
        yield c
        c.stop()


def test_keys_listed_by_prefix_all_start_with_it_whatever_the_collation(
        collating: Cluster) -> None:
    # Keys were taken from a range of the database's collation, prefix <= key < prefix +
    # U+10FFFF: under a language's collation, which sets case aside until last, "Results/b"
    # lies in the range of "results/", and GET /store?prefix=results/ listed it with the
    # job's own keys (a job deleting what it lists would delete another's key). SQLite
    # compares code points.
    c = collating
    keys = ["results/", "results/a", "Results/b", "results-x", "resultsZ", "results/c"]
    for key in keys:
        assert call(c, "PUT", "/store/values/" + quote(key, safe=""), {"value": "v"})[0] == 200
    for prefix in ("results/", "r", "R", "results", "resultsz"):
        listed: list[str] = []
        after: str | None = None
        while True:  # a page of one key at a time: the cursor holds across what is left out
            query = f"prefix={quote(prefix, safe='')}&limit=1" + (
                f"&after={quote(after, safe='')}" if after is not None else "")
            status, page = call(c, "GET", f"/store?{query}")
            assert status == 200, page
            listed += [k["key"] for k in page["keys"]]
            if page["next"] is None:
                break
            after = page["next"]
        assert sorted(listed) == sorted(k for k in keys if k.startswith(prefix)), prefix


def test_a_worker_id_past_80_characters_is_refused_before_the_worker_joins(
        either: Cluster) -> None:
    # workers.id (and jobs.worker_id) is PostgreSQL's varchar(80); an admin may name the id
    # a worker registers under, checked against 200 characters only. Past 80 the worker
    # joined in memory and its row was refused (400 unstorable_value): it polled, took a job
    # in memory whose lease the database refused again, and GET /workers never showed it.
    # SQLite kept it.
    c = either
    longest, past = "w" * 80, "x" * 81
    assert call(c, "POST", "/workers/register", {"worker_id": longest, "slots": 1})[0] == 200
    error = refused(call(c, "POST", "/workers/register", {"worker_id": past, "slots": 1}),
                    "worker_id")
    assert "80 characters" in error["message"], error
    status, reply = call(c, "POST", f"/workers/{past}/poll", {"free_slots": 1, "wait": 0})
    assert (status, reply["error"]["code"]) == (404, "unknown_worker"), reply
    listed = {w["id"] for w in c.api("GET", "/workers")["workers"]}
    assert longest in listed and past not in listed, listed


def _dag_refused(c: Cluster, name: str, jobs: list[dict[str, Any]],
                 field: str) -> dict[str, Any]:
    """``POST /dags`` of ``jobs`` as ``name`` is 400 invalid_dag naming ``field``, and stores
    nothing (the PostgreSQL database is the module's: each test names its DAGs its own)."""
    status, reply = call(c, "POST", "/dags", {"name": name, "jobs": jobs})
    assert status == 400, reply
    error = reply["error"]
    assert error["code"] == "invalid_dag" and error["details"].get("field") == field, error
    assert field in error["message"], error
    assert call(c, "GET", f"/dags?name={name}")[1]["total"] == 0
    return dict(error)


def test_a_job_runner_that_is_not_a_string_is_a_400_naming_runner(either: Cluster) -> None:
    # A list or an object as `runner` was looked up in the set of runners: "internal error:
    # TypeError("unhashable type: 'list'")", a 500.
    c = either
    script = b"print('hi')\n"
    sha = hashlib.sha256(script).hexdigest()
    req = urllib.request.Request(f"{c.url}/api/v1/blobs/{sha}", method="PUT", data=script,
                                 headers={"Authorization": f"Bearer {c.admin_token}"})
    with urllib.request.urlopen(req, timeout=30) as r:
        assert r.status in (200, 201)
    for runner in (["fork"], {"fork": True}):
        job = {"job_id": "a", "filename": "a.py", "script_sha256": sha, "runner": runner}
        _dag_refused(c, "runner", [job], "runner")
    job = {"job_id": "a", "filename": "a.py", "script_sha256": sha, "runner": "fork"}
    assert call(c, "POST", "/dags", {"name": "runner", "jobs": [job]})[0] == 201


def test_a_hitl_message_with_a_nul_is_a_400_naming_it_on_either_database(
        either: Cluster) -> None:
    # SQLite stored the NUL; PostgreSQL refused the row: 400 unstorable_value naming no field.
    c = either
    gate = {"job_id": "review", "job_type": "APPROVAL", "hitl_message": "ship\x00it?"}
    error = _dag_refused(c, "gate", [gate], "hitl_message")
    assert "NUL" in error["message"], error
    status, reply = call(c, "POST", "/dags", {"name": "gate", "jobs": [
        {**gate, "hitl_message": "ship it?"}]})
    assert status == 201 and reply["run"] == 1, reply  # nothing of the refused ones was kept


def test_an_evaluation_s_description_or_task_to_run_with_a_nul_is_a_400_naming_it(
        either: Cluster) -> None:
    # SQLite stored a description with a NUL (200) where PostgreSQL refused the row (400
    # unstorable_value naming no field); a task to run named with one was a 404 on SQLite, a
    # 400 on PostgreSQL. Both are refused at the API now, naming the field, nothing stored.
    c = either
    agent = {"name": "a", "kind": "http", "url": "http://127.0.0.1:9/", "judge": False}
    tasks = [{"id": "t1", "user_instruction": "hello"}]
    refused(call(c, "PUT", "/evaluations/nul-desc", {"agent": agent, "description": "a\x00b",
                                                     "tasks": tasks}), "description")
    refused(call(c, "PUT", "/evaluations/nul-desc", {"agent": agent, "description": 5}),
            "description")
    assert call(c, "GET", "/evaluations/nul-desc")[0] == 404  # nothing of it was kept
    assert call(c, "PUT", "/evaluations/nul-desc", {"agent": agent, "description": "ok",
                                                    "tasks": tasks})[0] == 200
    error = refused(call(c, "POST", "/evaluations/nul-desc/runs", {"tasks": ["t\x00"]}),
                    "tasks[0]")
    assert "letters, digits" in error["message"], error
    assert call(c, "GET", "/evaluations/nul-desc/tasks/t1/runs") == (200, {"runs": []})


def test_a_coding_report_of_the_wrong_shape_is_a_400_naming_its_field(
        either: Cluster, nul_agent: str) -> None:
    # POST /runs/{id}/eval/coding stored whatever it was sent: a trajectory of 5, or "ls",
    # was kept (200) for the run's page and its judge to trip over, and a misspelt field was
    # dropped without a word. Each is refused now, naming the field, and nothing is kept.
    c = either
    client = c.client()
    client.create_evaluation("coding-shape", {
        "name": "h", "kind": "http", "url": nul_agent, "timeout_s": 60, "judge": False},
        [{"id": "hang", "user_instruction": "hang"}])
    run = client.run_evaluation("coding-shape")[0]["id"]
    deadline = time.monotonic() + 20
    while client.evaluation_run("coding-shape", "hang", run)["header"]["status"] != "running":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    good = {"diff": "", "changed_paths": ["a.py"], "scorers": [
        {"name": "tests", "type": "command", "verdict": "PASS"}], "overall": "PASS",
        "trajectory": [{"kind": "command", "command": "ls"}], "trajectory_source": None,
        "agent_exit_code": 0, "agent_output_tail": "", "eval_error": None}
    cases: list[tuple[str, Any, str]] = [
        ("trajectory", 5, "trajectory"), ("trajectory", "ls", "trajectory"),
        ("trajectory", ["ls"], "trajectory[0]"), ("changed_paths", "a.py", "changed_paths"),
        ("changed_paths", [1], "changed_paths[0]"), ("agent_exit_code", "0", "agent_exit_code"),
        ("agent_exit_code", True, "agent_exit_code"), ("scorers", {"a": 1}, "scorers"),
        ("scorers", ["x"], "scorers[0]"), ("diff", [], "diff"), ("overall", 1, "overall"),
        ("turns", "x", "turns"), ("turns", [1], "turns[0]"), ("turns_planned", "2", "turns_planned"),
        ("eval_error", 3, "eval_error"), ("agent_output_tail", {}, "agent_output_tail"),
        ("trajectory_source", 1, "trajectory_source"), ("overal", "PASS", "overal")]
    for field, bad, named in cases:
        refused(call(c, "POST", f"/runs/{run}/eval/coding", {**good, field: bad}), named)
    refused(call(c, "POST", f"/runs/{run}/eval/coding", [good]), "body")
    assert client.evaluation_run("coding-shape", "hang", run)["coding"] is None
    assert call(c, "POST", f"/runs/{run}/eval/coding", good) == (200, {"accepted": True})
    assert client.evaluation_run("coding-shape", "hang", run)["coding"]["trajectory"] == \
        good["trajectory"]
    client.cancel_evaluation("coding-shape")
