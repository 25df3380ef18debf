"""DAGs back into the scheduler's memory: the unfinished ones at start, a finished one to retry.

Part of :class:`~titan.master.scheduling.engine.Engine` (a mixin). The database holds a prefix
of the scheduler's decisions; loading its rows into the scheduler rebuilds the same picture
(see :meth:`~titan.master.scheduling.scheduler.Scheduler.load`).
"""

from __future__ import annotations

import asyncio
import logging

from titan.errors import NotFound
from titan.master.scheduling.engine_core import EngineCore
from titan.master.scheduling.state import Changes, DagRec, JobRec
from titan.storage.base import Row, Transaction

log = logging.getLogger("titan.master")


class EngineRecovery:
    async def recover(self: EngineCore) -> None:
        def load(tx: Transaction) -> tuple[list[Row], list[Row]]:
            dags = tx.unfinished_dags()
            return dags, tx.jobs_of_dags([d["id"] for d in dags])

        dags, jobs = await self.read(load)
        by_dag: dict[int, list[Row]] = {}
        for row in jobs:
            by_dag.setdefault(row["dag_id"], []).append(row)
        ch = Changes()
        for row in dags:
            self.sched.load(dag_rec(row), [job_rec(j) for j in by_dag.get(row["id"], [])], ch)
        await self.submit(ch)
        if dags:
            log.info("recovered %d unfinished DAG(s) with %d job(s)", len(dags), len(jobs))

    async def revive(self: EngineCore, dag_id: int) -> DagRec:
        """Bring a finished DAG back into memory (a user retries one of its jobs)."""
        if dag_id in self.sched.dags:
            return self.sched.dags[dag_id]
        finishing = self.retiring.get(dag_id)
        if finishing is not None:  # its end is not in the database yet (EngineCore.retiring)
            await asyncio.wait([finishing])  # whether it committed is the writer's to report
            if dag_id in self.sched.dags:
                return self.sched.dags[dag_id]

        def load(tx: Transaction) -> tuple[Row | None, list[Row]]:
            return tx.get_dag(dag_id), tx.jobs_of_dags([dag_id])

        # Not while retention chooses or deletes a batch: it could delete the rows read here.
        async with self.revivals:
            row, jobs = await self.read(load)
            if row is None:
                raise NotFound(f"no DAG with id {dag_id} (deleted by retention?)")
            if dag_id in self.sched.dags:  # revived concurrently while we read
                return self.sched.dags[dag_id]
            ch = Changes()
            self.sched.load(dag_rec(row), [job_rec(j) for j in jobs], ch)
        for listener in self.revive_listeners:
            listener(row)
        await self.submit(ch)
        return self.sched.dags[dag_id]


def job_rec(row: Row) -> JobRec:
    return JobRec(
        id=row["id"], dag_id=row["dag_id"], job_id=row["job_id"],
        requirement=row["requirement"], priority=row["priority"], delay=row["delay"],
        affinity=bool(row["affinity"]), max_attempts=row["max_attempts"], state=row["state"],
        attempt=row.get("attempt") or 0, row=row, reason=row.get("reason"),
        worker_id=row.get("worker_id"), lease_expires=row.get("lease_expires_at"),
        not_before=row.get("not_before"), approval_deadline=row.get("approval_deadline"),
        service_status=row.get("service_status"), started_at=row.get("started_at"),
        decided_by=row.get("decided_by"), decided_at=row.get("decided_at"),
        decision_comment=row.get("decision_comment"), decisions=row.get("decisions"),
    )


def dag_rec(row: Row) -> DagRec:
    return DagRec(id=row["id"], name=row["name"], run=row["run"],
                  agent_run_id=row["agent_run_id"], status=row["status"],
                  started_at=row["started_at"], cancelled=bool(row["cancelled"]),
                  submitted_at=row["submitted_at"])
