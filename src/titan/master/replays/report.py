"""What the Simulation and Determinism tabs show: a replay's report and a run's determinism.

Both are computed when asked, inside one read transaction: the replay report compares the
replay's actions with its original's (:func:`titan.trace.compare.compare`), the determinism
report analyses the run's code and recorded values (:mod:`titan.trace.determinism`) together
with what its replays found.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

from titan.storage.base import Row, Transaction
from titan.storage.blobs import BlobStore
from titan.trace.compare import MESSAGES, compare, json_diff

PREVIEW = 300
MAX_ROWS = 500
MAX_DIVERGENCES = 200
REPLAYS_ANALYSED = 20


def _slim(actions: Iterator[Row], preview: int = PREVIEW) -> Iterator[Row]:
    """Actions with their payloads cut to previews: a long run's report holds no payloads."""
    for a in actions:
        yield {k: a[k] for k in ("seq", "id", "parent_id", "actor", "channel", "name",
                                 "ordinal", "inputs_hash", "outputs_hash", "outcome",
                                 "replay_status", "cost_usd", "error_type", "error_message",
                                 "started_at", "duration_ns")} | {
            "inputs": (a["inputs"] or "")[:preview], "outputs": (a["outputs"] or "")[:preview]
            if a["outputs"] is not None else None}


def _side(a: Row | None) -> Row | None:
    if a is None:
        return None
    out = {"seq": a["seq"], "name": a["name"], "inputs": a["inputs"], "outputs": a["outputs"],
           "outcome": a["outcome"], "replay_status": a.get("replay_status")}
    if a.get("error_type"):
        out["error"] = f"{a['error_type']}: {a.get('error_message') or ''}"[:PREVIEW]
    return out


def _full(tx: Transaction, blobs: BlobStore, run_id: str, seq: int, side: str) -> Any:
    a = tx.get_action(run_id, seq)
    if a is None:
        return None
    text = a[side]
    if a[f"{side}_blob"] and a[f"{side}_hash"]:
        stored = blobs.read_text(a[f"{side}_hash"])
        text = text if stored is None else stored
    try:
        return json.loads(text) if text is not None else None
    except ValueError:
        return text


def replay_report(tx: Transaction, blobs: BlobStore, run: Row) -> Row:
    """The report of replay run ``run`` against its original."""
    settings = run.get("replay") or {}
    orig_id = run["replay_of"]
    orig = tx.get_run(orig_id)
    fork_at = settings.get("fork_at")
    result = compare(_slim(tx.iter_actions(orig_id)) if orig else iter(()),
                     _slim(tx.iter_actions(run["id"])), fork_at=fork_at,
                     failed=run.get("status") == "failed")
    divergences = []
    for r in result["divergences"][:MAX_DIVERGENCES]:
        actor, channel, name, ordinal = r["key"]
        d = {"kind": r["status"], "actor": actor, "channel": channel, "name": name,
             "ordinal": ordinal, "message": MESSAGES[r["status"]],
             "original": _side(r["original"]), "replay": _side(r["replay"]), "diff": []}
        if r["status"] == "leak" and r["replay"] is not None:
            d["message"] += f": {r['replay']['inputs']}"
        if r["status"] in ("input_mismatch", "output_mismatch") and r["original"] and r["replay"]:
            side = "inputs" if r["status"] == "input_mismatch" else "outputs"
            d["diff"] = json_diff(_full(tx, blobs, orig_id, r["original"]["seq"], side),
                                  _full(tx, blobs, run["id"], r["replay"]["seq"], side))
        divergences.append(d)
    unrecorded = [{"actor": r["key"][0], "channel": r["key"][1], "name": r["key"][2],
                   "ordinal": r["key"][3], "message": MESSAGES["unrecorded"],
                   "replay": _side(r["replay"])}
                  for r in result["unrecorded"][:MAX_DIVERGENCES]]
    counts: dict[str, int] = {}
    for r in result["divergences"]:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    rows = [{"actor": r["key"][0], "channel": r["key"][1], "name": r["key"][2],
             "ordinal": r["key"][3], "original": _side(r["original"]),
             "replay": _side(r["replay"]), "status": r["status"]}
            for r in result["rows"][:MAX_ROWS]]
    return {
        "run_id": run["id"], "replay_of": orig_id, "status": run["status"],
        "error": run.get("error"),
        "settings": {"mode": settings.get("mode", "strict"), "code": settings.get("code",
                                                                                "recorded"),
                     "fork_at": fork_at,
                     "overrides": sorted(int(s) for s in settings.get("overrides") or {}),
                     "model": settings.get("model"),
                     "allow_live": bool(settings.get("allow_live")),
                     "verify": bool(settings.get("verify"))},
        "original": _totals(orig), "replay": _totals(run),
        "savings_usd": _savings(orig, run),
        "recorded": result["recorded"], "matched": result["matched"],
        "match_rate": result["match_rate"], "stopped": result["stopped"],
        # Calls that ran for real (not served) and connections let through: a replay that
        # reached the world says so here, and its cost is in "replay".
        "live_calls": result["live"],
        # Of them, those made outside any run (a driver before its first stage): the
        # original made them unrecorded too, so they are no divergence.
        "unrecorded_calls": unrecorded,
        "divergence_count": len(result["divergences"]), "divergences_by_kind": counts,
        "divergences": divergences,
        "first_divergence": divergences[0] if divergences else None,
        "comparison": rows, "comparison_total": len(result["rows"]),
        "fork": ({"at": fork_at, "served": result["served"],
                  "overridden": result["overridden"], "live": result["live"]}
                 if fork_at is not None else None),
    }


def _savings(orig: Row | None, run: Row) -> float | None:
    """What serving the recording saved, from the calls of known price: unknown (None) when
    the replay made LLM calls of unknown price (a fork asking an unpriced model) or none of
    the original's calls was priced — its $0 is no cost — and a lower bound when only some
    were (``original.unpriced_calls``), as the original's own cost is."""
    if orig is None or run.get("unpriced_calls"):
        return None
    cost = float(orig["cost_usd"] or 0.0)
    if orig.get("unpriced_calls") and not cost:
        return None
    return round(max(0.0, cost - float(run["cost_usd"] or 0.0)), 8)


def _totals(run: Row | None) -> Row | None:
    if run is None:
        return None
    end = run.get("ended_at") or run.get("last_action_at")
    start = run.get("started_at") or run["created_at"]
    return {"status": run["status"], "error": run.get("error"),
            "cost_usd": round(float(run["cost_usd"] or 0.0), 8),
            "unpriced_calls": run.get("unpriced_calls") or 0,
            "action_count": run["action_count"],
            "duration_s": round(end - start, 3) if end else None}


def replays_view(rows: list[Row]) -> list[Row]:
    """The replays of a run as the Simulation tab lists them (match rates come with the
    report of each; listing only says what is cheap)."""
    return [{"run_id": r["id"], "status": r["status"], "started_at": r["started_at"],
             "ended_at": r["ended_at"], "action_count": r["action_count"],
             "cost_usd": r["cost_usd"], "unpriced_calls": r.get("unpriced_calls") or 0,
             "settings": {k: v for k, v in (r.get("replay") or {}).items()
                          if k in ("mode", "code", "fork_at", "model", "allow_live",
                                   "verify")}} for r in rows]


def code_files(tx: Transaction, blobs: BlobStore, run: Row) -> dict[str, str]:
    """The run's source files by display path (relative to their common directory): the
    driver's files and every job script its stages ran."""
    by_sha: dict[str, str] = {}
    code = run.get("code") or {}
    paths = dict(code.get("files") or {})
    root = os.path.commonpath([os.path.dirname(p) for p in paths]) if paths else ""
    for path, sha in sorted(paths.items()):
        by_sha.setdefault(sha, os.path.relpath(path, root) if root else path)
    for name, sha in tx.run_scripts(run["id"]):
        by_sha.setdefault(sha, name)
    files: dict[str, str] = {}
    for sha, name in by_sha.items():
        if not name.endswith(".py"):
            continue
        try:
            text = blobs.read_text(sha, limit=2 << 20)
        except (OSError, UnicodeDecodeError):
            continue
        if text is not None:
            files[name] = text
    return files


def determinism_report(tx: Transaction, blobs: BlobStore, run: Row) -> Row:
    from titan.trace.determinism import analyze

    files = code_files(tx, blobs, run)
    divergences: list[Row] = []
    # Only replays of the code as recorded, unchanged, say how deterministic the run is; a
    # replay of edited code, with overrides or a fork tests a change, and its departures
    # are the change's, not the run's.
    replays = [r for r in tx.replays_of(run["id"], REPLAYS_ANALYSED) if _faithful(r)]
    for rep in replays:
        result = compare(_slim(tx.iter_actions(run["id"])), _slim(tx.iter_actions(rep["id"])),
                         fork_at=(rep.get("replay") or {}).get("fork_at"),
                         failed=rep.get("status") == "failed")
        # Calls that ran live outside any run are no divergence, but the run's result
        # depends on what they returned: evidence for the analysis all the same.
        for r in [*result["divergences"], *result["unrecorded"]]:
            actor, channel, name, ordinal = r["key"]
            divergences.append({"kind": r["status"], "actor": actor, "channel": channel,
                                "name": name, "ordinal": ordinal,
                                "message": MESSAGES[r["status"]], "replay_run_id": rep["id"]})
    report: Row = analyze(files, _slim(tx.iter_actions(run["id"]), 2000), divergences,
                          replays=len(replays))
    report["run_id"] = run["id"]
    if not files and not replays and not (run.get("code") or {}).get("driver") \
            and report["score"] is not None:
        # No code (a run imported over OTLP, or recorded over the HTTP API): nothing can run
        # it again, so a score would answer a question nobody can ask ("100/100 Highly
        # deterministic ... Analyzed 0 files"). What its outputs show is still listed.
        report.update(score=None, band=NO_CODE_BAND)
    return report


NO_CODE_BAND: Row = {"label": "Not applicable: no code recorded for this run", "color": "grey",
                     "min": None}


def _faithful(replay: Row) -> bool:
    """Whether a replay ran the recorded code as recorded (no edit, override, fork or model)."""
    s = replay.get("replay") or {}
    return str(s.get("code") or "recorded") == "recorded" and not s.get("overrides") \
        and s.get("fork_at") is None and not s.get("model")
