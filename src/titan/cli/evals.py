"""``titan eval``: create an evaluation from a spec, add tasks, run them, read the verdicts.

    titan eval create examples/eval_agent/evaluation.yaml
    titan eval run support-bot --wait          # exits 1 when a task FAILs or its run fails
    titan eval show support-bot
    titan eval trace support-bot status-check  # the latest run's Agent Trace, as text
    titan eval rerun support-bot status-check RUN
    titan eval calibrate                       # the judge against the labelled set (offline)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import textwrap
from typing import Any

from titan.cli.options import aliased
from titan.cli.output import say, table
from titan.formats import cost_text
from titan.url_paths import quote_ref, quote_segment


def add_arguments(p: argparse.ArgumentParser, common: list[argparse.ArgumentParser]) -> None:
    sub = p.add_subparsers(dest="eval_command", metavar="ACTION", required=True)
    s = sub.add_parser("create", help="create or update an evaluation from a YAML/JSON spec "
                                      "(agent + tasks)", parents=common)
    s.add_argument("spec", help="the spec file (see docs/evaluations.md)")
    s = sub.add_parser("tasks", help="seed tasks from a JSON, YAML or CSV file and dispatch "
                                     "their first runs", parents=common)
    s.add_argument("evaluation")
    s.add_argument("file")
    s.add_argument("--no-run", action="store_true",
                   help="seed the tasks without dispatching runs")
    s = aliased(sub, "list", ["ls"], "eval_command", help="list evaluations", parents=common)
    s.add_argument("--project", help="only the evaluations (workflows) of this project")
    s = sub.add_parser("run", help="dispatch every task (or --task ...) against the agent",
                       parents=common)
    s.add_argument("evaluation")
    s.add_argument("--task", action="append", default=None, metavar="ID",
                   help="only this task (repeatable)")
    s.add_argument("--wait", action="store_true",
                   help="wait for the runs and their verdicts; exit 1 unless every run "
                        "completed and PASSed")
    s.add_argument("--timeout", type=float, default=1800, help="seconds to wait (1800)")
    s = sub.add_parser("cancel", help="cancel every run of the evaluation still pending or "
                                      "running (or those of --task ...)", parents=common)
    s.add_argument("evaluation")
    s.add_argument("--task", action="append", default=None, metavar="ID",
                   help="only this task's runs (repeatable)")
    s = aliased(sub, "delete", ["rm"], "eval_command",
                help="delete an evaluation with its tasks and runs (the agent runs they "
                     "recorded stay, for retention)", parents=common)
    s.add_argument("evaluation")
    s.add_argument("--force", action="store_true",
                   help="cancel its runs still pending or running first (else refused)")
    s = sub.add_parser("show", help="the data explorer: one row per task", parents=common)
    s.add_argument("evaluation")
    s = sub.add_parser("trace", help="a run's Agent Trace (the task's latest run by default)",
                       parents=common)
    s.add_argument("evaluation")
    s.add_argument("task")
    s.add_argument("run", nargs="?", default=None)
    s = sub.add_parser("rerun", help="dispatch a task again with the current agent settings",
                       parents=common)
    s.add_argument("evaluation")
    s.add_argument("task")
    s.add_argument("run", nargs="?", default=None,
                   help="the run to re-run: its id or the end of it (default: the latest)")
    s.add_argument("--wait", action="store_true",
                   help="wait for the new run's verdict and print it")
    # Offline: no master, so none of the connection options.
    s = sub.add_parser("calibrate", help="run the judge on the labelled calibration set and "
                                         "print its agreement with the labels (no master)")
    s.add_argument("--judge-model", default=None, metavar="MODEL",
                   help="the judge's model (default: TITAN_EVAL_JUDGE_MODEL, else "
                        "TITAN_LLM_MODEL, else local)")
    s.add_argument("--mode", choices=("combined", "model", "code"), default="combined",
                   help="combined: code checks, then the model where they cannot tell (the "
                        "judge's default); model: the model alone; code: the checks alone")
    s.add_argument("--set", default=None, metavar="PATH",
                   help="a calibration file or a directory of them (default: the shipped set)")
    s.add_argument("--case", action="append", default=None, metavar="ID",
                   help="only this case (repeatable)")
    s.add_argument("--category", action="append", default=None, metavar="NAME",
                   help="only this category (repeatable)")
    s.add_argument("--worst", type=int, default=10, metavar="N",
                   help="disagreements to print, worst first (10)")
    s.add_argument("--min-agreement", type=float, default=None, metavar="FRACTION",
                   help="exit 1 when the agreement is below this (0.8 = 80 %%)")
    s.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                   help="print JSON instead of text")


def calibrate(args: argparse.Namespace) -> int:
    """``titan eval calibrate``: offline, so it takes no client."""
    from titan.errors import ValidationFailed
    from titan.evals.calibration import Case, calibrate, load_set
    from titan.evals.judge import Verdict

    if args.worst < 0:
        raise ValidationFailed(f"--worst must be 0 or more, got {args.worst}")
    if args.min_agreement is not None and not 0 <= args.min_agreement <= 1:
        raise ValidationFailed(f"--min-agreement is a fraction from 0 to 1 (0.8 for 80 %), "
                               f"got {args.min_agreement:g}")
    cases = load_set(args.set)
    if args.case:
        unknown = sorted(set(args.case) - {c.id for c in cases})
        if unknown:
            raise ValidationFailed(f"no calibration case {unknown[0]!r} in the set")
        cases = [c for c in cases if c.id in args.case]
    if args.category:
        cases = [c for c in cases if c.category in args.category]
    if not cases:
        raise ValidationFailed("no calibration case left to run")
    model = args.judge_model or os.environ.get("TITAN_EVAL_JUDGE_MODEL") or None
    if args.mode != "code":
        # A model that cannot be called at all (an unknown provider, no key) made every case
        # NOT_APPLICABLE and reported agreement 0.0, exit 0: said before the set runs.
        from titan import llm

        llm.usable(model)

    def progress(n: int, total: int, case: Case, v: Verdict, seconds: float) -> None:
        mark = "ok " if v.verdict == case.label else "DIFF"
        print(f"[{n}/{total}] {mark} {case.id}: labelled {case.label}, judged {v.verdict} "
              f"({seconds:.1f}s)", file=sys.stderr, flush=True)

    report = calibrate(cases, model=model, mode=args.mode, progress=progress)
    # On the shipped set the figure is mostly the judge's development data, whatever the mode
    # or model (its "heldout" files included: the checks were fixed on them since): say so.
    note = None if args.set is not None else (
        "the shipped set is the judge's development data (its code checks were written from "
        "these cases, the held-out files included); on runs they were not written from the "
        "default judge agreed 67 % (docs/evaluations.md, \"Calibrating the judge\"). Label "
        "runs of your own agent and pass them with --set to measure it there.")
    if getattr(args, "json", False):
        print(json.dumps(dict(report.to_dict(args.worst), note=note), indent=2))
    else:
        print(report.text(args.worst))
        if note is not None:
            print("\n" + textwrap.fill("note: " + note, 96))
    if args.min_agreement is not None and report.agreement < args.min_agreement:
        return 1
    return 0


def run_cost(cost: dict[str, Any]) -> str:
    """A run's total as an agent run's cost reads: a lower bound (">=$0.0120") when judge,
    simulator or agent calls had no known price, "unknown" when none had one — never $0."""
    return cost_text(cost["total_usd"], cost.get("unpriced_calls") or 0)


def _calls(n: int) -> str:
    return "1 LLM call" if n == 1 else f"{n} LLM calls"


def print_explorer(view: dict[str, Any]) -> None:
    ev = view["evaluation"]
    agent = ev["agent"]
    say(f"evaluation {ev['id']}  agent {agent['name']} {agent.get('version') or ''}".rstrip())
    rows = []
    for row in view["tasks"]:
        run = row["run"]
        if run is None:
            rows.append([row["task_id"], "(not run)", "", "", "", ""])
            continue
        status = run["status"] + (f" [{run['chip']['label']}]" if run["chip"] else "")
        verdict = run["verdict"] + (f" ({run['failure_mode']})" if run["failure_mode"] else "")
        latency = f"{run['latency_s']:.1f}s" if run["latency_s"] is not None else "-"
        rows.append([row["task_id"], status, verdict, run["tool_calls"], latency,
                     run_cost(run["cost"])])
    # Columns as wide as what they hold: "FAIL (incomplete)" pushed the rest out of line.
    table(["TASK", "STATUS", "VERDICT", "TOOLS", "LATENCY", "COST"], rows)
    s = view["summary"]
    runs = [r["run"] for r in view["tasks"] if r["run"]]
    # Say what happened: a note about the local judge only where it actually gave verdicts,
    # and why the runs without one have none.
    if any(r.get("judge_verdict") in ("PASS", "FAIL")
           and (r.get("judge_model") or "").startswith("local") for r in runs):
        say("note: judged by the local 0.5B model, a rough signal; for verdicts to act on set "
            "TITAN_EVAL_JUDGE_MODEL (or the agent's judge_model) to a hosted model")
    unscored = [r for r in runs if r.get("judge_unscored")]
    if unscored:
        say(f"note: {len(unscored)} run(s) have no verdict: {unscored[0]['judge_unscored']}"
            + (" (and others: see `titan eval trace`)" if len(unscored) > 1 else ""))
    cancelled = f", {s['cancelled']} cancelled" if s.get("cancelled") else ""
    say(f"{s['pass']} PASS, {s['fail']} FAIL, {s['pending']} PENDING{cancelled} of "
        f"{s['tasks']} tasks; "
        f"total cost {cost_text(s['cost_usd'], s.get('unpriced_calls') or 0)}")
    if s.get("unpriced_calls"):
        say(f"note: {_calls(s['unpriced_calls'])} on a model with no known price (judge, "
            "simulator or agent) are not in the cost: register its price with "
            "titan.llm.register_price or TITAN_LLM_PRICES")


def _run_id(client: Any, evaluation: str, task: str, given: str | None) -> str:
    """The run ``given`` names: its id, or the end of one (as the explorer shows ids cut),
    or, when None, the task's latest run."""
    from titan.errors import NotFound, ValidationFailed

    if given is None:
        latest = {r["task_id"]: r for r in client.evaluation(evaluation)["tasks"]}
        row = latest.get(task)
        if row is None:
            known = ", ".join(sorted(latest)[:10]) or "none"
            raise NotFound(f"evaluation {evaluation!r} has no task {task!r} "
                           f"(its tasks: {known})")
        if row["run"] is None:
            raise NotFound(f"task {task!r} of {evaluation!r} has no run yet")
        return str(row["run"]["id"])
    segment = quote_segment(task, f"evaluation {evaluation!r} has no task {task!r}",
                            task_id=task)
    runs = [str(r["id"]) for r in client.api(
        "GET", f"/evaluations/{quote_ref(evaluation)}/tasks/{segment}/runs")["runs"]]
    if given in runs:
        return given
    ending = [r for r in runs if r.endswith(given)]
    if len(ending) > 1:
        raise ValidationFailed(f"{given!r} ends {len(ending)} runs of task {task!r}: "
                               f"{', '.join(ending[:5])}; give more of the id")
    return ending[0] if ending else given  # none: the master says it has no such run


def print_trace(t: dict[str, Any]) -> None:
    h = t["header"]
    say(f"run {h['id']}  {h['status']}"
        + (f" [{h['chip']['label']}: {h['chip']['hint']}]" if h["chip"] else "")
        + f"  verdict {str(h['verdict']).replace('_', ' ')}  cost {run_cost(h['cost'])}")
    if h.get("error_detail"):
        # What failed, in its own words (the chip's hint is the kind's general advice).
        say(f"error: {h['error_detail']}")
    if t["completion_warning"]:
        say(f"warning: {t['completion_warning']}")
    j = t["judge"]
    if j:
        scores = "  ".join(f"{name} {j[key]}" for name, key in (
            ("completion", "task_completion"), ("adherence", "instruction_adherence"),
            ("efficiency", "efficiency")) if j.get(key) is not None)
        say(f"judge: {str(j['verdict']).replace('_', ' ')}" + (f"  {scores}" if scores else "")
            + (f"  failure mode {j['failure_mode']}" if j.get("failure_mode") else ""))
        say(f"  {j['reasoning']}")
    for item in t["timeline"]:
        if item["type"] == "tool":
            say(f"  #{item['seq']:<4} {item['tool']} [{item['source']}] "
                f"{item['latency_ms']:.0f} ms  {json.dumps(item['arguments'])[:80]} -> "
                f"{json.dumps(item['response'])[:80]}")
        elif item["type"] == "turn":
            say(f"  #{item['seq']:<4} llm {item['model']}: {str(item['reply'])[:100]!r}")
        else:
            say(f"  #{item['seq']:<4} event {item['kind']}: {json.dumps(item['data'])[:100]}")
    if t["coding"]:
        c = t["coding"]
        for s in c.get("scorers") or []:
            say(f"  scorer {s['name']}: {s['verdict']}  {s.get('summary') or ''}")
        say(f"  overall: {c.get('overall')}")
    final = t["final_response"]
    say("final response: " + ("(none)" if final is None else repr(final)))


def _waited(client: Any, evaluation: str, runs: list[dict[str, Any]],
            timeout: float) -> dict[str, Any]:
    """Wait for ``runs``; on Ctrl-C say that they go on, and how to follow or cancel them
    (the wait ended with a bare exit status 130 and nothing said)."""
    try:
        view: dict[str, Any] = client.wait_evaluation_runs(evaluation, runs, timeout=timeout)
        return view
    except KeyboardInterrupt:
        ids = [r["id"] for r in runs]
        print(f"interrupted: the run(s) go on ({', '.join(ids[:3])}"
              f"{', ...' if len(ids) > 3 else ''}); follow them with `titan eval show "
              f"{evaluation}`, cancel them with `titan eval cancel {evaluation}`",
              file=sys.stderr, flush=True)
        raise  # exit status 130 (cli/parser.py)


def run(args: argparse.Namespace, client: Any) -> int:
    as_json = getattr(args, "json", False)
    action = args.eval_command
    if action == "create":
        out: Any = client.create_evaluation_from(args.spec)
        if not as_json:
            say(f"evaluation {out['id']} {'created' if out['created'] else 'updated'} in "
                f"project {out['project']}; {out['tasks_added']} task(s) added")
            return 0
    elif action == "tasks":
        out = client.add_evaluation_tasks(args.evaluation, args.file, run=not args.no_run)
        if not as_json:
            print(f"{out['added']} task(s) added, {out['updated']} updated; "
                  + (f"{len(out['runs'])} run(s) dispatched (titan eval show "
                     f"{args.evaluation} to follow them)" if out["runs"] else "no run dispatched"))
            return 0
    elif action == "list":
        out = client.api("GET", "/evaluations",
                         params={"project": args.project} if args.project else None)
        if not as_json:
            table(["EVALUATION", "PROJECT", "TASKS", "AGENT"],
                  [[ev["id"], ev["project"], ev["task_count"], ev["agent"]["name"]]
                   for ev in out["evaluations"]])
            return 0
    elif action == "run":
        runs = client.run_evaluation(args.evaluation, args.task)
        if not args.wait:
            out = {"runs": runs}
            if not as_json:
                for r in runs:
                    say(f"{r['task_id']:<24} {r['id']}  {r['status']}")
                return 0
        else:
            # The runs this command dispatched: a task's latest run may be another
            # command's (a Re-run from the dashboard meanwhile), and it decided the exit.
            out = _waited(client, args.evaluation, runs, args.timeout)
            rows = out["tasks"]
            if not as_json:
                print_explorer(out)
            # A run that failed is never a pass, whatever it answered before it failed.
            ok = all(r["run"] and r["run"]["status"] == "completed"
                     and r["run"]["verdict"] == "PASS" for r in rows)
            if as_json:
                print(json.dumps(out, indent=2))
            return 0 if ok else 1
    elif action == "cancel":
        out = {"cancelled": client.cancel_evaluation(args.evaluation, args.task)}
        if not as_json:
            runs = out["cancelled"]
            say(f"cancelled {len(runs)} run(s) of {args.evaluation}" if runs else
                f"nothing to cancel: no run of {args.evaluation}"
                + (" (of those tasks)" if args.task else "") + " is pending or running")
            for r in runs:
                say(f"  {r['task_id']:<24} {r['id']}")
            return 0
    elif action == "delete":
        out = client.delete_evaluation(args.evaluation, force=args.force)
        if not as_json:
            stopped = f", after cancelling {len(out['cancelled'])}" if out["cancelled"] else ""
            say(f"deleted evaluation {args.evaluation}: its tasks and {out['runs']} run(s)"
                f"{stopped}")
            return 0
    elif action == "show":
        out = client.evaluation(args.evaluation)
        if not as_json:
            print_explorer(out)
            return 0
    elif action == "trace":
        run_id = _run_id(client, args.evaluation, args.task, args.run)
        out = client.evaluation_run(args.evaluation, args.task, run_id)
        if not as_json:
            print_trace(out)
            return 0
    else:  # rerun
        run_id = _run_id(client, args.evaluation, args.task, args.run)
        out = client.rerun_evaluation_run(args.evaluation, args.task, run_id)
        if not as_json:
            print(f"re-running {out['source_run_id']} as {out['run_id']}", flush=True)
        if args.wait:
            # The new run alone: waiting on the whole evaluation, an unrelated task's
            # hanging run held this one's verdict back.
            view = _waited(client, args.evaluation,
                           [{"id": out["run_id"], "task_id": args.task}], 600)
            row = view["tasks"][0]
            out = client.evaluation_run(args.evaluation, args.task, out["run_id"])
            if not as_json:
                h = out["header"]
                say(f"{args.task}: {h['status']}  verdict "
                    f"{str(h['verdict']).replace('_', ' ')}"
                    + (f"  ({row['run_count']} runs)" if row.get("run_count") else ""))
                return 0 if h["status"] == "completed" and h["verdict"] == "PASS" else 1
        elif not as_json:
            return 0
    print(json.dumps(out, indent=2))
    return 0
