"""Turning what users type (``plan``, ``PLAN/plan``, ``DAG-x#2/plan``, ``17``) into rows, and the
newest job of each name submitted lately (a wait on a name needs no read)."""

from __future__ import annotations

from collections import OrderedDict

from titan.errors import NotFound, ValidationFailed
from titan.storage.base import Row, Transaction

_INT64_MAX = 2**63 - 1


def as_id(text: str) -> int | None:
    """``text`` as a row id, or None: ASCII digits only ('²'.isdigit() is true too), and no
    larger than the database's 64-bit integers (a larger one is no row, not an overflow)."""
    if text.isascii() and text.isdigit():
        value = int(text)
        if value <= _INT64_MAX:
            return value
    return None


def split_dag(ref: str) -> tuple[str, int | None]:
    name, _, run = ref.partition("#")
    if name.startswith("DAG-"):
        name = name[4:]
    if run:
        if not (run.isascii() and run.isdigit()):
            raise ValidationFailed(f"bad DAG reference {ref!r}: the run after '#' must be a number")
        number = as_id(run)
        if number is None:
            raise NotFound(f"no DAG {ref!r}", details={"ref": ref})
        return name, number
    return name, None


def find_dag(tx: Transaction, ref: str) -> Row:
    dag = None
    if (number := as_id(ref)) is not None:
        dag = tx.get_dag(number)
    if dag is None:
        name, run = split_dag(ref)
        dag = tx.find_dag(name, run)
    if dag is None:
        raise NotFound(f"no DAG {ref!r}", details={"ref": ref})
    return dag


def find_job(tx: Transaction, ref: str) -> Row:
    job = None
    if (number := as_id(ref)) is not None:
        job = tx.get_job(number)
    if job is None and "/" in ref:
        dag_part, _, job_id = ref.rpartition("/")
        name, run = split_dag(dag_part)
        job = tx.find_job(job_id, name, run)
    elif job is None:
        job = tx.find_job(ref)
    if job is None:
        raise NotFound(f"no job {ref!r}", details={"ref": ref})
    return job


class RecentJobNames:
    """The newest job of each job name submitted lately: what a plain name like ``plan``
    means (:func:`find_job`: the newest job of that name), known without a read while the
    name is here. A wait on a name registers on that job before anything else, so nothing
    that finishes it meanwhile is missed. Only this engine's submissions are noted, from its
    start on (a job of the name submitted before is older than any noted here), and at most
    ``limit`` names, the least recent forgotten first; a name not here, or whose job was
    deleted since, is read as before."""

    def __init__(self, limit: int = 10_000) -> None:
        self._ids: OrderedDict[str, int] = OrderedDict()
        self._limit = limit

    def note(self, name: str, job_id: int) -> None:
        known = self._ids.get(name)
        if known is not None and known > job_id:  # ids grow: the newer one stays
            return
        self._ids[name] = job_id
        self._ids.move_to_end(name)
        if len(self._ids) > self._limit:
            self._ids.popitem(last=False)

    def newest(self, ref: str) -> int | None:
        """The id a plain job name ``ref`` means, if it was submitted lately; None for a
        name not noted and for refs that are not plain names (an id, ``dag/job``)."""
        if "/" in ref or as_id(ref) is not None:
            return None
        return self._ids.get(ref)
