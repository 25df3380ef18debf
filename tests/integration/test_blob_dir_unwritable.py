"""A master whose blob directory cannot take a write: its disk full, or mounted read-only.

While it serves, an upload (a job's script, a file, an artifact) is answered ``507
blob_store_unwritable`` naming the directory and what to do, and the client and CLI say so;
it was a 500 "a bug in the master" with a traceback in the master's log. Nothing half-written
is left, and once the disk is freed the same upload goes in. At start, a directory that cannot
take the master's mark stops it with a one-line ``error:``; an existing read-only one was a
Starlette traceback and exit status 3.

Each disk is a small tmpfs of the test's own (tests/small_disk.py: root only, else skipped).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests import small_disk
from tests.conftest import free_port
from tests.integration.harness import Cluster
from titan import TitanJob
from titan.errors import BlobStoreUnwritable


def _master(disk: Path, make_cluster: object) -> Cluster:
    return make_cluster(env={"TITAN_BLOB_DIR": str(disk / "blobs")}).start_master()  # type: ignore[operator]


def _put(cluster: Cluster, path: str, body: bytes) -> httpx.Response:
    with httpx.Client(base_url=f"{cluster.url}/api/v1", timeout=30,
                      headers={"Authorization": f"Bearer {cluster.admin_token}"}) as http:
        return http.put(path, content=body)


def _left_in(blobs: Path) -> list[str]:
    """The files under the blob directory (the master's mark, temporary files, blobs)."""
    return sorted(str(p.relative_to(blobs)) for p in blobs.rglob("*") if p.is_file())


def test_a_full_blob_disk_is_a_507_that_says_where_and_leaves_nothing(
        tmp_path: Path, make_cluster: object) -> None:
    with small_disk.mounted(tmp_path / "disk", "2m") as disk:
        cluster = _master(disk, make_cluster)
        blobs = disk / "blobs"
        before = _left_in(blobs)
        filler = small_disk.fill(disk, leave=256 * 1024)  # uploads start, then meet the end
        data = os.urandom(1024 * 1024)
        sha = hashlib.sha256(data).hexdigest()

        r = _put(cluster, f"/blobs/{sha}", data)
        assert r.status_code == 507, r.text
        error = r.json()["error"]
        assert error["code"] == "blob_store_unwritable"
        assert str(blobs) in error["message"] and "disk is full" in error["message"]
        assert "TITAN_BLOB_DIR" in error["message"]
        assert _put(cluster, "/files/big.bin", data).status_code == 507
        assert _left_in(blobs) == before  # no temporary file, nothing under the blob's name

        # The SDK raises it as what it is; `titan submit` prints it, not "a bug".
        script = Path(cluster.script("big.py", f"# {'x' * 400_000}\nprint('hi')\n"))
        with pytest.raises(BlobStoreUnwritable, match="disk is full") as refused:
            cluster.client().submit_job(TitanJob(job_id="big", filename=str(script)))
        assert refused.value.status == 507
        cli = subprocess.run(
            [sys.executable, "-m", "titan", "submit", str(script), "--master", cluster.url],
            env={**cluster.env, "TITAN_TOKEN": cluster.admin_token},
            capture_output=True, text=True, timeout=60)
        assert cli.returncode != 0
        assert f"error: the blob store cannot write to {blobs}: its disk is full" in cli.stderr
        assert "bug in the master" not in cli.stderr + cli.stdout
        assert _left_in(blobs) == before

        log = cluster.log()
        assert "its disk is full" in log and "Traceback" not in log
        assert "internal error" not in log

        filler.unlink()  # freed: the same upload goes in, whole
        assert _put(cluster, f"/blobs/{sha}", data).status_code == 201
        assert (blobs / sha[:2] / sha).read_bytes() == data


def test_a_blob_dir_turned_read_only_refuses_uploads_until_it_is_writable_again(
        tmp_path: Path, make_cluster: object) -> None:
    with small_disk.mounted(tmp_path / "disk", "2m") as disk:
        cluster = _master(disk, make_cluster)
        data = b"a file\n"
        small_disk.remount(disk, read_only=True)
        try:
            r = _put(cluster, "/files/note.txt", data)
        finally:
            small_disk.remount(disk, read_only=False)
        assert r.status_code == 507, r.text
        assert r.json()["error"]["code"] == "blob_store_unwritable"
        assert "is read-only" in r.json()["error"]["message"]
        assert "Traceback" not in cluster.log()
        assert _put(cluster, "/files/note.txt", data).status_code == 201


def _start_master(data: Path, disk: Path) -> subprocess.CompletedProcess[str]:
    """``titan master`` on a blob directory under ``disk``, which must refuse to start."""
    env = {**os.environ, "TITAN_BLOB_DIR": str(disk / "blobs")}
    return subprocess.run(
        [sys.executable, "-m", "titan", "master", "--port", str(free_port()),
         "--dashboard-port", str(free_port()), "--data-dir", str(data)],
        env=env, capture_output=True, text=True, timeout=60)


def _refused_in_one_line(done: subprocess.CompletedProcess[str], said: str) -> None:
    out = done.stdout + done.stderr
    assert done.returncode == 1, out
    assert "Traceback" not in out and "Application startup failed" not in out, out
    assert f"error: {said}" in done.stderr, out


def test_an_existing_read_only_blob_dir_stops_the_master_in_one_line(
        tmp_path: Path, make_cluster: object) -> None:
    with small_disk.mounted(tmp_path / "disk", "2m") as disk:
        said = f"the blob store cannot write to {disk / 'blobs'}: it is read-only"
        # A store as an earlier master left it, the database new: the mark is to be written.
        (disk / "blobs" / "tmp").mkdir(parents=True)
        small_disk.remount(disk, read_only=True)
        _refused_in_one_line(_start_master(tmp_path / "new-data", disk), said)
        # A master restarted on its own store, its mark there: nothing to write at start, and
        # still refused (it could store nothing).
        small_disk.remount(disk, read_only=False)
        cluster = _master(disk, make_cluster)
        cluster.stop()
        small_disk.remount(disk, read_only=True)
        _refused_in_one_line(_start_master(cluster.data, disk), said)


def test_a_full_blob_disk_at_first_start_stops_the_master_in_one_line(tmp_path: Path) -> None:
    # The directory takes a file (the check at open passes) but not the mark's bytes.
    with small_disk.mounted(tmp_path / "disk", "2m") as disk:
        (disk / "blobs" / "tmp").mkdir(parents=True)
        small_disk.fill(disk)
        done = _start_master(tmp_path / "data", disk)
        left = _left_in(disk / "blobs")
    _refused_in_one_line(done, f"the blob store cannot write to {disk / 'blobs'}: its disk is "
                               "full (No space left on device); free space there")
    assert left == []  # the mark's temporary file removed
