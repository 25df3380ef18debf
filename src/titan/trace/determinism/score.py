"""The determinism score (0-100) and its band; weights in the package docstring."""

from __future__ import annotations

import math
from collections.abc import Iterable

from titan.trace.determinism.findings import Finding

WEIGHTS = {"critical": 25.0, "high": 12.0, "medium": 5.0, "low": 1.0}
REPEAT = 0.5  # a second, third ... finding of a kind in one place costs half
CAP = 2.5  # one kind in one place never costs more than 2.5 times its worst weight

BANDS = (
    (90, "Highly deterministic", "green"),
    (70, "Moderately deterministic", "yellow"),
    (50, "Low determinism", "orange"),
    (0, "Highly non-deterministic", "red"),
)


def band(score: int) -> dict[str, object]:
    """The band ``score`` falls in: ``{"label", "color", "min"}``."""
    for low, label, color in BANDS:
        if score >= low:
            return {"label": label, "color": color, "min": low}
    low, label, color = BANDS[-1]
    return {"label": label, "color": color, "min": low}


def penalty(findings: Iterable[Finding]) -> float:
    """What the findings cost, before clamping: see the package docstring."""
    groups: dict[tuple[str, str], list[float]] = {}
    for f in findings:
        # Findings without a file (dynamic, replay) share one place per source.
        place = f.file if f.file is not None else f"<{f.source}>"
        groups.setdefault((f.kind, place), []).append(WEIGHTS[f.severity])
    total = 0.0
    for weights in groups.values():
        weights.sort(reverse=True)
        cost = weights[0] + REPEAT * sum(weights[1:])
        total += min(cost, CAP * weights[0])
    return total


def score(findings: Iterable[Finding]) -> int:
    """100 minus the penalty, clamped to 0..100; rounded down, so that a score is never
    rounded up into a better band."""
    return max(0, min(100, math.floor(100 - penalty(findings))))
