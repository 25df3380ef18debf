"""Turning what users type (``plan``, ``PLAN/plan``, ``DAG-x#2/plan``, ``17``) into rows."""

from __future__ import annotations

from titan.errors import NotFound, ValidationFailed
from titan.storage.base import Row, Transaction


def split_dag(ref: str) -> tuple[str, int | None]:
    name, _, run = ref.partition("#")
    if name.startswith("DAG-"):
        name = name[4:]
    if run:
        if not run.isdigit():
            raise ValidationFailed(f"bad DAG reference {ref!r}: the run after '#' must be a number")
        return name, int(run)
    return name, None


def find_dag(tx: Transaction, ref: str) -> Row:
    dag = None
    if ref.isdigit():
        dag = tx.get_dag(int(ref))
    if dag is None:
        name, run = split_dag(ref)
        dag = tx.find_dag(name, run)
    if dag is None:
        raise NotFound(f"no DAG {ref!r}", details={"ref": ref})
    return dag


def find_job(tx: Transaction, ref: str) -> Row:
    job = None
    if ref.isdigit():
        job = tx.get_job(int(ref))
    if job is None and "/" in ref:
        dag_part, _, job_id = ref.rpartition("/")
        name, run = split_dag(dag_part)
        job = tx.find_job(job_id, name, run)
    elif job is None:
        job = tx.find_job(ref)
    if job is None:
        raise NotFound(f"no job {ref!r}", details={"ref": ref})
    return job
