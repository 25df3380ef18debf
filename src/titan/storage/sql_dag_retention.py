"""SQL for deleting old DAG runs with their jobs, attempts and log lines (part of
:class:`SQLTransaction`).

What may go is decided here, in one query, so the rule holds for the API, the CLI and the
master's hourly sweep alike: a DAG run that has finished before the cutoff, that belongs to
no agent run (a stage stays as long as its run: run retention decides, and detaches the
stages of the runs it deletes), and that is not the latest run of its name. Keeping the
latest keeps run numbers growing (the next run of a name is its highest plus one) and keeps
what a schedule's overlap policy reads of its last run.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from sqlalchemy import Connection, delete, select, tuple_, update

from titan.storage import schema as t
from titan.storage.base import iter_chunks

#: DAG statuses that can no longer change on their own (a retry brings one back first).
_FINISHED = ("COMPLETED", "FAILED", "PARTIAL", "CANCELLED")


class DagRetentionSQL:
    conn: Connection

    def prunable_dags(self, before: float, limit: int,
                      skip: Collection[int] = ()) -> list[int]:
        d = t.dags.c
        newer = t.dags.alias("newer")
        q = (select(d.id)
             .where(d.status.in_(_FINISHED), d.finished_at.isnot(None), d.finished_at < before,
                    d.agent_run_id.is_(None),
                    select(newer.c.id).where(newer.c.name == d.name, newer.c.run > d.run)
                    .exists())
             .order_by(d.id).limit(limit + len(skip)))
        ids = [int(r[0]) for r in self.conn.execute(q)]
        return [i for i in ids if i not in skip][:limit]

    def delete_log_lines(self, dag_ids: Sequence[int], limit: int) -> int:
        lines = t.log_lines.c
        some = (select(lines.job, lines.attempt, lines.seq)
                .where(lines.job.in_(select(t.jobs.c.id).where(t.jobs.c.dag_id.in_(dag_ids))))
                .limit(limit))
        return int(self.conn.execute(delete(t.log_lines).where(
            tuple_(lines.job, lines.attempt, lines.seq).in_(some))).rowcount)

    def delete_dags(self, dag_ids: Sequence[int]) -> int:
        deleted = 0
        for chunk in iter_chunks(list(dag_ids), 200):
            jobs = select(t.jobs.c.id).where(t.jobs.c.dag_id.in_(chunk))
            self.conn.execute(delete(t.log_lines).where(t.log_lines.c.job.in_(jobs)))
            self.conn.execute(delete(t.attempts).where(t.attempts.c.job.in_(jobs)))
            self.conn.execute(delete(t.jobs).where(t.jobs.c.dag_id.in_(chunk)))
            # A schedule's history keeps the tick, without the run it no longer has.
            self.conn.execute(update(t.schedule_fires)
                              .where(t.schedule_fires.c.dag_id.in_(chunk)).values(dag_id=None))
            deleted += self.conn.execute(delete(t.dags).where(t.dags.c.id.in_(chunk))).rowcount
        return deleted
