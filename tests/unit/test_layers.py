"""The layers of docs/architecture.md hold (pyproject.toml's import-linter contract): the
command and the app on top, then pages, the API, the master's services, and the leaves."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_no_module_imports_a_layer_above_its_own() -> None:
    lint = Path(sys.executable).with_name("lint-imports")
    done = subprocess.run([str(lint)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "0 broken" in done.stdout and " kept" in done.stdout


def test_titan_llm_loads_without_the_recording_layer() -> None:
    """titan.llm knows nothing of runs (titan.trace hooks itself in when it loads), so the
    CLI and the master import it without the recorder, and a process only records once it
    has a run to record into."""
    code = ("import sys, titan.llm; print([m for m in sys.modules if m.startswith('titan.trace')])")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, env={"PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
