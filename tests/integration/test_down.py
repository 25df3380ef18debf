"""`titan down` stops the `titan up` of a data dir that runs elsewhere (in the background,
another terminal), and never a process that is not that master: a real `titan up` on free
ports with a private user config (tests/conftest.py), and stale lock files that name a pid
gone or reused by an unrelated program."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.integration.harness import Cluster
from tests.integration.processes import BLOCKER, alive, wait_dead
from titan.cli.down import descendants
from titan_sdk import TitanJob

MakeCluster = Callable[..., Cluster]

if sys.platform != "linux":  # pragma: no cover - /proc
    pytestmark = pytest.mark.skip("titan down reads /proc")


def down(*args: str, cwd: Path, env: dict[str, str] | None = None,
         timeout: float = 90) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "titan", "down", *args], cwd=cwd,
                          env=env or dict(os.environ), capture_output=True, text=True,
                          timeout=timeout)


def test_titan_down_stops_a_running_titan_up_with_its_worker_and_zygotes(
        make_cluster: MakeCluster) -> None:
    # There was no command for it: users had to find `kill $(cat .titan/titan.db.lock)`.
    cluster = make_cluster().up(slots=1)
    client = cluster.client()
    ok = cluster.script("ok.py", "print('ok')\n")
    client.submit_job(TitanJob(job_id="warm", filename=ok), wait=True, timeout=60)
    assert cluster.master is not None
    started = descendants(cluster.master.pid)  # the worker and its zygotes
    assert any("worker" in p.argv for p in started), started
    assert len(started) >= 2, started

    # Found from the directory it was started in, by the data dir's relative path.
    done = down("--data-dir", "data", cwd=cluster.root, env=cluster.env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"stopping titan up (pid {cluster.master.pid})" in done.stdout
    assert "stopped: titan up" in done.stdout
    assert "titan zygote (pid " in done.stdout, done.stdout  # not its whole command line
    assert cluster.master.wait(timeout=10) == 0, cluster.log()
    for p in started:
        assert wait_dead(p.pid, timeout=5), f"{p.name} (pid {p.pid}) outlived titan down"

    # Stopped, its lock file stays behind naming a pid that has exited: said, nothing done.
    again = down("--data-dir", str(cluster.data), cwd=cluster.root)
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"names pid {cluster.master.pid}, which has exited" in again.stdout
    assert "no Titan master is running" in again.stdout


def test_titan_down_gives_up_after_its_timeout_and_force_kills(
        make_cluster: MakeCluster) -> None:
    cluster = make_cluster().up(slots=1)
    client = cluster.client()
    blocker = cluster.script("blocker.py", BLOCKER)
    client.submit_job(TitanJob(job_id="blocks", filename=blocker, args=["down/blocks"]))
    client.store_wait("down/blocks/started", timeout=60)
    assert cluster.master is not None
    tree = descendants(cluster.master.pid)

    # A running job drains for as long as it runs: past --timeout, said and exit 1.
    waited = down("--timeout", "2", "--data-dir", str(cluster.data), cwd=cluster.root)
    assert waited.returncode == 1, waited.stdout + waited.stderr
    assert "still running after 2 s: titan up" in waited.stdout
    assert "titan down --force" in waited.stdout
    assert cluster.master.poll() is None

    forced = down("--timeout", "1", "--force", "--data-dir", str(cluster.data),
                  cwd=cluster.root)
    assert forced.returncode == 0, forced.stdout + forced.stderr
    cluster.master.wait(timeout=10)
    for p in tree:
        assert wait_dead(p.pid, timeout=10), f"{p.name} (pid {p.pid}) outlived --force"


def test_nothing_running_is_said_and_succeeds(tmp_path: Path) -> None:
    # As `docker compose down` and `ray stop`: nothing to stop is no failure.
    done = down(cwd=tmp_path)  # no ./.titan at all
    assert done.returncode == 0, done.stderr
    assert "no Titan master is running on .titan: nothing to stop" in done.stdout


def test_a_lock_naming_a_dead_pid_is_reported(tmp_path: Path) -> None:
    gone = subprocess.Popen(["true"])
    gone.wait()
    (tmp_path / ".titan").mkdir()
    (tmp_path / ".titan" / "titan.db.lock").write_text(str(gone.pid))
    done = down(cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert f"names pid {gone.pid}, which has exited" in done.stdout
    assert "nothing to stop" in done.stdout


def test_a_lock_whose_pid_another_program_reused_never_kills_it(tmp_path: Path) -> None:
    # The pid of a `titan up` long gone, now some other program's: it must survive.
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        (tmp_path / ".titan").mkdir()
        (tmp_path / ".titan" / "titan.db.lock").write_text(f"{sleeper.pid}\n")
        done = down("--timeout", "1", "--force", cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        assert f"names pid {sleeper.pid}, now another program ('sleep 60'), not a Titan " \
               "master: left alone" in done.stdout
        time.sleep(0.3)
        assert sleeper.poll() is None and alive(sleeper.pid)
    finally:
        sleeper.kill()
        sleeper.wait()


@pytest.mark.skipif(os.geteuid() != 0, reason="starts a process as another user")
def test_another_users_master_is_refused(tmp_path: Path) -> None:
    # A `titan up` of user nobody on this data dir (its command line is all that tells, as
    # its files and /proc/<pid>/fd are not ours to read): refused, and left running.
    data = tmp_path / ".titan"
    data.mkdir()
    theirs = subprocess.Popen(  # `sh -c CODE titan up ...`: the command line of a titan up
        ["sh", "-c", "sleep 60; exit 0", "titan", "up", "--data-dir", str(data)],
        user="nobody", cwd="/")
    try:
        (data / "titan.db.lock").write_text(str(theirs.pid))
        done = down(cwd=tmp_path)
        assert done.returncode == 1, done.stdout
        assert f"the titan up on {data} (pid {theirs.pid}) belongs to user nobody: not " \
               "stopping another user's master" in done.stderr
        assert theirs.poll() is None
    finally:
        theirs.kill()
        theirs.wait()
