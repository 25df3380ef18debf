"""A download whose target cannot be written — a folder where the file would go, a full disk
(``/dev/full``), a read-only folder — is one line naming that target: a
``LocalFileError`` from the SDK, ``error: ...`` from ``titan files get``; never a traceback, a
bare ``OSError``, or the name of the temp file written beside it."""

from __future__ import annotations

import os
import stat
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


NOBODY = 65534


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root, to plant files as uid 65534")
def test_a_link_or_pipe_another_user_left_in_a_shared_folder_is_not_written_through(
        cluster: Cluster, tmp_path: Path, published: str) -> None:
    """The research agent saves its report at the seed's ``/tmp/research_<run id>_report.md``
    (the run id is on its command line, in ``ps``). Another local user who made that path a
    symbolic link first had the download replace the link's target (``~/.bashrc``, or any
    file of root's), and one who made it a named pipe read the report as it was written."""
    shared = tmp_path / "tmp"
    shared.mkdir()
    shared.chmod(0o1777)  # as /tmp is
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    link, pipe = shared / "research_R1_report.md", shared / "research_R2_report.md"
    os.symlink(victim, link)
    os.lchown(link, NOBODY, NOBODY)
    os.mkfifo(pipe, 0o666)
    os.chown(pipe, NOBODY, NOBODY)
    reader = os.open(pipe, os.O_RDONLY | os.O_NONBLOCK)  # the other user, waiting to read
    try:
        client = cluster.client()
        for target in (link, pipe):
            with pytest.raises(LocalFileError) as info:
                client.get_artifact("targets:data", target)
            assert str(info.value).startswith(f"cannot write the download to {target}: "), \
                info.value
            assert "another user (nobody, uid 65534)" in str(info.value), info.value
            out = titan(cluster, "files", "get", published, "-o", str(target), check=False)
            assert out.returncode == 1 and "another user (nobody" in out.stderr, out.stderr
        assert victim.read_text() == "precious\n"
        assert os.read(reader, 100) == b""  # nothing was written into the pipe
        assert os.readlink(link) == str(victim)
    finally:
        os.close(reader)
    # One's own link, and a link the folder's owner made, are followed as before.
    mine = shared / "mine.md"
    os.symlink(victim, mine)
    client.get_artifact("targets:data", mine)
    assert victim.read_bytes() == b"payload " * 1000


def test_a_download_is_as_private_as_the_users_umask_says(cluster: Cluster,
                                                           tmp_path: Path) -> None:
    """A download, an export and a report were made 0644 whatever the umask: a user whose
    umask is 077 (their files their own) had every artifact readable by all."""
    old = os.umask(0o077)
    try:
        saved = Path(cluster.client().get_artifact("targets:data", tmp_path / "a.bin"))
        out = titan(cluster, "files", "get", "data.bin", "-o", str(tmp_path / "b.bin"))
    finally:
        os.umask(old)
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "b.bin").stat().st_mode) == 0o600, out.stdout
