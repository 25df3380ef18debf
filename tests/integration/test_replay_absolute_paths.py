"""A job script the driver names by absolute path replays as recorded: the replay's DRIVER job
runs the copy it laid out, not the file on the worker's disk now, nor fails once that file has
moved. Recorded with the path as the driver wrote it (plain, with ``..``, through a symlink,
from ``~``), for Python and shell stages, with the recorded code and with ``--code current``."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.harness import Cluster, isolated_cluster

DRIVER = """
import sys
import titan
from titan import TitanClient, TitanJob

@titan.tool
def heard(text: str) -> str:
    return text

run_id, script = sys.argv[1], sys.argv[2]
client = TitanClient()
dag = client.submit_dag(f"{run_id}_S1", [TitanJob("w0", script, args=["a"])],
                        agent_run_id=run_id, wait=True, timeout=60)
print("STAGE SAID", heard(client.fetch_logs(f"{dag['ref']}/w0").strip()), flush=True)
"""

STAGES = {"py": 'import sys\nprint("stage {version}", sys.argv[1])\n',
          "sh": '#!/bin/sh\necho "stage {version} $1"\n'}


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("home")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, home: Path) -> Iterator[Cluster]:
    # HOME of its own, the recording driver's and the worker's alike, so `~/...` is a path
    # the test owns.
    c = isolated_cluster(tmp_path_factory.mktemp("abs-cluster"), env={"HOME": str(home)},
                         slots=3)
    try:
        yield c
    finally:
        c.stop()


def env_of(cluster: Cluster) -> dict[str, str]:
    return dict(cluster.env, TITAN_HOST="127.0.0.1", TITAN_PORT=str(cluster.port),
                TITAN_TOKEN=cluster.admin_token)


def drive(cluster: Cluster, driver: Path, run_id: str, script: str) -> None:
    done = subprocess.run([sys.executable, str(driver), run_id, script], env=env_of(cluster),
                          cwd=driver.parent, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "STAGE SAID stage v1 a" in done.stdout, done.stdout
    deadline = time.monotonic() + 20
    while cluster.api("GET", f"/runs/{run_id}")["status"] == "running":
        assert time.monotonic() < deadline, f"run {run_id} never ended"
        time.sleep(0.1)


def replay(cluster: Cluster, run_id: str, *args: str, cwd: Path) -> tuple[str, str, str]:
    """`titan replay`: its stdout and stderr, and what the replayed driver heard its stage
    say (from the DRIVER job's log)."""
    done = subprocess.run([sys.executable, "-m", "titan", "replay", run_id, *args],
                          env=env_of(cluster), cwd=cwd, capture_output=True, text=True,
                          timeout=240)
    replay_id = done.stdout.split()[1]
    log = cluster.client().fetch_logs(f"{replay_id}_DRIVER/driver")
    said = [line for line in log.splitlines() if line.startswith("STAGE SAID")]
    return done.stdout, done.stderr, said[0] if said else log


@pytest.mark.parametrize(("kind", "form"), [("py", "plain"), ("sh", "plain"),
                                            ("py", "dotdot"), ("sh", "symlink"),
                                            ("py", "home")])
def test_a_script_named_by_absolute_path_replays_as_recorded(
        cluster: Cluster, home: Path, tmp_path: Path, kind: str, form: str) -> None:
    # The replay ran the script on the worker's disk now (an edited prompt diverged in a
    # recorded-code replay), and failed with ScriptNotFound once it had moved, though the
    # run's code listed it and the replay had laid its recorded copy out (a QA pass).
    agent = (home if form == "home" else tmp_path) / f"agent-{kind}-{form}"
    (agent / "sub").mkdir(parents=True)
    stage = agent / f"stage.{kind}"
    stage.write_text(STAGES[kind].format(version="v1"))
    driver = agent / "driver.py"
    driver.write_text(textwrap.dedent(DRIVER).lstrip())
    named = {"plain": str(stage), "dotdot": str(agent / "sub" / ".." / stage.name),
             "home": f"~/{agent.name}/{stage.name}"}.get(form, "")
    if form == "symlink":
        (tmp_path / "link").symlink_to(agent)
        named = str(tmp_path / "link" / stage.name)
    run_id = f"ABS_{kind}_{form}_{tmp_path.name[-6:]}".replace("-", "_")
    drive(cluster, driver, run_id, named)
    recorded = cluster.api("GET", f"/runs/{run_id}")["code"]["files"]
    assert str(stage.resolve()) in recorded, recorded

    out, err, said = replay(cluster, run_id, cwd=tmp_path)
    assert said == "STAGE SAID stage v1 a" and "Divergences    0" in out, out + err

    # Edited since: the recorded code is the recorded version; the working tree, the edit.
    stage.write_text(STAGES[kind].format(version="v2"))
    out, err, said = replay(cluster, run_id, cwd=tmp_path)
    assert said == "STAGE SAID stage v1 a" and "Divergences    0" in out, out + err
    out, err, _ = replay(cluster, run_id, "--code", "current", "--mode", "lenient", cwd=agent)
    assert 'changed $.text: "stage v1 a" → "stage v2 a"' in out, out + err

    # Moved away: both replay its recorded version.
    stage.rename(tmp_path / f"moved.{kind}")
    out, err, said = replay(cluster, run_id, cwd=tmp_path)
    assert said == "STAGE SAID stage v1 a" and "Divergences    0" in out, out + err
    out, err, said = replay(cluster, run_id, "--code", "current", cwd=agent)
    assert f"stage.{kind} is not on this machine; its recorded version is used" in err, err
    assert said == "STAGE SAID stage v1 a" and "Divergences    0" in out, out + err
    assert os.path.exists(driver)
