"""The actor paths spans are recorded under: which sub-agent made a span.

That is not in the span itself: :mod:`.receiver` works it out from the tree, each span's
children acting as its own actor or, below an agent span (``AGENT``, ``invoke_agent``), as
the sub-agent it started. The agent's name (:func:`agent_name`) is written into the action's
tags, so a child arriving after a restart is placed from its recorded parent
(:func:`recorded_agent`); a path past the run service's limit keeps its tail after a hash of
the whole (:func:`actor_path`).
"""

from __future__ import annotations

import hashlib
from typing import Any

from titan.master.otel.attributes import LOOP_NAME, clean, first_str
from titan.master.otel.wire import Span

ACTOR_CHARS = 500  # the longest actor the run service takes


def agent_name(span: Span) -> str:
    """The name an agent span gives its sub-agent in actor paths (no ``/``: it separates)."""
    a = span.attributes
    name = first_str(a, "gen_ai.agent.name", "agent.name", LOOP_NAME) or span.name
    name = clean(name.removeprefix("invoke_agent ").strip().replace("/", "-"), 100)
    return name or "agent"


def children_actor(actor: str, agent: str | None) -> str:
    """The actor of a span's children: its own, or below it the sub-agent it started —
    shortened (:func:`actor_path`) level by level: the receiver keeps one per span, and whole
    paths cost N² characters for N nested agents (~500 MB for a 1 MB request). Each hash
    covers the shortened level above, so sub-agents stay apart, and a late child after a
    restart (placed from its parent's recorded actor) joins its siblings."""
    if agent is None or agent == actor.rsplit("/", 1)[-1]:
        return actor
    return actor_path(f"{actor}/{agent}")


def recorded_agent(tags: Any) -> str | None:
    """The sub-agent a recorded action's span started (None: none), from the tags this
    mapping wrote: its ``agent``; for an action recorded before that was written, an agent
    span's name."""
    otel = tags.get("otel") if isinstance(tags, dict) else None
    if not isinstance(otel, dict):
        return None
    if isinstance(otel.get("agent"), str):
        return otel["agent"] or None
    if str(otel.get("openinference.span.kind") or "").upper() == "AGENT" or str(
            otel.get("gen_ai.operation.name") or "").lower() in ("invoke_agent", "create_agent"):
        name = str(otel.get("span") or "").removeprefix("invoke_agent ").strip()
        return clean(name.replace("/", "-"), 100) or "agent"
    return None


def actor_path(actor: str, limit: int = ACTOR_CHARS) -> str:
    """An actor path as an action holds it (at most ``limit`` characters). A longer one — a
    recursive agent's sub-agents 60 deep — keeps its tail (the sub-agents nearest the span)
    after a hash of the whole path: cut at the limit, every deeper sub-agent became one
    actor, their calls merged and numbered together. A path already shortened (one level
    above, by :func:`children_actor`) is returned as it is."""
    actor = clean(actor, len(actor))
    if len(actor) <= limit:
        return actor
    mark = "…" + hashlib.sha256(actor.encode("utf-8", "surrogatepass")).hexdigest()[:12] + "/"
    tail = actor[len(actor) - (limit - len(mark)):]
    _, slash, whole = tail.partition("/")  # from a name's start, not mid-name
    return mark + (whole if slash and whole else tail)
