"""The jobs an agent submits over MCP: each script sent inline or named by a blob's sha256.

An MCP client never names a path. ``titan mcp`` runs on the agent's machine, but at ``/mcp``
the tools run in the master's process, where a path would read the master's own files (its
``admin.token`` among them) into a job. So a job's script is its source text, uploaded as a
content-addressed blob (the same text is stored once, and the reply names its sha256 for
later submissions), or the sha256 of a blob already there, or an entry point of a project
archive uploaded with the SDK. Everything else is checked by :class:`TitanJob`'s own rules, so
a job is refused here with the message the SDK would give.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from titan.client.job import TitanJob
from titan.errors import ValidationFailed

_SHA256 = "^[0-9a-f]{64}$"


class JobSpec(BaseModel):
    """One job of a DAG, as an agent describes it."""

    model_config = ConfigDict(extra="forbid")

    job_id: str = Field(description="The job's id, unique in its DAG (letters, digits, "
                                    "'-', '_', '.'; no '/' or '#').")
    script: str | None = Field(None, description="The Python script to run, as source text. "
                                                 "Give exactly one of script, script_sha256 "
                                                 "and archive (an APPROVAL job needs none).")
    script_sha256: str | None = Field(None, pattern=_SHA256,
                                      description="The sha256 of a script already on the "
                                                  "master (a submission's reply lists them).")
    archive: str | None = Field(None, description="'<project>/<entry.py>': run that entry "
                                                  "point of the project folder uploaded as "
                                                  "<project>.zip.")
    filename: str | None = Field(None, description="The name the script runs under, relative "
                                                   "(default '<job_id>.py').")
    job_type: str = Field("RUN_PAYLOAD", description="RUN_PAYLOAD (run a script), SERVICE, "
                                                     "or APPROVAL (a gate a person approves "
                                                     "or rejects; runs nothing).")
    args: list[str] = Field(default_factory=list, description="Command-line arguments.")
    parents: list[str] = Field(default_factory=list, description="Job ids of this DAG that "
                                                                 "must complete first.")
    requirement: str = Field("GENERAL", description="The capability a worker must offer "
                                                    "(GENERAL, GPU, ...).")
    priority: int = Field(1, description="Higher runs first.")
    retries: int | None = Field(None, ge=0, description="Further attempts after a failure "
                                                        "(default: the master's).")
    timeout: float | None = Field(None, gt=0, description="Seconds before the attempt is "
                                                          "killed (default: none).")
    env: dict[str, str] = Field(default_factory=dict, description="Environment variables.")
    hitl_message: str | None = Field(None, description="Ask a person to approve once this job "
                                                       "completes: adds the gate "
                                                       "'<job_id>.approval' its children "
                                                       "wait for (for APPROVAL: its question).")
    max_wait_seconds: float | None = Field(None, gt=0, description="How long a gate waits "
                                                                   "for a decision.")


def dag_request(name: str, jobs: Sequence[JobSpec]) -> tuple[dict[str, Any], list[bytes]]:
    """The ``POST /dags`` body for ``jobs``, and the inline scripts to upload before it."""
    if not jobs:
        raise ValidationFailed(f"DAG {name!r} has no jobs", details={"field": "jobs"})
    payloads, scripts = [], []
    for spec in jobs:
        sha = spec.script_sha256
        if spec.script is not None:
            scripts.append(spec.script.encode())
            sha = hashlib.sha256(scripts[-1]).hexdigest()
        payloads.append(_job(spec).to_payload(sha))
    return {"name": name, "jobs": payloads}, scripts


def _job(spec: JobSpec) -> TitanJob:
    given = [field for field in ("script", "script_sha256", "archive")
             if getattr(spec, field) is not None]
    gate = spec.job_type.upper() == "APPROVAL"
    if len(given) > 1 or (not given and not gate) or (given and gate):
        what = "an APPROVAL job runs no script" if gate else \
            "give exactly one of script, script_sha256 and archive"
        raise ValidationFailed(f"job {spec.job_id!r}: {what}",
                               details={"job_id": spec.job_id, "field": "script"})
    filename = spec.archive if spec.archive is not None else \
        None if gate else spec.filename or f"{spec.job_id}.py"
    return TitanJob(
        spec.job_id, filename, job_type=spec.job_type, args=spec.args, parents=spec.parents,
        is_archive=spec.archive is not None, priority=spec.priority,
        requirement=spec.requirement, hitl_message=spec.hitl_message,
        max_wait_seconds=spec.max_wait_seconds, retries=spec.retries, timeout=spec.timeout,
        env=spec.env)
