"""Runs whose recording process died: found by its silence and ended ``failed``.

A run opened with ``titan.trace.run`` or driven by a script that submits its stages ends when
that process leaves the block or exits. Killed (``kill -9``, an OOM kill, a SIGTERM Python
does not turn into an exit, the machine gone), it never says so, and the run stayed
``running`` for ever on the Runs page while Agent Runs showed its stages finished.

So the SDK's recorder sends a sign of life for the runs its process holds open, every
``TITAN_TRACE_HEARTBEAT`` seconds (30): ``POST /runs/alive``, which stamps their
``alive_at``. Once a running run has been silent ``TITAN_RUN_ALIVE_TIMEOUT`` seconds (120),
the master ends it ``failed``, its error saying that its process stopped without ending it
(:data:`CRASHED`). Only runs a process said it watches are ever ended this way: those it
opened with ``"watched": true`` (the SDK does; watched from their creation, so a run whose
process exited or died before its first sign of life, or whose end was never delivered, ends
too) or sent a sign of life for (a run opened through the API or OTLP has no ``alive_at``), a run whose driver already ended it waits for
its stages as before, and after the master starts every run gets a whole timeout to be heard
again (the processes could not reach it meanwhile). A run ended this way whose process turns
out to be alive (a network cut longer than the timeout, a laptop asleep) is running again at
its next sign of life, and its own end is taken as usual, even with no sign of life before it
(``RunService.update_run``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

from titan.errors import Conflict, NotFound, ValidationFailed
from titan.master.auth.tokens import Principal
from titan.master.runs import compliance
from titan.status import RunStatus
from titan.storage.base import Row, RunQuery, Transaction

if TYPE_CHECKING:
    from titan.master.runs.service import RunService

log = logging.getLogger("titan.master")

#: The start of the error of a run ended for its process's silence.
CRASHED = "crashed: "
MAX_RUNS = 1000  # run ids per sign of life
#: The reaper's sleep overrunning by this much means the master itself stood still.
STALL_SECONDS = 3.0


async def mark_alive(runs: RunService, body: Any, who: Principal) -> Row:
    """``POST /runs/alive {"runs": [id, ...]}``: the ids still running (or running again)."""
    ids = body.get("runs") if isinstance(body, dict) else None
    if not isinstance(ids, list) or not all(isinstance(i, str) and i for i in ids) \
            or len(ids) > MAX_RUNS or set(body) - {"runs"}:
        raise ValidationFailed(f'the body must be {{"runs": [run id, ...]}} (at most '
                               f"{MAX_RUNS} ids)", details={"field": "runs"})
    if any("\x00" in i for i in ids):
        # No run id holds one (PostgreSQL's text cannot): its look-up was a 400 naming no
        # field there, and SQLite answered it as a run not running.
        raise ValidationFailed("a run id holds no NUL character (U+0000)",
                               details={"field": "runs"})
    for run_id in dict.fromkeys(ids):
        await runs.check_may_drive(run_id, who)
    now = time.time()

    def op(tx: Transaction) -> tuple[list[str], list[tuple[Row, Row]]]:
        alive = tx.mark_runs_alive(ids, now)
        revived = []
        for run_id in dict.fromkeys(ids):
            run = tx.get_run(run_id) if run_id not in alive else None
            if run is not None and run["status"] == RunStatus.FAILED \
                    and (run["error"] or "").startswith(CRASHED):
                changes = {"status": RunStatus.RUNNING, "error": None, "ended_at": None,
                           "alive_at": now}
                tx.update_run(run_id, changes)
                revived.append((run, {**run, **changes}))
        return alive, revived

    alive, revived = await runs.engine.run(op)
    if who.role == "job" and who.job is not None:
        # What it holds open, ended with it if it ends for good (end_runs_of).
        runs.drivers.setdefault(who.job, set()).update(ids)
    for before, after in revived:
        log.info("run %s shows a sign of life again: running", after["id"])
        runs.after_run_change(before, after)
    return {"alive": alive + [after["id"] for _, after in revived]}


async def keep_reaping(runs: RunService, timeout: float) -> None:
    """Forever (a task of the master): end the watched runs silent for ``timeout`` s."""
    period = max(0.2, min(30.0, timeout / 4))
    started = time.time()
    while True:
        slept = time.monotonic()
        await asyncio.sleep(period)
        now = time.time()
        if time.monotonic() - slept - period > STALL_SECONDS:
            # The master stood still (SIGSTOP, a paused VM): no process could reach it
            # meanwhile. As after a start, each gets a whole timeout to be heard again.
            started = now
        if now - started < timeout:
            continue  # every process gets a whole timeout to reach a master just started
        try:
            await reap(runs, now - timeout, timeout)
        except Exception:
            log.exception("ending the runs whose process went silent failed")


async def reap(runs: RunService, before: float, timeout: float) -> list[str]:
    """End the watched runs silent since ``before``; their ids."""
    silent: list[str] = await runs.engine.read(lambda tx: tx.silent_runs(before))
    ended = []
    for run_id in silent:
        error = (f"{CRASHED}the process recording it stopped without ending it (no sign of "
                 f"life for {timeout:g} s: killed, or cut off from the master)")
        try:
            await runs.update_run(run_id, {"status": "failed", "error": error},
                                  Principal(role="admin"), silent_since=before)
        except (NotFound, Conflict):
            continue  # ended, or deleted, meanwhile
        log.warning("run %s: its process went silent; ended failed", run_id)
        ended.append(run_id)
    return ended


def _job_of(run: Row) -> int | None:
    """The job that started ``run``, if one did (``started_by`` as recorded; a row edited
    into something else names none)."""
    by = run.get("started_by")
    job = by.get("job") if isinstance(by, dict) and by.get("role") == "job" else None
    return job if isinstance(job, int) else None


def driving_jobs(tx: Transaction) -> dict[int, set[str]]:
    """The runs each job started and still holds open (running, its driver not done): read
    at start, so a job that ends after a master restart still ends its runs."""
    out: dict[int, set[str]] = {}
    for run in tx.iter_runs(RunQuery(statuses=("running",))):
        job = _job_of(run) if run["ended_at"] is None else None
        if job is not None:
            out.setdefault(job, set()).add(run["id"])
    return out


async def end_runs_of(runs: RunService, job_id: int, state: str,
                      run_ids: set[str]) -> list[str]:
    """End the runs job ``job_id`` started and still held open (of ``run_ids``: those it
    started or kept alive), now that it has ended for good (``state``): an orchestrator
    running as a job, cancelled, killed by its timeout or failed for good, never says so,
    and its runs stayed ``running`` until their silence ran out (120 s), then read
    "crashed". Cancelled with the job, its runs end ``cancelled`` and their stages still
    going are cancelled too (as cancelling a Temporal workflow or a Ray task cancels its
    children); otherwise they end ``failed``, as crashed. A run the job ended itself, or
    whose stages it left running after saying it was done, is not touched."""
    def mine(tx: Transaction) -> tuple[list[Row], Row | None]:
        found = []
        for run_id in sorted(run_ids):
            run = tx.get_run(run_id)
            # Unwatched too: a job cancelled or killed between submitting a stage that opened
            # its run and its first sign of life (its SDK sends it from a thread, after the
            # submission), or one that drove it over plain HTTP, left it running for ever.
            if run is not None and _job_of(run) == job_id and run["status"] == "running" \
                    and run["ended_at"] is None:
                found.append(run)
        return found, tx.get_job(job_id) if found else None

    ended = []
    found, job = await runs.engine.read(mine)
    for run in found:
        label = _driver_label(run["started_by"], job, job_id)
        if state == "CANCELLED":
            body = {"status": "cancelled", "error": f"the {label} driving it was cancelled"}
        elif state == "COMPLETED" and run["alive_at"] is None:
            # A job that never showed a sign of life for it (it drove it over plain HTTP)
            # and completed: its driver is done, and the run ends with its last stage.
            body = {"status": "ended"}
        else:
            body = {"status": "failed", "error": f"{CRASHED}the {label} driving it ended "
                                                 f"{state} without ending it"}
        try:
            await runs.update_run(run["id"], body, Principal(role="admin"))
        except (NotFound, Conflict):
            continue  # ended, or deleted, meanwhile
        if "error" in body:
            log.warning("run %s: %s", run["id"], body["error"])
        ended.append(run["id"])
        if state == "CANCELLED":
            await runs.engine.cancel_stages_of(run["id"])
    return ended


def _driver_label(started_by: Row | None, job: Row | None, job_id: int) -> str:
    """The job driving a run as it ended, for people: the run's ``started_by`` names the
    attempt (and worker) that opened it, but a retried driver ends on a later one, and the
    error should point at the attempt whose logs say why."""
    by = dict(started_by) if started_by and started_by.get("role") == "job" else {}
    if job is not None:
        by.update(role="job", job=job_id, job_id=job.get("job_id") or by.get("job_id"))
        if job.get("attempt"):
            by["attempt"] = job["attempt"]
        if job.get("worker_id"):
            by["worker"] = job["worker_id"]
    return compliance.started_by_label(by) or f"job #{job_id}"
