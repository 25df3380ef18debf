"""YAML pipelines: a named DAG of jobs in a file.

::

    name: nightly
    jobs:
      - id: extract
        file: etl/extract.py          # relative to this YAML file's directory
        args: ["--day", "1"]          # or a string: "--day 1"
        priority: 5
      - id: train
        file: ml/train.py
        depends_on: [extract]         # or one id: "extract"
        requirement: GPU
        retries: 2
        timeout: 3600

Job fields: ``id``, ``file``, ``args``, ``depends_on``, ``requirement``, ``priority``,
``delay``, ``affinity``, ``type``, ``port``, ``retries``, ``timeout``, ``env``, ``is_archive``,
``hitl_message``, ``max_wait_seconds``, ``runner``, and for ``type: SERVICE`` ``readiness``,
``max_restarts``, ``restart_window``, ``stop_grace``, ``ready_timeout``. ``name`` defaults to
the file's stem. YAML merge keys (``<<: *defaults``) fill in fields a job does not set, and
top-level fields named ``x-...`` are left unread, a place for such anchors. An optional ``schedule:`` block runs the DAG on a cron schedule
(:func:`load_schedule`, ``titan schedule create``); ``titan submit`` runs it once.

Every mistake — bad YAML, an unknown field, a wrong type, a duplicate id, an unknown parent —
is a :class:`~titan.errors.PipelineError` whose message starts with ``file:line:`` and names
the job and field. The file is composed into YAML nodes first so each value keeps its line.

A pipeline names scripts inside its own folder only: a ``file`` that is absolute or leaves the
folder (``../``, or a symlink pointing out of it) is refused, since submitting uploads the file
to the cluster and a pipeline from someone else's repository must not be able to ship
``~/.ssh/id_rsa`` by naming it. A file outside is used only when the person submitting names it
too (``titan submit --allow-file PATH``, ``submit_yaml(..., allow_files=[...])``).

:func:`dump_pipeline` writes jobs back in this format, leaving out fields at their defaults;
what it writes loads as the same jobs (the dashboard's DAG builder exports with it).
"""

from __future__ import annotations

import os
import re
import unicodedata
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import Node, SequenceNode

from titan.client.containment import outside
from titan.client.job import TitanJob
from titan.client.job_fields import check_name
from titan.client.pipeline_fields import JOB_FIELDS
from titan.client.pipeline_writer import dump_pipeline
from titan.client.yaml_reader import YamlReader, read_file_text, safe_loader, unknown_field
from titan.errors import APIError, PipelineError, TitanError, ValidationFailed

__all__ = ["JOB_FIELDS", "dump_pipeline", "load_pipeline", "load_schedule", "parse_pipeline",
           "schedule_error"]

TOP_FIELDS = ("name", "jobs", "schedule")
#: A pipeline's optional ``schedule:`` block (:func:`load_schedule`), each field's choices.
SCHEDULE_FIELDS: dict[str, tuple[str, ...]] = {
    "cron": (), "timezone": (), "catchup": ("skip", "all", "latest"),
    "overlap": ("allow", "skip", "queue"), "agent_run_id": ()}
_ARG_TO_FIELD = {arg: key for key, arg in JOB_FIELDS.items()}
#: Fields whose scalars are taken as written (``id: 1`` is the id "1", not an int).
_TEXT_FIELDS = {"id", "file", "requirement", "type", "hitl_message", "runner", "readiness"}
def load_pipeline(
    path: str | os.PathLike[str], allow_files: Iterable[str | os.PathLike[str]] = (),
) -> tuple[str, list[TitanJob]]:
    """Read a pipeline file: its DAG name and its jobs (scripts not yet read).

    ``allow_files``: scripts outside the pipeline's folder that its jobs may name anyway."""
    if not isinstance(path, str | os.PathLike) or not os.fspath(path):
        raise PipelineError(f"a pipeline is named by its file's path, got {path!r}")
    file = Path(path)
    allowed = frozenset(Path(os.path.expanduser(a)).resolve() for a in allow_files)
    return parse_pipeline(read_file_text(file), file, folder=file.resolve().parent, allowed=allowed)


#: ``cron: */5 * * * *`` or ``cron: @daily`` unquoted: to YAML, ``*`` begins an alias and
#: ``@`` begins no value at all.
_UNQUOTED_CRON = re.compile(r"^\s*cron\s*:\s*[*@]")


def _invalid_yaml(file: Path, text: str, exc: yaml.YAMLError) -> PipelineError:
    """Text that is not YAML, said at its line (with what to do about an unquoted cron)."""
    if not isinstance(exc, yaml.MarkedYAMLError):
        return PipelineError(f"{file}: invalid YAML: {exc}", details={"file": str(file)})
    mark = exc.problem_mark or exc.context_mark
    line = f":{mark.line + 1}" if mark is not None else ""
    problem = " ".join(p for p in (exc.context, exc.problem) if p)
    if mark is not None:
        problem += _cron_hint(text, mark.line)
    return PipelineError(f"{file}{line}: invalid YAML: {problem}", details={"file": str(file)})


def _cron_hint(text: str, line: int) -> str:
    """What to do about a YAML error on an unquoted cron expression (``*/5 * * * *``: YAML
    says it "did not find expected alphabetic or numeric character" scanning an alias, which
    names neither the cause nor the cure); "" for any other line."""
    lines = text.splitlines()
    if 0 <= line < len(lines) and _UNQUOTED_CRON.match(lines[line]):
        return ('; a cron expression that begins with "*" or "@" must be quoted in YAML: '
                'cron: "*/5 * * * *"')
    return ""


def load_schedule(path: str | os.PathLike[str]) -> dict[str, str] | None:
    """A pipeline file's ``schedule:`` block — ``cron``, and optionally ``timezone``,
    ``catchup``, ``overlap``, ``agent_run_id`` (a template holding ``{tick}``) — as written, or None without one. ``titan schedule create``
    reads it; the master checks the expression and the zone, which it evaluates (its
    refusal is placed in the file by :func:`schedule_error`)::

        schedule:
          cron: "0 6 * * MON-FRI"
          timezone: Europe/Paris
    """
    found = _schedule_block(path)
    return None if found is None else found[0]


def schedule_error(path: str | os.PathLike[str], exc: APIError,
                   given: Iterable[str] = ()) -> APIError:
    """The master's refusal of a schedule read from ``path``, placed at the line of the field
    it names when that field came from the file (not from ``given``, the arguments that
    override it): ``nightly.yaml:3: schedule: invalid cron expression …``."""
    field = (exc.details or {}).get("field")
    found = _schedule_block(path) if isinstance(field, str) and field not in given else None
    if found is None or field not in found[1]:
        return exc
    line = found[1][field]
    return PipelineError(f"{path}:{line}: schedule: {exc.message}",
                         details={**(exc.details or {}), "file": str(path), "line": line})


def _schedule_block(path: str | os.PathLike[str]) -> tuple[dict[str, str], dict[str, int]] | None:
    """The schedule block's fields and the line of each."""
    file = Path(path)
    text = read_file_text(file)
    loader = safe_loader(text)
    try:
        try:
            root = loader.get_single_node()
        except RecursionError:
            raise PipelineError(f"{file}: invalid YAML: nested too deeply",
                                details={"file": str(file)}) from None
        except yaml.YAMLError as exc:
            raise _invalid_yaml(file, text, exc) from None
        reader = YamlReader(file, loader)
        block = None if root is None else next(
            (v for k, _, v in reader.mapping(root, "the pipeline") if k == "schedule"), None)
        if block is None:
            return None
        out: dict[str, str] = {}
        lines: dict[str, int] = {}
        for key, key_node, value_node in reader.mapping(block, "'schedule'"):
            if key not in SCHEDULE_FIELDS:
                raise reader.error(key_node, f"schedule: {unknown_field(key, SCHEDULE_FIELDS)}",
                                   field=f"schedule.{key}")
            value = reader.text(value_node, f"schedule: {key!r}")
            if SCHEDULE_FIELDS[key] and value not in SCHEDULE_FIELDS[key]:
                raise reader.error(value_node, f"schedule: {key} must be one of "
                                   f"{', '.join(SCHEDULE_FIELDS[key])}, got {value!r}",
                                   field=f"schedule.{key}")
            out[key] = value
            lines[key] = value_node.start_mark.line + 1
        if "cron" not in out:
            raise reader.error(block, "the 'schedule' block has no 'cron'",
                               field="schedule.cron")
        return out, lines
    finally:
        loader.dispose()


def parse_pipeline(
    text: str, file: Path, *, folder: Path | None, allowed: frozenset[Path] = frozenset(),
) -> tuple[str, list[TitanJob]]:
    """A pipeline's text: its DAG name and its jobs, by the rules of :func:`load_pipeline`.

    ``file`` names the text in messages and gives the default DAG name (its stem).
    ``folder``: where the jobs' scripts are read from, and which they must stay inside; None
    when nothing is read from disk (the dashboard's DAG builder, whose scripts are files
    already uploaded to the master, and whose server then checks the names as ``POST /dags``
    does: relative, without ``..``)."""
    loader = safe_loader(text)
    try:
        try:
            root = loader.get_single_node()
        except RecursionError:
            raise PipelineError(f"{file}: invalid YAML: nested too deeply",
                                details={"file": str(file)}) from None
        except yaml.YAMLError as exc:
            raise _invalid_yaml(file, text, exc) from None
        reader = YamlReader(file, loader)
        if root is None:
            raise reader.error(None, "the pipeline file is empty")
        try:
            return _pipeline(reader, root, file, folder, allowed)
        except RecursionError:  # a value nested past the interpreter's stack
            raise PipelineError(f"{file}: a value is nested too deeply",
                                details={"file": str(file)}) from None
    finally:
        loader.dispose()


def _pipeline(reader: YamlReader, root: Node, file: Path, folder: Path | None,
              allowed: frozenset[Path]) -> tuple[str, list[TitanJob]]:
    name: str | None = None
    jobs_node: Node | None = None
    for key, key_node, value_node in reader.mapping(root, "the pipeline"):
        if key == "name":
            name = reader.text(value_node, "name")
            try:
                check_name(name, "the pipeline name", "name")
            except ValidationFailed as exc:
                raise reader.error(value_node, exc.message, field="name") from None
        elif key == "jobs":
            jobs_node = value_node
        elif key == "schedule":
            pass  # load_schedule's: submitting the file runs its DAG once
        elif key.startswith("x-"):
            pass  # an extension field (as in Compose files): a place for anchors, unread
        else:
            raise reader.error(key_node, f"{unknown_field(key, TOP_FIELDS)} (a field named "
                               "x-... is left unread: a place for YAML anchors)", field=key)
    if name is None:
        # Composed: a file name's normal form is the file system's doing (macOS hands out
        # 'cafe\u0301'), and names must be NFC, so 'café.yaml' was refused for an accent.
        name = unicodedata.normalize("NFC", file.stem)
        try:  # the file's name is the DAG's: say so, with the file, rather than at submit
            check_name(name, "the pipeline name", "name")
        except ValidationFailed as exc:
            raise PipelineError(f"{file}: the DAG is named after the file, and {exc.message}; "
                                "rename the file or give the pipeline a 'name:'",
                                details={"file": str(file), "field": "name"}) from None
    if jobs_node is None:
        raise reader.error(root, "the pipeline has no 'jobs' list", field="jobs")
    if not isinstance(jobs_node, SequenceNode):
        raise reader.error(jobs_node, "'jobs' must be a list of jobs", field="jobs")
    if not jobs_node.value:
        raise reader.error(jobs_node, "'jobs' is empty: a pipeline needs at least one job",
                           field="jobs")

    base_dir = None if folder is None else str(folder)
    jobs: list[TitanJob] = []
    lines: dict[str, dict[str, int]] = {}
    id_nodes: dict[str, Node] = {}
    parent_nodes: dict[str, Node] = {}
    for index, job_node in enumerate(jobs_node.value):
        job, nodes = _job(reader, job_node, index, base_dir)
        if "file" in nodes and folder is not None:
            _check_inside(reader, nodes["file"], job, folder, allowed)
        if job.job_id in id_nodes:
            first = id_nodes[job.job_id].start_mark.line + 1
            raise reader.error(nodes["id"], f"duplicate job id {job.job_id!r} (first at line "
                               f"{first})", job_id=job.job_id, field="id")
        id_nodes[job.job_id] = nodes["id"]
        # Where each of its fields is, by the TitanJob argument it sets (and the job's own
        # line under ""), for errors the master finds after the file was read.
        lines[job.job_id] = {JOB_FIELDS.get(k, k): n.start_mark.line + 1
                             for k, n in nodes.items()} | {"": job_node.start_mark.line + 1}
        if "depends_on" in nodes:
            parent_nodes[job.job_id] = nodes["depends_on"]
        jobs.append(job)
    for job in jobs:
        for parent in job.parents:
            if parent not in id_nodes:
                raise reader.error(
                    parent_nodes.get(job.job_id), f"job {job.job_id!r} depends on {parent!r}, "
                    "which is not a job in this pipeline", job_id=job.job_id,
                    field="depends_on",
                )
    return name, _Jobs(jobs, file, lines)


class _Jobs(list[TitanJob]):
    """A pipeline's jobs (a plain list to its users) that remember where in the file each
    job and field is, for errors the master finds after the file was read (:func:`where`)."""

    def __init__(self, jobs: list[TitanJob], file: Path, lines: dict[str, dict[str, int]]
                 ) -> None:
        super().__init__(jobs)
        self.file, self.lines = file, lines


def where(jobs: list[TitanJob], error: TitanError) -> PipelineError | None:
    """``error`` (about one of ``jobs``, read from a pipeline) as a ``file:line:`` error at
    its job's field, or None when it names no job of the file."""
    if not isinstance(jobs, _Jobs):
        return None
    file, lines = jobs.file, jobs.lines
    details = getattr(error, "details", {}) or {}
    job_id = details.get("job_id")
    if job_id is None:  # ScriptNotFound says it in its message only
        job_id = next((j for j in lines if f"job {j!r}" in str(error)), None)
    at = lines.get(job_id) if isinstance(job_id, str) else None
    if at is None:
        return None
    field = details.get("field")
    if isinstance(field, str):  # a body's path, "jobs[1].delay", is the job's field "delay"
        field = re.sub(r"^jobs\[\d+\]\.", "", field).partition(".")[0].partition("[")[0]
    line = at.get(field, at[""]) if isinstance(field, str) else at[""]
    message = getattr(error, "message", str(error))
    return PipelineError(f"{file}:{line}: {message}", details={**details, "line": line})


def _check_inside(reader: YamlReader, node: Node, job: TitanJob, folder: Path,
                  allowed: frozenset[Path]) -> None:
    """Refuse a script outside the pipeline's folder unless the submitter named it."""
    target = outside(folder / os.path.expanduser(job.filename), folder)
    if target is None or target in allowed:
        return
    raise reader.error(
        node, f"job {job.job_id!r}: file {job.filename!r} is outside the pipeline's folder "
        f"({folder}); a pipeline may only name scripts inside it. To use this one anyway, "
        f"name it yourself: allow_files=[{str(target)!r}] (titan submit --allow-file "
        f"{target})",
        job_id=job.job_id, field="file")


def _job(
    reader: YamlReader, node: Node, index: int, base_dir: str | None
) -> tuple[TitanJob, dict[str, Node]]:
    label = f"job #{index + 1}"
    fields = reader.mapping(node, label)
    nodes = {key: value_node for key, _, value_node in fields}
    job_id: str | None = None
    if "id" in nodes:
        job_id = reader.text(nodes["id"], f"{label}: 'id'")
        label = f"job {job_id!r}"
    for key, key_node, _ in fields:
        if key not in JOB_FIELDS:
            raise reader.error(key_node, f"{label}: {unknown_field(key, JOB_FIELDS)}",
                               job_id=job_id, field=key)
    if job_id is None:
        raise reader.error(node, f"{label} has no 'id'", field="id")
    is_gate = "type" in nodes and str(getattr(nodes["type"], "value", "")).upper() == "APPROVAL"
    if "file" not in nodes and not is_gate:
        raise reader.error(node, f"{label} has no 'file' (the script to run; an approval gate "
                           "is 'type: APPROVAL' with no file)", job_id=job_id, field="file")
    if "file" in nodes and is_gate:
        raise reader.error(nodes["file"], f"{label} is an approval gate: it runs no script, so "
                           "it takes no 'file' (leave it out, or drop 'type: APPROVAL')",
                           job_id=job_id, field="file")

    kwargs: dict[str, Any] = {}
    for key, value_node in nodes.items():
        what = f"{label}: {key!r}"
        if key in _TEXT_FIELDS:
            value: Any = reader.text(value_node, what)
        elif key == "depends_on":
            value = reader.text_list(value_node, what, one_ok=True)
        elif key == "args":
            value = reader.text_list(value_node, what, one_ok=False)
        elif key == "env":
            value = {k: reader.text(v, f"{label}: env {k!r}")
                     for k, _, v in reader.mapping(value_node, f"{label}: 'env'")}
        else:
            value = reader.value(value_node)
            if value is None:
                continue  # an explicit null keeps the default
        kwargs[JOB_FIELDS[key]] = value
    try:
        job = TitanJob(base_dir=base_dir, **kwargs)
    except ValidationFailed as exc:
        arg = str(exc.details.get("field", ""))
        key = _ARG_TO_FIELD.get(arg, arg)
        message = exc.message
        prefix = f"job {job_id!r}: "
        if message.startswith(prefix):
            message = message[len(prefix):]
        raise reader.error(nodes.get(key, node), f"{label}, field {key!r}: {message}",
                           job_id=job_id, field=key) from None
    return job, nodes
