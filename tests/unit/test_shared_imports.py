"""The shared folder's finder, made ahead by the zygote (titan.worker.shared_imports)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from titan.worker import shared_imports


@pytest.fixture
def cache() -> Iterator[None]:
    saved = dict(sys.path_importer_cache)
    yield
    sys.path_importer_cache.clear()
    sys.path_importer_cache.update(saved)


def test_the_zygote_wraps_a_plain_scripts_folder_once_and_a_child_keeps_it(
        tmp_path: Path, cache: None) -> None:
    done: set[str] = set()
    script = str(tmp_path / "job.py")
    shared_imports.ahead({"script": script, "own_folder": False}, done)
    made = sys.path_importer_cache[str(tmp_path)]
    assert isinstance(made, shared_imports._Said)
    shared_imports.ahead({"script": str(tmp_path / "other.py")}, done)
    shared_imports.watch(str(tmp_path))  # what the child runs: the zygote's is kept
    assert sys.path_importer_cache[str(tmp_path)] is made
    assert done == {str(tmp_path)}


@pytest.mark.parametrize("request_", [{"script": "job.py"}, {"own_folder": True},
                                      {"script": None}])
def test_a_project_or_a_relative_script_is_left_to_its_child(
        tmp_path: Path, cache: None, request_: dict[str, object]) -> None:
    request = {"script": str(tmp_path / "job.py"), **request_}
    before = dict(sys.path_importer_cache)
    shared_imports.ahead(request, set())
    assert sys.path_importer_cache == before


def test_the_job_site_runs_the_sitecustomize_it_stands_in_front_of_and_leaves_the_path(
        tmp_path: Path) -> None:
    # A --run-as job's interpreters import it first (PYTHONPATH): a venv's or a distribution's
    # sitecustomize must still run, and the folder must not stay importable.
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "sitecustomize.py").write_text("print('THEIRS RAN')\n")
    site = shared_imports.site_dir()
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": os.pathsep.join([site, str(theirs)])}
    probe = "import sys, sitecustomize; print(sitecustomize.__file__); print(sys.path)"
    out = subprocess.run([sys.executable, "-c", probe], env=env, cwd=tmp_path,
                         capture_output=True, text=True, check=True).stdout.splitlines()
    assert out[0] == "THEIRS RAN", out
    assert out[1] == str(theirs / "sitecustomize.py"), out
    assert site not in out[2] and str(theirs) in out[2], out
