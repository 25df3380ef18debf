"""One finished action queued for the master: the record every channel builds.

Every way an action is recorded — ``@titan.tool``, ``titan.trace.action``, the LLM hooks, the
clock and random wrappers, a replay's refused connection — ends here, so an action's shape is
written once. Below :mod:`titan.trace.actions`, :mod:`titan.trace.ambient` and
:mod:`titan.trace.replay`, which all record through it.
"""

from __future__ import annotations

from typing import Any

from titan.trace import canonical, context, replayed_errors
from titan.trace.canonical import dumps
from titan.trace.recorder import RECORDER


def emit(run: context.RunHandle, *, channel: str, name: str, inputs: Any, outputs: Any,
         started_at: float, duration_ns: int, outcome: str = "success",
         error: BaseException | None = None, action_id: str | None = None,
         parent_id: str | None = None, actor: str | None = None, model: str | None = None,
         usage: dict[str, int] | None = None, cost_usd: float | None = None,
         cost_source: str | None = None, tags: Any = None, ordinal: int | None = None,
         replay_status: str | None = None) -> str:
    """Queue one finished action of ``run``; returns its id. ``ordinal`` is the one the call
    took when it started (calls that do not take one get the next at the end)."""
    actor = actor or context.current_actor(run)
    action_id = action_id or context.new_action_id()
    meta: dict[str, Any] = {
        "id": action_id, "actor": actor, "channel": channel, "name": name,
        "ordinal": run.next_ordinal(actor, channel, name) if ordinal is None else ordinal,
        "outcome": outcome, "started_at": started_at, "duration_ns": duration_ns,
    }
    if replay_status is not None:
        meta["replay_status"] = replay_status
    if parent_id is None:
        parent_id = context.current_parent()
    if parent_id is not None:
        meta["parent_id"] = parent_id
    if error is not None:
        meta["error"] = {"type": canonical.storable_text(type(error).__name__)[:200],
                         "message": canonical.storable_text(_said(error)[:100_000])}
    if model is not None:
        meta["model"] = model
    if usage:
        meta["usage"] = usage
    if cost_usd is not None:
        meta["cost_usd"] = cost_usd
        run.unsent_cost += cost_usd
    if cost_source is not None:
        meta["cost_source"] = cost_source
    if tags is not None:
        meta["tags"] = tags
    if error is not None and outputs is None and replay_status not in ("stopped", "refused"):
        # A failed call returned nothing: its outputs hold what rebuilds its exception in a
        # replay (its class by module, its data). A replay's own refusals are not the call's.
        outputs = replayed_errors.payload(error)
    if run.shadow_of is not None:
        return action_id  # a replay's other block: answered from its own run, recorded nowhere
    RECORDER.put("action", run, (meta, dumps(inputs),
                                 None if outputs is None else canonical.outputs(outputs),
                                 cost_usd or 0.0))
    return action_id


def _said(error: BaseException) -> str:
    """What an exception says, even when its ``__str__`` itself fails: the recording must
    never replace the user's exception with one of its own."""
    try:
        return str(error)
    except Exception as exc:  # noqa: BLE001 - any failure of the user's __str__
        return f"<{type(error).__name__}: its str() raised {type(exc).__name__}>"
