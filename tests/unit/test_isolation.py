"""What a sandboxed job may read and write (worker/isolation.py), decided once per worker."""

from __future__ import annotations

from pathlib import Path

import pytest

from titan import errors
from titan.worker.isolation import Isolation, sandbox_rules


def test_the_sandbox_reads_the_system_not_etc_nor_the_workers_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = tmp_path / "project" / ".titan"
    data.mkdir(parents=True)
    dataset = tmp_path / "datasets"
    dataset.mkdir()
    monkeypatch.chdir(tmp_path / "project")
    monkeypatch.syspath_prepend(str(tmp_path / "project"))  # as `python -m` puts the cwd first
    monkeypatch.setenv("TITAN_SANDBOX_READ", f"{dataset}, {data}")
    root = tmp_path / "ws" / "titan_workspace"
    read, write = sandbox_rules(root, [data.resolve()])
    assert Path("/usr") in read and Path("/etc") not in read
    assert Path("/etc/ssl") in read or not Path("/etc/ssl").exists()
    assert Path("/etc/passwd").resolve() in read
    # Where service environment files and index passwords live: never (QA read a worker token
    # from /etc/default/titan-worker).
    assert not {Path("/etc/default"), Path("/etc/pip.conf")} & set(read)
    assert (tmp_path / "project").resolve() not in read  # the worker's cwd, with the data dir
    assert dataset.resolve() in read and data.resolve() not in read  # extra, but not a secret
    assert write[:2] == [root / "shared", root / "tmp"]
    # Devices one by one, never /dev itself: /dev/pts holds other people's terminals.
    assert Path("/dev/null") in write and Path("/dev/urandom") in write
    assert Path("/dev") not in write and not any(p.is_relative_to("/dev/pts") for p in write)
    assert not any(str(p).startswith("/proc") for p in read + write)


def test_a_workspace_inside_a_protected_path_is_refused(tmp_path: Path) -> None:
    secret = tmp_path / ".titan"
    with pytest.raises(errors.ConfigError, match="overlaps"):
        sandbox_rules(secret / "titan_workspace", [secret])


def test_isolation_travels_to_the_zygote_as_json() -> None:
    iso = Isolation(read=("/usr",), write=("/tmp/w",), uid=65534, gid=65534, groups=(65534,),
                    env={"HOME": "/nonexistent"})
    back = Isolation.from_json(iso.to_json())
    assert (back.read, back.write, back.uid, back.gid, back.groups) == (
        ("/usr",), ("/tmp/w",), 65534, 65534, (65534,))
    assert back.active and back.sandboxed
    assert not Isolation().active and Isolation.from_json(Isolation().to_json()).read is None
