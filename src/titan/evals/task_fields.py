"""The checks of one task's fields: each raises :class:`Invalid` naming the field.

:mod:`titan.evals.tasks` builds a task from them and turns an :class:`Invalid` into a
``ValidationFailed`` that says where (file, row, line) the field is. Kept apart so the task
model and its loaders stay readable as the fields grow (workspaces, scorers, sessions, seed
003's aliases).
"""

from __future__ import annotations

import json
from pathlib import PurePosixPath
from typing import Any

from titan.evals import criteria
from titan.evals.ledger import validate_op

#: Seed 003's name for the simulated world's seed: ``odyssey_seed.behavior_instructions`` (and
#: the other keys here) are accepted as aliases of the task's own fields.
ODYSSEY_SEED_FIELDS = ("behavior_instructions", "initial_state", "failure_rules")
MAX_TURNS = 50
MAX_TURN_CHARS = 20_000  # as a task's own user_instruction
SCORER_FIELDS = {"command": ("type", "command", "name", "timeout_s"),
                 "allowed_paths": ("type", "paths"), "forbid_paths": ("type", "paths"),
                 criteria.LLM_JUDGE: criteria.FIELDS}


class Invalid(Exception):
    """One problem in one field; turned into ValidationFailed once the location is known."""

    def __init__(self, field: str | None, message: str) -> None:
        super().__init__(message)
        self.field, self.message = field, message


def check_keys(d: dict[str, Any], known: tuple[str, ...], prefix: str) -> None:
    for key in d:
        if key not in known:
            name = f"{prefix}{key}"
            raise Invalid(name, f"unknown field {name!r} (known: {', '.join(known)})")


def check_json(value: Any, name: str) -> None:
    # YAML happily yields dates and sets; the master stores JSON, so refuse them here.
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise Invalid(name, f"{name} is not JSON-compatible: {e}") from None


def count(value: Any, name: str, minimum: int) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise Invalid(name, f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def text(value: Any, name: str) -> str:
    if value is None:
        raise Invalid(name, f"{name} is required")
    if not isinstance(value, str) or not value.strip():
        raise Invalid(name, f"{name} must be a non-empty string, got {value!r}")
    return value


def initial_state_of(state: Any) -> dict[str, dict[str, dict[str, Any]]]:
    shape = "initial_state must be {entity_type: {entity_id: {attr: value}}}"
    if not isinstance(state, dict):
        raise Invalid("initial_state", f"{shape}, got {type(state).__name__}")
    for etype, entities in state.items():
        if not isinstance(etype, str) or not isinstance(entities, dict):
            raise Invalid("initial_state", f"{shape}; bad entry {etype!r}")
        for eid, attrs in entities.items():
            # YAML reads `1:` as an int; ledger ops name ids as strings, so they must match.
            if not isinstance(eid, str):
                raise Invalid("initial_state", f"initial_state.{etype}: entity id {eid!r} "
                                                f"must be a string (quote it)")
            if not isinstance(attrs, dict) or not all(isinstance(k, str) for k in attrs):
                raise Invalid("initial_state", f"initial_state.{etype}.{eid} must be an "
                                                f"object of attributes, got {attrs!r}")
    check_json(state, "initial_state")
    return state


def expected_effects_of(raw: Any) -> list[dict[str, Any]] | None:
    """The ledger operations a run must have applied by its end (``[]``: none at all), in
    the trace's Changes format; an ``add`` may leave out ``id`` when the simulator picks it
    (a new ticket's number)."""
    if raw is None:
        return None
    if not isinstance(raw, list):
        raise Invalid("expected_effects", "expected_effects must be a list of ledger "
                                          "operations ({op, type, id, attrs})")
    out = []
    for i, op in enumerate(raw):
        name = f"expected_effects[{i}]"
        if isinstance(op, dict) and op.get("op") == "add" and op.get("id") is None:
            problem = validate_op({**op, "id": "*"})  # any new id will do
        else:
            problem = validate_op(op)
        if problem:
            raise Invalid("expected_effects", f"{name}: {problem}")
        check_keys(op, ("op", "type", "id", "attrs", "name", "value"), name + ".")
        check_json(op, name)
        # `value: null` is a flag's value; other nulls are fields left out.
        out.append({k: v for k, v in op.items() if v is not None or k == "value"})
    return out


def workspace_of(ws: Any) -> dict[str, Any]:
    if not isinstance(ws, dict):
        raise Invalid("workspace", f"workspace must be an object, got {type(ws).__name__}")
    check_keys(ws, ("files", "setup"), "workspace.")
    files, setup = ws.get("files") or {}, ws.get("setup") or []
    if not isinstance(files, dict) or not all(isinstance(t, str) for t in files.values()):
        raise Invalid("workspace", "workspace.files must be an object {relpath: text}")
    for rel in files:
        # The files are written under a sandbox: refuse paths that would escape it.
        p = PurePosixPath(str(rel))
        if not rel or p.is_absolute() or ".." in p.parts or "\\" in str(rel):
            raise Invalid("workspace", f"workspace.files: {rel!r} must be a relative path "
                                        f"without '..'")
    if not isinstance(setup, list) or not all(isinstance(c, str) for c in setup):
        raise Invalid("workspace", "workspace.setup must be a list of shell commands")
    return {"files": dict(files), "setup": list(setup)}


def scorer(s: Any, n: int, has_workspace: bool) -> dict[str, Any]:
    name = f"scorers[{n}]"
    kind = s.get("type") if isinstance(s, dict) else None
    if not isinstance(s, dict) or kind not in SCORER_FIELDS:
        raise Invalid("scorers", f"{name} must be an object with type "
                                  f"{' | '.join(SCORER_FIELDS)}, got {s!r}")
    if kind == criteria.LLM_JUDGE:
        # A downstream criterion (seed 003): scored by the master with the judge, on any task.
        try:
            return criteria.parse(s)
        except criteria.CriterionInvalid as exc:
            raise Invalid("scorers", f"{name}{'.' + exc.field if exc.field else ''}: "
                                     f"{exc}") from None
    check_keys(s, SCORER_FIELDS[kind], name + ".")
    if kind == "command":
        if not has_workspace:
            raise Invalid("scorers", f"{name} is a command scorer, which needs a workspace")
        text(s.get("command"), name + ".command")
        if "name" in s:
            text(s["name"], name + ".name")
        t = s.get("timeout_s")
        if t is not None and (isinstance(t, bool) or not isinstance(t, int | float) or t <= 0):
            raise Invalid("scorers", f"{name}.timeout_s must be a positive number, got {t!r}")
    else:
        paths = s.get("paths")
        if not isinstance(paths, list) or not paths or not all(
                isinstance(p, str) and p for p in paths):
            raise Invalid("scorers", f"{name}.paths must be a non-empty list of globs")
    return dict(s)


def or_default(d: dict[str, Any], key: str, default: Any) -> Any:
    # null means "not given" (JSON exports write every key), but [] for an object is an error.
    value = d.get(key)
    return default if value is None else value


def fold_odyssey_seed(d: dict[str, Any]) -> None:
    """Fold seed 003's ``odyssey_seed`` object into the task's own fields (in place)."""
    seed = d.pop("odyssey_seed", None)
    if seed is None:
        return
    if not isinstance(seed, dict):
        raise Invalid("odyssey_seed", "odyssey_seed must be an object with "
                                       f"{', '.join(ODYSSEY_SEED_FIELDS)}")
    check_keys(seed, ODYSSEY_SEED_FIELDS, "odyssey_seed.")
    for key, value in seed.items():
        if d.get(key) is not None and d[key] != value:
            raise Invalid(f"odyssey_seed.{key}", f"odyssey_seed.{key} and {key} are both "
                                                  "given and differ: give one")
        d[key] = value


def turns_of(raw: Any, has_workspace: bool) -> list[dict[str, Any]]:
    if raw == []:
        return []
    if not has_workspace:
        raise Invalid("turns", "turns make a multi-turn coding session, which needs a "
                                "workspace")
    if not isinstance(raw, list) or not 1 <= len(raw) <= MAX_TURNS:
        raise Invalid("turns", f"turns must be a list of 1 to {MAX_TURNS} turns")
    out = []
    for i, turn in enumerate(raw):
        name = f"turns[{i}]"
        if isinstance(turn, str):
            turn = {"user_instruction": turn}  # a turn may be just its instruction
        if not isinstance(turn, dict):
            raise Invalid("turns", f"{name} must be an instruction or an object with "
                                    "user_instruction and scorers")
        check_keys(turn, ("user_instruction", "scorers"), name + ".")
        instruction = text(turn.get("user_instruction"), f"{name}.user_instruction")
        if len(instruction) > MAX_TURN_CHARS:
            raise Invalid("turns", f"{name}.user_instruction has {len(instruction)} characters;"
                                   f" at most {MAX_TURN_CHARS}")
        scorers = or_default(turn, "scorers", [])
        if not isinstance(scorers, list):
            raise Invalid("turns", f"{name}.scorers must be a list")
        out.append({"user_instruction": instruction,
                    "scorers": [scorer(s, j, True) for j, s in enumerate(scorers)]})
    return out


