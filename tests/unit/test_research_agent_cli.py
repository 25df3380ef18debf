"""The research agent's command line: what it refuses before it stores anything on the
cluster (no master runs here: a refused argument never gets as far as connecting)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest

AGENT = Path(__file__).resolve().parents[2] / "examples" / "research_agent" / "research_agent.py"


def _agent() -> Any:
    spec = importlib.util.spec_from_file_location("research_agent", AGENT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(autouse=True)
def no_master(monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing listens here: an argument let through fails to connect, never reaching a
    master that happens to run on this machine."""
    monkeypatch.setenv("TITAN_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("TITAN_TOKEN", "tt_none")


def refused(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exc:
        _agent().main(argv)
    assert exc.value.code == 2
    return capsys.readouterr().err


@pytest.mark.parametrize("query", ["", "   ", "\n\t"])
def test_a_blank_question_is_refused_up_front(query: str,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    # "   " wrote a confident report on bread (the planner's worked example), and "" failed
    # at the planner with "no query stored" (a QA pass).
    err = refused([query, "--max-iter", "1"], capsys)
    assert "the research question is empty" in err


def test_a_question_on_several_lines_is_asked_as_one() -> None:
    # Its newlines went into the report's title verbatim, and "\n\n## Open Questions\n- ..."
    # made a section of its own (a QA pass).
    assert _agent()._query("How will 5G\n\n## Open Questions\n\n- change IoT?\t") == \
        "How will 5G ## Open Questions - change IoT?"


@pytest.mark.parametrize("seconds", ["nan", "inf", "-inf", "0.5", "0", "-5", "1e12", "soon"])
def test_a_timeout_that_is_no_number_of_seconds_is_refused_up_front(
        seconds: str, capsys: pytest.CaptureFixture[str]) -> None:
    # nan and inf crashed with a traceback; 0 and -5 were refused by the master only after
    # the question was stored (an orphan run); 0.5 was sent as 0 (a QA pass).
    err = refused(["q", f"--timeout={seconds}"], capsys)
    assert "--timeout" in err and repr(seconds) in err


def test_a_fractional_timeout_is_sent_as_it_is() -> None:
    assert _agent().job("planner", "research_planner.py", [], 1.5).timeout == 1.5
