"""The JSON shapes of jobs, DAGs and agent runs (the API's and the dashboard's)."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from titan.errors import NotFound
from titan.master.scheduling import services
from titan.master.scheduling.state import JOB_STATES, NO_WORKER, has_started
from titan.storage.base import Row, Transaction
from titan.trace.naming import run_aliases, stage_label

JOB_FIELDS = (
    "id", "job_id", "dag_id", "state", "reason", "attempt", "max_attempts", "worker_id",
    "exit_code", "error", "filename", "args", "parents", "requirement", "priority", "delay",
    "affinity", "timeout", "job_type", "runner", "port", "is_archive", "submitted_at",
    "ready_at", "started_at", "finished_at", "hitl_message", "max_wait_seconds",
    "approval_deadline", "decided_by", "decided_at", "decision_comment", "decisions",
)


def job_kind(job_type: str | None) -> str:
    return {"APPROVAL": "approval", "SERVICE": "service", "DEPLOY_PAYLOAD": "service"}.get(
        job_type or "", "run")


def job_view(job: Row, dag: Row) -> Row:
    out = {k: job.get(k) for k in JOB_FIELDS}
    # When a job waiting out a retry's backoff (or its delay) becomes runnable: the reason
    # said "retry 2/3 in 30s", which no one reading it later could place in time.
    out["not_before"] = job.get("not_before") if job.get("state") == "PENDING" else None
    out["kind"] = job_kind(job.get("job_type"))
    # A service's settings and what its worker last said (health, address, restarts):
    # ``address`` is where other jobs reach it, while it runs.
    service = services.view(job.get("service"), job.get("service_status"), time.time()) \
        if out["kind"] == "service" else None
    out.update(service=service, address=service and service["address"],
               health=service and service["health"])
    out.update(ref=f"{dag['name']}#{dag['run']}/{job['job_id']}", dag=dag["name"],
               run=dag["run"], agent_run_id=dag["agent_run_id"])
    return out


def job_with_attempts(tx: Transaction, job_id: int) -> Row | None:
    """A job as ``GET /jobs/{ref}`` shows it: its view and its attempts; None when there is
    no such job (any more)."""
    found = tx.job_dag_attempts(job_id)
    if found is None:
        return None
    job, dag, attempts = found
    view = job_view(job, dag)
    view["attempts"] = attempts
    return view


def dag_with_jobs(tx: Transaction, dag_id: int) -> Row:
    """A DAG as ``GET /dags/{ref}`` shows it, with its jobs."""
    found = tx.dag_and_jobs(dag_id)
    if found is None:  # deleted by retention since it was named (an idempotent replay's DAG)
        raise NotFound(f"DAG {dag_id} no longer exists: it was deleted by retention",
                       details={"dag_id": dag_id})
    dag, jobs = found
    # Counted from the jobs already read: one query less on every wait's answer.
    return dag_view(dag, dict(Counter(str(j["state"]) for j in jobs)), jobs)


def finished_view(tx: Transaction, kind: str, ident: int) -> Row | None:
    """What a waiter on ``(kind, ident)`` answers with once it has finished (see
    ``Engine.submit``): read in the transaction that finished it."""
    if kind == "dag":
        return dag_with_jobs(tx, ident)
    return job_with_attempts(tx, ident)


def counts_view(counts: dict[str, int]) -> dict[str, int]:
    return {s: counts.get(s, 0) for s in JOB_STATES}


def dag_view(dag: Row, counts: dict[str, int], jobs: list[Row] | None = None) -> Row:
    out: dict[str, Any] = {
        "id": dag["id"], "name": dag["name"], "run": dag["run"],
        "ref": f"{dag['name']}#{dag['run']}", "agent_run_id": dag["agent_run_id"],
        "status": dag["status"], "submitted_at": dag["submitted_at"],
        "started_at": dag["started_at"], "finished_at": dag["finished_at"],
        "job_count": dag["job_count"], "counts": counts_view(counts),
        "schedule": dag.get("schedule"),  # the schedule whose tick started it, if one did
    }
    if jobs is not None:
        out["jobs"] = [job_view(j, dag) for j in jobs]
    return out


#: The symbols seed 000 draws beside a stage's status (✓ COMPLETED, ⟳ RUNNING, … WAITING).
STATUS_SYMBOLS = {"COMPLETED": "✓", "RUNNING": "⟳", "FAILED": "✗", "PARTIAL": "◐",
                  "WAITING": "…", "CANCELLED": "⊘"}


def pending_hints(tx: Transaction, dags: list[Row],
                  counts: dict[int, dict[str, int]]) -> dict[int, str]:
    """For each stage with jobs PENDING, what they wait for, said as its hint: a worker with
    a capability no live worker offers (as the scheduler says it), else a retry's backoff
    (the job's own reason: "retry 2/3 in 4s after: exit code 1"). Not a job that waits for
    its parents or its delay. Read only for such stages, which are rare."""
    pending = [d["id"] for d in dags if counts.get(d["id"], {}).get("PENDING")]
    caps: dict[int, set[str]] = {}
    retries: dict[int, str] = {}
    for job in tx.jobs_of_dags(pending) if pending else ():
        reason = job.get("reason") or ""
        if job["state"] != "PENDING":
            continue
        if reason.startswith(NO_WORKER):
            caps.setdefault(job["dag_id"], set()).add(job["requirement"])
        elif reason.startswith("retry "):
            retries.setdefault(job["dag_id"], reason)
    hints = {dag_id: f"waiting for a worker with capability {', '.join(sorted(found))}"
             for dag_id, found in caps.items()}
    for dag_id, reason in retries.items():
        hints.setdefault(dag_id, reason)
    return hints


def stage_view(dag: Row, run: Row, counts: dict[str, int],
               pending: str | None = None) -> Row:
    """One stage of an agent run (a DAG submitted with its ``agent_run_id``).

    ``executing`` counts the jobs actually running (or at an approval gate). Seed 000 calls a
    stage RUNNING when "at least one job is actively executing"; the status derived from the
    jobs stays RUNNING while some finished and the rest only wait, so ``hint`` says so instead
    of leaving a stage that runs nothing looking busy.
    """
    view = counts_view(counts)
    executing = view["RUNNING"] + view["WAITING_APPROVAL"]
    hint = None
    if dag["status"] in ("RUNNING", "WAITING") and not view["RUNNING"]:
        if view["WAITING_APPROVAL"]:
            hint = "waiting for approval"
        elif pending:  # a worker no live one is, a retry's backoff (pending_hints)
            hint = pending
        elif dag["status"] == "RUNNING":
            hint = f"nothing executing · {view['READY'] + view['PENDING']} queued"
    return {
        "dag_id": dag["id"], "name": dag["name"], "run": dag["run"],
        "label": stage_label(dag["name"], run["id"], run_aliases(run)), "status": dag["status"],
        "symbol": STATUS_SYMBOLS.get(dag["status"], ""), "counts": view,
        "executing": executing, "hint": hint,
        "submitted_at": dag["submitted_at"], "finished_at": dag["finished_at"],
    }


def current_stages(dags: list[Row]) -> set[int]:
    """The ids of each stage's latest run (``dags`` oldest first). An orchestrator that
    submits a failed stage again (ITER1 run 2) and succeeds has recovered: the run it replaced
    stays listed, as the stage's history, but no longer decides the agent run's status."""
    return {d["id"] for d in {d["name"]: d for d in dags}.values()}


def stages_started(dags: list[Row]) -> bool:
    """Whether a job of the stages' latest runs has started (their run is RUNNING, not
    WAITING, while one waits out a retry)."""
    current = current_stages(dags)
    return any(d.get("started_at") is not None for d in dags if d["id"] in current)


def current_counts(dags: list[Row], counts: dict[int, dict[str, int]]) -> Counter[str]:
    """The job counts of the stages' latest runs, summed: what an agent run's status is
    derived from."""
    total: Counter[str] = Counter()
    for dag_id in current_stages(dags):
        total.update(counts.get(dag_id, {}))
    return total


#: What each word :func:`run_status` says means as the run's own status, the Runs page's (seed
#: 004): the Agent Runs row refines a running run into WAITING or RUNNING, and says the others
#: as they are. Two pages that disagreed (COMPLETED here, running there) are what it rules out.
RUN_LIFECYCLE = {"WAITING": "running", "RUNNING": "running", "COMPLETED": "completed",
                 "FAILED": "failed", "CANCELLED": "cancelled"}


def run_status(run: Row, total: Counter[str], started: bool = False) -> str:
    """An agent run's status in seed 000's words: the one every page, JSON twin, API route and
    command says (docs/dashboard.md, *Agent Runs*).

    It is the run's own status (``master/runs/``: running until its driver, the script or job
    submitting its stages, has ended and, once it has, its last stage), upper-cased: a run
    whose stages submitted so far have all finished is RUNNING while its driver lives, since
    the driver may submit another (it read COMPLETED here while the Runs page said running),
    and a run that ended says how it ended whatever its stages did (a failed stage the
    orchestrator went on past is in its box and in the row's failures, not its status). A
    running run is WAITING while nothing of it has started: no job of its stages (``total``
    and ``started``, :func:`stages_started`) and no action recorded.
    """
    own = str(run.get("status") or "running").upper()
    if own != "RUNNING":
        return own
    begun = started or has_started(total) or bool(run.get("action_count"))
    return "RUNNING" if begun else "WAITING"


def agent_run_status(tx: Transaction, run_id: str) -> str | None:
    """:func:`run_status` of run ``run_id`` as it stands now (None: no such run), for its live
    event (``agent_run_updated``); its stages are read only when its own row does not tell
    (running, nothing recorded: WAITING until a job of its stages has started)."""
    run = tx.get_run(run_id)
    if run is None:
        return None
    status = run_status(run, Counter())
    if status != "WAITING":
        return status
    dags, _ = tx.list_dags(agent_run_id=run_id, limit=10_000, newest_first=False)
    counts = tx.job_counts([d["id"] for d in dags])
    return run_status(run, current_counts(dags, counts), stages_started(dags))


def agent_run_view(tx: Transaction, run: Row) -> Row:
    dags, _ = tx.list_dags(agent_run_id=run["id"], limit=10_000, newest_first=False)
    counts = tx.job_counts([d["id"] for d in dags])
    waiting = pending_hints(tx, dags, counts)
    stages = [stage_view(d, run, counts.get(d["id"], {}), waiting.get(d["id"])) for d in dags]
    total = current_counts(dags, counts)
    return {"id": run["id"], "created_at": run["created_at"],
            "status": run_status(run, total, stages_started(dags)), "stages": stages}
