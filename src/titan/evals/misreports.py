"""The judge's checks of answers that misreport what the results hold, past bare figures.

:mod:`titan.evals.checks` fails a figure no tool result holds at all; these fail the subtler
misreports (read by :mod:`titan.evals.attribution`, :mod:`titan.evals.entities`,
:mod:`titan.evals.amounts` and :mod:`titan.evals.dates`): a figure given for the wrong field
or the wrong entity of a list, a sibling's state given for an entity, an amount before
deductions given as the one after them, a date or a clock time no result holds, and "nothing
more is needed from you" while a result lists something still missing.
"""

from __future__ import annotations

import re
from typing import Any

from titan.evals import amounts, attribution, claims, dates, entities, numbers
from titan.evals.findings import Checks, Finding, clip, failed, nearest, short

# A response field telling that something is still needed from the user.
_OUTSTANDING = re.compile(r"(?:^|_)(?:missing|outstanding|action_required|todo|"
                          r"pending_documents)(?:_|$)")
_OUTSTANDING_STATUS = re.compile(r"^(?:pending_(?:documents|information|info|verification|"
                                 r"payment)|action_required|awaiting_\w+|incomplete|needs_\w+)$")


def check(task: dict[str, Any], calls: list[dict[str, Any]], final: str, out: Checks) -> None:
    """Add a FAIL finding for the first misreport found, if no check failed the run yet."""
    if out.failed:
        return
    _attributed(task, calls, final, out)
    _outstanding(calls, final, out)


def _attributed(task: dict[str, Any], calls: list[dict[str, Any]], final: str,
                out: Checks) -> None:
    """Figures given for the wrong field or entity; dates and times no result holds."""
    if out.failed:
        return
    results = [c.get("response") for c in calls] + [c.get("ops") or [] for c in calls]
    texts = [str(task.get("user_instruction") or "")] + [
        attribution.plain_json(v) for c in calls
        for v in (c.get("response"), c.get("ops") or [], c.get("error") or "")]
    times = dates.evidence_times(texts)
    groups = entities.records(results)
    # A figure that is what several calls charge together ("€1,287 in total") is no one
    # call's field misread.
    together = numbers.totals([c.get("response") for c in calls if not failed(c)])
    # Nor is a series' total or average ("411 kWh from April to June") one entry's field.
    series: list[list[Any]] = []
    for c in calls:
        numbers.lists_of(c.get("response"), series)
    together |= numbers.series(series)
    wrong = [w for w in attribution.misattributed_fields(final, attribution.fields(results), times)
             if not any(attribution.same(w.value, t) for t in together)] \
        or entities.misattributed_entities(final, groups) or amounts.gross_as_net(final, results) \
        or amounts.received_misread(final, results) or amounts.part_as_total(final, results)
    if wrong:
        w = wrong[0]
        out.findings.append(Finding(
            "FAIL", "wrong_answer", nearest(calls, w.clause),
            f"The final response states {w.value:g} (\"{clip(w.clause)}\"), but the tool "
            f"results say {w.detail}."))
        return
    for sentence, detail in (entities.misattributed_states(final, groups)
                             or entities.misattributed_dates(final, groups))[:1]:
        out.findings.append(Finding(
            "FAIL", "wrong_answer", nearest(calls, sentence),
            f"The final response says \"{clip(sentence)}\", but the tool results say "
            f"{detail}."))
        return
    held, offsets = dates.evidence_dates(texts)
    for month, day, year, said in dates.answer_dates(final):
        if not dates.date_supported(month, day, year, held, offsets):
            _unsupported(calls, said, "date", out)
            return
    for month_day, day_month, said in dates.slash_dates(final):
        if held and not any(dates.date_supported(m, d, None, held, offsets)
                             for m, d in (month_day, day_month)):
            _unsupported(calls, said, "date", out)
            return
    misread = dates.role_misread(final, results)
    if misread is not None:
        said, role, detail = misread
        out.findings.append(Finding(
            "FAIL", "wrong_answer", nearest(calls, said),
            f"The final response gives {said!r} as {role}, but the tool results say "
            f"{detail}."))
        return
    for minutes, said in dates.stated_times(final) if times else []:
        if not minutes & times:
            _unsupported(calls, said, "time", out)
            return


def _unsupported(calls: list[dict[str, Any]], said: str, what: str, out: Checks) -> None:
    n = nearest(calls, said)
    where = f"; step {n} {calls[n - 1].get('tool')} returned {short(calls[n - 1])}" if n \
        else ""
    out.findings.append(Finding("FAIL", "wrong_answer", n,
                                f"The final response gives the {what} {said!r}, which no tool "
                                f"result holds{where}."))


def _outstanding(calls: list[dict[str, Any]], final: str, out: Checks) -> None:
    """The answer says nothing is needed from the user while a result lists something
    still missing or required of them."""
    clause = claims.says_nothing_needed(final)
    if clause is None or out.failed:
        return
    for n, c in enumerate(calls, 1):
        need = _needs(c.get("response"))
        if need:
            out.findings.append(Finding(
                "FAIL", "wrong_answer", n,
                f"The final response says \"{clip(clause)}\", but step {n} "
                f"{c.get('tool')} reported {need}."))
            return


def _needs(value: Any) -> str | None:
    if isinstance(value, dict):
        for k, v in value.items():
            key = str(k).lower()
            if _OUTSTANDING.search(key) and v not in (None, False, 0, "", [], {}):
                return f"{k}: {attribution.plain_json(v)}"
            if key in ("status", "state") and isinstance(v, str) \
                    and _OUTSTANDING_STATUS.match(v.lower()):
                return f"{k}: {v}"
            found = _needs(v)
            if found:
                return found
    elif isinstance(value, list):
        for v in value:
            found = _needs(v)
            if found:
                return found
    return None
