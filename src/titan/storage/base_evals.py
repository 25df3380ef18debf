"""The storage interface's evaluation part: evaluations, their tasks, runs and tool calls.

Kept apart from :mod:`titan.storage.base` so each interface file stays readable; the
:class:`~titan.storage.base.Transaction` inherits it. JSON columns come back decoded.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence

from titan.storage.rows import Row


class EvalTransaction(abc.ABC):
    # -- evaluations --------------------------------------------------------------------------
    @abc.abstractmethod
    def put_evaluation(self, row: Row) -> None:
        """Create or replace an evaluation (id, project, description, agent, created_at,
        updated_at); ``project`` left out is ``"default"`` for a new one and unchanged for
        an existing one."""

    @abc.abstractmethod
    def get_evaluation(self, evaluation_id: str) -> Row | None:
        """The evaluation, or None."""

    @abc.abstractmethod
    def delete_evaluation(self, evaluation_id: str) -> int:
        """Delete the evaluation with its tasks, runs and their proxied calls; how many runs
        went (the agent runs they recorded stay, for retention to delete)."""

    @abc.abstractmethod
    def list_evaluations(self, limit: int, project: str | None = None) -> list[Row]:
        """Evaluations (of one project, or all), most recently changed first, each with
        ``task_count``."""

    @abc.abstractmethod
    def list_projects(self) -> list[Row]:
        """Every project that holds an evaluation, by name: ``id``, ``workflow_count`` (its
        evaluations) and ``updated_at`` (the latest change to one of them)."""

    # -- tasks --------------------------------------------------------------------------------
    @abc.abstractmethod
    def put_tasks(self, evaluation_id: str, tasks: Sequence[Row], now: float) -> int:
        """Add tasks (``id``, ``seed``) after the existing ones; a task id already there is
        replaced in place (its runs stay). Returns how many were new."""

    @abc.abstractmethod
    def get_task(self, evaluation_id: str, task_id: str) -> Row | None:
        """One task: evaluation_id, id, position, seed, created_at."""

    @abc.abstractmethod
    def list_tasks(self, evaluation_id: str) -> list[Row]:
        """The evaluation's tasks in load order."""

    # -- runs ---------------------------------------------------------------------------------
    @abc.abstractmethod
    def insert_eval_run(self, row: Row) -> None:
        """Record a dispatch of a task."""

    @abc.abstractmethod
    def update_eval_run(self, run_id: str, fields: Row) -> None:
        """Change some fields of an evaluation run."""

    @abc.abstractmethod
    def get_eval_run(self, run_id: str) -> Row | None:
        """An evaluation run, or None."""

    @abc.abstractmethod
    def eval_runs(self, evaluation_id: str, task_id: str | None = None) -> list[Row]:
        """Runs of an evaluation (or of one task), oldest first."""

    @abc.abstractmethod
    def unfinished_eval_runs(self) -> list[Row]:
        """Runs still pending or running (the master picks them up again at start)."""

    # -- tool calls ---------------------------------------------------------------------------
    @abc.abstractmethod
    def insert_eval_call(self, row: Row) -> None:
        """What a proxied call did: run_id, seq, source, ops, violations, state, latency_ms."""

    @abc.abstractmethod
    def eval_calls(self, run_id: str) -> list[Row]:
        """The run's proxied calls in order."""
