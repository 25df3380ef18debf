"""llm_judge criteria: their checks, what they target, and scoring without a model."""

from __future__ import annotations

import pytest

from titan.errors import ValidationFailed
from titan.evals import criteria
from titan.evals.agent_config import parse_agent
from titan.evals.tasks import Task


def test_a_criterion_gets_its_defaults_and_each_bad_field_is_named() -> None:
    c = criteria.parse({"type": "llm_judge", "name": " tone ", "prompt": "Polite?"})
    assert c == {"type": "llm_judge", "name": "tone", "target": "final_response",
                 "prompt": "Polite?", "scale": "1-5", "pass_threshold": 4, "model": None}
    assert criteria.parse({"type": "llm_judge", "name": "t", "prompt": "p",
                           "scale": "0-10"})["pass_threshold"] == 6
    for bad, field in (({"name": "t", "prompt": "p"}, "type"),
                       ({"type": "llm_judge", "prompt": "p"}, "name"),
                       ({"type": "llm_judge", "name": "t", "prompt": "p", "target": "mood"},
                        "target"),
                       ({"type": "llm_judge", "name": "t", "prompt": "p", "scale": "pass_fail",
                         "pass_threshold": 1}, "pass_threshold"),
                       ({"type": "llm_judge", "name": "t", "prompt": "p",
                         "pass_threshold": 9}, "pass_threshold"),
                       ({"type": "llm_judge", "name": "t", "prompt": "p", "weight": 2},
                        "weight")):
        with pytest.raises(criteria.CriterionInvalid) as caught:
            criteria.parse(bad)
        assert caught.value.field == field, bad


def test_criteria_are_checked_where_they_are_declared() -> None:
    agent = {"name": "a", "kind": "http", "url": "http://127.0.0.1:1/"}
    with pytest.raises(ValidationFailed, match=r"agent.criteria: criterion 'x' is declared "
                                               r"twice"):
        parse_agent(dict(agent, criteria=[{"type": "llm_judge", "name": "x", "prompt": "p"}] * 2))
    with pytest.raises(ValidationFailed, match=r"scorers\[0\].target: must be one of"):
        Task.from_dict({"user_instruction": "u", "scorers": [
            {"type": "llm_judge", "name": "x", "prompt": "p", "target": "nope"}]})
    task = Task.from_dict({"user_instruction": "u", "scorers": [
        {"type": "llm_judge", "name": "x", "prompt": "p"}]})
    assert task.scorers[0]["scale"] == "1-5"  # a ledger task may carry one: no workspace needed


def test_targets_read_the_runs_fields_and_the_agents_response() -> None:
    run = {"final_response": "Done.", "messages": [], "diff": "",
           "raw_response": '{"final_response": "Done.", "meta": {"lang": "en"}}'}
    assert criteria.target_value("final_response", run) == "Done."
    assert criteria.target_value("messages", run) is None  # empty: nothing to score
    assert criteria.target_value("diff", run) is None
    assert criteria.target_value("response.meta.lang", run) == "en"
    assert criteria.target_value("response.missing", run) is None
    assert criteria.target_value("response.x", {"raw_response": "not json"}) is None


def test_a_criterion_without_its_field_is_not_scored_and_costs_nothing() -> None:
    c = criteria.parse({"type": "llm_judge", "name": "review", "prompt": "p", "target": "diff"})
    out = criteria.score(c, {"user_instruction": "u"}, {"final_response": "x"})
    assert out["verdict"] == "N/A" and out["error"] == "the run has no diff to score"
    assert out["cost_usd"] == 0.0 and out["score"] is None
