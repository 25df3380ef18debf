"""What a person does to running work through the SDK: cancel, stop a service, retry, and
decide approval gates (part of :class:`~titan.client.client.TitanClient`)."""

from __future__ import annotations

from typing import Any

from titan.client.transport import Transport
from titan.errors import NotFound, ValidationFailed
from titan.formats import quote_row_ref

Ref = str | int


class ControlOps:
    """``cancel``, ``stop_service``, ``retry``, ``approve`` and ``reject``."""

    _transport: Transport

    def cancel(self, ref: Ref) -> dict[str, Any]:
        """Cancel a job (or, if ``ref`` names no job, every unfinished job of a DAG). A plain
        name that is both a DAG's and a job's of another DAG is refused as ambiguous:
        ``cancel("training")`` cancelled a job named so in DAG ``nightly``, and left the DAG
        ``training`` running."""
        self._unambiguous(ref, "cancel")
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

    def _unambiguous(self, ref: Ref, verb: str, *, deadline: float | None = None) -> None:
        """Refuse a ref that names a job and a DAG that is not its own. A numeric id is one
        too: jobs and DAGs are numbered apart, so ``cancel(dag["id"])`` cancelled the job
        that happened to have that number, in another DAG. ``deadline``: a wait's, which
        its looking up may not outlast."""
        numeric = isinstance(ref, int) or (isinstance(ref, str) and ref.isdigit())
        if not numeric and (not isinstance(ref, str) or any(c in ref for c in "/#")
                            or ref.startswith("DAG-")):
            return  # a DAG-x, a dag/job or a name#run: one thing only
        try:
            job = self._transport.call("GET", f"/jobs/{quote_row_ref(ref)}", deadline=deadline)
            dag = self._transport.call("GET", f"/dags/{quote_row_ref(ref)}",
                                       params={"jobs": "false"}, deadline=deadline)
        except NotFound:
            return
        if job.get("dag_id") != dag.get("id"):
            dag_ref = dag.get("ref") if numeric else f"DAG-{ref}"
            what = "is both the id of" if numeric else "names both"
            raise ValidationFailed(
                f"{ref!r} {what} the DAG {dag.get('ref')} and the job {job.get('ref')}: "
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
        (:meth:`retry_dag`); the DAG object. A plain name that is both is refused."""
        self._unambiguous(ref, "retry")
        try:
            reply: dict[str, Any] = self._transport.call("POST", f"/jobs/{quote_row_ref(ref)}/retry")
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
