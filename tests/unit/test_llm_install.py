"""`titan llm install` in an environment without pip (a `uv venv`, `--without-pip`)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


def test_an_environment_without_pip_is_told_how_to_get_it(tmp_path: Path) -> None:
    """It failed with "No module named pip" and no word of what to do (a packaging QA pass).
    A real venv made without pip, with Titan's source and its dependencies on the path but
    pip's own folder left out."""
    venv = tmp_path / "nopip"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    if not python.exists():
        pytest.skip("no POSIX venv layout here")
    import titan
    src = Path(titan.__file__).resolve().parents[1]
    code = ("import sys, importlib.util\n"
            "sys.path[:0] = " + repr([str(src)]) + "\n"
            "assert importlib.util.find_spec('pip') is None\n"
            "from titan.llm import install\n"
            "from titan.errors import ModelUnavailable\n"
            "try:\n    install.install(skip_build=True)\n"
            "except ModelUnavailable as exc:\n    print(exc)\n")
    out = subprocess.run([str(python), "-S", "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert "has none: add it with" in out.stdout and "-m ensurepip" in out.stdout, \
        out.stdout + out.stderr
