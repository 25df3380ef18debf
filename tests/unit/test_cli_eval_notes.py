"""`titan eval run --wait` / `titan eval show` say what happened to the verdicts: the local-judge
note only when the local model actually judged, and why runs without a verdict have none."""

from __future__ import annotations

from typing import Any

import pytest

from titan.cli.evals import print_explorer


def view(*runs: dict[str, Any]) -> dict[str, Any]:
    rows = []
    for i, extra in enumerate(runs):
        run = {"status": "completed", "chip": None, "verdict": "PENDING", "failure_mode": None,
               "tool_calls": 1, "latency_s": 1.0, "cost": {"total_usd": 0.0},
               "judge_verdict": None, "judge_model": None, "judge_unscored": None, **extra}
        rows.append({"task_id": f"t{i}", "run": run})
    return {"evaluation": {"id": "ev", "agent": {"name": "bot"}}, "tasks": rows,
            "summary": {"pass": 0, "fail": 0, "pending": len(rows), "tasks": len(rows),
                        "cost_usd": 0.0}}


def test_the_local_judge_note_only_when_it_gave_verdicts(capsys: pytest.CaptureFixture[str]) -> None:
    print_explorer(view({"verdict": "PASS", "judge_verdict": "PASS", "judge_model": "local"}))
    assert "judged by the local 0.5B model" in capsys.readouterr().out

    print_explorer(view({"judge_verdict": "NOT_APPLICABLE", "judge_model": "local",
                         "judge_unscored": "the judge could not score this run: model missing"}))
    out = capsys.readouterr().out
    assert "judged by the local" not in out
    assert "note: 1 run(s) have no verdict: the judge could not score this run: model missing" \
        in out

    print_explorer(view({"verdict": "FAIL", "judge_verdict": "FAIL",
                         "judge_model": "gemini/gemini-2.0-flash"},
                        {"judge_verdict": "NOT_APPLICABLE", "judge_model": "gemini/x",
                         "judge_unscored": "The agent ended without a final response."},
                        {"judge_verdict": "NOT_APPLICABLE", "judge_unscored": "other"}))
    out = capsys.readouterr().out
    assert "judged by the local" not in out
    assert "2 run(s) have no verdict: The agent ended without a final response." in out
    assert "see `titan eval trace`" in out
