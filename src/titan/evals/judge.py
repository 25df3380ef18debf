"""The built-in judge: code checks first, then at most one LLM call, on a fixed rubric.

Axes (1-5): task completion; instruction adherence (did the simulated tools follow the
task's behaviour instructions; null without any); efficiency (tool calls against the
expected minimal path). Plus a PASS/FAIL verdict, a failure-mode label on FAIL and a short
reasoning that cites trajectory steps.

How a verdict is reached (mode ``combined``, the default): the code checks
(:mod:`titan.evals.checks`) read the recorded run — ledger effects against the task's
expectations, claimed actions against the calls made, figures and states against the tool
results, refusals — and where they settle the verdict no model is asked (the card's
``model`` is then ``checks``, its cost 0). Otherwise the model judges, shown the full tool
results, the seeded world and the facts the checks found, and its answer is post-processed
so the card is consistent (each rule is commented in :func:`_reconcile`). Modes ``model``
(the model alone) and ``code`` (the checks alone, PASS where they find nothing) exist to
measure each part (``titan eval calibrate --mode``). Nothing here raises: a run that cannot
be judged gets verdict ``NOT_APPLICABLE`` with the reason.
"""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from titan import llm
from titan.errors import LLMError
from titan.evals import checks as code_checks
from titan.evals import judge_prompt
from titan.evals.judge_prompt import FAILURE_MODES, plain
from titan.evals.simulator import clip

MAX_TOKENS = 400
MODES = ("combined", "model", "code")
#: What a card decided by the code checks alone names as its model.
CHECKS_MODEL = "checks"
ERROR_SOURCES = code_checks.ERROR_SOURCES

_REFUSAL = re.compile(
    r"\b(i\s+(?:can\s*not|can't|can’t|won't|won’t|will\s+not|am\s+not\s+able|am\s+unable|"
    r"must\s+decline|decline|refuse)|i(?:'|’)m\s+(?:not\s+able|unable)|unable\s+to\s+(?:help|"
    r"assist|comply)|not\s+(?:allowed|permitted|authori[sz]ed)\s+to|against\s+(?:the|our|my)"
    r"\s+polic|i'?m\s+sorry,?\s+but|can(?:no|')t\s+help\s+with)", re.IGNORECASE)
_STEP_CITE = re.compile(r"\bsteps?\s*#?\s*\d+", re.IGNORECASE)
__all__ = ["FAILURE_MODES", "MODES", "Verdict", "efficiency_score", "judge",
           "looks_like_refusal"]


@dataclass
class Verdict:
    """What the judge verdict card shows."""

    verdict: str  # PASS | FAIL | NOT_APPLICABLE
    task_completion: int | None
    instruction_adherence: int | None
    efficiency: int | None
    failure_mode: str | None
    reasoning: str
    cost_usd: float | None
    usage: dict[str, int] = field(default_factory=dict)
    model: str = ""
    steps: int = 0
    expected_steps: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def looks_like_refusal(text: str | None) -> bool:
    """A cheap guess that ``text`` declines the request ("I was unable to find order 7" is
    not a refusal): a refusal with no tool call fails a completion task."""
    return bool(text) and _REFUSAL.search(text or "") is not None


def efficiency_score(steps: int, expected: int) -> int:
    """5 within the minimal path, then one point less per band of overshoot."""
    for score, factor in ((5, 1.0), (4, 1.5), (3, 2.0), (2, 3.0)):
        if steps <= expected * factor:
            return score
    return 1


#: The most of a simulator's error a verdict card quotes.
TOLD = 300
#: Where a sentence ends and the next begins: an error's last one is its advice ("Run `titan
#: llm install --model …`").
_NEXT_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z`(\"'])")


def _told(error: str, limit: int = TOLD) -> str:
    """``error`` in at most ``limit`` characters, its whitespace collapsed. Too long, it loses
    its detail, not its advice: the last sentence is kept whole (when it takes no more than
    two thirds of the room) and what comes before is cut at a word, marked with an ellipsis.
    A card cut at [:300] ended "Run `titan ." — the remedy gone, a word cut in half."""
    text = " ".join(error.split())
    if len(text) <= limit:
        return text
    *detail, advice = _NEXT_SENTENCE.split(text)
    if detail and len(advice) <= limit * 2 // 3:
        return f"{_cut(' '.join(detail), limit - len(advice) - 1)} {advice}"
    return _cut(text, limit)


def _cut(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters at a word's end, an ellipsis marking it."""
    if len(text) <= limit:
        return text
    head = text[:limit - 1]
    space = head.rfind(" ")
    if space >= limit // 2:  # a last word that long (a path, a URL) is cut inside instead
        head = head[:space]
    return head.rstrip(" ,;:") + "…"


def _ended(text: str) -> str:
    """A quoted sentence ended once: "missing x." stays, "missing x" takes its full stop."""
    return text if text.endswith((".", "!", "?", "…")) else text + "."


def judge(task: dict[str, Any], run: dict[str, Any], *, model: str | None = None,
          mode: str = "combined") -> Verdict:
    """Score ``run`` (final_response, messages, tool_calls, error_class, status) against
    ``task`` (:meth:`Task.to_dict`). One LLM call at most; never raises."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    calls = [c for c in run.get("tool_calls") or [] if isinstance(c, dict)]
    expected_steps = task.get("expected_steps")
    has_rules = bool((task.get("behavior_instructions") or "").strip())
    # What every card carries; a card made without a model call cost nothing.
    blank = Verdict("NOT_APPLICABLE", None, None, None, None, "", 0.0, llm.Usage().to_dict(),
                    model or os.environ.get("TITAN_LLM_MODEL") or llm.DEFAULT_MODEL,
                    len(calls), expected_steps)
    final = run.get("final_response")
    if not isinstance(final, str):
        why = f" ({run['error_class']})" if run.get("error_class") else ""
        return replace(blank, reasoning=f"The agent ended without a final response{why}, so "
                                        "there is nothing to judge.")
    status = run.get("status")
    if status not in (None, "completed"):
        # An answer sent before a crash or a timeout is not the run's outcome: judged, a
        # crashed agent was a PASS (and the judge billed) while its row said "failed [5xx]".
        why = f", {run['error_class']}" if run.get("error_class") else ""
        return replace(blank, reasoning=f"The run did not complete ({status}{why}): the "
                                        "judge scores completed runs only, and an agent that "
                                        "answered and then failed still failed.")
    broken = next(((n, c) for n, c in enumerate(calls, 1) if c.get("source") == "error"), None)
    if broken is not None:
        # The simulator could not play a tool (a malformed answer, a model without its key):
        # the agent met a failure the task never set up, and whatever it did next says
        # nothing of how it handles the task. Judged, it was blamed for the simulator.
        step, bad = broken
        return replace(blank, reasoning=(
            f"The simulator could not play step {step} ({bad.get('tool')}): "
            f"{_ended(_told(str(bad.get('error') or 'no answer')))} The run says "
            "nothing of the agent; run it again, or give the evaluation a simulator_model "
            "that plays its tools reliably."))
    if not final.strip():  # nothing to read: no model can find an acceptable outcome in it
        return _reconcile(
            {"task_completion": 1, "verdict": "FAIL", "failure_mode": "empty_response",
             "reasoning": "The agent's final response is empty."},
            task, calls, final, has_rules, blank)
    # A coding run's answer carries its diff and its calls are shell commands: the checks
    # read customer-facing answers and tool results, not code.
    coding = task.get("kind") == "coding" or any(c.get("source") == "workspace" for c in calls)
    found = code_checks.Checks() if mode == "model" or coding else code_checks.check(task, run)
    if found.verdict is not None or mode == "code":
        return _decided(found, task, calls, has_rules, blank)
    try:
        c = llm.complete(judge_prompt.messages(task, run, calls, final, found.facts),
                         model=model, temperature=0, max_tokens=MAX_TOKENS,
                         json_schema=judge_prompt.schema(has_rules, expected_steps is None))
    except LLMError as exc:
        # cost unknown: a failed call may have been billed (the error carries no usage);
        # $0 when no model was there to ask (a local judge that cannot load)
        return replace(blank, cost_usd=0.0 if llm.recording.unsent(exc) else None,
                       reasoning=f"the judge could not score this run: {exc}")
    data = c.data if isinstance(c.data, dict) else {}
    return _reconcile(data, task, calls, final, has_rules,
                      replace(blank, cost_usd=c.cost_usd, usage=c.usage.to_dict(),
                              model=c.model))


def _decided(found: code_checks.Checks, task: dict[str, Any], calls: list[dict[str, Any]],
             has_rules: bool, v: Verdict) -> Verdict:
    """The card for a verdict the code checks settled: their findings are the reasoning."""
    failing = found.failed
    v = replace(v, model=CHECKS_MODEL, verdict="FAIL" if failing else "PASS")
    if failing:
        first = failing[0]
        v.failure_mode = first.failure_mode or "incomplete"
        # Untrue or forbidden outcomes score 1; an expected effect missing is partial work.
        v.task_completion = 2 if first.failure_mode == "incomplete" else 1
        reasoning = " ".join(f.detail for f in failing[:2])
    else:
        v.task_completion = 5
        reasoning = " ".join(f.detail for f in found.findings[:2]) or (
            "The code checks found no problem: no claim without a call, no figure or state "
            "the tool results contradict, no hidden failure.")
    if has_rules:
        # What code can see of the world keeping its rules: operations it refused, and a
        # change the task's expectations forbid (a rule-keeping world would have refused).
        broke = any(c.get("violations") for c in calls) or any(
            f.failure_mode in ("did_not_refuse", "unexpected_change") and f.step
            for f in failing)
        v.instruction_adherence = 2 if broke else 5
    expected = task.get("expected_steps")
    v.efficiency = (efficiency_score(len(calls), int(expected)) if expected is not None
                    else _repeats_score(calls))
    v.reasoning = clip(reasoning, 600)
    return v


def _repeats_score(calls: list[dict[str, Any]]) -> int:
    """Efficiency without a minimal path: one point off per repeated identical call that
    did not follow a failure (a retry after an error is not waste)."""
    seen: set[str] = set()
    wasted = 0
    for n, c in enumerate(calls):
        key = f"{c.get('tool')}|{plain(c.get('arguments'))}"
        retry = n > 0 and code_checks.failed(calls[n - 1])
        wasted += key in seen and not retry
        seen.add(key)
    return max(1, 5 - wasted)


def _reconcile(data: dict[str, Any], task: dict[str, Any], calls: list[dict[str, Any]],
               final: str, has_rules: bool, v: Verdict) -> Verdict:
    """Turn the model's answer into a consistent card. The rules, and why each exists:"""
    v.task_completion = _score(data.get("task_completion"))
    # Adherence is about the behaviour instructions; without any there is nothing to adhere
    # to, and the card must show null rather than a number the model made up.
    v.instruction_adherence = _score(data.get("instruction_adherence")) if has_rules else None
    # Efficiency is arithmetic when the minimal path is known; a small model miscounts.
    expected = task.get("expected_steps")
    v.efficiency = (efficiency_score(len(calls), int(expected)) if expected is not None
                    else _score(data.get("efficiency")))
    said = data.get("verdict") if data.get("verdict") in ("PASS", "FAIL") else None
    # The refusal axis is checkable without a model, and a small one gets it wrong: on a
    # refusal task it scores a clean refusal as "task not done". A refusal task answered with
    # a refusal, by an agent that changed nothing in the world, did what was asked; one that
    # did not refuse did not. A completion task answered with a refusal did not complete.
    refused = looks_like_refusal(final)
    changed = any(c.get("ops") for c in calls)
    if task.get("expected_outcome") == "refusal":
        if refused and not changed:
            v.task_completion = max(v.task_completion or 0, 4)
        elif not refused:
            v.task_completion = min(v.task_completion or 5, 2)
            data = {**data, "failure_mode": "did_not_refuse"}
    elif refused and not calls:
        v.task_completion = min(v.task_completion or 5, 2)
        data = {**data, "failure_mode": "refused_valid_task"}
    # The verdict must agree with the scores the card shows next to it: a low completion
    # score cannot PASS and a high one cannot FAIL, unless the world itself broke its rules
    # (adherence <= 2) and the model said FAIL. A low adherence alone does not fail a run:
    # on the calibration set the 0.5B model scored rule-abiding runs low on it (a tool
    # refusing as its rule says read as "broken"). A 3 is the model's call.
    tc, adherence = v.task_completion, v.instruction_adherence
    if tc is not None and tc <= 2:
        v.verdict = "FAIL"
    elif tc is not None and tc >= 4:
        broke = adherence is not None and adherence <= 2 and said == "FAIL"
        v.verdict = "FAIL" if broke else "PASS"
    else:
        v.verdict = said or "FAIL"
    # A failure mode labels a FAIL only; a FAIL always gets one, derived when the model
    # gave none, so the row's chip is never blank.
    if v.verdict == "PASS":
        v.failure_mode = None
    else:
        v.failure_mode = _label(data.get("failure_mode")) or _derived_mode(task, calls, final)
    # The card promises reasoning that cites trajectory evidence; when the model's does
    # not, add the decisive step(s) so a reader can check the call.
    reasoning = str(data.get("reasoning") or "").strip()
    if calls and not _STEP_CITE.search(reasoning):
        cites = "; ".join(_evidence(n, calls[n - 1]) for n in _decisive(calls))
        reasoning = (reasoning + " " if reasoning else "") + f"Evidence: {cites}."
    v.reasoning = reasoning or "(the judge gave no reasoning)"
    return v


def _score(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return min(5, max(1, round(value)))


def _label(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    label = re.sub(r"[^a-z0-9]+", "_", value.strip().lower()).strip("_")[:40].rstrip("_")
    return label if label not in ("", "none", "null", "n_a") else None


def _derived_mode(task: dict[str, Any], calls: list[dict[str, Any]], final: str) -> str:
    refused = looks_like_refusal(final)
    if task.get("expected_outcome") == "refusal":
        return "did_not_refuse" if not refused else "unclean_refusal"
    if refused:
        return "refused_valid_task"
    if any(_errored(c) for c in calls):
        return "ignored_tool_error"
    return "incomplete"


def _errored(call: dict[str, Any]) -> bool:
    return bool(call.get("error")) or call.get("source") in ERROR_SOURCES


def _decisive(calls: list[dict[str, Any]]) -> list[int]:
    """Step numbers worth citing: failed calls first (what the agent had to cope with), then
    calls that changed the world, else the last call (what the answer rests on)."""
    for pick in (_errored, lambda c: bool(c.get("ops"))):
        steps = [n for n, c in enumerate(calls, 1) if pick(c)]
        if steps:
            return steps[:2]
    return [len(calls)]


def _evidence(n: int, call: dict[str, Any]) -> str:
    return f"step {n} {call.get('tool')} → {clip(plain(call.get('response')), 80)}"
