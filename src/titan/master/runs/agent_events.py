"""An agent run's live event, ``agent_run_updated``: the run's status beside its stage's.

Published by the run service, not the engine: the engine knows only the stage (a DAG), whose
COMPLETED said as the run's read "done" while the run's driver, still going, could submit
another. ``status`` is :func:`~titan.master.scheduling.views.run_status`'s (what
``GET /agent-runs/{id}`` and the Agent Runs page say); ``dag_id`` and ``stage_status`` name
the stage whose creation or change it follows, or are null when the run itself changed (its
driver ended it, its first action came, a retry reopened it).

The status is read after the commit that changed it, off the event loop. Reads of one run are
taken one at a time, each answering every change that came while the one before ran: two in
flight could finish out of order and leave a listener on an older status than the last.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from typing import Any

from titan.master.events import EventHub
from titan.master.scheduling.engine_core import EngineCore
from titan.master.scheduling.views import agent_run_status

log = logging.getLogger("titan.master")

#: (stage id, stage status), or (None, None) for a change of the run itself.
Change = tuple[int | None, str | None]


class AgentRunEvents:
    """Publishes ``agent_run_updated`` for the runs whose stages or rows changed."""

    def __init__(self, engine: EngineCore, hub: EventHub,
                 spawn: Callable[[Coroutine[Any, Any, None]], None]) -> None:
        self.engine, self.hub, self.spawn = engine, hub, spawn
        #: Changes waiting for a read of their run's status, by run; a run here has a read
        #: under way (or about to start), which takes them when it is done.
        self.waiting: dict[str, list[Change]] = {}

    def changed(self, run_id: str, dag_id: int | None = None,
                stage_status: str | None = None) -> None:
        """Run ``run_id`` changed (committed): stage ``dag_id`` is now ``stage_status``, or
        (no stage) the run's own row changed."""
        if not self.hub.watched:
            return  # no one listens: no read (a page that subscribes later reads the state)
        queued = self.waiting.get(run_id)
        if queued is not None:
            queued.append((dag_id, stage_status))
            return
        self.waiting[run_id] = [(dag_id, stage_status)]
        self.spawn(self._publish(run_id))

    async def _publish(self, run_id: str) -> None:
        try:
            while self.waiting[run_id]:
                changes, self.waiting[run_id] = self.waiting[run_id], []
                try:
                    status = await self.engine.read(lambda tx: agent_run_status(tx, run_id))
                except Exception as exc:  # noqa: BLE001 - the database away: pages resync
                    log.warning("agent_run_updated for %s not published: %r", run_id, exc)
                    continue
                if status is None:  # deleted meanwhile (retention)
                    continue
                for dag_id, stage_status in changes:
                    self.hub.publish("agent_run_updated", {
                        "id": run_id, "status": status, "dag_id": dag_id,
                        "stage_status": stage_status})
        finally:
            del self.waiting[run_id]
