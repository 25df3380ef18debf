"""How the `titan` command prints jobs, DAGs and tables for people (``--json`` for programs)."""

from __future__ import annotations

import json
import re
import shlex
import time
import unicodedata
from collections.abc import Sequence
from typing import Any

from titan.formats import cost_text, dollars, shown


def print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, sort_keys=True, default=str))


def confirm(question: str, yes: bool) -> bool:
    """Whether to go on with what ``question`` asks (it ends without a question mark's
    answer hint: ``[y/N]`` is added). Asked only on a terminal and without ``--yes``: a
    script or cron job piping nothing in is never held up. The question goes to stderr, so
    ``--json`` output stays clean; Ctrl-D, an empty line or anything but y/yes is no."""
    import sys

    if yes or not sys.stdin.isatty():
        return True
    sys.stderr.write(f"{question}? [y/N] ")
    sys.stderr.flush()
    answer = sys.stdin.readline()
    if not answer:  # Ctrl-D: end the prompt's line
        sys.stderr.write("\n")
    if answer.strip().lower() in ("y", "yes"):
        return True
    print("nothing deleted", file=sys.stderr)
    return False


def confirm_prune(client: Any, args: Any, what: str) -> bool:
    """:func:`confirm` for ``titan dags prune`` / ``runs prune`` (``what``: "dags" or
    "runs"): on a terminal, the master is asked first how many would go (a dry run), so the
    question says it; nothing to delete asks nothing."""
    import sys

    if args.dry_run or args.yes or not sys.stdin.isatty():
        return True
    count = client.api("POST", f"/{what}/prune",
                       json={"older_than": args.older_than, "dry_run": True})["pruned"]
    said = (f"{count} DAG run(s) finished more than {args.older_than} ago, with their jobs "
            "and logs") if what == "dags" else (f"{count} finished run(s) started more than "
                                                f"{args.older_than} ago, with their actions")
    return not count or confirm(f"delete {said}", False)


def cell(value: Any) -> str:
    """A value as one table cell: controls a name or key may hold (anyone may write one)
    shown escaped, never sent to the terminal (:func:`titan.formats.shown`)."""
    return shown(value)


def say(text: str = "", **kwargs: Any) -> None:
    """``print`` for a line of a detail screen that holds values from run or evaluation data
    (an agent's exception text, a judge's reasoning, an action's name): its lines kept, every
    other control shown escaped as in a table cell — an agent could otherwise set the reader's
    window title, clear the screen or write the clipboard (OSC 52). ``--json`` stays exact."""
    print("\n".join(cell(line) for line in text.split("\n")), **kwargs)


#: Colours and text styles (SGR: ESC [ ... m), which a job's output may keep on a terminal;
#: any other control is shown escaped there.
_SGR_OR_CONTROL = re.compile("(\x1b\\[[0-9;]{0,40}m)|[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f"
                             "\u202a-\u202e\u2066-\u2069]")


def for_terminal(text: str, tty: bool) -> str:
    """What a job or a user wrote (a log line, a store value), as it may reach a terminal:
    its colours, tabs and carriage returns (a progress bar) kept, every other control shown
    escaped — a log could set the window's
    title, clear the screen or write the clipboard (OSC 52) of whoever read it. Unchanged
    when the output is not a terminal: ``titan logs JOB > file`` keeps the bytes as written."""
    if not tty:
        return text
    return _SGR_OR_CONTROL.sub(lambda m: m.group(1) or cell(m.group()), text)


#: Columns are padded to their widest cell up to this: a longer one (a 200-character DAG name)
#: is printed whole on its own row, not padded into every other row (a QA pass).
MAX_PAD = 48


def clip(value: Any, width: int) -> str:
    """``value`` as a cell of at most ``width`` characters, a longer one cut to end in "…":
    for a column whose values others choose (a worker names itself, up to 200 characters)."""
    text = cell(value)
    return text if len(text) <= width else text[:width - 1] + "…"


def width(text: str) -> int:
    """Columns ``text`` takes in a terminal: wide (CJK) characters two, combining marks none
    (padding by characters pushed every column after a name like 作业 out of line)."""
    if text.isascii():
        return len(text)
    return sum(0 if unicodedata.combining(c) else
               2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    cells = [[str(h) for h in headers]] + [[cell(c) for c in r] for r in rows]
    widths = [min(MAX_PAD, max(width(row[i]) for row in cells)) for i in range(len(headers))]
    for row in cells:
        print("  ".join(c + " " * max(0, w - width(c))
                        for c, w in zip(row, widths, strict=True)).rstrip())


def when(ts: Any) -> str:
    if not isinstance(ts, int | float):
        return str(ts or "-")
    try:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))
    except (OverflowError, OSError, ValueError):
        # A timestamp no calendar holds (written by a master whose clock was far off):
        # shown as stored, not a traceback in place of the job.
        return f"{ts:g}"


def _duration(start: Any, end: Any) -> str:
    if not isinstance(start, int | float):
        return "-"
    stop = end if isinstance(end, int | float) else time.time()
    seconds = max(0.0, stop - start)
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def table_of_dags(dags: Sequence[dict[str, Any]]) -> None:
    """DAG runs as `titan status` and `titan dags list` show them, one per line."""
    table(["DAG", "STATUS", "JOBS", "AGENT RUN", "SUBMITTED"],
          [[f"DAG-{d.get('ref')}", d.get("status"), counts(d), d.get("agent_run_id") or "-",
            when(d.get("submitted_at"))] for d in dags])


def counts(dag: dict[str, Any]) -> str:
    counts = dag.get("counts") or {}
    return ", ".join(f"{state} {n}" for state, n in sorted(counts.items()) if n) or "no jobs"


def gate_decision(job: dict[str, Any]) -> str | None:
    """How an approval gate was decided, in one line (``ship/build.approval: REJECTED by
    carol; comment: not on a Friday``); None for a job that is no gate or a gate not decided
    (still waiting, cancelled, skipped). A deadline decides without a person: its reason."""
    state = job.get("state")
    if job.get("kind") != "approval" or state not in ("APPROVED", "REJECTED", "EXPIRED"):
        return None
    if job.get("decided_by") is None:
        return cell(f"{job.get('ref')}: {state}" + (f" ({job['reason']})" if job.get("reason")
                                                     else ""))
    comment = job.get("decision_comment")
    return cell(f"{job.get('ref')}: {state} by {job['decided_by']}"
                + (f"; comment: {comment}" if comment else ""))


def show_job(job: dict[str, Any]) -> None:
    attempt = f"{job.get('attempt', '-')}/{job.get('max_attempts', '-')}"
    fields = [
        ("job", f"{job.get('ref')} (id {job.get('id')})"),
        ("state", job.get("state")),
        ("reason", job.get("reason")),
        ("attempt", attempt),
        ("worker", job.get("worker_id")),
        ("exit code", job.get("exit_code")),
        ("error", job.get("error")),
        ("script", " ".join([str(job.get("filename"))] + [str(a) for a in job.get("args") or []])),
        ("parents", ", ".join(job.get("parents") or [])),
        ("requirement", job.get("requirement")),
        ("agent run", job.get("agent_run_id")),
        ("message", job.get("hitl_message") if job.get("kind") == "approval" else None),
        ("deadline", when(job["approval_deadline"]) if job.get("approval_deadline") else None),
        ("decide", decide_command(job) if waits_for_decision(job) else None),
        ("decided by", job.get("decided_by")),
        ("decided at", when(job["decided_at"]) if job.get("decided_at") else None),
        ("comment", job.get("decision_comment")),
        ("submitted", when(job.get("submitted_at"))),
        ("duration", _duration(job.get("started_at"), job.get("finished_at"))),
    ]
    for label, value in fields:
        if value not in (None, ""):
            print(f"{label + ':':<13}{cell(value)}")
    decisions = job.get("decisions") or []
    if decisions:  # a retried gate asked again: who decided before, when and why, kept
        print("decisions:")
        for d in decisions:
            by = f" by {d['decided_by']}" if d.get("decided_by") else ""
            said = f"; comment: {d['comment']}" if d.get("comment") else ""
            retried = f", retried by {d['retried_by']}" if d.get("retried_by") else ""
            print(cell(f"  {d.get('state')}{by} {when(d.get('decided_at'))}{said} "
                       f"(asked again {when(d.get('retried_at'))}{retried})"))
    earlier = [a for a in job.get("attempts") or [] if a.get("attempt") != job.get("attempt")]
    if earlier:  # a lost or failed attempt is why the job runs again: shown, not only in --json
        print("earlier attempts:")  # the current one is the fields above
        for a in earlier:
            where = f" on {a['worker_id']}" if a.get("worker_id") else ""
            why = f": {a['error']}" if a.get("error") else ""
            print(f"  {a.get('attempt')} {a.get('state')}{where}"
                  f" ({_duration(a.get('started_at'), a.get('finished_at'))}){cell(why)}")


#: How a job ends well (an approval gate approved: its children run).
SUCCESSES = ("COMPLETED", "APPROVED")


def _ended(job: dict[str, Any]) -> str:
    """``FAILED: exit code 3``: a job's (or an attempt's) state, and why when it is said."""
    why = job.get("error") or job.get("reason")
    return f"{job.get('state')}" + (f": {cell(why)}" if why else "")


def job_end(job: dict[str, Any], attempt: dict[str, Any] | None = None) -> str | None:
    """How a followed job (or ``attempt``, the one of its attempts followed) ended when it
    did not succeed, in one line for stderr (``fail#1/fail: FAILED: exit code 3``): `titan
    logs --follow` exited 1 saying nothing of it. None when it succeeded."""
    ended = job if attempt is None else attempt
    if ended.get("state") in SUCCESSES:
        return None
    which = "" if attempt is None else f" attempt {attempt.get('attempt')}"
    return f"{cell(job.get('ref'))}{which}: {_ended(ended)}"


def failed_jobs(dag: dict[str, Any], most: int = 20) -> list[str]:
    """One line per job of a finished DAG that did not succeed: which, how, and why."""
    bad = [j for j in dag.get("jobs") or [] if j.get("state") not in SUCCESSES]
    lines = [f"  {cell(j.get('job_id'))} {_ended(j)}" for j in bad[:most]]
    if len(bad) > most:
        lines.append(f"  ... and {len(bad) - most} more (titan status DAG-{dag.get('ref')})")
    return lines


#: The states of a job that has not started, whose ``reason`` says why.
HELD = ("PENDING", "READY", "WAITING_APPROVAL")


def waits_for_decision(job: dict[str, Any]) -> bool:
    """Whether ``job`` is a gate waiting for a person's approval."""
    return job.get("state") == "WAITING_APPROVAL"


def decide_command(gate: dict[str, Any]) -> str:
    """The commands that decide a gate waiting for approval."""
    # Quoted for the shell (a ref holds '#'), then escaped: a job id may hold controls.
    ref = cell(shlex.quote(str(gate.get("ref") or gate.get("job_id"))))
    return f"titan approve {ref} (or titan reject), or on the dashboard"


def gate_prompt(gate: dict[str, Any]) -> str:
    """What a gate waiting for approval asks, and the commands that decide it."""
    question = gate.get("hitl_message")
    asks = f"    {cell(question)}\n" if question else ""
    return f"{asks}    decide: {decide_command(gate)}"


def show_dag(dag: dict[str, Any]) -> None:
    run = f"  agent run {dag['agent_run_id']}" if dag.get("agent_run_id") else ""
    if dag.get("schedule"):
        run += f"  started by schedule {dag['schedule']}"
    print(f"DAG-{dag.get('ref')}  {dag.get('status')}  ({counts(dag)}){run}")
    jobs = dag.get("jobs") or []
    if jobs:
        print()
        table(
            ["JOB", "STATE", "ATTEMPT", "WORKER", "EXIT", "DURATION"],
            [[j.get("job_id"), j.get("state"), j.get("attempt"), j.get("worker_id") or "-",
              "-" if j.get("exit_code") is None else j.get("exit_code"),
              _duration(j.get("started_at"), j.get("finished_at"))] for j in jobs],
        )
        # Why a job waits (no worker offers its requirement, ...), as `titan status dag/job`
        # says it: without it, a job PENDING for good looked like one about to start.
        # A gate waiting says what it asks and how to decide it, as `titan submit --wait`
        # does: its state alone left the reader to find the ref and the command.
        held = [j for j in jobs if (j.get("reason") or waits_for_decision(j))
                and j.get("state") in HELD]
        if held:
            print()
        for j in held:
            why = f": {cell(j.get('reason'))}" if j.get("reason") else ""
            print(f"{cell(j.get('job_id'))} is {j.get('state')}{why}")
            if waits_for_decision(j):
                print(gate_prompt(j))


def money(value: float | None) -> str:
    """A cost in dollars for a table: four decimals (more under $0.0001), "-" when unknown."""
    return "-" if value is None else dollars(value)


def run_money(run: dict[str, Any]) -> str:
    """A run's cost: a lower bound (">=$0.0120") when some of its LLM calls have no known
    price, "unknown" when none had one — as the dashboard writes it."""
    return cost_text(run.get("cost_usd"), run.get("unpriced_calls") or 0)
