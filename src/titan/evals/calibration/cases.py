"""The labelled cases: tasks, recorded runs and the verdict a careful reviewer gives them.

Each YAML file beside this module is a list of cases (README.md has the format and the
labelling rules). A case's task goes through the ordinary task loader, so a case is a task
Titan would accept; its calls are replayed through the world ledger from the task's
``initial_state``, so each recorded call carries the operations applied and the state after
it, exactly as the tool proxy records them. What the judge then receives is the shape
:mod:`titan.master.evaluations.judging` hands it for a real run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from titan.errors import ValidationFailed
from titan.evals.findings import ODYSSEY, source_name
from titan.evals.ledger import Ledger
from titan.evals.tasks import Task, load_yaml

#: The set shipped with Titan: every ``*.yaml`` in this package.
DEFAULT_SET = Path(__file__).resolve().parent
LABELS = ("PASS", "FAIL")
CATEGORIES = ("correct_completion", "wrong_answer", "claimed_not_done", "said_badly",
              "refusal", "behaviour_rules", "tool_failure")
CASE_FIELDS = ("id", "category", "label", "reason", "task", "calls", "final_response",
               "messages")
CALL_FIELDS = ("tool", "arguments", "response", "source", "error", "ops")


@dataclass(frozen=True)
class Case:
    """One labelled run: ``task`` as :meth:`Task.to_dict` gives it, ``run`` as the judge
    reads it (final_response, messages, tool_calls, status, error_class)."""

    id: str
    category: str
    label: str
    reason: str
    task: dict[str, Any]
    run: dict[str, Any]
    source: str  # the file it came from


def load_set(path: str | Path | None = None) -> list[Case]:
    """The cases of one file, or of every ``*.yaml`` in a directory (default: the shipped
    set), in file then case order. A malformed case raises ``ValidationFailed`` naming it."""
    root = Path(path) if path is not None else DEFAULT_SET
    files = sorted(root.glob("*.yaml")) if root.is_dir() else [root]
    if not files:
        raise ValidationFailed(f"{root}: no *.yaml calibration files there")
    cases: list[Case] = []
    seen: set[str] = set()
    for file in files:
        try:
            text = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:  # a file that is not UTF-8 text: one line
            raise ValidationFailed(f"{file}: cannot read the calibration file: {exc}") \
                from None
        data = load_yaml(text, str(file))  # its aliases held to a size, as a task file's
        if not isinstance(data, list):
            raise ValidationFailed(f"{file.name}: expected a list of cases")
        for n, raw in enumerate(data, 1):
            case = _case(raw, f"{file.name} case {n}", file.name)
            if case.id in seen:
                raise ValidationFailed(f"{file.name}: duplicate case id {case.id!r}")
            seen.add(case.id)
            cases.append(case)
    return cases


def _case(raw: Any, where: str, source: str) -> Case:
    if not isinstance(raw, dict):
        raise ValidationFailed(f"{where}: a case must be an object")
    where = f"{where} ({raw.get('id')!r})"
    unknown = sorted(set(raw) - set(CASE_FIELDS))
    if unknown:
        raise ValidationFailed(f"{where}: unknown field {unknown[0]!r} "
                               f"(known: {', '.join(CASE_FIELDS)})")
    for key in ("id", "reason", "final_response"):
        if not isinstance(raw.get(key), str) or not raw[key].strip():
            raise ValidationFailed(f"{where}: {key} must be a non-empty string")
    if raw.get("label") not in LABELS:
        raise ValidationFailed(f"{where}: label must be PASS or FAIL, got {raw.get('label')!r}")
    if raw.get("category") not in CATEGORIES:
        raise ValidationFailed(f"{where}: category must be one of {', '.join(CATEGORIES)}, "
                               f"got {raw.get('category')!r}")
    if not isinstance(raw.get("task"), dict):
        raise ValidationFailed(f"{where}: task must be an object (a task, as task files hold)")
    task = Task.from_dict({**raw["task"], "id": raw["id"]}, where)
    calls = _calls(raw.get("calls") or [], task, where)
    final = raw["final_response"].strip()
    messages = raw.get("messages")
    if messages is None:
        messages = _messages(task.user_instruction, calls, final)
    elif not isinstance(messages, list):
        raise ValidationFailed(f"{where}: messages must be a list of chat messages")
    run = {"final_response": final, "messages": messages, "tool_calls": calls,
           "status": "completed", "error_class": None}
    return Case(raw["id"], raw["category"], raw["label"], raw["reason"].strip(),
                task.to_dict(), run, source)


def _calls(raw: Any, task: Task, where: str) -> list[dict[str, Any]]:
    """The recorded calls, each with the ledger's applied ops and the state after it."""
    if not isinstance(raw, list):
        raise ValidationFailed(f"{where}: calls must be a list")
    ledger = Ledger(task.initial_state)
    calls = []
    for seq, call in enumerate(raw, 1):
        at = f"{where} call {seq}"
        if not isinstance(call, dict) or not isinstance(call.get("tool"), str):
            raise ValidationFailed(f"{at}: a call needs a tool name")
        unknown = sorted(set(call) - set(CALL_FIELDS))
        if unknown:
            raise ValidationFailed(f"{at}: unknown field {unknown[0]!r} "
                                   f"(known: {', '.join(CALL_FIELDS)})")
        applied, violations = ledger.apply(call.get("ops") or [])
        if violations:
            # A case's world must be consistent: a violation here is a typo in the case.
            raise ValidationFailed(f"{at}: ledger operation refused: {violations[0]['reason']}")
        calls.append({"seq": seq, "actor": "agent", "tool": call["tool"],
                      "arguments": call.get("arguments") or {},
                      "response": call.get("response"),
                      "source": source_name(call.get("source") or ODYSSEY),
                      "error": call.get("error"), "latency_ms": 0.0, "ops": applied,
                      "violations": [], "state": ledger.snapshot(), "at": float(seq)})
    return calls


def _messages(instruction: str, calls: list[dict[str, Any]],
              final: str) -> list[dict[str, Any]]:
    """The conversation as a chat agent would have had it, rebuilt from the calls."""
    out: list[dict[str, Any]] = [{"role": "user", "content": instruction}]
    for call in calls:
        out.append({"role": "assistant", "content": "",
                    "tool_calls": [{"name": call["tool"], "arguments": call["arguments"]}]})
        out.append({"role": "tool", "name": call["tool"],
                    "content": json.dumps(call["response"], ensure_ascii=False)})
    out.append({"role": "assistant", "content": final})
    return out
