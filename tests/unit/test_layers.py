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


def _import_cycles() -> list[list[str]]:
    """Groups of titan modules that import each other, directly or around a loop (Tarjan's
    strongly connected components over grimp's graph; imports under TYPE_CHECKING aside,
    function-level imports included, since a lazy import still ties two modules)."""
    import grimp

    graph = grimp.build_graph("titan", exclude_type_checking_imports=True)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for imported in graph.find_modules_directly_imported_by(module):
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in on_stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            group: list[str] = []
            while not group or group[-1] != module:
                group.append(stack.pop())
                on_stack.discard(group[-1])
            if len(group) > 1:
                cycles.append(sorted(group))

    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    return cycles


def test_no_two_modules_need_each_other() -> None:
    """Two modules that import each other (even lazily, inside a function) are missing a
    third concept; the one exception allowed is none."""
    assert _import_cycles() == []
