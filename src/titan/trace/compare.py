"""Where a replay departed from its original: the comparison of two runs' actions by key.

Both runs' actions are matched by (actor, channel, name, ordinal) — the key the SDK answered
each replayed call by — so the order in which parallel actors ran never matters. For each key:

- **match**: both sides, same input hash (and, for a call re-run in verify mode, the same
  output hash);
- **input_mismatch**: same call, different inputs (with a structural JSON diff);
- **output_mismatch**: a call marked pure, re-run in verify mode, answered differently, or a
  served block (``trace.action``) whose code set other outputs than the recorded ones;
- **name_mismatch**: at a position of an actor, the replay called another name of the same
  channel than the recording (the two are paired, not reported as an extra plus a missing);
- **extra**: a call the recording does not have; **missing**: a recorded call never made
  (one recorded inside a call the replay served is **covered**: its answer was served with
  it, and it counts as a match);
- **leak**: a connection the replay's code opened itself (channel ``network``), refused or
  let through (``--allow-live``);
- **redacted**: a recorded call the replay could not serve, its outputs having been redacted
  (PII) before storage, or being bytes recorded before Titan kept them (only their sha256)
  — the replay refused it or stopped there;
- **not_replayable**: a recorded call the replay could not serve because what it returned was
  recorded only as its repr (an object JSON cannot hold, a generator: ``{"$repr": ...}``) —
  the code's doing, unlike a redaction; the replay refused it or stopped there.

Not divergences: calls the replay made outside any run (``unrecorded``: a driver before its
first stage, a helper process that sees no run of its own) — the original made them where
nothing recorded them, so there is nothing to diverge from; they ran live, as they did there,
to the model, the tool, the network, and are counted as live calls with what they cost (what
they returned shows downstream: a stage given other inputs is an ``input_mismatch``) —; calls
past a fork point (``forked``) or given an override (``override``),
recorded calls a fork replaced (``replaced``), and — when a strict replay stopped at its first
divergence, or a lenient one failed after a call it refused (its ``ReplayMiss`` ends the
script unless the script catches it) — the recorded calls it never reached (``not_reached``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from difflib import SequenceMatcher
from typing import Any

from titan.trace.canonical import NOT_REPLAYABLE_SAYS

Key = tuple[str, str, str, int]
DIVERGENCES = ("name_mismatch", "input_mismatch", "extra", "missing", "output_mismatch", "leak",
               "redacted", "not_replayable")
MESSAGES = {
    "name_mismatch": "Action name mismatch: a different call was made at this position",
    "input_mismatch": "Input mismatch: same call, different inputs",
    "extra": "Extra call: the recording has no such call",
    "missing": "Missing call: recorded, never made by the replay",
    "output_mismatch": "Output mismatch: same inputs, different outputs (non-deterministic!)",
    "leak": "Leak: a network call Titan did not intercept",
    "unrecorded": "Ran live, unrecorded: made outside any run (a driver before its first "
                  "stage, a helper process), where the original did not record it either; its "
                  "cost is the replay's. To have it served, make it inside the run (`with "
                  "titan.trace.run(run_id):` around the driver)",
    "redacted": "Redacted: the recorded outputs were redacted (PII) before storage, or are "
                "bytes recorded before Titan kept them, so the replay could not serve them",
    "not_replayable": "Not replayable: what the call returned was recorded only as its repr "
                      "(an object JSON cannot hold, a generator), so the replay could not "
                      "serve it",
}
MAX_DIFF = 50
#: The replay statuses of calls that ran for real (titan.trace.recorded.Decision.live).
LIVE = ("forked", "live", "verified", "unrecorded")


#: The hash of ``null``: what a call that returned nothing records, unless its outcome was not
#: a success, when no hash is kept (a served call's outcome is "replayed").
_NULL = hashlib.sha256(b"null").hexdigest()


def _outputs(a: dict[str, Any]) -> str:
    return a.get("outputs_hash") or _NULL


def key_of(a: dict[str, Any]) -> Key:
    return (a["actor"], a["channel"], a["name"], int(a["ordinal"]))


def _latest(actions: Iterable[dict[str, Any]]) -> tuple[dict[Key, dict[str, Any]],
                                                        list[dict[str, Any]]]:
    """By key, the latest action (a retried job records its calls once per attempt; the
    last attempt is the one that counted), and the network actions apart."""
    by_key: dict[Key, dict[str, Any]] = {}
    network: list[dict[str, Any]] = []
    for a in actions:
        if a["channel"] == "network":
            network.append(a)
            continue
        k = key_of(a)
        old = by_key.get(k)
        if old is None or a["seq"] > old["seq"]:
            by_key[k] = a
    return by_key, network


def _per_actor(by_key: dict[Key, dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for a in sorted(by_key.values(), key=lambda a: a["seq"]):
        out.setdefault(a["actor"], []).append(a)
    return out


def compare(original: Iterable[dict[str, Any]], replay: Iterable[dict[str, Any]], *,
            fork_at: int | None = None, failed: bool = False) -> dict[str, Any]:
    """Rows (``status`` per key) and divergences of ``replay`` against ``original``.

    Each action needs seq, actor, channel, name, ordinal, inputs_hash, outputs_hash, outcome
    and replay_status; rows keep references to the actions for the caller to render.
    ``failed``: the replay's run failed (after a refused call, what it did not make was not
    reached)."""
    orig, _ = _latest(original)
    rep, leaks = _latest(replay)
    stopped = any(a.get("replay_status") == "stopped" for a in rep.values()) or (
        failed and any(a.get("replay_status") == "refused" for a in rep.values()))
    orig_order, rep_order = _per_actor(orig), _per_actor(rep)
    rows: dict[Key, dict[str, Any]] = {}
    for k, r in rep.items():
        o = orig.get(k)
        status = r.get("replay_status")
        if o is None:
            kind = "forked" if status == "forked" else "unrecorded" if status == "unrecorded" \
                else "extra"
        elif status == "override":
            kind = "override"
        elif status == "forked":
            kind = "forked"
        elif r["inputs_hash"] != o["inputs_hash"]:
            kind = "input_mismatch"
        elif _outputs(r) != _outputs(o) and (
                status == "verified" or status == "served" and r["channel"] != "llm"):
            # A served tool, clock or random value is recorded as served; a served block
            # (trace.action) as its code left it: other outputs are the code's own doing.
            # (A served LLM call is recorded from the response object rebuilt around it.)
            kind = "output_mismatch"
        elif status == "stopped" and r.get("outputs_hash") and _outputs(r) != _outputs(o):
            # A strict replay stops at a call that answered otherwise (titan.trace.actions):
            # recorded with the outputs it gave, and as the stop, so what follows is not
            # reached rather than missing.
            kind = "output_mismatch"
        elif status in ("refused", "stopped"):
            # A recorded call with the same inputs is refused only when its outputs were
            # redacted, or are bytes a run recorded before Titan kept them (only their
            # hash, titan.trace.replay), or hold what was recorded only as its repr (the
            # refusal says so): the recording cannot answer it.
            kind = "not_replayable" if NOT_REPLAYABLE_SAYS in str(
                r.get("error_message") or "") else "redacted"
        else:
            kind = "match"
        rows[k] = {"key": k, "original": o, "replay": r, "status": kind}
    # Pair an extra call with the missing one recorded at the same position of its actor.
    for actor, made in rep_order.items():
        recorded = orig_order.get(actor, [])
        for pos, r in enumerate(made):
            row = rows[key_of(r)]
            if row["status"] != "extra" or pos >= len(recorded):
                continue
            o = recorded[pos]
            ok = key_of(o)
            # Same channel, other name: the agent chose another tool (or step) there. A call
            # of another channel is an extra call inserted before the recorded one.
            if o["channel"] == r["channel"] and ok not in rep and ok not in rows:
                row.update(original=o, status="name_mismatch")
                rows[ok] = {"key": ok, "original": o, "replay": r, "status": "paired"}
    served = {r["original"]["id"] for r in rows.values()
              if r["original"] is not None and r["original"].get("id")
              and r["replay"] is not None
              and r["replay"].get("replay_status") in ("served", "override")}
    by_id = {o["id"]: o for o in orig.values() if o.get("id")}
    for k, o in orig.items():
        if k in rows:
            continue
        if fork_at is not None and o["seq"] >= fork_at:
            kind = "replaced"
        elif _inside(o, served, by_id):
            kind = "covered"  # recorded inside a call the replay served: never to be made
        elif stopped:
            kind = "not_reached"
        else:
            kind = "missing"
        rows[k] = {"key": k, "original": o, "replay": None, "status": kind}
    ordered = sorted((r for r in rows.values() if r["status"] != "paired"),
                     key=lambda r: (r["original"]["seq"] if r["original"] is not None
                                    else 1 << 62, r["replay"]["seq"] if r["replay"] else 0))
    for a in leaks:
        # A replayed driver's connection before its first stage was let through as its
        # original's was, unrecorded there too: a live call, not a leak.
        kind = "unrecorded" if a.get("replay_status") == "unrecorded" else "leak"
        ordered.append({"key": key_of(a), "original": None, "replay": a, "status": kind})
    in_scope = [k for k, o in orig.items() if fork_at is None or o["seq"] < fork_at]
    matched = sum(1 for k in in_scope if rows[k]["status"] in ("match", "covered"))
    return {
        "rows": ordered,
        "divergences": [r for r in ordered if r["status"] in DIVERGENCES],
        "unrecorded": [r for r in ordered if r["status"] == "unrecorded"],
        "recorded": len(in_scope), "matched": matched,
        "match_rate": round(matched / len(in_scope), 4) if in_scope else None,
        "stopped": stopped,
        "served": sum(1 for r in rep.values() if r.get("replay_status") == "served"),
        "overridden": sum(1 for r in rep.values() if r.get("replay_status") == "override"),
        # Every call that ran for real rather than from the recording, and every connection
        # let through: what a replay that says it cost nothing must not have.
        "live": sum(1 for r in rep.values() if r.get("replay_status") in LIVE)
        + sum(1 for a in leaks if a.get("outcome") == "success"),
    }


def _inside(action: dict[str, Any], served: set[str], by_id: dict[str, dict[str, Any]]) -> bool:
    """Whether ``action`` was recorded inside (at any depth) a call in ``served``."""
    seen: set[str] = set()
    parent = action.get("parent_id")
    while parent and parent not in seen:
        if parent in served:
            return True
        seen.add(parent)
        parent = (by_id.get(parent) or {}).get("parent_id")
    return False


def json_diff(original: Any, replay: Any, path: str = "$") -> list[dict[str, Any]]:
    """Where two JSON values differ, as paths (``$.messages[1].content``), at most 50."""
    out: list[dict[str, Any]] = []
    _diff(original, replay, path, out)
    return out


def _diff(a: Any, b: Any, path: str, out: list[dict[str, Any]]) -> None:
    if len(out) >= MAX_DIFF:
        return
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            p = f"{path}.{k}" if k.isidentifier() else f"{path}[{json.dumps(k)}]"
            if k not in b:
                out.append({"path": p, "change": "removed", "original": a[k], "replay": None})
            elif k not in a:
                out.append({"path": p, "change": "added", "original": None, "replay": b[k]})
            else:
                _diff(a[k], b[k], p, out)
            if len(out) >= MAX_DIFF:
                return
        return
    if isinstance(a, list) and isinstance(b, list):
        _diff_lists(a, b, path, out)
        return
    if a != b or type(a) is not type(b):
        out.append({"path": path, "change": "changed", "original": a, "replay": b})


def _diff_lists(a: list[Any], b: list[Any], path: str, out: list[dict[str, Any]]) -> None:
    """Align the lists before comparing (difflib's longest matching blocks), so one message
    inserted into a conversation is one ``added`` entry, not every later message ``changed``.
    Paths name the original's index, the replay's for an added element; a changed element is
    compared in depth."""
    def key(x: Any) -> str:
        return json.dumps(x, sort_keys=True, default=str)

    matcher = SequenceMatcher(a=[key(x) for x in a], b=[key(x) for x in b], autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            continue
        for k in range(max(i2 - i1, j2 - j1)):
            i, j = i1 + k, j1 + k
            if i < i2 and j < j2:
                _diff(a[i], b[j], f"{path}[{i}]", out)
            elif i < i2:
                out.append({"path": f"{path}[{i}]", "change": "removed", "original": a[i],
                            "replay": None})
            else:
                out.append({"path": f"{path}[{j}]", "change": "added", "original": None,
                            "replay": b[j]})
            if len(out) >= MAX_DIFF:
                return
