"""The ``titan`` command.

``titan up`` runs a master, its dashboard and a local worker in one process tree; the other
commands talk to a master over HTTP through :class:`titan.client.TitanClient`, which finds the
master and its token on its own (``--host/--port/--token`` override). Heavy modules (the SDK,
the master, the worker) are imported inside the command that needs them, so ``titan --help``
and ``titan worker`` start fast.

Exit codes: 0 success, 1 a Titan error (printed as ``error: <message>``, no traceback), 2 a
usage error, 130 interrupted.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from titan.cli.output import counts, print_json, show_dag, show_job, table, when
from titan.errors import NotFound, TitanError
from titan.version import __version__

if TYPE_CHECKING:
    from titan.client import TitanClient

Handler = Callable[[argparse.Namespace], int]
ROLES = ("worker", "operator", "viewer", "admin")


# --------------------------------------------------------------------------- commands


def _client(args: argparse.Namespace) -> TitanClient:
    from titan.client import TitanClient

    return TitanClient(host=args.host, port=args.port, token=args.token,
                       url=getattr(args, "master", None))


def cmd_submit(args: argparse.Namespace) -> int:
    with _client(args) as client:
        dag = client.submit_yaml(args.pipeline, agent_run_id=args.agent_run_id,
                                 allow_files=args.allow_file)
        if not args.wait:
            if args.json:
                print_json(dag)
            else:
                print(dag.get("ref"))
            return 0
        if not args.json:
            print(dag.get("ref"), flush=True)
        final = client.wait_dag(dag.get("id") or dag["ref"], timeout=args.timeout)
        if args.json:
            print_json(final)
        else:
            print(f"{final.get('status')} ({counts(final)})")
        return 0 if final.get("status") == "COMPLETED" else 1


def cmd_status(args: argparse.Namespace) -> int:
    with _client(args) as client:
        if args.ref is None:
            dags = client.list_dags(limit=args.limit)
            if args.json:
                print_json(dags)
            else:
                table(["DAG", "STATUS", "JOBS", "AGENT RUN", "SUBMITTED"],
                       [[f"DAG-{d.get('ref')}", d.get("status"), counts(d),
                         d.get("agent_run_id") or "-", when(d.get("submitted_at"))]
                        for d in dags])
            return 0
        try:
            job = client.get_job(args.ref)
        except NotFound:
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
        for item in client.iter_logs(args.job, args.attempt, follow=args.follow):
            if args.json:
                print(json.dumps(item), flush=args.follow)
            else:
                print(item.get("line", ""), flush=args.follow)
    return 0


def cmd_store(args: argparse.Namespace) -> int:
    with _client(args) as client:
        if args.store_command == "get":
            value = client.store_get(args.key)
            if value is None:
                raise NotFound(f"no value for store key {args.key!r}")
            print(value)
        elif args.store_command == "put":
            value = sys.stdin.read() if args.value == "-" else args.value
            client.store_put(args.key, value)
        elif args.store_command == "delete":
            if not client.store_delete(args.key):
                raise NotFound(f"no store key {args.key!r}")
        elif args.store_command == "keys":
            keys = client.store_keys(args.prefix)
            print_json(keys) if args.json else print("\n".join(keys)) if keys else None
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
            job = client.wait_job(str(job["id"]), timeout=float(grace or 0) + 30)
    if args.json:
        print_json(job)
    else:
        print(f"{job.get('ref')}: {job.get('state')}"
              + (" (stopping)" if (job.get("service") or {}).get("stopping") else ""))
    return 0


def cmd_retry(args: argparse.Namespace) -> int:
    with _client(args) as client:
        job = client.retry(args.ref)
    print_json(job) if args.json else print(f"{job.get('ref')}: {job.get('state')}")
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


def cmd_dashboard(args: argparse.Namespace) -> int:
    """`titan dashboard`: the one-click sign-in link again (the banner scrolled away)."""
    from urllib.parse import urlencode

    with _client(args) as client:
        client.health()  # a clear error now beats a link to nothing
        token = client.endpoint.token
        if not token:
            raise TitanError("no token for this master: pass --token or set TITAN_TOKEN")
        # The API port serves the dashboard too, so the link needs nothing but the endpoint.
        link = f"{client.url}/login?{urlencode({'token': token, 'next': args.page})}"
    print(link)
    if args.open:
        import webbrowser

        webbrowser.open(link)
    return 0


def cmd_workers(args: argparse.Namespace) -> int:
    with _client(args) as client:
        info = client.get_workers()
    if args.json:
        print_json(info)
        return 0
    workers = info.get("workers") or []
    if not workers:
        print("no workers (start one with `titan worker --master URL`)")
    else:
        table(["ID", "NAME", "HOST", "CAPABILITIES", "SLOTS", "RUNNING", "STATE", "LAST SEEN"],
               [[w.get("id"), w.get("name"), w.get("hostname"),
                 ",".join(w.get("capabilities") or []), w.get("slots"), w.get("running"),
                 w.get("state"), when(w.get("last_seen_at"))] for w in workers])
    queues = {k: v for k, v in (info.get("queues") or {}).items() if v}
    if queues:
        print("\nready: " + ", ".join(f"{k} {v}" for k, v in sorted(queues.items())))
    for item in info.get("unschedulable") or []:
        print(f"unschedulable: {item}")
    return 0


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
                table(["ID", "ROLE", "NAME", "CREATED", "REVOKED"],
                       [[t.get("id"), t.get("role"), t.get("name") or "-",
                         when(t.get("created_at")),
                         when(t["revoked_at"]) if t.get("revoked_at") else "-"]
                        for t in tokens])
        elif args.token_command == "revoke":
            client.revoke_token(args.id)
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


cmd_llm = _elsewhere("titan.cli.llm", "run", client=False)
cmd_mcp = _elsewhere("titan.cli.mcp", "run")


# --------------------------------------------------------------------------- parser


def _common(*, master: bool = True) -> argparse.ArgumentParser:
    """Options accepted before or after the command (``titan --json status X`` or
    ``titan status X --json``). SUPPRESS keeps a subcommand from resetting what the main
    parser already read. ``titan worker`` defines its own ``--master`` (``cli/serve.py``),
    so it takes these without it."""
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("connection")
    if master:
        group.add_argument("--master", metavar="URL", action="append", default=argparse.SUPPRESS,
                           help="the master's URL; repeat it, or separate URLs with commas, to "
                                "name a leader and its standbys (instead of --host/--port; "
                                "default: discovered)")
    group.add_argument("--host", default=argparse.SUPPRESS,
                       help="master host or URL (default: discovered, else 127.0.0.1)")
    group.add_argument("--port", type=int, default=argparse.SUPPRESS,
                       help="master port (default: discovered, else 9090)")
    group.add_argument("--token", default=argparse.SUPPRESS,
                       help="API token (default: TITAN_TOKEN, else discovered)")
    group.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                       help="print JSON instead of text")
    return common


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``titan`` (also used to generate the CLI reference)."""
    parser = argparse.ArgumentParser(
        prog="titan",
        description="Run DAGs of Python jobs and agent loops; record what every agent did.",
    )
    parser.add_argument("--version", action="version", version=f"titan {__version__}")
    parser.add_argument("--master", action="append", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--host", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--token", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--json", action="store_true", default=False, help=argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    common = [_common()]

    def command(name: str, handler: Handler, help: str, parents: Any = None,
                **kw: Any) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help,
                           parents=common if parents is None else parents, **kw)
        p.set_defaults(func=handler)
        return p

    from titan.cli.serve import add_arguments as add_serve_arguments

    add_serve_arguments(
        command("up", cmd_up, "run a master, its dashboard and a local worker", parents=[]),
        command("master", cmd_master, "run only the master (API, dashboard, scheduler)",
                parents=[]),
        command("worker", cmd_worker, "run a worker that leases jobs from a master",
                parents=[_common(master=False)]))

    p = command("submit", cmd_submit, "submit a YAML pipeline")
    p.add_argument("pipeline", help="the pipeline file")
    p.add_argument("--wait", action="store_true",
                   help="wait until it finishes; exit 0 only if it COMPLETED")
    p.add_argument("--timeout", type=float, default=None, help="seconds to wait at most")
    p.add_argument("--agent-run-id", default=None, help="group this DAG into an agent run")
    p.add_argument("--allow-file", action="append", default=[], metavar="PATH",
                   help="a script outside the pipeline's folder its jobs may use (repeatable; "
                        "refused otherwise)")

    p = command("status", cmd_status, "show a job or a DAG (no REF: recent DAGs)")
    p.add_argument("ref", nargs="?", default=None, help="job or DAG reference")
    p.add_argument("--limit", type=int, default=20, help="DAGs listed without REF")

    p = command("logs", cmd_logs, "print a job's output")
    p.add_argument("job", help="job reference")
    p.add_argument("-f", "--follow", action="store_true", help="keep printing until it ends")
    p.add_argument("--attempt", type=int, default=None, help="which attempt (default latest)")

    p = command("store", cmd_store, "read and write TitanStore")
    store = p.add_subparsers(dest="store_command", metavar="ACTION", required=True)
    s = store.add_parser("get", help="print a value", parents=common)
    s.add_argument("key")
    s = store.add_parser("put", help="set a value ('-' reads stdin)", parents=common)
    s.add_argument("key")
    s.add_argument("value")
    s = store.add_parser("delete", help="delete a value or set", parents=common)
    s.add_argument("key")
    s = store.add_parser("keys", help="list keys", parents=common)
    s.add_argument("prefix", nargs="?", default="")

    command("cancel", cmd_cancel, "cancel a job or a whole DAG").add_argument("ref")
    p = command("stop", cmd_stop, "stop a service gracefully (SIGTERM, grace, SIGKILL): it "
                "ends COMPLETED, not CANCELLED")
    p.add_argument("ref", help="the service job")
    p.add_argument("--grace", type=float, default=None,
                   help="seconds between SIGTERM and SIGKILL (default: the service's "
                        "stop_grace)")
    p.add_argument("--wait", action="store_true", help="wait until it has stopped")
    command("retry", cmd_retry, "run a failed or cancelled job again").add_argument("ref")
    for verb, effect in (("approve", "its downstream jobs run"),
                         ("reject", "it fails and its downstream jobs are skipped")):
        p = command(verb, cmd_decide, f"{verb} an approval gate: {effect}")
        p.add_argument("gate", help="the gate: DAG/JOB.approval (or DAG#RUN/JOB), or its numeric id")
        p.add_argument("--comment", help="why (recorded with the decision)")
    p = command("dashboard", cmd_dashboard,
                "print the dashboard's sign-in link (it carries your token)")
    p.add_argument("page", nargs="?", default="/",
                   help="the page to land on, e.g. /agents or /dags (default: /)")
    p.add_argument("--open", action="store_true", help="also open it in a web browser")
    command("workers", cmd_workers, "list workers and queues")
    command("mcp", cmd_mcp, "serve Titan's MCP tools on stdin/stdout, for an MCP client that "
            "starts it (docs/mcp.md)")

    p = command("token", cmd_token, "manage API tokens (admin)")
    tokens = p.add_subparsers(dest="token_command", metavar="ACTION", required=True)
    t = tokens.add_parser("create", help="create a token and print it", parents=common)
    t.add_argument("--role", required=True, choices=ROLES)
    t.add_argument("--name", default=None)
    tokens.add_parser("list", help="list tokens", parents=common)
    t = tokens.add_parser("revoke", help="revoke a token", parents=common)
    t.add_argument("id")

    from titan.cli.schedules import add_arguments as add_schedule_arguments

    add_schedule_arguments(command("schedule", cmd_schedule, "cron schedules: a DAG run at "
                                   "each tick; create, list, show, pause, resume, delete, run"),
                           common)

    from titan.cli.runs import add_arguments as add_runs_arguments

    add_runs_arguments(command("runs", cmd_runs, "agent runs: list, show, export, prune, "
                               "budget"), common)

    from titan.cli.replay import add_arguments as add_replay_arguments

    add_replay_arguments(
        command("replay", cmd_replay, "re-execute a run with its recorded LLM, tool and "
                "ambient calls served; where it diverged (fork with --fork-at)"),
        command("determinism", cmd_determinism, "a run's determinism score and findings"))

    from titan.cli.evals import add_arguments as add_eval_arguments

    add_eval_arguments(command("eval", cmd_eval, "evaluations: seeded tasks against an agent, "
                               "simulated tools, judge verdicts"), common)

    from titan.cli.llm import add_arguments as add_llm_arguments

    add_llm_arguments(command("llm", cmd_llm, "install the local model; try a model from the "
                              "shell", parents=[]))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``titan`` with ``argv`` (default ``sys.argv[1:]``); the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, usage errors
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    handler: Handler | None = getattr(args, "func", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return handler(args)
    except TitanError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `titan logs JOB | head`: the reader left; silence the flush at interpreter exit.
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except OSError:
            pass
        return 0
