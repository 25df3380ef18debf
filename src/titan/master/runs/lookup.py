"""Finding runs: one by id, or the 404 every route answers; the 409 of one that has ended."""

from __future__ import annotations

from titan.errors import Conflict, NotFound
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
