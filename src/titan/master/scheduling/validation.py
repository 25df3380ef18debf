"""DAG validation: a submission is checked as a whole before anything is stored.

Every error names the offending job (``details.job_id``) so a 200-job submission with one bad
parent reference is fixable from the message alone.
"""

from __future__ import annotations

import difflib
import math
import re
from typing import Any

from titan import services
from titan.errors import InvalidDAG, ValidationFailed
from titan.formats import args_problem, env_problem, name_problem, runner_problem
from titan.master.scheduling.dag_graph import graph_problems, job_problem
from titan.storage.blobs.base import sha256_problem

JOB_TYPES = {"RUN_PAYLOAD", "RUN", "SERVICE", "DEPLOY_PAYLOAD", "RUN_ARCHIVE", "APPROVAL"}
GATE_SUFFIX = ".approval"  # the gate TitanJob(hitl_message=...) adds after job X: X.approval
DEFAULT_GATE_MESSAGE = "Approve to continue"
RUNNERS = {"auto", "fork", "subprocess"}
_SHA = re.compile(r"^[0-9a-f]{64}\Z")


def _case(sha: object) -> str:
    """What to write for an upper-case digest (its lower-case form), else nothing."""
    return f" ({sha256_problem(sha)})" if isinstance(sha, str) and _SHA.match(sha.lower()) \
        else ""
#: Capability names already checked, and their upper-case form (a DAG repeats a few).
_CAPABILITIES: dict[str, str] = {}
MAX_DELAY = 366 * 24 * 3600.0
MAX_RETRIES = 100
#: What a job in ``POST /dags`` may say (the SDK's ``TitanJob.to_payload``); anything else is
#: a mistake to report, not to drop: ``"parent": [...]`` silently meant "no parents".
JOB_FIELDS = frozenset({
    "job_id", "filename", "script_sha256", "job_type", "args", "parents", "priority", "delay",
    "affinity", "requirement", "retries", "timeout", "env", "runner", "port", "is_archive",
    "hitl_message", "max_wait_seconds", *services.FIELDS,
})
DAG_FIELDS = frozenset({"name", "jobs", "agent_run_id", "agent_id", "run_alias"})
#: Names from YAML pipelines and other tools, and the API field they mean.
_ALIASES = {"depends_on": "parents", "dependencies": "parents", "needs": "parents",
            "id": "job_id", "name": "job_id", "file": "filename", "script": "filename",
            "type": "job_type", "requires": "requirement", "arguments": "args"}


def check_name(value: Any, what: str, field: str | None = None) -> str:
    """A DAG name, job id or capability (the rule of :func:`titan.formats.name_problem`);
    ``field``: the body's field it came in (details.field), when not ``what``."""
    why = name_problem(value, what)
    if why is not None:
        raise ValidationFailed(why, details={"field": field or what})
    return str(value)


def unknown_field(given: Any, known: frozenset[str]) -> tuple[str, str] | None:
    """The first field of ``given`` not in ``known``, with a hint naming the likely one."""
    if isinstance(given, dict) and given.keys() <= known:
        return None  # the common case, checked at C speed (once per job of a large DAG)
    extra = [k for k in given if k not in known]
    if not extra:
        return None
    key = str(extra[0])
    close = difflib.get_close_matches(key, sorted(known), n=1)
    if _ALIASES.get(key) in known:
        close = [_ALIASES[key]]
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return key, f"unknown field {key!r}{hint}; known fields: {', '.join(sorted(known))}"


def _number(job_id: str, field: str, value: Any, *, integer: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidDAG(f"job {job_id!r}: {field} must be a number, got {value!r}",
                         details={"job_id": job_id, "field": field})
    if integer and int(value) != value:
        raise InvalidDAG(f"job {job_id!r}: {field} must be an integer, got {value!r}",
                         details={"job_id": job_id, "field": field})
    return float(value)


def validate_job(job: dict[str, Any], index: int) -> dict[str, Any]:
    """Check one job spec and return it normalised (defaults filled, types fixed)."""
    raw_id = job.get("job_id")
    try:
        job_id = check_name(raw_id, "job_id")
    except ValidationFailed as exc:
        raise InvalidDAG(f"job #{index + 1}: {exc}", details={"job_id": raw_id, "index": index}) from None
    unknown = unknown_field(job, JOB_FIELDS)
    if unknown is not None:
        raise job_problem(job_id, unknown[0], unknown[1])
    if str(job.get("job_type") or "").upper() == "APPROVAL":
        return _validate_gate(job, job_id)
    filename = job.get("filename")
    if not isinstance(filename, str) or not filename.strip():
        raise job_problem(job_id, "filename", "filename must be a non-empty path")
    if "\x00" in filename or len(filename) > 1000:
        raise job_problem(job_id, "filename", "filename is not a valid path")
    parts = filename.replace("\\", "/").split("/")
    # A drive letter ("C:\\x.py", "c:x.py") is absolute too: the worker refuses it, so the
    # job failed at run time instead of the submission at once.
    if filename.startswith("/") or ".." in parts or re.match(r"[A-Za-z]:", filename):
        raise job_problem(job_id, "filename", f"filename {filename!r} must be relative, without '..'")
    is_archive = _flag(job_id, job, "is_archive")
    sha = job.get("script_sha256")
    if is_archive:
        if len([p for p in parts if p]) < 2:
            raise job_problem(job_id, "filename", "an archive job's filename is '<project>/<entry.py>'")
        # Optional: the upload of <project>.zip the job runs (left out, the master pins the
        # latest at submission: see EngineSubmission.pin_projects).
        if sha is not None and (not isinstance(sha, str) or not _SHA.match(sha)):
            raise job_problem(job_id, "script_sha256", "an archive job's script_sha256 is the sha256 "
                        f"of an upload of its project's zip, or left out{_case(sha)}")
    elif not isinstance(sha, str) or not _SHA.match(sha):
        raise job_problem(job_id, "script_sha256",
                          f"script_sha256 must be the sha256 of an uploaded blob{_case(sha)}")
    job_type = str(job.get("job_type") or "RUN_PAYLOAD").upper()
    if job_type not in JOB_TYPES:
        raise job_problem(job_id, "job_type", f"unknown job_type {job_type!r} (one of {sorted(JOB_TYPES)})")
    priority = job.get("priority", 1)
    if type(priority) is not int:  # the common case is an int already: no call for it
        priority = _number(job_id, "priority", priority, integer=True)
    if abs(priority) > 1_000_000:
        raise job_problem(job_id, "priority", "priority must be between -1000000 and 1000000")
    delay = job.get("delay", 0) or 0
    delay = 0.0 if delay == 0 and type(delay) is int else _number(job_id, "delay", delay)
    if delay < 0 or delay > MAX_DELAY:
        raise job_problem(job_id, "delay", f"delay must be between 0 and {int(MAX_DELAY)} seconds")
    retries = job.get("retries")
    if retries is not None:
        retries = _number(job_id, "retries", retries, integer=True)
        if not 0 <= retries <= MAX_RETRIES:
            raise job_problem(job_id, "retries", f"retries must be between 0 and {MAX_RETRIES}")
    timeout = job.get("timeout")
    if timeout is not None:
        timeout = _number(job_id, "timeout", timeout)
        if not 0 < timeout <= MAX_DELAY:
            raise job_problem(job_id, "timeout", "timeout must be a positive number of seconds, at "
                        f"most {int(MAX_DELAY)} (a year; leave it out for none)")
    port = job.get("port", 0) or 0
    if type(port) is not int:
        port = _number(job_id, "port", port, integer=True)
    if not 0 <= port <= 65535:
        raise job_problem(job_id, "port", "port must be between 0 and 65535")
    args = job.get("args")
    args = [] if args is None else args
    if not isinstance(args, list) or (args and not all(isinstance(a, str) for a in args)):
        raise job_problem(job_id, "args", "args must be a list of strings")
    if (why := args_problem(args)) is not None:
        raise job_problem(job_id, "args", why)
    env = job.get("env")
    env = {} if env is None else env
    if not isinstance(env, dict) or (env and not all(isinstance(k, str) and isinstance(v, str)
                                                     for k, v in env.items())):
        raise job_problem(job_id, "env", "env must map strings to strings")
    # What no process can be given fails here, not when the job starts.
    if (why := env_problem(env)) is not None:
        raise job_problem(job_id, "env", why)
    parents = job.get("parents")
    parents = [] if parents is None else parents
    if not isinstance(parents, list) or not all(isinstance(p, str) for p in parents):
        raise job_problem(job_id, "parents", "parents must be a list of job ids")
    requirement = job.get("requirement") or "GENERAL"
    checked = _CAPABILITIES.get(requirement) if type(requirement) is str else None
    if checked is None:
        try:
            checked = check_name(requirement, "requirement").upper()
        except ValidationFailed as exc:
            raise job_problem(job_id, "requirement", str(exc)) from None
        if len(_CAPABILITIES) < 1024:  # a DAG names a few; a flood of odd ones is not kept
            _CAPABILITIES[requirement] = checked
    requirement = checked
    runner = job.get("runner") or "auto"
    if type(runner) is not str or runner not in RUNNERS:  # a list is unhashable: a 500
        raise job_problem(job_id, "runner", f"runner must be one of {sorted(RUNNERS)}")
    if (why := runner_problem(runner, filename)) is not None:
        raise job_problem(job_id, "runner", why)
    hitl, max_wait = _gate_fields(job, job_id)
    return {
        "job_id": job_id, "filename": filename, "script_sha256": sha,
        "job_type": job_type, "args": args, "parents": list(dict.fromkeys(parents)),
        "env": env, "port": int(port), "is_archive": is_archive, "priority": int(priority),
        "delay": delay, "affinity": _flag(job_id, job, "affinity"),
        "requirement": requirement, "retries": None if retries is None else int(retries),
        "timeout": timeout, "runner": runner, "hitl_message": hitl,
        "max_wait_seconds": None if max_wait is None else float(max_wait),
        "service": _service_fields(job, job_id, job_type),
    }


def _service_fields(job: dict[str, Any], job_id: str, job_type: str) -> dict[str, Any] | None:
    """A service's settings, defaults filled in (None for any other job, which may not
    name them: ``readiness`` on a run would otherwise be silently ignored)."""
    if services.is_service(job_type):
        return services.settings(job, lambda field, message: job_problem(job_id, field, message))
    if job.keys().isdisjoint(services.FIELDS):
        return None
    for field in services.FIELDS:
        if job.get(field) is not None:
            raise job_problem(job_id, field, f"{field} is for services only (job_type SERVICE), "
                                       f"not {job_type}")
    return None


def _gate_fields(job: dict[str, Any], job_id: str) -> tuple[str | None, float | None]:
    max_wait = job.get("max_wait_seconds")
    if max_wait is not None and not 0 < _number(job_id, "max_wait_seconds", max_wait) \
            <= MAX_DELAY:
        raise job_problem(job_id, "max_wait_seconds", "max_wait_seconds must be positive, at most "
                    f"{int(MAX_DELAY)} (a year)")
    hitl = job.get("hitl_message")
    if hitl is not None and not isinstance(hitl, str):
        raise job_problem(job_id, "hitl_message", "hitl_message must be a string")
    if hitl is not None and len(hitl) > 10_000:
        raise job_problem(job_id, "hitl_message", "hitl_message is longer than 10000 characters")
    if hitl is not None and "\x00" in hitl:  # SQLite stored it, PostgreSQL refused the row
        raise job_problem(job_id, "hitl_message", "hitl_message may not contain NUL characters")
    if hitl is not None and not hitl.strip():
        # An empty one asked nobody: the gate was silently left out and what follows ran.
        raise job_problem(job_id, "hitl_message", "hitl_message is empty: say what the approver "
                    "decides, or leave it out for no approval gate")
    return hitl, None if max_wait is None else float(max_wait)


#: What means nothing to a gate (it runs nothing), with the value a gate has anyway (None:
#: none), which is accepted — the SDK sends it, a schedule shows it —; any other is refused.
_NOT_FOR_GATES: dict[str, Any] = {
    "filename": "", "script_sha256": None, "args": [], "env": {}, "port": 0, "is_archive": False,
    "delay": 0, "affinity": False, "requirement": "GENERAL", "retries": 0, "timeout": None,
    "runner": "auto", **dict.fromkeys(services.FIELDS),
}


def _validate_gate(job: dict[str, Any], job_id: str) -> dict[str, Any]:
    """An approval gate declared directly (YAML ``type: APPROVAL``): no script to run."""
    for field, own in _NOT_FOR_GATES.items():
        value = job.get(field)
        if value is None or (field == "requirement" and str(value).upper() == own):
            continue
        if value != own or isinstance(value, bool) != isinstance(own, bool):  # 0.0 is 0
            raise job_problem(job_id, field, f"{field} does not apply to an approval gate (it runs "
                                       "no script, it waits for a person): leave it out")
    parents = job.get("parents") or []
    if not isinstance(parents, list) or not all(isinstance(p, str) for p in parents):
        raise job_problem(job_id, "parents", "parents must be a list of job ids")
    hitl, max_wait = _gate_fields(job, job_id)
    return gate_spec(job_id, list(dict.fromkeys(parents)), hitl or DEFAULT_GATE_MESSAGE, max_wait,
                     int(_number(job_id, "priority", job.get("priority", 1), integer=True)))


def _flag(job_id: str, job: dict[str, Any], field: str) -> bool:
    value = job.get(field, False)
    if value is None or type(value) is bool:
        return bool(value)
    raise job_problem(job_id, field, f"{field} must be true or false, got {value!r}"[:200])


def gate_spec(job_id: str, parents: list[str], message: str, max_wait: float | None,
              priority: int = 1) -> dict[str, Any]:
    return {
        "job_id": job_id, "filename": "", "script_sha256": None, "job_type": "APPROVAL",
        "args": [], "parents": parents, "env": {}, "port": 0, "is_archive": False,
        "priority": priority, "delay": 0.0, "affinity": False, "requirement": "GENERAL",
        "retries": 0, "timeout": None, "runner": "auto", "hitl_message": message,
        "max_wait_seconds": max_wait, "service": None,
    }


def insert_gates(specs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``TitanJob(..., hitl_message=...)`` asks for a gate after that job: add ``<job>.approval``
    right after it and make the job's children wait for the gate instead."""
    asking = {s["job_id"]: s for s in specs if s["hitl_message"] and s["job_type"] != "APPROVAL"}
    if not asking:
        return specs
    ids = {s["job_id"] for s in specs}
    out: list[dict[str, Any]] = []
    for spec in specs:
        spec["parents"] = [p + GATE_SUFFIX if p in asking else p for p in spec["parents"]]
        out.append(spec)
        if spec["job_id"] in asking:
            gate_id = spec["job_id"] + GATE_SUFFIX
            if gate_id in ids:
                raise job_problem(gate_id, "job_id", f"job id {gate_id!r} is taken by the approval gate "
                            f"of {spec['job_id']!r} (hitl_message); rename the job")
            check_name(gate_id, "job_id")
            out.append(gate_spec(gate_id, [spec["job_id"]], spec["hitl_message"],
                                 spec["max_wait_seconds"], spec["priority"]))
    return out


def as_submitted(specs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Normalised jobs (:func:`validate_dag`'s) as a submission says them, so what a schedule
    shows can be sent back as it is: a service's settings as the job's own fields, no
    ``service`` key on other jobs, and no gate :func:`insert_gates` added (its job keeps its
    ``hitl_message``; children name the job again)."""
    added = {s["job_id"] + GATE_SUFFIX for s in specs
             if s.get("hitl_message") and s.get("job_type") != "APPROVAL"}
    out: list[dict[str, Any]] = []
    for spec in specs:
        if spec["job_id"] in added and spec.get("job_type") == "APPROVAL":
            continue
        job = {k: v for k, v in spec.items() if k != "service"}
        job.update(spec.get("service") or {})
        job["parents"] = [p[:-len(GATE_SUFFIX)] if p in added else p for p in spec["parents"]]
        out.append(job)
    return out


def dag_name_of(name: Any, field: str = "name") -> str:
    """A DAG's name as given (``DAG-`` prefix dropped), checked; ``field``: the body's field
    it came in (``dag_name`` for a schedule), which the error's details name (they said "DAG
    name", no field of any body). Raises InvalidDAG."""
    try:
        name = check_name(name, "DAG name", field)
        if name.startswith("DAG-"):
            name = check_name(name[4:], "DAG name", field)
            if name.startswith("DAG-"):
                # References drop one "DAG-" too: its ref would name the DAG without it.
                raise ValidationFailed(f"DAG name {'DAG-' + name!r}: a name cannot start with "
                                       "'DAG-' (the prefix that marks a DAG in a reference)",
                                       details={"field": field})
    except ValidationFailed as exc:
        raise InvalidDAG(str(exc), details=exc.details) from None
    return str(name)


def validate_dag(name: Any, jobs: Any, *, max_jobs: int,
                 name_field: str = "name") -> tuple[str, list[dict[str, Any]]]:
    """Validate a whole submission; return (name, normalised jobs). Raises InvalidDAG."""
    name = dag_name_of(name, name_field)
    if not isinstance(jobs, list) or not jobs:
        raise InvalidDAG(f"DAG {name!r} has no jobs", details={"dag": name})
    if len(jobs) > max_jobs:
        raise InvalidDAG(f"DAG {name!r} has {len(jobs)} jobs; the limit is {max_jobs}",
                         details={"dag": name})
    specs: list[dict[str, Any]] = []
    for i, job in enumerate(jobs):
        if not isinstance(job, dict):
            raise InvalidDAG(f"job #{i + 1} is not an object", details={"index": i})
        specs.append(validate_job(job, i))
    for problem in graph_problems(specs):
        raise problem
    return name, insert_gates(specs)
