"""What a person does to running work through the SDK: cancel, stop a service, retry, and
decide approval gates (part of :class:`~titan.client.client.TitanClient`)."""

from __future__ import annotations

from typing import Any

from titan.client.transport import Transport
from titan.errors import AmbiguousRef, NotFound
from titan.url_paths import quote_row_ref

Ref = str | int


class ControlOps:
    """``cancel``, ``stop_service``, ``retry``, ``approve`` and ``reject``."""

    _transport: Transport

    def cancel(self, ref: Ref) -> dict[str, Any]:
        """Cancel a job, or (``ref`` naming no job) every unfinished job of a DAG; the job's
        or the DAG's object. A bare reference that is a job's and another thing is refused
        (:meth:`_which`): ``cancel("training")`` cancelled a job named so in DAG ``nightly``
        and left the DAG ``training`` running."""
        if self._which(ref, "cancel") != "dag":
            try:
                reply: dict[str, Any] = self._transport.call(
                    "POST", f"/jobs/{quote_row_ref(ref)}/cancel"
                )
                return reply
            except NotFound:
                pass
        try:
            reply = self._transport.call("POST", f"/dags/{quote_row_ref(ref)}/cancel")
            return reply
        except NotFound:
            raise NotFound(f"no job or DAG {ref!r}", details={"ref": str(ref)}) from None

    def _which(self, ref: Ref, verb: str, *, deadline: float | None = None) -> str | None:
        """``"dag"`` when a bare reference (a number, a plain name) names a DAG and no job;
        None when the job reading, else the DAG's, is right. A number that is a job's id and
        a DAG's is refused with :class:`AmbiguousRef`, each one's own reference said, whichever
        DAG the job is of: jobs and DAGs are numbered apart, and ``cancel(dag["id"])``
        cancelled the job of that number, of another DAG or the DAG's first job alone. So is
        a plain name that is a DAG's and a job's of another DAG; a name that is a DAG's and a
        job's of it (``titan submit train.py``'s DAG ``train`` and its job) is the job, as
        documented (``DAG-train`` is the DAG). ``deadline``: a wait's, which its looking up
        may not outlast."""
        if isinstance(ref, int):
            numeric = True
        elif not isinstance(ref, str):
            return None  # the call itself says what a reference is
        else:
            digits = ref[1:] if ref.startswith("#") else ref
            numeric = digits.isascii() and digits.isdigit()
            if not numeric and (any(c in ref for c in "/#") or ref.startswith("DAG-")):
                return None  # a DAG-x, a dag/job or a name#run: one kind only
        try:  # the DAG first: a job's plain name is rarely a DAG's, and then one read says so
            dag = self._transport.call("GET", f"/dags/{quote_row_ref(ref)}",
                                       params={"jobs": "false"}, deadline=deadline)
        except NotFound:
            return None
        try:
            job = self._transport.call("GET", f"/jobs/{quote_row_ref(ref)}", deadline=deadline)
        except NotFound:
            return "dag"
        if not numeric and job.get("dag_id") == dag.get("id"):
            return None
        dag_ref = dag.get("ref") if numeric else f"DAG-{ref}"
        what = "is both the id of" if isinstance(ref, int) or ref.startswith("#") \
            else "names both"
        own = "its job" if job.get("dag_id") == dag.get("id") else "the job"  # a number
        raise AmbiguousRef(
            f"{ref!r} {what} the DAG {dag.get('ref')} and {own} {job.get('ref')}: "
            f"{verb} {dag_ref!r} for the DAG, or {job.get('ref')!r} for the job",
            details={"ref": str(ref), "dag": dag.get("ref"), "job": job.get("ref")})

    def stop_service(self, ref: Ref, grace: float | None = None) -> dict[str, Any]:
        """Stop a service gracefully: SIGTERM, then SIGKILL after ``grace`` seconds (default:
        its ``stop_grace``; more than 0). Unlike a cancel it ends ``COMPLETED``, once its
        process has gone: ``wait(ref)`` returns then. Raises ``Conflict`` for a job that is
        not a service or has ended."""
        reply: dict[str, Any] = self._transport.call(
            "POST", f"/jobs/{quote_row_ref(ref)}/stop", json={"grace": grace})
        return reply

    def retry(self, ref: Ref) -> dict[str, Any]:
        """Run a FAILED, CANCELLED or TIMED_OUT job again (its skipped descendants too); the
        job object. Or, if ``ref`` names no job, a finished DAG's unsuccessful jobs
        (:meth:`retry_dag`); the DAG object. A bare reference that is a job's and another
        thing is refused (:meth:`_which`)."""
        if self._which(ref, "retry") != "dag":
            try:
                reply: dict[str, Any] = self._transport.call(
                    "POST", f"/jobs/{quote_row_ref(ref)}/retry")
                return reply
            except NotFound:
                pass
        try:
            return self.retry_dag(ref)
        except NotFound:
            raise NotFound(f"no job or DAG {ref!r}", details={"ref": str(ref)}) from None

    def retry_dag(self, ref: Ref) -> dict[str, Any]:
        """Run every unsuccessful job of a finished DAG again (failed, timed out, cancelled,
        skipped; a rejected or expired gate is asked again); the DAG object."""
        reply: dict[str, Any] = self._transport.call("POST", f"/dags/{quote_row_ref(ref)}/retry")
        return reply

    def approve(self, ref: Ref, comment: str | None = None) -> dict[str, Any]:
        """Approve a gate waiting for approval (``"DAG/job.approval"`` or its numeric id):
        its downstream jobs run. Needs an operator or admin token."""
        reply: dict[str, Any] = self._transport.call(
            "POST", f"/jobs/{quote_row_ref(ref)}/approve", json={"comment": comment})
        return reply

    def reject(self, ref: Ref, comment: str | None = None) -> dict[str, Any]:
        """Reject a gate waiting for approval: it fails and its downstream jobs are SKIPPED."""
        reply: dict[str, Any] = self._transport.call(
            "POST", f"/jobs/{quote_row_ref(ref)}/reject", json={"comment": comment})
        return reply
