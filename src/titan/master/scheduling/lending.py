"""Slot lending: a job that waits on the master lends its worker slot while it waits.

An orchestrator job that submits a stage and waits for it (``submit_dag(wait=True)``,
``wait_dag``, ``wait_job``, ``store_wait`` and ``wait_for_signal``) holds a process but no
CPU. Counted as busy, N such jobs on a worker of N slots waited forever for stages that need
slots of their own: Celery's classic deadlock of a task blocked on its subtasks. Ray avoids
it by releasing a task's CPU while it blocks in ``ray.get``; Titan does the same from the
master's side, which is where the wait is: while a job's request is parked in one of these
long-polls, its worker is leased one job more than its slots (:func:`~.state.capacity`).

* One slot per waiting job, however many waits it has open (a thread each): a job cannot
  inflate its worker's room by waiting more. The jobs at work (not waiting) never exceed the
  worker's slots.
* No cap on the slots lent, as Ray has none: a lent slot goes to the head of the queue, which
  may be another orchestrator that then waits too, or a stage that is itself one. Capped at
  the worker's slots, 2x-slots orchestrators, and a single nested one on one slot, waited for
  ever. Each waiting job costs its process's memory (an idle Python process, tens of MB).
* Only a job that runs now, with the attempt its token names, on a worker whose executor
  can run more processes than its slots (``"lend": true`` at registration: the local
  executors; a Ray worker's room is Ray's CPUs, which a waiting task keeps).
* A job the master no longer counts on the worker (it ended, its lease expired) lends
  nothing, whatever its request still does.

When the wait ends the worker is over its slots until enough jobs end: the master leases
it nothing meanwhile, so it runs no more than it offered (the running set is the guard).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from titan.master.auth.tokens import Principal
from titan.master.scheduling.engine_core import EngineCore
from titan.master.scheduling.state import RUNNING, Changes, WorkerRec


@contextlib.contextmanager
def lending(engine: EngineCore, who: Principal) -> Iterator[None]:
    """Around a wait on the master: lend the waiting job's slot to its worker meanwhile."""
    worker = _lender(engine, who)
    if worker is None:
        yield
        return
    job_id = who.job
    assert job_id is not None
    first = job_id not in worker.waiting
    worker.waiting[job_id] = worker.waiting.get(job_id, 0) + 1
    if first:
        # Lease to the worker now, if it is parked waiting for work: a job queued behind the
        # waiting one gets its slot at once, not when something else frees one.
        ch = Changes()
        ch.dispatch = True
        engine.submit(ch)
    try:
        yield
    finally:
        left = worker.waiting.get(job_id, 0) - 1
        if left > 0:
            worker.waiting[job_id] = left
        else:
            worker.waiting.pop(job_id, None)


def _lender(engine: EngineCore, who: Principal) -> WorkerRec | None:
    """The worker the job behind ``who`` runs on now, if that worker can lend its slot."""
    if who.role != "job" or who.job is None:
        return None
    job = engine.sched.jobs.get(who.job)
    if job is None or job.state != RUNNING or job.attempt != who.attempt or not job.worker_id:
        return None
    worker = engine.sched.workers.get(job.worker_id)
    if worker is None or not worker.lends or not worker.live or job.id not in worker.running:
        return None
    return worker
