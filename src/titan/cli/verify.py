"""``titan runs verify``: a run's ledger checked by the master, against an anchor, or an
export checked here, without a master.

Exit status: 0 when the chain verifies (and matches the anchor given), 3 when it is broken
or the anchor does not match, 4 when nothing could be proven (a run recorded before the
ledger existed), 1 on any other error.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

from titan import ledger
from titan.errors import NotFound, TitanError

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
        run_id = quote(args.run, safe="")
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
    if not seq.isdigit() or len(digest) != 64:
        raise TitanError(f"--anchor must be SEQ:HASH (a seq and a 64-digit sha256), got {text!r}")
    return int(seq), digest.lower()


def _checked(verdict: dict[str, Any], anchor: tuple[int, str] | None,
             found: str | None = None) -> dict[str, Any]:
    """The verdict, broken if an intact chain does not hold the anchored hash at its seq."""
    if anchor is None or verdict["status"] != "verified":
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
    ``hashes``: each action's chain hash by seq, for an anchor)."""
    verdicts = []
    for run, actions in _runs(path):
        hashes: dict[int, str] = {}
        rows = [_row(a, hashes) for a in actions]
        verdict = ledger.verify(run["id"], run["action_count"], run.get("chain_head"),
                                run.get("chain_start"), rows)
        verdicts.append({**{k: v for k, v in verdict.items()
                            if k not in ("read", "through", "last_hash")},
                         "run_id": run["id"], "hashes": hashes})
    return verdicts


def _runs(path: Path) -> Iterator[tuple[dict[str, Any], list[dict[str, Any]]]]:
    with path.open(encoding="utf-8") as fh:
        whole = fh.read(8) == '{"runs":'  # JSON; else JSON Lines
        fh.seek(0)
        if whole:
            for run in json.load(fh)["runs"]:
                if "actions" not in run:
                    raise TitanError("the export holds no actions: export with --actions")
                yield run, run["actions"]
            return
        current: dict[str, Any] | None = None
        actions: list[dict[str, Any]] = []
        for line in fh:
            item = json.loads(line)
            if item.get("type") == "run":
                if current is not None:
                    yield current, actions
                current, actions = item, []
            elif item.get("type") == "action":
                actions.append(item)
        if current is not None:
            yield current, actions


def _row(a: dict[str, Any], hashes: dict[int, str]) -> dict[str, Any]:
    """An exported action (the API's shape) back as the row its hashes were computed on."""
    error, usage = a.get("error") or {}, a.get("usage") or {}
    row = {k: a.get(k) for k in ledger.CONTENT_FIELDS}
    row.update(seq=a["seq"], chain_hash=a.get("chain_hash"),
               error_type=error.get("type"), error_message=error.get("message"),
               pii=a.get("pii_fields") or None,
               **{k: usage.get(k) for k in ("input_tokens", "output_tokens", "cached_tokens",
                                            "reasoning_tokens")})
    for side in ("inputs", "outputs"):
        # A payload exported whole is checked against its hash; a preview cannot be.
        whole = a.get(f"{side}_complete", False)
        row[side] = None if not whole or a.get(f"{side}_hash") is None else \
            ledger.canonical(a[side])
        row[f"{side}_blob"] = not whole
    if a.get("chain_hash"):
        hashes[a["seq"]] = a["chain_hash"]
    return row
