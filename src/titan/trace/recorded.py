"""What a replay knows of the run it replays: its recorded calls (:class:`Recorded`), one
actor's recording as fetched (:class:`ActorRecording`), and how each call is answered
(:class:`Decision`). The data of :mod:`titan.trace.replay`, which decides."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from titan.trace.canonical import revived


@dataclass(frozen=True)
class Recorded:
    """One action of the run being replayed (the latest attempt's, for a retried job)."""

    seq: int
    actor: str
    channel: str
    name: str
    ordinal: int
    inputs_hash: str
    outputs: str | None
    outcome: str
    error_type: str | None = None
    error_message: str | None = None
    model: str | None = None
    #: The fields the master's PII redaction changed before storing them (inputs, outputs,
    #: error): the recording holds placeholders there, not what the call saw.
    redacted: tuple[str, ...] = ()
    #: The action's id and the id of the action it ran inside (None from an older master).
    id: str | None = None
    parent_id: str | None = None
    #: How long the call took (None from an older master).
    duration_ns: int | None = None

    @property
    def key(self) -> tuple[str, str, str, int]:
        return (self.actor, self.channel, self.name, self.ordinal)

    def value(self) -> Any:
        """What the call returned: its recorded outputs, bytes as bytes again."""
        if self.outputs is None:
            return None
        value = json.loads(self.outputs)
        return revived(value) if '"$bytes":' in self.outputs else value


@dataclass
class Decision:
    """How one call is answered. ``status`` is recorded as the action's ``replay_status``."""

    status: str  # served | override | live | forked | verified | unrecorded | refused | stopped
    ordinal: int
    recorded: Recorded | None = None
    divergence: str | None = None  # input_mismatch | name_mismatch | extra
    outputs: Any = None  # what a served/override call returns
    #: The recording predates kept bytes (canonical.LOST_BYTES): its inputs matched as they
    #: were hashed then, and the call's action is recorded the same way.
    legacy_bytes: bool = False
    #: Set when the call is another ``titan.trace.run`` block's than the replayed run's: the
    #: run that block was in the original ("" for a block the original did not open).
    of: str | None = None

    @property
    def serves(self) -> bool:
        return self.status in ("served", "override")

    @property
    def live(self) -> bool:
        return self.status in ("live", "forked", "verified", "unrecorded")


@dataclass
class ActorRecording:
    """The recording of one actor (and its sub-actors), fetched once per process."""

    by_key: dict[tuple[str, str, str, int], Recorded] = field(default_factory=dict)
    # Per actor path: its recorded calls in order, to tell a name mismatch from an extra call.
    order: dict[str, list[Recorded]] = field(default_factory=dict)
    # Per action id: the calls recorded inside it (a tool that called tools), in seq order.
    children: dict[str, list[Recorded]] = field(default_factory=dict)
    # Per (actor, channel, name): its recorded calls by ordinal, for calls that started in
    # another order than they did (see Session._claim).
    calls: dict[tuple[str, str, str], list[Recorded]] = field(default_factory=dict)
    # The same, of the processes forked from one actor together (forks.pooled).
    pooled: dict[tuple[str, str, str], list[Recorded]] = field(default_factory=dict)

    def nested(self, recorded: Recorded) -> list[Recorded]:
        """Every call recorded inside ``recorded``, at any depth, in seq order."""
        out, stack = [], [recorded]
        while stack:
            below = self.children.get(stack.pop().id or "", [])
            out.extend(below)
            stack.extend(below)
        return sorted(out, key=lambda r: r.seq)
