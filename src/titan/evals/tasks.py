"""Evaluation tasks: what one task asks of the agent under test, and how tasks are loaded.

A task file is written by hand (YAML, JSON) or exported from a spreadsheet (CSV), so every
problem is reported as ``<file> row <n> (line <l>): <field> ...`` or ``<file> task <n>
("<id>"): ...``: the author must be able to find the cell without reading a stack trace. All
problems raise :class:`titan.errors.ValidationFailed` with ``{"row", "field"}`` in details, so
the HTTP API (which calls :func:`parse_tasks` on a request body) answers 400 with the same text.
"""

from __future__ import annotations

import copy
import csv
import dataclasses
import hashlib
import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from titan.errors import ValidationFailed
from titan.evals import task_fields as fields

MAX_TASKS = 10_000
MAX_INSTRUCTION_CHARS = 20_000
OUTCOMES = ("completion", "refusal")
TASK_FIELDS = ("id", "user_instruction", "behavior_instructions", "initial_state",
               "failure_rules", "expected_outcome", "expected_steps", "expected_effects",
               "kind", "workspace", "scorers", "metadata", "turns", "odyssey_seed")
# The CSV columns holding JSON text; the others are plain text (an instruction is not JSON).
CSV_COLUMNS = tuple(f for f in TASK_FIELDS if f != "kind")
CSV_JSON_COLUMNS = ("initial_state", "failure_rules", "expected_steps", "expected_effects",
                    "workspace", "scorers", "metadata", "turns", "odyssey_seed")
RULE_FIELDS = ("tool", "match", "on_call", "times", "payload", "error")
#: A task id is one URL path segment: a segment of dots would be normalised away.
_ID = re.compile(r"(?!\.+\Z)[A-Za-z0-9._-]{1,100}")


def _located(where: str, row: int | None, problem: fields.Invalid) -> ValidationFailed:
    return ValidationFailed(f"{where}: {problem.message}",
                            details={"row": row, "field": problem.field})


@dataclass
class FailureRule:
    """An injected failure: when a call matches, the agent gets ``payload`` instead of the
    simulator's answer (recorded as source "injected")."""

    tool: str
    payload: Any
    match: dict[str, Any] | None = None
    on_call: int | None = None  # only the Nth call of `tool` in the run (1-based)
    times: int | None = None  # at most this many firings; None = every match
    error: bool = True  # recorded as an error outcome (a 200 with a soft payload sets False)

    def matches(self, tool: str, arguments: dict[str, Any], call_number: int,
                fired_so_far: int) -> bool:
        if tool != self.tool:
            return False
        if self.on_call is not None and call_number != self.on_call:
            return False
        if self.times is not None and fired_so_far >= self.times:
            return False
        # Strict equality on purpose: "123" and 123 are different arguments to a real API.
        return all(k in arguments and arguments[k] == v for k, v in (self.match or {}).items())

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # deep-copied: callers may mutate it freely

    @classmethod
    def from_dict(cls, d: Any, where: str = "failure rule") -> FailureRule:
        try:
            return _parse_rule(d, "")
        except fields.Invalid as e:
            raise _located(where, None, e) from None


@dataclass
class Task:
    """One evaluation task (the brief's "Task" shape); ``kind`` follows from ``workspace``."""

    id: str
    user_instruction: str
    behavior_instructions: str | None = None  # rules for the simulated tools, never shown
    initial_state: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    failure_rules: list[FailureRule] = field(default_factory=list)
    expected_outcome: str = "completion"
    expected_steps: int | None = None
    # Ledger operations the run must have applied (None: not checked; []: no change at all):
    # what the judge's code checks compare the world against (titan.evals.checks).
    expected_effects: list[dict[str, Any]] | None = None
    workspace: dict[str, Any] | None = None
    scorers: list[dict[str, Any]] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    # A multi-turn coding session: [{"user_instruction", "scorers"}], one agent run per turn.
    turns: list[dict[str, Any]] = field(default_factory=list)
    # Derived, never passed: a task with a workspace is a coding task, whatever else it says.
    kind: str = field(init=False)

    def __post_init__(self) -> None:
        self.kind = "coding" if self.workspace is not None else "ledger"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # deep-copied, failure rules included

    @classmethod
    def from_dict(cls, d: Any, where: str = "task 1", *, position: int = 1) -> Task:
        """Validate one task; ``where`` and ``position`` (1-based) name it in an error."""
        try:
            return _parse_task(d)
        except fields.Invalid as e:
            raise _located(where, position, e) from None


# --- building a task (the field checks in task_fields raise Invalid naming the field) ---

def _parse_rule(d: Any, prefix: str) -> FailureRule:
    if not isinstance(d, dict):
        what = prefix.rstrip(".") or "a failure rule"
        raise fields.Invalid(what, f"{what} must be an object, got {type(d).__name__}")
    fields.check_keys(d, RULE_FIELDS, prefix)
    if "payload" not in d:
        raise fields.Invalid(prefix + "payload", f"{prefix}payload is required (what the agent gets)")
    fields.check_json(d["payload"], prefix + "payload")
    match = d.get("match")
    if match is not None:
        if not isinstance(match, dict) or not all(isinstance(k, str) for k in match):
            raise fields.Invalid(prefix + "match", f"{prefix}match must be an object of argument "
                                             f"values, got {match!r}")
        fields.check_json(match, prefix + "match")
    error = d.get("error", True)
    if not isinstance(error, bool):
        raise fields.Invalid(prefix + "error", f"{prefix}error must be true or false, got {error!r}")
    return FailureRule(tool=fields.text(d.get("tool"), prefix + "tool"), payload=d["payload"],
                       match=match, on_call=fields.count(d.get("on_call"), prefix + "on_call", 1),
                       times=fields.count(d.get("times"), prefix + "times", 1), error=error)


def _parse_task(d: Any) -> Task:
    if not isinstance(d, dict):
        raise fields.Invalid(None, f"a task must be an object, got {type(d).__name__}")
    fields.check_keys(d, TASK_FIELDS, "")
    d = copy.deepcopy(d)  # the task must not change when the caller's dict does
    tid = d.get("id")
    if isinstance(tid, int) and not isinstance(tid, bool):
        tid = str(tid)  # `id: 7` in YAML means the string "7"
    if tid is not None and (not isinstance(tid, str) or not _ID.fullmatch(tid)):
        raise fields.Invalid("id", f"id must match [A-Za-z0-9._-]{{1,100}} (not only "
                                   f"dots), got {tid!r}")
    fields.fold_odyssey_seed(d)
    ws = None if d.get("workspace") is None else fields.workspace_of(d["workspace"])
    turns = fields.turns_of(fields.or_default(d, "turns", []), ws is not None)
    if turns and d.get("user_instruction") is None:
        d["user_instruction"] = turns[0]["user_instruction"]  # the session's opening
    instruction = fields.text(d.get("user_instruction"), "user_instruction")
    if len(instruction) > MAX_INSTRUCTION_CHARS:
        raise fields.Invalid("user_instruction", f"user_instruction has {len(instruction)} "
                                           f"characters; at most {MAX_INSTRUCTION_CHARS}")
    behavior = d.get("behavior_instructions")
    if behavior is not None and not isinstance(behavior, str):
        raise fields.Invalid("behavior_instructions", "behavior_instructions must be a string")
    behavior = behavior or None  # "" means none: instruction adherence is then not scored
    rules = fields.or_default(d, "failure_rules", [])
    if not isinstance(rules, list):
        raise fields.Invalid("failure_rules", "failure_rules must be a list of rules")
    outcome = fields.or_default(d, "expected_outcome", "completion")
    if outcome not in OUTCOMES:
        raise fields.Invalid("expected_outcome",
                       f"expected_outcome must be completion or refusal, got {outcome!r}")
    kind = d.get("kind")
    if kind is not None and kind != ("coding" if ws is not None else "ledger"):
        raise fields.Invalid("kind", f"kind {kind!r} contradicts the task: a task is coding exactly "
                               f"when it has a workspace")
    scorers = fields.or_default(d, "scorers", [])
    if not isinstance(scorers, list):
        raise fields.Invalid("scorers", "scorers must be a list")
    metadata = fields.or_default(d, "metadata", {})
    if not isinstance(metadata, dict):
        raise fields.Invalid("metadata", "metadata must be an object")
    fields.check_json(metadata, "metadata")
    task = Task(
        id=tid or "", user_instruction=instruction, behavior_instructions=behavior,
        initial_state=fields.initial_state_of(fields.or_default(d, "initial_state", {})),
        failure_rules=[_parse_rule(r, f"failure_rules[{i}].") for i, r in enumerate(rules)],
        expected_outcome=outcome,
        expected_steps=fields.count(d.get("expected_steps"), "expected_steps", 0),
        expected_effects=fields.expected_effects_of(d.get("expected_effects")), workspace=ws,
        scorers=[fields.scorer(s, i, ws is not None) for i, s in enumerate(scorers)],
        metadata=metadata, turns=turns)
    return task if tid is not None else dataclasses.replace(task, id=content_id(task))


def content_id(task: Task) -> str:
    """The id of a task given without one: ``task-`` and a hash of what it holds. Its place
    in its file was its id (``task-<n>``), so a second file's first task replaced the first
    file's; the same task seeded again keeps its id (updated, not copied)."""
    body = {k: v for k, v in task.to_dict().items() if k != "id"}
    text = json.dumps(body, sort_keys=True, default=str, ensure_ascii=False)
    return "task-" + hashlib.sha256(text.encode()).hexdigest()[:12]


# --- loading ------------------------------------------------------------------------------

def parse_tasks(data: Any, source: str) -> list[Task]:
    """Tasks from already-parsed data: a list of task objects or ``{"tasks": [...]}``."""
    def label(n: int, item: Any) -> str:
        tid = item.get("id") if isinstance(item, dict) else None
        return f'{source} task {n} ("{tid[:100]}")' if isinstance(tid, str) else \
            f"{source} task {n}"

    return _collect(((label(n, item), n, None, item) for n, item in
                     enumerate(_task_list(data, source), 1)), source)


def load_tasks(path: str | Path) -> list[Task]:
    """Tasks from a .json, .yaml/.yml or .csv file (see the module docstring for errors)."""
    path = Path(path)
    name, suffix = path.name, path.suffix.lower()
    if suffix not in (".json", ".yaml", ".yml", ".csv"):
        raise ValidationFailed(f"{name}: unsupported task file type {suffix or '(none)'!r}; "
                               f"use .json, .yaml, .yml or .csv")
    try:
        text = path.read_text(encoding="utf-8-sig")  # -sig: spreadsheets write a BOM
    except (OSError, UnicodeDecodeError) as e:
        raise ValidationFailed(f"{name}: cannot read the task file: {e}") from None
    if suffix == ".csv":
        return _collect(_csv_rows(text, name), name)
    try:
        data = json.loads(text) if suffix == ".json" else load_yaml(text, name)
    except json.JSONDecodeError as e:
        raise ValidationFailed(f"{name}: not valid JSON: {e}") from None
    return parse_tasks(data, name)


#: What a YAML file may hold once its aliases are expanded: past any file the master would
#: take (TITAN_MAX_BODY_BYTES, 64 MiB by default), far short of a "billion laughs".
MAX_YAML_NODES = 5_000_000
MAX_YAML_CHARS = 256 * 1024 * 1024


def load_yaml(text: str, name: str) -> Any:
    """A task or spec file's YAML, refused (rather than expanded) when its aliases make it
    larger than :data:`MAX_YAML_NODES` nodes or :data:`MAX_YAML_CHARS` characters: a few
    hundred bytes of nested anchors took 23 s and gigabytes to load, one level more all the
    memory of the machine running ``titan eval``, where pipelines' YAML is refused so."""
    from yaml.nodes import MappingNode, ScalarNode, SequenceNode

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)(text)
    try:
        root = loader.get_single_node()
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ValidationFailed(f"{name}: not valid YAML: {problem}{at}") from None
    if root is None:
        loader.dispose()
        return None
    # Each node's expanded size once (an alias is the same node again): linear in the file.
    size: dict[int, tuple[int, int]] = {}
    stack: list[tuple[Any, bool]] = [(root, False)]
    while stack:
        node, ready = stack.pop()
        if id(node) in size:
            continue
        kids = [] if isinstance(node, ScalarNode) else list(node.value) \
            if isinstance(node, SequenceNode) else [n for kv in node.value for n in kv] \
            if isinstance(node, MappingNode) else []
        if isinstance(node, MappingNode):
            _ids_as_written(node)
        if not ready:
            stack.append((node, True))
            stack.extend((k, False) for k in kids if id(k) not in size)
            continue
        nodes = 1 + sum(size.get(id(k), (0, 0))[0] for k in kids)
        chars = (len(node.value) if isinstance(node, ScalarNode) else 0) + sum(
            size.get(id(k), (0, 0))[1] for k in kids)
        size[id(node)] = (nodes, chars)
        if nodes > MAX_YAML_NODES or chars > MAX_YAML_CHARS:
            line = node.start_mark.line + 1
            raise ValidationFailed(
                f"{name}: the value at line {line} is too large once its YAML aliases are "
                f"expanded (more than {MAX_YAML_NODES:,} nodes or {MAX_YAML_CHARS:,} "
                "characters)", details={"line": line})
    try:
        return loader.construct_document(root)
    except yaml.YAMLError as e:  # a value no safe loader builds (!!python/object...)
        raise ValidationFailed(f"{name}: not valid YAML: {str(e).splitlines()[0]}") from None
    finally:
        loader.dispose()


_STR, _NULL = "tag:yaml.org,2002:str", "tag:yaml.org,2002:null"


def _ids_as_written(mapping: Any) -> None:
    """An ``id`` is the text the file shows (a plain scalar: no style, ``""`` from the C
    loader): YAML 1.1 read ``id: 007`` as 7, ``0x1F`` as 31,
    ``12:30`` as 750 and ``yes`` as true, so ``titan eval trace EVAL 007`` found no task."""
    from yaml.nodes import ScalarNode

    for key, value in mapping.value:
        if isinstance(key, ScalarNode) and key.value == "id" and isinstance(value, ScalarNode) \
                and not value.style and value.tag not in (_STR, _NULL):
            value.tag = _STR


def _task_list(data: Any, source: str) -> list[Any]:
    if isinstance(data, dict) and "tasks" in data:
        extra = sorted(str(k) for k in data if k != "tasks")
        if extra:
            raise ValidationFailed(f"{source}: unknown top-level key {extra[0]!r} (known: tasks)",
                                   details={"row": None, "field": extra[0]})
        data = data["tasks"]
    if not isinstance(data, list):
        raise ValidationFailed(f'{source}: expected a list of tasks or {{"tasks": [...]}}, '
                               f"got {type(data).__name__}")
    return data


def _collect(items: Any, source: str) -> list[Task]:
    """Validate each (where, position, extra-detail, raw) item; refuse duplicate ids."""
    tasks: list[Task] = []
    seen: dict[str, str] = {}
    copies: dict[str, int] = {}  # content ids given so far, and how often
    for where, position, line, raw in items:
        if position > MAX_TASKS:
            raise ValidationFailed(f"{source}: more than {MAX_TASKS:,} tasks; split the file",
                                   details={"row": position, "field": None})
        try:
            task = _parse_task(raw)
        except fields.Invalid as e:
            err = _located(where, position, e)
            if line is not None:
                err.details["line"] = line
            raise err from None
        if isinstance(raw, dict) and raw.get("id") is None:
            # The same task twice without an id: the copies are told apart by their order.
            copies[task.id] = copies.get(task.id, 0) + 1
            if copies[task.id] > 1:
                task = dataclasses.replace(task, id=f"{task.id}-{copies[task.id]}")
        if task.id in seen:
            raise ValidationFailed(f"{where}: duplicate task id {task.id!r} (also {seen[task.id]})",
                                   details={"row": position, "field": "id"})
        seen[task.id] = where
        tasks.append(task)
    return tasks


def _csv_rows(text: str, name: str) -> Any:
    reader = csv.reader(io.StringIO(text, newline=""))
    header = [h.strip() for h in next(reader, [])]
    for col in header:
        if col not in CSV_COLUMNS or header.count(col) > 1:
            what = "duplicate" if col in CSV_COLUMNS else "unknown"
            raise ValidationFailed(f"{name} line 1: {what} column {col!r} "
                                   f"(known: {', '.join(CSV_COLUMNS)})",
                                   details={"row": 0, "field": col})
    if "user_instruction" not in header:
        raise ValidationFailed(f"{name} line 1: the header needs a user_instruction column",
                               details={"row": 0, "field": "user_instruction"})
    row, last_line = 0, reader.line_num
    while True:
        try:
            cells = next(reader, None)
        except csv.Error as e:  # a NUL byte, or a cell over csv's 128 KiB limit
            raise ValidationFailed(f"{name} line {reader.line_num}: unreadable CSV: {e}",
                                   details={"row": row + 1, "field": None}) from None
        if cells is None:
            return
        # A quoted cell may span lines: the record starts right after the previous one ended.
        line, last_line = last_line + 1, reader.line_num
        if not any(c.strip() for c in cells):
            continue  # blank lines at the end of exported sheets
        row += 1
        where = f"{name} row {row} (line {line})"
        if len(cells) > len(header):
            raise ValidationFailed(f"{where}: {len(cells)} cells but the header has "
                                   f"{len(header)} columns",
                                   details={"row": row, "field": None, "line": line})
        d: dict[str, Any] = {}
        for col, cell in zip(header, cells, strict=False):
            if not cell.strip():
                continue  # empty cell = the default
            if col in CSV_JSON_COLUMNS:
                try:
                    d[col] = json.loads(cell)
                except json.JSONDecodeError as e:
                    raise ValidationFailed(f"{where}: {col} is not valid JSON: {e}",
                                           details={"row": row, "field": col,
                                                    "line": line}) from None
            else:
                d[col] = cell
        yield where, row, line, d
