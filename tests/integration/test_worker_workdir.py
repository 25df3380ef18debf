"""A worker's jobs never run inside a master's data dir (docs/security.md, "What a job can
reach"): `titan worker --workdir` naming the data dir, or a folder in it, is refused at start
with one line that names the path and says why; the default workdir (the folder `titan up`
runs in, which holds ``./.titan``) and `titan up`'s own worker still start. And the reverse:
a master whose --data-dir lies in a worker's workspace, where every job could read it, does
not start."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.harness import Cluster


@pytest.fixture
def master(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path)
    try:
        yield c.start_master()
    finally:
        c.stop()


def _refused(c: Cluster, workdir: Path) -> str:
    """What `titan worker --workdir WORKDIR` said, once it exited (status 2: a setting)."""
    proc = c.add_worker(wait=False, extra=["--workdir", str(workdir)])
    assert proc.wait(timeout=60) == 2, c.log(f"worker-{len(c.workers) - 1}.log")
    return c.log(f"worker-{len(c.workers) - 1}.log")


@pytest.mark.parametrize("where", [".", "sub/deeper"])
def test_a_workdir_in_the_masters_data_dir_is_refused(master: Cluster, where: str) -> None:
    workdir = master.data / where
    workdir.mkdir(parents=True, exist_ok=True)
    said = _refused(master, workdir)
    lines = [x for x in said.splitlines() if x.strip()]
    assert len(lines) == 1, said  # one line, not a traceback
    assert str(master.data.resolve()) in said and "data dir" in said, said
    assert "--workdir" in said, said
    # Nothing was made there: no job ran or could have.
    assert not (master.data / "titan_workspace").exists()
    assert not (workdir / "titan_workspace").exists()
    assert master.live_workers() == []


def test_the_default_workdir_beside_the_data_dir_is_used(master: Cluster) -> None:
    """`titan worker` with no --workdir, in the folder that holds the data dir (./data here,
    as ./.titan under `titan up`): its workspace is a sibling of the data dir, not in it."""
    token = (master.data / "worker.token").read_text().strip()
    proc = master._spawn(["worker", "--master", master.url, "--slots", "1"],
                         "default-worker.log", env={**master.env, "TITAN_TOKEN": token})
    master.workers.append(proc)
    master.wait_workers(1)
    assert (master.root / "titan_workspace" / "shared").is_dir()


def test_titan_up_s_own_worker_starts(tmp_path: Path) -> None:
    c = Cluster(tmp_path)
    try:
        c.up(slots=1)  # waits for its worker to be live
        assert (tmp_path / "data-workspace" / "titan_workspace").is_dir()
    finally:
        c.stop()


def test_a_data_dir_in_a_workers_workspace_is_refused(tmp_path: Path) -> None:
    worker = Cluster(tmp_path / "w")
    try:
        worker.start_master()
        worker.add_worker(slots=1)
        shared = worker.root / "worker-0" / "titan_workspace" / "shared"
        assert shared.is_dir()
    finally:
        worker.stop()
    inside = Cluster(tmp_path / "m")
    inside.data = shared / ".titan"
    proc = inside._spawn(["master", *inside._master_args()], "master.log")
    try:
        assert proc.wait(timeout=60) != 0, inside.log()
    finally:
        inside.master = proc
        inside.stop()
    said = inside.log()
    assert str(shared.resolve()) in said and "workspace" in said, said
    assert not (shared / ".titan" / "admin.token").exists()
