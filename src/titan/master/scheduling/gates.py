"""Approval gates (human in the loop): the scheduler's rules for jobs of type ``APPROVAL``.

A gate becomes runnable like any job (its parents completed) but, instead of being queued
for a worker, it waits in ``WAITING_APPROVAL``: it holds no worker slot, so a gate waiting
all weekend costs nothing. A person approves it (``APPROVED``: its children run like a
completed job's) or rejects it (``REJECTED``: its descendants are SKIPPED); with
``max_wait_seconds`` set, a gate nobody decided by its deadline becomes ``EXPIRED``, with a
rejection's effect. All three transitions start from ``WAITING_APPROVAL`` and happen on the
event loop, so a decision racing the deadline is applied exactly once: whichever comes first.

The deadline is stored with the job: a restarted master re-arms it, and one that passed
while the master was down expires at start.
"""

from __future__ import annotations

from typing import Any

from titan.errors import Conflict
from titan.master.scheduling.protocol import SchedulerCore
from titan.master.scheduling.state import (
    APPROVED,
    EXPIRED,
    REJECTED,
    WAITING_APPROVAL,
    Changes,
    JobRec,
)

#: The longest decision comment, in characters: a longer one is refused (400), not cut.
MAX_COMMENT = 2000


def open_gate(sched: SchedulerCore, job: JobRec, ch: Changes) -> None:
    """The gate's parents are done: wait for a decision (and arm the deadline, if any)."""
    wait = job.row.get("max_wait_seconds")
    deadline = sched.now() + float(wait) if wait else None
    sched._set(job, WAITING_APPROVAL, ch, reason="waiting for approval",
               approval_deadline=deadline, started_at=sched.now())
    if deadline is not None:
        ch.timers.append((deadline, "approval", job.id))


def rearm(sched: SchedulerCore, job: JobRec, ch: Changes) -> None:
    """A gate recovered from storage still waiting: its deadline timer must run again."""
    if job.approval_deadline is None:
        job.approval_deadline = job.row.get("approval_deadline")
    if job.approval_deadline is not None:
        ch.timers.append((job.approval_deadline, "approval", job.id))


def expire_if_due(sched: SchedulerCore, job: JobRec, ch: Changes) -> None:
    if job.state != WAITING_APPROVAL or job.approval_deadline is None:
        return  # decided (or cancelled) before the deadline
    if job.approval_deadline > sched.now():
        ch.timers.append((job.approval_deadline, "approval", job.id))  # fired a hair early
        return
    wait = job.row.get("max_wait_seconds")
    # It expired at its deadline, whenever that is noticed: a master that was down then
    # expires it at its start, which is not when it ended.
    at = job.approval_deadline
    sched._set(job, EXPIRED, ch, reason=f"no decision within {wait:g}s", decided_at=at,
               finished_at=at)
    sched.skip_descendants_of(job, ch)


def asked_again(job: JobRec, by: str | None, now: float) -> dict[str, Any]:
    """The fields a retried gate is set to: it asks again, so the old decision must not be
    shown as if it applied; but who decided, when and why is kept, in ``decisions`` with who
    retried it and when (it was wiped, comment and all: an audit QA pass)."""
    cleared: dict[str, Any] = {"approval_deadline": None, "decided_by": None,
                               "decided_at": None, "decision_comment": None}
    if job.decided_at is None and job.decided_by is None:
        return cleared  # cancelled while it waited: nobody decided anything
    entry = {"state": job.state, "decided_by": job.decided_by, "decided_at": job.decided_at,
             "comment": job.decision_comment, "retried_by": by, "retried_at": now}
    return {**cleared, "decisions": [*(job.decisions or []), entry]}


def decide(sched: SchedulerCore, job: JobRec, approve: bool, by: str, comment: str | None,
           ch: Changes) -> None:
    """Apply a person's decision; Conflict unless the gate is waiting for one."""
    if not job.is_gate:
        raise Conflict(f"job {job.job_id!r} is not an approval gate",
                       details={"state": job.state})
    if job.state != WAITING_APPROVAL:
        raise Conflict(f"gate {job.job_id!r} is {job.state}, not waiting for approval",
                       details={"state": job.state})
    now = sched.now()
    comment = comment or None
    state = APPROVED if approve else REJECTED
    verb = "approved" if approve else "rejected"
    sched._set(job, state, ch, reason=f"{verb} by {by}", decided_by=by, decided_at=now,
               decision_comment=comment, finished_at=now)
    if approve:
        sched.release_children(job, ch)
    else:
        sched.skip_descendants_of(job, ch)
