"""A download whose target cannot be written — a folder where the file would go, a full disk
(``/dev/full``), a read-only folder — is one line naming that target: a
``LocalFileError`` from the SDK, ``error: ...`` from ``titan files get``; never a traceback, a
bare ``OSError``, or the name of the temp file written beside it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.harness import Cluster, shared_cluster
from tests.integration.test_cli import titan
from titan.errors import LocalFileError

cluster = shared_cluster(slots=1)


@pytest.fixture(scope="module")
def published(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> str:
    src = tmp_path_factory.mktemp("src") / "data.bin"
    src.write_bytes(b"payload " * 1000)
    cluster.client().publish_artifact("targets:data", src)
    return "data.bin"


def test_a_folder_where_the_download_goes_is_named(cluster: Cluster, tmp_path: Path,
                                                   published: str,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / published).mkdir()
    monkeypatch.chdir(tmp_path)
    client = cluster.client()
    for download in (lambda: client.fetch_artifact(published),
                     lambda: client.get_artifact("targets:data")):
        with pytest.raises(LocalFileError) as info:
            download()
        assert str(info.value) == (f"cannot write the download to {tmp_path / published}: it "
                                   "is a folder (name a file, or a path inside it); nothing "
                                   "was written there")
        assert info.value.path == str(tmp_path / published)
    assert [p.name for p in tmp_path.iterdir()] == [published]  # no temp file left
    out = titan(cluster, "files", "get", published, check=False, cwd=tmp_path)
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert out.stderr.strip().splitlines() == [
        f"error: cannot write the download to {tmp_path / published}: it is a folder (name a "
        "file, or a path inside it); nothing was written there"]


def test_a_full_disk_is_named_not_a_traceback(cluster: Cluster, published: str) -> None:
    with pytest.raises(LocalFileError, match=r"^cannot write the download to /dev/full: No "
                                             r"space left on device"):
        cluster.client().get_artifact("targets:data", "/dev/full")
    out = titan(cluster, "files", "get", published, "-o", "/dev/full", check=False)
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert out.stderr.strip().splitlines() == [
        "error: cannot write the download to /dev/full: No space left on device; nothing "
        "was written there"]


def test_a_file_where_a_folder_should_be_is_named(cluster: Cluster, tmp_path: Path, published: str) -> None:
    # A parent that is a file: a permission refusal would not stop root, this stops anyone.
    (tmp_path / "afile").write_text("")
    target = tmp_path / "afile" / "out.bin"
    with pytest.raises(LocalFileError) as info:
        cluster.client().fetch_artifact(published, target)
    assert str(info.value) == (f"cannot write the download to {target}: {tmp_path / 'afile'} "
                               "is a file, not a folder; nothing was written there")


def test_a_dash_downloads_to_standard_output(cluster: Cluster, tmp_path: Path,
                                             published: str) -> None:
    # As `titan store put KEY -` reads stdin: `-o -` wrote a file literally named "-".
    env = dict(cluster.env, TITAN_HOST="127.0.0.1", TITAN_PORT=str(cluster.port),
               TITAN_TOKEN=cluster.admin_token)
    for extra in ([], ["--json"]):
        out = subprocess.run([sys.executable, "-m", "titan", "files", "get", published, "-o",
                              "-", *extra], env=env, cwd=tmp_path, capture_output=True,
                             timeout=60)
        assert out.returncode == 0, out.stderr
        assert out.stdout == b"payload " * 1000  # the bytes alone: no path, no JSON after
    assert list(tmp_path.iterdir()) == []
