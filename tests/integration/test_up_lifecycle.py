"""`titan up` started, refused and stopped the way its users drive it: a second one in the same
directory, a port another program holds, Ctrl-C and SIGTERM with jobs running. Real `titan up`
subprocesses on free ports, with a private user config (tests/conftest.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.integration.harness import Cluster
from tests.integration.processes import children, wait_dead
from tests.integration.test_cancel import DOUBLE_FORK
from titan_sdk import TitanJob

MakeCluster = Callable[..., Cluster]

if sys.platform != "linux":  # pragma: no cover - /proc, subreapers and process groups
    pytestmark = pytest.mark.skip("process checks need Linux")

#: Starts a process outside its own group and session (setsid, a double fork; its pid to
#: argv[1]), says so in the store under argv[2], and runs on.
RUNS_WITH_AN_ESCAPED_ONE = DOUBLE_FORK + """
while not os.path.exists(sys.argv[1]):
    time.sleep(0.01)
from titan import TitanClient
TitanClient().store_put(sys.argv[2], open(sys.argv[1]).read())
time.sleep(300)
"""


@pytest.mark.parametrize("stop", ["ctrl-c twice", "sigterm twice"])
def test_stopping_titan_up_ends_what_its_running_jobs_started_outside_their_group(
        make_cluster: MakeCluster, tmp_path: Path, stop: str) -> None:
    # A running job's process that had left its group (setsid, a double fork) outlived
    # `titan up`, reparented to init, after a Ctrl-C, Ctrl-C (a lifecycle QA pass): the zygote
    # killed the job as it left and exited before the job's leftovers were reparented to it.
    cluster = make_cluster().up(slots=1)
    client = cluster.client()
    script = cluster.script("escapes.py", RUNS_WITH_AN_ESCAPED_ONE)
    client.submit_job(TitanJob(job_id="escapes", filename=script,
                               args=[str(tmp_path / "escaped.pid"), "escaped/pid"]))
    escaped = int(client.store_wait("escaped/pid", timeout=60))
    assert cluster.master is not None
    sig = signal.SIGINT if stop == "ctrl-c twice" else signal.SIGTERM
    cluster.master.send_signal(sig)
    time.sleep(1)
    cluster.master.send_signal(sig)
    assert cluster.master.wait(timeout=30) == 0, cluster.log()
    assert wait_dead(escaped, timeout=10), f"process {escaped} outlived `titan up`"


@pytest.mark.parametrize("killed", ["titan up", "its worker"])
def test_a_kill_9_ends_what_running_jobs_started_outside_their_group(
        make_cluster: MakeCluster, tmp_path: Path, killed: str) -> None:
    # `titan up` (or its worker) killed outright: the zygote sees its worker go and kills the
    # running jobs, whose leftovers outside their group reached it only once the jobs had
    # died, after it had looked for them and left (a lifecycle QA pass).
    cluster = make_cluster().up(slots=1)
    client = cluster.client()
    script = cluster.script("escapes.py", RUNS_WITH_AN_ESCAPED_ONE)
    client.submit_job(TitanJob(job_id="escapes9", filename=script,
                               args=[str(tmp_path / "escaped.pid"), "escaped9/pid"]))
    escaped = int(client.store_wait("escaped9/pid", timeout=60))
    assert cluster.master is not None
    worker = children(cluster.master.pid)
    assert len(worker) == 1, worker
    if killed == "titan up":
        cluster.kill_master()
    else:
        os.kill(worker[0], signal.SIGKILL)
    assert wait_dead(escaped, timeout=15), f"process {escaped} outlived {killed}'s kill -9"


def test_a_job_running_when_titan_up_was_killed_runs_again_once_it_is_back(
        make_cluster: MakeCluster) -> None:
    # `titan up` killed (its worker and the job die with it) and started again: the new local
    # worker takes over the name "local", and with it the dead one's attempts. Before, the
    # job stayed RUNNING on the dead worker for the whole lease the restart gives it (15 s
    # by default; 120 s here, so nothing but the takeover can end it within the test).
    cluster = make_cluster(lease_seconds=120).up(slots=1)
    client = cluster.client()
    script = cluster.script("sleeps_once.py",
                            "import time\nfrom titan import TitanClient\n"
                            "TitanClient().store_put('sleeps_once/started', 'yes')\n"
                            "time.sleep(300)\n")
    client.submit_job(TitanJob(job_id="sleeps_once", filename=script))
    assert client.store_wait("sleeps_once/started", timeout=60) == "yes"
    first = client.get_job("sleeps_once")
    assert first["state"] == "RUNNING" and first["attempt"] == 1, first
    cluster.kill_master()
    cluster.up(slots=1)
    client = cluster.client()
    deadline = time.monotonic() + 60
    while (job := client.get_job("sleeps_once"))["attempt"] < 2:
        assert time.monotonic() < deadline, (job, cluster.log())
        time.sleep(0.1)
    (lost,) = [a for a in job["attempts"] if a["attempt"] == 1]
    assert lost["state"] == "LOST", lost
    assert f"worker {first['worker_id']} was replaced: a new worker registered under its " \
           "name 'local'" in lost["error"], lost
    assert job["worker_id"] != first["worker_id"] and job["max_attempts"] == 2, job
    assert "its 1 running attempt(s) run again now" in cluster.log()
    client.cancel("sleeps_once")


def test_a_second_titan_up_in_the_same_directory_names_the_running_one_and_leaves_it_be(
        make_cluster: MakeCluster) -> None:
    # It said only "another Titan master (pid N) is already running on .../titan.db": not
    # where that master answers, which is what the user came for (a lifecycle QA pass).
    cluster = make_cluster().up(slots=1)
    client = cluster.client()
    client.store_put("kept", "yes")
    tokens = {f: (cluster.data / f).read_text() for f in ("admin.token", "worker.token")}
    second = subprocess.run(
        [sys.executable, "-m", "titan", "up", "--port", str(free_port()), "--dashboard-port",
         str(free_port()), "--data-dir", str(cluster.data), "--slots", "1"],
        capture_output=True, text=True, timeout=60, cwd=cluster.root, env=cluster.env)
    assert second.returncode == 1, second.stdout + second.stderr
    assert "Traceback" not in second.stderr and "Press Ctrl-C" not in second.stdout
    assert cluster.master is not None
    said = second.stderr
    assert f"already running (pid {cluster.master.pid})" in said, said
    assert f"at {cluster.url}" in said and f"http://127.0.0.1:{cluster.dashboard_port}/" in said
    # The way to stop it: `titan down` on its data dir (it said `kill PID`, a pid to check).
    assert f"`titan down --data-dir {cluster.data}`" in said, said
    assert "another --data-dir" in said, said
    # The running one is untouched: its tokens, its database, its worker.
    assert {f: (cluster.data / f).read_text() for f in tokens} == tokens
    assert client.store_get("kept") == "yes"
    assert len(cluster.live_workers()) == 1
    assert cluster.master.poll() is None
