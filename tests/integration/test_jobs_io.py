"""What goes in and out of jobs against real processes: logs (complete, ordered, followed
live through the CLI), archive jobs, affinity, YAML pipelines and DAG runs by name."""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import textwrap
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.integration.harness import Cluster, shared_cluster
from tests.integration.processes import BLOCKER
from titan import log_lines
from titan.errors import InvalidDAG, PipelineError
from titan_sdk import TitanJob

cluster = shared_cluster()  # one `titan up` for the module (see harness.py)

MakeCluster = Callable[..., Cluster]

def cli_env(cluster: Cluster) -> dict[str, str]:
    return dict(cluster.env, TITAN_HOST="127.0.0.1", TITAN_PORT=str(cluster.port),
                TITAN_TOKEN=cluster.admin_token)


def titan_cli(cluster: Cluster, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "titan", *args], cwd=cwd, env=cli_env(cluster),
                          capture_output=True, text=True, timeout=120)


# -- logs -------------------------------------------------------------------------------------

@pytest.mark.parametrize("runner", ["auto", "subprocess"])
def test_5000_line_log_arrives_complete_and_in_order(cluster: Cluster, runner: str) -> None:
    talker = cluster.script("talker.py", """
        import sys
        for i in range(5000):
            stream = sys.stderr if i % 3 == 0 else sys.stdout
            print(f"line {i:04d} " + "é" * (i % 40), file=stream, flush=i % 7 == 0)
    """)
    client = cluster.client()
    client.submit_job(TitanJob(job_id="talker", filename=talker, runner=runner))
    assert client.wait("talker", timeout=120)["state"] == "COMPLETED"
    lines = list(client.iter_logs("talker"))
    expected = {i: f"line {i:04d} " + "é" * (i % 40) for i in range(5000)}
    assert len(lines) == 5000
    assert [ln["seq"] for ln in lines] == sorted({ln["seq"] for ln in lines})
    for stream, keep in (("stderr", lambda i: i % 3 == 0), ("stdout", lambda i: i % 3 != 0)):
        got = [ln["line"] for ln in lines if ln["stream"] == stream]
        assert got == [expected[i] for i in range(5000) if keep(i)], stream
    text = client.fetch_logs("talker")
    assert sorted(text.split("\n")) == sorted(expected.values())


def test_a_log_of_emoji_does_not_stall_its_worker(cluster: Cluster) -> None:
    # A batch was sized in characters and sent with every emoji escaped to 12 bytes: 2 MiB of
    # emoji made a 24 MB frame, past the master's WebSocket limit; the channel closed, the
    # worker sent the same frame again for ever, and no job of that worker finished.
    emoji = cluster.script("emoji.py", """
        import sys
        line = "\\U0001F600" * 8000 + "\\n"
        for i in range(300):
            sys.stdout.write(line)
    """)
    quick = cluster.script("quick.py", "print('done')\n")
    client = cluster.client()
    client.submit_job(TitanJob(job_id="emoji", filename=emoji))
    client.submit_job(TitanJob(job_id="after-emoji", filename=quick))
    for job in ("emoji", "after-emoji"):
        assert client.wait(job, timeout=120)["state"] == "COMPLETED", cluster.log()
    lines = [e["line"] for e in client.iter_logs("emoji")]
    assert len(lines) == 300 and all(line == "\U0001F600" * 8000 for line in lines)


def test_a_line_past_64_kib_comes_back_whole_from_every_reader(cluster: Cluster,
                                                               tmp_path: Path) -> None:
    # Kept in 64 KiB pieces with nothing to say they were one line: a 200 KB JSON record
    # printed on one line came back as four lines, and no reader could parse it.
    record = cluster.script("record.py", """
        import json, sys
        print("before")
        print(json.dumps({"rows": ["é" * 50 + str(i) for i in range(4000)]}))
        sys.stderr.write("x" * 70000)  # no newline at the end: the last line of stderr
        print("after")
    """)
    client = cluster.client()
    client.submit_job(TitanJob(job_id="record", filename=record))
    assert client.wait("record", timeout=120)["state"] == "COMPLETED"
    pieces = list(client.iter_logs("record"))
    out = [p for p in pieces if p["stream"] == "stdout"]
    assert out[0]["line"] == "before" and out[-1]["line"] == "after"
    middle = out[1:-1]  # the record, in pieces of at most 64 KiB: each but its last goes on
    assert len(middle) > 2 and all(len(p["line"].encode()) <= 64 * 1024 for p in middle)
    assert [p.get("continues", False) for p in middle] == [True] * (len(middle) - 1) + [False]
    assert all("continues" not in p for p in pieces if not p.get("continues"))
    record_text = "".join(p["line"] for p in middle)
    assert len(json.loads(record_text)["rows"]) == 4000
    text = client.fetch_logs("record")
    assert record_text in text.split("\n")
    assert "x" * 70000 in text.split("\n")
    cli = titan_cli(cluster, "logs", "record", cwd=tmp_path)
    assert cli.returncode == 0, cli.stderr
    assert record_text in cli.stdout.split("\n") and "x" * 70000 in cli.stdout.split("\n")
    req = urllib.request.Request(f"{cluster.url}/api/v1/jobs/record/logs.txt",
                                 headers={"Authorization": f"Bearer {cluster.admin_token}"})
    with urllib.request.urlopen(req, timeout=30) as r:
        assert record_text in r.read().decode().split("\n")


def get_json(cluster: Cluster, path: str) -> tuple[int, dict]:
    req = urllib.request.Request(f"{cluster.url}/api/v1{path}",
                                 headers={"Authorization": f"Bearer {cluster.admin_token}"})
    with urllib.request.urlopen(req, timeout=60) as r:
        body = r.read()
        return len(body), json.loads(body)


def test_a_page_of_log_lines_is_bounded_in_bytes_not_only_in_lines(cluster: Cluster) -> None:
    """A page of ``/logs`` was bounded in lines alone, and a stored line is up to 64 KiB: the
    job page's first load (20,000 lines, from the end) of a job that printed 3,000 lines of
    100 KB sent the browser 268 MB of JSON and took the master from 0.3 to 1.1 GB; one line of
    50 MB came whole. A page now stops at LOG_PAGE_BYTES; the pages after it, the SDK and the
    plain text still give every line."""
    from titan.master.api.jobs import LOG_PAGE_BYTES

    wide = cluster.script("wide_lines.py", """
        for i in range(60):
            print(f"{i:03d}" + "w" * 100_000)
    """)
    client = cluster.client()
    client.submit_job(TitanJob(job_id="wide-lines", filename=wide))
    assert client.wait("wide-lines", timeout=120)["state"] == "COMPLETED"
    assert 1.2 * LOG_PAGE_BYTES < 60 * 100_000  # the log is larger than a page
    size, tail = get_json(cluster, "/jobs/wide-lines/logs?after=0&limit=20000&tail=true")
    assert size <= LOG_PAGE_BYTES + 64 * 1024
    assert tail["done"] and tail["lines"] and tail["lines"][0]["seq"] > 1
    assert tail["lines"][-1]["line"].endswith("w" * 1000)
    pieces, after, pages = [], 0, 0
    while True:
        size, page = get_json(cluster, f"/jobs/wide-lines/logs?after={after}&limit=10000")
        assert size <= LOG_PAGE_BYTES + 64 * 1024 and page["lines"]
        pieces += page["lines"]
        after, pages = page["next"], pages + 1
        assert page["more"] != page["done"]
        if page["done"]:
            break
    assert pages > 1 and [p["seq"] for p in pieces] == list(range(1, len(pieces) + 1))
    expected = [f"{i:03d}" + "w" * 100_000 for i in range(60)]
    assert log_lines.text(pieces).split("\n") == expected
    assert client.fetch_logs("wide-lines").split("\n") == expected
    req = urllib.request.Request(f"{cluster.url}/api/v1/jobs/wide-lines/logs.txt",
                                 headers={"Authorization": f"Bearer {cluster.admin_token}"})
    with urllib.request.urlopen(req, timeout=60) as r:
        assert r.read().decode().split("\n")[:-1] == expected


def test_logs_follow_through_the_cli_while_the_job_runs(cluster: Cluster, tmp_path: Path) -> None:
    talker = cluster.script("follow.py", """
        from titan import TitanClient
        for i in range(100):
            print(f"first {i}", flush=True)
        TitanClient().store_wait("follow/more", timeout=120)
        for i in range(100):
            print(f"second {i}", flush=True)
    """)
    client = cluster.client()
    # Delayed: the follower starts before the job has run at all, and must wait for it.
    client.submit_job(TitanJob(job_id="chatty", filename=talker, delay=1))
    proc = subprocess.Popen([sys.executable, "-m", "titan", "logs", "chatty", "--follow"],
                            cwd=tmp_path, env=cli_env(cluster), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    got: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            got.put(line.rstrip("\n"))
        got.put(None)

    threading.Thread(target=pump, daemon=True).start()
    try:
        seen: list[str] = []
        while "first 99" not in seen:
            line = got.get(timeout=60)
            assert line is not None, f"follow ended early: {seen[-5:]} {proc.stderr.read()}"  # type: ignore[union-attr]
            seen.append(line)
        assert client.get_job_status("chatty") == "RUNNING"  # readable while it runs
        client.store_put("follow/more", "1")
        assert proc.wait(timeout=60) == 0, proc.stderr.read()  # type: ignore[union-attr]
        while (line := got.get(timeout=10)) is not None:
            seen.append(line)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert seen == [f"first {i}" for i in range(100)] + [f"second {i}" for i in range(100)]
    assert client.get_job_status("chatty") == "COMPLETED"


def test_following_logs_goes_on_into_a_retry(cluster: Cluster) -> None:
    # `titan logs -f` ended with the first attempt's failure while the job ran on as
    # attempt 2, whose output was never shown.
    flaky = cluster.script("flaky_follow.py", """
        import os, sys
        from titan import TitanClient
        n = TitanClient().store_incr("flaky_follow/runs")
        print(f"attempt {n}", flush=True)
        sys.exit(1 if n == 1 else 0)
    """)
    client = cluster.client()
    client.submit_job(TitanJob(job_id="flaky_follow", filename=flaky, retries=2))
    lines = [item["line"] for item in client.iter_logs("flaky_follow", follow=True)]
    assert lines[0] == "attempt 1" and lines[-1] == "attempt 2", lines
    # Said with how it ended (a lost attempt said nothing of its worker's loss).
    assert "[titan] attempt 1 ended FAILED: exit code 1; the job runs again as attempt 2" \
        in lines, lines
    assert client.get_job_status("flaky_follow") == "COMPLETED"
    # `titan status` shows the earlier attempt and why it ended, not only `--json`.
    shown = subprocess.run([sys.executable, "-m", "titan", "status", "flaky_follow"],
                           env=cli_env(cluster), capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    status = shown.stdout.splitlines()
    at = status.index("earlier attempts:")
    assert status[at + 1].startswith("  1 FAILED on ") and \
        status[at + 1].endswith(": exit code 1"), status
    # An attempt asked for by number is that attempt's log only.
    assert [i["line"] for i in client.iter_logs("flaky_follow", 1, follow=True)] == [
        "attempt 1"]


def test_a_follow_begun_before_a_quick_job_ran_shows_its_lines(cluster: Cluster) -> None:
    # Begun while the job waited (PENDING behind a gate), a follow whose long poll woke with
    # the job already COMPLETED (its lines printed at once) printed nothing and exited 0: it
    # had only read attempt 0, the one before the job ran.
    build = cluster.script("held_build.py", "print('built')\n")
    talk = cluster.script("quick_talk.py", "for i in range(3):\n    print(f'line {i}')\n")
    client = cluster.client()
    for how in ("sdk", "cli"):
        dag = f"held_{how}"
        client.submit_dag(dag, [
            TitanJob(job_id="build", filename=build, hitl_message="go?"),
            TitanJob(job_id="talk", filename=talk, parents=["build"])])
        deadline = time.time() + 30
        while client.get_job_status(f"{dag}/build.approval") != "WAITING_APPROVAL":
            assert time.time() < deadline
            time.sleep(0.05)
        got: list[str] = []
        if how == "sdk":
            def follow(ref: str = f"{dag}/talk", got: list[str] = got) -> None:
                got.extend(item["line"] for item in client.iter_logs(ref, follow=True))

            follower = threading.Thread(target=follow)
            follower.start()
            time.sleep(1)  # its long poll is on attempt 0
        else:
            proc = subprocess.Popen(
                [sys.executable, "-m", "titan", "logs", f"{dag}/talk", "--follow"],
                env=cli_env(cluster), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            time.sleep(3)  # started, asked, and long-polling attempt 0
        assert client.get_job_status(f"{dag}/talk") == "PENDING"
        client.approve(f"{dag}/build.approval")
        if how == "sdk":
            follower.join(timeout=60)
            assert not follower.is_alive()
        else:
            out, err = proc.communicate(timeout=60)
            assert proc.returncode == 0, err
            got = out.splitlines()
        assert got == ["line 0", "line 1", "line 2"], (how, got)
        assert client.get_job_status(f"{dag}/talk") == "COMPLETED"


# -- archives and affinity --------------------------------------------------------------------

def test_archive_job_imports_its_sibling_modules(cluster: Cluster, tmp_path: Path) -> None:
    project = tmp_path / "proj"
    (project / "pkg").mkdir(parents=True)
    (project / "helper.py").write_text("def greet(who):\n    return f'hello {who}'\n")
    (project / "pkg" / "__init__.py").write_text("")
    (project / "pkg" / "values.py").write_text("ANSWER = 42\n")
    (project / "data.txt").write_text("payload\n")
    (project / "main.py").write_text(textwrap.dedent("""
        import os, sys
        from helper import greet
        from pkg.values import ANSWER
        here = os.path.dirname(os.path.abspath(__file__))
        data = open(os.path.join(here, "data.txt")).read().strip()
        print(greet(sys.argv[1]), ANSWER, data)
    """))
    client = cluster.client()
    # Before its project is there, the DAG is refused at once (it was stored and each job
    # failed on its worker instead).
    with pytest.raises(InvalidDAG, match="its project 'proj.zip' was never uploaded"):
        client.submit_dag("archived", [
            TitanJob(job_id="main", filename="./proj/main.py", is_archive=True)])
    uploaded = client.upload_project_folder(project)
    assert uploaded["name"] == "proj.zip"
    client.submit_dag("archived", [
        TitanJob(job_id="main", filename="proj/main.py", is_archive=True, args=["titan"]),
        TitanJob(job_id="again", filename="proj/main.py", is_archive=True, args=["again"],
                 parents=["main"]),
    ])
    dag = client.wait("archived", timeout=60)
    assert dag["status"] == "COMPLETED", client.fetch_logs("main")
    assert "hello titan 42 payload" in client.fetch_logs("main")
    assert "hello again 42 payload" in client.fetch_logs("again")


def test_affinity_keeps_a_child_on_its_parents_worker_then_falls_back(
    make_cluster: MakeCluster,
) -> None:
    cluster = make_cluster(env={"TITAN_AFFINITY_WAIT": "2"})
    cluster.up(slots=4, capabilities="GENERAL,LOCAL")
    cluster.add_worker(capabilities="GENERAL,REMOTE", slots=1, name="remote")
    ok = cluster.script("ok.py", "print('ok')\n")
    blocker = cluster.script("blocker.py", BLOCKER)
    client = cluster.client()
    ids = {w["name"]: w["id"] for w in client.list_workers()}
    local, remote = ids["local"], ids["remote"]

    # Parents pinned by capability; their GENERAL children could run anywhere but prefer them.
    client.submit_dag("aff", [
        TitanJob(job_id="pl", filename=ok, requirement="LOCAL"),
        TitanJob(job_id="pr", filename=ok, requirement="REMOTE"),
        TitanJob(job_id="cl1", filename=ok, parents=["pl"], affinity=True),
        TitanJob(job_id="cl2", filename=ok, parents=["pl"], affinity=True),
        TitanJob(job_id="cr1", filename=ok, parents=["pr"], affinity=True),
        TitanJob(job_id="cr2", filename=ok, parents=["cr1"], affinity=True),
    ])
    dag = client.wait("aff", timeout=60)
    assert dag["status"] == "COMPLETED", dag
    where = {j["job_id"]: j["worker_id"] for j in dag["jobs"]}
    assert where == {"pl": local, "pr": remote, "cl1": local, "cl2": local,
                     "cr1": remote, "cr2": remote}, where

    # The preferred worker stays busy: after the affinity wait the child runs elsewhere.
    client.submit_dag("fallback", [
        TitanJob(job_id="p2", filename=ok, requirement="REMOTE"),
        TitanJob(job_id="gate", filename=blocker, args=["gate"], requirement="LOCAL"),
        TitanJob(job_id="c2", filename=ok, parents=["p2", "gate"], affinity=True),
    ])
    assert client.wait("p2", timeout=60)["worker_id"] == remote
    client.submit_job(TitanJob(job_id="hog", filename=blocker, args=["hog"], requirement="REMOTE"))
    client.store_wait("hog/started", timeout=60)
    client.store_wait("gate/started", timeout=60)
    client.store_put("gate", "1")
    child = client.wait("c2", timeout=60)
    assert child["state"] == "COMPLETED" and child["worker_id"] == local, child
    assert child["started_at"] - child["ready_at"] >= 1.5, child
    client.store_put("hog", "1")
    assert client.wait("hog", timeout=60)["state"] == "COMPLETED"


@pytest.mark.parametrize("database", ["sqlite", "postgres"])
def test_a_jobs_flags_are_booleans_on_every_route(make_cluster: MakeCluster, database: str,
                                                  request: pytest.FixtureRequest) -> None:
    # api.md's job object has booleans; SQLite's reads answered 1/0 on most of the routes.
    url = request.getfixturevalue("postgres_url") if database == "postgres" else None
    cluster = make_cluster(database_url=url).up(slots=2)
    client = cluster.client()
    ok = cluster.script("ok.py", "print('ok')\n")
    [sha] = client.upload_blobs([Path(ok).read_bytes()])
    submitted = client.api("POST", "/dags", params={"wait": 60}, json={"name": "flags", "jobs": [
        {"job_id": "p", "filename": "ok.py", "script_sha256": sha},
        {"job_id": "a", "filename": "ok.py", "script_sha256": sha, "parents": ["p"],
         "affinity": True}]})
    assert submitted["status"] == "COMPLETED", submitted

    def job_of(reply: dict) -> dict:
        return reply if "job_id" in reply else next(j for j in reply["jobs"] if j["job_id"] == "a")

    replies = {
        "POST /dags?wait=": submitted,
        "GET /jobs/{ref}": client.api("GET", "/jobs/flags/a"),
        "GET /jobs?ref=": client.api("GET", "/jobs", params={"ref": "flags/a"}),
        "GET /jobs/{ref}/wait": client.api("GET", "/jobs/flags/a/wait", params={"timeout": 1}),
        "GET /dags/{ref}?jobs=true": client.api("GET", "/dags/flags", params={"jobs": "true"}),
        "GET /dags/{ref}/wait": client.api("GET", "/dags/flags/wait", params={"timeout": 1}),
        "GET /dags/{ref}/jobs": client.api("GET", "/dags/flags/jobs"),
        "client.get_job": client.get_job("flags/a"),
        "client.wait": client.wait("flags/a", timeout=10),
    }
    for route, reply in replies.items():
        job = job_of(reply)
        assert job["affinity"] is True and job["is_archive"] is False, (route, job)



# -- YAML pipelines ---------------------------------------------------------------------------

PIPELINE = """\
name: yaml_pipe
jobs:
  - id: extract
    file: steps/extract.py
    args: ["--rows", "3"]
  - id: load
    file: steps/load.py
    depends_on: extract
    retries: 1
"""


def write_pipeline(folder: Path, text: str = PIPELINE) -> Path:
    (folder / "steps").mkdir(parents=True, exist_ok=True)
    (folder / "steps" / "extract.py").write_text(
        "import sys\nopen('rows.txt', 'w').write(sys.argv[2])\nprint('extracted', sys.argv[2])\n")
    (folder / "steps" / "load.py").write_text("print('loaded', open('rows.txt').read())\n")
    path = folder / "pipeline.yaml"
    path.write_text(text)
    return path


def test_yaml_pipeline_from_the_cli_and_the_sdk(cluster: Cluster, tmp_path: Path) -> None:
    path = write_pipeline(tmp_path / "project")
    out = titan_cli(cluster, "submit", "pipeline.yaml", "--wait", cwd=path.parent)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "yaml_pipe#1" in out.stdout and "COMPLETED" in out.stdout, out.stdout
    client = cluster.client()
    assert "loaded 3" in client.fetch_logs("yaml_pipe#1/load")

    dag = client.submit_yaml(path, wait=True, timeout=60)
    assert dag["status"] == "COMPLETED" and dag["run"] == 2, dag
    jobs = {j["job_id"]: j for j in dag["jobs"]}
    assert jobs["load"]["parents"] == ["extract"] and jobs["extract"]["args"] == ["--rows", "3"]
    assert "extracted 3" in client.fetch_logs("yaml_pipe/extract")


def test_bad_yaml_names_the_line_and_stores_nothing(cluster: Cluster, tmp_path: Path) -> None:
    client = cluster.client()
    # A name no other test of the module submits: nothing may be stored under it.
    pipeline = PIPELINE.replace("name: yaml_pipe", "name: yaml_bad")
    unknown = write_pipeline(tmp_path / "a", pipeline.replace("    depends_on:", "    dependson:"))
    with pytest.raises(PipelineError) as err:
        client.submit_yaml(unknown)
    assert f"{unknown}:8:" in str(err.value) and "depends_on" in str(err.value)
    assert err.value.details["line"] == 8

    broken = write_pipeline(tmp_path / "b", pipeline.replace("    retries: 1", "   retries: [1"))
    with pytest.raises(PipelineError) as err:
        client.submit_yaml(broken)
    assert "invalid YAML" in str(err.value) and f"{broken}:" in str(err.value)

    unknown_parent = write_pipeline(tmp_path / "c", pipeline.replace("depends_on: extract",
                                                                     "depends_on: [nope]"))
    out = titan_cli(cluster, "submit", "pipeline.yaml", "--wait", cwd=unknown_parent.parent)
    assert out.returncode != 0
    assert "pipeline.yaml:8:" in out.stderr and "nope" in out.stderr, out.stderr
    assert client.list_dags(name="yaml_bad") == []


# -- DAG runs by name -------------------------------------------------------------------------

def test_same_dag_name_twice_makes_two_runs(cluster: Cluster) -> None:
    say = cluster.script("say.py", "import sys\nprint('run', sys.argv[1])\nsys.exit(int(sys.argv[2]))\n")
    client = cluster.client()
    first = client.submit_dag("twice", [TitanJob(job_id="x", filename=say, args=["one", "1"])])
    assert client.wait("twice#1", timeout=60)["status"] == "FAILED"
    second = client.submit_dag("twice", [TitanJob(job_id="x", filename=say, args=["two", "0"])])
    assert (first["run"], second["run"]) == (1, 2)
    assert first["ref"] == "twice#1" and second["ref"] == "twice#2"
    assert client.wait("DAG-twice", timeout=60)["status"] == "COMPLETED"

    assert client.get_job_status("x") == "COMPLETED"  # the latest run
    assert client.get_job("x")["ref"] == "twice#2/x"
    assert client.get_job_status("twice/x") == "COMPLETED"
    assert client.get_job_status("twice#1/x") == "FAILED"
    assert client.get_job_status("DAG-twice#1/x") == "FAILED"
    assert "run one" in client.fetch_logs("twice#1/x")
    assert "run two" in client.fetch_logs("x")
    assert client.get_dag("twice")["run"] == 2
    assert client.get_dag("twice#1")["status"] == "FAILED"
    assert client.get_dag("DAG-twice#2")["status"] == "COMPLETED"
    assert [d["run"] for d in client.list_dags(name="twice")] == [2, 1]
