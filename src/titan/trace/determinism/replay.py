"""Replay evidence: divergences that replays of the run actually found, and the calls they
had to make live because the run never recorded them.

Static and dynamic findings say what might differ; a replay that got another output for the
same inputs proves it. Divergences are aggregated by (kind, actor, name), so an action that
diverged in every one of twenty replays is one finding that says twenty.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from titan.trace.determinism.findings import Finding, make

# Replay divergence kind -> (finding kind, severity, what it means).
MEANING = {
    "output_mismatch": ("output_mismatch", "critical",
                        "Same inputs, different outputs: non-deterministic"),
    "leak": ("network_io", "critical",
             "An unrecorded side effect reached the outside world during replay"),
    "unrecorded": ("network_io", "medium",
                   "A call made outside the recorded run ran live on replay: the recording "
                   "cannot answer it, so the run's result depends on it"),
    "input_mismatch": ("divergence", "high",
                       "The replay called it with other inputs than the original run"),
    "extra": ("divergence", "high", "The replay made a call the original run did not"),
    "missing": ("divergence", "high", "The replay skipped a call the original run made"),
    "name_mismatch": ("divergence", "high", "The replay called something else at this point"),
    "not_replayable": ("divergence", "high",
                       "It returned a value recorded only as its repr (an object JSON cannot "
                       "hold, a generator): a replay cannot give it back"),
}
TITLES = {"leak": "Side effect leaked on replay"}
FALLBACK = ("divergence", "high", "The replay diverged from the original run")


def scan(divergences: Iterable[dict[str, Any]]) -> tuple[list[Finding], set[str]]:
    """Findings from replay divergences, and the ids of the replays they came from."""
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    replays: set[str] = set()
    for d in divergences:
        kind = str(d.get("kind") or "")
        if kind == "redacted":  # the recording's choice (PII redaction), not the code's
            continue
        key = (kind, str(d.get("actor") or "?"), str(d.get("name") or "?"))
        groups.setdefault(key, []).append(d)
        if d.get("replay_run_id"):
            replays.add(str(d["replay_run_id"]))
    findings = []
    for (kind, actor, name), items in groups.items():
        finding_kind, severity, meaning = MEANING.get(kind, FALLBACK)
        first = items[0]
        where = f'"{name}" of {actor}'
        if first.get("channel"):
            where += f" ({first['channel']})"
        if first.get("ordinal") is not None:
            where += f", call #{first['ordinal']}"
        times = f" Found {len(items)} times." if len(items) > 1 else ""
        message = str(first.get("message") or "").strip()
        description = f"{meaning}: {where}." + (f" {message}" if message else "") + times
        findings.append(make(finding_kind, severity, description, title=TITLES.get(kind),
                             action=name, source="replay"))
    return findings, replays
