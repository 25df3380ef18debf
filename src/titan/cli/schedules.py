"""``titan schedule``: create, update, list, show, pause, resume, delete and run schedules.

Times are printed in each schedule's own time zone: that is the zone its cron expression
speaks, so ``0 6 * * *`` in Europe/Paris reads "06:00 CEST" whatever the terminal's zone.
"""

from __future__ import annotations

import argparse
import datetime as dt
import zoneinfo
from typing import Any

from titan.cli.options import aliased
from titan.cli.output import print_json, table
from titan.errors import ValidationFailed

CATCHUP = ("skip", "all", "latest")
OVERLAP = ("allow", "skip", "queue")


def add_arguments(p: argparse.ArgumentParser, common: list[argparse.ArgumentParser]) -> None:
    """The ``titan schedule`` actions and their options (``titan.cli`` wires the command in)."""
    actions = p.add_subparsers(dest="schedule_command", metavar="ACTION", required=True)
    s = actions.add_parser(
        "create", parents=common,
        help="schedule a YAML pipeline: a run at each tick (options override its 'schedule:')")
    s.add_argument("name", help="the schedule's name")
    s.add_argument("pipeline", help="the pipeline file (its DAG is what each tick runs)")
    s.add_argument("--cron", default=None,
                   help="five fields (minute hour day month weekday), six with seconds "
                        "first, or @hourly/@daily/@weekly/@monthly/@yearly (default: the "
                        "pipeline's)")
    s.add_argument("--tz", default=None, metavar="ZONE",
                   help="the IANA time zone the expression speaks (default: the pipeline's, else "
                        "UTC)")
    s.add_argument("--catchup", choices=CATCHUP, default=None,
                   help="ticks missed while no master ran: skip them (default), run all, or "
                        "only the latest")
    s.add_argument("--overlap", choices=OVERLAP, default=None,
                   help="a tick while the last run still runs: allow another (default), skip "
                        "it, or queue it until that run ends")
    s.add_argument("--paused", action="store_true", help="create it paused")
    s.add_argument("--agent-run-id", default=None, metavar="TEMPLATE",
                   help="each run's agent run id, holding {tick} (the tick in ISO 8601 UTC): "
                        "nightly-{tick} makes nightly-20240501T060000Z")
    s.add_argument("--allow-file", action="append", default=[], metavar="PATH",
                   help="a script outside the pipeline's folder its jobs may use (repeatable)")
    s = actions.add_parser(
        "update", parents=common,
        help="change a schedule's cron, zone or policies, or give it a pipeline's DAG (what "
             "is not given stays; the next tick follows the new rule)")
    s.add_argument("name", help="the schedule's name")
    s.add_argument("pipeline", nargs="?", default=None,
                   help="a pipeline file: its DAG (and its 'schedule:' block, if any) replaces "
                        "the schedule's")
    s.add_argument("--cron", default=None, help="a new cron expression")
    s.add_argument("--tz", default=None, metavar="ZONE", help="a new IANA time zone")
    s.add_argument("--catchup", choices=CATCHUP, default=None, help="a new catch-up policy")
    s.add_argument("--overlap", choices=OVERLAP, default=None,
                   help="a new overlap policy (leaving 'queue' drops a queued tick)")
    s.add_argument("--agent-run-id", default=None, metavar="TEMPLATE",
                   help="a new agent run id template, holding {tick}")
    s.add_argument("--allow-file", action="append", default=[], metavar="PATH",
                   help="a script outside the pipeline's folder its jobs may use (repeatable)")
    aliased(actions, "list", ["ls"], "schedule_command",
            help="list schedules and their next ticks", parents=common)
    s = actions.add_parser("show", help="a schedule: its next ticks and latest runs",
                           parents=common)
    s.add_argument("name")
    for verb, what in (("pause", "stop a schedule's ticks from firing"),
                       ("resume", "fire again from the next tick"),
                       ("delete", "delete a schedule (the runs it started stay)"),
                       ("run", "start a run of a schedule's DAG now")):
        s = aliased(actions, verb, ["rm"] if verb == "delete" else [], "schedule_command",
                    help=what, parents=common)
        s.add_argument("name")
        if verb == "delete":
            s.add_argument("-y", "--yes", action="store_true",
                           help="do not ask for confirmation (asked on a terminal only)")


def run(args: argparse.Namespace, client: Any) -> int:
    with client:
        command = args.schedule_command
        if command == "create":
            found = client.schedule_yaml(args.pipeline, args.name, cron=args.cron,
                                         timezone=args.tz, catchup=args.catchup,
                                         overlap=args.overlap, paused=args.paused,
                                         allow_files=args.allow_file,
                                         agent_run_id=args.agent_run_id)
            return _print(args, found, show)
        if command == "update":
            rule = {"cron": args.cron, "timezone": args.tz, "catchup": args.catchup,
                    "overlap": args.overlap, "agent_run_id": args.agent_run_id}
            if args.pipeline is None and all(v is None for v in rule.values()):
                # Said in the CLI's words: the SDK's names (timezone, jobs, dag_name) are
                # not options of this command.
                raise ValidationFailed("schedule update needs something to change: --cron, "
                                       "--tz, --catchup, --overlap, --agent-run-id or a "
                                       "pipeline file")
            if args.pipeline is not None:
                found = client.update_schedule_yaml(args.name, args.pipeline,
                                                    allow_files=args.allow_file, **rule)
            else:
                found = client.update_schedule(args.name, **rule)
            return _print(args, found, show)
        if command == "list":
            return _print(args, client.list_schedules(), _list)
        if command == "show":
            return _print(args, client.get_schedule(args.name), show)
        if command == "delete":
            import sys

            from titan.cli.output import cell, confirm

            if not args.yes and sys.stdin.isatty():
                client.get_schedule(args.name)  # no such schedule: said before asking
            if not confirm(f"delete schedule {cell(args.name)} (the runs it started stay)",
                           args.yes):
                return 1
            client.delete_schedule(args.name)
            return _print(args, {"name": args.name, "deleted": True},
                          lambda d: print(f"deleted schedule {d['name']}"))
        if command == "run":
            dag = client.run_schedule_now(args.name)
            return _print(args, dag, lambda d: print(d.get("ref")))
        action = client.pause_schedule if command == "pause" else client.resume_schedule
        return _print(args, action(args.name), show)


def _print(args: argparse.Namespace, value: Any, human: Any) -> int:
    if args.json:
        print_json(value)
    else:
        human(value)
    return 0


def zoned(ts: Any, timezone: str) -> str:
    """A time in the schedule's zone: ``2024-05-02 06:00:00 CEST``."""
    if not isinstance(ts, int | float):
        return "-"
    try:
        tz: dt.tzinfo = dt.UTC if timezone == "UTC" else zoneinfo.ZoneInfo(timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        tz = dt.UTC
    return dt.datetime.fromtimestamp(ts, tz).strftime("%Y-%m-%d %H:%M:%S %Z")


def _last_run(s: dict[str, Any]) -> str:
    """The run the schedule started last: a tick skipped since (overlap, catch-up) is no
    run, and showed as the LAST RUN column's "skipped" (a QA pass); nor is it only among the
    latest fires listed (a long run's skipped ticks pushed it out: "-" while it ran)."""
    run = (s.get("last_run") or {}).get("dag") or next(
        (f["dag"] for f in s.get("fires") or [] if f.get("dag")), None)
    return f"DAG-{run['ref']} {run['status']}" if run else "-"


def _next(s: dict[str, Any]) -> str:
    """The next tick, never one gone by (``next_fire_at`` is one while the schedule is
    behind), and since when a schedule that is behind is due."""
    nxt = (s.get("next_fires") or [None])[0]
    due = s.get("due_since")
    return zoned(nxt, s["timezone"]) + (
        f" (due since {zoned(due, s['timezone'])})" if due is not None else "")


def _list(schedules: list[dict[str, Any]]) -> None:
    table(["SCHEDULE", "CRON", "ZONE", "STATE", "NEXT", "LAST RUN"],
          [[s["name"], s["cron"], s["timezone"], "paused" if s["paused"] else "active",
            _next(s), _last_run(s)] for s in schedules])


def show(s: dict[str, Any]) -> None:
    tz = s["timezone"]
    print(f"schedule {s['name']}  {'paused' if s['paused'] else 'active'}  "
          f"DAG-{s['dag_name']} ({s['job_count']} job{'s' if s['job_count'] != 1 else ''})")
    print(f"cron:        {s['cron']} in {tz} ({s.get('description')})")
    print(f"policies:    catch-up {s['catchup']}, overlap {s['overlap']}")
    if s.get("agent_run_id"):
        print(f"agent runs:  {s['agent_run_id']}")
    print(f"created:     {zoned(s.get('created_at'), tz)} by {s.get('created_by') or '-'}")
    nxt = s.get("next_fires") or []
    print("next ticks:  " + (", ".join(zoned(t, tz) for t in nxt) if nxt else "none"))
    if s.get("due_since") is not None:
        print(f"behind:      due since {zoned(s['due_since'], tz)} (ticks not yet dealt with)")
    print(f"last run:    {_last_run(s)}")
    fires = s.get("fires") or []
    if fires:
        print()
        # Why a tick was skipped comes last: a long reason in OUTCOME pushed the columns
        # after it out of line (a table pads a column to 40 characters at most).
        table(["TICK", "OUTCOME", "RUN", "STATUS", "WHY"],
              [["by hand " + zoned(f["fired_at"], tz) if f["manual"] else zoned(f["tick"], tz),
                f["outcome"], f"DAG-{f['dag']['ref']}" if f.get("dag") else "-",
                f["dag"]["status"] if f.get("dag") else "-", f.get("error") or ""]
               for f in fires])
