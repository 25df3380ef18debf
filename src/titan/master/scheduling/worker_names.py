"""Worker names: unique among the workers that answer, so a name says which process it is.

A worker's id is what leases, results and credentials go by, so two workers of one name never
mixed up their jobs; but the dashboard, ``titan workers`` and a job's page showed two "gpu-1"
side by side and nothing said which ran what, or which to stop. The rule
(docs/deployment.md, *Worker names*), as a supervisor-run fleet (Celery's node names,
Kubernetes' pods) expects:

* a name given (``titan worker --name X``) is an identity: while a worker of that name
  answers (its channel open, or, over HTTP, a poll parked or a call within a heartbeat
  period), another is refused with :class:`~titan.errors.WorkerNameTaken`, naming the live
  one; a worker of that name that no longer answers (killed, its connection gone) is lost at
  once and the newcomer takes the name over, so a supervisor restarting a crashed worker is
  not refused for the rest of its lease;
* a name left to its default (the host's) is the master's to choose: the host name, else
  ``<host>-2``, ``-3``... the first no live worker holds, told to the worker in the reply and
  kept by it for its life.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from titan.errors import WorkerNameTaken
from titan.master.scheduling.engine import Engine
from titan.master.scheduling.state import WorkerRec

ALIVE = ("live", "draining")


def connected(worker: WorkerRec) -> bool:
    """Whether ``worker`` holds a connection open to the master now (its channel, or a poll
    parked): a killed worker's closes with its socket."""
    return worker.channel is not None or (worker.poll is not None and not worker.poll.done())


def answering(engine: Engine, worker: WorkerRec, now: float) -> bool:
    """Whether ``worker``'s process is there to hear the master now: connected, or it talks
    HTTP and was heard within a heartbeat period. Its lease lasts longer."""
    return connected(worker) or worker.transport != "channel" and \
        now - worker.last_seen < engine.config.lease_seconds / 3


def settled_in(engine: Engine, worker: WorkerRec, now: float) -> float | None:
    """For a worker answering only because it was heard lately (no connection held: killed
    between registering and opening its channel, or an HTTP worker between two calls), the
    seconds until the master will know whether it is gone; None when it is connected."""
    if connected(worker):
        return None
    return round(max(0.0, engine.config.lease_seconds / 3 - (now - worker.last_seen)) + 0.2, 2)


def absent_holders(engine: Engine) -> set[str]:
    """Ids of workers that hold a running attempt but have not registered with this master
    since it started (a restart: the database remembers their leases, not their
    processes). Only these need the database asked for their names (:func:`choose`)."""
    known = engine.sched.workers
    return {j.worker_id for j in engine.sched.jobs.values()
            if j.state == "RUNNING" and j.worker_id and j.worker_id not in known}


def choose(engine: Engine, worker_id: str, name: str, given: bool,
           absent: Iterable[str] = ()) -> str:
    """The name ``worker_id`` registers under (see the module's rule); raises
    :class:`WorkerNameTaken` for a given name a live, answering worker holds. ``absent``:
    workers of that name from before this master's start that have not come back (found
    by :func:`absent_holders`, named by the database)."""
    now = time.time()
    others = [w for w in engine.sched.workers.values()
              if w.id != worker_id and w.state in ALIVE]
    holders = [w for w in others if w.name == name]
    if not given:
        if not holders:
            return name
        taken = {w.name for w in others}
        n = 2
        while f"{name}-{n}" in taken:
            n += 1
        return f"{name}-{n}"
    live = [w for w in holders if answering(engine, w, now)]
    if live:
        w = live[0]
        where = f" on {w.hostname}" if w.hostname else ""
        details: dict[str, object] = {"field": "name", "name": name, "worker_id": w.id,
                                      "hostname": w.hostname}
        wait = settled_in(engine, w, now)
        if wait is not None:
            # Not known to be gone yet, nor to be there: a worker restarted at once by its
            # supervisor asks again after that (titan.worker.lease_thread) rather than
            # failing on the ghost of the one it replaces.
            details["retry_after"] = wait
        raise WorkerNameTaken(
            f"a live worker is already named {name!r}: {w.id}{where}, last heard "
            f"{max(0.0, now - w.last_seen):.0f} s ago; stop it, or pick another --name",
            details=details)
    # Gone without a word: the newcomer is its successor. So is it of one lost already (its
    # connection closed) or absent since this master's restart, holding attempts: they end
    # now and run again, rather than staying RUNNING on a dead process for a lease.
    gone = [w.id for w in engine.sched.workers.values() if w.id != worker_id and w.name == name]
    gone += [w for w in absent if w != worker_id and w not in engine.sched.workers]
    for old in gone:
        engine.replace_worker(old, f"a new worker registered under its name {name!r} while "
                                   "it no longer answered")
    return name
