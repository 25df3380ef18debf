"""The commands on jobs, DAGs and workers; the other groups handed to their modules.

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
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from titan import log_lines
from titan.cli import submit
from titan.cli.output import (
    SUCCESSES,
    cell,
    clip,
    for_terminal,
    gate_decision,
    job_end,
    print_json,
    show_dag,
    show_job,
    table,
    table_of_dags,
    when,
)
from titan.errors import NotFound

if TYPE_CHECKING:
    from titan.client import TitanClient

Handler = Callable[[argparse.Namespace], int]


# --------------------------------------------------------------------------- commands


def _client(args: argparse.Namespace) -> TitanClient:
    from titan.client import TitanClient

    return TitanClient(host=args.host, port=args.port, token=args.token,
                       url=getattr(args, "master", None))


def cmd_submit(args: argparse.Namespace) -> int:
    return submit.run(args, _client)


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
                table_of_dags(dags)
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


def cmd_logs(args: argparse.Namespace) -> int:
    with _client(args) as client:
        job: dict[str, Any] = {}
        if args.follow:
            # Following a job that has not started: say why it waits, if the master knows.
            job = client.get_job(args.job)
            if job.get("state") in ("PENDING", "READY", "WAITING_APPROVAL") and job.get("reason"):
                print(f"{cell(job['job_id'])} is {job['state']}: {cell(job['reason'])}",
                      file=sys.stderr, flush=True)
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
cmd_down = _elsewhere("titan.cli.down", "run", client=False)
cmd_runs = _elsewhere("titan.cli.runs", "run")
cmd_store = _elsewhere("titan.cli.store", "run")
cmd_token = _elsewhere("titan.cli.tokens", "run")
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
