"""A run's row as an update changes it (``PATCH /runs/{id}``, a driver's end, the reaper's):
its fields, and its status by the rules of a run's end — an end said as ``ended`` taken from
its last stage (or waited for while stages run), a reopened run's error cleared, a run ended
for its process's silence still taking that process's own end, an ended run never ended
again. All inside the update's transaction; the service commits it, then publishes.
"""

from __future__ import annotations

from titan.errors import Conflict, ValidationFailed
from titan.master.auth.tokens import Principal
from titan.master.runs import compliance, liveness
from titan.master.runs.budgets import check_budget
from titan.master.runs.lookup import run_or_404
from titan.master.runs.stages import derived_end
from titan.redaction import merge
from titan.status import RunStatus
from titan.storage.base import Row, Transaction


def apply_update(tx: Transaction, run_id: str, fields: Row, who: Principal, *,
                 pii: dict[str, int], now: float, own_dag: int | None,
                 silent_since: float | None) -> tuple[Row, Row]:
    """Apply ``fields`` (parsed, the run's error redacted: ``pii`` counts what went) to run
    ``run_id``; the run before and after. ``own_dag``: the caller's own DAG, not waited for
    when it says ``ended``; ``silent_since``: the reaper's end, refused (Conflict) if the run
    has shown a sign of life since."""
    run = run_or_404(tx, run_id)
    if silent_since is not None and not (
            run["status"] == RunStatus.RUNNING and run["ended_at"] is None
            and run["alive_at"] is not None and run["alive_at"] < silent_since):
        raise Conflict(f"agent run {run_id} is no longer silent")
    compliance.check_retention_class(fields, who, run["retention_class"])
    started = fields.get("started_at") or run["started_at"] or now
    if fields.get("ended_at") is not None and fields["ended_at"] < started:
        raise ValidationFailed("ended_at is before the run's started_at",
                               details={"field": "ended_at"})
    # A run dated a little ahead (a client's clock) ends no earlier than it started.
    end = max(now, started)
    before = dict(run)
    changes = {k: v for k, v in fields.items() if k not in ("status", "without_stages")}
    if pii:
        changes["pii"] = merge(dict(run.get("pii") or {}), pii)
    # Ended for its process's silence, the run still takes that process's own end:
    # it was only cut off, or paused (a laptop asleep), not killed.
    crashed = run["status"] == RunStatus.FAILED and silent_since is None \
        and (run["error"] or "").startswith(liveness.CRASHED)
    status = fields.get("status")
    if status == "ended":
        # Not waiting for the caller's own DAG: it runs the driver saying so (the
        # run settled later, in another commit, than the DAG a client waits on).
        derived = derived_end(tx, run, own_dag, without_stages=fields.get("without_stages"))
        status = None if derived is None else derived[0]
        if derived is None:  # stages still run: finish when they do
            changes["ended_at"] = fields.get("ended_at") or end
        elif derived[1] is not None and "error" not in fields \
                and (crashed or not run["error"]):
            # Its last stage failed: why, unless its driver recorded why (a running
            # run's error is its driver's: reopening a run clears its last end's).
            changes["error"] = derived[1]
    if fields.get("status") not in (None, RunStatus.RUNNING) \
            and run["alive_at"] is not None:
        changes["alive_at"] = None  # its process is done with it: no longer watched
    if crashed and fields.get("status") not in (None, RunStatus.RUNNING):
        changes.setdefault("error", None)
        if status is None:  # its driver is done, its stages still run: as ever
            changes["status"] = RunStatus.RUNNING
    if status is not None and status != run["status"]:
        if run["status"] != RunStatus.RUNNING and status != RunStatus.RUNNING \
                and not crashed:
            raise Conflict(f"agent run {run_id} already ended {run['status']}",
                           code="run_ended", details={"id": run_id, "status": run["status"]})
        changes["status"] = status
        changes["ended_at"] = (None if status == RunStatus.RUNNING
                               else fields.get("ended_at") or end)
        if status == RunStatus.RUNNING:
            changes.setdefault("error", None)  # the error of the end it leaves
    if changes:
        tx.update_run(run_id, changes)
        run.update(changes)
    if "budget_usd" in fields:
        check_budget(tx, run, now)
    return before, run

