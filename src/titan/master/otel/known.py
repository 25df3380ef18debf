"""What the database already holds, as the OTLP receiver asks it before holding spans.

* Which runs exist: a span whose resource names one (``titan.run.id``) is a span Titan
  exported itself — this master's endpoint pointed at itself, or a collector fanning out back
  into it — and importing it again duplicated the run as ``otel-<trace id>``.
* Which spans of a run are recorded, and under which actor: after a restart (or once a trace
  was forgotten) the receiver's memory of them is gone, and a span sent again waited out the
  hold before it was found a duplicate, a late child of a recorded sub-agent lost its actor.

Reads run in a pool thread (``Engine.read``), a bounded list of ids at a time.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol, TypeVar

from titan.storage.base import ActionQuery, Row, RunQuery, Transaction, iter_chunks

T = TypeVar("T")
#: Ids asked for in one statement (drivers bound a statement's parameters).
CHUNK = 500


class _Reader(Protocol):
    def read(self, fn: Callable[[Transaction], T]) -> Awaitable[T]: ...


class Known:
    """Lookups of what is recorded (the receiver's ``known``; None in tests that need none)."""

    def __init__(self, engine: _Reader) -> None:
        self.engine = engine

    async def runs(self, run_ids: Sequence[str]) -> set[str]:
        """Those of ``run_ids`` this master records (archived ones too)."""
        def read(tx: Transaction) -> set[str]:
            found: set[str] = set()
            for chunk in iter_chunks(sorted(set(run_ids)), CHUNK):
                rows, _ = tx.list_runs(RunQuery(ids=tuple(chunk), archived=None),
                                       len(chunk), 0)
                found.update(r["id"] for r in rows)
            return found

        return await self.engine.read(read) if run_ids else set()

    async def actions(self, run_id: str, ids: Sequence[str]) -> list[Row]:
        """Those of ``ids`` the run holds as actions: each one's ``id``, ``actor`` and
        ``tags`` (the payloads are not read)."""
        def read(tx: Transaction) -> list[Row]:
            found: list[Row] = []
            for chunk in iter_chunks(sorted(set(ids)), CHUNK):
                rows, _ = tx.list_actions(run_id, ActionQuery(ids=tuple(chunk)), len(chunk),
                                          preview=1)
                found.extend({k: r[k] for k in ("id", "actor", "tags")} for r in rows)
            return found

        return await self.engine.read(read) if ids else []


def resource_run(resource: dict[str, Any]) -> str | None:
    """The run a span's resource says Titan exported it from, if any."""
    value = resource.get("titan.run.id")
    return value if isinstance(value, str) and value else None
