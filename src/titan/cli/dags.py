"""The ``titan dags`` commands: list (DAG runs, filtered) and prune (old DAG runs with their
jobs and logs)."""

from __future__ import annotations

import argparse
from typing import Any

from titan.cli.options import aliased, whole
from titan.status import DAG_STATUSES


def add_arguments(p: argparse.ArgumentParser, common: list[argparse.ArgumentParser]) -> None:
    """The ``titan dags`` actions and their options (``titan.cli`` wires the command in)."""
    dags = p.add_subparsers(dest="dags_command", metavar="ACTION", required=True)
    s = aliased(dags, "list", ["ls"], "dags_command", parents=common,
                help="list DAG runs, newest first, filtered by status, name or agent run",
                description="List DAG runs, newest first: each one's status, its jobs by state, "
                            "its agent run and when it was submitted.")
    s.add_argument("--status", type=str.upper, choices=DAG_STATUSES, default=None,
                   help="only runs in this status")
    s.add_argument("--name", default=None, help="only runs of the DAG of this name")
    s.add_argument("--agent-run", default=None, metavar="RUN",
                   help="only the stages of this agent run")
    s.add_argument("--limit", type=whole(1, 1000), default=50,
                   help="at most this many (1 to 1000, default 50)")
    s.add_argument("--offset", type=whole(0, 10**9), default=0,
                   help="skip this many newest first (paging)")
    s = dags.add_parser(
        "prune", parents=common,
        help="delete finished DAG runs older than a window, with their jobs, attempts and logs "
             "(admin)",
        description="Delete finished DAG runs older than a window, with their jobs, attempts "
                    "and log lines. Kept whatever their age: the latest run of each DAG name, "
                    "the stages of agent runs (run retention decides for those), and the "
                    "files their jobs published that are the newest of their name or store "
                    "key (older versions go with the runs). The master does it hourly when "
                    "TITAN_DAG_RETENTION is set. Asks first on a terminal, unless --yes.")
    s.add_argument("--older-than", required=True,
                   help="finished more than this long ago; hours or days, at least 1h: 30d, 12h")
    s.add_argument("--dry-run", action="store_true", help="list what would go, delete nothing")
    s.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")


def run(args: argparse.Namespace, client: Any) -> int:
    from titan.cli.output import confirm_prune, print_json, table_of_dags
    from titan.formats import iso, shown

    if args.dags_command == "list":
        dags = client.list_dags(status=args.status, name=args.name,
                                agent_run_id=args.agent_run, limit=args.limit,
                                offset=args.offset)
        if getattr(args, "json", False):
            print_json(dags)
        elif not dags:
            print("no DAG runs" + (" match" if args.status or args.name or args.agent_run
                                   else " yet") + (" past that offset" if args.offset else ""))
        else:
            table_of_dags(dags)
        return 0
    if not confirm_prune(client, args, "dags"):
        return 1
    reply = client.api("POST", "/dags/prune",
                       json={"older_than": args.older_than, "dry_run": args.dry_run})
    if getattr(args, "json", False):
        print_json(reply)
        return 0
    verb = "would delete" if args.dry_run else "deleted"
    print(f"{verb} {reply['pruned']} DAG run(s) finished more than {args.older_than} ago, "
          "with their jobs and logs")
    for dag in reply.get("dags", [])[:20] if args.dry_run else []:
        print(f"  {shown(dag['ref'])}  (finished {iso(dag['finished_at'])}, id {dag['id']})")
    if args.dry_run and reply["pruned"] > 20:
        print(f"  ... and {reply['pruned'] - 20} more")
    return 0
