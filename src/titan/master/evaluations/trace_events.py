"""An evaluation run's live trace events (``POST /api/v1/runs/{run}/eval/events``): checked
and turned into the run's ``custom`` actions, for the tool proxy (:mod:`.proxy`).

A batch is all or nothing: the first malformed event refuses it (400) and names itself. A
malformed handoff (:mod:`titan.evals.handoffs`) is refused with the code ``bad_handoff``,
which the proxy also records on the run, so the run says why its structure card lacks it.
"""

from __future__ import annotations

import contextlib
import math
import time
import uuid
from datetime import datetime
from typing import Any

from titan.errors import ValidationFailed
from titan.evals import handoffs
from titan.storage.base import Row

EVENT_KINDS = ("assistant_message", "thinking", "system_prompt", "handoff", "custom")
BATCH_LIMIT = 1000


def actions(body: Any, actor: str | None) -> list[Row]:
    """The actions recording ``{"events": [{"kind", "data", "__occurred_at"?, "actor"?}]}``
    (``actor``, or ``actor_id``, else the request's ``X-Titan-Actor``); ValidationFailed
    naming the first bad one."""
    items = body.get("events") if isinstance(body, dict) else None
    if not isinstance(items, list) or not items or len(items) > BATCH_LIMIT:
        raise ValidationFailed('the body must be {"events": [{"kind", "data"}, ...]} '
                               f"(1 to {BATCH_LIMIT} events)")
    out = []
    for i, ev in enumerate(items):
        if not isinstance(ev, dict) or ev.get("kind") not in EVENT_KINDS:
            raise ValidationFailed(f"events[{i}].kind must be one of "
                                   f"{', '.join(EVENT_KINDS)}", details={"index": i})
        named = actor_named(ev, f"events[{i}].", {"index": i})
        if ev["kind"] == "handoff":
            _check_handoff(ev.get("data"), i)
        at = occurred_at(ev, i)
        out.append({"id": uuid.uuid4().hex,
                    "actor": str(named or actor or handoffs.ROOT_ACTOR)[:500],
                    "channel": "custom", "name": ev["kind"], "inputs": ev.get("data"),
                    "outputs": None, "outcome": "success",
                    "started_at": at if at is not None else time.time(), "duration_ns": 0,
                    "tags": {"event": True, "clock": "proxy" if at is None else "agent"}})
    return out


def actor_named(item: Row, where: str, details: Row | None = None) -> str | None:
    """The actor path a tool call or an event names: ``actor``, or ``actor_id``, seed 003's
    word ("actor_id call paths define delegation edges"; ignored, it credited the call to
    the agent itself). Both given must agree; either must be a string."""
    named = None
    for key in ("actor", "actor_id"):
        value = item.get(key)
        if value is None:
            continue
        if not isinstance(value, str):
            raise ValidationFailed(f"{where}{key} must be an actor path (a string), got "
                                   f"{type(value).__name__}",
                                   details={**(details or {}), "field": where + key})
        if named is not None and value != named:
            raise ValidationFailed(f"{where}actor_id is another spelling of {where}actor, "
                                   "and differs from it: give one",
                                   details={**(details or {}), "field": where + "actor_id"})
        named = value
    return named or None


def _check_handoff(data: Any, index: int) -> None:
    why = handoffs.problem(data)
    if why is None:
        return
    where = f"events[{index}].data" + (" " if why.startswith("must") else ".")
    raise ValidationFailed(f"a malformed handoff: {where}{why}", code="bad_handoff",
                           details={"index": index, "field": "data"})


def unknown_targets(recorded: list[Row], topology: Row | None, roots: tuple[str, ...]
                    ) -> list[str]:
    """A warning for each handoff to a sub-agent the declared topology does not name: kept
    (the card shows it as undeclared, seed 003's divergence), and said on the run."""
    names = sorted(handoffs.declared_names(topology))
    return [f"a handoff to {a['inputs']['to']!r}, which the declared topology does not name "
            f"(declared: {', '.join(names)}); it shows as an undeclared sub-agent"
            for a in recorded if a["name"] == "handoff"
            and handoffs.unknown(a["inputs"]["to"], topology, roots)]


def occurred_at(event: Row, index: int) -> float | None:
    """When the agent says an event happened (``__occurred_at``, or ``occurred_at``): epoch
    seconds or an ISO 8601 time; None when it does not say. Anything else is a 400."""
    key = "__occurred_at" if "__occurred_at" in event else "occurred_at"
    value = event.get(key)
    if value is None:
        return None
    at: float | None = None
    if isinstance(value, int | float) and not isinstance(value, bool):
        at = float(value)
    elif isinstance(value, str):
        with contextlib.suppress(ValueError):
            at = datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    if at is None or not math.isfinite(at) or not 0 <= at < 1e11:
        raise ValidationFailed(f"events[{index}].{key} must be epoch seconds or an ISO 8601 "
                               f"time, got {value!r}", details={"index": index, "field": key})
    return at
