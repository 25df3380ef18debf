"""What `titan schedule list` and `schedule show` print."""

from __future__ import annotations

from typing import Any

import pytest

from titan.cli import schedules

WHY = "skipped: the run started by the previous tick (nightly#41) is still running (overlap: skip)"


def _schedule() -> dict[str, Any]:
    return {"name": "nightly", "cron": "@daily", "timezone": "UTC", "paused": False,
            "next_fire_at": 1_700_086_400.0, "dag_name": "nightly", "job_count": 1,
            "description": "At 00:00", "catchup": "skip", "overlap": "skip",
            "created_at": 1_699_000_000.0, "created_by": "admin", "next_fires": [],
            "fires": [  # newest first, as the API gives them
                {"tick": 1_700_000_000.0, "fired_at": 1_700_000_000.0, "manual": False,
                 "outcome": "skipped", "error": WHY, "dag": None},
                {"tick": 1_699_913_600.0, "fired_at": 1_699_913_600.0, "manual": False,
                 "outcome": "submitted", "error": None,
                 "dag": {"ref": "nightly#41", "status": "RUNNING"}},
            ]}


def test_list_shows_the_last_run_not_a_skipped_tick(capsys: pytest.CaptureFixture[str]) -> None:
    schedules._list([_schedule()])
    header, row = capsys.readouterr().out.splitlines()
    assert row.endswith("DAG-nightly#41 RUNNING"), row


def test_show_keeps_the_fires_table_in_line_with_a_long_reason(
        capsys: pytest.CaptureFixture[str]) -> None:
    schedules.show(_schedule())
    lines = capsys.readouterr().out.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("TICK"))
    header, skipped, submitted = lines[at:at + 3]
    for column in ("RUN", "STATUS"):
        start = header.index(column)
        assert skipped[start - 2:start] == "  " and submitted[start - 2:start] == "  ", column
    assert skipped[header.index("WHY"):] == WHY
    assert submitted[header.index("RUN"):].startswith("DAG-nightly#41  RUNNING")


def test_list_and_show_name_the_last_run_when_no_listed_fire_started_it(
        capsys: pytest.CaptureFixture[str]) -> None:
    # Ticks a long run made skip filled the latest fires: LAST RUN said "-" while it ran.
    s = _schedule()
    s["fires"] = [s["fires"][0]] * 5
    s["last_run"] = {"tick": 1_699_913_600.0, "fired_at": 1_699_913_600.0, "manual": False,
                     "outcome": "submitted", "error": None,
                     "dag": {"ref": "nightly#41", "status": "RUNNING"}}
    schedules._list([s])
    assert capsys.readouterr().out.splitlines()[1].endswith("DAG-nightly#41 RUNNING")
    schedules.show(s)
    assert "last run:    DAG-nightly#41 RUNNING" in capsys.readouterr().out.splitlines()
