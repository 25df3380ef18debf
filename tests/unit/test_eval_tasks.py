"""Evaluation tasks: loading JSON / YAML / CSV files and reporting every problem by row."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path
from typing import Any

import pytest

from titan.errors import ValidationFailed
from titan.evals.tasks import (
    MAX_INSTRUCTION_CHARS,
    FailureRule,
    Task,
    content_id,
    load_tasks,
    parse_tasks,
)

FULL = {
    "id": "refund-1",
    "user_instruction": "Refund order 42.",
    "behavior_instructions": "Orders over $100 need a manager.",
    "initial_state": {"orders": {"42": {"total": 30, "status": "paid"}}},
    "failure_rules": [{"tool": "refund", "match": {"order_id": "42"}, "on_call": 1,
                       "times": 1, "payload": {"error": "busy"}, "error": True}],
    "expected_outcome": "completion",
    "expected_steps": 2,
    "metadata": {"suite": "billing"},
}


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def error_of(path: Path) -> ValidationFailed:
    with pytest.raises(ValidationFailed) as info:
        load_tasks(path)
    return info.value


# --- the three formats --------------------------------------------------------------------

def test_json_list_and_wrapped_form_load_the_same_tasks(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text(json.dumps([FULL, {"user_instruction": "Hi"}]))
    (tmp_path / "b.json").write_text(json.dumps({"tasks": [FULL, {"user_instruction": "Hi"}]}))
    a, b = load_tasks(tmp_path / "a.json"), load_tasks(str(tmp_path / "b.json"))
    assert [t.to_dict() for t in a] == [t.to_dict() for t in b]
    full, bare = a
    assert full.id == "refund-1" and full.kind == "ledger"
    assert full.failure_rules == [FailureRule(tool="refund", payload={"error": "busy"},
                                              match={"order_id": "42"}, on_call=1, times=1)]
    # Defaults, and the id of a task without one is a hash of what it holds.
    assert re.fullmatch(r"task-[0-9a-f]{12}", bare.id) and bare.id == content_id(bare)
    assert bare.to_dict() == {
        "id": bare.id, "user_instruction": "Hi", "behavior_instructions": None,
        "initial_state": {}, "failure_rules": [], "expected_outcome": "completion",
        "expected_steps": None, "expected_effects": None, "kind": "ledger", "workspace": None,
        "scorers": [], "metadata": {}, "turns": []}


def test_odyssey_seed_is_an_alias_of_the_tasks_own_fields() -> None:
    # Seed 003 names the simulated world's seed odyssey_seed; its keys fold into the task's.
    task = Task.from_dict({"user_instruction": "Cancel order 7", "odyssey_seed": {
        "behavior_instructions": "Refuse cancellations of shipped orders",
        "initial_state": {"order": {"7": {"status": "shipped"}}}}})
    assert task.behavior_instructions == "Refuse cancellations of shipped orders"
    assert task.initial_state == {"order": {"7": {"status": "shipped"}}}
    with pytest.raises(ValidationFailed, match=r"odyssey_seed.behavior_instructions and "
                                               r"behavior_instructions are both given"):
        Task.from_dict({"user_instruction": "x", "behavior_instructions": "a",
                        "odyssey_seed": {"behavior_instructions": "b"}})
    with pytest.raises(ValidationFailed, match=r"unknown field 'odyssey_seed.mood'"):
        Task.from_dict({"user_instruction": "x", "odyssey_seed": {"mood": "b"}})


def test_turns_make_a_coding_session() -> None:
    ws = {"files": {"a.py": "x = 1\n"}}
    task = Task.from_dict({"workspace": ws, "turns": [
        "Add a function f", {"user_instruction": "Now test it",
                             "scorers": [{"type": "command", "command": "python -m pytest"}]}]})
    assert task.user_instruction == "Add a function f"  # the session's opening turn
    assert task.turns == [{"user_instruction": "Add a function f", "scorers": []},
                          {"user_instruction": "Now test it",
                           "scorers": [{"type": "command", "command": "python -m pytest"}]}]
    for bad, message in (
            ({"user_instruction": "x", "turns": ["a"]}, "needs a workspace"),
            ({"workspace": ws, "turns": [{"user_instruction": ""}]},
             r"turns\[0\].user_instruction must be a non-empty string"),
            ({"workspace": ws, "turns": [{"user_instruction": "a", "when": 1}]},
             r"unknown field 'turns\[0\].when'"),
            ({"workspace": ws, "turns": "a"}, "turns must be a list")):
        with pytest.raises(ValidationFailed, match=message):
            Task.from_dict(bad)


def test_to_dict_round_trips_through_from_dict() -> None:
    task = Task.from_dict({**FULL, "workspace": {"files": {"a.py": "x = 1\n"}},
                           "scorers": [{"type": "command", "command": "pytest -q"}]})
    assert task.kind == "coding"
    again = Task.from_dict(task.to_dict())
    assert again == task and again.to_dict() == task.to_dict()
    assert task.workspace == {"files": {"a.py": "x = 1\n"}, "setup": []}


def test_tasks_share_nothing_with_their_input_or_output() -> None:
    raw = json.loads(json.dumps(FULL))
    task = Task.from_dict(raw)
    raw["initial_state"]["orders"]["42"]["total"] = 1
    raw["failure_rules"][0]["match"]["order_id"] = "1"
    task.to_dict()["initial_state"]["orders"]["42"]["total"] = 0
    assert task.initial_state["orders"]["42"]["total"] == 30
    assert task.failure_rules[0].match == {"order_id": "42"}


def test_yaml_file(tmp_path: Path) -> None:
    (tmp_path / "tasks.yml").write_text(
        "tasks:\n"
        "  - id: 7\n"  # a bare number is read as the string id "7"
        "    user_instruction: Cancel my plan\n"
        "    expected_outcome: refusal\n"
        "    initial_state:\n"
        "      plans: {\"p1\": {tier: pro}}\n"
        "  - user_instruction: Fix the bug\n"
        "    workspace: {files: {src/app.py: 'print(1)'}, setup: [pip install -e .]}\n"
        "    scorers: [{type: forbid_paths, paths: ['tests/**']}]\n")
    first, second = load_tasks(tmp_path / "tasks.yml")
    assert first.id == "7" and first.expected_outcome == "refusal"
    assert first.initial_state == {"plans": {"p1": {"tier": "pro"}}}
    assert second.id == content_id(second) and second.kind == "coding"
    assert second.workspace == {"files": {"src/app.py": "print(1)"},
                                "setup": ["pip install -e ."]}


def test_yaml_ids_are_the_text_the_file_shows(tmp_path: Path) -> None:
    # YAML 1.1 read 007 as 7, 0x1F as 31, 12:30 as 750 and yes as true: the task then had
    # another id than the one in the file, and `titan eval trace EVAL 007` found no task.
    written = ["007", "0x1F", "1_000", "yes", "1.50"]
    (tmp_path / "tasks.yaml").write_text("".join(
        f"- id: {w}\n  user_instruction: task {i}\n" for i, w in enumerate(written)))
    assert [t.id for t in load_tasks(tmp_path / "tasks.yaml")] == written
    (tmp_path / "clock.yaml").write_text("- id: 12:30\n  user_instruction: hi\n")
    with pytest.raises(ValidationFailed, match="got '12:30'"):  # not 750, a task of its own
        load_tasks(tmp_path / "clock.yaml")


def test_csv_file_with_json_cells_multiline_text_and_empty_defaults(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "tasks.csv",
                     ["id", "user_instruction", "initial_state", "failure_rules",
                      "expected_steps", "behavior_instructions"],
                     [["a", "Line one\nline two", json.dumps(FULL["initial_state"]),
                       json.dumps(FULL["failure_rules"]), "3", ""],
                      ["", "Second", "", "", "", "Be strict."],
                      ["", "", "", "", "", ""]])  # a blank row is skipped
    a, b = load_tasks(path)
    assert a.user_instruction == "Line one\nline two" and a.expected_steps == 3
    assert a.initial_state == FULL["initial_state"] and a.failure_rules[0].tool == "refund"
    assert a.behavior_instructions is None
    assert b.id == content_id(b) and b.behavior_instructions == "Be strict."
    assert b.initial_state == {} and b.failure_rules == []


def test_csv_with_a_bom_loads(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_bytes("\ufeffid,user_instruction\nx,Do it\n".encode())
    assert [t.id for t in load_tasks(path)] == ["x"]


# --- errors name the file, the row and the field ------------------------------------------

def test_csv_bad_json_cell_names_row_line_and_field(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "tasks.csv", ["id", "user_instruction", "initial_state"],
                     [["a", "multi\nline", "{}"], ["b", "ok", "{}"], ["c", "ok", "{nope"]])
    err = error_of(path)
    # Row 3 starts on line 5: row 1's quoted cell spans two lines.
    assert str(err).startswith("tasks.csv row 3 (line 5): initial_state is not valid JSON: ")
    assert err.details == {"row": 3, "field": "initial_state", "line": 5}


def test_csv_validation_error_carries_row_and_line(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "tasks.csv", ["id", "user_instruction", "expected_outcome"],
                     [["a", "ok", ""], ["b", "ok", "maybe"]])
    err = error_of(path)
    assert str(err) == ("tasks.csv row 2 (line 3): expected_outcome must be completion or "
                        "refusal, got 'maybe'")
    assert err.details == {"row": 2, "field": "expected_outcome", "line": 3}


def test_csv_header_problems(tmp_path: Path) -> None:
    err = error_of(write_csv(tmp_path / "t.csv", ["id", "user_instruction", "prompt"], []))
    assert "t.csv line 1: unknown column 'prompt'" in str(err)
    assert "known: id, user_instruction" in str(err)
    err = error_of(write_csv(tmp_path / "t.csv", ["id", "id", "user_instruction"], []))
    assert "duplicate column 'id'" in str(err)
    err = error_of(write_csv(tmp_path / "t.csv", ["id"], [["a"]]))
    assert "needs a user_instruction column" in str(err)
    err = error_of(write_csv(tmp_path / "t.csv", ["id", "user_instruction"], [["a", "b", "c"]]))
    assert str(err) == "t.csv row 1 (line 2): 3 cells but the header has 2 columns"


def test_yaml_error_names_task_position_and_id(tmp_path: Path) -> None:
    (tmp_path / "tasks.yaml").write_text(
        "- {id: ok, user_instruction: x}\n"
        "- {id: refund-1, user_instruction: y, expected_outcome: maybe}\n")
    err = error_of(tmp_path / "tasks.yaml")
    assert str(err) == ('tasks.yaml task 2 ("refund-1"): expected_outcome must be completion '
                        "or refusal, got 'maybe'")
    assert err.details == {"row": 2, "field": "expected_outcome"}


def test_unparseable_files(tmp_path: Path) -> None:
    (tmp_path / "t.yaml").write_text("- id: a\n  user_instruction: [unclosed\n")
    assert str(error_of(tmp_path / "t.yaml")).startswith("t.yaml: not valid YAML: ")
    (tmp_path / "t.json").write_text("[{]")
    assert str(error_of(tmp_path / "t.json")).startswith("t.json: not valid JSON: ")
    (tmp_path / "t.txt").write_text("")
    assert "unsupported task file type '.txt'" in str(error_of(tmp_path / "t.txt"))
    assert "cannot read" in str(error_of(tmp_path / "missing.json"))
    (tmp_path / "t2.json").write_text('{"items": []}')
    assert "expected a list of tasks" in str(error_of(tmp_path / "t2.json"))
    (tmp_path / "t3.json").write_text('{"tasks": [], "name": "x"}')
    assert "unknown top-level key 'name'" in str(error_of(tmp_path / "t3.json"))


def test_duplicate_ids_name_both_rows(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "tasks.csv", ["id", "user_instruction"],
                     [["a", "x"], ["b", "x"], ["a", "y"]])
    assert str(error_of(path)) == ("tasks.csv row 3 (line 4): duplicate task id 'a' "
                                   "(also tasks.csv row 1 (line 2))")
    # A default id can collide with an explicit one too.
    made = parse_tasks([{"user_instruction": "y"}], "api")[0].id
    with pytest.raises(ValidationFailed, match=rf'api task 2: duplicate task id \'{made}\' '
                                               rf'\(also api task 1 \("{made}"\)\)'):
        parse_tasks([{"id": made, "user_instruction": "x"}, {"user_instruction": "y"}], "api")


def test_tasks_without_ids_from_two_files_do_not_replace_each_other(tmp_path: Path) -> None:
    # Their place in the file was their id: the second file's first row replaced the first's.
    first = load_tasks(write_csv(tmp_path / "f1.csv", ["user_instruction"],
                                 [["first file row one"], ["first file row two"]]))
    second = load_tasks(write_csv(tmp_path / "f2.csv", ["user_instruction"],
                                  [["second file row one"]]))
    assert len({t.id for t in first + second}) == 3
    # The same task again keeps its id, from any format: seeding it again updates it.
    again = parse_tasks([{"user_instruction": "first file row two"}], "api")
    assert again[0].id == first[1].id
    # Two copies of one task in a file are told apart by their order.
    a, b, c = parse_tasks([{"user_instruction": "same"}] * 3, "api")
    assert (b.id, c.id) == (f"{a.id}-2", f"{a.id}-3")


def bad(task: dict[str, Any]) -> ValidationFailed:
    with pytest.raises(ValidationFailed) as info:
        parse_tasks([task], "body")
    return info.value


@pytest.mark.parametrize(("change", "field", "text"), [
    ({"colour": "red"}, "colour", "unknown field 'colour' (known: id, user_instruction,"),
    ({"id": "has space"}, "id", "id must match"),
    ({"user_instruction": None}, "user_instruction", "user_instruction is required"),
    ({"user_instruction": "  "}, "user_instruction", "must be a non-empty string"),
    ({"user_instruction": "x" * (MAX_INSTRUCTION_CHARS + 1)}, "user_instruction",
     f"at most {MAX_INSTRUCTION_CHARS}"),
    ({"behavior_instructions": 3}, "behavior_instructions", "must be a string"),
    ({"initial_state": []}, "initial_state", "initial_state must be {entity_type:"),
    ({"initial_state": {"orders": {"1": "paid"}}}, "initial_state",
     "initial_state.orders.1 must be an object of attributes"),
    ({"initial_state": {"orders": {1: {}}}}, "initial_state", "must be a string (quote it)"),
    ({"expected_steps": -1}, "expected_steps", "expected_steps must be an integer >= 0"),
    ({"expected_steps": True}, "expected_steps", "must be an integer"),
    ({"failure_rules": {"tool": "x"}}, "failure_rules", "failure_rules must be a list"),
    ({"failure_rules": [{"tool": "x"}]}, "failure_rules[0].payload",
     "failure_rules[0].payload is required"),
    ({"failure_rules": [{"tool": "x", "payload": 1, "when": 2}]}, "failure_rules[0].when",
     "unknown field 'failure_rules[0].when' (known: tool, match,"),
    ({"failure_rules": [{"tool": "x", "payload": 1, "on_call": 0}]},
     "failure_rules[0].on_call", "failure_rules[0].on_call must be an integer >= 1"),
    ({"failure_rules": [{"tool": "", "payload": 1}]}, "failure_rules[0].tool",
     "failure_rules[0].tool must be a non-empty string"),
    ({"failure_rules": ["x"]}, "failure_rules[0]", "failure_rules[0] must be an object"),
    ({"scorers": [{"type": "command", "command": "pytest"}]}, "scorers",
     "scorers[0] is a command scorer, which needs a workspace"),
    ({"scorers": [{"type": "lint"}]}, "scorers", "scorers[0] must be an object with type"),
    ({"scorers": [{"type": "allowed_paths", "paths": []}]}, "scorers",
     "scorers[0].paths must be a non-empty list"),
    ({"workspace": {"files": {"../x": "y"}}}, "workspace", "must be a relative path"),
    ({"workspace": {"files": {"/etc/x": "y"}}}, "workspace", "must be a relative path"),
    ({"workspace": {"setup": "make"}}, "workspace", "workspace.setup must be a list"),
    ({"workspace": {"repo": "x"}}, "workspace.repo", "unknown field 'workspace.repo'"),
    ({"kind": "coding"}, "kind", "kind 'coding' contradicts the task"),
    ({"metadata": {"when": {1, 2}}}, "metadata", "metadata is not JSON-compatible"),
])
def test_each_field_problem_is_named(change: dict[str, Any], field: str, text: str) -> None:
    err = bad({"id": "t", "user_instruction": "do it", **change})
    assert text in str(err)
    assert str(err).startswith('body task 1 ("t"): ') or "id" in change
    assert err.details == {"row": 1, "field": field}


def test_scorers_allowed_without_workspace_unless_they_run_commands() -> None:
    task = Task.from_dict({"user_instruction": "x",
                           "scorers": [{"type": "allowed_paths", "paths": ["src/**"]}]})
    assert task.kind == "ledger" and task.scorers == [{"type": "allowed_paths",
                                                       "paths": ["src/**"]}]


def test_from_dict_uses_where_and_position() -> None:
    with pytest.raises(ValidationFailed, match=r"^sheet row 9: user_instruction is required$"):
        Task.from_dict({}, where="sheet row 9", position=9)
    assert Task.from_dict({"user_instruction": "x"}, position=4).id == \
        Task.from_dict({"user_instruction": "x"}).id
    with pytest.raises(ValidationFailed, match=r"^task 1: a task must be an object, got str$"):
        Task.from_dict("x")


def test_null_means_default_but_wrong_types_do_not() -> None:
    task = Task.from_dict({"user_instruction": "x", "initial_state": None, "scorers": None,
                           "failure_rules": None, "metadata": None, "expected_outcome": None})
    assert task.initial_state == {} and task.expected_outcome == "completion"


def test_too_many_tasks_is_refused(tmp_path: Path) -> None:
    rows = [["", "x"] for _ in range(10_001)]
    err = error_of(write_csv(tmp_path / "big.csv", ["id", "user_instruction"], rows))
    assert str(err) == "big.csv: more than 10,000 tasks; split the file"


# --- failure rules ------------------------------------------------------------------------

def test_failure_rule_matching() -> None:
    rule = FailureRule.from_dict({"tool": "refund", "match": {"order_id": "42"},
                                  "payload": "boom"})
    assert rule.error is True and rule.times is None
    assert rule.matches("refund", {"order_id": "42", "amount": 5}, 1, 0)
    assert rule.matches("refund", {"order_id": "42"}, 9, 100)  # no on_call / times: always
    assert not rule.matches("refund", {"order_id": 42}, 1, 0)  # strict equality
    assert not rule.matches("refund", {}, 1, 0)
    assert not rule.matches("lookup", {"order_id": "42"}, 1, 0)

    nth = FailureRule(tool="t", payload=None, on_call=2)
    assert [nth.matches("t", {}, n, 0) for n in (1, 2, 3)] == [False, True, False]
    limited = FailureRule(tool="t", payload=None, times=2)
    assert [limited.matches("t", {}, 5, f) for f in (0, 1, 2)] == [True, True, False]


def test_failure_rule_round_trip_and_errors() -> None:
    d = {"tool": "t", "match": None, "on_call": None, "times": 3, "payload": [1],
         "error": False}
    assert FailureRule.from_dict(d).to_dict() == d
    with pytest.raises(ValidationFailed, match=r"^rule 2: error must be true or false"):
        FailureRule.from_dict({"tool": "t", "payload": 1, "error": "no"}, where="rule 2")
    with pytest.raises(ValidationFailed, match="match must be an object"):
        FailureRule.from_dict({"tool": "t", "payload": 1, "match": ["a"]})


def test_a_turns_instruction_is_bounded_like_a_tasks() -> None:
    with pytest.raises(ValidationFailed, match=r"turns\[0\].user_instruction has 20001 "
                                               r"characters; at most 20000"):
        Task.from_dict({"workspace": {"files": {}}, "turns": ["x" * 20_001]})


@pytest.mark.parametrize("bad", ["..", ".", "...", "ok\n", "a b", ""])
def test_ids_that_cannot_be_one_url_segment_are_refused(bad: str) -> None:
    # An evaluation, task or tool id is a path segment of the API: a segment of dots is
    # normalised away by clients (it addressed another route), and a trailing newline used to
    # pass a `$`-anchored check.
    from titan.evals.agent_config import parse_tool
    from titan.formats import check_eval_id as check_id

    with pytest.raises(ValidationFailed, match="not only dots"):
        check_id(bad, "evaluation")
    with pytest.raises(ValidationFailed, match="not only dots"):
        parse_tasks([{"id": bad, "user_instruction": "x"}], "t.yaml")
    with pytest.raises(ValidationFailed, match="tools\\[0\\].name"):
        parse_tool({"name": bad, "description": "d", "input_schema": {}}, 0)
    assert check_id("v1.2", "evaluation") == "v1.2"
    assert [t.id for t in parse_tasks([{"id": "a..b", "user_instruction": "x"}], "t")] == ["a..b"]


BILLION_LAUGHS = "".join(
    f"      {k}: &{k} [{', '.join([f'*{p}'] * 10 if p else ['x'] * 10)}]\n"
    for p, k in zip([""] + list("abcdefg"), "abcdefgh", strict=True))


def test_yaml_aliases_that_expand_past_any_file_are_refused(tmp_path: Path) -> None:
    # 700 bytes of nested anchors were 10^8 values: 23 s and gigabytes to load a task file
    # (one level more, every byte of the machine), where a pipeline's YAML is refused so.
    from titan.client.evaluations import load_spec

    tasks = tmp_path / "tasks.yaml"
    tasks.write_text("- id: t1\n  user_instruction: hi\n  metadata:\n" + BILLION_LAUGHS)
    with pytest.raises(ValidationFailed, match=r"tasks.yaml: the value at line \d+ is too "
                                               r"large once its YAML aliases are expanded"):
        load_tasks(tasks)
    spec = tmp_path / "spec.yaml"
    spec.write_text("name: e\nagent: {name: a, script: a.py}\ndescription: x\nbomb:\n"
                    + BILLION_LAUGHS.replace("      ", "  "))
    with pytest.raises(ValidationFailed, match="too large once its YAML aliases"):
        load_spec(spec)
    # Aliases as authors use them (a shared world, a few times) load as before.
    shared = tmp_path / "shared.yaml"
    shared.write_text("- {id: a, user_instruction: hi, initial_state: &w {order: {A: {s: 1}}}}\n"
                      "- {id: b, user_instruction: hi, initial_state: *w}\n")
    a, b = load_tasks(shared)
    assert a.initial_state == b.initial_state == {"order": {"A": {"s": 1}}}
