"""The chaos suite's shared parts: its scale, and the table every scenario adds a row to.

`make test` runs each scenario short (a few faults, a few hundred operations); `make chaos`
runs them at full size (``TITAN_CHAOS=full``, the figures of issue 19) in one process and
prints the table at the end (also written to ``$TITAN_CHAOS_REPORT`` when set, as JSON lines).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

import pytest

from tests.integration.conftest import make_cluster  # noqa: F401  (real masters and workers)

FULL = os.environ.get("TITAN_CHAOS", "").lower() == "full"
COLUMNS = ("scenario", "faults", "attempted", "acknowledged", "lost", "duplicated",
           "recovery")
_ROWS: list[dict[str, Any]] = []


def scale(short: Any, full: Any) -> Any:
    """The short figure under `make test`, the full one under `make chaos`."""
    return full if FULL else short


Report = Callable[..., None]


@pytest.fixture
def chaos_report() -> Report:
    """Add a row: ``report(scenario, faults=, attempted=, acknowledged=, lost=, duplicated=,
    recovery=)``; lost and duplicated must be 0 (outside expired leases), asserted by the test."""
    def report(scenario: str, **figures: Any) -> None:
        row = {"scenario": scenario, **figures}
        _ROWS.append(row)
        print("chaos:", json.dumps(row))
        path = os.environ.get("TITAN_CHAOS_REPORT")
        if path:
            with open(path, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(row) + "\n")
    return report


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not _ROWS:
        return
    terminalreporter.write_sep("=", "chaos: what was attempted, acknowledged, lost")
    terminalreporter.write_line("| " + " | ".join(COLUMNS) + " |")
    terminalreporter.write_line("|" + "---|" * len(COLUMNS))
    for row in _ROWS:
        terminalreporter.write_line(
            "| " + " | ".join(str(row.get(c, "")) for c in COLUMNS) + " |")
