"""A run's stages: the run a stage opens, the code version they give it, the end the last gives.

The engine knows nothing of runs: these run in its submission transaction through the run
service's :class:`~titan.master.scheduling.engine_core.StageHooks`, and when a driver ends
without saying how, its last stage decides (:func:`derived_end`).
"""

from __future__ import annotations

import hashlib
from collections import Counter

from titan.master.runs.events import run_summary
from titan.master.scheduling.state import (
    CANCELLED,
    EXPIRED,
    FAILED,
    REJECTED,
    SKIPPED,
    TIMED_OUT,
    dag_status,
)
from titan.status import RunStatus
from titan.storage.base import Row, Transaction
from titan.trace.naming import agent_of_run

# A job that ended without its work done, not by a cancel: what makes a stage FAILED or PARTIAL.
UNSUCCESSFUL = (FAILED, TIMED_OUT, REJECTED, EXPIRED)


def stage_submitted(tx: Transaction, run_id: str, agent_id: str | None, now: float,
                    started_by: Row | None = None) -> list[tuple[str, Row]]:
    """submit_dag named an agent run (in its transaction): a new run is created, running, by
    ``started_by`` (the submitter, see compliance.started_by); one that had ended runs again.
    Returns the events to publish after the commit."""
    if tx.ensure_agent_run(run_id, now, agent_id or agent_of_run(run_id)):
        if started_by is not None:
            tx.update_run(run_id, {"started_by": started_by})
        run = tx.get_run(run_id)
        assert run is not None
        return [("run_created", run_summary(run))]
    run = tx.get_run(run_id)
    assert run is not None
    if run["status"] != "running":
        # A driver back (a retry, a resumed orchestrator): the end it had, and the error
        # that said why (its last stage's, a crash, its driver's own), is not its end; it
        # ends again with its new last stage, as a retried stage's run does.
        changes: Row = {"status": "running", "ended_at": None, "error": None}
        tx.update_run(run_id, changes)
        run.update(changes)
        return [("run_updated", run_summary(run))]
    return []


def record_code_version(tx: Transaction, run_id: str) -> None:
    """The run's code version: a hash of every script its stages ran."""
    version = code_version(tx.run_scripts(run_id))
    if version is not None:
        tx.update_run(run_id, {"code_version": version})


def code_version(scripts: list[tuple[str, str]]) -> str | None:
    if not scripts:
        return None
    h = hashlib.sha256()
    for name, sha in scripts:
        h.update(f"{name}\0{sha}\n".encode())
    return h.hexdigest()[:16]


def derived_end(tx: Transaction, run: Row, own_dag: int | None = None, *,
                without_stages: str | None = None) -> tuple[str, str | None] | None:
    """A driver finished without saying how: completed unless its last stage did not (FAILED,
    CANCELLED, or PARTIAL: some of its jobs completed, others failed; seed 004's failed run
    "encountered errors"). Returns the status and the error that says why, or None while a
    stage is still going. ``own_dag``: the DAG of the job that says so (a driver running as
    a job, a replay's driver), which is not a stage to wait for: it ends once its job has
    said this. A run without stages ends ``without_stages`` when the driver said so (a
    ``trace.run`` block: completed), else failed if every action it recorded errored."""
    dags, _ = tx.list_dags(agent_run_id=run["id"], limit=2, newest_first=True)
    dags = [d for d in dags if d["id"] != own_dag][:1]
    if not dags:
        if without_stages is not None:
            return without_stages, None
        failed = run["error_count"] and not run["success_count"]
        return (RunStatus.FAILED.value if failed else RunStatus.COMPLETED.value), None
    last = dags[0]
    counts = Counter(tx.job_counts([last["id"]])[last["id"]])
    status = dag_status(counts)
    if status in ("WAITING", "RUNNING"):
        return None
    if status in ("FAILED", "PARTIAL", "CANCELLED"):
        return RunStatus.FAILED.value, stage_end_error(last["name"], status, counts)
    return RunStatus.COMPLETED.value, None


def stage_end_error(name: str, status: str, counts: Counter[str]) -> str:
    """Why a run whose last stage ``name`` ended ``status`` failed, with how many of its
    jobs did not complete: "its last stage R_ITER1 ended PARTIAL: 1 of 2 jobs failed"."""
    why = stage_jobs_ended(counts)
    return f"its last stage {name} ended {status}" + (f": {why}" if why else "")


def stage_jobs_ended(counts: Counter[str] | dict[str, int]) -> str | None:
    """How many of a stage's jobs did not complete, in the words a run's error gives them
    (the Agent Runs row says the same): "1 of 2 jobs failed, 1 cancelled"; None if all did."""
    total = sum(counts.values())
    ended = [(n, what) for n, what in (
        (sum(counts.get(s, 0) for s in UNSUCCESSFUL), "failed"),
        (counts.get(CANCELLED, 0), "cancelled"), (counts.get(SKIPPED, 0), "skipped")) if n]
    if not ended:
        return None
    (n, what), rest = ended[0], ended[1:]
    return ", ".join([f"{n} of {total} job{'' if total == 1 else 's'} {what}",
                      *(f"{m} {w}" for m, w in rest)])


def orphaned_replay_end(tx: Transaction, run_id: str) -> Row | None:
    """How to end a running replay whose DRIVER stage was cancelled or failed without ending
    it (a driver ends its replay itself; one killed cannot), or None: no such replay."""
    run = tx.get_run(run_id)
    if run is None or not run.get("replay_of") or run["status"] != RunStatus.RUNNING:
        return None
    dags, _ = tx.list_dags(agent_run_id=run_id, limit=1000, newest_first=True)
    driver = next((d for d in dags if d["name"] == f"{run_id}_DRIVER"), None)
    if driver is None:
        return None
    status = dag_status(Counter(tx.job_counts([driver["id"]])[driver["id"]]))
    if status == "CANCELLED":
        return {"status": RunStatus.CANCELLED.value, "error": "the replay was cancelled"}
    if status == "FAILED":
        return {"status": RunStatus.FAILED.value,
                "error": "the replay's driver failed without ending it"}
    return None
