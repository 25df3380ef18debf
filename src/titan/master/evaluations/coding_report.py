"""A coding run's report (``POST /runs/{id}/eval/coding``, sent by
:mod:`titan.evals.coding_job`): its fields and their shapes, checked before it is stored.

Stored unchecked, a report of the wrong shape waited for its readers: a trajectory of ``5``
broke the run's page, one of ``"ls"`` the judge (which reads each step as an object), and a
misspelt field was dropped without a word. Each field may be null (the job's report of a
failure before grading leaves some out); otherwise it has the type below, and a list holds
what it should, each refusal naming the field (``trajectory[0]``).
"""

from __future__ import annotations

from typing import Any

from titan.errors import ValidationFailed
from titan.master.scheduling.validation import unknown_field
from titan.storage.base import Row

_TEXT = ("diff", "overall", "trajectory_source", "agent_output_tail", "eval_error")
_COUNTS = ("agent_exit_code", "turns_planned")
_OBJECTS = ("scorers", "trajectory", "turns")  # lists of objects
#: Every field of a report, in the order the job writes them.
FIELDS = ("diff", "changed_paths", "scorers", "overall", "trajectory", "trajectory_source",
          "agent_exit_code", "agent_output_tail", "eval_error", "turns", "turns_planned")


def checked(body: Any) -> Row:
    """The report to store, every field present (null when left out), or the 400 that names
    the first field of the wrong shape."""
    if not isinstance(body, dict):
        raise ValidationFailed(f"a coding report is a JSON object {{{', '.join(FIELDS)}}}, "
                               f"got {type(body).__name__}", details={"field": "body"})
    unknown = unknown_field(body, frozenset(FIELDS))
    if unknown is not None:
        raise ValidationFailed(unknown[1], details={"field": unknown[0]})
    for name in _TEXT:
        _expect(body.get(name), str, name, "a string")
    for name in _COUNTS:
        value = body.get(name)
        _expect(value, int, name, "an integer")
        if isinstance(value, bool):
            _refuse(name, "an integer", value)
    paths = _expect(body.get("changed_paths"), list, "changed_paths", "a list of paths")
    for i, path in enumerate(paths or []):
        _expect(path, str, f"changed_paths[{i}]", "a path (a string)")
    for name in _OBJECTS:
        items = _expect(body.get(name), list, name, "a list of objects")
        for i, item in enumerate(items or []):
            if not isinstance(item, dict):
                _refuse(f"{name}[{i}]", "an object", item)
    return {name: body.get(name) for name in FIELDS}


def _expect(value: Any, kind: type, field: str, what: str) -> Any:
    if value is not None and not isinstance(value, kind):
        _refuse(field, what, value)
    return value


def _refuse(field: str, what: str, value: Any) -> None:
    raise ValidationFailed(f"{field} must be {what} (or null), got {type(value).__name__}",
                           details={"field": field})
