"""Job ids and DAG names of digits alone (``TitanJob(str(i))``, ``titan submit 123.py``) are
names like any other; a bare reference of digits is the row with that numeric id or the one
named so, whichever exists, and refused as ambiguous (each one's own reference said) when both
do: ``fetch_logs("1")`` read another DAG's job 1, silently. ``#17`` is the id alone, what the
SDK sends for an int."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.harness import Cluster, isolated_cluster
from titan import errors
from titan.client.pipeline import load_pipeline
from titan.storage import open_storage
from titan_sdk import TitanJob

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = isolated_cluster(tmp_path_factory.mktemp("digits"), slots=4)
    try:
        yield c
    finally:
        c.stop()


def env_of(cluster: Cluster) -> dict[str, str]:
    return dict(cluster.env, TITAN_HOST="127.0.0.1", TITAN_PORT=str(cluster.port),
                TITAN_TOKEN=cluster.admin_token)


def titan(cluster: Cluster, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "titan", *args], env=env_of(cluster), cwd=cwd,
                          capture_output=True, text=True, timeout=240)


def test_a_reference_of_digits_that_is_an_id_and_a_name_is_refused_naming_both(
        cluster: Cluster, tmp_path: Path) -> None:
    client = cluster.client()
    other = cluster.script("other.py", "print('I am other')\n")
    mine = cluster.script("mine.py", "print('I am mine')\n")
    # Jobs 1-3 (a fresh cluster's first), then jobs named 1-3 and 99, as a fan-out names them.
    first = client.submit_dag("numq_other", [TitanJob(f"o{i}", other) for i in range(3)],
                              wait=True, timeout=60)
    assert [j["id"] for j in first["jobs"]] == [1, 2, 3]
    # DAG 1's first job is job 1: cancel(dag["id"]) cancelled that job alone, wait returned
    # it. A number that is a job's id and a DAG's is refused, whichever DAG the job is of.
    assert first["id"] == 1
    for verb in ("cancel", "wait", "retry"):
        with pytest.raises(errors.AmbiguousRef, match=(
                rf"1 is both the id of the DAG numq_other#1 and its job numq_other#1/o0: "
                rf"{verb} 'numq_other#1' for the DAG, or 'numq_other#1/o0' for the job")):
            getattr(client, verb)(first["id"])
    said = titan(cluster, "cancel", "#1", cwd=tmp_path)
    assert said.returncode == 1 and "'#1' is both the id of the DAG numq_other#1" in \
        said.stderr, said.stdout + said.stderr
    dag = client.submit_dag("numq_mine", [TitanJob(str(i), mine) for i in (1, 2, 3, 99)],
                            wait=True, timeout=60)
    assert dag["status"] == "COMPLETED" and [j["job_id"] for j in dag["jobs"]] == \
        ["1", "2", "3", "99"]
    for call in (client.get_job, client.fetch_logs, client.wait_job):
        with pytest.raises(errors.AmbiguousRef, match=(
                r"job '1' is ambiguous: it is the id of job numq_other#1/o0 and the job id of "
                r"numq_mine#1/1: say 'numq_other#1/o0' \(or '#1'\) for the first, "
                r"'numq_mine#1/1' for the second")) as refused:
            call("1")
        assert refused.value.code == "ambiguous_ref" and refused.value.status == 400
        assert refused.value.details == {"ref": "1", "by_id": "numq_other#1/o0",
                                         "by_name": "numq_mine#1/1"}
    # Each is reached by its own reference, an int by its id alone; one reading alone resolves.
    assert client.get_job("numq_mine#1/1")["id"] == dag["jobs"][0]["id"]
    assert "I am mine" in client.fetch_logs("numq_mine/1")
    assert client.get_job(1)["job_id"] == "o0" and client.get_job("#1")["job_id"] == "o0"
    assert client.get_job("99")["ref"] == "numq_mine#1/99"  # no job has id 99
    assert client.get_job("5")["ref"] == "numq_mine#1/2"  # no job is named 5
    # A DAG/job reference that reaches nothing says which half is missing.
    for ref, why in (("numq_mine#1/nojob", "DAG numq_mine#1 has no job 'nojob'"),
                     ("numq_mine/nojob", "DAG numq_mine#1 has no job 'nojob'"),
                     ("numq_mine#7/1", "no DAG 'numq_mine#7'"),
                     ("nodag/1", "no DAG 'nodag'")):
        with pytest.raises(errors.NotFound) as missing:
            client.get_job(ref)
        assert missing.value.message == f"no job {ref!r}: {why}", missing.value.message
    # DAGs alike: DAG 1 is numq_other, and now a DAG is named 1.
    named = client.submit_dag("1", [TitanJob("seven", mine)], wait=True, timeout=60)
    assert named["status"] == "COMPLETED"
    with pytest.raises(errors.AmbiguousRef, match=(
            r"DAG '1' is ambiguous: it is the id of DAG numq_other#1 and the name of DAG 1#1: "
            r"say 'numq_other#1' \(or '#1'\) for the first, '1#1' \(or 'DAG-1' for its "
            r"latest run\) for the second")):
        client.get_dag("1")
    assert client.get_dag("DAG-1")["id"] == named["id"] and client.get_dag(1)["name"] == "numq_other"
    # Any client gets the same answer; the dashboard names rows by their id alone (#1).
    with pytest.raises(urllib.error.HTTPError) as http:
        cluster.api("GET", "/jobs/1")
    assert http.value.code == 400 and json.loads(http.value.read())["error"]["code"] == "ambiguous_ref"
    assert cluster.api("GET", "/jobs/%231")["job_id"] == "o0"
    # The CLI says it, and exits non-zero.
    said = titan(cluster, "status", "1", cwd=tmp_path)
    assert said.returncode != 0 and "is ambiguous" in said.stderr and "numq_other#1" in said.stderr, \
        said.stdout + said.stderr
    # `titan submit 123.py` names its job and DAG after the file: it runs, and waits.
    (tmp_path / "123.py").write_text("print('hello from 123')\n")
    done = titan(cluster, "submit", "123.py", "--wait", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert client.get_dag("123")["status"] == "COMPLETED"


def test_a_driver_naming_jobs_by_number_runs_and_its_run_replays(
        cluster: Cluster, tmp_path: Path) -> None:
    (tmp_path / "work.py").write_text("import sys\nprint('part', sys.argv[1])\n")
    run_id = f"FANOUT_{tmp_path.name[-6:]}".replace("-", "_")
    driver = tmp_path / "fanout.py"
    driver.write_text(
        "import sys, titan\nfrom titan.client import TitanClient, TitanJob\n"
        "@titan.tool\ndef plan(n):\n    return list(range(n))\n"
        "jobs = [TitanJob(str(i), 'work.py', args=[str(i)]) for i in plan(3)]\n"
        "d = TitanClient().submit_dag('fanout', jobs, agent_run_id=sys.argv[1], wait=True,"
        " timeout=120)\nprint('stage:', d['status'])\n")
    done = subprocess.run([sys.executable, str(driver), run_id], env=env_of(cluster),
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "stage: COMPLETED" in done.stdout, done.stdout + done.stderr
    deadline = time.monotonic() + 20
    while cluster.api("GET", f"/runs/{run_id}")["status"] == "running":
        assert time.monotonic() < deadline, f"run {run_id} never ended"
        time.sleep(0.1)
    replayed = titan(cluster, "replay", run_id, cwd=tmp_path)
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr
    assert ": completed" in replayed.stdout, replayed.stdout


def test_digit_names_are_accepted_everywhere_a_name_is_made(cluster: Cluster, tmp_path: Path) -> None:
    script = cluster.script("mine.py", "print('mine')\n")
    assert TitanJob("1", script).job_id == "1"
    pipeline = tmp_path / "p.yaml"
    pipeline.write_text("name: '7'\njobs:\n  - id: 1\n    file: m.py\n")
    (tmp_path / "m.py").write_text("print(1)\n")
    name, jobs = load_pipeline(pipeline)
    assert (name, [j.job_id for j in jobs]) == ("7", ["1"])
    made = cluster.client().schedule_dag("9", [TitanJob("a", script)], cron="0 * * * *",
                                         paused=True)
    assert made["name"] == "9"


def test_rows_named_with_digits_are_reachable_by_the_forms_that_are_never_an_id(tmp_path: Path) -> None:
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


def test_a_reference_that_is_no_name_or_id_is_refused_and_a_returned_object_is_its_ref(
        cluster: Cluster) -> None:
    # wait(dag), with the object submit_dag returned, sent the dict's text as a reference
    # ("bad DAG reference \"{'id': 30, ...}\": the run after '#' must be a number"), and
    # get_job(None) looked for a job named "None" (and found one, had it existed). The
    # objects the client returns, and a TitanJob submitted, now stand for their reference.
    client = cluster.client()
    script = cluster.script("refkind.py", "print('ok')\n")
    submitted = TitanJob("None", script)
    dag = client.submit_dag("refkind", [submitted], wait=True, timeout=60)
    job = dag["jobs"][0]
    assert client.wait(dag, timeout=5)["ref"] == dag["ref"] == client.get_dag(dag)["ref"]
    assert client.wait(job, timeout=5)["ref"] == job["ref"] == client.get_job(job)["ref"]
    assert client.wait(submitted, timeout=5)["ref"] == job["ref"]
    assert client.get_job_status(submitted) == "COMPLETED"
    assert client.fetch_logs(job).strip() == client.fetch_logs(submitted).strip() == "ok"
    with pytest.raises(errors.NotFound, match="name one of its jobs"):
        client.get_job(dag)  # a DAG's object is no job
    for call in (lambda r: client.wait(r, timeout=5), client.get_job, client.get_dag,
                 client.fetch_logs, client.cancel, client.retry):
        with pytest.raises(errors.ValidationFailed, match="got None") as got:
            call(None)
        assert got.value.details == {"field": "ref"}
        with pytest.raises(errors.ValidationFailed, match="got bool"):
            call(True)
        with pytest.raises(errors.ValidationFailed, match="got dict"):
            call({"id": 3})  # a dict with no reference in it
    assert client.get_job("None")["ref"] == "refkind#1/None"  # a name is still a name
    # An integer of another type (a numpy id, from a DataFrame) is an id like an int.
    index_like = type("Index", (), {"__index__": lambda self: job["id"]})()
    assert client.get_job(index_like)["ref"] == "refkind#1/None"
