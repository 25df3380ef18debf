"""What the `titan` command says of a bad command line: the option named, in its own words,
before any call to a master."""

from __future__ import annotations

import pytest

from titan.cli.parser import main


@pytest.mark.parametrize(("argv", "said"), [
    # The master's words for its query parameter: "invalid request: the query parameter
    # 'limit' must be greater than or equal to 1 (got '0')".
    (["status", "--limit", "0"], "argument --limit: must be a whole number from 1 to 1000, "
                                 "got '0'"),
    (["status", "--limit", "1001"], "argument --limit: must be a whole number from 1 to 1000, "
                                    "got '1001'"),
    (["logs", "j", "--attempt", "0"], "argument --attempt: must be a whole number 1 or more, "
                                      "got '0'"),
    # "grace must be ...": a field of the request body.
    (["stop", "svc", "--grace", "-1"], "argument --grace: must be more than 0 and at most "
                                       "3600 seconds (for a kill at once, cancel), got '-1'"),
    (["stop", "svc", "--grace", "nan"], "argument --grace: must be more than 0 and at most "
                                        "3600 seconds (for a kill at once, cancel), got 'nan'"),
    (["files", "list", "--limit", "0"], "argument --limit: must be a whole number from 1 to "
                                        "10000, got '0'"),
    (["runs", "list", "--limit", "x"], "argument --limit: must be a whole number from 1 to "
                                       "1000, got 'x'"),
])
def test_an_option_out_of_range_is_named_before_any_call(
        argv: list[str], said: str, capsys: pytest.CaptureFixture[str]) -> None:
    # --port 9 is nothing listening: a call would fail, not the usage error expected.
    assert main([*argv, "--port", "9"]) == 2
    err = capsys.readouterr().err
    assert err.splitlines()[-1].endswith(f"error: {said}"), err


@pytest.mark.parametrize(("argv", "said"), [
    (["stauts"], "argument COMMAND: invalid choice: 'stauts'; did you mean 'status'? (choose "
                 "from 'up', "),
    (["store", "gte", "k"], "argument ACTION: invalid choice: 'gte'; did you mean 'get'? "
                            "(choose from 'get', 'put', 'set', 'delete', 'rm', 'del', 'keys', "
                            "'ls', 'list')"),
    (["store", "st", "k", "v"], "argument ACTION: invalid choice: 'st'; did you mean 'set'? "),
    (["token", "create", "--role", "admn"], "argument --role: invalid choice: 'admn'; did "
                                            "you mean 'admin'? (choose from 'worker', "),
    (["zzzz"], "argument COMMAND: invalid choice: 'zzzz' (choose from 'up', "),  # none near
])
def test_a_mistyped_choice_is_answered_with_the_nearest(
        argv: list[str], said: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"error: {said}" in err.splitlines()[-1], err


def test_submit_help_says_a_script_job_has_no_time_limit_unless_given(
        capsys: pytest.CaptureFixture[str]) -> None:
    # The master has no default job timeout (TitanJob's timeout=None, a pipeline's job without
    # `timeout:`): "default: the master's" sent readers looking for a setting that is not there.
    assert main(["submit", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    said = text.split("--job-timeout SECONDS ", 1)[1].split(" --priority", 1)[0]
    assert "no time limit" in said and "master" not in said, said
