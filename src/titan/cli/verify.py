"""``titan runs verify``: a run's ledger checked by the master, against an anchor, or an
export checked here, without a master.

Exit status: 0 when the chain verifies (and matches the anchor given), 3 when it is broken
or the anchor does not match, 4 when nothing could be proven (a run recorded before the
ledger existed), 1 on any other error.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from titan import ledger
from titan.errors import NotFound, TitanError
from titan.formats import quote_ref
from titan.ledger_verify import verify
from titan.redaction import merge

BROKEN, UNCHAINED = 3, 4


def add_arguments(runs: Any, common: list[argparse.ArgumentParser]) -> None:
    """``titan runs verify`` under ``titan runs`` (``runs`` is its subparsers)."""
    s = runs.add_parser("verify", help="check a run's tamper-evident ledger: the first action "
                        "edited, deleted, inserted or reordered since it was recorded",
                        parents=common)
    s.add_argument("run", nargs="?", default=None, help="the run id (or use --export)")
    s.add_argument("--anchor", default=None, metavar="SEQ:HASH",
                   help="also check that action SEQ's chain hash is HASH, a head published "
                        "earlier (`titan runs verify RUN --json` prints it)")
    s.add_argument("--export", default=None, metavar="FILE",
                   help="verify every run of a JSON or JSONL export (`titan runs export "
                        "--actions`) here, without a master")


def run(args: argparse.Namespace, client: Any) -> int:
    anchor = _anchor(args.anchor) if args.anchor else None
    if args.export:
        if args.run:
            raise TitanError("name a run or --export FILE, not both")
        verdicts = []
        for v in verify_export(Path(args.export)):
            hashes = v.pop("hashes")
            verdicts.append(_checked(v, anchor, hashes.get(anchor[0]) if anchor else None))
    elif args.run:
        run_id = quote_ref(args.run)
        verdict = client.api("GET", f"/runs/{run_id}/verify")
        if anchor is not None and verdict["status"] == "verified":
            try:
                found = client.api("GET", f"/runs/{run_id}/actions/{anchor[0]}")["chain_hash"]
            except NotFound:
                found = None
            verdict = _checked(verdict, anchor, found)
        verdicts = [verdict]
    else:
        raise TitanError("name a run, or --export FILE")
    if getattr(args, "json", False):
        from titan.cli.output import print_json

        print_json(verdicts[0] if args.run else {"runs": verdicts})
    else:
        for v in verdicts:
            _print(v)
    if any(v["status"] == "broken" for v in verdicts):
        return BROKEN
    return UNCHAINED if any(v["status"] == "unchained" for v in verdicts) else 0


def _anchor(text: str) -> tuple[int, str]:
    seq, _, digest = text.partition(":")
    if not (seq.isascii() and seq.isdigit() and int(seq) >= 1) \
            or len(digest) != 64 or not all(c in "0123456789abcdefABCDEF" for c in digest):
        raise TitanError(f"--anchor must be SEQ:HASH (an action's seq, from 1, and its 64-digit "
                         f"sha256 chain hash), got {text!r}")
    return int(seq), digest.lower()


def _checked(verdict: dict[str, Any], anchor: tuple[int, str] | None,
             found: str | None = None) -> dict[str, Any]:
    """The verdict, broken if the chain does not hold the anchored hash at its seq (a run
    with no chain at all holds none: it was stripped to pass an edit off as old data)."""
    if anchor is None or verdict["status"] not in ("verified", "unchained"):
        return verdict
    seq, want = anchor
    if found == want:
        return dict(verdict, anchor={"seq": seq, "hash": want, "matches": True})
    message = (f"action #{seq}'s chain hash is not the anchored one: the run was rewritten "
               f"up to #{seq} and its chain recomputed" if found else
               f"the run has no chained action #{seq}: the anchored actions were removed")
    return dict(verdict, status="broken", message=message,
                anchor={"seq": seq, "hash": want, "matches": False},
                **{"break": {"seq": seq, "kind": "edited", "action_id": None,
                             "message": message}})


def _print(v: dict[str, Any]) -> None:
    mark = {"verified": "ok", "broken": "BROKEN", "unchained": "not chained"}.get(
        v["status"], v["status"])
    print(f"{v['run_id']}: {mark} — {v['message']}")
    if v["status"] == "verified" and v.get("head"):
        print(f"  head {v['head']} (action #{v['actions']}); anchor it as "
              f"{v['actions']}:{v['head']}")
    if v.get("anchor", {}).get("matches"):
        print(f"  matches the anchor at #{v['anchor']['seq']}")


# -- an export, offline ------------------------------------------------------------------------
def verify_export(path: Path) -> list[dict[str, Any]]:
    """Each run of an export with its actions, verified from the file alone (with
    ``hashes``: each action's chain hash by seq, for an anchor). A file that is no such
    export, or holds no run, is an error: an export emptied of its runs must not pass."""
    verdicts = []
    for run, actions in _runs(path):
        if not isinstance(run.get("id"), str) or type(run.get("action_count")) is not int:
            raise TitanError(f"{path}: a run without its id and action_count: not an export "
                             "of `titan runs export --actions`")
        if any(not isinstance(a, dict) or type(a.get("seq")) is not int for a in actions):
            raise TitanError(f"{path}: run {run['id']} has an action without an integer seq: "
                             "not an export of `titan runs export --actions`")
        hashes: dict[int, str] = {}
        # In seq order, as the master verifies: the chain is over seq, and lines moved in
        # the file are not a tampering (seq values swapped are, and show as reordered).
        rows = [_row(a, hashes) for a in sorted(actions, key=lambda a: a["seq"])]
        since = run.get("ledger_since")
        verdict = verify(run["id"], run["action_count"], run.get("chain_head"),
                         run.get("chain_start"), rows,
                         chained_since=float(since) if isinstance(since, int | float) else None)
        previews = sum(r["_previews"] for r in rows)
        if previews and verdict["status"] != "broken":
            verdict["message"] += (
                f"; {previews} payload{'' if previews == 1 else 's'} not checked: exported as "
                "previews (blobs the exporting master could not read; their hashes are "
                "chained, their text is not in the file — verify against the master)")
        if verdict["status"] == "unchained" and since is None:
            verdict["message"] += (" (the file says nothing of when its master began chaining"
                                   " — `ledger_since`: a chain stripped from an export looks "
                                   "the same; verify against the master to tell)")
        verdicts.append({**{k: v for k, v in verdict.items()
                            if k not in ("read", "through", "last_hash")},
                         "run_id": run["id"], "payloads_unchecked": previews, "hashes": hashes})
    if not verdicts:
        raise TitanError(f"{path} holds no run: nothing was verified (an export of `titan runs "
                         "export --actions` has each run with its actions)")
    return verdicts


def _runs(path: Path) -> list[tuple[dict[str, Any], list[dict[str, Any]]]]:
    """The runs of a JSON or JSONL export with their actions; a clear error for anything
    else (a CSV export, a file that is not there or not text)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TitanError(f"no such file: {path}") from None
    except IsADirectoryError:
        raise TitanError(f"{path} is a directory, not an export") from None
    except UnicodeDecodeError:
        raise TitanError(f"{path} is not UTF-8 text: not an export") from None
    except OSError as exc:
        raise TitanError(f"cannot read {path}: {exc.strerror or exc}") from None
    hint = "verify takes a JSON or JSONL export made with `titan runs export --actions`"
    try:
        whole = json.loads(text)
    except ValueError:
        whole = None  # JSON Lines, or not an export at all (below)
    if whole is not None:
        if not isinstance(whole, dict) or not isinstance(whole.get("runs"), list) \
                or not all(isinstance(r, dict) for r in whole["runs"]):
            raise TitanError(f'{path} is JSON but not an export ({{"runs": [...]}}): {hint}')
        out = []
        for run in whole["runs"]:
            if not isinstance(run.get("actions"), list):
                raise TitanError(f"{path} holds no actions: export with --actions")
            out.append((run, run["actions"]))
        return out
    runs: dict[str, tuple[dict[str, Any], list[dict[str, Any]]]] = {}
    actions: list[tuple[int, dict[str, Any]]] = []
    last: str | None = None
    for number, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except ValueError:
            raise TitanError(f"{path}, line {number}: not JSON: {hint}") from None
        kind = item.get("type") if isinstance(item, dict) else None
        if kind == "run":
            last = str(item.get("id"))
            runs[last] = (item, [])
        elif kind == "action":
            # Filed under the run it names (an export's lines may have been moved), else the
            # run line before it.
            actions.append((number, dict(item, run_id=item.get("run_id", last))))
        else:
            raise TitanError(f"{path}, line {number}: neither a run nor an action: {hint}")
    for number, action in actions:
        if action["run_id"] not in runs:
            raise TitanError(f"{path}, line {number}: an action of run {action['run_id']!r}, "
                             "whose run line is not in the file (the export was cut)")
        runs[action["run_id"]][1].append(action)
    return list(runs.values())


def _row(a: dict[str, Any], hashes: dict[int, str]) -> dict[str, Any]:
    """An exported action (the API's shape) back as the row its hashes were computed on."""
    error, usage = a.get("error") or {}, a.get("usage") or {}
    row = {k: a.get(k) for k in ledger.CONTENT_FIELDS}
    row.update(seq=a["seq"], chain_hash=a.get("chain_hash"),
               error_type=error.get("type"), error_message=error.get("message"),
               pii=a.get("pii_fields") or None,
               **{k: usage.get(k) for k in ("input_tokens", "output_tokens", "cached_tokens",
                                            "reasoning_tokens")})
    previews = 0
    for side in ("inputs", "outputs"):
        # A payload exported whole is checked against its hash; a preview cannot be. Only a
        # payload past the inline limit (by its chained size) was ever kept as a preview: a
        # smaller one marked as a preview, or its flag removed, is checked all the same (the
        # flag is not chained: unchecking a rewritten payload was one edit away).
        size, value, recorded = a.get(f"{side}_size"), a.get(side), a.get(f"{side}_hash")
        inline = type(size) is int and size <= ledger.INLINE_BYTES
        if recorded is not None and not inline and a.get(f"{side}_complete") is not True:
            row[side], row[f"{side}_blob"] = None, True
            previews += 1
        else:  # whole; or none recorded, so none may be shown
            row[side] = None if value is None and recorded is None else \
                ledger.canonical(value)
            row[f"{side}_blob"] = False
    row["_previews"] = previews
    problem = _derived_problem(a)
    if problem is not None:
        row["_payload_problem"] = problem
    if a.get("chain_hash"):
        hashes[a["seq"]] = a["chain_hash"]
    return row


def _derived_problem(a: dict[str, Any]) -> str | None:
    """Whether a copy the export shows beside a hashed field no longer agrees with it: the
    chain covers ``duration_ns``, ``pii_fields`` and ``actor``, and a reader of the file
    reads ``duration_ms``, ``pii`` and ``stage`` (edited, they verified ok)."""
    ns = a.get("duration_ns")
    if "duration_ms" in a and isinstance(ns, int) and a["duration_ms"] != round(ns / 1e6, 3):
        return "its duration_ms is not its duration_ns"
    if "pii" in a:
        counts: dict[str, int] = {}
        for found in (a.get("pii_fields") or {}).values():
            merge(counts, found)
        if (a.get("pii") or {}) != counts:
            return "its pii counts are not those of its pii_fields"
    actor = a.get("actor")
    if "stage" in a and isinstance(actor, str) and \
            a["stage"] != (actor.split("/", 1)[0] if "/" in actor else None):
        return "its stage is not its actor's"
    return None
