"""``titan replay`` and ``titan determinism``.

``titan replay RUN`` re-executes a run with its recorded calls served and prints where it
departed from the original; ``--fork-at``/``--override``/``--model`` fork it; ``titan replay
--agent A --last N --code current`` replays an agent's recent runs against the working tree
and exits non-zero when their match rate is under ``--threshold`` (a CI gate for agent code).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path
from typing import Any

from titan.cli.output import money, run_money, say
from titan.errors import TitanError, WaitTimeout
from titan.url_paths import quote_run

STATUS_MARK = {"match": "✅ Match", "override": "✏️ Override", "forked": "↪ Live (fork)",
               "replaced": "· replaced by the fork", "not_reached": "· not reached",
               "covered": "✅ Covered by its served parent",
               "unrecorded": "⚡ Live (unrecorded, as in the original)"}


def add_arguments(replay: argparse.ArgumentParser, determinism: argparse.ArgumentParser) -> None:
    replay.add_argument("run", nargs="?", help="the run to replay (or --agent)")
    replay.add_argument("--mode", choices=("strict", "lenient"), default=None,
                        help="strict stops at the first divergence (default; lenient with "
                             "--agent); lenient serves by key and goes on")
    replay.add_argument("--code", type=str.lower, choices=("recorded", "current"),
                        default="recorded",
                        help="the recorded scripts (default), or this machine's working tree "
                             "to test a fix: the files now at their paths and the .py/.sh "
                             "files beside them")
    replay.add_argument("--fork-at", type=int, default=None, metavar="SEQ",
                        help="serve the recording before step SEQ, run the rest live")
    replay.add_argument("--override", action="append", default=[], metavar="SEQ=FILE.json",
                        help="use this output for step SEQ instead of the recorded one "
                             "(repeatable; forks at the earliest)")
    replay.add_argument("--model", default=None,
                        help="with a fork: the model the live part asks")
    replay.add_argument("--allow-live", action="store_true",
                        help="lenient: let calls the recording lacks (and leaks) run live")
    replay.add_argument("--verify", action="store_true",
                        help="re-run tools marked pure=True and compare their outputs")
    replay.add_argument("--agent", default=None, help="replay this agent's last runs")
    replay.add_argument("--last", type=int, default=20, help="with --agent: how many (20)")
    replay.add_argument("--threshold", type=float, default=1.0,
                        help="with --agent: the least overall match rate that passes (1.0)")
    replay.add_argument("--no-wait", action="store_true",
                        help="start it and print its id; do not wait for the result")
    replay.add_argument("--timeout", type=float, default=1800,
                        help="seconds to wait for a replay (default 1800)")
    replay.add_argument("--rows", type=int, default=30,
                        help="comparison rows printed (default 30; 0: none)")
    determinism.add_argument("run", help="the run to analyse")


def run_replay(args: argparse.Namespace, client: Any) -> int:
    if args.agent and args.run:
        raise TitanError("name a run to replay, or --agent AGENT for its last runs, not both")
    if args.last < 1:
        raise TitanError(f"--last must be 1 or more, got {args.last}")
    if args.rows < 0:  # a negative slice printed all but the last rows, and "… N more"
        raise TitanError(f"--rows must be 0 or more, got {args.rows}")
    if not 0 <= args.threshold <= 1:
        raise TitanError(f"--threshold is a match rate from 0 to 1 (0.9 for 90 %), "
                         f"got {args.threshold:g}")
    if not args.timeout >= 0:  # NaN too: refused before a replay starts, not after
        raise TitanError(f"--timeout must be a number of seconds >= 0, got {args.timeout:g}")
    if args.agent:
        return _regression(args, client)
    if not args.run:
        raise TitanError("name a run to replay, or --agent AGENT for its last runs")
    body = _body(args, client, args.run)
    started = client.api("POST", f"/runs/{quote_run(args.run)}/replay", json=body)
    replay_id = started["run_id"]
    print(f"replaying {args.run} as {replay_id} ({body.get('mode', 'strict')} mode, "
          f"{args.code} code)", file=sys.stderr)
    if args.no_wait:
        if args.json:  # what the master answered: the replay's id, source, mode and status
            print(json.dumps(started, indent=2))
        else:
            print(replay_id)
        return 0
    try:
        report = _wait(client, replay_id, args.timeout, progress=True)
    except KeyboardInterrupt:
        _cancel(client, replay_id)
        raise
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        _print_report(report, args.rows)
    forked = report["fork"] is not None
    return 0 if report["status"] == "completed" and (forked or not report["divergence_count"]) \
        else 1


def _cancel(client: Any, replay_id: str) -> None:
    """Ctrl-C while waiting: the replay stops too. It went on, its DRIVER holding a worker
    slot, and a second replay's driver could take the last one its stages needed."""
    try:
        for dag in client.list_dags(agent_run_id=replay_id, limit=1000):
            if dag["status"] in ("WAITING", "RUNNING"):
                client.cancel(dag["ref"])
        print(f"replay {replay_id} cancelled", file=sys.stderr)
    except TitanError as exc:
        print(f"replay {replay_id} goes on (could not cancel it: {exc}); stop it with "
              f"`titan cancel 'DAG-{replay_id}_DRIVER'`", file=sys.stderr)


def _body(args: argparse.Namespace, client: Any, run_id: str) -> dict[str, Any]:
    body: dict[str, Any] = {"code": args.code, "allow_live": args.allow_live,
                            "verify": args.verify}
    if args.mode or args.agent:
        body["mode"] = args.mode or "lenient"
    if args.fork_at is not None:
        body["fork_at"] = args.fork_at
    if args.model:
        body["model"] = args.model
    overrides: dict[str, Any] = {}
    for item in args.override:
        seq, sep, path = item.partition("=")
        if not sep or not seq.isdigit():
            raise TitanError(f"--override takes SEQ=FILE.json, not {item!r}")
        try:
            overrides[seq] = json.loads(Path(path).read_text())
        except (OSError, ValueError) as exc:
            raise TitanError(f"--override {item}: cannot read JSON from {path}: {exc}") from None
    if overrides:
        body["overrides"] = overrides
    if args.code == "current":
        files = _current_files(client, run_id)
        if files:
            body["files"] = files
        else:  # nothing recorded to take from the working tree: the master says why
            body["code"] = "recorded"
    return body


def _current_files(client: Any, run_id: str) -> dict[str, str]:
    """Upload the files now at the run's recorded paths, and the files beside them in the
    working tree they came from (a stage script or a module added since); {path: sha256}."""
    from titan.client import worktree  # the SDK: imported when a command needs it

    code = client.api("GET", f"/runs/{quote_run(run_id)}").get("code") or {}
    if not code.get("files"):  # no recorded code at all: the master's refusal says so
        return {}
    recorded = sorted(code["files"])
    tree = worktree.beside(recorded, room=worktree.MAX_FILES - len(recorded))
    files: dict[str, str] = {}
    contents: dict[str, bytes] = {}
    kept = []
    for path in [*recorded, *tree.files]:
        try:
            data = Path(path).read_bytes()
        except OSError:
            if path in code["files"]:
                kept.append(path)
            continue
        sha = hashlib.sha256(data).hexdigest()
        files[path], contents[sha] = sha, data
    if len(files) == len(tree.files):  # none of the recorded files: not this machine's run
        raise TitanError(f"none of run {run_id}'s files is on this machine (it recorded "
                         f"{recorded[0]} …): --code current replays the files at "
                         "the recorded paths")
    for path in kept:
        print(f"note: {path} is not on this machine; its recorded version is used",
              file=sys.stderr)
    added = len(files) - len(recorded) + len(kept)
    print(f"note: --code current sends the {len(recorded) - len(kept)} recorded file(s) as "
          f"they are now and {added} .py/.sh file(s) beside them under "
          f"{', '.join(tree.roots)}", file=sys.stderr)
    if tree.left_out or tree.cut:
        print(f"note: {tree.left_out or 'some'} more file(s) under {', '.join(tree.roots)} "
              f"were left out (at most {worktree.MAX_FILES} files, the nearest first)",
              file=sys.stderr)
    if contents:
        missing = set(client.api("POST", "/blobs/missing",
                                 json={"sha256": sorted(contents)})["missing"])
        for sha in missing:
            client._transport.send("PUT", f"/blobs/{sha}", body=contents[sha])
    return files


def _wait(client: Any, replay_id: str, timeout: float, progress: bool = False) -> Any:
    deadline = time.monotonic() + timeout
    seen = -1
    while True:
        try:  # a master away is waited for until the whole wait's end, not a step's
            client._wait_dag(f"{replay_id}_DRIVER", min(2.0, max(0.1, deadline
                                                                - time.monotonic())),
                             until=deadline)
            break
        except WaitTimeout:
            if time.monotonic() >= deadline:
                raise TitanError(f"replay {replay_id} is still running after {timeout:.0f}s "
                                 f"(follow it: titan logs {replay_id}_DRIVER/driver)") from None
            if progress:
                n = client.api("GET", f"/runs/{quote_run(replay_id)}")["action_count"]
                if n != seen:
                    seen = n
                    print(f"  … {n} action(s) replayed", file=sys.stderr)
    return client.api("GET", f"/runs/{quote_run(replay_id)}/replay")


def _savings(r: dict[str, Any]) -> str:
    """What serving the recording saved: unknown when the master cannot tell (LLM calls of no
    known price: $0 would say nothing was spent), a lower bound when only some of the
    original's were priced."""
    if r["savings_usd"] is None:
        return "unknown"
    return (">=" if (r["original"] or {}).get("unpriced_calls") else "") + money(r["savings_usd"])


def _print_report(r: dict[str, Any], rows: int) -> None:
    rate = "-" if r["match_rate"] is None else f"{r['match_rate']:.1%}"
    say(f"Replay {r['run_id']} of {r['replay_of']}: {r['status']}")
    if r.get("error") and r["status"] != "completed":
        say(f"  {r['error']}")
    say(f"  Original cost  {run_money(r['original']) if r['original'] else '-'}")
    say(f"  Replay cost    {run_money(r['replay'])}")
    say(f"  Savings        {_savings(r)}")
    say(f"  Divergences    {r['divergence_count']}")
    live = r.get("live_calls") or 0
    say(f"  Live calls     {live}" + (" (ran for real, not from the recording: their cost "
                                      "is the replay's)" if live else ""))
    say(f"  Match rate     {rate} ({r['matched']}/{r['recorded']} recorded calls)")
    if r["fork"]:
        f = r["fork"]
        overridden = f" {f['overridden']} overridden," if f.get("overridden") else ""
        say(f"  Fork           at step {f['at']}: {f['served']} served,{overridden} "
            f"{f['live']} live")
    for d in r["divergences"][:20]:
        first = " (first)" if d is r["divergences"][0] else ""
        say(f"\n  ❌ {d['message']}{first}\n     {d['actor']} · {d['channel']} · "
            f"{d['name']} #{d['ordinal']}")
        for side in ("original", "replay"):
            if d[side]:
                say(f"     {side:8} #{d[side]['seq']}: {str(d[side]['inputs'])[:100]}")
        for change in d["diff"][:5]:
            say(f"     {change['change']} {change['path']}: "
                f"{json.dumps(change['original'], ensure_ascii=False)[:60]} → "
                f"{json.dumps(change['replay'], ensure_ascii=False)[:60]}")
    unrecorded = r.get("unrecorded_calls") or []
    for u in unrecorded[:20]:
        first = "" if u is not unrecorded[0] else f"\n  ⚡ {u['message']}"
        say(f"{first}\n     {u['actor']} · {u['channel']} · {u['name']} #{u['ordinal']}")
    say(f"\n  {'Action':32} {'Original':>8} {'Replay':>8}  Status")
    for row in r["comparison"][:rows]:
        label = f"{row['actor']} {row['name']}#{row['ordinal']}"
        o = f"#{row['original']['seq']}" if row["original"] else "—"
        p = f"#{row['replay']['seq']}" if row["replay"] else "—"
        mark = STATUS_MARK.get(row["status"], f"❌ Diverged ({row['status']})")
        say(f"  {label[:32]:32} {o:>8} {p:>8}  {mark}")
    if r["comparison_total"] > rows:
        say(f"  … {r['comparison_total'] - rows} more (--rows, or the Simulation tab)")


def _regression(args: argparse.Namespace, client: Any) -> int:
    """Replay an agent's last runs; exit 1 when the overall match rate is under threshold."""
    runs: list[dict[str, Any]] = []
    offset = 0
    while len(runs) < args.last:  # newest first; replays of the agent's runs are skipped
        page = client.api("GET", "/runs", params={
            "agent": args.agent, "status": "completed,failed", "limit": 200, "offset": offset,
        })["runs"]
        runs += [r for r in page if not r.get("replay_of")]
        if len(page) < 200:
            break
        offset += 200
    runs = runs[:args.last]
    if not runs:
        raise TitanError(f"agent {args.agent!r} has no finished runs to replay")
    started = []
    unreplayable = 0
    for run in runs:
        try:
            reply = client.api("POST", f"/runs/{quote_run(run['id'])}/replay",
                               json=_body(args, client, run["id"]))
            started.append((run["id"], reply["run_id"]))
        except TitanError as exc:
            if getattr(exc, "code", None) == "replay_not_available" \
                    and "no recorded code" in str(exc):
                # Not a regression: a run no script drove (an evaluation's, one sent over
                # the API or OTLP) has nothing to re-execute. Said, and left out.
                unreplayable += 1
                say(f"  {run['id']}: skipped: no recorded code to replay", file=sys.stderr)
                continue
            say(f"  {run['id']}: not replayed: {exc}", file=sys.stderr)
    if unreplayable == len(runs):
        raise TitanError(f"none of agent {args.agent!r}'s last {len(runs)} run(s) has recorded "
                         "code to replay (a script drives a replayable run: submit_dag(..., "
                         "agent_run_id=...) or titan.trace.run(...))")
    matched = recorded = 0
    say(f"{'Run':40} {'Match rate':>10} {'Divergences':>12}  Status")
    for run_id, replay_id in started:
        report = _wait(client, replay_id, args.timeout)
        matched += report["matched"]
        recorded += report["recorded"]
        rate = "-" if report["match_rate"] is None else f"{report['match_rate']:.1%}"
        say(f"{run_id[:40]:40} {rate:>10} {report['divergence_count']:>12}  "
            f"{report['status']} ({replay_id})")
    overall = matched / recorded if recorded else 1.0
    ok = overall >= args.threshold and len(started) == len(runs) - unreplayable
    say(f"overall: {overall:.1%} of {recorded} recorded calls matched over {len(started)} "
        f"run(s); threshold {args.threshold:.0%}: {'pass' if ok else 'FAIL'}")
    return 0 if ok else 1


def run_determinism(args: argparse.Namespace, client: Any) -> int:
    r = client.api("GET", f"/runs/{quote_run(args.run)}/determinism")
    if args.json:
        print(json.dumps(r, indent=2))
        return 0
    value = "not scored" if r["score"] is None else f"{r['score']}/100"
    say(f"Determinism of {r['run_id']}: {value} — {r['band']['label']}")
    counts = ", ".join(f"{n} {k}" for k, n in r["counts"].items() if n)
    say(f"  {counts or 'no findings'}; analysed {len(r['analyzed']['files'])} file(s), "
        f"{r['analyzed']['actions']} action(s), {r['analyzed']['replays']} replay(s)")
    for f in r["findings"]:
        where = f"{f['file']}:{f['line']}" if f.get("file") else (
            f"action {f['action']}" + (f" #{f['seq']}" if f.get("seq") is not None else "")
            if f.get("action") else "")
        say(f"\n  [{f['severity'].upper()}] {f['title']} — {where}")
        if f.get("code"):
            say(f"    {f['code']}")
        say(f"    {f['description']}")
        say(f"    → {f['recommendation']}")
    return 0
