"""Deleting an evaluation (``titan eval delete``, ``DELETE /evaluations/{e}``): its tasks, runs
and their proxied calls; not the agent runs those runs recorded, which are telemetry like any
other and go when retention deletes them (their classes say when)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from titan.errors import Conflict, NotFound
from titan.storage.base import Row, Transaction

if TYPE_CHECKING:
    from titan.master.evaluations.service import Evaluations


async def delete_evaluation(evals: Evaluations, evaluation_id: str, *, force: bool) -> Row:
    """Delete ``evaluation_id``; refused (409) while a run of it is pending or running unless
    ``force``, which cancels them first, as ``titan eval cancel`` does."""
    def going(tx: Transaction) -> list[str]:
        if tx.get_evaluation(evaluation_id) is None:
            raise NotFound(f"no evaluation {evaluation_id!r}",
                           details={"evaluation": evaluation_id})
        return [r["id"] for r in tx.unfinished_eval_runs()
                if r["evaluation_id"] == evaluation_id]

    unfinished = await evals.engine.read(going)
    cancelled: list[Row] = []
    if unfinished:
        if not force:
            raise Conflict(
                f"evaluation {evaluation_id!r} has {len(unfinished)} run(s) still pending or "
                f"running: cancel them first (titan eval cancel {evaluation_id}), or delete "
                "with --force (?force=true), which cancels them",
                details={"evaluation": evaluation_id, "unfinished": len(unfinished)})
        cancelled = (await evals.cancel(evaluation_id))["cancelled"]

    def op(tx: Transaction) -> int:
        if tx.get_evaluation(evaluation_id) is None:  # deleted meanwhile by another request
            raise NotFound(f"no evaluation {evaluation_id!r}",
                           details={"evaluation": evaluation_id})
        return tx.delete_evaluation(evaluation_id)

    runs = await evals.engine.run(op)
    evals.changed(evaluation_id, "deleted")
    for run_id in [r for r in list(evals.active) if r in set(unfinished)]:
        evals.active.pop(run_id, None)
    return {"id": evaluation_id, "deleted": True, "runs": runs,
            "cancelled": [r["id"] for r in cancelled]}
