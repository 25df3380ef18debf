"""The judge's calibration set loads, is balanced, covers what the issue names; the report
and the command say what they promise. (The agreement figure is measured, not asserted.)"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from titan.cli import main
from titan.errors import ValidationFailed
from titan.evals.calibration import CATEGORIES, calibrate, load_set


def test_the_shipped_set_is_large_balanced_and_covers_every_category() -> None:
    cases = load_set()
    assert len(cases) >= 40
    labels = Counter(c.label for c in cases)
    assert 0.4 <= labels["PASS"] / len(cases) <= 0.6, labels
    assert {c.category for c in cases} == set(CATEGORIES)
    # Categories with both right and wrong runs carry both labels.
    for category in ("said_badly", "refusal", "behaviour_rules", "tool_failure"):
        assert {c.label for c in cases if c.category == category} == {"PASS", "FAIL"}
    assert len({c.id for c in cases}) == len(cases)
    assert len({c.task["user_instruction"] for c in cases}) == len(cases)
    by_id = {c.id: c for c in cases}
    # The failure modes the issue names, each in the set.
    assert by_id["retail-boots-stock-contradiction"].run["tool_calls"][0]["response"][
        "stock"] == 0  # a tool says stock 0, the agent says 40 available
    assert by_id["retail-cancel-refused-claimed"].label == "FAIL"  # a refused cancel, claimed
    assert by_id["sup-plan-terse"].label == "PASS"  # terse and correct
    assert by_id["air-meal-voucher-rule-followed"].label == "PASS"  # rule-abiding


def test_a_case_is_a_task_and_a_recorded_run() -> None:
    case = {c.id: c for c in load_set()}["retail-cancel-processing"]
    assert case.task["expected_effects"] == [
        {"op": "update", "type": "order", "id": "A-1042", "attrs": {"status": "cancelled"}}]
    cancel = case.run["tool_calls"][1]
    # Seed 003's source name, as the proxy records a simulated call.
    assert (cancel["seq"], cancel["tool"], cancel["source"]) == (2, "cancel_order", "odyssey")
    # The ledger replayed the ops: the state after the call is recorded, as the proxy would.
    assert cancel["state"]["entities"]["order"]["A-1042"]["status"] == "cancelled"
    roles = [m["role"] for m in case.run["messages"]]
    assert roles == ["user", "assistant", "tool", "assistant", "tool", "assistant"]


@pytest.mark.parametrize(("case", "message"), [
    ({"label": "MAYBE"}, "label must be PASS or FAIL"),
    ({"category": "vibes"}, "category must be one of"),
    ({"calls": [{"tool": "x", "ops": [{"op": "update", "type": "order", "id": "ZZ",
                                      "attrs": {"a": 1}}]}]},
     "call 1: ledger operation refused: order 'ZZ' does not exist"),
    ({"task": {"user_instruction": "x", "expected_outcome": "maybe"}}, "expected_outcome"),
    ({"surprise": 1}, "unknown field 'surprise'"),
])
def test_a_bad_case_is_refused_with_its_name(tmp_path: Path, case: dict[str, object],
                                             message: str) -> None:
    good = {"id": "c1", "category": "refusal", "label": "PASS", "reason": "r",
            "task": {"user_instruction": "x"}, "calls": [], "final_response": "No."}
    (tmp_path / "set.yaml").write_text(json.dumps([good | case]))
    with pytest.raises(ValidationFailed, match=message) as info:
        load_set(tmp_path)
    assert "set.yaml case 1 ('c1')" in str(info.value)


def test_a_case_written_with_the_old_source_name_reads_as_odyssey(tmp_path: Path) -> None:
    """``source: simulated`` (Titan's name before seed 003's ``odyssey``) still loads, as
    ``odyssey``; the judge model is shown the word its calibration was measured with."""
    from titan.evals.judge_prompt import step_line

    case = {"id": "c1", "category": "refusal", "label": "PASS", "reason": "r",
            "task": {"user_instruction": "x"}, "final_response": "Done.",
            "calls": [{"tool": "a", "source": "simulated"}, {"tool": "b"},
                      {"tool": "c", "source": "injected"}]}
    (tmp_path / "set.yaml").write_text(json.dumps([case]))
    calls = load_set(tmp_path)[0].run["tool_calls"]
    assert [c["source"] for c in calls] == ["odyssey", "odyssey", "injected"]
    assert [step_line(n, c).rsplit("[", 1)[1] for n, c in enumerate(calls, 1)] == [
        "simulated]", "simulated]", "injected]"]


def test_the_report_on_the_code_checks(capsys: pytest.CaptureFixture[str]) -> None:
    cases = [c for c in load_set() if c.source == "finance.yaml"]
    report = calibrate(cases, mode="code")
    confusion = report.confusion()
    assert sum(sum(row.values()) for row in confusion.values()) == len(cases)
    assert report.decided_by_checks() == len(cases) and report.median_s < 1
    out = report.to_dict(worst=3)
    assert set(out) >= {"agreement", "confusion", "by_category", "by_file", "worst",
                        "median_s", "results", "decided_by_checks"}
    assert len(out["results"]) == len(cases) and len(out["worst"]) <= 3
    text = report.text()
    assert "agreement: " in text and "labelled PASS" in text and "by category:" in text


def test_the_command_runs_offline(capsys: pytest.CaptureFixture[str],
                                  tmp_path: Path) -> None:
    assert main(["eval", "calibrate", "--mode", "code", "--case", "sup-plan-terse",
                 "--case", "bank-balance-wrong", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["cases"], out["mode"], out["agreement"]) == (2, "code", 1.0)
    # On the shipped set the figure is development data, in every mode: it says so (it did
    # only for the default combined judge, so "--mode code" read 93 % with no word).
    assert "development data" in out["note"]
    assert main(["eval", "calibrate", "--mode", "code", "--category", "refusal"]) == 0
    text = capsys.readouterr().out
    assert "agreement: " in text and "refusal" in text and "note: the shipped set" in text
    assert main(["eval", "calibrate", "--case", "nope"]) == 1
    assert "no calibration case 'nope'" in capsys.readouterr().err
    for flag, value, said in (("--worst", "-1", "0 or more"), ("--min-agreement", "5", "0 to 1")):
        assert main(["eval", "calibrate", "--mode", "code", flag, value]) == 1
        assert said in capsys.readouterr().err
    # --min-agreement turns the figure into an exit code, for a CI gate: a case labelled
    # PASS whose answer states a figure no result holds disagrees with the checks.
    mislabelled = {"id": "c1", "category": "wrong_answer", "label": "PASS", "reason": "r",
                   "task": {"user_instruction": "How many open tickets do I have?"},
                   "calls": [{"tool": "list_tickets", "response": {"open": 3}}],
                   "final_response": "You have 7 open tickets."}
    (tmp_path / "set.yaml").write_text(json.dumps([mislabelled]))
    assert main(["eval", "calibrate", "--mode", "code", "--set", str(tmp_path / "set.yaml"),
                 "--min-agreement", "0.5"]) == 1


def test_a_set_that_cannot_be_read_is_one_line_naming_the_file(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    # Bytes that are not UTF-8 printed a UnicodeDecodeError traceback (a QA pass).
    (tmp_path / "x.yaml").write_bytes(b"\xff\xfe garbage")
    (tmp_path / "y.yaml").write_text("- id: [unclosed\n")
    for name, said in (("x.yaml", "cannot read the calibration file: 'utf-8' codec can't "
                                  "decode byte 0xff"),
                       ("y.yaml", "not valid YAML: ")):
        path = tmp_path / name
        assert main(["eval", "calibrate", "--mode", "code", "--set", str(path)]) == 1
        err = capsys.readouterr().err
        assert f"{path}: {said}" in err and "Traceback" not in err, err
        assert len(err.strip().splitlines()) == 1, err



def test_a_judge_model_that_cannot_be_called_stops_the_command_before_the_set(
        capsys: pytest.CaptureFixture[str], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # It marked every case NOT_APPLICABLE ("LLM Provider NOT provided"), reported agreement
    # 0.0 and exited 0: on 300 cases, a long run of nothing (a QA pass).
    from titan import llm
    from titan.errors import ProviderError

    monkeypatch.chdir(tmp_path)  # no project .env with keys in it
    for key in ("GEMINI_API_KEY", "GOOGLE_API_KEY", "OPENAI_API_KEY"):
        monkeypatch.delenv(key, raising=False)
    for model, said in (("nope/none", "nope/none: no provider serves this model"),
                        ("gemini/gemini-2.0-flash", "gemini/gemini-2.0-flash: no API key: "
                                                    "set GEMINI_API_KEY")):
        for mode in ("model", "combined"):
            assert main(["eval", "calibrate", "--mode", mode, "--judge-model", model]) == 1
            captured = capsys.readouterr()
            assert said in captured.err and "[1/" not in captured.err, captured.err
            assert captured.out == ""
    monkeypatch.setenv("TITAN_EVAL_JUDGE_MODEL", "nope/none")
    assert main(["eval", "calibrate", "--case", "sup-plan-terse"]) == 1
    assert "no provider serves this model" in capsys.readouterr().err
    # The code checks need no model; an OpenAI-compatible server of your own needs no key.
    assert main(["eval", "calibrate", "--mode", "code", "--case", "sup-plan-terse"]) == 0
    monkeypatch.setenv("TITAN_LLM_API_BASE", "http://127.0.0.1:9/v1")
    llm.usable("openai/any-model")
    with pytest.raises(ProviderError, match="no provider serves"):
        llm.usable("nope/none")
    llm.usable("local")  # not a hosted model: nothing to check here
