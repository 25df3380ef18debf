"""Jobs on Ray, end to end: a real master, a worker started with ``--executor ray`` against a
real Ray head started here (2 CPUs, one logical GPU, a custom resource), and what the Ray
executor promises beyond the executor contract (tests/contract/test_executors.py): resources,
projects shipped to the node, slots that follow the cluster."""

from __future__ import annotations

import os
import shutil
import signal
import stat
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.harness import Cluster
from tests.integration.processes import wait_dead
from tests.ray_cluster import (
    CPUS,
    CUSTOM,
    RAY_ENV,
    kill_head,
    ray_client_env,
    ray_head,
    ray_node,
    raylet_of,
)
from titan_sdk import TitanJob

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(sys.platform != "linux", reason="process checks need Linux")]

WAIT = 120.0


@pytest.fixture(scope="module")
def ray_address() -> Iterator[str]:
    with ray_head() as address:
        yield address


@pytest.fixture(scope="module")
def cluster(ray_address: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A master and one worker whose jobs run on the Ray head, slots and capabilities its."""
    root = tmp_path_factory.mktemp("ray-cluster")
    with pytest.MonkeyPatch.context() as mp:  # built before the per-test isolation
        for key in list(os.environ):
            if key.startswith("TITAN_") and key != "TITAN_TEST_POSTGRES_URL":
                mp.delenv(key)
        mp.setenv("TITAN_CONFIG_DIR", str(root / "user-config"))
        c = Cluster(root, env=RAY_ENV)
    try:
        c.start_master()
        c.add_worker(capabilities=None, slots=None, name="ray",
                     extra=["--executor", "ray", "--ray-address", ray_address])
        yield c
    finally:
        c.stop()


def _until(what: Callable[[], Any], timeout: float = 30.0) -> Any:
    """``what()`` once it is truthy (Ray's view of its resources lags a moment)."""
    deadline = time.monotonic() + timeout
    while not (got := what()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)
    return got


# ---------------------------------------------------------------------------- through a master


def test_the_worker_offers_what_the_ray_cluster_has(cluster: Cluster) -> None:
    (worker,) = [w for w in cluster.live_workers() if w["name"] == "ray"]
    assert worker["capabilities"] == sorted(["GENERAL", "GPU", CUSTOM])
    assert worker["slots"] == CPUS


def test_a_dag_runs_on_ray_with_its_token_resources_and_logs(cluster: Cluster) -> None:
    client = cluster.client()
    prep = cluster.script("prep.py", """
        import os, sys
        from titan import TitanClient
        print("prep runs on Ray", sys.argv[1:])
        # The job token and the master's URL reached the job: it talks to the master.
        TitanClient().store_put("ray/prep", os.environ["TITAN_JOB_ID"])
        print("stored")
    """)
    show = cluster.script("show.py", """
        import os, sys
        print(sys.argv[1], "devices:", repr(os.environ.get("CUDA_VISIBLE_DEVICES")))
        print("pwd is cwd:", os.environ.get("PWD") == os.getcwd())
    """)
    client.submit_dag("on-ray", [
        TitanJob(job_id="prep", filename=prep, args=["a b"]),
        TitanJob(job_id="custom", filename=show, args=["custom"], parents=["prep"],
                 requirement=CUSTOM),
        TitanJob(job_id="gpu", filename=show, args=["gpu"], parents=["prep"],
                 requirement="GPU"),
    ])
    dag = client.wait("on-ray", timeout=WAIT)
    logs = {j: client.fetch_logs(j) for j in ("prep", "custom", "gpu")}
    assert dag["status"] == "COMPLETED", logs
    assert client.store_get("ray/prep") == "prep"
    assert "prep runs on Ray ['a b']" in logs["prep"] and "stored" in logs["prep"]
    # Ray hands a GPU job its device (ids are Ray's; this head's GPU is a logical one).
    assert "gpu devices: '0'" in logs["gpu"]
    assert "custom devices:" in logs["custom"] and "'0'" not in logs["custom"]
    assert "pwd is cwd: True" in logs["gpu"]  # the node's directory, not the worker's


def test_a_project_archive_is_shipped_to_the_node(cluster: Cluster, tmp_path: Path) -> None:
    project = tmp_path / "rayproj"
    (project / "pkg").mkdir(parents=True)
    (project / "pkg" / "__init__.py").write_text("ANSWER = 42\n")
    (project / "data.txt").write_text("payload\n")
    (project / "main.py").write_text(textwrap.dedent("""
        import os, sys
        from pkg import ANSWER
        here = os.path.dirname(os.path.abspath(__file__))
        print(sys.argv[1], ANSWER, open(os.path.join(here, "data.txt")).read().strip(),
              here == os.environ["TITAN_PROJECT_DIR"])
    """))
    client = cluster.client()
    client.upload_project_folder(project)
    client.submit_dag("ray-archive", [
        TitanJob(job_id="main", filename="rayproj/main.py", is_archive=True, args=["hello"]),
    ])
    dag = client.wait("ray-archive", timeout=WAIT)
    assert dag["status"] == "COMPLETED", client.fetch_logs("main")
    assert "hello 42 payload True" in client.fetch_logs("main")


def test_scripts_on_ray_run_from_the_bytes_they_were_given_as_python_and_bash_would(
        cluster: Cluster) -> None:
    # The node runs the code it was sent, not whatever its shared/<name> holds by then (a
    # job of another project with that script name may have written it); the script still
    # sees its own path, and its traceback quotes its code with no frame of Titan's.
    client = cluster.client()
    py = cluster.script("ray_fails.py", """
        import os, sys
        print(sys.argv[1:], __file__ == os.path.abspath(sys.argv[0]), __name__)
        raise RuntimeError("from the node")
    """)
    sh = cluster.script("ray_says.sh", 'echo "bash: $(basename "$0") $1"\n')
    client.submit_dag("ray-fresh", [
        TitanJob(job_id="py", filename=py, args=["a"], retries=0),
        TitanJob(job_id="sh", filename=sh, args=["b"]),
    ])
    client.wait("ray-fresh", timeout=WAIT)
    py_log, sh_log = client.fetch_logs("ray-fresh/py"), client.fetch_logs("ray-fresh/sh")
    assert "['a'] True __main__" in py_log, py_log
    assert 'raise RuntimeError("from the node")' in py_log, py_log
    assert "<string>" not in py_log and "_titan_main" not in py_log, py_log
    assert "bash: ray_says.sh b" in sh_log, sh_log


def test_cancelling_a_job_on_ray_kills_it_and_its_children(cluster: Cluster) -> None:
    client = cluster.client()
    long = cluster.script("long.py", """
        import os, subprocess, sys, time
        from titan import TitanClient
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
        TitanClient().store_put("ray/long", f"{os.getpid()} {child.pid}")
        time.sleep(300)
    """)
    client.submit_dag("long-on-ray", [TitanJob(job_id="long", filename=long)])
    pids = [int(p) for p in client.store_wait("ray/long", timeout=WAIT).split()]
    job = client.cancel("long-on-ray/long")
    assert job["state"] == "CANCELLED", job
    assert all(wait_dead(pid) for pid in pids), "the job or its child outlived the cancel"
    # The worker's slot came back: the next job runs.
    ok = cluster.script("ok.py", "print('ok')\n")
    client.submit_dag("after-cancel", [TitanJob(job_id="ok", filename=ok)])
    assert client.wait("after-cancel", timeout=WAIT)["status"] == "COMPLETED"


# ---------------------------------------------------------------------------- the executor itself


class Sink:
    """What an attempt reports, kept."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.results: list[dict[str, Any]] = []

    def log(self, entry: dict[str, Any]) -> None:
        self.lines.append(entry["line"])

    def result(self, entry: dict[str, Any]) -> None:
        self.results.append(entry)

    def finished(self, _attempt: Any) -> None:
        pass


def test_a_script_runs_the_version_it_was_given_whatever_its_path_holds(
        ray_address: str, tmp_path: Path) -> None:
    # Two projects' main.py share shared/main.py: the job given project A's blob runs A's
    # code on the node (sent as bytes), not what the worker's path holds by now; shell too.
    from titan.worker.assignment import Assignment
    from titan.worker.attempt import Attempt
    from titan.worker.executor import LaunchSpec
    from titan.worker.loop import IOLoop
    from titan.worker.ray_executor import RayExecutor

    shared = tmp_path / "shared"
    shared.mkdir()
    loop = IOLoop()
    loop.start()
    with ray_client_env():
        executor = RayExecutor(loop, address=ray_address)
    try:
        for name, blob, path in [("main.py", "print('project A')\n", "print('project B')\n"),
                                 ("run.sh", "echo project A $1\n", "echo project B\n")]:
            (tmp_path / f"blob-{name}").write_text(blob)
            (shared / name).write_text(path)
            sink = Sink()
            attempt = Attempt(Assignment(id=8, attempt=1, job_id="v", filename=name),
                              loop=loop, sink=sink, kill_grace=3.0)
            launched = executor.spawn(LaunchSpec(script=shared / name, args=["x"], cwd=shared,
                                                 env={"PYTHONUNBUFFERED": "1"},
                                                 source=tmp_path / f"blob-{name}"))
            loop.call(attempt.attach, launched)
            _until(lambda sink=sink: sink.results)
            assert sink.results[0]["exit_code"] == 0, sink.lines
            assert sink.lines == ["project A" + (" x" if name == "run.sh" else "")]
    finally:
        executor.close()
        loop.stop()


def test_requirements_become_ray_resources_and_capacity_follows_the_cluster(
        ray_address: str, tmp_path: Path) -> None:
    from titan.worker.assignment import Assignment
    from titan.worker.attempt import Attempt
    from titan.worker.executor import LaunchSpec
    from titan.worker.loop import IOLoop
    from titan.worker.ray_executor import RayExecutor

    loop = IOLoop()
    loop.start()
    with ray_client_env():
        executor = RayExecutor(loop, address=ray_address)
    ray = executor.ray
    try:
        assert executor.capabilities() == ["GENERAL", "GPU", CUSTOM]
        assert executor.default_slots() == CPUS
        _until(lambda: executor.capacity() == CPUS)  # the cluster is idle between tests
        go = tmp_path / "go"
        script = tmp_path / "wait.py"
        script.write_text("import os, sys, time\nprint('up', flush=True)\n"
                          "while not os.path.exists(sys.argv[1]):\n    time.sleep(0.01)\n")
        sink = Sink()
        attempt = Attempt(Assignment(id=7, attempt=1, job_id="w", filename="wait.py"),
                          loop=loop, sink=sink, kill_grace=3.0)
        launched = executor.spawn(LaunchSpec(script=script, args=[str(go)], cwd=tmp_path,
                                             env={"PYTHONUNBUFFERED": "1"},
                                             requirement=CUSTOM.lower()))
        loop.call(attempt.attach, launched)
        _until(lambda: sink.lines == ["up"])
        # The job holds the custom resource (asked for in any case) and a CPU; the worker
        # may run its own job plus the one CPU still free.
        _until(lambda: ray.available_resources().get(CUSTOM, 0) == 0)
        _until(lambda: ray.available_resources().get("CPU", 0) == CPUS - 1)
        _until(lambda: executor.capacity() == CPUS)  # read by a probe, off the caller
        go.touch()
        _until(lambda: sink.results)
        assert sink.results[0]["exit_code"] == 0
        _until(lambda: ray.available_resources().get(CUSTOM, 0) == 1)
    finally:
        executor.close()
        loop.stop()


def test_a_node_that_dies_under_a_job_loses_its_attempt_and_spends_no_retry(
        cluster: Cluster, ray_address: str) -> None:
    """A Ray node killed under a running job (retries=0): the job ended FAILED with "Ray:
    NodeDiedError", its only attempt spent, where a local worker lost costs no retry. Now the
    attempt is LOST, the job runs again as attempt 2, and the worker stays live (another
    node died, not its own)."""
    client = cluster.client()
    script = cluster.script("doomed.py", """
        import os, time
        print("running", flush=True)
        parent = os.getppid()
        while os.getppid() == parent:  # its own session: it ends with its Ray worker
            time.sleep(0.2)
    """)
    with ray_node(ray_address, {"DOOMED": 1}) as node:
        # Its own worker: the module's registered before this node, without its resource.
        cluster.add_worker(capabilities="DOOMED", slots=1, name="ray-doomed",
                           extra=["--executor", "ray", "--ray-address", ray_address])
        client.submit_dag("doomed", [TitanJob("d", script, requirement="DOOMED", retries=0)])
        _until(lambda: "running" in client.fetch_logs("doomed/d"), WAIT)
        os.kill(raylet_of(node), signal.SIGKILL)
        job = _until(lambda: (j := client.get_job("doomed/d"))["attempt"] == 2 and j, WAIT)
        try:
            first = job["attempts"][0]
            assert first["state"] == "LOST", first
            # Which the worker hears first is a race: the node's death (its task raises), or
            # the job's process, killed with it, exiting on SIGKILL a moment before. Lost
            # either way; only the words differ.
            assert "lost on Ray: the node running it" in first["error"] \
                or "lost on worker" in first["error"] and "SIGKILL" in first["error"], first
            assert job["max_attempts"] == 2, "no retry spent: it may go one attempt further"
            assert job["state"] in ("READY", "RUNNING"), job  # waits for a DOOMED node
            assert "spending no retry" in client.fetch_logs("doomed/d", attempt=1)
            assert [w["state"] for w in cluster.live_workers() if w["name"] == "ray-doomed"] \
                == ["live"]
        finally:
            client.cancel("doomed")


def test_a_worker_whose_ray_cluster_dies_hands_its_job_back_and_stops_saying_why(
        tmp_path: Path) -> None:
    """The worker's own Ray node dies (here the head, raylet and GCS: `ray start --block`
    takes the rest down with the raylet). Its job ended FAILED with NodeDiedError, the worker
    stayed live, and Ray aborted it a minute later with nothing of Titan's in its log. Now
    the job is handed back (LOST, no retry spent) and the worker stops, saying why."""
    with ray_head() as address:
        with pytest.MonkeyPatch.context() as mp:
            for key in list(os.environ):
                if key.startswith("TITAN_") and key != "TITAN_TEST_POSTGRES_URL":
                    mp.delenv(key)
            mp.setenv("TITAN_CONFIG_DIR", str(tmp_path / "user-config"))
            c = Cluster(tmp_path, env=RAY_ENV)
        try:
            c.start_master()
            worker = c.add_worker(capabilities="GENERAL", slots=1, name="ray-gone",
                                  extra=["--executor", "ray", "--ray-address", address])
            client = c.client()
            script = c.script("long.py", """
                import os, time
                print("running", flush=True)
                parent = os.getppid()
                while os.getppid() == parent:  # its own session: it ends with its Ray worker
                    time.sleep(0.2)
            """)
            client.submit_dag("gone", [TitanJob("g", script, retries=0)])
            _until(lambda: "running" in client.fetch_logs("gone/g"), WAIT)
            kill_head(address)
            assert worker.wait(timeout=WAIT) == 1
            job = client.get_job("gone/g")
            assert job["attempts"][0]["state"] == "LOST", job["attempts"]
            # A second attempt leased before the worker stopped is handed back unstarted:
            # every attempt given back, none spent (max_attempts was 1).
            assert all(a["state"] in ("LOST", "RELEASED") for a in job["attempts"]), job
            assert job["max_attempts"] == job["attempt"] + 1, job
            assert job["state"] in ("READY", "PENDING"), job
            said = (tmp_path / "worker-0.log").read_text()
            assert "the Ray cluster at" in said and "is gone for this worker" in said, said
            assert "worker stopping:" in said, said
        finally:
            c.stop()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root, to plant a folder as uid 65534")
def test_a_node_folder_another_user_made_first_is_not_used(cluster: Cluster) -> None:
    """On a Ray node, jobs' files live in ``/tmp/titan-ray-<uid>``, a name anyone can
    foresee: another local user who made it first (0777) had the node write every job's
    script into their folder and run it from there — theirs to replace with their own code,
    run as the node's user with the job's token. Such a folder is refused, naming it, and
    the node's own one is private (0700, as ``tmp`` in a worker's workspace)."""
    client = cluster.client()
    where = cluster.script("ray_where.py", "import os; print('CWD', os.getcwd())\n")
    client.submit_dag("ray-where", [TitanJob(job_id="w", filename=where)])
    assert client.wait("ray-where", timeout=WAIT)["status"] == "COMPLETED"
    line = next(x for x in client.fetch_logs("ray-where/w").splitlines() if x.startswith("CWD"))
    root = Path(line.split(" ", 1)[1]).parent
    assert root.name == f"titan-ray-{os.getuid()}"
    temp = root.parent
    temp.chmod(0o1777)  # as the real /tmp
    aside = temp / "titan-ray-aside"
    root.rename(aside)
    try:
        root.mkdir()
        root.chmod(0o777)
        os.chown(root, 65534, 65534)
        client.submit_dag("ray-planted", [TitanJob(job_id="p", filename=where, retries=0)])
        dag = client.wait("ray-planted", timeout=WAIT)
        log = client.fetch_logs("ray-planted/p")
        assert dag["status"] == "FAILED", log
        said = dag["jobs"][0]["error"] or log
        assert f"{root} is owned by uid 65534" in said, said
        assert list(root.iterdir()) == []  # nothing of the job's was written there
    finally:
        shutil.rmtree(root, ignore_errors=True)
        aside.rename(root)
    client.submit_dag("ray-again", [TitanJob(job_id="w", filename=where)])
    assert client.wait("ray-again", timeout=WAIT)["status"] == "COMPLETED"
    assert stat.S_IMODE(root.stat().st_mode) == 0o700  # tightened, as made by an older one
