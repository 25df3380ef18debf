"""Finding runs: one by id, or the 404 every route answers; the 409 of one that has ended,
unless its job's retry opens it again."""

from __future__ import annotations

from titan.errors import Conflict, NotFound
from titan.master.auth.tokens import Principal
from titan.storage.base import Row, Transaction


def run_or_404(tx: Transaction, run_id: str) -> Row:
    """The run, or the 404 every route and service answers for a run that does not exist."""
    run = tx.get_run(run_id)
    if run is None:
        raise NotFound(f"no agent run {run_id!r}", details={"id": run_id})
    return run


def reopened(run: Row) -> Conflict:
    """The 409 of ``POST /runs`` naming a run that has ended: a run id names one execution.
    Opened again by another process (or block), its calls took the keys of the first's
    (``actor, name, ordinal 0``...) and its replay re-ran the first with half of each."""
    run_id = run["id"]
    return Conflict(
        f"agent run {run_id} already ended {run['status']}: a run id names one execution, "
        "and a run that has ended is not opened again (its recording is what a replay "
        "re-runs). Open this execution as a run of its own: another run_id (e.g. "
        f"{run_id[:190]}-2) or none (Titan makes one up); tags can link the two",
        code="run_ended", details={"id": run_id, "status": run["status"]})


def reopening(run: Row, row: Row, who: Principal, watched: bool) -> Row:
    """What ``POST /runs`` changes of ``run``, which has ended, opened again with ``row`` by
    ``who``: only a later attempt of the job that opened it (its ``started_by``: that job,
    and the attempt that last opened it) may. A job retried after its attempt ended the run
    it names (``titan.trace.run(run_id=...)``) gets its run again, as a retried stage's run
    reopens: running, driven by this attempt, its calls after the first's (the latest
    attempt's count). Anyone else, that same attempt included, gets :func:`reopened`."""
    by = run.get("started_by")
    last = by.get("attempt") if isinstance(by, dict) else None
    if who.role != "job" or who.job is None or not isinstance(by, dict) \
            or by.get("role") != "job" or by.get("job") != who.job \
            or not isinstance(last, int) or not isinstance(who.attempt, int) \
            or who.attempt <= last:
        raise reopened(run)
    return {"status": "running", "error": None, "ended_at": None,
            "alive_at": row["created_at"] if watched else run["alive_at"],
            "started_by": row["started_by"]}
