"""What the judge's code checks find: findings, and the few readings every check shares.

A :class:`Finding` is one thing a check established about a recorded run, with the step it
rests on; :class:`Checks` collects them with the neutral facts the model is shown. The checks
themselves are in :mod:`titan.evals.checks` (claims, figures, states, refusals, failures),
:mod:`titan.evals.effects` (the world against ``expected_effects``) and
:mod:`titan.evals.misreports` (fields, entities, dates and times misreported).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from titan.evals import claims

#: Seed 003's name for a call the simulator answered against the seeded world: the source
#: every API, page and stored row uses (its badge is the same word).
ODYSSEY = "odyssey"
#: Where a proxied tool call's answer came from, in seed 003's Tool-call sources table order.
SOURCES = (ODYSSEY, "injected", "passthrough", "error", "transport_error")
#: Titan's earlier name for ``odyssey``: migration 22 renamed the stored rows; still read
#: where a hand-written source comes in (a calibration case), so old files keep working.
SOURCE_ALIASES = {"simulated": ODYSSEY}


def source_name(source: str) -> str:
    """A tool-call source in seed 003's words (``simulated`` becomes ``odyssey``)."""
    return SOURCE_ALIASES.get(source, source)


#: Sources whose calls failed whatever they returned. An injected call is not one of them: a
#: failure rule with ``error: false`` answers a 200 with its payload (a soft "cancelled", an
#: "unavailable" status), which the response decides like any other; a rule that errors
#: records its error on the call.
ERROR_SOURCES = ("error", "transport_error")
_ID_ARG = re.compile(r"(?:^|_)(?:id|ids|number|ref|reference|sku|code|name|key)$|Id$",
                     re.IGNORECASE)
_FAILED_STATUS = frozenset({"failed", "error", "declined", "rejected", "denied", "refused",
                            "not_approved", "unsuccessful"})
#: Where a result says how the action went: ``status`` and its other common names.
_STATUS_KEYS = ("status", "result", "outcome", "decision")
_WAITING = re.compile(r"(?:pending|awaiting|queued|waitlist|in[_ -]review|under[_ -]review|"
                      r"provisional|requested|held|on[_ -]hold)", re.IGNORECASE)
_WHY = re.compile(r"(?:^|_)(?:reason|why|message|detail|details|explanation)$", re.IGNORECASE)
#: A result's own yes/no for the action (``approved: false``), read on action tools only: a
#: read's ``approved: false`` describes the thing looked up, not a failed call.
_OUTCOME = re.compile(r"(?:approved|confirmed|granted|completed|processed|saved|submitted|"
                      r"applied|allowed|permitted|done|executed|placed|booked|reserved|"
                      r"scheduled|created|updated|cancell?ed|refunded|sent|changed|succeeded|"
                      r"accepted|successful)")


@dataclass(frozen=True)
class Finding:
    verdict: str  # PASS | FAIL
    failure_mode: str | None
    step: int | None  # 1-based, the call it rests on
    detail: str  # one sentence a reader can check


@dataclass
class Checks:
    findings: list[Finding] = field(default_factory=list)
    facts: list[str] = field(default_factory=list)  # certain, neutral: for the model

    @property
    def failed(self) -> list[Finding]:
        return [f for f in self.findings if f.verdict == "FAIL"]

    @property
    def verdict(self) -> str | None:
        """FAIL on any failing finding, PASS on a passing one and none failing, else None:
        code cannot tell, and the model decides."""
        if self.failed:
            return "FAIL"
        return "PASS" if self.findings else None


def failed(call: dict[str, Any]) -> bool:
    """Whether a call did not do its job: an error (injected, simulator, transport), or a
    response that says so (``ok``, ``success``, ``valid`` or ``accepted`` false, an
    ``error`` field, a failed status)."""
    if call.get("error") or call.get("source") in ERROR_SOURCES:
        return True
    response = call.get("response")
    if not isinstance(response, dict):
        return False
    if response.get("ok") is False or response.get("success") is False \
            or response.get("valid") is False or response.get("accepted") is False:
        return True  # a code "valid: false", a reading "accepted: false": nothing done
    if response.get("error") or response.get("errors"):
        return True
    if any(isinstance(response.get(k), str) and response[k].lower() in _FAILED_STATUS
           for k in _STATUS_KEYS):
        return True
    return claims.is_write(str(call.get("tool"))) and _outcome_false(response)


def _outcome_false(response: dict[str, Any]) -> bool:
    """An action's result whose own outcome is no: ``approved: false`` from a request,
    ``confirmed: false`` from a booking. Not when it also reports success (``ok: true``)
    or another outcome true (``cancelled: true, refunded: false`` did cancel): the no is
    then about a part, which the answer's figures and states are held to apart."""
    if response.get("ok") is True or response.get("success") is True or any(
            isinstance(response.get(k), str) and _WAITING.match(response[k])
            for k in _STATUS_KEYS):
        return False  # a request left pending is not a failure (completion.py reads it)
    said = {k: v for k, v in response.items() if _OUTCOME.fullmatch(str(k).lower()) and
            isinstance(v, bool)}
    # A refusal says why ("approved: false, reason: fully booked"); a bare false may be a
    # request still open, which completion.py reads as pending.
    why = any(_WHY.search(str(k)) and v for k, v in response.items())
    return why and False in said.values() and True not in said.values()


def retried(calls: list[dict[str, Any]], n: int) -> bool:
    """Whether the failed call at step ``n`` was made again with success later: the same
    tool on the same thing. When the thing is one an earlier result listed (its id-like
    arguments, ``volume_id``..., are values a result returned), the retry must name it
    again: another volume's snapshot is no retry of the failed one. Otherwise (an id the
    user mistyped, then corrected) any later success of the tool counts."""
    first = calls[n - 1]
    ids = {k: v for k, v in (first.get("arguments") or {}).items()
           if _ID_ARG.search(str(k)) and isinstance(v, str | int) and not isinstance(v, bool)}
    seen = " ".join(json.dumps(c.get("response"), default=str) for c in calls[:n - 1])
    listed = bool(ids) and all(re.search(rf"(?<![\w-]){re.escape(str(v))}(?![\w-])", seen)
                               for v in ids.values())
    return any(later.get("tool") == first.get("tool") and not failed(later)
               and (not listed or all((later.get("arguments") or {}).get(k) == v
                                      for k, v in ids.items()))
               for later in calls[n:])


def nearest(calls: list[dict[str, Any]], around: str) -> int | None:
    """The step whose result shares most words with the text around a figure."""
    words = set(re.findall(r"[a-z]{3,}", around.lower()))
    best, best_n = 0, None
    for n, c in enumerate(calls, 1):
        shared = len(words & set(re.findall(r"[a-z]{3,}", claims.evidence_text(
            c.get("response")))))
        if shared >= best:
            best, best_n = shared, n
    return best_n


def op_text(op: dict[str, Any]) -> str:
    if op["op"] == "set_flag":
        return f"flag {op.get('name')} = {op.get('value')!r}"
    attrs = ", ".join(f"{k} {v}" for k, v in (op.get("attrs") or {}).items())
    return f"{op['op']} {op['type']} {op.get('id') or '(new)'}" + (f": {attrs}" if attrs
                                                                    else "")


def short(call: dict[str, Any]) -> str:
    response = call.get("response")
    text = response if isinstance(response, str) else json.dumps(response, default=str)
    if call.get("error") and call["error"] not in text:
        text = f"{call['error']}: {text}"
    return clip(text, 120)


def clip(text: str, limit: int = 90) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 1] + "…"
