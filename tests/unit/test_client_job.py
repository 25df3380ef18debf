"""TitanJob: validation, args splitting, script resolution, the payload sent to the master."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from titan.client import TitanJob
from titan.errors import ScriptNotFound, TitanError, ValidationFailed


def test_seed_style_construction() -> None:
    job = TitanJob(job_id="train_model", filename="ml/train.py", requirement="GPU",
                   parents=["extract_data"])
    assert job.id == job.job_id == "train_model"
    assert job.parents == ["extract_data"]
    assert (job.job_type, job.priority, job.port, job.runner) == ("RUN_PAYLOAD", 1, 0, "auto")


def test_positional_order_matches_original_sdk() -> None:
    job = TitanJob("j", "x.py", "RUN_PAYLOAD", ["--a"], ["p"], 8080, False, 7, 2, True, "GPU",
                   "ok?", 60)
    assert (job.args, job.parents, job.port, job.priority, job.delay, job.affinity,
            job.requirement, job.hitl_message, job.max_wait_seconds) == (
        ["--a"], ["p"], 8080, 7, 2, True, "GPU", "ok?", 60)


def test_args_string_is_split_like_a_shell() -> None:
    assert TitanJob("j", "x.py", args="--name 'a b' -n 3").args == ["--name", "a b", "-n", "3"]
    assert TitanJob("j", "x.py", args=["--n", 5, 1.5]).args == ["--n", "5", "1.5"]
    with pytest.raises(ValidationFailed, match="cannot be split"):
        TitanJob("j", "x.py", args="'unclosed")


@pytest.mark.parametrize("raw", [b"--x 1", bytearray(b"ab"), memoryview(b"ab")])
def test_args_as_bytes_are_refused_not_sent_as_byte_values(raw: Any) -> None:
    # bytes are a Sequence of ints: b"--x 1" was sent as ['45', '45', '120', '32', '49'].
    with pytest.raises(ValidationFailed, match=r"args must be a list of strings or one "
                       r"string, got (bytes|bytearray|memoryview) .*: decode it first") as bad:
        TitanJob("j", "x.py", args=raw)
    assert bad.value.details == {"field": "args", "job_id": "j"}


@pytest.mark.parametrize("kwargs, field", [
    ({"job_id": ""}, "job_id"),
    ({"job_id": "a/b"}, "job_id"),
    ({"job_id": "a#1"}, "job_id"),
    ({"job_id": "x" * 201}, "job_id"),
    ({"job_id": 5}, "job_id"),
    ({"filename": ""}, "filename"),
    ({"filename": None}, "filename"),
    ({"priority": "high"}, "priority"),
    ({"priority": True}, "priority"),
    ({"port": 70000}, "port"),
    ({"delay": -1}, "delay"),
    ({"affinity": "yes"}, "affinity"),
    ({"parents": "extract"}, "parents"),
    ({"parents": [1]}, "parents"),
    ({"requirement": ""}, "requirement"),
    ({"retries": -1}, "retries"),
    ({"timeout": 0}, "timeout"),
    ({"env": {"A": [1]}}, "env"),
    ({"env": ["A=1"]}, "env"),
    ({"runner": "docker"}, "runner"),
    ({"runner": "fork", "filename": "s.sh"}, "runner"),  # fork runs Python, not the shell
    ({"job_type": "run payload"}, "job_type"),
    ({"args": {"a": 1}}, "args"),
    ({"max_wait_seconds": 0}, "max_wait_seconds"),
    # NaN passes every comparison and JSON cannot carry it: refused here, not by the encoder.
    ({"delay": float("nan")}, "delay"),
    ({"delay": float("inf")}, "delay"),
    ({"timeout": float("nan")}, "timeout"),
    ({"max_wait_seconds": float("nan")}, "max_wait_seconds"),
])
def test_wrong_values_fail_early_naming_the_field(kwargs: dict[str, Any], field: str) -> None:
    base: dict[str, Any] = {"job_id": "j", "filename": "x.py"}
    base.update(kwargs)
    with pytest.raises(ValidationFailed) as info:
        TitanJob(**base)
    assert info.value.details["field"] == field
    assert isinstance(info.value, TitanError)


def test_job_type_is_upper_cased_and_env_numbers_become_strings() -> None:
    job = TitanJob("j", "x.py", job_type="service", env={"N": 3})
    assert job.job_type == "SERVICE"
    assert job.env == {"N": "3"}


def test_script_found_relative_to_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "etl").mkdir()
    (tmp_path / "etl" / "extract.py").write_text("print(1)\n")
    monkeypatch.chdir(tmp_path)
    job = TitanJob("extract", "etl/extract.py")
    assert job.script_path() == tmp_path / "etl" / "extract.py"
    assert job.remote_filename() == "etl/extract.py"


def test_script_found_next_to_the_running_program(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = tmp_path / "examples" / "agent"
    project.mkdir(parents=True)
    (project / "agent.py").write_text("")
    (project / "worker.py").write_text("")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.setattr(sys, "argv", [str(project / "agent.py")])
    assert TitanJob("w", "worker.py").script_path() == project / "worker.py"


def test_script_not_found_names_every_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    prog = tmp_path / "prog"
    prog.mkdir()
    (prog / "main.py").write_text("")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", [str(prog / "main.py")])
    with pytest.raises(ScriptNotFound) as info:
        TitanJob("j", "missing.py").script_path()
    message = str(info.value)
    assert str(tmp_path / "missing.py") in message
    assert str(prog / "missing.py") in message
    assert "'j'" in message


def test_absolute_script_is_sent_as_basename(tmp_path: Path) -> None:
    script = tmp_path / "abs.py"
    script.write_text("")
    job = TitanJob("j", str(script))
    assert job.script_path() == script
    assert job.remote_filename() == "abs.py"
    assert TitanJob("k", "../up/x.py").remote_filename() == "x.py"
    assert TitanJob("k", "./a//b.py").remote_filename() == "a/b.py"


def test_base_dir_is_the_only_place_looked_at(tmp_path: Path) -> None:
    (tmp_path / "s.py").write_text("")
    assert TitanJob("j", "s.py", base_dir=tmp_path).script_path() == tmp_path / "s.py"
    with pytest.raises(ScriptNotFound):
        TitanJob("j", "nope.py", base_dir=tmp_path).script_path()


def test_archive_job_payload_reads_nothing() -> None:
    job = TitanJob("j", "proj/main.py", is_archive=True)
    payload = job.to_payload(None)
    assert payload["filename"] == "proj/main.py"
    assert payload["script_sha256"] is None
    assert payload["is_archive"] is True


def test_payload_has_every_documented_field() -> None:
    payload = TitanJob("j", "x.py", retries=2, timeout=5, env={"A": "b"},
                       runner="subprocess").to_payload("abc")
    assert set(payload) == {
        "job_id", "filename", "script_sha256", "job_type", "args", "parents", "priority",
        "delay", "affinity", "requirement", "retries", "timeout", "env", "runner", "port",
        "is_archive", "hitl_message", "max_wait_seconds"}
    assert (payload["retries"], payload["timeout"], payload["runner"]) == (2, 5, "subprocess")


def test_a_folder_is_not_called_missing(tmp_path: Path) -> None:
    (tmp_path / "proj").mkdir()
    with pytest.raises(ScriptNotFound, match="is a folder, not a script"):
        TitanJob("a", "proj", base_dir=tmp_path).script_path()


def test_a_file_no_worker_can_run_is_refused_at_submit(tmp_path: Path) -> None:
    # A data file was submitted, and its job failed on the worker with "Exec format error".
    from titan.client.files import FileOps

    (tmp_path / "data.txt").write_text("1,2,3\n")
    (tmp_path / "tool").write_text("#!/bin/sh\necho hi\n")
    (tmp_path / "main").write_text("print('python, forked')\n")
    (tmp_path / "tool.bin").write_bytes(b"\xcf\xfa\xed\xfe rest of a Mach-O binary")
    (tmp_path / "app.jar").write_bytes(b"PK\x03\x04")
    (tmp_path / "app.jar").chmod(0o755)  # run through binfmt_misc: executable
    ops = FileOps.__new__(FileOps)
    ops._upload_missing = lambda contents, deadline=None: None  # type: ignore[attr-defined]
    with pytest.raises(ValidationFailed, match="'data.txt' is not something a worker can run"):
        ops._script_blobs([TitanJob("a", "data.txt", base_dir=tmp_path)])
    shas = ops._script_blobs([TitanJob("b", "tool", base_dir=tmp_path),
                              TitanJob("c", "main", base_dir=tmp_path, runner="fork"),
                              TitanJob("d", "tool.bin", base_dir=tmp_path),
                              TitanJob("e", "app.jar", base_dir=tmp_path)])
    assert set(shas) == {"b", "c", "d", "e"}


@pytest.mark.parametrize("field, value, said", [
    ("args", [object()], "args must be strings or numbers"),
    ("timeout", float("nan"), "timeout must be a number of seconds > 0, got nan"),
    ("parents", "zz", "parents must be a list of job ids"),
    ("job_id", "a/b", "job_id"),
    ("runner", "fork", "runner"),  # with a .sh: checked against the filename, as at construction
    ("affinity", 1, "affinity must be true or false, got 1"),  # equal to True, yet no bool
])
def test_a_field_set_after_construction_is_checked_before_anything_is_sent(
        tmp_path: Path, field: str, value: Any, said: str) -> None:
    # Set afterwards, a field was sent as it was: a bare TypeError (args), ValueError (NaN
    # in JSON), or parents "zz" taken as ['z', 'z'] ("unknown parent 'z'" from the master).
    from titan.client import TitanClient
    from titan.client.pipeline import dump_pipeline

    script = tmp_path / "s.sh"
    script.write_text("echo hi\n")
    job = TitanJob("b", str(script))
    setattr(job, field, value)
    client = TitanClient(url="http://127.0.0.1:9", token="t")  # nothing listens: nothing sent
    for call in (lambda: client.submit_dag("mutated", [job]),
                 lambda: client.schedule_dag("mutated", [job], cron="* * * * *"),
                 lambda: dump_pipeline("mutated", [job])):
        with pytest.raises(ValidationFailed, match=said) as bad:
            call()
        assert bad.value.details["field"] == field


def test_a_string_given_to_args_afterwards_is_split_as_at_construction() -> None:
    job = TitanJob("j", "x.py")
    job.args = "--name 'a b'"  # type: ignore[assignment]
    assert job.checked().to_payload(None)["args"] == ["--name", "a b"]
    gate = TitanJob("review", job_type="APPROVAL", hitl_message="ok?")
    assert gate.checked().to_payload(None) == gate.to_payload(None)


def test_max_wait_seconds_without_hitl_message_is_refused_not_ignored() -> None:
    # It bounds the wait of the gate hitl_message asks for: given alone it was dropped.
    with pytest.raises(ValidationFailed, match="max_wait_seconds is how long the approval "
                       "gate asked for by hitl_message waits") as bad:
        TitanJob("t", "x.py", max_wait_seconds=5)
    assert bad.value.details == {"field": "max_wait_seconds", "job_id": "t"}
    assert TitanJob("t", "x.py", hitl_message="ok?", max_wait_seconds=5).max_wait_seconds == 5
    assert TitanJob("g", job_type="APPROVAL", max_wait_seconds=5).max_wait_seconds == 5


def test_a_script_that_is_not_a_regular_file_is_said_so_not_missing() -> None:
    with pytest.raises(ScriptNotFound, match=r"script '/dev/null' for job 'j' is not a regular "
                       r"file \(/dev/null: a character device\)"):
        TitanJob("j", "/dev/null").script_path()


@pytest.mark.parametrize("name", ["..", ".", "a/b", "a\\b", "C:proj"])
def test_a_project_name_no_archive_job_can_name_is_refused_at_upload(
        tmp_path: Path, name: str) -> None:
    # project_name=".." was stored as "...zip": no '<project>/<entry.py>' reaches it.
    from titan.client import TitanClient

    (tmp_path / "main.py").write_text("print(1)\n")
    client = TitanClient(url="http://127.0.0.1:9", token="t")  # nothing listens: nothing sent
    with pytest.raises(ValidationFailed, match=f"invalid project name {name!r}: archive jobs "
                       "name it in '<project>/<entry.py>'".replace("\\", "\\\\")) as bad:
        client.upload_project_folder(tmp_path, project_name=name)
    assert bad.value.details == {"field": "project_name"}


def test_jobs_with_the_same_fields_are_equal_and_unhashable_as_lists_are() -> None:
    def make(**more: Any) -> TitanJob:
        return TitanJob("a", "x.py", args=["--n", "1"], env={"A": "1"}, **more)

    assert make() == make() and make(base_dir="/elsewhere") == make()
    assert make() != make(priority=2) and make() != make(timeout=5)
    assert make(job_type="SERVICE") != make(job_type="SERVICE", readiness="none")
    assert make() != "a"
    changed = make()
    changed.args.append("2")
    assert changed != make()
    with pytest.raises(TypeError, match="unhashable"):
        {make()}
