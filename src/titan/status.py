"""The statuses an agent run and an evaluation run go through, named once.

The job states belong to the scheduler (:mod:`titan.master.scheduling.state`); a DAG run's
statuses are here, for the command line to offer without loading the scheduler. The rest
are the lifecycle words of the two run records every layer speaks: the SDK ends a run with
them, the master validates and derives them, storage filters on them, the dashboard draws
them. They were seven hand-kept tuples that could drift (the dashboard's filter had lost
``cancelled``). A leaf: it imports nothing of Titan.

Members are :class:`enum.StrEnum`, so a member equals its word (``RunStatus.FAILED ==
"failed"``); the tuples hold the plain words, for database drivers and templates.
"""

from __future__ import annotations

from enum import StrEnum


class RunStatus(StrEnum):
    """An agent run (``/runs``): open while its agent works, then one of three endings."""

    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


#: Every run status, in the order filters and docs list them.
RUN_STATUSES: tuple[str, ...] = tuple(s.value for s in RunStatus)
#: A run in one of these has ended: its ``ended_at`` is set and its totals are final.
RUN_ENDED: frozenset[str] = frozenset(RUN_STATUSES) - {RunStatus.RUNNING.value}


class EvalRunStatus(StrEnum):
    """One run of an evaluation task: queued, dispatched, then one of three endings."""

    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


#: Not ended yet: the dashboard keeps a page with one of these live.
EVAL_ACTIVE: tuple[str, ...] = (EvalRunStatus.PENDING.value, EvalRunStatus.RUNNING.value)
#: Ended: it will not change again (a judge may still score it).
EVAL_TERMINAL: tuple[str, ...] = tuple(s.value for s in EvalRunStatus
                                       if s.value not in EVAL_ACTIVE)


#: A DAG run's statuses (the scheduler derives them from its jobs' states), in filter order.
DAG_STATUSES: tuple[str, ...] = ("WAITING", "RUNNING", "COMPLETED", "FAILED", "PARTIAL",
                                 "CANCELLED")
