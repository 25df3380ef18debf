"""Reading and waiting on jobs and DAGs through the SDK: their objects, a page of a DAG's
jobs, the list of DAGs, and the long-polled waits (part of
:class:`~titan.client.client.TitanClient`)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, Literal

from titan.client.long_poll import long_poll, wait_deadline
from titan.client.transport import Transport
from titan.errors import NotFound, ValidationFailed
from titan.url_paths import quote_row_ref

Ref = str | int


def job_ref(ref: Ref | None, job_id: Ref | None, call: str) -> Ref:
    """The job a reader was given, by position (``ref``) or as ``job_id=``: seed 002 calls
    ``client.fetch_logs(job_id)``, and the SDK's contract names the parameter so, which a
    caller writes as a keyword too. Both, or neither, is a usage error naming the call."""
    if ref is not None and job_id is not None:
        raise ValidationFailed(f"{call}() got the job both by position and as job_id=: "
                               "give it once", details={"field": "job_id"})
    if ref is None and job_id is None:
        # Said as every reader says a reference of the wrong type (got None), by the name
        # the caller used.
        raise ValidationFailed(f"{call}() needs the job: its reference (a name, e.g. "
                               f"{call}(\"train\"), a numeric id or the object the client "
                               f"returned) or job_id=, got None", details={"field": "ref"})
    return ref if ref is not None else job_id  # type: ignore[return-value]


class ReadOps:
    """``get_job``, ``get_job_status``, ``get_dag``, ``dag_jobs``, ``list_dags`` and the
    waits: ``wait_job``, ``wait_dag``, ``wait``."""

    _transport: Transport
    _which: Callable[..., str | None]  # ControlOps's: which kind a bare reference names

    # ------------------------------------------------------------------ reading state

    def get_job(self, ref: Ref | None = None, *, job_id: Ref | None = None) -> dict[str, Any]:
        """The job object (``job_id=``: the reference by name, as for every job reader)."""
        ref = job_ref(ref, job_id, "get_job")
        reply: dict[str, Any] = self._transport.call("GET", f"/jobs/{quote_row_ref(ref)}")
        return reply

    def get_job_status(self, ref: Ref | None = None, *, job_id: Ref | None = None) -> str:
        """The job's state: ``PENDING``, ``READY``, ``RUNNING``, ``COMPLETED``, ``FAILED``..."""
        return str(self.get_job(job_ref(ref, job_id, "get_job_status"))["state"])

    def get_dag(self, ref: Ref, *, jobs: bool = True) -> dict[str, Any]:
        """The DAG object, with its jobs (``jobs=False``: its ``counts`` only, which a DAG of
        100,000 jobs answers in a moment; :meth:`dag_jobs` pages through them)."""
        reply: dict[str, Any] = self._transport.call(
            "GET", f"/dags/{quote_row_ref(ref)}", params=None if jobs else {"jobs": "false"})
        return reply

    def dag_jobs(self, ref: Ref, *, state: str | Sequence[str] | None = None,
                 limit: int = 1000, offset: int = 0) -> dict[str, Any]:
        """One page of the DAG's jobs in submission order: ``{"jobs", "total", "limit",
        "offset"}``; ``state`` keeps only jobs in that state (or those states)."""
        if state is not None and not isinstance(state, str):
            state = ",".join(state)
        reply: dict[str, Any] = self._transport.call(
            "GET", f"/dags/{quote_row_ref(ref)}/jobs",
            params={"state": state, "limit": limit, "offset": offset})
        return reply

    def list_dags(
        self,
        *,
        status: str | None = None,
        name: str | None = None,
        agent_run_id: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> list[dict[str, Any]]:
        """DAGs, newest first, filtered as asked."""
        reply = self._transport.call("GET", "/dags", params={
            "status": status, "name": name, "agent_run_id": agent_run_id,
            "limit": limit, "offset": offset,
        })
        return list(reply.get("dags", []))

    # ------------------------------------------------------------------ waiting

    def wait_job(self, ref: Ref | None = None, timeout: float | None = None, *,
                 job_id: Ref | None = None) -> dict[str, Any]:
        """Block until the job is terminal; the job object. :class:`WaitTimeout` after
        ``timeout`` seconds (``None``: no limit)."""
        ref = job_ref(ref, job_id, "wait_job")
        reply: dict[str, Any] = long_poll(
            self._transport, f"/jobs/{quote_row_ref(ref)}/wait", timeout, what=f"job {ref!r}"
        )
        return reply

    def wait_dag(self, ref: Ref, timeout: float | None = None, *,
                 jobs: bool = True) -> dict[str, Any]:
        """Block until every job of the DAG is finished; the DAG object (``jobs=False``:
        without its jobs, as :meth:`get_dag`)."""
        return self._wait_dag(ref, timeout, jobs=jobs)

    def _wait_dag(self, ref: Ref, timeout: float | None, *, jobs: bool = True,
                  until: float | None | Literal["timeout"] = "timeout",
                  what: str | None = None) -> dict[str, Any]:
        """:meth:`wait_dag`, as one step of a longer wait that ends at ``until`` (monotonic;
        None: no end, the restart grace alone bounds an unreachable master), said in errors
        as ``what`` (default ``DAG 'ref'``): see :func:`~titan.client.long_poll.long_poll`."""
        reply: dict[str, Any] = long_poll(
            self._transport, f"/dags/{quote_row_ref(ref)}/wait", timeout,
            what=what or f"DAG {ref!r}", params=None if jobs else {"jobs": "false"},
            until=until)
        return reply

    def wait(self, ref: Ref, timeout: float | None = None) -> dict[str, Any]:
        """Block until a job or a DAG has finished; its object (a job's has ``state``, a
        DAG's ``status``). The job reading of ``ref`` wins, then the DAG one; a bare
        reference that is a job's and another thing is refused (:meth:`_which`):
        ``wait(dag["id"])`` returned at once with the job that had that number."""
        if ref is None:  # said as wait(), not as the wait_job() it would go through
            job_ref(None, None, "wait")
        start = time.monotonic()

        def left() -> float | None:  # the lookups and a first wait come out of the timeout
            return None if timeout is None else max(0.0, timeout - (time.monotonic() - start))

        if self._which(ref, "wait", deadline=wait_deadline(timeout)) != "dag":
            try:
                return self.wait_job(ref, left())
            except NotFound:
                pass
        try:
            return self.wait_dag(ref, left())
        except NotFound:
            raise NotFound(f"no job or DAG {ref!r}", details={"ref": str(ref)}) from None
