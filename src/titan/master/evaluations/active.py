"""What an evaluation run in flight is, shared by the service and its parts (a leaf).

The service (:mod:`~titan.master.evaluations.service`) owns the runs in flight and their
lifecycle; the proxy and the dispatcher are handed only what they use — these types, the
storage engine, the run service, the egress policy and the few service calls named by
:class:`RunLifecycle` — never the service itself.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Protocol

from titan.evals.failures import match_failure_rule
from titan.evals.ledger import Ledger
from titan.evals.tasks import FailureRule
from titan.master.auth.tokens import Principal
from titan.storage.base import Row

#: Who the evaluation machinery acts as when it writes to a run.
ADMIN = Principal(role="admin", name="evaluations")
#: Starts background work that outlives the request (the service keeps it referenced);
#: the future lets its starter cancel it.
Spawn = Callable[[Coroutine[Any, Any, Any]], "asyncio.Future[Any]"]


class RunLifecycle(Protocol):
    """The service calls that move a run along, as the dispatcher needs them."""

    async def mark_running(self, run_id: str) -> bool: ...

    async def settle(self, run_id: str, status: str, error_class: str | None = None,
                     detail: str | None = None, extra: Row | None = None) -> Row: ...


@dataclass
class ActiveRun:
    """What the proxy needs at hand while a run is in flight (rebuilt at master start)."""

    row: Row
    task: Row
    agent: Row
    ledger: Ledger
    calls: dict[str, int] = field(default_factory=dict)  # tool → calls so far
    fired: dict[int, int] = field(default_factory=dict)  # failure rule index → times fired
    history: list[Row] = field(default_factory=list)
    refusals: list[Row] = field(default_factory=list)  # proxy requests refused, and why
    last_source: str | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    rules: list[FailureRule] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.rules = [FailureRule.from_dict(r) for r in self.task.get("failure_rules") or []]

    @property
    def run_id(self) -> str:
        return str(self.row["id"])

    def recall(self, calls: list[Row]) -> None:
        """After a master restart: the world, the per-tool call counts and the rules fired,
        from the calls recorded so far (rule matching is deterministic, so replaying it over
        the injected calls finds the same rules)."""
        if calls:
            self.ledger = Ledger.from_snapshot(calls[-1]["state"])
        for call in calls:
            tool = call["tool"]
            self.calls[tool] = self.calls.get(tool, 0) + 1
            if call["source"] == "injected":
                hit = match_failure_rule(self.rules, tool, call["arguments"], self.calls[tool],
                                         self.fired)
                if hit is not None:
                    self.fired[hit] = self.fired.get(hit, 0) + 1
            self.last_source = call["source"]


def dumps_short(value: Any, limit: int = 100_000) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text[:limit]
