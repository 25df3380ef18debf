"""The DAG builder's server side: pipeline files written back (``dump_pipeline``), every
problem of a graph at once (``graph_problems``), and a draft checked as a submission would be
(``dashboard/drafts.py``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from titan import TitanJob
from titan.client.pipeline import dump_pipeline, load_pipeline, parse_pipeline
from titan.dashboard import drafts
from titan.errors import InvalidDAG, PipelineError
from titan.master.scheduling.dag_graph import find_cycle, graph_problems
from titan.master.scheduling.validation import validate_dag

SHA = "ab" * 32


def payloads(jobs: list[TitanJob]) -> list[dict[str, Any]]:
    return [job.to_payload(None) for job in jobs]


# -- dump_pipeline -------------------------------------------------------------------------
def test_a_dumped_pipeline_loads_back_as_the_same_jobs(tmp_path: Path) -> None:
    jobs = [
        TitanJob("extract", "etl/extract.py", args=["--day", "1"], priority=5),
        TitanJob("review", job_type="APPROVAL", parents=["extract"],
                 hitl_message="Ship it?\nsecond line: yes", max_wait_seconds=60),
        TitanJob("1.5", "yes", parents=["review", "extract"], retries=2, timeout=3600.0,
                 env={"SEED": "7"}, requirement="GPU", delay=1.5, affinity=True,
                 runner="subprocess"),
        TitanJob("notify", "n.py", hitl_message="Tell everyone?"),
    ]
    text = dump_pipeline("nightly", jobs)
    # Defaults are left out, lists are inline, a gate has no file, text stays text.
    assert text.startswith("name: nightly\njobs:\n- id: extract\n  file: etl/extract.py\n"
                           "  args: [--day, '1']\n  priority: 5\n")
    assert "depends_on: [review, extract]" in text and "id: '1.5'" in text
    assert "runner: auto" not in text and "retries: null" not in text
    (tmp_path / "etl").mkdir()
    path = tmp_path / "p.yaml"
    path.write_text(text)
    name, back = load_pipeline(path)
    assert name == "nightly"
    assert payloads(back) == payloads(jobs)
    assert back == jobs  # "the same jobs": they compared as distinct objects only


def test_parsing_without_a_folder_reads_no_disk_and_names_the_text() -> None:
    # The builder's import: scripts are uploaded files, so a path outside any folder is the
    # server's to refuse (relative, no '..'), not the pipeline reader's.
    name, jobs = parse_pipeline("jobs:\n  - id: a\n    file: ../a.py\n", Path("draft.yaml"),
                                folder=None)
    assert (name, jobs[0].filename, jobs[0].base_dir) == ("draft", "../a.py", None)
    with pytest.raises(PipelineError, match=r"^draft\.yaml:3: job 'a': unknown field 'fille'"):
        parse_pipeline("jobs:\n  - id: a\n    fille: a.py\n", Path("draft.yaml"), folder=None)


# -- graph_problems --------------------------------------------------------------------------
def spec(job_id: str, *parents: str) -> dict[str, Any]:
    return {"job_id": job_id, "parents": list(parents)}


def test_graph_problems_lists_every_one_in_order() -> None:
    found = graph_problems([spec("a", "c"), spec("b", "a", "ghost"), spec("c", "b"),
                            spec("d", "d"), spec("a")])
    assert [p.message for p in found] == [
        "job 'a': duplicate job id in this DAG",
        "job 'b': unknown parent 'ghost'",
        "job 'd': a job cannot depend on itself (cycle)",
        "job 'a': cycle in dependencies: a -> b -> c -> a",
    ]
    assert found[-1].details["cycle"] == ["a", "b", "c", "a"]


def test_a_long_cycle_is_named_by_its_ends() -> None:
    """10,000 jobs in a loop made a 150 KB one-line error (a QA pass)."""
    n = 10_000
    (problem,) = graph_problems([spec(f"j{i}", f"j{(i - 1) % n}") for i in range(n)])
    assert len(problem.message) < 300, problem.message
    assert "... 9991 more ..." in problem.message
    assert problem.details["cycle_length"] == n and len(problem.details["cycle"]) == 11


def test_find_cycle_ignores_what_graph_problems_names_otherwise() -> None:
    assert find_cycle([spec("a", "ghost", "a"), spec("b", "a")]) is None
    assert find_cycle([spec("r"), spec("x", "r", "z"), spec("y", "x"), spec("z", "y")]) \
        == ["x", "y", "z", "x"]


def test_a_submission_still_stops_at_the_first_problem() -> None:
    good = {"filename": "a.py", "script_sha256": SHA}
    with pytest.raises(InvalidDAG, match="duplicate job id") as exc:
        validate_dag("d", [dict(good, job_id="a"), dict(good, job_id="a", parents=["b"])],
                     max_jobs=10)
    assert exc.value.details["job_id"] == "a"


# -- a draft's check -------------------------------------------------------------------------
def check(jobs: list[dict[str, Any]], name: str = "demo",
          scripts: dict[str, str] | None = None) -> dict[str, Any]:
    return drafts.check(name, jobs, {"a.py": SHA} if scripts is None else scripts, max_jobs=50)


def test_a_good_draft_is_ready_to_submit_and_export() -> None:
    reply = check([{"job_id": "a", "filename": "a.py", "args": '--x "1 2"', "retries": 2},
                   {"job_id": "gate", "job_type": "APPROVAL", "filename": "", "parents": ["a"],
                    "hitl_message": "ok?", "max_wait_seconds": 60},
                   {"job_id": "b", "filename": "etl/a.py", "parents": ["gate"]}])
    assert reply["problems"] == [] and reply["cycle"] is None
    assert reply["layout"]["x"] == [0, 1, 2]
    jobs = reply["dag"]["jobs"]
    assert [(j["job_id"], j["script_sha256"], j["args"]) for j in jobs] == [
        ("a", SHA, ["--x", "1 2"]), ("gate", None, []), ("b", SHA, [])]
    validate_dag(reply["dag"]["name"], jobs, max_jobs=10)  # what POST /dags will say
    name, back = drafts.from_yaml(reply["yaml"], "ignored")
    assert name == "demo"
    assert [(j["job_id"], j["filename"], j["args"], j["parents"]) for j in back] == [
        ("a", "a.py", "--x '1 2'", []), ("gate", "", "", ["a"]), ("b", "etl/a.py", "", ["gate"])]
    assert check(back)["dag"] == reply["dag"]  # a draft read back is the same submission


def test_a_script_job_turned_into_a_gate_drops_the_script_fields_its_form_hides() -> None:
    # The builder keeps them (for a turn back to a script); a submission refuses them on a gate.
    reply = check([{"job_id": "a", "filename": "a.py"},
                   {"job_id": "g", "job_type": "APPROVAL", "filename": "a.py", "args": "x",
                    "retries": 2, "timeout": 5, "requirement": "GPU", "parents": ["a"],
                    "hitl_message": "ok?", "priority": 3}])
    assert reply["problems"] == [], reply["problems"]
    gate = reply["dag"]["jobs"][1]
    assert (gate["filename"], gate["args"], gate["retries"], gate["timeout"]) == ("", [], None,
                                                                                None)
    assert gate["priority"] == 3 and gate["hitl_message"] == "ok?"


def test_every_problem_of_a_draft_is_listed_with_its_jobs() -> None:
    reply = check([
        {"job_id": "a", "filename": "a.py", "parents": ["c"]},
        {"job_id": "b", "filename": "a.py", "parents": ["a"], "priority": "high"},
        {"job_id": "c", "filename": "nope.py", "parents": ["b"]},
        {"job_id": "d", "filename": "../a.py", "priority": 10**7},
        {"job_id": "e", "filename": "a.py", "parent": ["a"]},
    ], name="")
    assert [(p["jobs"], p["field"], p["code"]) for p in reply["problems"]] == [
        ([], "name", "invalid"),
        ([1], "priority", "invalid"),
        ([2], "filename", "unknown_script"),
        ([3], "filename", "invalid"),
        ([4], "parent", "invalid"),
        ([0], "parents", "invalid"),
    ]
    messages = [p["message"] for p in reply["problems"]]
    assert "job 'b': priority must be an integer (64-bit), got 'high'" in messages
    assert "job 'c': no uploaded file is named 'nope.py'" in messages[2]
    assert "must be relative, without '..'" in messages[3]
    assert "did you mean 'parents'?" in messages[4]
    assert reply["cycle"] == ["a", "b", "c", "a"]
    assert reply["dag"] is None and reply["yaml"] is None
    # Drawn all the same: the cycle as a chain with an edge back.
    assert reply["layout"]["x"][:3] == [0, 1, 2]


def test_only_unknown_scripts_still_export() -> None:
    # `titan submit` reads scripts from disk: a file not uploaded yet is no reason to refuse.
    reply = check([{"job_id": "a", "filename": "elsewhere.py"}])
    assert [p["code"] for p in reply["problems"]] == ["unknown_script"]
    assert reply["dag"] is None
    assert reply["yaml"] == "name: demo\njobs:\n- id: a\n  file: elsewhere.py\n"


def test_what_only_the_whole_submission_refuses_is_a_problem_too() -> None:
    # A gate after "a" (hitl_message) is named "a.approval": a job of that id is refused.
    reply = check([{"job_id": "a", "filename": "a.py", "hitl_message": "go?"},
                   {"job_id": "a.approval", "filename": "a.py"}])
    assert [p["jobs"] for p in reply["problems"]] == [[1]]
    assert "taken by the approval gate" in reply["problems"][0]["message"]


def test_scripts_the_draft_needs() -> None:
    assert drafts.wanted_scripts([
        {"filename": "etl/x.py"}, {"filename": "y.py", "job_type": "approval"},
        {"filename": "p/entry.py", "is_archive": True}, {"filename": ""}, {}]) == {"x.py"}


def test_a_bad_dag_name_is_said_of_the_bodys_field() -> None:
    # details.field said "DAG name", no field of any body: POST /dags sends `name`, a
    # schedule `dag_name` (a hostile-input pass).
    from titan.errors import InvalidDAG

    job = {"job_id": "a", "filename": "a.py", "script_sha256": "0" * 64}
    for bad in ("", "DAG-DAG-x", "a b/c"):
        with pytest.raises(InvalidDAG) as exc:
            validate_dag(bad, [job], max_jobs=10)
        assert exc.value.details["field"] == "name", (bad, exc.value.details)
        with pytest.raises(InvalidDAG) as exc:
            validate_dag(bad, [job], max_jobs=10, name_field="dag_name")
        assert exc.value.details["field"] == "dag_name", (bad, exc.value.details)
