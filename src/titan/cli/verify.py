"""``titan runs verify``: a run's ledger checked by the master, against an anchor, or an
export checked here, without a master.

Exit status: 0 when the chain verifies (and matches the anchor given), 3 when it is broken
or the anchor does not match, 4 when nothing could be proven (a run whose actions are not
chained: they claim to predate the ledger, which cannot be verified), 1 on any other error.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from titan.cli.export_file import ExportFile
from titan.errors import NotFound, TitanError
from titan.url_paths import quote_run

# The ledger (and orjson, which it imports) is imported by what verifies, not at the CLI's
# start: every `titan` command builds the parser, which imports this module (cli/parser.py).

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
                        "--format jsonl`: runs with their actions) here, without a master "
                        "(JSONL is read a run at a time; JSON whole, one document)")


def run(args: argparse.Namespace, client: Any) -> int:
    anchor = _anchor(args.anchor) if args.anchor else None
    if args.export:
        if args.run:
            raise TitanError("name a run or --export FILE, not both")
        verdicts = []
        for v in verify_export(Path(args.export), anchor[0] if anchor else None):
            hashes = v.pop("hashes")
            verdicts.append(_checked(v, anchor, hashes.get(anchor[0]) if anchor else None))
    elif args.run:
        run_id = quote_run(args.run)
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
def verify_export(path: Path, anchor: int | None = None) -> list[dict[str, Any]]:
    """Each run of an export with its actions, verified from the file alone (with
    ``hashes``: action ``anchor``'s chain hash by its seq, when it has one). A file that is
    no such export, or holds no run, is an error: an export emptied of its runs must not
    pass. JSON Lines are read a run at a time (:mod:`titan.cli.export_file`).

    A run the file holds more than once (two exports concatenated) is verified copy by copy:
    identical copies are reported once, with ``copies``; copies that differ each have their
    verdict (with ``copy``), and two that give one action two chain hashes are a conflict:
    one of them was rewritten."""
    verdicts = []
    copies: dict[str, list[tuple[str, dict[str, Any], dict[int, str]]]] = {}
    for number, run in enumerate(ExportFile(path).runs(), 1):
        verdict, hashes = _verify_run(run.run, run.actions, number)
        verdict["hashes"] = {anchor: hashes[anchor]} if anchor in hashes else {}
        if run.copies > 1:
            seen = copies.setdefault(str(run.run.get("id")), [])
            digest = run.fingerprint()
            if any(digest == d for d, _, _ in seen):
                continue  # the same run again, verified as the first copy
            verdict = _against(verdict, hashes, seen)
            seen.append((digest, verdict, hashes))
        verdicts.append(verdict)
    for seen in copies.values():
        for i, (_, verdict, _) in enumerate(seen, 1):
            verdict["copies"] = len(seen)
            if len(seen) == 1:
                verdict["message"] += "; the file holds it more than once, identical"
            else:
                verdict["copy"] = i
                if verdict["break"] is None or verdict["break"]["kind"] != "conflict":
                    verdict["message"] += (f"; copy {i} of {len(seen)} different copies in the "
                                           "file (exports of different moments)")
    if not verdicts:
        raise TitanError(f"{path} holds no run: nothing was verified (an export of `titan runs "
                         "export --format jsonl` has each run with its actions)")
    return verdicts


def _against(verdict: dict[str, Any], hashes: dict[int, str],
             seen: list[tuple[str, dict[str, Any], dict[int, str]]]) -> dict[str, Any]:
    """A copy of a run that differs from the copies before it: a conflict if it gives an
    action another chain hash than one of them (each copy may verify alone, its chain
    recomputed), else its own verdict (a later export: more actions, a run field changed)."""
    if verdict["status"] == "broken":
        return verdict
    for i, (_, other, theirs) in enumerate(seen, 1):
        seq = next((s for s in sorted(hashes) if s in theirs and theirs[s] != hashes[s]), None)
        if seq is not None and other["status"] != "broken":
            message = (f"conflict: copy {len(seen) + 1} of this run in the file gives action "
                       f"#{seq} another chain hash than copy {i}: one of them was rewritten "
                       "(verify against the master, or an anchor, to tell which)")
            return dict(verdict, status="broken", message=message, **{"break": {
                "seq": seq, "kind": "conflict", "action_id": None, "message": message}})
    return verdict


def _verify_run(run: dict[str, Any], actions: Iterable[Any],
                number: int) -> tuple[dict[str, Any], dict[int, str]]:
    """Run ``number`` of a file, verified; and its actions' chain hashes by seq."""
    hashes: dict[int, str] = {}
    # A field the master never writes so (a count as text, an object where a number
    # goes) was put there by hand: the run, or its action, was edited. Said so (exit 3),
    # never a traceback; checked before the walk, which reads them as numbers.
    problem = _run_problem(run)
    rows = []
    if problem is None:
        for i, a in enumerate(actions, 1):
            if not isinstance(a, dict) or type(a.get("seq")) is not int:
                problem = (f"its action {i} in the file has no integer seq: not as "
                           "exported (the action was edited)")
                break
            rows.append(_row(a, hashes))  # the action's text goes: only its row is kept
    if problem is not None:
        run_id = run.get("id") if isinstance(run.get("id"), str) else \
            f"run {number} of the file"
        return {**_edited(problem), "run_id": run_id, "payloads_unchecked": 0}, {}
    # In seq order, as the master verifies: the chain is over seq, and lines moved in
    # the file are not a tampering (seq values swapped are, and show as reordered).
    rows.sort(key=lambda r: r["seq"])
    from titan.ledger_verify import verify

    since = run.get("ledger_since")
    created = run.get("created_at")  # not in exports before it was needed here
    verdict = verify(run["id"], run["action_count"], run.get("chain_head"),
                     run.get("chain_start"), rows,
                     chained_since=None if since is None else float(since),
                     created=None if created is None else float(created))
    malformed = next((r for r in rows if r.get("_malformed")), None)
    if malformed is not None and (verdict["break"] is None
                                  or malformed["seq"] <= verdict["break"]["seq"]):
        # One the walk does not check (recorded before the chain began) is edited too.
        edited = _edited(f"action #{malformed['seq']} was edited: "
                         f"{malformed['_payload_problem']}", malformed["seq"],
                         malformed["id"] or None)
        verdict.update({k: edited[k] for k in ("status", "break", "message")})
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
    return {**{k: v for k, v in verdict.items() if k not in ("read", "through", "last_hash")},
            "run_id": run["id"], "payloads_unchecked": previews}, hashes


def _run_problem(run: dict[str, Any]) -> str | None:
    """What is wrong with a run's own fields, if anything."""
    if not isinstance(run.get("id"), str) or not run["id"]:
        return "the run has no id (its id was removed or replaced)"
    for key, valid in (("action_count", _count), ("chain_head", _opt_str),
                       ("chain_start", lambda v: v is None or type(v) is int and v >= 1),
                       ("ledger_since", lambda v: v is None or _time(v)),
                       ("created_at", lambda v: v is None or _time(v))):
        if not valid(run.get(key)):
            return f"the run's {key} is not what an export holds: the run was edited"
    return None


def _edited(message: str, seq: int | None = None, action_id: str | None = None) -> dict[str, Any]:
    """A broken verdict: the run, or action ``seq``, edited."""
    return {"status": "broken", "actions": None, "checked": 0, "unchained": 0,
            "chained_from": None, "head": None, "verified_through": None,
            "break": {"seq": seq, "kind": "edited", "action_id": action_id, "message": message},
            "message": message}


def _row(a: dict[str, Any], hashes: dict[int, str]) -> dict[str, Any]:
    """An exported action (the API's shape) back as the row its hashes were computed on."""
    from titan import ledger

    malformed = _malformed(a)
    error, usage = a.get("error") or {}, a.get("usage") or {}
    if not isinstance(error, dict):
        error = {}
    if not isinstance(usage, dict):
        usage = {}
    row = {k: a.get(k) for k in ledger.CONTENT_FIELDS}
    row.update(seq=a["seq"], chain_hash=a.get("chain_hash"),
               error_type=error.get("type"), error_message=error.get("message"),
               pii=a.get("pii_fields") or None,
               **{k: usage.get(k) for k in _TOKENS})
    if malformed is not None:
        # What stands in for the fields that are not what the master writes lets the walk go
        # on to this action, where the problem is its break (it never hashes as recorded).
        for key, (valid, stand_in) in _SHAPES.items():
            if key in row and not valid(row[key]):
                row[key] = stand_in
        row.update(pii=None, _malformed=True, **{k: None for k in _TOKENS})
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
    problem = malformed or _derived_problem(a)
    if problem is not None:
        row["_payload_problem"] = problem
    if row["chain_hash"]:
        hashes[a["seq"]] = row["chain_hash"]
    return row


def _opt_str(v: Any) -> bool:
    return v is None or isinstance(v, str)


def _count(v: Any) -> bool:
    return type(v) is int and v >= 0


def _time(v: Any) -> bool:
    return type(v) in (int, float) and math.isfinite(v)


_TOKENS = ("input_tokens", "output_tokens", "cached_tokens", "reasoning_tokens")
#: What each field an action's content reads must be in an export, and what stands in for it
#: when it is not (the action is then reported edited).
_SHAPES: dict[str, tuple[Callable[[Any], bool], Any]] = {
    **{k: (lambda v: isinstance(v, str), "") for k in ("id", "actor", "channel", "name",
                                                       "outcome")},
    **{k: (_opt_str, None) for k in ("parent_id", "model", "cost_source", "replay_status",
                                     "inputs_hash", "outputs_hash", "chain_hash")},
    **{k: (_count, 0) for k in ("ordinal", "duration_ns", "inputs_size", "outputs_size")},
    "started_at": (_time, 0.0), "recorded_at": (_time, 0.0),
    "cost_usd": (lambda v: v is None or _time(v), None),
}


def _malformed(a: dict[str, Any]) -> str | None:
    """Which field of an exported action is not what the master writes there, if any."""
    for key, (valid, _) in _SHAPES.items():
        if not valid(a.get(key)):
            return f"its {key} is not what an export holds ({_kind(a.get(key))})"
    if "pii" in a and not _counts(a["pii"]):
        return f"its pii is not counts by pattern ({_kind(a['pii'])})"
    usage, error, pii = a.get("usage"), a.get("error"), a.get("pii_fields")
    # As the master writes them: usage only the counts it has, an error only when it has a
    # type or a message.
    if usage is not None and not (_counts(usage) and set(usage) <= set(_TOKENS)):
        return f"its usage is not token counts ({_kind(usage)})"
    if error is not None and not (
            isinstance(error, dict) and set(error) == {"type", "message"}
            and all(_opt_str(v) for v in error.values()) and any(error.values())):
        return f"its error is not a type and a message ({_kind(error)})"
    if pii is not None and not (isinstance(pii, dict) and all(
            _counts(found) for found in pii.values())):
        return f"its pii_fields are not counts by field ({_kind(pii)})"
    return None


def _counts(value: Any) -> bool:
    return isinstance(value, dict) and all(_count(n) for n in value.values())


def _kind(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def _derived_problem(a: dict[str, Any]) -> str | None:
    """Whether a copy the export shows beside a hashed field no longer agrees with it: the
    chain covers ``duration_ns``, ``pii_fields``, ``actor`` and ``name``, and a reader of the
    file reads ``duration_ms``, ``pii``, ``stage`` and ``action`` (edited, they verified ok)."""
    ns = a.get("duration_ns")
    if "duration_ms" in a and isinstance(ns, int) and (
            not _time(a["duration_ms"]) or a["duration_ms"] != round(ns / 1e6, 3)):
        return "its duration_ms is not its duration_ns"
    if "pii" in a:
        from titan.redaction import merge

        counts: dict[str, int] = {}
        for found in (a.get("pii_fields") or {}).values():
            merge(counts, found)
        if (a.get("pii") or {}) != counts:
            return "its pii counts are not those of its pii_fields"
    if "action" in a and a["action"] != a.get("name"):
        return "its action is not its name"
    actor = a.get("actor")
    if "stage" in a and isinstance(actor, str) and \
            a["stage"] != (actor.split("/", 1)[0] if "/" in actor else None):
        return "its stage is not its actor's"
    return None
