"""What a job's token may do to agent runs: drive (and write into) its own run or one it
started, add stages to its own run, a new one or one it started; never another's. An
evaluation agent's token (role ``agent``) records actions into, and reads, its own run alone.

A job's run is its DAG's ``agent_run_id``; a run it started carries the job in its
``started_by``. Kept apart from :mod:`titan.master.runs.service` because the checks read the
scheduler's memory and the run row, and the replays service asks them too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from titan.errors import Conflict, Forbidden
from titan.master.auth.tokens import Principal
from titan.master.runs.compliance import started_by_label
from titan.master.scheduling.state import TERMINAL

if TYPE_CHECKING:
    from titan.master.scheduling.engine import Engine
    from titan.master.scheduling.scheduler import Scheduler


def own_dag_ending(sched: Scheduler, who: Principal) -> int | None:
    """The DAG of the job ``who`` is when that job is all of it still going: ending the
    run from it (a driver, a replay's driver) need not wait for it to settle."""
    job = sched.jobs.get(who.job) if who.job is not None else None
    dag = sched.dags.get(job.dag_id) if job is not None else None
    if dag is None or sum(n for state, n in dag.counts.items() if state not in TERMINAL) != 1:
        return None
    return dag.id


def own_run(sched: Scheduler, who: Principal) -> str | None:
    """The agent run of the job ``who`` is (its DAG's), if any."""
    job = sched.jobs.get(who.job or -1)
    dag = sched.dags.get(job.dag_id) if job else None
    return dag.agent_run_id if dag is not None else None


async def check_may_drive(engine: Engine, run_id: str, who: Principal,
                          doing: str = "drive") -> None:
    """A job's token may drive (``doing``: and write actions into) its own agent run, or
    a run it started (POST /runs, or a stage it submitted into a new run): an
    orchestrator running as a job records the code of the runs it submits stages into,
    keeps them alive and ends them when it exits, and a ``trace.run`` opened in a job
    records into it. Never another job's run or an unrelated one. An evaluation agent's
    token only writes actions into its own run: it opens, ends and drives none."""
    if who.role == "agent":
        check_agent_run(engine.sched, run_id, who, doing)
        return
    if who.role != "job" or own_run(engine.sched, who) == run_id:
        return
    run = await engine.read(lambda tx: tx.get_run(run_id))
    by = (run or {}).get("started_by") or {}
    if not (by.get("role") == "job" and by.get("job") == who.job):
        raise Forbidden(f"a job may only {doing} its own agent run or one it started, not "
                        f"{run_id!r}")


def check_agent_run(sched: Scheduler, run_id: str, who: Principal,
                    doing: str = "write into") -> None:
    """An evaluation agent's token (role ``agent``) may write actions into (``doing``) or read
    its own run (its job's DAG's) and no other; nothing else ``doing``."""
    if who.role != "agent":
        return
    if doing not in ("write into", "read") or own_run(sched, who) != run_id:
        raise Forbidden(f"an evaluation agent's token may only record actions into its own "
                        f"run (and read its totals), not {doing} {run_id!r}")


def check_person_opening(existing: dict[str, object], who: Principal) -> None:
    """A person's token opening (``POST /runs``) a run a job opened first: 409. A run id a
    person's process chooses (``trace.run(run_id="etl-2026-12-01")``) can be guessed, and the
    job, which may write into a run it started, would have shared the person's recording."""
    by = existing.get("started_by")
    if who.role != "job" and isinstance(by, dict) and by.get("role") == "job":
        raise Conflict(f"agent run {existing['id']!r} was opened by {started_by_label(by)}, "
                       "which may write into it: record under another run id",
                       details={"started_by": by})


async def check_replay_of(engine: Engine, fields: dict[str, object], who: Principal) -> None:
    """A job may name in a run's ``replay_of`` only a run it may drive: a run's replays are
    listed and compared with it, and one still running keeps it from retention, so naming
    another job's run forged a replay of it, or kept it for as long as the fake ran."""
    replayed = fields.get("replay_of")
    if who.role == "job" and isinstance(replayed, str):
        await check_may_drive(engine, replayed, who, "name in replay_of")


async def check_stage(engine: Engine, run_id: str, who: Principal) -> None:
    """A job may submit stages into its own agent run, a new one, or one it started (an
    orchestrator running as a job), never into another run: its stage's jobs could then
    write into that run (their tokens' run is their DAG's), forging another agent's
    recording."""
    if who.role != "job" or own_run(engine.sched, who) == run_id:
        return
    run = await engine.read(lambda tx: tx.get_run(run_id))
    by = (run or {}).get("started_by") or {}
    if run is not None and not (by.get("role") == "job" and by.get("job") == who.job):
        raise Forbidden(f"a job may add stages only to its own agent run, a new one or one "
                        f"it started, not to {run_id!r}", details={"field": "agent_run_id"})
