"""Submitting a DAG: its scripts checked, its rows stored with its run's, then scheduled.

Part of :class:`~titan.master.scheduling.engine.Engine` (a mixin). The submission commits
before the scheduler sees it: the DAG, its jobs (READY already where they can run at once) and
whatever a stage of an agent run writes (:class:`~.engine_core.StageHooks`) in one transaction.

A job that a parked worker can take at once, with nothing queued ahead of it, is leased in that
same transaction (its row RUNNING, its first attempt written) and pushed as soon as it commits:
an agent's next step reaches a worker one commit sooner than through the scheduler's own
lease, which commits after the submission. The worker's slots are reserved meanwhile.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import PurePosixPath
from typing import Any

from titan.errors import InvalidDAG
from titan.master.idempotency import once
from titan.master.scheduling.engine_core import EngineCore
from titan.master.scheduling.engine_recovery import job_rec
from titan.master.scheduling.state import (
    APPROVAL,
    NO_WORKER,
    PENDING,
    READY,
    RUNNING,
    Changes,
    DagRec,
    WorkerRec,
    capacity,
    job_event,
)
from titan.storage.base import Row, Transaction


class EngineSubmission:
    async def check_scripts(self: EngineCore, specs: list[Row]) -> None:
        """InvalidDAG unless every script the validated ``specs`` name was uploaded. What then
        commits rows naming them holds them from before this check (``blob_holds.hold``) or
        checks them again in its own transaction (:func:`use_scripts`): garbage collection may
        delete them in between otherwise."""
        known = self.blob_holds.known
        shas = {s["script_sha256"] for s in specs if s["script_sha256"]} - known
        present = await self.read(lambda tx: tx.blobs_present(shas)) if shas else set()
        known.update(present)
        present |= known
        for spec in specs:
            if spec["script_sha256"] and spec["script_sha256"] not in present:
                raise InvalidDAG(
                    f"job {spec['job_id']!r}: script blob {spec['script_sha256'][:12]}… was not "
                    "uploaded, or was collected as unused (PUT /api/v1/blobs/{sha256} first)",
                    details={"job_id": spec["job_id"], "field": "script_sha256",
                             "sha256": spec["script_sha256"]},
                )

    async def pin_projects(self: EngineCore, specs: list[Row]) -> None:
        """Pin each archive job of the validated ``specs`` to one upload of its project
        (``<project>.zip``): its ``script_sha256`` becomes that upload's, which the worker
        fetches as a blob. Left out, the newest upload of that name now; given (the SDK sends
        the one it uploaded), one of that name with that content, else InvalidDAG. Resolved
        by name when the job ran, a later upload under the name (another DAG's job token
        can make one) changed what a submitted job, or its retry, ran."""
        wanted: dict[tuple[str, str | None], list[Row]] = {}
        for spec in specs:
            if spec["is_archive"]:
                project = PurePosixPath(spec["filename"].replace("\\", "/")).parts[0]
                wanted.setdefault((f"{project}.zip", spec["script_sha256"]), []).append(spec)
        if not wanted:
            return

        def look(tx: Transaction) -> dict[tuple[str, str | None], str | None]:
            found = {}
            for name, sha in wanted:
                row = tx.latest_file(name=name, sha256=sha)
                found[(name, sha)] = row["sha256"] if row is not None else None
            return found

        for (name, sha), pinned in (await self.read(look)).items():
            job_id = wanted[(name, sha)][0]["job_id"]
            if pinned is None and sha is None:
                raise InvalidDAG(
                    f"job {job_id!r}: its project {name!r} was never uploaded: upload the "
                    "project's folder first (upload_project_folder, the SDK)",
                    details={"job_id": job_id, "field": "filename", "file": name})
            if pinned is None:
                raise InvalidDAG(
                    f"job {job_id!r}: script_sha256 {sha[:12] if sha else ''}… is no upload of "
                    f"its project {name!r}: upload the project's folder again, or leave "
                    "script_sha256 out to run its latest upload",
                    details={"job_id": job_id, "field": "script_sha256", "file": name,
                             "sha256": sha})
            for spec in wanted[(name, sha)]:
                spec["script_sha256"] = pinned

    async def submit_dag(self: EngineCore, name: str, specs: list[Row],
                         agent_run_id: str | None, agent_id: str | None = None, *,
                         idempotency_key: str | None = None, scope: str = "",
                         started_by: Row | None = None, schedule: str | None = None,
                         within: Callable[[Transaction, int], None] | None = None) -> int:
        """Validate, store and schedule a DAG; its id. A repeat of an ``idempotency_key``
        already committed returns that DAG's id and schedules nothing.

        ``schedule`` names the schedule whose tick this run is; ``within(tx, dag_id)`` runs in
        the submission's own transaction, after the DAG's rows (a schedule records its fire
        there, so the fire and the run commit together; raising aborts both)."""
        await self.pin_projects(specs)  # an archive job's project: which upload it runs
        # Held from the check to the commit: garbage collection deletes none of these
        # scripts meanwhile (blob_holds.py).
        async with self.blob_holds.hold(s["script_sha256"] for s in specs):
            await self.check_scripts(specs)
            now = time.time()
            rows = [job_row(spec, i, now, self.config.default_retries) for i, spec in enumerate(specs)]
            for row in rows:
                # A job that can run at once is stored READY with its submission, so whoever reads
                # it after submit_dag returned sees READY (the commit that leases it does not make
                # the caller wait); the scheduler adopts a READY row without marking it again.
                if not row["parents"] and not row["delay"] and row["job_type"] != APPROVAL:
                    if self.sched.capable(row["requirement"]):
                        row.update(state=READY, ready_at=now)
                    else:  # stored with why, as the scheduler then says it: a view may read it
                        row["reason"] = f"{NO_WORKER}{row['requirement']}"
                elif not row["parents"] and row["delay"] and row["job_type"] != APPROVAL:
                    # Its wait, stored with it (the scheduler set it in a later commit: a job read
                    # right after submit_dag said nothing of its delay).
                    row.update(not_before=now + row["delay"],
                               reason=f"delay: runnable {row['delay']:g}s after its parents "
                                      "finished")

            run_events: list[tuple[str, Row]] = []
            leases = lease_with_submission(self, rows, agent_run_id, now)

            def insert(tx: Transaction) -> list[Any]:
                hooks = self.stage_hooks if agent_run_id else None
                if hooks is not None and agent_run_id:
                    run_events.extend(hooks.stage_submitted(tx, agent_run_id, agent_id, now,
                                                            started_by))
                dag_row: Row = {
                    "name": name, "agent_run_id": agent_run_id, "submitted_at": now,
                    "status": "RUNNING" if leases else "WAITING", "cancelled": False,
                    "job_count": len(rows), "started_at": now if leases else None,
                }
                if schedule is not None:
                    dag_row["schedule"] = schedule
                dag_id, run = tx.insert_next_dag(dag_row)
                for row in rows:
                    row["dag_id"] = dag_id
                ids = tx.insert_jobs(rows)
                if leases:
                    tx.insert_attempts([{"job": ids[r["position"]], "attempt": 1,
                                         "worker_id": w.id, "started_at": now, "state": RUNNING}
                                        for r, w in leases])
                if hooks is not None and agent_run_id:
                    hooks.stage_stored(tx, agent_run_id)
                if within is not None:
                    within(tx, dag_id)
                return [run, dag_id, ids]

            try:
                (run, dag_id, ids), replayed = await self.run(
                    once(idempotency_key, scope, insert, next_run_of=name))
            finally:
                for _row, worker in leases:
                    worker.reserved -= 1
        if replayed:
            return int(dag_id)
        for row, job_id in zip(rows, ids, strict=True):
            row["id"] = job_id
            self.job_names.note(row["job_id"], job_id)
        dag = DagRec(id=dag_id, name=name, run=run, agent_run_id=agent_run_id,
                     status="RUNNING" if leases else "WAITING",
                     started_at=now if leases else None, submitted_at=now)
        ch = Changes()
        ch.events.extend(run_events)
        ch.events.append(("dag_created", {"id": dag_id, "name": name, "run": run,
                                          "agent_run_id": agent_run_id, "schedule": schedule}))
        self.sched.load(dag, [job_rec(r) for r in rows], ch)
        if leases:
            hand_over(self, dag, leases, ch)
        # Not awaited: the submission is durable already and holds every READY that is known
        # now (recovery re-derives the rest), so the caller need not wait for this commit.
        self.submit(ch)
        return int(dag_id)


def use_scripts(tx: Transaction, specs: list[Row], now: float) -> None:
    """Inside the transaction that stores ``specs`` elsewhere than as a DAG (a schedule's
    jobs): InvalidDAG unless their scripts are still recorded, which counts as using them
    ``now``. The writer runs this transaction and garbage collection's deletions one after
    the other: either the scripts were deleted first (refused here), or they are used now
    and the collection, which deletes only blobs unused for its grace period, keeps them."""
    shas = {s["script_sha256"] for s in specs if s["script_sha256"]}
    present = tx.use_blobs(shas, now) if shas else set()
    for spec in specs:
        if spec["script_sha256"] and spec["script_sha256"] not in present:
            raise InvalidDAG(f"job {spec['job_id']!r}: script blob "
                             f"{spec['script_sha256'][:12]}… was collected as unused; "
                             "upload it again",
                             details={"job_id": spec["job_id"], "field": "script_sha256",
                                      "sha256": spec["script_sha256"]})


def job_row(spec: Row, position: int, now: float, default_retries: int) -> Row:
    # A service restarts in place on its worker (its max_restarts): retrying it elsewhere
    # after it gave up is asked for explicitly.
    default = 0 if spec.get("service") is not None else default_retries
    retries = spec["retries"] if spec["retries"] is not None else default
    return {
        "job_id": spec["job_id"], "position": position, "filename": spec["filename"],
        "script_sha256": spec["script_sha256"], "job_type": spec["job_type"],
        "args": spec["args"], "parents": spec["parents"], "env": spec["env"],
        "port": spec["port"], "is_archive": spec["is_archive"], "priority": spec["priority"],
        "delay": spec["delay"], "affinity": spec["affinity"], "requirement": spec["requirement"],
        "max_attempts": retries + 1, "timeout": spec["timeout"], "runner": spec["runner"],
        "hitl_message": spec["hitl_message"], "max_wait_seconds": spec["max_wait_seconds"],
        "service": spec.get("service"), "state": PENDING, "attempt": 0, "submitted_at": now,
        # Every row has every key (one insert statement for the DAG): set when it is READY
        # with its submission, or leased with it.
        "ready_at": None, "started_at": None, "worker_id": None, "lease_expires_at": None,
    }


def lease_with_submission(engine: EngineCore, rows: list[Row], agent_run_id: str | None,
                          now: float) -> list[tuple[Row, WorkerRec]]:
    """Lease the submission's runnable jobs to workers parked with free slots, in its own
    rows: only where nothing queued would go first (the scheduler's order is kept) and
    for plain jobs (gates, services and held runs take the scheduler's path). The slots
    are reserved until the submission commits."""
    sched = engine.sched
    if agent_run_id is not None and agent_run_id in sched.blocked_runs:
        return []
    waiting = [(w, free) for w in sched.workers.values()
               if w.poll is not None and not w.poll.done() and w.live
               and (free := capacity(w, w.poll_free)) > 0 and not sched.queued_for(w)]
    if not waiting:  # nobody to take a job now (a large DAG is not even looked through)
        return []
    ready = sorted((r for r in rows if r["state"] == READY and r.get("service") is None
                    and r["job_type"] != APPROVAL),
                   key=lambda r: (-r["priority"], r["position"]))
    leases: list[tuple[Row, WorkerRec]] = []
    for worker, free in waiting:
        if not ready:
            break
        rest = []
        for r in ready:
            if free > 0 and r["requirement"] in worker.capabilities:
                free -= 1
                worker.reserved += 1
                leases.append((r, worker))
            else:
                rest.append(r)
        ready = rest
    for r, worker in leases:
        r.update(state=RUNNING, attempt=1, worker_id=worker.id, started_at=now,
                 lease_expires_at=now + sched.lease_seconds)
    return leases


def hand_over(engine: EngineCore, dag: DagRec, leases: list[tuple[Row, WorkerRec]],
              ch: Changes) -> None:
    """The submission's own leases, committed: to their workers' next push (a worker lost
    meanwhile loses them at once, and they queue again)."""
    sched = engine.sched
    for row, worker in leases:
        job = sched.jobs[row["id"]]
        ch.events.append(("job_updated", job_event(job)))
        if worker.live and sched.workers.get(worker.id) is worker:
            worker.assigned.append(job.id)
        else:
            job.lease_expires = sched.now() - 1.0
            sched.timer("lease", job.id, ch)
    for worker in {id(w): w for _r, w in leases}.values():
        if worker.assigned and worker.poll is not None and not worker.poll.done():
            worker.poll.set_result(None)
    ch.events.append(("dag_updated", {"id": dag.id, "name": dag.name, "run": dag.run,
                                      "status": dag.status, "agent_run_id": dag.agent_run_id}))
