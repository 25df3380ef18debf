"""Schedules from the SDK: a DAG submitted again at each tick of a cron expression.

A mixin of :class:`~titan.client.TitanClient`. :meth:`ScheduleOps.schedule_dag` takes the
same :class:`~titan.client.TitanJob` objects as ``submit_dag``; their scripts are uploaded the
same way (content-addressed: the master keeps them, and every tick runs the scripts as they
were when the schedule was made). The master evaluates the expression (docs/schedules.md):
five fields, six with seconds first, or ``@daily``-style nicknames, in an IANA time zone.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from titan.client.job import TitanJob
from titan.client.pipeline import load_pipeline, load_schedule, schedule_error
from titan.client.pipeline import where as pipeline_where
from titan.client.transport import Transport
from titan.errors import InvalidDAG, ScriptNotFound, TitanError, ValidationFailed
from titan.formats import schedule_name_problem
from titan.url_paths import quote_segment


class ScheduleOps:
    """The ``*schedule*`` methods."""

    _transport: Transport
    _script_blobs: Callable[[Sequence[TitanJob]], dict[str, str | None]]  # FileOps's

    def schedule_dag(
        self,
        name: str,
        jobs: Sequence[TitanJob],
        cron: str,
        timezone: str = "UTC",
        catchup: str = "skip",
        overlap: str = "allow",
        *,
        paused: bool = False,
        dag_name: str | None = None,
        agent_run_id: str | None = None,
    ) -> dict[str, Any]:
        """Run ``jobs`` as a DAG at each tick of ``cron`` in ``timezone``; the schedule.

        ``catchup``: what a master that was down does with the ticks it missed — ``skip``
        them (a tick less than a minute late still fires), fire the ``latest``, or ``all``.
        ``overlap``: a tick while the last run still runs — ``allow`` another, ``skip`` it,
        or ``queue`` it until that run ends. Each run is DAG ``dag_name`` (default ``name``).
        ``agent_run_id``: a template holding ``{tick}`` (``"nightly-{tick}"``): each run is
        the agent run of that id, the tick in ISO 8601 UTC (``nightly-20240501T060000Z``).
        """
        why = schedule_name_problem(name, "the schedule name")
        if why is not None:  # the master's rule, said before any script is uploaded
            raise ValidationFailed(why, details={"field": "name"})
        body: dict[str, Any] = {
            "name": name, "cron": cron, "timezone": timezone, "catchup": catchup,
            "overlap": overlap, "paused": paused,
            "jobs": self._job_payloads("schedule_dag", name, jobs),
        }
        if dag_name is not None:
            body["dag_name"] = dag_name
        if agent_run_id is not None:
            body["agent_run_id"] = agent_run_id
        reply: dict[str, Any] = self._transport.call("POST", "/schedules", json=body,
                                                     idempotency_key=True)
        return reply

    def _job_payloads(self, method: str, name: str, jobs: Any) -> list[dict[str, Any]]:
        """The jobs as the master takes them, their scripts uploaded."""
        if isinstance(jobs, TitanJob) or not isinstance(jobs, Sequence) or not jobs:
            raise ValidationFailed(f"{method}() takes a non-empty list of TitanJob",
                                   details={"field": "jobs"})
        for job in jobs:
            if not isinstance(job, TitanJob):
                raise ValidationFailed(f"{method}() takes TitanJob objects, got {job!r}",
                                       details={"field": "jobs"})
        jobs = [job.checked() for job in jobs]  # as they stand: a field may have been set since
        if len({job.job_id for job in jobs}) != len(jobs):
            raise InvalidDAG(f"duplicate job id in schedule {name!r}", details={"field": "jobs"})
        shas = self._script_blobs(jobs)
        return [job.to_payload(shas[job.job_id]) for job in jobs]

    def schedule_yaml(
        self,
        path: str | os.PathLike[str],
        name: str | None = None,
        *,
        cron: str | None = None,
        timezone: str | None = None,
        catchup: str | None = None,
        overlap: str | None = None,
        paused: bool = False,
        allow_files: Iterable[str | os.PathLike[str]] = (),
        agent_run_id: str | None = None,
    ) -> dict[str, Any]:
        """Schedule a YAML pipeline: its ``schedule:`` block, each field overridden by the
        argument of that name; ``name`` defaults to the pipeline's DAG name."""
        dag_name, jobs = load_pipeline(path, allow_files)
        found = load_schedule(path) or {}
        given = {"cron": cron, "timezone": timezone, "catchup": catchup, "overlap": overlap,
                 "agent_run_id": agent_run_id}
        rule = {**found, **{k: v for k, v in given.items() if v is not None}}
        if "cron" not in rule:
            raise ValidationFailed(f"{os.fspath(path)} has no 'schedule:' block with a cron "
                                   "expression: give one (cron=..., or --cron on the command line)", details={"field": "cron"})
        try:
            return self.schedule_dag(name or dag_name, jobs, paused=paused,
                                     dag_name=dag_name, **rule)
        except (ValidationFailed, ScriptNotFound) as exc:
            raise _placed(path, jobs, exc, given) from None

    def list_schedules(self) -> list[dict[str, Any]]:
        """Every schedule, by name, with its next ticks and its latest fires."""
        reply = self._transport.call("GET", "/schedules")
        return list(reply.get("schedules", []))

    def get_schedule(self, name: str) -> dict[str, Any]:
        """One schedule: its rule, next ticks, latest fires (each with its DAG) and jobs."""
        reply: dict[str, Any] = self._transport.call("GET", f"/schedules/{_ref(name)}")
        return reply

    def update_schedule(
        self,
        name: str,
        *,
        cron: str | None = None,
        timezone: str | None = None,
        catchup: str | None = None,
        overlap: str | None = None,
        jobs: Sequence[TitanJob] | None = None,
        dag_name: str | None = None,
        agent_run_id: str | None = None,
    ) -> dict[str, Any]:
        """Change a schedule; what is not given stays. A new ``cron`` or ``timezone`` moves
        the next tick to the new rule's first after now; new ``jobs`` (uploaded as by
        ``schedule_dag``) are what the next run runs. Pausing is :meth:`pause_schedule`."""
        body: dict[str, Any] = {k: v for k, v in (
            ("cron", cron), ("timezone", timezone), ("catchup", catchup), ("overlap", overlap),
            ("dag_name", dag_name), ("agent_run_id", agent_run_id)) if v is not None}
        if jobs is not None:
            body["jobs"] = self._job_payloads("update_schedule", name, jobs)
        if not body:
            raise ValidationFailed("update_schedule() needs something to change: cron, "
                                   "timezone, catchup, overlap, jobs, dag_name or "
                                   "agent_run_id")
        reply: dict[str, Any] = self._transport.call(
            "PATCH", f"/schedules/{_ref(name)}", json=body)
        return reply

    def update_schedule_yaml(
        self,
        name: str,
        path: str | os.PathLike[str],
        *,
        cron: str | None = None,
        timezone: str | None = None,
        catchup: str | None = None,
        overlap: str | None = None,
        allow_files: Iterable[str | os.PathLike[str]] = (),
        agent_run_id: str | None = None,
    ) -> dict[str, Any]:
        """Give a schedule the DAG of a YAML pipeline, and the rule and policies of its
        ``schedule:`` block when it has one (each overridden by the argument of that name);
        the schedule keeps its name, and what neither gives stays."""
        dag_name, jobs = load_pipeline(path, allow_files)
        given = {"cron": cron, "timezone": timezone, "catchup": catchup, "overlap": overlap,
                 "agent_run_id": agent_run_id}
        rule = {**(load_schedule(path) or {}), **{k: v for k, v in given.items() if v is not None}}
        try:
            return self.update_schedule(name, jobs=jobs, dag_name=dag_name, **rule)
        except (ValidationFailed, ScriptNotFound) as exc:
            raise _placed(path, jobs, exc, given) from None

    def pause_schedule(self, name: str) -> dict[str, Any]:
        """Stop a schedule's ticks from firing (a tick queued behind a run is dropped)."""
        reply: dict[str, Any] = self._transport.call(
            "POST", f"/schedules/{_ref(name)}/pause")
        return reply

    def resume_schedule(self, name: str) -> dict[str, Any]:
        """Fire again from the next tick (ticks that fell while paused are not run)."""
        reply: dict[str, Any] = self._transport.call(
            "POST", f"/schedules/{_ref(name)}/resume")
        return reply

    def delete_schedule(self, name: str) -> bool:
        """Delete a schedule; the runs it started stay. ``True`` once it is gone."""
        reply = self._transport.call("DELETE", f"/schedules/{_ref(name)}")
        return bool(reply.get("deleted"))

    def run_schedule_now(self, name: str) -> dict[str, Any]:
        """Start a run of the schedule's DAG now, outside its ticks; the DAG object."""
        reply: dict[str, Any] = self._transport.call(
            "POST", f"/schedules/{_ref(name)}/run", idempotency_key=True)
        return reply


def _ref(name: str) -> str:
    """A schedule's name as its path segment (no name holds a '/': quote_segment)."""
    return quote_segment(name, f"no schedule named {name!r}", name=name)


def _placed(path: str | os.PathLike[str], jobs: list[TitanJob],
            exc: ValidationFailed | ScriptNotFound, given: dict[str, str | None]) -> TitanError:
    """A refusal of a schedule read from ``path`` at its line in the file, as `titan submit`
    places it: the schedule block's field it names (unless an argument overrode it), else
    the job it names (a cycle, a missing script: they lost their ``file:line:`` here)."""
    if isinstance(exc, ValidationFailed):
        placed = schedule_error(path, exc, [k for k, v in given.items() if v is not None])
        if placed is not exc:
            return placed
    return pipeline_where(jobs, exc) or exc
