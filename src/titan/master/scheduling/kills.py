"""What a worker is told to end, and why: the kills (and a service's stop) that a poll, a
heartbeat or the worker channel hands it, each with the reason its log says."""

from __future__ import annotations

from titan.master.scheduling import services
from titan.master.scheduling.engine import Engine
from titan.master.scheduling.state import CANCELLED, RUNNING, TERMINAL, JobRec, WorkerRec
from titan.storage.base import Row


def cancel_entries(engine: Engine, pairs: list[tuple[int, int]],
                   worker: WorkerRec | None = None) -> list[Row]:
    """What a worker is told to end: ``{"id", "attempt"}`` kills; a service being stopped
    gets ``"stop": grace`` (SIGTERM, then SIGKILL after that many seconds). A worker that
    knows no stops kills it, which is what a stop comes down to there. ``worker``: the one
    told, whose kills may carry the reason given when they were asked."""
    out = []
    reasons = worker.kill_reasons if worker is not None else {}
    for j, a in dict.fromkeys(pairs):
        job = engine.sched.jobs.get(j)
        asked = reasons.pop((j, a), None)
        entry: Row = {"id": j, "attempt": a, "why": asked or kill_why(job, a)}
        grace = services.stop_grace(job, a)
        if grace is not None:
            entry["stop"] = grace
        out.append(entry)
    return out


def kill_why(job: JobRec | None, attempt: int) -> str:
    """Why a worker is told to end ``attempt``, for its log: a worker that came back from a
    network cut killed its job's process without a word (a fleet QA pass)."""
    if job is None:  # finished and retired from memory (run by a later attempt, cancelled)
        return "its job has ended meanwhile"
    if job.attempt > attempt:
        return f"its lease ran out: the job runs again as attempt {job.attempt}"
    if job.state == CANCELLED:
        return "cancelled"
    if job.state in TERMINAL:
        return f"its job ended {job.state}"
    if job.state != RUNNING:
        return "its lease ran out: the job is queued to run again"
    return "cancelled"
