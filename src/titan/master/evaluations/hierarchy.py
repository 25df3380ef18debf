"""Seed 003's hierarchy — projects → workflows → tasks → agent runs — read over evaluations.

A workflow is an evaluation, its tasks are the evaluation's tasks and its agent runs are the
evaluation's runs; a project is the name its evaluations share (``evaluations.project``), so
it exists while one of them names it. The API's two route families (``/api/v1/evaluations/...``
and the seed's ``/api/projects/...``) and the dashboard's pages of each read through these
functions with ``project`` None or given: one implementation, so the families cannot drift
apart — the same rows, the same views, the same 404s. Under a project, a workflow of another
project is answered exactly as an unknown one: the seed's path names a place and it is not
there. Pure reads, in the caller's transaction.
"""

from __future__ import annotations

from titan.errors import NotFound
from titan.evals.agent_config import public_view
from titan.master.evaluations import views
from titan.storage.base import Row, Transaction

DEFAULT_PROJECT = "default"


def workflow(tx: Transaction, evaluation_id: str, project: str | None = None) -> Row:
    """The evaluation, checked to belong to ``project`` when one is named."""
    found = tx.get_evaluation(evaluation_id)
    if project is None:
        if found is None:
            raise NotFound(f"no evaluation {evaluation_id!r}",
                           details={"evaluation": evaluation_id})
        return found
    if found is None or found["project"] != project:
        raise NotFound(f"project {project!r} has no workflow {evaluation_id!r}",
                       details={"project": project, "workflow": evaluation_id})
    return found


def task(tx: Transaction, evaluation: Row, task_id: str, project: str | None = None) -> Row:
    found = tx.get_task(evaluation["id"], task_id)
    if found is None:
        noun = "evaluation" if project is None else "workflow"
        raise NotFound(f"{noun} {evaluation['id']!r} has no task {task_id!r}",
                       details={"task_id": task_id})
    return found


def run(tx: Transaction, evaluation: Row, task_row: Row, run_id: str,
        project: str | None = None) -> Row:
    found = tx.get_eval_run(run_id)
    if (found is None or found["evaluation_id"] != evaluation["id"]
            or found["task_id"] != task_row["id"]):
        noun = "run" if project is None else "agent run"
        raise NotFound(f"task {task_row['id']!r} has no {noun} {run_id!r}",
                       details={"run": run_id})
    return found


# -- the views each level answers with (both families) ----------------------------------------
def explorer(tx: Transaction, evaluation_id: str, project: str | None = None) -> Row:
    """The data explorer: one row per task with its latest run."""
    return views.explorer(tx, workflow(tx, evaluation_id, project))


def task_runs(tx: Transaction, evaluation_id: str, task_id: str) -> list[Row]:
    """A task's runs as explorer rows, newest first."""
    return [views.run_row(r, tx.get_run(r["id"]))
            for r in reversed(tx.eval_runs(evaluation_id, task_id))]


def task_detail(tx: Transaction, evaluation_id: str, task_id: str,
                project: str | None = None) -> Row:
    """One task: its seed and its runs, newest first."""
    found = task(tx, workflow(tx, evaluation_id, project), task_id, project)
    return {"evaluation": evaluation_id, "task_id": task_id, "seed": found["seed"],
            "runs": task_runs(tx, evaluation_id, task_id)}


def runs_of(tx: Transaction, evaluation_id: str, task_id: str,
            project: str | None = None) -> Row:
    task(tx, workflow(tx, evaluation_id, project), task_id, project)
    return {"runs": task_runs(tx, evaluation_id, task_id)}


def trace(tx: Transaction, evaluation_id: str, task_id: str, run_id: str,
          project: str | None = None) -> Row:
    """One run's Agent Trace."""
    evaluation = workflow(tx, evaluation_id, project)
    task_row = task(tx, evaluation, task_id, project)
    return views.trace(tx, evaluation, task_row, run(tx, evaluation, task_row, run_id, project))


def check_run(tx: Transaction, evaluation_id: str, task_id: str, run_id: str,
              project: str | None = None) -> None:
    """Refuse a run that is not there (under ``project``) before it is re-run."""
    evaluation = workflow(tx, evaluation_id, project)
    run(tx, evaluation, task(tx, evaluation, task_id, project), run_id, project)


# -- the levels above a workflow ---------------------------------------------------------------
def workflow_row(row: Row) -> Row:
    """A listed evaluation, its agent's secrets masked."""
    return row | {"agent": public_view(row["agent"])}


def projects(tx: Transaction) -> Row:
    return {"projects": tx.list_projects()}


def workflows(tx: Transaction, project: str, limit: int) -> Row:
    """A project's workflows, most recently changed first; a project none names is a 404."""
    rows = tx.list_evaluations(limit, project=project)
    if not rows:
        raise NotFound(f"no project {project!r} (a project exists while a workflow names it)",
                       details={"project": project})
    return {"project": project, "workflows": [workflow_row(r) for r in rows]}
