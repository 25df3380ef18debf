"""What `titan up` and `titan master` say of a bad start, once and in the user's words: a
.env line it skips (said by `titan up` and again by its worker, "lines 1 are"), TITAN_RUN_AS
naming a user that does not exist (reported as "--run-as"), and a data dir that is a file
("cannot create the directory ...: File exists")."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import free_port


def test_titan_up_says_a_bad_env_line_once_and_names_titan_run_as(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("junk\n")
    (tmp_path / ".env").chmod(0o600)
    out = subprocess.run(
        [sys.executable, "-m", "titan", "up", "--port", str(free_port()), "--dashboard-port",
         "0", "--data-dir", str(tmp_path / "data"), "--slots", "1"],
        env={**os.environ, "TITAN_RUN_AS": "no-such-user-here"}, cwd=tmp_path,
        capture_output=True, text=True, timeout=60)
    said = out.stdout + out.stderr
    assert out.returncode == 1, said  # its worker could not start
    assert said.count(".env: line 1 is not KEY=value and was skipped") == 1, said
    assert "error: TITAN_RUN_AS: no such user 'no-such-user-here'" in said, said
    assert "--run-as" not in said


@pytest.mark.parametrize("command", ["up", "master"])
def test_a_data_dir_that_is_a_file_is_said_to_be_one(tmp_path: Path, command: str) -> None:
    (tmp_path / "afile").write_text("x")
    for given, said in ((tmp_path / "afile", "is a file"),
                        (tmp_path / "afile" / "data", f"is under {tmp_path / 'afile'}, a file")):
        out = subprocess.run(
            [sys.executable, "-m", "titan", command, "--port", str(free_port()),
             "--dashboard-port", "0", "--data-dir", str(given)],
            cwd=tmp_path, capture_output=True, text=True, timeout=60)
        assert out.returncode == 1 and out.stderr == (
            f"error: --data-dir {given} {said}, not a directory: name a directory (made if "
            "missing)\n"), out.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="runs `titan up` as another user")
def test_titan_up_in_a_directory_it_cannot_write_suggests_data_dir() -> None:
    # It said only "cannot create the directory .../.titan: Permission denied": not that
    # --data-dir names another place (a checkout read-only to this user, a mounted volume).
    import shutil
    import tempfile

    from tests.integration import nobody_python

    python = nobody_python.interpreter()
    if python is None:
        pytest.skip("no interpreter user nobody can run")
    root = Path(tempfile.mkdtemp(prefix="titan-ro-"))
    try:
        root.chmod(0o755)
        (root / "ro").mkdir(mode=0o555)
        (root / "home").mkdir()
        os.chown(root / "home", nobody_python.NOBODY, nobody_python.NOBODY)
        env = {"PATH": os.environ.get("PATH", ""), "HOME": str(root / "home"),
               "TITAN_CONFIG_DIR": str(root / "home")}
        out = subprocess.run(
            [python, "-m", "titan", "up", "--port", str(free_port()), "--dashboard-port", "0"],
            cwd=root / "ro", env=env, capture_output=True, text=True, timeout=60,
            user=nobody_python.NOBODY, group=nobody_python.NOBODY, extra_groups=[])
        assert out.returncode == 1, out.stdout + out.stderr
        assert out.stderr == (
            f"error: --data-dir {root / 'ro' / '.titan'} cannot be made: {root / 'ro'} is not "
            "writable by this user: run this where you can write, or name a data dir you "
            "can write with --data-dir DIR\n"), out.stderr
    finally:
        shutil.rmtree(root, ignore_errors=True)
