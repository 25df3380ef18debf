"""The ``titan dags`` commands: prune (old DAG runs with their jobs and logs)."""

from __future__ import annotations

import argparse
from typing import Any


def add_arguments(p: argparse.ArgumentParser, common: list[argparse.ArgumentParser]) -> None:
    """The ``titan dags`` actions and their options (``titan.cli`` wires the command in)."""
    dags = p.add_subparsers(dest="dags_command", metavar="ACTION", required=True)
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
    from titan.cli.output import confirm_prune, print_json
    from titan.formats import iso, shown

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
