"""Turning what users type (``plan``, ``PLAN/plan``, ``DAG-x#2/plan``, ``17``, ``#17``) into rows,
and the newest job of each name submitted lately (a wait on a name needs no read).

Digits alone are a numeric id, or a name made of digits (``TitanJob(str(i))``, ``titan submit
123.py``): whichever exists; when both do and are two rows, :class:`~titan.errors.AmbiguousRef`
gives each one's own reference, never a guess. ``#17`` is the id alone (no name holds '#')."""

from __future__ import annotations

from collections import OrderedDict

from titan.errors import AmbiguousRef, NotFound, ValidationFailed
from titan.storage.base import Row, Transaction

#: The largest id, run number or sequence number a row can hold: those columns are
#: INTEGER, 32 bits on PostgreSQL, which refused a larger one in a query as out of range
#: (a 400 where SQLite answered 404). A larger reference names no row.
ROW_MAX = 2**31 - 1


def as_id(text: str) -> int | None:
    """``text`` as a row id, or None: ASCII digits only ('²'.isdigit() is true too), and no
    larger than :data:`ROW_MAX` (a larger one is no row, not an overflow)."""
    if text.isascii() and text.isdigit():
        value = int(text)
        if value <= ROW_MAX:
            return value
    return None


def split_dag(ref: str, asked: str | None = None) -> tuple[str, int | None]:
    """``asked``: the whole reference the caller sent (a job's, ``dag#run/job``), which the
    error's ``details.ref`` names as every other reference error does."""
    name, _, run = ref.partition("#")
    if name.startswith("DAG-"):
        name = name[4:]
    if run:
        if not (run.isascii() and run.isdigit()):
            raise ValidationFailed(f"bad DAG reference {ref!r}: the run after '#' must be a "
                                   "number", details={"ref": asked or ref})
        number = as_id(run)
        if number is None:
            raise NotFound(f"no DAG {ref!r}", details={"ref": asked or ref})
        return name, number
    return name, None


def id_form(ref: str) -> int | None:
    """The id a ``#17`` names (a form no name can take: names hold no '#'), or None. What
    the SDK sends for an int and the dashboard for the rows it shows: a bare ``17`` may be
    refused as ambiguous once a job or DAG is named ``17``."""
    return as_id(ref[1:]) if ref.startswith("#") else None


def _not_empty(ref: str, what: str) -> None:
    """An empty reference names nothing and is no typo of a name: a 400 ("no job ''", a 404,
    read as a job deleted since for ``GET /jobs?ref=`` and ``/jobs//wait``)."""
    if not ref:
        raise ValidationFailed(f"the {what} reference is empty: give an id (17, #17), a name "
                               f"or dag/job", details={"field": "ref", "ref": ref})


def find_dag(tx: Transaction, ref: str) -> Row:
    _not_empty(ref, "DAG")
    if (number := id_form(ref)) is not None:
        dag = tx.get_dag(number)
    elif (number := as_id(ref)) is not None:
        # Digits are an id and could be a name too: the one that exists, never a guess.
        dag = by_id = tx.get_dag(number)
        named = tx.find_dag(ref)
        if by_id is not None and named is not None and by_id["id"] != named["id"]:
            first, second = f"{by_id['name']}#{by_id['run']}", f"{named['name']}#{named['run']}"
            raise AmbiguousRef(
                f"DAG {ref!r} is ambiguous: it is the id of DAG {first} and the name of DAG "
                f"{second}: say {first!r} (or '#{number}') for the first, {second!r} (or "
                f"'DAG-{ref}' for its latest run) for the second",
                details={"ref": ref, "by_id": first, "by_name": second})
        dag = dag or named
    else:
        name, run = split_dag(ref)
        dag = tx.find_dag(name, run)
    if dag is None:
        raise NotFound(f"no DAG {ref!r}", details={"ref": ref})
    return dag


def job_ref(tx: Transaction, job: Row) -> str:
    """A job's reference that names it alone, ``dag#run/job``."""
    dag = tx.get_dag(job["dag_id"])
    return f"{dag['name']}#{dag['run']}/{job['job_id']}" if dag else f"#{job['id']}"


def find_job(tx: Transaction, ref: str) -> Row:
    _not_empty(ref, "job")
    job = None
    if (number := id_form(ref)) is not None:
        job = tx.get_job(number)
    elif (number := as_id(ref)) is not None:
        # Digits are an id and could be a job id too (TitanJob(str(i))): never a guess.
        job = by_id = tx.get_job(number)
        named = tx.find_job(ref)
        if by_id is not None and named is not None and by_id["id"] != named["id"]:
            first, second = job_ref(tx, by_id), job_ref(tx, named)
            raise AmbiguousRef(
                f"job {ref!r} is ambiguous: it is the id of job {first} and the job id of "
                f"{second}: say {first!r} (or '#{number}') for the first, {second!r} for "
                "the second",
                details={"ref": ref, "by_id": first, "by_name": second})
        job = job or named
    elif "/" in ref:
        dag_part, _, job_id = ref.rpartition("/")
        name, run = split_dag(dag_part, ref)
        job = tx.find_job(job_id, name, run)
        if job is None:
            # Say which half is missing: the DAG run, or the job in a run that exists.
            dag = tx.find_dag(name, run)
            why = (f"no DAG {dag_part!r}" if dag is None
                   else f"DAG {dag['name']}#{dag['run']} has no job {job_id!r}")
            raise NotFound(f"no job {ref!r}: {why}", details={"ref": ref})
    else:
        job = tx.find_job(ref)
        if job is None:
            raise _not_a_job(tx, ref)
    if job is None:
        raise NotFound(f"no job {ref!r}", details={"ref": ref})
    return job


def _not_a_job(tx: Transaction, ref: str) -> NotFound:
    """No job is named ``ref``; when a DAG is (``titan logs nightly``, ``DAG-nightly#2``),
    say so with a few of its jobs: "no job 'nightly'" alone told a user that what they had
    just submitted did not exist. Read only on the way to a 404."""
    try:
        name, run = split_dag(ref)
    except (ValidationFailed, NotFound):
        name, run = "", None
    dag = tx.find_dag(name, run) if name else None
    if dag is None:
        return NotFound(f"no job {ref!r}", details={"ref": ref})
    shown = 5
    jobs, total = tx.dag_jobs_page(dag["id"], None, shown, 0)
    run_ref = f"{dag['name']}#{dag['run']}"
    names = ", ".join(j["job_id"] for j in jobs) + (f" and {total - shown} more"
                                                     if total > shown else "")
    such = f": name one of its jobs, such as '{run_ref}/{jobs[0]['job_id']}'" if jobs else ""
    return NotFound(f"no job {ref!r}: it names DAG {run_ref} (jobs: {names}){such}",
                    details={"ref": ref, "dag": run_ref})


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
        if "/" in ref or ref.startswith("#") or as_id(ref) is not None:
            return None
        return self._ids.get(ref)
