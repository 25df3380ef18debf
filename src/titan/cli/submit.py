"""``titan submit``: a pipeline, or a script as a one-job DAG, submitted; with ``--wait``,
waited on to its end, each reason the master gives for a job of it being held said once."""

from __future__ import annotations

import argparse
import re
import sys
import time
import unicodedata
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from titan.cli.output import cell, counts, failed_jobs, for_terminal, gate_prompt, print_json
from titan.errors import ConfigError, PipelineError, WaitTimeout

if TYPE_CHECKING:
    from titan.client import TitanClient, TitanJob


def run(args: argparse.Namespace, connect: Callable[[argparse.Namespace], TitanClient]) -> int:
    """``titan submit``, its client made by ``connect`` once the options are found good."""
    if args.timeout is not None and not args.wait:
        raise ConfigError("--timeout bounds --wait; without --wait the command returns once "
                          "the DAG is submitted (a job's own limit is `timeout:` in the "
                          "pipeline)")
    if args.wait and args.timeout is not None:
        from titan.client.long_poll import wait_deadline

        wait_deadline(args.timeout)  # a bad --timeout is refused before anything is submitted
    script = _script_job(args.pipeline, args.script_args, args.allow_file, _job_fields(args))
    with connect(args) as client:
        if script is not None:
            dag = client.submit_job(script, agent_run_id=args.agent_run_id)
        else:
            try:
                dag = client.submit_yaml(args.pipeline, agent_run_id=args.agent_run_id,
                                         allow_files=args.allow_file)
            except PipelineError as exc:
                raise _read_as_pipeline(args.pipeline, exc) from None
        if not args.wait:
            if args.json:
                print_json(dag)
            else:
                print(dag.get("ref"))
            return 0
        # The reference first, so that a wait cut short (Ctrl-C, a CI step's timeout) leaves
        # it said; with --json on stderr, stdout being the one JSON document.
        print(dag.get("ref"), file=sys.stderr if args.json else sys.stdout, flush=True)
        label = dag.get("ref") or dag.get("name")
        try:
            final = _wait_saying_why(client, dag.get("id") or dag["ref"], args.timeout, label)
        except KeyboardInterrupt:
            print(f"still running: {label} (titan status DAG-{label}, titan cancel "
                  f"DAG-{label})", file=sys.stderr, flush=True)
            raise  # exit status 130 (cli/parser.py)
        except WaitTimeout as exc:
            if args.json:  # a script still learns which DAG it started, and where it stands
                print_json(client.get_dag(dag.get("ref") or dag["id"]))
            # Its own status, as timeout(1)'s: still running is not failed (cli.md).
            print(f"error: {for_terminal(str(exc), sys.stderr.isatty())}", file=sys.stderr)
            return WAIT_RAN_OUT
        if args.json:
            print_json(final)
        else:
            print(f"{final.get('status')} ({counts(final)})")
            for line in failed_jobs(final):  # what failed and why, without another command
                print(line)
        return 0 if final.get("status") == "COMPLETED" else 1


#: ``titan submit --wait``'s exit status when ``--timeout`` ran out with the DAG still going.
WAIT_RAN_OUT = 124

#: What ``titan submit`` runs as one job rather than reads as a pipeline (and a program: a
#: file beginning with ``#!`` or compiled, whatever its name, unless it is named as YAML).
SCRIPT_SUFFIXES = (".py", ".sh")
PIPELINE_SUFFIXES = (".yaml", ".yml")


#: ``titan submit``'s options for a script's job: option → TitanJob field.
JOB_OPTIONS = {"name": "job_id", "requirement": "requirement", "retries": "retries",
               "job_timeout": "timeout", "priority": "priority", "env": "env",
               "runner": "runner"}


def _job_fields(args: argparse.Namespace) -> dict[str, Any]:
    """The job fields given as options (``--requirement GPU``: ``{"requirement": "GPU"}``);
    ``--env NAME=VALUE`` each one variable."""
    fields = {field: getattr(args, option) for option, field in JOB_OPTIONS.items()
              if getattr(args, option, None) not in (None, [])}
    if "env" in fields:
        env: dict[str, str] = {}
        for item in fields["env"]:
            name, eq, value = item.partition("=")
            if not eq or not name:
                raise ConfigError(f"--env {item!r}: give it as NAME=VALUE")
            env[name] = value
        fields["env"] = env
    return fields


def _script_job(path: str, script_args: list[str], allow_files: list[str],
                fields: dict[str, Any] | None = None) -> TitanJob | None:
    """``titan submit train.py -- --epochs 3``: the script as a one-job DAG named after it
    (the job id is the file's name without its suffix, made a valid id; ``--name`` another)
    and the job ``fields`` its options gave; None for a pipeline. A program (``#!`` first, or
    compiled) is a script too, as the SDK runs it: it was read as YAML ("the pipeline must be
    a mapping", "'utf-8' codec can't decode byte 0xd0")."""
    fields = dict(fields or {})
    suffix = Path(path).suffix
    if suffix.lower() in SCRIPT_SUFFIXES and suffix not in SCRIPT_SUFFIXES:
        raise ConfigError(f"{path}: name the script {Path(path).stem}{suffix.lower()} (Titan "
                          "runs .py files with Python and .sh with bash, by their suffix)")
    from titan.client.files import starts_as_program  # the client's imports: on use only

    program = suffix.lower() not in PIPELINE_SUFFIXES and starts_as_program(path)
    if suffix not in SCRIPT_SUFFIXES and not program:
        if script_args:
            raise ConfigError(f"arguments ({' '.join(script_args)}) are for a script; "
                              f"{path} is read as a pipeline (give each job its args there)")
        if fields:
            given = ", ".join("--" + option.replace("_", "-") for option, field
                              in JOB_OPTIONS.items() if field in fields)
            raise ConfigError(f"{given} set a script's job; {path} is read as a pipeline "
                              "(give each job its fields there)")
        return None
    from titan.client import TitanJob

    if allow_files:
        raise ConfigError("--allow-file is for a pipeline's scripts; a script given "
                          "directly may be anywhere")
    if not Path(path).is_file():
        raise ConfigError(f"no script {path}")
    job_id = fields.pop("job_id", None) or script_name(Path(path).stem)
    return TitanJob(job_id=job_id, filename=path, args=script_args, **fields)


def _read_as_pipeline(path: str, error: PipelineError) -> PipelineError:
    """``error`` about the file as a whole, with why it was read as YAML when its name does
    not say it is a pipeline: ``titan submit train`` (a script without its .py) answered
    only "the pipeline must be a mapping of field: value"."""
    details = error.details or {}
    # Only the reader's own refusals name the file; one about a job, or about a field a
    # pipeline has, is said of a pipeline, as it is.
    if Path(path).suffix.lower() in PIPELINE_SUFFIXES or "file" not in details \
            or "job_id" in details or details.get("field") in ("name", "jobs", "schedule"):
        return error
    return PipelineError(f"{error.message} (titan submit reads a file as a YAML pipeline "
                         "unless it is named .py or .sh or is a program, beginning with #! "
                         "or compiled)", details=details)


def script_name(stem: str) -> str:
    """The job id (and DAG name) a script's file name gives: accented Latin letters as their
    ASCII base ("Über" is Uber, not "ber"), other letters, digits and their marks kept
    ("データ", "हिन्दी": they were all "script", one DAG for every such file), anything else
    a '-', at most 200 characters (the longest name the master takes)."""
    kept = []
    for ch in unicodedata.normalize("NFC", stem):
        if ch.isascii():
            kept.append(ch if ch.isalnum() or ch in "_.-" else "/")
            continue
        base = unicodedata.normalize("NFKD", ch).encode("ascii", "ignore").decode()
        if base.isalnum():
            kept.append(base)
        elif ch.isalnum() or unicodedata.category(ch).startswith("M"):
            kept.append(ch)  # a vowel sign or a mark is part of its word
        else:
            kept.append("/")  # a character no job id holds ('/') stands for any other
    job_id = re.sub("/+", "-", "".join(kept)).strip("-.")[:200].strip("-.")
    return job_id or "script"


def _wait_saying_why(client: Any, ref: Any, timeout: float | None, label: Any) -> Any:
    """The finished DAG, as ``wait_dag``; meanwhile, each reason a job of it is held that the
    master gives (no worker with its capability, a gate, a delay) is said once on stderr: a
    wait on a job no worker can take used to be silent until the timeout.

    It waits in steps (3 s, then 30 s), each bounded, when the master is away, by the whole
    wait's end, not the step's: with no ``timeout`` a restart is ridden out for the restart
    grace (a restart across a step's end made it give up within 3 s)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    said: set[tuple[str, str]] = set()
    step = 3.0
    while True:
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        try:
            return client._wait_dag(ref, step if left is None else min(step, left),
                                    until=deadline, what=f"DAG {label}")
        except WaitTimeout as exc:
            if left is not None and left <= step:  # the whole wait, not this slice, ran out
                raise WaitTimeout(f"timed out after {timeout:g}s waiting for DAG {label} (it "
                                  f"goes on running: titan status DAG-{label}, titan cancel "
                                  f"DAG-{label})",
                                  details=exc.details) from None
        step = 30.0
        # The held jobs only (a page of them): a 100,000-job DAG's whole view is 77 MB.
        held = client.dag_jobs(ref, state=("PENDING", "READY", "WAITING_APPROVAL"))
        for job in held.get("jobs") or []:
            reason = job.get("reason")
            if reason and (job["job_id"], reason) not in said:
                said.add((job["job_id"], reason))
                # Escaped, as in `titan status`: a job id or a reason holding ESC
                # sequences would otherwise clear or rewrite the waiting user's terminal.
                print(f"  {cell(job['job_id'])} is {cell(job['state'])}: {cell(reason)}",
                      file=sys.stderr, flush=True)
                if job["state"] == "WAITING_APPROVAL":
                    # The wait ends only on a person's decision: say what it asks and how.
                    print(gate_prompt(job), file=sys.stderr, flush=True)
