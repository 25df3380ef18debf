"""One rule for names and one spelling of times, wherever Titan checks or writes them."""

from __future__ import annotations

import os
import re

import pytest

import titan
from titan.client.job_fields import check_name as sdk_check
from titan.errors import ValidationFailed
from titan.formats import cost_text, iso, run_id_for, run_id_problem, tags_problem
from titan.master.runs.ingest import parse_run
from titan.master.scheduling.validation import check_name as master_check


@pytest.mark.parametrize("name", ["", "   ", "\t", "a/b", "a#b", "a\nb", "x" * 201, None, 3,
                                  " padded ", "plan ", "\u3000plan", "plan\u200b", "\ufeffplan",
                                  "pl\u2060an", "plan\u200e", "nb\u00a0sp", "thin\u2009space",
                                  "cafe\u0301", ".", "..", "..."])
def test_the_sdk_and_the_master_refuse_the_same_names(name: object) -> None:
    with pytest.raises(ValidationFailed):
        sdk_check(name, "job id", "job_id")
    with pytest.raises(ValidationFailed):
        master_check(name, "job_id")


@pytest.mark.parametrize("name", ["plan", "x" * 200, "café ☕", "two words"])
def test_and_accept_the_same_names(name: str) -> None:
    assert sdk_check(name, "job id", "job_id") == master_check(name, "job_id") == name


@pytest.mark.parametrize(("name", "said"), [
    # Each read as another name in every table, yet was a name of its own (a QA pass).
    ("nb\u00a0sp", "U+00A0 (NO-BREAK SPACE): it reads as a plain space"),
    ("cafe\u0301", "reads as 'café', another name: write it composed (NFC), 'café'"),
])
def test_a_name_that_reads_as_another_is_refused_saying_which(name: str, said: str) -> None:
    with pytest.raises(ValidationFailed, match=re.escape(said)):
        master_check(name, "DAG name")


def test_times_are_rfc3339_utc_with_z_everywhere() -> None:
    assert iso(1700000000.1234) == "2023-11-14T22:13:20.123Z"
    assert iso(None) == ""
    from titan.dashboard.render import env
    from titan.master.runs import export

    assert env.filters["iso"] is iso and export.iso is iso


@pytest.mark.parametrize("agent_id", ["ünïcødé-агент-🤖", "агент", "research bot/v2", "x" * 300,
                                      "...", "plain"])
def test_a_run_id_made_from_any_agent_id_is_one_the_master_takes(agent_id: str) -> None:
    # A run id was the agent id plus a tail: a non-ASCII agent id made one the master refused,
    # and the run and every action of it were lost while the script went on.
    run_id = run_id_for(agent_id, "1a2b3c4d")
    assert run_id_problem(run_id) is None and run_id.endswith("-1a2b3c4d")
    assert run_id_for("ünïcode agent", "1a2b") == "unicode-agent-1a2b"


@pytest.mark.parametrize(("tags", "said"), [
    (["a" * 201], "tag 0 has 201"), ([1], "tag 0 is a int"), ("prod", "a list of strings"),
    ({1: "x"}, "string keys")])
def test_tags_the_master_refuses_are_named_with_the_reason(tags: object, said: str) -> None:
    problem = tags_problem(tags)
    assert problem is not None and said in problem
    with pytest.raises(ValueError, match="^tags "):  # the SDK says it where the run is opened
        titan.trace.run("tagged", tags=tags)
    with pytest.raises(ValidationFailed, match=said):
        parse_run({"id": "r-1", "agent_id": "a", "tags": tags}, creating=True)
    assert tags_problem(["a" * 200, "prod"]) is None and tags_problem({"k": [1]}) is None


def test_a_run_id_or_agent_id_the_master_would_refuse_is_refused_at_once() -> None:
    with pytest.raises(ValueError, match="run_id must be"):
        titan.trace.run("a", run_id="has space")
    with pytest.raises(ValueError, match="longer than 200"):
        titan.trace.run("x" * 201)


@pytest.mark.parametrize("field", ["agent_id", "agent_version", "tags"])
def test_a_run_field_with_a_lone_surrogate_is_refused_at_once(field: str) -> None:
    # A tag built from a file name (os.fsdecode of bytes that are not UTF-8) could not be
    # sent: the run and every action of it were lost while the script went on (QA).
    bad = os.fsdecode(b"x-\xff")
    given = {"agent_id": "agent", field: {"file": bad} if field == "tags" else bad}
    with pytest.raises(ValueError, match=rf"^{field} holds '\\udcff', a lone surrogate"):
        titan.trace.run(**given)
    with pytest.raises(ValueError, match="agent_version must be"):
        titan.trace.run("a", agent_version="v" * 201)


@pytest.mark.parametrize(("cost", "text"), [
    (0.0, "$0.0000"), (0.0008, "$0.0008"), (0.0001, "$0.0001"), (0.5, "$0.5000"),
    (5.85e-06, "$0.0000058"), (1e-05, "$0.000010"), (2.4e-09, "$0.0000000024"),
    (1e-15, "$0.000000000000"), (None, "-")])
def test_a_cost_under_a_hundredth_of_a_cent_keeps_two_significant_digits(
        cost: float | None, text: str) -> None:
    # Two gpt-4o-mini calls of a few tokens cost $0.0000117 and read "$0.0000" on every page
    # and in `titan runs list`, as if free (a QA pass).
    assert cost_text(cost) == text


@pytest.mark.parametrize("run_id", ["export", "intercepts", "batch", "prune", "alive"])
def test_a_run_id_that_names_an_api_route_is_refused(run_id: str) -> None:
    # GET /api/v1/runs/export is the export: a run of that id could not be read back.
    problem = run_id_problem(run_id)
    assert problem is not None and "reserved" in problem and "choose another id" in problem
    with pytest.raises(ValueError, match="^run_id .*reserved"):
        titan.trace.run("agent", run_id=run_id)
    assert run_id_problem("export-1") is None and run_id_problem("my.export") is None
