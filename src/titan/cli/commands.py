"""The commands on jobs, DAGs, the store, workers and tokens; the other groups' handed to their modules.

``titan up`` runs a master, its dashboard and a local worker in one process tree; the other
commands talk to a master over HTTP through :class:`titan.client.TitanClient`, which finds the
master and its token on its own (``--host/--port/--token`` override). Heavy modules (the SDK,
the master, the worker) are imported inside the command that needs them, so ``titan --help``
and ``titan worker`` start fast. The parser that dispatches to these is :mod:`titan.cli.parser`.
"""

from __future__ import annotations

import argparse
import importlib
import json
import re
import sys
import time
import unicodedata
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from titan import log_lines
from titan.cli.output import (
    SUCCESSES,
    cell,
    clip,
    counts,
    failed_jobs,
    for_terminal,
    gate_decision,
    job_end,
    print_json,
    show_dag,
    show_job,
    table,
    when,
)
from titan.errors import ConfigError, NotFound, PipelineError, WaitTimeout

if TYPE_CHECKING:
    from titan.client import TitanClient, TitanJob

Handler = Callable[[argparse.Namespace], int]


# --------------------------------------------------------------------------- commands


def _client(args: argparse.Namespace) -> TitanClient:
    from titan.client import TitanClient

    return TitanClient(host=args.host, port=args.port, token=args.token,
                       url=getattr(args, "master", None))


def cmd_submit(args: argparse.Namespace) -> int:
    if args.timeout is not None and not args.wait:
        raise ConfigError("--timeout bounds --wait; without --wait the command returns once "
                          "the DAG is submitted (a job's own limit is `timeout:` in the "
                          "pipeline)")
    if args.wait and args.timeout is not None:
        from titan.client.long_poll import wait_deadline

        wait_deadline(args.timeout)  # a bad --timeout is refused before anything is submitted
    script = _script_job(args.pipeline, args.script_args, args.allow_file)
    with _client(args) as client:
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


def _script_job(path: str, script_args: list[str], allow_files: list[str]) -> TitanJob | None:
    """``titan submit train.py -- --epochs 3``: the script as a one-job DAG named after it
    (the job id is the file's name without its suffix, made a valid id); None for a pipeline.
    A program (``#!`` first, or compiled) is a script too, as the SDK runs it: it was read as
    YAML ("the pipeline must be a mapping", "'utf-8' codec can't decode byte 0xd0")."""
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
        return None
    from titan.client import TitanJob

    if allow_files:
        raise ConfigError("--allow-file is for a pipeline's scripts; a script given "
                          "directly may be anywhere")
    if not Path(path).is_file():
        raise ConfigError(f"no script {path}")
    return TitanJob(job_id=script_name(Path(path).stem), filename=path, args=script_args)


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


def cmd_status(args: argparse.Namespace) -> int:
    with _client(args) as client:
        if args.ref is None:
            dags = client.list_dags(limit=args.limit)
            if args.json:
                print_json(dags)
            else:
                # Which Titan answered, and why that one: several may run on one machine.
                endpoint = client.endpoint
                print(f"Titan at {endpoint.url} (found in {endpoint.source})")
                table(["DAG", "STATUS", "JOBS", "AGENT RUN", "SUBMITTED"],
                       [[f"DAG-{d.get('ref')}", d.get("status"), counts(d),
                         d.get("agent_run_id") or "-", when(d.get("submitted_at"))]
                        for d in dags])
            return 0
        # A bare REF read as cancel, retry and wait read it (TitanClient._which): a number
        # that is a job's and a DAG's id showed the job when the DAG was meant.
        job = None
        if client._which(args.ref, "status") != "dag":
            try:
                job = client.get_job(args.ref)
            except NotFound:
                pass
        if job is None:
            try:
                dag = client.get_dag(args.ref)
            except NotFound:
                raise NotFound(f"no job or DAG {args.ref!r}") from None
            print_json(dag) if args.json else show_dag(dag)
            return 0
        print_json(job) if args.json else show_job(job)
        return 0


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
                print(f"  {job['job_id']} is {job['state']}: {reason}", file=sys.stderr,
                      flush=True)


def cmd_logs(args: argparse.Namespace) -> int:
    with _client(args) as client:
        job: dict[str, Any] = {}
        if args.follow:
            # Following a job that has not started: say why it waits, if the master knows.
            job = client.get_job(args.job)
            if job.get("state") in ("PENDING", "READY", "WAITING_APPROVAL") and job.get("reason"):
                print(f"{job['job_id']} is {job['state']}: {job['reason']}", file=sys.stderr,
                      flush=True)
        tty = sys.stdout.isatty()
        items = client.iter_logs(args.job, args.attempt, follow=args.follow)
        # --json gives the entries as stored; text, each line whole (titan/log_lines.py).
        for item in items if args.json else log_lines.whole(items):
            if args.json:
                print(json.dumps(item), flush=args.follow)
            else:
                print(for_terminal(item.get("line", ""), tty), flush=args.follow)
        if not args.follow:
            return 0
        # Followed to its end: exit as `submit --wait` does, 0 only if it succeeded (the
        # attempt followed, with --attempt), so a script or CI step learns it failed.
        ended = client.get_job(int(job["id"]))
        attempt = None if args.attempt is None else next(
            (a for a in ended.get("attempts") or [] if a.get("attempt") == args.attempt), None)
        # A gate's log is empty: how it was decided; another job's end, if not a success
        # (it exited 1 with nothing said).
        said = gate_decision(ended) or job_end(ended, attempt)
        if said is not None:
            print(said, file=sys.stderr)
    # An approval gate that was approved ended as it should: its children run.
    return 0 if (attempt or ended).get("state") in SUCCESSES else 1


def cmd_store(args: argparse.Namespace) -> int:
    with _client(args) as client:
        if args.store_command == "get":
            value = client.store_get(args.key)
            if value is None:
                raise NotFound(f"no value for store key {args.key!r}")
            print_json({"key": args.key, "value": value}) if args.json \
                else print(for_terminal(value, sys.stdout.isatty()))
        elif args.store_command == "put":
            value = sys.stdin.read() if args.value == "-" else args.value
            client.store_put(args.key, value)
            if args.json:
                print_json({"key": args.key, "ok": True})
        elif args.store_command == "delete":
            if not client.store_delete(args.key):
                raise NotFound(f"no store key {args.key!r}")
            if args.json:
                print_json({"key": args.key, "deleted": True})
        elif args.store_command == "keys":
            keys = client.store_keys(args.prefix, limit=None)
            # One key a line, with any control character a key may hold shown escaped.
            print_json(keys) if args.json else print("\n".join(map(cell, keys))) if keys \
                else None
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    with _client(args) as client:
        obj = client.cancel(args.ref)
    if args.json:
        print_json(obj)
    else:
        print(f"{obj.get('ref')}: {obj.get('state') or obj.get('status')}")
    return 0


def cmd_stop(args: argparse.Namespace) -> int:
    """`titan stop SERVICE`: SIGTERM, the grace, SIGKILL; it ends COMPLETED (not a cancel)."""
    with _client(args) as client:
        job = client.stop_service(args.ref, grace=args.grace)
        if args.wait:  # until the process is gone: the grace, and time for its last report
            grace = (job.get("service") or {}).get("stop_grace") if args.grace is None \
                else args.grace
            job = client.wait_job(int(job["id"]), timeout=float(grace or 0) + 30)
    if args.json:
        print_json(job)
    else:
        print(f"{job.get('ref')}: {job.get('state')}"
              + (" (stopping)" if (job.get("service") or {}).get("stopping") else ""))
    return 0


def cmd_retry(args: argparse.Namespace) -> int:
    with _client(args) as client:
        found = client.retry(args.ref)  # a job, or a DAG's unsuccessful jobs
    if args.json:
        print_json(found)
    else:
        print(f"{found.get('ref')}: {found.get('state') or found.get('status')}")
    return 0


def cmd_decide(args: argparse.Namespace) -> int:
    """`titan approve|reject GATE`: a person's decision on an approval gate."""
    with _client(args) as client:
        decide = client.approve if args.command == "approve" else client.reject
        job = decide(args.gate, comment=args.comment)
    if args.json:
        print_json(job)
    else:
        print(f"{job.get('ref')}: {job.get('state')} by {job.get('decided_by')}")
    return 0


def cmd_workers(args: argparse.Namespace) -> int:
    with _client(args) as client:
        info = client.get_workers()
    if args.json:
        print_json(info)
        return 0
    workers = info.get("workers") or []
    master = info.get("version")
    other = [w for w in workers if w.get("version") and master and w["version"] != master]
    if not workers:
        print("no workers (start one with `titan worker --master URL`)")
    else:
        table(["ID", "NAME", "HOST", "VERSION", "CAPABILITIES", "SLOTS", "RUNNING", "STATE",
               "LAST SEEN"],
              [[w.get("id"), clip(w.get("name"), 32), clip(w.get("hostname"), 32),
                (w.get("version") or "-") + (" *" if w in other else ""),
                ",".join(w.get("capabilities") or []), w.get("slots"), _running(w),
                w.get("state"), when(w.get("last_seen_at"))] for w in workers])
    if other:
        print(f"\n* not this master's version ({master}): upgrade workers and masters together")
    queues = {k: v for k, v in (info.get("queues") or {}).items() if v}
    if queues:
        print("\nready: " + ", ".join(f"{k} {v}" for k, v in sorted(queues.items())))
    waiting = info.get("unschedulable") or []
    if waiting:
        print("\nwaiting for a capability no live worker offers:")
        table(["JOB", "NEEDS", "REASON"],
              [[w.get("ref") or w.get("job_id"), w.get("requirement"), w.get("reason")]
               for w in waiting])
        listed = sum((info.get("unschedulable_counts") or {}).values()) - len(waiting)
        if listed > 0:
            print(f"... and {listed} more (titan workers --json has the counts)")
    return 0


def _running(worker: dict[str, Any]) -> str:
    """A worker's running jobs by reference (``dag#run/job``), the first three and a count."""
    ids = worker.get("running")
    refs = worker.get("running_refs") or \
        ([str(i) for i in ids] if isinstance(ids, list) else [str(ids)] if ids else [])
    shown = ", ".join(clip(ref, 40) for ref in refs[:3])
    return (shown + (f" +{len(refs) - 3}" if len(refs) > 3 else "")) or "-"


def cmd_token(args: argparse.Namespace) -> int:
    with _client(args) as client:
        if args.token_command == "create":
            created = client.create_token(args.role, args.name)
            print_json(created) if args.json else print(created["token"])
        elif args.token_command == "list":
            tokens = client.list_tokens()
            if args.json:
                print_json(tokens)
            else:
                table(["ID", "ROLE", "NAME", "CREATED", "BY", "REVOKED"],
                       [[t.get("id"), t.get("role"), t.get("name") or "-",
                         when(t.get("created_at")), t.get("created_by") or "-",
                         when(t["revoked_at"]) if t.get("revoked_at") else "-"]
                        for t in tokens])
        elif args.token_command == "revoke":
            revoked = client.revoke_token(args.id)
            if args.json:
                print_json({"id": args.id, "revoked": revoked})
            else:
                print(f"revoked {args.id}")
    return 0


def _elsewhere(module: str, name: str, client: bool = True) -> Handler:
    """A command whose code lives in its own module of this package (``titan.cli.runs``...),
    imported only when it runs so ``titan --help`` stays fast."""
    def handler(args: argparse.Namespace) -> int:
        run: Callable[..., int] = getattr(importlib.import_module(module), name)
        return run(args, _client(args)) if client else run(args)
    return handler


cmd_up = _elsewhere("titan.cli.serve", "run_up", client=False)
cmd_master = _elsewhere("titan.cli.serve", "run_master", client=False)
cmd_worker = _elsewhere("titan.cli.serve", "run_worker", client=False)
cmd_runs = _elsewhere("titan.cli.runs", "run")
cmd_dags = _elsewhere("titan.cli.dags", "run")
cmd_admin = _elsewhere("titan.cli.admin", "run")
cmd_files = _elsewhere("titan.cli.files", "run")
cmd_schedule = _elsewhere("titan.cli.schedules", "run")
cmd_replay = _elsewhere("titan.cli.replay", "run_replay")
cmd_determinism = _elsewhere("titan.cli.replay", "run_determinism")
_cmd_eval_remote = _elsewhere("titan.cli.evals", "run")
_cmd_eval_offline = _elsewhere("titan.cli.evals", "calibrate", client=False)


def cmd_eval(args: argparse.Namespace) -> int:
    """``titan eval``: calibrate runs the judge offline; every other action asks a master."""
    if args.eval_command == "calibrate":
        return _cmd_eval_offline(args)
    return _cmd_eval_remote(args)


cmd_dashboard = _elsewhere("titan.cli.dashboard", "run")
cmd_llm = _elsewhere("titan.cli.llm", "run", client=False)
cmd_mcp = _elsewhere("titan.cli.mcp", "run")
