"""YAML pipelines: a good file, and every kind of mistake reported with its file and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from titan.client import load_pipeline
from titan.errors import PipelineError

GOOD = """\
name: nightly
jobs:
  - id: extract
    file: etl/extract.py
    args: "--day 1"
    priority: 5
  - id: train
    file: ml/train.py
    depends_on: extract
    requirement: GPU
    retries: 2
    timeout: 3600
    env: {SEED: 7, MODE: fast}
  - id: report
    file: report.py
    args: ["--lr", 1.0e-3, --verbose]
    depends_on: [extract, train]
    affinity: true
    delay: 1.5
    type: run_payload
    runner: subprocess
"""


def write(tmp_path: Path, text: str, name: str = "pipe.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def error(tmp_path: Path, text: str) -> PipelineError:
    path = write(tmp_path, text)
    with pytest.raises(PipelineError) as info:
        load_pipeline(path)
    assert str(path) in str(info.value)
    return info.value


def test_good_pipeline(tmp_path: Path) -> None:
    name, jobs = load_pipeline(write(tmp_path, GOOD))
    assert name == "nightly"
    assert [j.job_id for j in jobs] == ["extract", "train", "report"]
    extract, train, report = jobs
    assert extract.args == ["--day", "1"]
    assert extract.priority == 5
    assert train.parents == ["extract"]
    assert (train.requirement, train.retries, train.timeout) == ("GPU", 2, 3600)
    assert train.env == {"SEED": "7", "MODE": "fast"}
    assert report.args == ["--lr", "1.0e-3", "--verbose"]
    assert report.parents == ["extract", "train"]
    assert (report.affinity, report.delay, report.job_type, report.runner) == (
        True, 1.5, "RUN_PAYLOAD", "subprocess")


def test_files_are_relative_to_the_yaml_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pipe_dir = tmp_path / "pipelines"
    (pipe_dir / "etl").mkdir(parents=True)
    (pipe_dir / "etl" / "extract.py").write_text("")
    path = write(pipe_dir, "jobs:\n  - id: e\n    file: etl/extract.py\n")
    monkeypatch.chdir(tmp_path)
    name, jobs = load_pipeline(path)
    assert name == "pipe"  # the file stem when no name is given
    assert jobs[0].script_path() == pipe_dir / "etl" / "extract.py"
    assert jobs[0].remote_filename() == "etl/extract.py"


def test_unknown_field_names_the_line_and_a_suggestion(tmp_path: Path) -> None:
    exc = error(tmp_path, "name: p\njobs:\n  - id: a\n    file: a.py\n    prioritty: 3\n")
    assert ":5:" in str(exc)
    assert "prioritty" in str(exc) and "did you mean 'priority'" in str(exc)
    assert exc.details["line"] == 5


def test_unknown_top_level_field(tmp_path: Path) -> None:
    exc = error(tmp_path, "name: p\nstages: []\njobs:\n  - {id: a, file: a.py}\n")
    assert ":2:" in str(exc) and "stages" in str(exc)


def test_bad_yaml_names_the_line(tmp_path: Path) -> None:
    exc = error(tmp_path, "name: p\njobs:\n  - id: a\n    file: [unclosed\n")
    assert "invalid YAML" in str(exc)
    assert ":5:" in str(exc) or ":4:" in str(exc)


def test_wrong_type_names_job_field_and_line(tmp_path: Path) -> None:
    exc = error(tmp_path, "jobs:\n  - id: a\n    file: a.py\n  - id: b\n    file: b.py\n"
                          "    priority: high\n")
    message = str(exc)
    assert ":6:" in message and "'b'" in message and "'priority'" in message
    assert exc.details == {"file": exc.details["file"], "line": 6, "job_id": "b",
                           "field": "priority"}


def test_a_value_whose_aliases_expand_past_the_limit_is_refused(tmp_path: Path) -> None:
    # ~300 bytes of nested anchors (a "billion laughs") made the DAG builder's error message
    # 40 MB; a few levels more took gigabytes of the master's memory, from a viewer.
    levels = ['&a0 ["xxxxxxxxxx"]'] + [
        f"&a{i} [{', '.join([f'*a{i - 1}'] * 4)}]" for i in range(1, 14)]
    bomb = "jobs:\n  - id: j\n    file: a.py\n    priority: [" + ", ".join(levels) + ", *a13]\n"
    assert len(bomb) < 700
    exc = error(tmp_path, bomb)
    assert "too large once its YAML aliases are expanded" in str(exc) and ":4:" in str(exc)
    assert len(str(exc)) < 500
    # A value of legitimate size still says what is wrong with it, quoted within reason.
    exc = error(tmp_path, "jobs:\n  - id: j\n    file: a.py\n    priority: [" +
                ", ".join(["xxxxxxxx"] * 5000) + "]\n")
    assert "priority must be an integer" in str(exc) and len(str(exc)) < 500


def test_wrong_types_for_lists(tmp_path: Path) -> None:
    exc = error(tmp_path, "jobs:\n  - id: a\n    file: a.py\n    depends_on: {x: 1}\n")
    assert ":4:" in str(exc) and "depends_on" in str(exc)
    exc = error(tmp_path, "jobs:\n  - id: a\n    file: a.py\n    env: [A]\n")
    assert ":4:" in str(exc) and "env" in str(exc)


def test_missing_fields(tmp_path: Path) -> None:
    assert "no 'file'" in str(error(tmp_path, "jobs:\n  - id: a\n"))
    assert "no 'id'" in str(error(tmp_path, "jobs:\n  - file: a.py\n"))
    assert "no 'jobs'" in str(error(tmp_path, "name: p\n"))
    assert "empty" in str(error(tmp_path, "jobs: []\n"))
    assert "empty" in str(error(tmp_path, ""))
    assert "mapping" in str(error(tmp_path, "- a\n- b\n"))
    gate = error(tmp_path, "jobs:\n  - id: g\n    type: APPROVAL\n    file: a.py\n")
    assert ":4:" in str(gate) and "runs no script" in str(gate)


def test_duplicate_ids_and_unknown_parents(tmp_path: Path) -> None:
    exc = error(tmp_path, "jobs:\n  - {id: a, file: a.py}\n  - {id: a, file: b.py}\n")
    assert ":3:" in str(exc) and "duplicate job id 'a'" in str(exc) and "line 2" in str(exc)
    exc = error(tmp_path, "jobs:\n  - id: a\n    file: a.py\n    depends_on: [ghost]\n")
    assert ":4:" in str(exc) and "'ghost'" in str(exc)


def test_duplicate_field_in_a_job(tmp_path: Path) -> None:
    exc = error(tmp_path, "jobs:\n  - id: a\n    file: a.py\n    file: b.py\n")
    assert ":4:" in str(exc) and "twice" in str(exc)


def test_bad_pipeline_name(tmp_path: Path) -> None:
    exc = error(tmp_path, "name: a/b\njobs:\n  - {id: a, file: a.py}\n")
    assert ":1:" in str(exc)


def test_missing_file_is_a_pipeline_error(tmp_path: Path) -> None:
    with pytest.raises(PipelineError, match="not found"):
        load_pipeline(tmp_path / "nope.yaml")


def test_numeric_ids_are_text_as_written(tmp_path: Path) -> None:
    _, jobs = load_pipeline(write(tmp_path, "jobs:\n  - {id: 1, file: a.py}\n"
                                            "  - {id: 2, file: a.py, depends_on: 1}\n"
                                            "  - {id: 2e3, file: a.py, depends_on: 1.0}\n"
                                            "  - {id: 1.0, file: a.py}\n"))
    assert [j.job_id for j in jobs] == ["1", "2", "2e3", "1.0"]
    assert jobs[1].parents == ["1"] and jobs[2].parents == ["1.0"]


def test_a_file_outside_the_pipelines_folder_is_refused(tmp_path: Path) -> None:
    """A pipeline from someone else's repository must not ship a file of yours by naming it."""
    secret = tmp_path / "secret.txt"
    secret.write_text("do not upload")
    folder = tmp_path / "repo"
    (folder / "sub").mkdir(parents=True)
    (folder / "link.py").symlink_to(secret)
    for name in ("../secret.txt", str(secret), "link.py", "sub/../../secret.txt"):
        path = write(folder, f"jobs:\n  - id: a\n    file: {name}\n")
        with pytest.raises(PipelineError) as info:
            load_pipeline(path)
        assert f"{path}:3" in str(info.value), name
        assert "outside the pipeline's folder" in str(info.value)
        assert info.value.details["field"] == "file"
        # Named by the person submitting, it may be used.
        _, jobs = load_pipeline(path, allow_files=[str(secret)])
        assert jobs[0].script_path().resolve() == secret


def test_files_inside_the_folder_need_no_permission(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "b.py").write_text("")
    path = write(tmp_path, "jobs:\n  - id: a\n    file: ./a/../a/b.py\n")
    assert load_pipeline(path)[1][0].script_path().resolve() == tmp_path / "a" / "b.py"


def test_a_pipeline_nested_past_any_parser_is_a_pipeline_error(tmp_path: Path) -> None:
    # A RecursionError traceback from the CLI, and a 500 from the dashboard's check (QA).
    (tmp_path / "a.py").write_text("print(1)\n")
    deep = tmp_path / "deep.yaml"
    deep.write_text("jobs:\n  - id: a\n    file: a.py\n    env: " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(PipelineError, match=r"deep\.yaml.*nest"):
        load_pipeline(deep)


def test_a_file_whose_name_cannot_name_the_dag_says_so_with_the_file(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text("print(1)\n")
    odd = tmp_path / "a#b.yaml"
    odd.write_text("jobs:\n  - id: a\n    file: a.py\n")
    with pytest.raises(PipelineError, match=r"a#b\.yaml: the DAG is named after the file"):
        load_pipeline(odd)
    odd.write_text("name: fine\njobs:\n  - id: a\n    file: a.py\n")
    assert load_pipeline(odd)[0] == "fine"


def test_a_file_named_in_decomposed_unicode_names_its_dag_composed(tmp_path: Path) -> None:
    # Names must be NFC ('cafe\u0301' reads as 'café'), but how a file's name is spelled is
    # the file system's choice, not the user's: its DAG was refused.
    (tmp_path / "a.py").write_text("print(1)\n")
    decomposed = tmp_path / "cafe\u0301.yaml"
    decomposed.write_text("jobs:\n  - id: a\n    file: a.py\n")
    assert load_pipeline(decomposed)[0] == "caf\u00e9"


@pytest.mark.parametrize("path", [None, "", 5])
def test_a_pipeline_that_is_no_path_is_a_pipeline_error(path: object) -> None:
    with pytest.raises(PipelineError, match="named by its file's path"):
        load_pipeline(path)  # type: ignore[arg-type]


MERGED = """\
x-defaults: &defaults
  retries: 2
  env: {MODE: fast}
  requirement: CPU
x-slow: &slow
  timeout: 3600
  retries: 5
jobs:
  - <<: *defaults
    id: extract
    file: extract.py
  - <<: [*slow, *defaults]
    id: train
    file: train.py
    requirement: GPU
    depends_on: extract
"""


def test_merge_keys_fill_in_fields_a_job_does_not_set(tmp_path: Path) -> None:
    # The anchors-and-defaults idiom of Compose and CI files: each job takes the shared
    # fields; its own win, and in a list of merges the first mapping wins (YAML 1.1).
    _, (extract, train) = load_pipeline(write(tmp_path, MERGED))
    assert (extract.retries, extract.env, extract.requirement) == (2, {"MODE": "fast"}, "CPU")
    assert (train.retries, train.timeout, train.requirement) == (5, 3600, "GPU")
    assert train.env == {"MODE": "fast"} and train.parents == ["extract"]


def test_an_error_in_a_merged_field_points_at_its_anchor(tmp_path: Path) -> None:
    exc = error(tmp_path, "x-base: &base\n  priority: high\njobs:\n"
                          "  - <<: *base\n    id: a\n    file: a.py\n")
    assert ":2:" in str(exc) and "'priority'" in str(exc) and exc.details["job_id"] == "a"


def test_a_merge_of_something_that_is_not_a_mapping_is_refused(tmp_path: Path) -> None:
    exc = error(tmp_path, "x-l: &l [1, 2]\njobs:\n  - <<: *l\n    id: a\n    file: a.py\n")
    assert "'<<' merges mappings only" in str(exc) and ":1:" in str(exc)
    exc = error(tmp_path, "jobs:\n  - &j\n    id: a\n    file: a.py\n    <<: *j\n")
    assert "merges a mapping into itself" in str(exc)


def test_a_duplicate_field_is_still_refused_beside_a_merge(tmp_path: Path) -> None:
    exc = error(tmp_path, "x-b: &b {retries: 1}\njobs:\n  - <<: *b\n    id: a\n"
                          "    file: a.py\n    id: b\n")
    assert "has the field 'id' twice" in str(exc)


def test_an_unknown_top_level_field_says_x_fields_are_left_unread(tmp_path: Path) -> None:
    exc = error(tmp_path, "defaults: {retries: 1}\njobs:\n  - {id: a, file: a.py}\n")
    assert "'defaults'" in str(exc) and "x-..." in str(exc)


@pytest.mark.parametrize(("entry", "said"), [
    ("{a: 1}", "pipe.yaml:5: job 'a': each entry of 'args' must be a string, got a mapping"),
    ("[x, y]", "pipe.yaml:5: job 'a': each entry of 'args' must be a string, got a list"),
    ("null", "pipe.yaml:5: job 'a': each entry of 'args' must be a string, got null"),
])
def test_an_entry_of_a_list_that_is_no_text_is_named_in_plain_words(
        tmp_path: Path, entry: str, said: str) -> None:
    # It read "each entry of job 'a': 'args' must be a string", the job inside the field.
    path = write(tmp_path, f"name: n\njobs:\n  - id: a\n    file: a.py\n    args: [ok, {entry}]\n")
    with pytest.raises(PipelineError) as got:
        load_pipeline(path)
    assert str(got.value) == str(path.parent / said), got.value
    path = write(tmp_path, "name: n\njobs:\n  - id: a\n    file: a.py\n"
                           f"    depends_on: [ok, {entry}]\n")
    with pytest.raises(PipelineError) as got:
        load_pipeline(path)
    assert str(got.value) == str(path.parent / said.replace("'args'", "'depends_on'")), got.value
