"""Finding runs: one by id, or the 404 every route answers."""

from __future__ import annotations

from titan.errors import NotFound
from titan.storage.base import Row, Transaction


def run_or_404(tx: Transaction, run_id: str) -> Row:
    """The run, or the 404 every route and service answers for a run that does not exist."""
    run = tx.get_run(run_id)
    if run is None:
        raise NotFound(f"no agent run {run_id!r}", details={"id": run_id})
    return run
