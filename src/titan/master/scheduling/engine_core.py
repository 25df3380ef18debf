"""What the engine's parts use of the engine: one Protocol for all of them, and its stage hooks.

Recovery (:mod:`.engine_recovery`), submission (:mod:`.engine_submission`), cancel and retry
(:mod:`.engine_control`) and the workers' side (:mod:`.engine_workers`) are pieces of
:class:`~titan.master.scheduling.engine.Engine` kept in their own modules (mixins). They take
the engine as :class:`EngineCore` rather than as the class, so none of them imports the engine
(which imports them): the dependency points one way, and what a part may touch of the engine
is written down here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from titan.master.auth.tokens import JobTokens
from titan.master.config import MasterConfig
from titan.master.scheduling.blob_holds import BlobHolds
from titan.master.scheduling.refs import RecentJobNames
from titan.master.scheduling.scheduler import Scheduler
from titan.master.scheduling.state import Changes, DagRec, JobRec
from titan.storage.base import Row, Transaction
from titan.storage.writer import GroupCommitWriter

T = TypeVar("T")


class StageHooks(Protocol):
    """A stage (a DAG naming an agent run): in its submission's transaction, and as its status
    changes. The engine knows nothing of runs: the run service implements this and sets
    ``Engine.stage_hooks``."""

    def stage_submitted(self, tx: Transaction, run_id: str, agent_id: str | None,
                        now: float, started_by: Row | None = None) -> list[tuple[str, Row]]:
        """Before the DAG row: the run row it points at exists and is running (a new one
        started by ``started_by``, the submitter as the run service records it); the
        events to publish after the commit."""

    def stage_stored(self, tx: Transaction, run_id: str) -> None:
        """After the jobs: what the run derives from its stages (its code version)."""

    def stage_changed(self, run_id: str, dag_id: int, status: str) -> None:
        """On the event loop, after the commit that created stage ``dag_id`` (``WAITING``)
        or changed its status: the run's end when its last stage ends, and its live event
        (``agent_run_updated``, which says the run's status beside the stage's)."""


class EngineCore(Protocol):
    config: MasterConfig
    writer: GroupCommitWriter
    sched: Scheduler
    job_tokens: JobTokens | None
    #: Whether a job of a DAG is an evaluation's agent under test, which the worker hands an
    #: agent token (``ta.``) instead of a job token: set by the evaluation service (the
    #: engine knows nothing of evaluations); None, every job gets a job token.
    agent_under_test: Callable[[JobRec, DagRec], bool] | None
    #: Blobs known to be there, and those writes in flight hold (garbage collection).
    blob_holds: BlobHolds
    job_names: RecentJobNames
    stage_hooks: StageHooks | None
    #: Held while a finished DAG is read back into memory and while retention chooses and
    #: deletes a batch (master/scheduling/dag_retention.py): never both on one DAG.
    revivals: asyncio.Lock
    #: DAGs let go of by the scheduler (finished) whose last change is not committed yet, by
    #: id: the commit's future. Read back before it, a DAG would come back as it was before
    #: it finished: a retry right after a failure was refused, the job still RUNNING.
    retiring: dict[int, asyncio.Future[Any]]
    revive_listeners: list[Callable[[Row], None]]

    async def read(self, fn: Callable[[Transaction], T]) -> T: ...
    async def run(self, fn: Callable[[Transaction], T]) -> T: ...
    def submit(self, ch: Changes,
               extra: Callable[[Transaction], Any] | None = None) -> asyncio.Future[Any]: ...
    async def revive(self, dag_id: int) -> DagRec: ...
    def lose_worker_now(self, worker_id: str, why: str, *,
                        distrusted: bool = False) -> None: ...
    def replace_worker(self, worker_id: str, why: str) -> None: ...
    async def check_scripts(self, specs: list[Row]) -> None: ...
    async def pin_projects(self, specs: list[Row]) -> None: ...
