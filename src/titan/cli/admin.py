"""The ``titan admin`` commands: the master's upkeep. ``blobs gc``: delete the blobs nothing
names any more (scripts, files, payloads of pruned DAGs and runs)."""

from __future__ import annotations

import argparse
from typing import Any

from titan.formats import human_size


def add_arguments(p: argparse.ArgumentParser, common: list[argparse.ArgumentParser]) -> None:
    """The ``titan admin`` groups and their actions (``titan.cli`` wires the command in)."""
    groups = p.add_subparsers(dest="admin_command", metavar="GROUP", required=True)
    blobs = groups.add_parser(
        "blobs", help="the blob store: job scripts, files, artifacts, large recorded payloads",
        description="The blob store: job scripts, uploaded files, published artifacts, "
                    "recorded payloads too large for their row, runs' recorded code.")
    actions = blobs.add_subparsers(dest="blobs_command", metavar="ACTION", required=True)
    s = actions.add_parser(
        "gc", parents=common,
        help="delete the blobs nothing names, unused for a grace period (admin)",
        description="Delete the blobs nothing in the database names any more (a pruned "
                    "DAG's scripts, a deleted run's payloads) that were last stored or used "
                    "longer ago than the grace period. Blobs in use, and blobs stored or "
                    "uploaded within it, stay. The master does it hourly and after a prune "
                    "unless TITAN_BLOB_GC is off.")
    s.add_argument("--dry-run", action="store_true", help="list what would go, delete nothing")
    s.add_argument("--min-age", default=None,
                   help="the grace period: only blobs unused this long; hours or days, at "
                        "least 1h: 12h, 7d (default: the master's TITAN_BLOB_GC, else 1d)")


def run(args: argparse.Namespace, client: Any) -> int:
    from titan.cli.output import print_json

    body: dict[str, Any] = {"dry_run": args.dry_run}
    if args.min_age is not None:
        body["min_age"] = args.min_age
    reply = client.api("POST", "/blobs/gc", json=body)
    if getattr(args, "json", False):
        print_json(reply)
        return 0
    verb = "would delete" if args.dry_run else "deleted"
    print(f"{verb} {reply['blobs']} blob(s), {human_size(reply['bytes'])}, named by nothing and "
          f"unused for over {reply['min_age']}")
    if reply["kept"]:
        print(f"kept {reply['kept']} found unused that were used again while it ran")
    shown = reply["sha256"][:20] if args.dry_run else []
    for sha in shown:
        print(f"  {sha}")
    if len(shown) < reply["blobs"] and args.dry_run:
        print(f"  ... and {reply['blobs'] - len(shown)} more")
    return 0

