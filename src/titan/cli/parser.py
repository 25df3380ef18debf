"""The ``titan`` command: its argument parser and its entry point, :func:`main`.

Each subcommand's handler is in :mod:`titan.cli.commands`, which hands the larger groups to
their own modules (imported only when their command runs).

Exit codes: 0 success, 1 a Titan error (printed as ``error: <message>``, no traceback), 2 a
usage error, 130 interrupted.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import warnings
from collections.abc import Sequence
from typing import Any

from titan.cli.commands import (
    Handler,
    cmd_admin,
    cmd_cancel,
    cmd_dags,
    cmd_dashboard,
    cmd_decide,
    cmd_determinism,
    cmd_down,
    cmd_eval,
    cmd_files,
    cmd_llm,
    cmd_logs,
    cmd_master,
    cmd_mcp,
    cmd_replay,
    cmd_retry,
    cmd_runs,
    cmd_schedule,
    cmd_status,
    cmd_stop,
    cmd_store,
    cmd_submit,
    cmd_token,
    cmd_up,
    cmd_worker,
    cmd_workers,
)
from titan.cli.options import seconds, whole
from titan.cli.output import for_terminal
from titan.errors import ConfigError, TitanError, Unauthorized
from titan.version import __version__

#: What a bare REF that names a job and a DAG means (TitanClient._which).
BOTH = ("a number that is a job's id and a DAG's, or a name that is a DAG's and another "
        "DAG's job's, is refused, each one's own reference said; a name that is a DAG's and "
        "one of its own jobs' is the job: DAG-NAME is the DAG")
#: The exit status of a command interrupted (Ctrl-C), as a shell gives it.
INTERRUPTED = 130


def _common(*, master: bool = True, json: bool = True) -> argparse.ArgumentParser:
    """Options accepted before or after the command (``titan --json status X`` or
    ``titan status X --json``). SUPPRESS keeps a subcommand from resetting what the main
    parser already read. ``titan worker`` defines its own ``--master`` (``cli/serve.py``),
    so it takes these without it, and prints no result to give as JSON (``--json`` was
    accepted and ignored)."""
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("connection")
    if master:
        group.add_argument("--master", metavar="URL", action="append", default=argparse.SUPPRESS,
                           help="the master's URL; repeat it, or separate URLs with commas, to "
                                "name a leader and its standbys (instead of --host/--port; "
                                "default: discovered)")
    group.add_argument("--host", default=argparse.SUPPRESS,
                       help="master host, HOST:PORT or URL (default: discovered, else 127.0.0.1)")
    group.add_argument("--port", type=int, default=argparse.SUPPRESS,
                       help="master port (default: discovered, else 9090)")
    group.add_argument("--token", default=argparse.SUPPRESS,
                       help="API token (default: TITAN_TOKEN, else discovered)")
    if json:
        group.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                           help="print JSON instead of text")
    return common


class _Parser(argparse.ArgumentParser):
    """``titan``'s parsers: a choice mistyped (a command, an action, a --role) is answered
    with the nearest one, ``invalid choice: 'stauts'; did you mean 'status'? (choose from
    ...)``: the 25 commands alone made a typo hard to spot (a CLI QA pass)."""

    def _check_value(self, action: argparse.Action, value: Any) -> None:
        try:
            super()._check_value(action, value)
        except argparse.ArgumentError as exc:
            import difflib

            known = [str(c) for c in action.choices or ()]
            near = difflib.get_close_matches(str(value), known, n=1)
            if not near or exc.message is None or "(choose from" not in exc.message:
                raise
            head, _, rest = exc.message.partition(" (choose from")
            raise argparse.ArgumentError(
                action, f"{head}; did you mean {near[0]!r}? (choose from{rest}") from None


class _CommandParser(_Parser):
    """A command's parser: an argument it does not know is its error, said with its usage
    (argparse hands unknown arguments up to ``titan``'s parser, whose usage names no
    command: ``titan logs --folow x`` showed ``usage: titan [-h] ... COMMAND``)."""

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:
        parsed, extras = super().parse_known_args(args, namespace)
        if extras:
            self.error(f"unrecognized arguments: {' '.join(extras)}")
        return parsed, extras


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``titan`` (also used to generate the CLI reference)."""
    parser = _Parser(
        prog="titan",
        description="Run DAGs of Python jobs and agent loops; record what every agent did.",
    )
    parser.add_argument("--version", action="version", version=f"titan {__version__}")
    parser.add_argument("--master", action="append", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--host", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--token", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--json", action="store_true", default=False, help=argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_CommandParser)
    common: list[Any] = [_common()]

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
                parents=[_common(master=False, json=False)]))
    from titan.cli.down import add_arguments as add_down_arguments

    add_down_arguments(command(
        "down", cmd_down, "stop the `titan up` running on a data dir (in the background, "
        "another terminal), as Ctrl-C there would: it drains, then exits", parents=[]))

    p = command("submit", cmd_submit,
                "submit a YAML pipeline, or one script (.py, .sh) or program as a one-job DAG")
    p.add_argument("pipeline", help="the pipeline file, or a script (.py, .sh) or a program "
                                    "(a file beginning with #!, or compiled)")
    p.add_argument("script_args", nargs="*", metavar="ARG",
                   help="a script's arguments (after --, when one starts with -); options "
                        "may come before or after the script")
    # Options after the script (`titan submit train.py --wait -- 3`) are parsed as options:
    # see _submit_args.
    parser.submit_parser = p  # type: ignore[attr-defined]
    p.add_argument("--wait", action="store_true",
                   help="wait until it finishes, then name each job that did not succeed "
                        "and why; exit 0 only if it COMPLETED, else 1. Its reference is "
                        "printed first (with --json, on stderr); Ctrl-C leaves it running, "
                        "says so and exits 130")
    p.add_argument("--timeout", type=float, default=None,
                   help="seconds to wait at most; past them exit 124 (the DAG runs on)")
    p.add_argument("--agent-run-id", default=None, help="group this DAG into an agent run")
    p.add_argument("--allow-file", action="append", default=[], metavar="PATH",
                   help="a script outside the pipeline's folder its jobs may use (repeatable; "
                        "refused otherwise)")
    # A script's job, as a pipeline's job fields would set it (a pipeline sets them per job).
    job = p.add_argument_group("a script's job (a pipeline's jobs set these in the YAML)")
    job.add_argument("--name", default=None, metavar="JOB_ID",
                     help="the job id and DAG name (default: the script's name)")
    job.add_argument("--requirement", default=None, metavar="CAPABILITY",
                     help="the capability a worker must advertise (GPU...; default GENERAL)")
    job.add_argument("--retries", type=whole(0), default=None,
                     help="attempts after a failed one (default: the master's)")
    job.add_argument("--job-timeout", type=seconds(float("inf")), default=None,
                     metavar="SECONDS",
                     help="seconds the job may run, then it ends TIMED_OUT (default: no time "
                          "limit; --timeout bounds --wait)")
    job.add_argument("--priority", type=int, default=None, help="higher runs first (default 1)")
    job.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                     help="an environment variable of the job (repeatable)")
    job.add_argument("--runner", choices=("auto", "fork", "subprocess"), default=None,
                     help="how a .py runs: a fork of a warm interpreter (auto: when it can) "
                          "or a fresh one")

    p = command("status", cmd_status, "show a job or a DAG (no REF: which Titan answers, and its recent DAGs)")
    p.add_argument("ref", nargs="?", default=None, help=f"job or DAG reference ({BOTH})")
    p.add_argument("--limit", type=whole(1, 1000), default=20,
                   help="DAGs listed without REF (1 to 1000, default 20)")

    p = command("logs", cmd_logs, "print a job's output")
    p.add_argument("job", help="job reference")
    p.add_argument("-f", "--follow", action="store_true",
                   help="keep printing until it ends; then exit 0 only if it COMPLETED (or, "
                        "a gate, was APPROVED), else 1 (as submit --wait), with how it ended "
                        "on stderr (FAILED: exit code 3; a gate's decision, by whom, the "
                        "comment)")
    p.add_argument("--attempt", type=whole(1), default=None,
                   help="which attempt, from 1 (default latest)")

    from titan.cli.store import add_arguments as add_store_arguments

    add_store_arguments(command("store", cmd_store, "read and write TitanStore"), common)

    command("cancel", cmd_cancel, "cancel a job or a whole DAG").add_argument(
        "ref", help=f"job or DAG reference ({BOTH})")
    p = command("stop", cmd_stop, "stop a service gracefully (SIGTERM, grace, SIGKILL): it "
                "ends COMPLETED, not CANCELLED")
    p.add_argument("ref", help="the service job")
    p.add_argument("--grace", type=seconds(3600, why=" (for a kill at once, cancel)"),
                   default=None,
                   help="seconds between SIGTERM and SIGKILL, more than 0 and at most 3600 "
                        "(default: the service's stop_grace)")
    p.add_argument("--wait", action="store_true", help="wait until it has stopped")
    command("retry", cmd_retry, "run a failed or cancelled job again, or a finished DAG's "
            "unsuccessful jobs").add_argument("ref", help=f"job or DAG reference ({BOTH})")
    for verb, effect in (("approve", "its downstream jobs run"),
                         ("reject", "it fails and its downstream jobs are skipped")):
        p = command(verb, cmd_decide, f"{verb} an approval gate: {effect}")
        p.add_argument("gate", help="the gate: DAG/JOB.approval (or DAG#RUN/JOB), or its numeric id")
        p.add_argument("--comment", help="why (recorded with the decision; at most 2,000 characters)")
    p = command("dashboard", cmd_dashboard,
                "print the dashboard's sign-in link (it carries your token)")
    p.add_argument("page", nargs="?", default="/",
                   help="the page to land on, e.g. /agents or /dags (default: /)")
    p.add_argument("--open", action="store_true",
                   help="also open it in a web browser, with a one-time code in place of the "
                        "token (the browser's command line is other local users' to read)")
    command("workers", cmd_workers, "list workers and queues")
    command("mcp", cmd_mcp, "serve Titan's MCP tools on stdin/stdout, for an MCP client that "
            "starts it (docs/mcp.md)")

    from titan.cli.tokens import add_arguments as add_token_arguments

    add_token_arguments(command("token", cmd_token, "manage API tokens (admin)"), common)

    from titan.cli.schedules import add_arguments as add_schedule_arguments

    add_schedule_arguments(command("schedule", cmd_schedule, "cron schedules: a DAG run at "
                                   "each tick; create, list, show, pause, resume, delete, run"),
                           common)

    from titan.cli.dags import add_arguments as add_dags_arguments

    add_dags_arguments(command("dags", cmd_dags, "DAG runs: list them (by status, name, agent "
                               "run); prune old ones with their jobs and logs"), common)

    from titan.cli.admin import add_arguments as add_admin_arguments

    add_admin_arguments(command("admin", cmd_admin, "the master's upkeep (admin): blobs gc "
                                "deletes blobs nothing names any more", parents=[]), common)

    from titan.cli.files import add_arguments as add_files_arguments

    add_files_arguments(command("files", cmd_files, "files: upload a file or a project folder "
                                "(archive jobs), list, get (or download), rm"), common)

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


def _submit_args(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """``titan submit``'s arguments, options before or after the script: ``titan submit
    train.py --wait -- 3`` waits and gives the script "3" (a plain parse took the options
    after the script for its arguments and refused them). After ``--`` everything is the
    script's, options included."""
    submit: argparse.ArgumentParser = parser.submit_parser  # type: ignore[attr-defined]
    head, tail = (argv[:argv.index("--")], argv[argv.index("--") + 1:]) if "--" in argv \
        else (argv, [])
    takes_value = {opt: action.nargs != 0 for action in submit._actions
                   for opt in action.option_strings}
    options: list[str] = []
    positional: list[str] = []
    tokens = iter(head)
    for token in tokens:
        name = token.split("=", 1)[0]
        if name not in takes_value:
            positional.append(token)  # the script, its arguments (an unknown -x is refused)
            continue
        options.append(token)
        if takes_value[name] and "=" not in token:
            value = next(tokens, None)  # none left: argparse says the value is missing
            if value is not None:
                options.append(value)
    script_options = [t for t in positional[1:] if t.startswith("-") and not _number(t)]
    if positional and not positional[0].startswith("-") and script_options:
        # argparse said only "unrecognized arguments: --epochs 3", of the script's own options.
        line = shlex.join(["titan", "submit", *options, positional[0], "--", *positional[1:],
                           *tail])
        submit.error(f"unrecognized arguments: {' '.join(script_options)} (a script's options "
                     f"go after --: {line})")
    if not positional and not {"-h", "--help"} & set(options):
        # argparse named the optional ARG as required too ("pipeline, ARG").
        submit.error("the following argument is required: pipeline (a pipeline YAML file "
                     "or a script)")
    # The top-level defaults first (--json, --host...), as a parse through `titan` sets them.
    args = submit.parse_args([*options, *positional],
                             namespace=parser.parse_args([], argparse.Namespace(command="submit")))
    args.script_args = [*args.script_args, *tail]
    return args


def _number(token: str) -> bool:
    """Whether ``token`` is a number (``-5``, ``-0.5``): argparse takes it as an argument."""
    try:
        float(token)
    except ValueError:
        return False
    return True


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``titan`` with ``argv`` (default ``sys.argv[1:]``); the exit code."""
    try:
        return _main(argv)
    except KeyboardInterrupt:  # while the parser is built or reads the command line
        return INTERRUPTED


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    for i, arg in enumerate(argv, 1):
        # Bytes that are not UTF-8 reach Python as lone surrogates, which no request can
        # carry: refused here, in one line, rather than as a traceback from the JSON encoder.
        try:
            arg.encode("utf-8")
        except UnicodeEncodeError:
            raw = arg.encode("utf-8", "surrogateescape")
            print(f"error: argument {i} is not UTF-8 text ({raw!r}): names, paths and "
                  "arguments Titan sends must be", file=sys.stderr)
            return 2
    try:
        args = _submit_args(parser, argv[1:]) if argv[:1] == ["submit"] \
            else parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, usage errors
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    handler: Handler | None = getattr(args, "func", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return 2
    # The library's warnings (a .titan it ignored, say) as one line, as the errors below.
    warnings.showwarning = lambda message, *_a, **_k: print(
        f"warning: {for_terminal(str(message), sys.stderr.isatty())}", file=sys.stderr)
    try:
        return handler(args)
    except TitanError as exc:
        # The message may quote what a job wrote (its error): no control reaches a terminal.
        said = str(exc)
        if isinstance(exc, Unauthorized) and exc.no_token_for:
            # The client's advice names its own argument (token=); here, the CLI's.
            said = (f"{exc.refused} — no token was found for {exc.no_token_for}: set "
                    "TITAN_TOKEN (or pass --token), or run `titan up` on this machine (it "
                    "records one)")
        from titan import envfile

        came = envfile.origin_of(said) if isinstance(exc, ConfigError) else None
        if came is not None:  # a setting the user never typed: say where it came from
            said += f" (set in {came})"
        print(f"error: {for_terminal(said, sys.stderr.isatty())}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return INTERRUPTED
    except BrokenPipeError:
        # `titan logs JOB | head`: the reader left; silence the flush at interpreter exit.
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except OSError:
            pass
        return 0
    except OSError as exc:
        # A path the user gave that cannot be written or read (-o /etc/hostname/x, a full
        # disk): one line, as every other error, not a traceback.
        where = f": {exc.filename}" if exc.filename else ""
        print(f"error: {for_terminal((exc.strerror or str(exc)) + where, sys.stderr.isatty())}",
              file=sys.stderr)
        return 1
