"""The ``titan runs`` commands: list, show, export, prune, budget, archive, unarchive,
retention, verify (in :mod:`titan.cli.verify`)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from titan.cli import verify
from titan.cli.export_download import EXPORT_FORMATS, download, export_format
from titan.cli.options import aliased, whole
from titan.cli.output import money, run_money
from titan.cli.verify import add_arguments as add_verify_arguments
from titan.errors import Conflict, NotFound, TitanError, ValidationFailed
from titan.retention import RETENTION_CLASSES
from titan.url_paths import quote_ref, quote_run

_FILTERS = ("status", "min_cost", "window", "agent", "q", "archived", "sort")


def add_arguments(p: argparse.ArgumentParser, common: list[argparse.ArgumentParser]) -> None:
    """The ``titan runs`` actions and their options (``titan.cli`` wires the command in)."""
    runs = p.add_subparsers(dest="runs_command", metavar="ACTION", required=True)

    def filters(s: argparse.ArgumentParser) -> None:
        s.add_argument("--status", default=None,
                       help="running, completed, failed, cancelled (comma-separated, any "
                            "case: FAILED is failed)")
        s.add_argument("--min-cost", type=float, default=None, help="USD spent at least")
        s.add_argument("--window", default=None,
                       help="started within: 24h, 7d, 30d or all (default all; '24 hours', "
                            "'7 days', 'all time' too)")
        # Seed 004 says "Filter by agent_id": --agent-id is the same option.
        s.add_argument("--agent", "--agent-id", dest="agent", default=None,
                       help="only this agent id")
        s.add_argument("--q", default=None, help="run or agent id contains this")
        s.add_argument("--archived", choices=("false", "true", "all"), default=None,
                       help="archived runs: left out (false, the default), only them, or all")
        s.add_argument("--sort", default=None,
                       help="recent (newest first, the default; or recency), oldest, cost "
                            "(highest first) or duration (longest first)")

    s = aliased(runs, "list", ["ls"], "runs_command",
                help="list runs, most recent first (or --sort)", parents=common)
    filters(s)
    s.add_argument("--limit", type=whole(1, 1000), default=20,
                   help="runs listed (1 to 1000, default 20)")
    s = runs.add_parser("show", help="a run: totals, stages, cost by stage and actor, "
                        "its latest actions", parents=common)
    s.add_argument("run", help="the run id")
    # The master lists at most 1,000 actions a page: more was its 400 about 'limit'.
    s.add_argument("--actions", type=whole(0, 1000), default=20,
                   help="latest actions listed (0 to 1000, default 20)")
    s = runs.add_parser("export", help="export runs and all their actions as CSV, JSON or "
                        "JSONL", parents=common)
    s.add_argument("runs", nargs="*", metavar="RUN",
                   help="only these runs, archived or not (default: every run the filters "
                        "keep)")
    filters(s)
    s.add_argument("--older-than", default=None,
                   help="only runs started more than this long ago: hours or days, at least "
                        "1h (90d, 12h), as prune reads it")
    s.add_argument("--format", type=str.lower, choices=EXPORT_FORMATS, default=None,
                   help="csv, json or jsonl (any case); default: as the -o file is named "
                        "(runs.csv, runs.json), else jsonl")
    # Seed 004: an export "includes runs and all actions". --actions, once needed, is kept so
    # that scripts written for it go on working.
    s.add_argument("--actions", action=argparse.BooleanOptionalAction, default=True,
                   help="include every action (the default; CSV: one row per action, "
                        "carrying its run's columns); --no-actions: the runs alone")
    s.add_argument("-o", "--output", default="-", help="file to write (default: stdout)")
    s = runs.add_parser("prune", help="delete finished runs older than a window",
                        parents=common)
    s.add_argument("--older-than", required=True, help="hours or days, at least 1h: 90d, 12h")
    s.add_argument("--export-to", default=None, metavar="FILE",
                   help="first save the runs it will delete (no others) with their actions "
                        "(JSONL) to FILE, a new file (an existing one, or -, is refused, never "
                        "replaced); then delete each only as saved (one that recorded an "
                        "action since is kept, and named)")
    s.add_argument("--dry-run", action="store_true", help="list what would go, delete nothing")
    s.add_argument("-y", "--yes", action="store_true",
                   help="do not ask for confirmation (asked on a terminal only)")
    s = runs.add_parser("budget", help="set the USD budget of a run or an agent (raising it "
                        "releases a blocked run)", parents=common)
    s.add_argument("run", nargs="?", default=None, help="the run id (or use --agent)")
    s.add_argument("usd", help="the budget in USD, or 'none' to remove it")
    s.add_argument("--agent", default=None, help="set the default budget of this agent's runs")
    for verb, what in (("archive", "hide runs from the registry, keeping them whole"),
                       ("unarchive", "bring archived runs back to the registry")):
        s = runs.add_parser(verb, help=f"{what} (operator)", parents=common)
        s.add_argument("run", nargs="+", help="run ids, each done or refused on its own "
                                             "(exit 1 when any was refused)")
    add_verify_arguments(runs, common)
    s = runs.add_parser("retention", help="set a run's retention class (operator; lifting a "
                        "legal hold: admin)", parents=common)
    s.add_argument("run", help="the run id")
    s.add_argument("retention_class", metavar="CLASS", choices=tuple(RETENTION_CLASSES),
                   help=", ".join(RETENTION_CLASSES))


def run(args: argparse.Namespace, client: Any) -> int:
    handler = {"list": _list, "show": _show, "export": _export, "prune": _prune,
               "budget": _budget, "archive": _archive, "unarchive": _archive,
               "retention": _retention, "verify": verify.run}[args.runs_command]
    return handler(args, client)


def _params(args: argparse.Namespace) -> dict[str, Any]:
    return {k: getattr(args, k) for k in _FILTERS if getattr(args, k, None) is not None}



def _rate(v: float | None) -> str:
    return "-" if v is None else f"{v:.0%}"


def _list(args: argparse.Namespace, client: Any) -> int:
    from titan.cli.output import print_json, table, when

    reply = client.api("GET", "/runs", params={**_params(args), "limit": args.limit})
    if getattr(args, "json", False):
        print_json(reply)
        return 0
    table(["RUN", "AGENT", "STATUS", "ACTIONS", "COST", "SUCCESS", "DURATION", "STARTED"],
           [[r["id"], r["agent_id"] or "-", r["status"] + (" (over budget)" if r["blocked"]
                                                           else ""),
             r["action_count"], run_money(r), _rate(r["success_rate"]),
             f"{r['duration_s']:.1f}s", when(r["started_at"])
             + (" (archived)" if r.get("archived") else "")] for r in reply["runs"]])
    if reply["total"] > len(reply["runs"]):
        print(f"({len(reply['runs'])} of {reply['total']}; --limit to see more)")
    return 0


def _unpriced(run: dict[str, Any]) -> str:
    n = run.get("unpriced_calls") or 0
    return "" if not n else (f" ({n} LLM call{'' if n == 1 else 's'} on a model with no known "
                             "price, not counted: titan.llm.register_price or TITAN_LLM_PRICES)")


def _show(args: argparse.Namespace, client: Any) -> int:
    from titan.cli.output import print_json, say, table, when

    run_ = client.api("GET", f"/runs/{quote_run(args.run)}")
    total = run_["action_count"]
    offset = max(0, total - args.actions)
    acts = client.api("GET", f"/runs/{quote_run(args.run)}/actions",
                      params={"offset": offset, "limit": args.actions, "preview": 80}
                      ) if args.actions else {"actions": []}
    if getattr(args, "json", False):
        print_json({"run": run_, "actions": acts["actions"]})
        return 0
    budget = money(run_["budget_usd"]) + (" — BLOCKED, over budget" if run_["blocked"] else "")
    for label, value in (
            ("run", run_["id"]), ("agent", f"{run_['agent_id'] or '-'} "
                                           f"{run_['agent_version'] or ''}".rstrip()),
            ("status", run_["status"] + (f" ({run_['error']})" if run_["error"] else "")),
            ("started", when(run_["started_at"])), ("duration", f"{run_['duration_s']:.1f}s"),
            ("actions", f"{total} ({_rate(run_['success_rate'])} successful)"),
            ("cost", run_money(run_) + _unpriced(run_)), ("budget", budget),
            ("code version", run_["code_version"] or "-"),
            ("started by", run_.get("started_by_label") or "-"),
            ("retention", run_.get("retention_class") or "standard"),
            ("PII redacted", ", ".join(f"{k} x{n}" for k, n in sorted(
                (run_.get("pii") or {}).items())) or "none found"),
            ("archived", when(run_["archived_at"]) if run_.get("archived_at") else "no")):
        say(f"{label:>13}  {value}")
    if run_["stages"]:
        say("       stages  " + " → ".join(f"{s['label']} [{s['status']}]"
                                            for s in run_["stages"]))
    if run_["by_actor"]:
        print()
        table(["ACTOR", "ACTIONS", "COST", "TIME"],
               [[a["actor"], a["actions"], run_money(a),
                 f"{a['duration_ns'] / 1e9:.2f}s"] for a in run_["by_actor"]])
    if acts["actions"]:
        print()
        table(["SEQ", "ACTOR", "NAME", "OUTCOME", "COST", "MS", "INPUTS"],
               [[a["seq"], a["actor"], a["name"], a["outcome"], money(a["cost_usd"]),
                 f"{a['duration_ms']:.1f}", _short(a["inputs"])] for a in acts["actions"]])
    return 0


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 60 else text[:57] + "..."


def _export(args: argparse.Namespace, client: Any) -> int:
    params = {**_params(args), "format": export_format(args.format, args.output),
              "actions": str(args.actions).lower()}
    if args.runs:
        params["run"] = args.runs
    if args.older_than is not None:
        params["older_than"] = args.older_than
    size = download(client, params, args.output)
    if args.output != "-":
        print(f"wrote {size} bytes to {args.output}", file=sys.stderr)
    return 0


def _prune(args: argparse.Namespace, client: Any) -> int:
    from titan.cli.output import confirm_prune, print_json

    as_json = getattr(args, "json", False)
    if args.export_to == "-":
        # Written to stdout, it then failed "No such file or directory: -" and pruned nothing.
        raise TitanError("--export-to needs a file: a prune's export is the only copy of the "
                         "runs it deletes (to read them on stdout, `titan runs export "
                         "--older-than ...` first)")
    if args.export_to and not args.dry_run and Path(args.export_to).exists():
        # Replaced, the runs an earlier prune saved there existed nowhere any more.
        raise TitanError(f"{args.export_to} exists: name a new file (a prune's export is the "
                         "only copy of the runs it deletes)")
    if not confirm_prune(client, args, "runs"):
        return 1
    if not args.export_to or args.dry_run:
        reply = client.api("POST", "/runs/prune",
                           json={"older_than": args.older_than, "dry_run": args.dry_run})
        if as_json:
            print_json(reply)
            return 0
        verb = "would delete" if args.dry_run else "deleted"
        print(f"{verb} {reply['pruned']} finished run(s) started more than {args.older_than} "
              "ago")
        for run_id in reply["run_ids"][:20] if args.dry_run else []:
            print(f"  {run_id}")
        return 0
    # Exactly what the prune may delete (archived runs too; no run of a class it keeps).
    params = {"format": "jsonl", "actions": "true", "older_than": args.older_than,
              "archived": "all", "prunable": "true"}
    try:
        download(client, params, args.export_to)
    except TitanError as exc:
        raise TitanError(f"{exc}; nothing was deleted") from None
    saved = _saved_runs(args.export_to)
    print(f"saved {len(saved)} run(s) with their actions to {args.export_to}",
          file=sys.stderr if as_json else sys.stdout)
    reply = _prune_saved(client, args.older_than, saved)
    if as_json:
        print_json(reply)
        return 0
    print(f"deleted {reply['pruned']} finished run(s) started more than {args.older_than} ago")
    gone = len(saved) - reply["pruned"] - len(reply["changed"]) - len(reply["kept"])
    for ids, why in (
            (reply["changed"], "recorded actions after the export (a late flush of their "
                               f"SDK): {args.export_to} does not hold those, so they were "
                               "not deleted"),
            (reply["kept"], "are no longer to be deleted (a stage or a replay took them up, "
                            "or their retention class changed)")):
        if ids:
            print(f"kept {len(ids)} run(s) that {why}: {', '.join(ids[:20])}"
                  + (" ..." if len(ids) > 20 else ""))
    if gone > 0:
        print(f"{gone} run(s) of the export were already gone (deleted meanwhile by "
              "TITAN_RUN_RETENTION or another prune)")
    return 0


def _saved_runs(path: str) -> list[dict[str, Any]]:
    """Each run of a prune's export as it was saved: its id, action count and chain head."""
    saved = []
    with open(path, encoding="utf-8", newline="\n") as fh:
        for line in fh:
            if line.startswith('{"type":"run"'):
                run = json.loads(line)
                saved.append({k: run[k] for k in ("id", "action_count", "chain_head")})
    return saved


def _prune_saved(client: Any, older_than: str, saved: list[dict[str, Any]]) -> dict[str, Any]:
    """Delete the runs an export saved, each only if it is still as saved (the master keeps
    one that recorded an action since: that action is in no export), a batch a request: a
    bounded body and a short write each. The replies summed."""
    total: dict[str, Any] = {"pruned": 0, "dry_run": False, "run_ids": [], "changed": [],
                             "kept": [], "before": None}
    for start in range(0, len(saved), _PRUNE_BATCH):
        reply = client.api("POST", "/runs/prune", json={
            "older_than": older_than, "runs": saved[start:start + _PRUNE_BATCH]})
        total["pruned"] += reply["pruned"]
        total["before"] = reply["before"]
        for key in ("run_ids", "changed", "kept"):
            total[key].extend(reply[key])
    return dict(total, **{k: total[k][:1000] for k in ("run_ids", "changed", "kept")})


_PRUNE_BATCH = 10_000


def _budget(args: argparse.Namespace, client: Any) -> int:
    from titan.cli.output import print_json

    if args.usd.lower() in ("none", "off", "-"):
        usd: float | None = None
    else:
        try:
            usd = float(args.usd.lstrip("$"))
        except ValueError:
            raise TitanError(f"the budget must be a number of USD or 'none', not {args.usd!r}") from None
        if not 0 <= usd <= 1e9:  # NaN and infinities too: no JSON number holds them
            raise TitanError(f"the budget must be a number of USD from 0 to 1e9 or 'none', "
                             f"not {args.usd!r}")
    if args.agent:
        reply = client.api("PATCH", f"/agents/{quote_ref(args.agent)}", json={"budget_usd": usd})
        if getattr(args, "json", False):
            print_json(reply)
            return 0
        print(f"agent {args.agent}: budget {money(reply['budget_usd'])} for each run without "
              "its own")
        return 0
    if not args.run:
        raise TitanError("name a run, or --agent AGENT")
    reply = client.api("PATCH", f"/runs/{quote_run(args.run)}", json={"budget_usd": usd})
    if getattr(args, "json", False):
        print_json(reply)
        return 0
    state = "blocked: over budget" if reply["blocked"] else "not blocked"
    print(f"run {args.run}: budget {money(reply['budget_usd'])}, spent "
          f"{run_money(reply)} ({state})")
    return 0


def _archive(args: argparse.Namespace, client: Any) -> int:
    from titan.cli.output import print_json

    verb = args.runs_command
    as_json = getattr(args, "json", False)
    replies: list[dict[str, Any]] = []
    refused = 0
    for run_id in args.run:
        # Each run on its own: the first refused one (still running, no such run) stopped
        # the command with no word about the runs after it. What refuses every run (a
        # token without the role, no master) still stops it.
        try:
            reply = client.api("POST", f"/runs/{quote_run(run_id)}/{verb}")
        except (NotFound, Conflict, ValidationFailed) as exc:
            if len(args.run) == 1:
                raise  # one run: its refusal is the command's error, as every command says it
            refused += 1
            replies.append({"id": run_id, "refused": str(exc)})
            if not as_json:
                print(f"run {run_id}: not {verb}d: {exc}", file=sys.stderr)
            continue
        replies.append(reply)
        if not as_json:
            # What was done: "not archived" after an unarchive read as a refusal.
            state = "archived" if reply["archived"] else "unarchived"
            print(f"run {run_id}: {state}")
    if as_json:
        print_json(replies)
    elif refused:
        print(f"{refused} of {len(args.run)} run(s) not {verb}d (above)", file=sys.stderr)
    return 1 if refused else 0


def _retention(args: argparse.Namespace, client: Any) -> int:
    from titan.cli.output import print_json

    reply = client.api("PATCH", f"/runs/{quote_run(args.run)}",
                       json={"retention_class": args.retention_class})
    if getattr(args, "json", False):
        print_json(reply)
        return 0
    print(f"run {args.run}: retention class {reply['retention_class']}")
    return 0
