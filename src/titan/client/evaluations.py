"""Evaluations from Python: define one (agent + tasks), dispatch its tasks, read the results.

An evaluation spec is a YAML or JSON file::

    name: support-bot
    project: support           # optional: the project it belongs to ("default")
    agent:
      name: support-bot
      version: "1.2"
      script: agent.py            # a job agent: uploaded, run as a Titan job
      tools: [{name: get_order, input_schema: {...}}]
    tasks: tasks.yaml             # or the tasks inline

Relative paths are read from the spec's folder.
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path
from typing import Any

from titan.client.transport import Transport
from titan.errors import NotFound, ScriptNotFound, ValidationFailed, WaitTimeout
from titan.formats import check_eval_id
from titan.status import EVAL_ACTIVE
from titan.url_paths import quote_ref, quote_segment


def _ref(name: str) -> str:
    """An evaluation's name as its path segment, held to the master's rule first: a '/' in it
    made another path (the master answered "Not Found"), and '../' went to another route."""
    return quote_ref(check_eval_id(name, "evaluation"))


def _task(name: str, task_id: str) -> str:
    return quote_segment(task_id, f"evaluation {name!r} has no task {task_id!r}",
                         task_id=task_id)


def _run(task_id: str, run_id: str) -> str:
    return quote_segment(run_id, f"task {task_id!r} has no run {run_id!r}", run=run_id)


def _tasks_from(value: Any, base: Path) -> list[dict[str, Any]]:
    from titan.evals.tasks import load_tasks, parse_tasks

    if isinstance(value, str | Path):
        path = Path(value)
        found = load_tasks(path if path.is_absolute() else base / path)
    else:
        found = parse_tasks(value, "tasks")
    return [t.to_dict() for t in found]


def load_spec(path: str | Path) -> dict[str, Any]:
    """Read an evaluation spec file (see the module's doc); tasks files are loaded too."""
    import json

    from titan.evals.tasks import load_yaml

    file = Path(path)
    if not file.is_file():
        raise ValidationFailed(f"evaluation spec {str(path)!r} not found")
    text = file.read_text()
    try:
        spec = json.loads(text) if file.suffix == ".json" else load_yaml(text, file.name)
    except json.JSONDecodeError as exc:
        raise ValidationFailed(f"{file.name}: not valid json: {exc}") from exc
    if not isinstance(spec, dict) or not isinstance(spec.get("agent"), dict):
        raise ValidationFailed(f"{file.name}: a spec is a mapping with name, agent and tasks")
    spec["_base"] = str(file.resolve().parent)
    return spec


def _summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The explorer's summary line, counted over ``rows`` (one per run waited for)."""
    verdicts = [r["run"]["verdict"] for r in rows]
    return {"tasks": len({r["task_id"] for r in rows}), "runs": len(rows),
            "pass": verdicts.count("PASS"), "fail": verdicts.count("FAIL"),
            "pending": sum(v == "PENDING" and r["run"]["status"] != "cancelled"
                           for v, r in zip(verdicts, rows, strict=True)),
            "cancelled": sum(r["run"]["status"] == "cancelled" for r in rows),
            "in_flight": sum(r["run"]["status"] in EVAL_ACTIVE for r in rows),
            "cost_usd": round(sum(r["run"]["cost"]["total_usd"] for r in rows), 10),
            # Calls of no known price among them: cost_usd is then a lower bound.
            "unpriced_calls": sum(r["run"]["cost"].get("unpriced_calls") or 0 for r in rows)}


class EvalOps:
    """Evaluation methods of :class:`~titan.client.TitanClient`."""

    _transport: Transport

    def _upload_blob(self, data: bytes) -> str:
        sha = hashlib.sha256(data).hexdigest()
        missing = self._transport.call("POST", "/blobs/missing", json={"sha256": [sha]},
                                       idempotency_key=True)
        if sha in set(missing.get("missing", [])):
            self._transport.call("PUT", f"/blobs/{sha}", body=data)
        return sha

    def create_evaluation(self, name: str, agent: dict[str, Any], tasks: Any = None, *,
                          description: str | None = None, base: str | Path | None = None,
                          project: str | None = None) -> dict[str, Any]:
        """Create or update evaluation ``name``. A job agent's ``script`` (a path, relative
        to ``base``) is uploaded; ``tasks`` is a list of tasks or a JSON/YAML/CSV file.
        ``project`` puts it in that project (seed 003's workflows live in projects); left
        out, a new evaluation goes to ``"default"`` and an existing one stays where it is."""
        path = _ref(name)  # before anything is uploaded
        if project is not None:
            check_eval_id(project, "project")
        root = Path(base) if base is not None else Path.cwd()
        agent = dict(agent)
        if agent.get("script") and not agent.get("url"):
            script = Path(agent["script"])
            script = script if script.is_absolute() else root / script
            if not script.is_file():
                raise ScriptNotFound(f"agent script {str(script)!r} not found")
            agent["script_sha256"] = self._upload_blob(script.read_bytes())
            agent["script"] = script.name
        body: dict[str, Any] = {"agent": agent, "description": description}
        if project is not None:
            body["project"] = project
        if tasks is not None:
            body["tasks"] = _tasks_from(tasks, root)
        reply: dict[str, Any] = self._transport.call(
            "PUT", f"/evaluations/{path}", json=body)
        return reply

    def create_evaluation_from(self, spec_path: str | Path) -> dict[str, Any]:
        """Create or update the evaluation a spec file describes."""
        spec = load_spec(spec_path)
        name = spec.get("name") or Path(spec_path).stem
        return self.create_evaluation(name, spec["agent"], spec.get("tasks"),
                                      description=spec.get("description"), base=spec["_base"],
                                      project=spec.get("project"))

    def add_evaluation_tasks(self, name: str, tasks: Any, *, run: bool = True) -> dict[str, Any]:
        """Seed tasks (a list, or a JSON/YAML/CSV file) into an evaluation; each one's first
        run is dispatched (seed 003), unless ``run=False``. The reply's ``runs`` are those."""
        found = _tasks_from(tasks, Path.cwd())
        if not found and isinstance(tasks, str | os.PathLike):
            raise ValidationFailed(f"{os.fspath(tasks)}: the file holds no task (a CSV needs a "
                                   "row under its header), so nothing was seeded")
        try:
            reply: dict[str, Any] = self._transport.call(
                "POST", f"/evaluations/{_ref(name)}/tasks", json={"tasks": found, "run": run})
        except ValidationFailed as exc:
            # The master names the task; the file it came from is known only here.
            if isinstance(tasks, str | os.PathLike) and isinstance(exc.details, dict) \
                    and "task" in exc.details:
                raise ValidationFailed(f"{os.fspath(tasks)}: {exc}",
                                       details=exc.details) from None
            raise
        return reply

    def run_evaluation(self, name: str, tasks: list[str] | None = None) -> list[dict[str, Any]]:
        """Dispatch every task (or those named); the new runs."""
        reply = self._transport.call("POST", f"/evaluations/{_ref(name)}/runs",
                                     json={"tasks": tasks})
        runs: list[dict[str, Any]] = reply["runs"]
        return runs

    def cancel_evaluation(self, name: str, tasks: list[str] | None = None) -> list[dict[str, Any]]:
        """Cancel every run of the evaluation (of ``tasks`` only, when given) still pending or
        running; the runs cancelled (``id``, ``task_id``, ``status``...), none when nothing
        was in flight."""
        reply = self._transport.call("POST", f"/evaluations/{_ref(name)}/cancel",
                                     json={"tasks": tasks})
        return list(reply["cancelled"])

    def delete_evaluation(self, name: str, *, force: bool = False) -> dict[str, Any]:
        """Delete the evaluation with its tasks and runs (the agent runs they recorded stay,
        for retention): ``{"id", "deleted", "runs", "cancelled"}``. Refused (``Conflict``)
        while a run is pending or running, unless ``force``, which cancels them first."""
        reply: dict[str, Any] = self._transport.call(
            "DELETE", f"/evaluations/{_ref(name)}", params={"force": "true"} if force else None)
        return reply

    def evaluation(self, name: str) -> dict[str, Any]:
        """The data explorer: the evaluation, one row per task with its latest run."""
        reply: dict[str, Any] = self._transport.call("GET", f"/evaluations/{_ref(name)}")
        return reply

    def evaluation_run(self, name: str, task_id: str, run_id: str) -> dict[str, Any]:
        """One run's Agent Trace (judge verdict, timeline, ledger, structure, coding)."""
        reply: dict[str, Any] = self._transport.call(
            "GET", f"/evaluations/{_ref(name)}/tasks/{_task(name, task_id)}/runs/"
                   f"{_run(task_id, run_id)}")
        return reply

    def rerun_evaluation_run(self, name: str, task_id: str, run_id: str) -> dict[str, Any]:
        """Dispatch the task again with the current agent settings (the original is kept)."""
        reply: dict[str, Any] = self._transport.call(
            "POST", f"/evaluations/{_ref(name)}/tasks/{_task(name, task_id)}/runs/"
                    f"{_run(task_id, run_id)}/re-run")
        return reply

    def wait_evaluation_runs(self, name: str, runs: list[dict[str, Any]],
                             timeout: float = 600.0, poll: float = 1.0) -> dict[str, Any]:
        """Wait until each of ``runs`` (as :meth:`run_evaluation` returned them: ``id`` and
        ``task_id``) has ended and has its verdict; the explorer view of those runs alone,
        one row per run. Another dispatch of the same task meanwhile (a dashboard Re-run)
        neither decides nor delays the result, and neither does an unrelated task's run."""
        deadline = time.monotonic() + timeout
        while True:
            view = self.evaluation(name)
            latest = {r["task_id"]: r for r in view["tasks"]}
            older: dict[str, dict[str, Any]] = {}  # a task's runs, read when not its latest
            rows = []
            for run in runs:
                row = latest.get(run["task_id"])
                if row is None:
                    raise NotFound(f"evaluation {name!r} has no task {run['task_id']!r}")
                found = row["run"] if row["run"] and row["run"]["id"] == run["id"] else None
                if found is None:
                    if run["task_id"] not in older:
                        older[run["task_id"]] = {r["id"]: r for r in self._transport.call(
                            "GET", f"/evaluations/{_ref(name)}/tasks/"
                                   f"{_task(name, run['task_id'])}/runs")["runs"]}
                    found = older[run["task_id"]].get(run["id"])
                if found is None:
                    raise NotFound(f"task {run['task_id']!r} of {name!r} has no run "
                                   f"{run['id']!r}")
                rows.append(row | {"run": found})
            if all(r["run"]["status"] not in EVAL_ACTIVE and not r["run"]["judge_pending"]
                   for r in rows):
                return view | {"tasks": rows, "summary": _summary(rows)}
            if time.monotonic() > deadline:
                left = sum(r["run"]["status"] in EVAL_ACTIVE for r in rows)
                raise WaitTimeout(f"{left} of the {len(rows)} run(s) of {name!r} still in "
                                  f"flight (or being judged) after {timeout:g}s")
            time.sleep(poll)

    def wait_evaluation(self, name: str, timeout: float = 600.0,
                        poll: float = 1.0) -> dict[str, Any]:
        """Wait until no run of the evaluation is in flight and every completed run has its
        verdict (unless the agent turned judging off); the explorer view."""
        deadline = time.monotonic() + timeout
        while True:
            view = self.evaluation(name)
            settled = all(
                r["run"] is None or (r["run"]["status"] not in EVAL_ACTIVE
                                     and not r["run"]["judge_pending"])
                for r in view["tasks"])
            if settled:
                return view
            if time.monotonic() > deadline:
                raise WaitTimeout(f"evaluation {name!r} still has runs in flight after "
                                  f"{timeout:g}s")
            time.sleep(poll)
