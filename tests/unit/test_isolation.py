"""What a sandboxed job may read and write (worker/isolation.py), decided once per worker."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from titan import errors
from titan.worker.assignment import inherited_env
from titan.worker.isolation import (
    Isolation,
    ca_file_unreadable,
    job_ca_file,
    prepare,
    sandbox_rules,
    unprotected_between_jobs,
)


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


def test_a_sandbox_read_path_that_is_missing_or_secret_is_said_at_start(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    # A typo in TITAN_SANDBOX_READ was skipped without a word: jobs failed reading the data
    # the operator meant to allow, with nothing saying why.
    secret = tmp_path / ".titan"
    secret.mkdir()
    monkeypatch.setenv("TITAN_SANDBOX_READ", f"{tmp_path / 'datsets'},{secret}")
    with caplog.at_level("INFO", logger="titan"):
        read, _ = sandbox_rules(tmp_path / "ws", [secret.resolve()])
    said = [r for r in caplog.records if r.levelname == "WARNING"]
    assert any("TITAN_SANDBOX_READ names" in r.getMessage() and "datsets" in r.getMessage()
               and "does not exist" in r.getMessage() for r in said), said
    assert any("from TITAN_SANDBOX_READ" in r.getMessage() and ".titan" in r.getMessage()
               for r in said), said
    assert secret.resolve() not in read


def test_sandbox_read_without_a_sandbox_is_said(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    # An operator who set TITAN_SANDBOX_READ and forgot --sandbox believed jobs were confined.
    monkeypatch.setenv("TITAN_SANDBOX_READ", str(tmp_path))
    (tmp_path / "ws").mkdir()
    with caplog.at_level("INFO", logger="titan"):
        iso = prepare(tmp_path / "ws", sandbox=False)
    assert iso.read is None
    said = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("TITAN_SANDBOX_READ is set but this worker does not sandbox" in m
               and "--sandbox" in m for m in said), said
    caplog.clear()
    monkeypatch.setenv("TITAN_SANDBOX_READ", " ")
    prepare(tmp_path / "ws", sandbox=False)
    assert not [r for r in caplog.records if r.levelname == "WARNING"]


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
    # --run-as alone: each forked job still enters a domain of its own (the zygote is told)
    alone = Isolation.from_json(Isolation(uid=65534, gid=65534, separate=True).to_json())
    assert alone.separate and alone.in_domain and not alone.sandboxed


def test_the_sandbox_reads_the_ca_file_jobs_are_handed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    # Passed on to jobs, outside the rules: the SDK died in every sandboxed job on it.
    home = tmp_path / "home"
    home.mkdir()
    (home / "ca.pem").write_text("a certificate\n")
    secret = tmp_path / ".titan"
    secret.mkdir()
    (secret / "ca.pem").write_text("a certificate\n")
    root = tmp_path / "ws" / "titan_workspace"
    monkeypatch.delenv("TITAN_TLS_FINGERPRINT", raising=False)
    monkeypatch.chdir(home)
    monkeypatch.setenv("TITAN_CA_FILE", "ca.pem")  # relative to the worker's directory
    read, _ = sandbox_rules(root, [secret.resolve()])
    assert (home / "ca.pem").resolve() in read and home.resolve() not in read  # the file alone
    monkeypatch.setenv("TITAN_CA_FILE", str(secret / "ca.pem"))
    read, _ = sandbox_rules(root, [secret.resolve()])
    assert not any(p.is_relative_to(secret.resolve()) for p in read)
    assert f"TITAN_CA_FILE={(secret / 'ca.pem').resolve()} lies in" in caplog.text
    assert "TITAN_TLS_FINGERPRINT instead" in caplog.text
    # A pin wins over the file: jobs never open it, nothing to allow or say.
    caplog.clear()
    monkeypatch.setenv("TITAN_TLS_FINGERPRINT", "sha256:" + "ab" * 32)
    read, _ = sandbox_rules(root, [secret.resolve()])
    assert caplog.text == "" and job_ca_file() is None


def test_run_as_says_when_the_job_user_cannot_read_the_ca_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    private = tmp_path / "private"
    private.mkdir()
    private.chmod(0o700)
    (private / "ca.pem").write_text("a certificate\n")
    (private / "ca.pem").chmod(0o644)  # readable by all, in a directory nobody may enter
    monkeypatch.delenv("TITAN_TLS_FINGERPRINT", raising=False)
    monkeypatch.setenv("TITAN_CA_FILE", str(private / "ca.pem"))
    said = ca_file_unreadable("nobody", 65534, (65534,)) or ""
    assert f"nobody cannot read TITAN_CA_FILE={(private / 'ca.pem').resolve()}" in said, said
    assert "every job that uses the SDK will fail" in said
    assert ca_file_unreadable("owner", os.getuid(), (os.getgid(),)) is None
    monkeypatch.delenv("TITAN_CA_FILE")
    assert ca_file_unreadable("nobody", 65534, (65534,)) is None


def test_jobs_are_handed_the_ca_file_by_its_absolute_path(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Jobs start in the workspace: a relative path named another file there.
    monkeypatch.chdir(tmp_path)
    assert inherited_env({"TITAN_CA_FILE": "certs/ca.pem"})["TITAN_CA_FILE"] == str(
        tmp_path / "certs" / "ca.pem")


def test_a_preload_that_fails_is_named_and_the_zygote_goes_on(tmp_path: Path) -> None:
    # A module that called sys.exit() at import ended the zygote (only Exception was caught),
    # and a failed import read "cannot preload x: ..." with no word on what happens next.
    import subprocess
    import sys

    (tmp_path / "bye.py").write_text("raise SystemExit(3)\n")
    env = {**os.environ, "TITAN_ZYGOTE_PRELOAD": "no_such_module_xyz, bye",
           "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path])}
    done = subprocess.run([sys.executable, "-c",
                           "from titan.worker import zygote; zygote.preload(); print('ready')"],
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "ready", done.stderr
    assert "TITAN_ZYGOTE_PRELOAD: cannot import 'no_such_module_xyz' (ModuleNotFoundError" \
        in done.stderr
    assert "cannot import 'bye' (SystemExit: 3); jobs still run" in done.stderr


def test_run_as_says_what_it_cannot_keep_jobs_from_on_this_kernel() -> None:
    # No Landlock: tokens and signals both; ABI 1-5: signals (no scope yet); 6+: nothing.
    none = unprotected_between_jobs("titan-jobs", 0) or ""
    assert "no Landlock" in none and "/proc/<pid>/environ" in none and "kill" in none
    old = unprotected_between_jobs("titan-jobs", 5) or ""
    assert "ABI 5" in old and "signal (kill) any other job" in old and "6.12" in old
    assert "environ" not in old
    assert unprotected_between_jobs("titan-jobs", 6) is None
    assert unprotected_between_jobs("titan-jobs", 7) is None
