"""Running the judge over the labelled cases and saying how far it agrees with the labels.

Offline: each case's recorded run is handed to :func:`titan.evals.judge.judge` directly, as
the master would hand it a finished run; no master, no simulator. The judge's own time is
measured per case (a model loading on the first call is part of that call's time, so the
median is the figure to quote).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from titan.evals.calibration.cases import CATEGORIES, LABELS, Case
from titan.evals.judge import Verdict, judge

Progress = Callable[[int, int, Case, Verdict, float], None]


@dataclass(frozen=True)
class Outcome:
    case: Case
    verdict: Verdict
    seconds: float

    @property
    def agrees(self) -> bool:
        return self.verdict.verdict == self.case.label

    @property
    def severity(self) -> int:
        """How wrong a disagreement is: a verdict the judge was sure of (completion 5 on a
        FAIL run, 1 on a PASS run) is worse than a hesitant one; no verdict at all ranks
        between."""
        if self.agrees:
            return 0
        tc = self.verdict.task_completion
        if tc is None:
            return 3
        return tc if self.case.label == "FAIL" else 6 - tc


@dataclass(frozen=True)
class Report:
    outcomes: list[Outcome]
    model: str | None
    mode: str

    @property
    def agreement(self) -> float:
        return sum(o.agrees for o in self.outcomes) / len(self.outcomes) if self.outcomes \
            else 0.0

    def confusion(self) -> dict[str, dict[str, int]]:
        """{label: {verdict: count}}; a verdict other than PASS/FAIL counts as N/A."""
        table = {label: {"PASS": 0, "FAIL": 0, "N/A": 0} for label in LABELS}
        for o in self.outcomes:
            got = o.verdict.verdict if o.verdict.verdict in LABELS else "N/A"
            table[o.case.label][got] += 1
        return table

    def by_category(self) -> dict[str, tuple[int, int]]:
        """{category: (agreeing, cases)} for the categories present, in the set's order."""
        out: dict[str, tuple[int, int]] = {}
        for category in CATEGORIES:
            mine = [o for o in self.outcomes if o.case.category == category]
            if mine:
                out[category] = (sum(o.agrees for o in mine), len(mine))
        return out

    def by_source(self) -> dict[str, tuple[int, int]]:
        """{file: (agreeing, cases)}: the held-out file apart from the rest."""
        out: dict[str, tuple[int, int]] = {}
        for o in self.outcomes:
            agree, total = out.get(o.case.source, (0, 0))
            out[o.case.source] = (agree + o.agrees, total + 1)
        return out

    def worst(self, n: int = 10) -> list[Outcome]:
        wrong = [o for o in self.outcomes if not o.agrees]
        return sorted(wrong, key=lambda o: -o.severity)[:n]

    def decided_by_checks(self) -> int:
        return sum(o.verdict.model == "checks" for o in self.outcomes)

    @property
    def median_s(self) -> float:
        return statistics.median(o.seconds for o in self.outcomes) if self.outcomes else 0.0

    @property
    def model_median_s(self) -> float | None:
        """The median time of the verdicts a model gave (the others take milliseconds)."""
        timed = [o.seconds for o in self.outcomes if o.verdict.model != "checks"]
        return statistics.median(timed) if timed else None

    def to_dict(self, worst: int = 10) -> dict[str, Any]:
        return {
            "mode": self.mode, "judge_model": self.model, "cases": len(self.outcomes),
            "agreement": round(self.agreement, 4), "confusion": self.confusion(),
            "by_category": {k: {"agree": a, "cases": t}
                            for k, (a, t) in self.by_category().items()},
            "by_file": {k: {"agree": a, "cases": t} for k, (a, t) in self.by_source().items()},
            "decided_by_checks": self.decided_by_checks(),
            "median_s": round(self.median_s, 3),
            "model_median_s": None if self.model_median_s is None
            else round(self.model_median_s, 3),
            "total_s": round(sum(o.seconds for o in self.outcomes), 3),
            "worst": [{"case": o.case.id, "category": o.case.category, "label": o.case.label,
                       "verdict": o.verdict.verdict, "task_completion": o.verdict.task_completion,
                       "model": o.verdict.model, "reasoning": o.verdict.reasoning,
                       "why_label": o.case.reason} for o in self.worst(worst)],
            "results": [{"case": o.case.id, "label": o.case.label,
                         "verdict": o.verdict.verdict, "model": o.verdict.model,
                         "seconds": round(o.seconds, 3)} for o in self.outcomes],
        }

    def text(self, worst: int = 10) -> str:
        lines = [f"judge: mode {self.mode}, model {self.model or 'default'}; "
                 f"{len(self.outcomes)} cases"]
        agree = sum(o.agrees for o in self.outcomes)
        lines.append(f"agreement: {agree}/{len(self.outcomes)} = {self.agreement:.1%}")
        table = self.confusion()
        lines += ["", "                 judge PASS  judge FAIL  N/A"]
        for label in LABELS:
            row = table[label]
            lines.append(f"labelled {label:<5}  {row['PASS']:>10}  {row['FAIL']:>10}  "
                         f"{row['N/A']:>3}")
        lines += ["", "by category:"]
        for category, (a, t) in self.by_category().items():
            lines.append(f"  {category:<20} {a:>3}/{t:<3} {a / t:.0%}")
        sources = self.by_source()
        if len(sources) > 1:
            lines += ["", "by file:"]
            for source, (a, t) in sources.items():
                lines.append(f"  {source:<20} {a:>3}/{t:<3} {a / t:.0%}")
        model_median = self.model_median_s
        lines += ["", f"time per verdict: median {self.median_s:.2f}s"
                  + (f", {model_median:.1f}s when a model judged" if model_median is not None
                     and self.decided_by_checks() else "")
                  + f"; {self.decided_by_checks()} of {len(self.outcomes)} decided by the "
                  "code checks alone"]
        unscored = [o for o in self.outcomes if o.verdict.verdict not in LABELS]
        if unscored:  # a hosted judge without its key: say why, not just "N/A"
            lines += ["", f"note: {len(unscored)} case(s) got no verdict: "
                          f"{' '.join(unscored[0].verdict.reasoning.split())[:200]}"]
        bad = self.worst(worst)
        if bad:
            lines += ["", f"worst disagreements ({len(bad)} of "
                          f"{len(self.outcomes) - agree}):"]
            for o in bad:
                v = o.verdict
                lines.append(f"- {o.case.id} [{o.case.category}]: labelled {o.case.label}, "
                             f"judged {v.verdict} (completion {v.task_completion}, "
                             f"{v.model or '-'})")
                lines.append(f"    judge: {' '.join(v.reasoning.split())[:300]}")
                lines.append(f"    label: {o.case.reason}")
        return "\n".join(lines)


def calibrate(cases: list[Case], *, model: str | None = None, mode: str = "combined",
              progress: Progress | None = None) -> Report:
    """Judge every case (one process, one model load) and report the agreement."""
    outcomes = []
    for n, case in enumerate(cases, 1):
        started = time.perf_counter()
        verdict = judge(case.task, case.run, model=model, mode=mode)
        seconds = time.perf_counter() - started
        outcomes.append(Outcome(case, verdict, seconds))
        if progress is not None:
            progress(n, len(cases), case, verdict, seconds)
    return Report(outcomes, model, mode)
