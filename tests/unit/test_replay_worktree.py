"""What `titan replay --code current` takes from the working tree beside a run's recorded files,
and what the master accepts as a replay's current files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from titan.client import worktree
from titan.errors import ValidationFailed
from titan.master.replays.service import MAX_CODE_FILES, parse_settings

SHA = "a" * 64


def tree(root: Path, files: dict[str, str | bytes]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text)


def test_the_working_tree_is_the_recorded_files_common_folder_unless_that_is_a_top_one(
        ) -> None:
    project = "/srv/proj"
    assert worktree.roots([f"{project}/agent/driver.py", f"{project}/stages/a.py"]) == [project]
    # A job script in /tmp and the driver in a project: each one's own folder, not all of /;
    # a top folder is searched without its subfolders, so one below it is searched too.
    assert worktree.roots([f"{project}/driver.py", "/tmp/a.py", f"{project}/sub/b.py",
                           "/tmp/x/y/c.py"]) == ["/srv/proj", "/tmp", "/tmp/x/y"]
    assert worktree.top("/") and worktree.top("/tmp") and worktree.top(os.path.expanduser("~"))
    assert not worktree.top(project)


def test_files_beside_the_recorded_ones_are_found_nearest_first_without_caches_or_venvs(
        tmp_path: Path) -> None:
    root = tmp_path / "proj"
    tree(root, {
        "driver.py": "", "stage.py": "",  # recorded
        "helper.py": "X = 1", "stage_b.sh": "echo b", "notes.txt": "not code",
        "pkg/__init__.py": "", "pkg/tools.py": "",
        "__pycache__/helper.cpython-311.py": "", ".git/hooks/x.py": "", ".hidden/y.py": "",
        "node_modules/z/z.py": "", "env/pyvenv.cfg": "home = /usr", "env/lib/site.py": "",
        "big.py": b"#" * (worktree.MAX_FILE_BYTES + 1),
    })
    recorded = [str(root / "driver.py"), str(root / "stage.py")]
    found = worktree.beside(recorded)
    assert found.roots == [str(root)] and not found.left_out and not found.cut
    assert [os.path.relpath(f, root) for f in found.files] == [
        "helper.py", "stage_b.sh", "pkg/__init__.py", "pkg/tools.py"]
    # Bounded: the nearest first, the rest counted.
    capped = worktree.beside(recorded, room=1)
    assert [os.path.relpath(f, root) for f in capped.files] == ["helper.py"]
    assert capped.left_out == 3


def test_a_symlink_out_of_the_working_tree_is_left_out(tmp_path: Path) -> None:
    """A cloned repository's ``creds.py -> ~/.aws/credentials.py`` must not be sent with a
    replay's code; a link inside the tree is as good as its file."""
    root = tmp_path / "proj"
    tree(root, {"driver.py": "", "helper.py": "X = 1"})
    tree(tmp_path, {"secret.py": "KEY = 'x'"})
    (root / "creds.py").symlink_to(tmp_path / "secret.py")
    (root / "up.py").symlink_to("../secret.py")
    (root / "alias.py").symlink_to("helper.py")
    found = worktree.beside([str(root / "driver.py")])
    assert [os.path.relpath(f, root) for f in found.files] == ["alias.py", "helper.py"]


def test_a_top_folder_gives_only_its_own_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                               ) -> None:
    tree(tmp_path, {"home/driver.py": "", "home/helper.py": "", "home/deep/other.py": ""})
    home = str(tmp_path / "home")
    monkeypatch.setenv("HOME", home)
    found = worktree.beside([f"{home}/driver.py"])
    assert [os.path.relpath(f, home) for f in found.files] == ["helper.py"]


def test_the_client_sends_no_more_files_than_the_master_takes() -> None:
    assert worktree.MAX_FILES == MAX_CODE_FILES


def test_a_replays_current_files_are_checked_as_recorded_code_is() -> None:
    assert parse_settings({"code": "current", "files": {"/p/new.py": SHA}})["files"] == {
        "/p/new.py": SHA}
    # Laid out below the replay's workspace by their paths: one climbing out is refused.
    for bad in ("relative.py", "/p/../../etc/cron.d/x.py"):
        with pytest.raises(ValidationFailed, match="must be an absolute path"):
            parse_settings({"code": "current", "files": {bad: SHA}})
    with pytest.raises(ValidationFailed, match=f"at most {MAX_CODE_FILES} files"):
        parse_settings({"code": "current",
                        "files": {f"/p/{i}.py": SHA for i in range(MAX_CODE_FILES + 1)}})


def test_a_script_or_module_the_replay_did_not_lay_out_is_said_with_how_to_include_it(
        ) -> None:
    from titan.errors import ScriptNotFound
    from titan.trace.replay_driver import _not_laid_out

    run = {"replay_of": "R1", "replay": {"code": "current"},
           "code": {"files": {"/p/agent/driver.py": SHA, "/p/agent/tools/__init__.py": SHA}}}
    base = Path("/ws/replay/R1-replay-1")
    said = _not_laid_out(ScriptNotFound("script 'stage_b.py' for job 'w1' not found"), run,
                         base)
    assert said is not None and said.startswith("that script is not part of the replayed code")
    assert "beside them under /p/agent" in said and "worker's Python" not in said
    missing = ModuleNotFoundError("No module named 'helper'", name="helper")
    run["replay"] = {"code": "recorded"}
    said = _not_laid_out(missing, run, base)
    assert said is not None and "module 'helper' is not part of the recorded code" in said
    assert "`titan replay R1 --code current`" in said and "worker's Python" in said
    # Laid out, the module (or package) failed on something else: nothing to add.
    for name in ("driver", "tools.sub"):
        assert _not_laid_out(ModuleNotFoundError(name=name), run, base) is None
    assert _not_laid_out(ValueError("x"), run, base) is None
