"""Determinism analysis: how likely a run is to replay the same, and what to fix.

::

    from titan.trace.determinism import analyze

    report = analyze({"agent.py": source}, actions, replay_divergences, replays=3)
    report["score"], report["band"]["label"], report["findings"][0]["recommendation"]

Three kinds of evidence, each a module:

- :mod:`~titan.trace.determinism.static`: the scripts' source, parsed, never run: wall-clock
  reads, UUIDs, unseeded randomness, set iteration order (:mod:`.ordering`), salted
  ``hash()``, float equality, unrecorded network and file I/O, environment and process-id
  reads, and reads of TitanStore keys and artifacts that no file of the run writes
  (:mod:`.keys`). What runs inside a ``@titan.tool`` function, or under ``if not
  a.replayed:`` in a ``with titan.trace.action(...) as a`` block, is not run on replay (its
  recorded result is served), so it is no finding, nor is what runs in a function only such
  bodies call (:mod:`.callers`); ``titan.trace.now()/uuid()/random()``
  are the fix and never a finding.
- :mod:`~titan.trace.determinism.dynamic`: the run's recorded outputs: timestamps, UUIDs,
  process ids and random-looking ids that will differ on replay — of action blocks, and of
  tools a replay may run again (``pure=True`` ones under ``--verify``, and those the code
  does not show); never of a model's reply.
- :mod:`~titan.trace.determinism.replay`: divergences that replays of the run found.

The score is 100 minus a penalty, clamped to 0..100 and rounded down. Each finding costs its
severity's weight: critical 25, high 12, medium 5, low 1. Findings of one kind in one place
(a file; for dynamic and replay findings, the run) are one group: the costliest counts in
full, every further one at half its weight, and a group costs at most 2.5 times its costliest
weight, so that a file with forty environment reads is not scored 0 for that alone. One
unrecorded ``datetime.now()`` and one ``uuid.uuid4()`` cost 24: a score of 76.

Bands: 90-100 highly deterministic (green), 70-89 moderately deterministic (yellow), 50-69
low determinism (orange), 0-49 highly non-deterministic (red). A run with no code, no recorded
action and no replay has no score (``None``): nothing was analysed.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from titan.trace.determinism import dynamic, replay, static
from titan.trace.determinism.findings import SEVERITIES, Finding, recommendations
from titan.trace.determinism.score import band, score

__all__ = ["Finding", "analyze", "band"]


def analyze(files: dict[str, str], actions: Iterable[dict[str, Any]],
            replay_divergences: Iterable[dict[str, Any]] = (),
            replays: int = 0) -> dict[str, Any]:
    """The determinism report of a run, as a JSON-able dict.

    ``files`` maps a display path to source text; ``actions`` are the run's recorded action
    rows in seq order (``seq``, ``name``, ``channel``, ``inputs``, ``outputs`` as JSON text);
    ``replay_divergences`` are what replays of the run found (``kind``, ``actor``, ``name``,
    ``message``, ...), ``replays`` how many replays were analysed. Returns ``score``,
    ``band``, ``findings`` (worst first, then by file and line), ``counts`` per severity,
    ``analyzed`` and one ``recommendations`` entry per kind of finding present.
    """
    reading = static.read_run(files)
    findings = reading.findings
    dynamic_findings, n_actions = dynamic.scan(actions, tools=reading.tools)
    findings.extend(dynamic_findings)
    replay_findings, replay_ids = replay.scan(replay_divergences)
    findings.extend(replay_findings)
    findings.sort(key=Finding.sort_key)

    counts = dict.fromkeys(SEVERITIES, 0)
    for f in findings:
        counts[f.severity] += 1
    scored = score(findings)
    value: int | None = scored
    judged = band(scored)
    if not files and not n_actions and not replay_ids and not replays:
        # No code, no recorded action, no replay: nothing was analysed, and a perfect score
        # would say the opposite.
        value, judged = None, {"label": "Not analysed: the run has no code, recorded actions "
                                        "or replays", "color": "grey", "min": None}
    return {
        "score": value,
        "band": judged,
        "findings": [f.to_dict() for f in findings],
        "counts": counts,
        "analyzed": {"files": list(files), "actions": n_actions,
                     "replays": max(replays, len(replay_ids))},
        "recommendations": recommendations(findings),
    }
