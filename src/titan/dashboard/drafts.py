"""A DAG draft, as the DAG builder (``/dags/new``) edits it: checked by the rules ``POST /dags``
and ``titan submit`` apply, laid out as the visualizer lays a run out, and written as a
pipeline file and read back from one.

The browser holds the draft and sends it here on every change; no rule is written again in
JavaScript, so the builder cannot pass a DAG the master refuses, or flag one it takes, when
either changes. A submission stops at its first mistake; a draft is being drawn, so every
problem is listed at once: each job through :class:`~titan.client.job.TitanJob` (the SDK's
checks) and :func:`~titan.master.scheduling.validation.validate_job` (the server's), the graph
through :func:`~titan.master.scheduling.dag_graph.graph_problems` (duplicates, unknown
parents, the cycle), and, once nothing is left, the whole of ``validate_dag``, the authority.

A draft job is a dict of TitanJob's arguments (``job_id``, ``filename``, ``args`` as a
shell-style string, ``parents``...). Its script is a file uploaded to the master: the newest
one named like the last part of ``filename``, so a pipeline's ``file: etl/extract.py`` finds
an uploaded ``extract.py``, and exports as it was written.
"""

from __future__ import annotations

import inspect
import shlex
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

from titan.client.job import TitanJob
from titan.client.pipeline import dump_pipeline, parse_pipeline
from titan.dashboard.layout import layout
from titan.errors import InvalidDAG, ValidationFailed
from titan.master.scheduling.dag_graph import graph_problems
from titan.master.scheduling.validation import (
    check_name,
    unknown_field,
    validate_dag,
    validate_job,
)

Data = dict[str, Any]
#: What a draft job may say: TitanJob's arguments (``POST /dags``'s job fields), read from
#: its signature so a field the SDK gains is one the builder carries.
FIELDS = frozenset(inspect.signature(TitanJob).parameters) - {"base_dir"}
#: Stands in for a script not uploaded yet while the server's job rules look at the rest.
_NO_SCRIPT = "0" * 64
#: What a gate's form shows. A script job turned into a gate keeps its script's fields in the
#: draft, hidden, for when it turns back: they are not the gate's (a submission refuses them).
_GATE_FIELDS = frozenset({"job_id", "job_type", "parents", "priority", "hitl_message",
                          "max_wait_seconds"})


def script_name(filename: Any) -> str | None:
    """The uploaded file a job's ``filename`` names (its last part), or None for none."""
    if not isinstance(filename, str) or not filename.strip():
        return None
    return PurePosixPath(filename.replace("\\", "/")).name or None


def wanted_scripts(jobs: list[Data]) -> set[str]:
    """The uploaded files a draft's jobs name, to be looked up before :func:`check`."""
    names = set()
    for job in jobs:
        if str(job.get("job_type") or "").upper() != "APPROVAL" and not job.get("is_archive"):
            name = script_name(job.get("filename"))
            if name is not None:
                names.add(name)
    return names


def check(name: Any, jobs: list[Data], scripts: Mapping[str, str], *, max_jobs: int) -> Data:
    """Everything the builder shows for a draft: ``layout`` (the visualizer's), ``problems``
    (``{"jobs": [indexes], "job_id", "field", "message", "code"}``, ``code`` being
    ``unknown_script`` for a script not uploaded, else ``invalid``), ``cycle`` (``[a, b, a]``
    or None), ``yaml`` (the pipeline file, when only unknown scripts are wrong: the CLI reads
    scripts from disk) and ``dag``, the ``POST /dags`` body, when nothing is wrong.

    ``scripts``: uploaded file name -> sha256 of its newest upload."""
    problems: list[Data] = []
    seen: set[tuple[str, tuple[int, ...]]] = set()
    index: dict[str, list[int]] = {}  # job id -> the jobs that have it (two when duplicated)
    for i, raw in enumerate(jobs):
        if isinstance(raw.get("job_id"), str):
            index.setdefault(raw["job_id"], []).append(i)

    def add(message: str, job_id: Any = None, field: Any = None, at: list[int] | None = None,
            code: str = "invalid") -> None:
        if at is None:
            at = index.get(job_id, []) if isinstance(job_id, str) else []
        if (message, tuple(at)) in seen:  # a third copy of an id is the same problem as a second
            return
        seen.add((message, tuple(at)))
        problems.append({"jobs": at, "job_id": job_id, "field": field, "message": message,
                         "code": code})

    try:
        check_name(name, "DAG name")
    except ValidationFailed as exc:
        add(exc.message, field="name")
    if len(jobs) > max_jobs:
        add(f"the DAG has {len(jobs)} jobs; the limit is {max_jobs}", field="jobs")
    built: list[TitanJob] = []
    payloads: list[Data] = []
    shape: list[Data] = []  # id and parents of every job with an id: what the graph checks
    for i, raw in enumerate(jobs):
        if isinstance(raw.get("job_id"), str):
            shape.append({"job_id": raw["job_id"], "parents": _parents(raw)})
        try:
            job, payload = _build(raw, i, scripts)
        except ValidationFailed as exc:
            add(exc.message, raw.get("job_id"), exc.details.get("field"), at=[i])
            continue
        built.append(job)
        payloads.append(payload)
        if payload["script_sha256"] is None and not (job.is_gate or job.is_archive):
            add(f"job {job.job_id!r}: no uploaded file is named {script_name(job.filename)!r}: "
                "upload the script, or pick one the master has", job.job_id, "filename", at=[i],
                code="unknown_script")

    cycle: list[str] | None = None
    for problem in graph_problems(shape):
        cycle = problem.details.get("cycle", cycle)
        add(problem.message, problem.details.get("job_id"), problem.details.get("field"))
    if not problems:
        try:  # what a submission would still refuse (an approval gate's id taken...)
            validate_dag(name, payloads, max_jobs=max_jobs)
        except InvalidDAG as exc:
            add(exc.message, exc.details.get("job_id"), exc.details.get("field"))
    exportable = len(built) == len(jobs) and all(p["code"] == "unknown_script" for p in problems)
    return {
        "layout": layout([str(raw.get("job_id", "")) for raw in jobs],
                         [_parents(raw) for raw in jobs]),
        "problems": problems, "cycle": cycle,
        "yaml": dump_pipeline(str(name), built) if exportable else None,
        "dag": {"name": name, "jobs": payloads} if not problems else None,
    }


def _parents(job: Data) -> list[str]:
    """The parents a job names, as far as they are names: the graph is drawn before every
    job is valid."""
    parents = job.get("parents")
    return [p for p in parents if isinstance(p, str)] if isinstance(parents, list) else []


def _build(raw: Data, i: int, scripts: Mapping[str, str]) -> tuple[TitanJob, Data]:
    """The job and its ``POST /dags`` payload; ValidationFailed names the field at fault."""
    unknown = unknown_field(raw, FIELDS)
    if unknown is not None:
        raise ValidationFailed(unknown[1], details={"field": unknown[0]})
    gate = str(raw.get("job_type") or "").upper() == "APPROVAL"
    kwargs = {k: v for k, v in raw.items() if v is not None and (not gate or k in _GATE_FIELDS)}
    if kwargs.get("filename") == "":  # an empty field: a gate's (none), or a job's mistake
        del kwargs["filename"]
    job = TitanJob(kwargs.pop("job_id", None), **kwargs)
    gate_or_archive = job.is_gate or job.is_archive
    sha = None if gate_or_archive else scripts.get(script_name(job.filename) or "")
    payload = job.to_payload(sha)
    if not gate_or_archive:
        # As written, not as the SDK would send it (the basename of "../x.py"): the server's
        # rule then says what is wrong with it.
        payload["filename"] = job.filename
    validate_job(dict(payload, script_sha256=sha or _NO_SCRIPT) if not gate_or_archive
                 else payload, i)
    return job, payload


def draft_of(job: TitanJob) -> Data:
    """A job as the builder edits it (arguments as one shell-style string)."""
    return {
        "job_id": job.job_id, "filename": job.filename, "job_type": job.job_type,
        "args": shlex.join(job.args), "parents": list(job.parents),
        "requirement": job.requirement, "priority": job.priority, "retries": job.retries,
        "timeout": job.timeout, "hitl_message": job.hitl_message,
        "max_wait_seconds": job.max_wait_seconds, "delay": job.delay, "affinity": job.affinity,
        "env": dict(job.env), "runner": job.runner, "port": job.port,
        "is_archive": job.is_archive, **(job.service or {}),
    }


def from_yaml(text: str, name: Any) -> tuple[str, list[Data]]:
    """A pipeline file's DAG name and draft jobs, by ``titan submit``'s own parser: a file it
    refuses is refused here with its message (``nightly.yaml:7: ...``, PipelineError). With no
    ``name:`` in it, the DAG keeps the draft's name."""
    stem = name if isinstance(name, str) and name and "/" not in name else "pipeline"
    dag_name, jobs = parse_pipeline(text, Path(f"{stem}.yaml"), folder=None)
    return dag_name, [draft_of(job) for job in jobs]
