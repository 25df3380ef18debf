"""What an ingestion request may say: runs and batches of actions, checked field by field.

Agents in any language report through the HTTP API, so the master is the one place that
decides what a valid action is. A batch is all or nothing: one bad action rejects it, with
every problem listed by index and field (up to 20), and nothing is stored.
"""

from __future__ import annotations

import hashlib
import re
import time
import uuid
from typing import Any

from titan.errors import ValidationFailed
from titan.formats import run_id_problem, tags_problem
from titan.retention import retention_problem
from titan.status import RUN_STATUSES, RunStatus
from titan.storage.base import Row
from titan.trace.canonical import dumps, utf8

CHANNELS = ("llm", "tool", "clock", "random", "custom", "network")
# How a replay answered a call (see titan.trace.replay): None outside replays.
REPLAY_STATUSES = ("served", "override", "live", "forked", "verified", "unrecorded", "refused",
                   "stopped")
OUTCOMES = ("success", "error", "blocked", "replayed")
USAGE_KEYS = ("input_tokens", "output_tokens", "cached_tokens", "reasoning_tokens")
MAX_BATCH = 10_000
#: The most an action may cost, or a run be budgeted, in USD. No call costs a billion dollars;
#: a bound keeps a run's and an agent's totals finite (two actions at 1e308 summed to inf,
#: which no JSON answer can hold).
MAX_USD = 1e9
#: Token counts past this are no model's: sums over many actions must stay within 64 bits.
MAX_TOKENS = 10**15
#: An ordinal counts one actor's calls of one name: past 2^31-1 it is no counter's, and the
#: column (PostgreSQL's INTEGER) holds no more.
MAX_ORDINAL = 2**31 - 1
#: ~3 years: a span or action longer than that is a clock error, and sums must stay in 64 bits.
MAX_DURATION_NS = 10**17
#: The longest agent id: a run's ``agent_id`` and an agent's own id (PostgreSQL's
#: varchar(200)), wherever one is named.
MAX_AGENT_ID = 200
#: The longest error message an action or a run keeps.
ERROR_CHARS = 100_000
PREVIEW_CHARS = 2_000
_ACTION_KEYS = frozenset({
    "id", "parent_id", "actor", "channel", "name", "ordinal", "inputs", "outputs", "error",
    "outcome", "model", "usage", "cost_usd", "cost_source", "started_at", "duration_ns", "tags",
    "replay_status", "action",
})
_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,64}\Z")
_EPOCH_2000 = 946_684_800.0


class _Problems:
    def __init__(self) -> None:
        self.items: list[Row] = []

    def add(self, index: int | None, field: str, message: str) -> None:
        if len(self.items) < 20:
            self.items.append({"index": index, "field": field, "message": message})

    def raise_if_any(self, what: str, items: list[Any] | None = None) -> None:
        if self.items:
            first = self.items[0]
            where = (f"actions[{first['index']}].{first['field']}" if first["index"] is not None
                     else first["field"])
            if first["index"] is not None and items is not None:
                where += action_label(items[first["index"]])
            more = f" (and {len(self.items) - 1} more problems)" if len(self.items) > 1 else ""
            raise ValidationFailed(f"invalid {what}: {where}: {first['message']}{more}",
                                   details={"errors": self.items})


def action_label(item: Any) -> str:
    """How a refusal names an action of a batch, ``' (the action "search", ordinal 2)'``:
    its position in a batch means nothing to whoever called the tool (the SDK says the
    master's refusal on the agent's stderr)."""
    name = item.get("name") if isinstance(item, dict) else None
    if not isinstance(name, str):
        return ""
    ordinal = item.get("ordinal")
    said = f", ordinal {ordinal}" if type(ordinal) is int else ""
    return f' (the action "{utf8(name[:100])}"{said})'


def _text(p: _Problems, i: int | None, field: str, value: Any, limit: int,
          required: bool = False) -> str | None:
    if value is None:
        if required:
            p.add(i, field, "is required")
        return None
    if not isinstance(value, str) or (required and not value.strip()):
        p.add(i, field, "must be a non-empty string" if required else "must be a string")
        return None
    if len(value) > limit:
        p.add(i, field, f"is longer than {limit} characters")
        return None
    if "\x00" in value:  # PostgreSQL's text holds none (SQLite's would, unlike the export)
        p.add(i, field, "may not contain NUL characters")
        return None
    return value


def _number(p: _Problems, i: int | None, field: str, value: Any, *, integer: bool = False,
            minimum: float = 0.0, maximum: float | None = None) -> Any:
    if value is None:
        return None
    ok = isinstance(value, int) if integer else isinstance(value, int | float)
    if not ok or isinstance(value, bool) or value != value:
        p.add(i, field, "must be an integer" if integer else "must be a number")
        return None
    if value < minimum:
        p.add(i, field, f"must be at least {minimum:g}")
        return None
    if maximum is not None and value > maximum:
        p.add(i, field, f"must be at most {maximum:g}")
        return None
    return value


def tags_value(p: _Problems, i: int | None, value: Any) -> Any:
    problem = tags_problem(value)
    if problem is not None:
        p.add(i, "tags", problem)
        return None
    if isinstance(value, dict) and len(dumps(value)) > 16_384:
        p.add(i, "tags", "is larger than 16 KiB")
        return None
    return value


def payload(value: Any, inline_limit: int, text: str | None = None) -> tuple[Row, bytes | None]:
    """Columns for an input or output value (``text``: its canonical JSON, when the caller
    has it already), and the bytes for the blob store when the value is past the inline
    limit (the column then keeps a preview)."""
    if text is None:
        text = dumps(value)
    elif not text.isascii():
        # A lone surrogate (an OTLP attribute's JSON may escape one) is kept as U+FFFD: it
        # made the encoding below fail, a 500, and the span was held and retried for ever.
        text = utf8(text)
    data = text.encode()  # once: its size, its hash and, past the limit, the blob
    out: Row = {"text": text, "hash": hashlib.sha256(data).hexdigest(), "size": len(data),
                "blob": False}
    if len(data) > inline_limit:
        out.update(text=text[:PREVIEW_CHARS], blob=True)
        return out, data
    return out, None


def parse_actions(body: Any, now: float | None = None) -> list[Row]:
    """Check a ``{"actions": [...]}`` body; returns each action's fields, defaults filled."""
    p = _Problems()
    if not isinstance(body, dict) or not isinstance(body.get("actions"), list):
        raise ValidationFailed('the body must be {"actions": [ ... ]}')
    items = body["actions"]
    if not items:
        raise ValidationFailed("actions is empty")
    if len(items) > MAX_BATCH:
        raise ValidationFailed(f"a batch holds at most {MAX_BATCH} actions, got {len(items)}")
    received = now or time.time()
    latest = received + 86_400
    out: list[Row] = []
    seen: set[str] = set()
    for i, a in enumerate(items):
        if not isinstance(a, dict):
            p.add(i, "", "must be an object")
            continue
        unknown = set(a) - _ACTION_KEYS
        if unknown:
            p.add(i, sorted(unknown)[0], f"unknown field (known: {', '.join(sorted(_ACTION_KEYS))})")
        action_id = a.get("id")
        if action_id is None:
            action_id = uuid.uuid4().hex
        elif not isinstance(action_id, str) or not _ID.match(action_id):
            p.add(i, "id", "must be 1-64 characters of ASCII letters, digits, '.', '_', ':' or '-'")
        elif action_id in seen:
            p.add(i, "id", "appears twice in this batch")
        seen.add(str(action_id))
        parent = a.get("parent_id")
        if parent is not None and (not isinstance(parent, str) or not _ID.match(parent)):
            p.add(i, "parent_id", "must be an action id")
        channel = a.get("channel", "custom")
        if channel not in CHANNELS:
            p.add(i, "channel", f"must be one of {', '.join(CHANNELS)}")
        error = a.get("error")
        error_type = error_message = None
        if isinstance(error, str):  # checked as the object form's message is
            error_type = "Error"
            error_message = _text(p, i, "error", error, ERROR_CHARS)
        elif isinstance(error, dict):
            # Unknown keys are refused, as unknown fields are: {"type", "message", "stack"}
            # lost its stack without a word.
            for key in sorted(set(error) - {"type", "message"})[:1]:
                p.add(i, f"error.{key}", 'is not a field of an error: {"type", "message"}')
            error_type = _text(p, i, "error.type", error.get("type", "Error"), 200)
            error_message = _text(p, i, "error.message", error.get("message", ""),
                                  ERROR_CHARS)
        elif error is not None:
            p.add(i, "error", 'must be a string or {"type", "message"}')
        outcome = a.get("outcome", "error" if error is not None else "success")
        if outcome not in OUTCOMES:
            p.add(i, "outcome", f"must be one of {', '.join(OUTCOMES)}")
        usage = a.get("usage") or {}
        tokens: Row = dict.fromkeys(USAGE_KEYS)
        if not isinstance(usage, dict):
            p.add(i, "usage", "must be an object")
        else:
            for key, value in usage.items():
                if key not in USAGE_KEYS:
                    p.add(i, f"usage.{key}", f"unknown usage type (known: {', '.join(USAGE_KEYS)})")
                else:
                    tokens[key] = _number(p, i, f"usage.{key}", value, integer=True,
                                          maximum=MAX_TOKENS)
        duration = a.get("duration_ns", 0)
        _number(p, i, "duration_ns", duration, integer=True, maximum=MAX_DURATION_NS)
        started = a.get("started_at")
        if started is None:
            # Sent as it ended (seed 004's example action gives no start): it began its
            # duration before the master received it.
            started = received - (duration / 1e9 if isinstance(duration, int) else 0.0)
        elif _number(p, i, "started_at", started) is not None and not (
                _EPOCH_2000 <= started <= latest):
            p.add(i, "started_at", "must be epoch seconds between 2000 and tomorrow")
        name = a.get("name")
        if "action" in a:  # seed 004's example action names its call "action"
            if name is None:
                name = a["action"]
            elif a["action"] != name:
                p.add(i, "action", "is another spelling of name (seed 004's), and differs "
                                   "from it: give one")
        model, cost = a.get("model"), a.get("cost_usd")
        model_field, cost_field = "model", "cost_usd"
        if "action" in a:
            # Seed 004's shape puts an LLM call's model in its inputs and its price in its
            # outputs; only there, since a tool of Titan's own shape may well return a price.
            inputs, outputs = a.get("inputs"), a.get("outputs")
            if model is None and isinstance(inputs, dict) and isinstance(inputs.get("model"), str):
                model, model_field = inputs["model"], "inputs.model"
            if cost is None and isinstance(outputs, dict) and \
                    isinstance(outputs.get("cost_usd"), int | float) and \
                    not isinstance(outputs["cost_usd"], bool):
                cost, cost_field = outputs["cost_usd"], "outputs.cost_usd"
        replay_status = a.get("replay_status")
        if replay_status is not None and replay_status not in REPLAY_STATUSES:
            p.add(i, "replay_status", f"must be one of {', '.join(REPLAY_STATUSES)}")
        out.append({
            "id": action_id, "parent_id": parent,
            "actor": _text(p, i, "actor", a.get("actor", "main"), 500, required=True),
            "channel": channel, "name": _text(p, i, "name" if "name" in a or "action" not in a else "action", name,
                          200, required=True),
            "ordinal": _number(p, i, "ordinal", a.get("ordinal"), integer=True,
                               maximum=MAX_ORDINAL),
            "inputs": a.get("inputs", {}), "outputs": a.get("outputs"),
            "error_type": error_type, "error_message": error_message, "outcome": outcome,
            "model": _text(p, i, model_field, model, 200),
            **tokens,
            "cost_usd": _number(p, i, cost_field, cost, maximum=MAX_USD),
            "cost_source": _text(p, i, "cost_source", a.get("cost_source"), 40),
            "started_at": float(started) if isinstance(started, int | float) else 0.0,
            "duration_ns": duration if isinstance(duration, int) else 0,
            "tags": tags_value(p, i, a.get("tags")),
            "replay_status": replay_status,
        })
    p.raise_if_any("action batch", items)
    return out


def parse_run(body: Any, *, creating: bool) -> Row:
    """Check the body of ``POST /runs`` (creating) or ``PATCH /runs/{id}``."""
    p = _Problems()
    if not isinstance(body, dict):
        raise ValidationFailed("the body must be a JSON object")
    known = {"agent_id", "agent_version", "budget_usd", "tags", "code_version", "status",
             "error", "started_at", "ended_at", "replay_of", "retention_class"} | (
                 {"id", "watched"} if creating else {"without_stages"})
    unknown = set(body) - known
    if unknown:
        p.add(None, sorted(unknown)[0], f"unknown field (known: {', '.join(sorted(known))})")
    out: Row = {}
    if "id" in body:
        problem = run_id_problem(body["id"])
        if problem is not None:
            p.add(None, "id", problem)
        out["id"] = body["id"]
    for field, limit in (("agent_id", MAX_AGENT_ID), ("agent_version", 200), ("code_version", 64),
                         ("error", ERROR_CHARS), ("replay_of", 200)):
        if field in body:
            out[field] = _text(p, None, field, body[field], limit)
    if "watched" in body:
        if not isinstance(body["watched"], bool):
            p.add(None, "watched", "must be true or false")
        out["watched"] = body["watched"] is True
    if "budget_usd" in body:
        out["budget_usd"] = _number(p, None, "budget_usd", body["budget_usd"], maximum=MAX_USD)
    if "tags" in body:
        out["tags"] = tags_value(p, None, body["tags"])
    if "retention_class" in body:
        problem = retention_problem(body["retention_class"])
        if problem is not None:
            p.add(None, "retention_class", problem.removeprefix("retention_class "))
        out["retention_class"] = body["retention_class"]
    # As an action's: a client's clock may run a little ahead, not a run dated years on
    # (it would sit first in the registry for good and never be archived).
    latest = time.time() + 86_400
    for field in ("started_at", "ended_at"):
        if field in body and body[field] is not None:
            value = _number(p, None, field, body[field])
            if value is not None and not _EPOCH_2000 <= value <= latest:
                p.add(None, field, "must be epoch seconds between 2000 and tomorrow")
            out[field] = value
    if out.get("started_at") is not None and out.get("ended_at") is not None \
            and out["ended_at"] < out["started_at"]:
        p.add(None, "ended_at", "is before started_at")
    if "status" in body:
        allowed = (RunStatus.RUNNING,) if creating else (*RUN_STATUSES, "ended")
        if body["status"] not in allowed:
            p.add(None, "status", f"must be one of {', '.join(allowed)}")
        out["status"] = body["status"]
    if "without_stages" in body:
        # How an end said as "ended" ends a run that has no stages (a `trace.run` block's:
        # completed, whatever its handled calls did), in place of the actions' rule.
        if body.get("status") != "ended":
            p.add(None, "without_stages", 'is said only with status "ended"')
        elif body["without_stages"] not in (RunStatus.COMPLETED, RunStatus.FAILED):
            p.add(None, "without_stages", "must be one of completed, failed")
        out["without_stages"] = body["without_stages"]
    p.raise_if_any("run")
    return out
