"""A pipeline's ``schedule:`` block: read with its lines, refused when wrong, ignored by a plain
submission; the shipped example reads as what its comments say."""

from __future__ import annotations

from pathlib import Path

import pytest

from titan.client.pipeline import load_pipeline, load_schedule
from titan.errors import PipelineError

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "schedule" / "pipeline.yaml"


def pipeline(tmp_path: Path, schedule: str) -> Path:
    (tmp_path / "a.py").write_text("print('a')\n")
    path = tmp_path / "nightly.yaml"
    path.write_text(f"name: nightly\n{schedule}jobs:\n  - id: a\n    file: a.py\n")
    return path


def test_the_block_is_read_and_a_submission_ignores_it(tmp_path: Path) -> None:
    path = pipeline(tmp_path, 'schedule:\n  cron: "*/5 * * * *"\n  timezone: Europe/Paris\n'
                              "  overlap: queue\n")
    assert load_schedule(path) == {"cron": "*/5 * * * *", "timezone": "Europe/Paris",
                                   "overlap": "queue"}
    name, jobs = load_pipeline(path)
    assert name == "nightly" and [j.job_id for j in jobs] == ["a"]


def test_no_block_is_none(tmp_path: Path) -> None:
    assert load_schedule(pipeline(tmp_path, "")) is None


@pytest.mark.parametrize(("block", "line", "message"), [
    ("schedule:\n  timezone: UTC\n", 3, "has no 'cron'"),
    ('schedule:\n  cron: "* * * * *"\n  crontab: x\n', 4, "unknown field 'crontab'"),
    ('schedule:\n  cron: "* * * * *"\n  catchup: sometimes\n', 4,
     "catchup must be one of skip, all, latest"),
    ("schedule:\n  cron: [1, 2]\n", 3, "must be a string"),
    ("schedule: '* * * * *'\n", 2, "must be a mapping"),
])
def test_mistakes_name_their_line(tmp_path: Path, block: str, line: int, message: str) -> None:
    with pytest.raises(PipelineError, match=message) as err:
        load_schedule(pipeline(tmp_path, block))
    assert err.value.details["line"] == line


@pytest.mark.parametrize("cron", ["*/5 * * * *", "@daily", "* * * * *"])
def test_an_unquoted_cron_expression_is_told_to_be_quoted(tmp_path: Path, cron: str) -> None:
    # `cron: */5 * * * *` was "invalid YAML: while scanning an alias did not find expected
    # alphabetic or numeric character": YAML's words for a '*' that begins an alias. It says
    # what to do now, at the line, for `titan schedule create` and `titan submit` alike.
    path = pipeline(tmp_path, f"schedule:\n  cron: {cron}\n")
    for load in (load_pipeline, load_schedule):
        with pytest.raises(PipelineError) as err:
            load(path)
        assert str(err.value).startswith(f"{path}:3: invalid YAML: "), err.value
        assert str(err.value).endswith('a cron expression that begins with "*" or "@" must '
                                       'be quoted in YAML: cron: "*/5 * * * *"'), err.value
    # Any other YAML mistake is said as before.
    path.write_text("name: nightly\njobs: [a\n")
    with pytest.raises(PipelineError) as other:
        load_pipeline(path)
    assert "must be quoted" not in str(other.value) and ":3: invalid YAML" in str(other.value)


def test_the_example_is_a_minutely_heartbeat_in_paris() -> None:
    assert load_schedule(EXAMPLE) == {"cron": "* * * * *", "timezone": "Europe/Paris",
                                      "catchup": "skip", "overlap": "skip"}
    name, jobs = load_pipeline(EXAMPLE)
    assert name == "heartbeat" and [j.job_id for j in jobs] == ["probe", "record"]


def test_the_masters_refusal_is_placed_at_the_line_that_said_it(tmp_path: Path) -> None:
    from titan.client.pipeline import schedule_error
    from titan.errors import ValidationFailed

    path = pipeline(tmp_path, 'schedule:\n  cron: "61 * * * *"\n  timezone: Mars/Base\n')
    refused = ValidationFailed("invalid cron expression '61 * * * *': bad minute",
                               details={"field": "cron"})
    placed = schedule_error(path, refused)
    assert isinstance(placed, PipelineError)
    assert str(placed) == f"{path}:3: schedule: invalid cron expression '61 * * * *': bad minute"
    assert placed.details == {"field": "cron", "file": str(path), "line": 3}
    zone = schedule_error(path, ValidationFailed("no such zone", details={"field": "timezone"}))
    assert str(zone).startswith(f"{path}:4: schedule: ")
    # Given as an argument, the value did not come from the file: the refusal stays as it is.
    assert schedule_error(path, refused, given=["cron"]) is refused
    other = ValidationFailed("too many jobs", details={"field": "jobs"})
    assert schedule_error(path, other) is other
