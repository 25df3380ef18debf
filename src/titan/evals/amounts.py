"""An amount before deductions given as the one after them: gross pay as take-home pay.

A payslip, a payout or a settlement often holds the same money twice: before deductions
(``gross: 4250``) and after them (``net: 3187.42``), with the deductions themselves
(``deductions: [{amount: 641.8}, ...]``, ``total_deductions: 1062.58``). An answer that
labels a figure as what is left after them ("your pay after tax", "take-home", "net") must
give the amount they were taken from minus them, not the amount before. The reading rests
on the results' own arithmetic, never on a field's name alone: it fails a figure only when
the result holds two amounts that differ by exactly the deductions it lists, and the answer
gives the larger under a label that says the deductions are taken off. (Tax *added* to a
price — "total after tax" — is a sum, not a deduction, and is not read here.)
"""

from __future__ import annotations

import re
from typing import Any, TypeGuard

from titan.evals.attribution import Misread, quantities, same

_DEDUCTION_KEY = re.compile(r"deduct|withh[eo]ld", re.IGNORECASE)
_AFTER = re.compile(r"\b(?:after (?:(?:all )?(?:the )?(?:tax(?:es)?|deductions?|withholding))|"
                    r"net|take[- ]home|in hand)\b", re.IGNORECASE)
# A label's reach: its sentence, to a comma (not a thousands one) or a bracket.
_CLAUSE = re.compile(r"[.;!?\n()\[\]](?!\d)|,(?!\d)|\s[-—–]\s")
_NEXT = re.compile(r"\b(?:and|or|but|while|so)\b|[:/]|\d")
_BEFORE = re.compile(r"\b(?:before (?:tax(?:es)?|deductions?)|pre-?tax|gross)\b",
                     re.IGNORECASE)


def gross_as_net(final: str, results: list[Any]) -> list[Misread]:
    """Figures labelled as after deductions that are the amount before them."""
    pairs = [p for r in results for p in _pairs(r)]
    out: list[Misread] = []
    for clause in _CLAUSE.split(final) if pairs else []:
        figures = quantities(clause)
        for n, said in enumerate(figures):
            # Its label: the words since the figure before, and those right after it.
            before = clause[figures[n - 1].end if n else 0:said.start]
            after = _NEXT.split(clause[said.end:], maxsplit=1)[0]
            label = before + " " + after
            if not _AFTER.search(label) or _BEFORE.search(label):
                continue
            for (before_key, gross), (after_key, net), taken in pairs:
                if any(same(v, gross) for v in said.values) \
                        and not any(same(v, net) for v in said.values):
                    out.append(Misread(said.value, clause.strip(),
                                       f"{before_key} {gross:g} is before the deductions of "
                                       f"{taken:g}; after them it is {after_key} {net:g}"))
                    return out
    return out


# A figure said to be everything the user pays: "£270 all in", "in total", "including VAT".
_ALL_IN = re.compile(r"\b(?:all[- ]in|in total|altogether|all told|total|in all|"
                     r"inc(?:l(?:uding|\.)?)? vat|including (?:vat|tax(?:es)?|everything))\b",
                     re.IGNORECASE)
_PART_KEY = re.compile(r"(?:^|_)(?:subtotal|ex_vat|excl?_vat|net|before_tax|pre_tax)(?:_|$)",
                       re.IGNORECASE)
_WHOLE_KEY = re.compile(r"(?:^|_)(?:total|inc_vat|incl_vat|gross|amount_due|grand_total)"
                        r"(?:_|$)", re.IGNORECASE)


def part_as_total(final: str, results: list[Any]) -> list[Misread]:
    """A figure said to be the whole price ("£270 all in") that is the part before tax or
    extras (``subtotal_ex_vat: 270``), where the same result holds the whole
    (``total_inc_vat: 324``) and it is larger."""
    pairs: list[tuple[str, float, str, float]] = []
    for r in results:
        _part_pairs(r, pairs)
    for clause in _CLAUSE.split(final) if pairs else []:
        if not _ALL_IN.search(clause):
            continue
        for said in quantities(clause):
            for part_key, part, whole_key, whole in pairs:
                if said.money and any(same(v, part) for v in said.values) \
                        and not any(same(v, whole) for v in said.values):
                    return [Misread(said.value, clause.strip(),
                                    f"{part_key} is {part:g}; everything is {whole_key} "
                                    f"{whole:g}")]
    return []


def _part_pairs(value: Any, out: list[tuple[str, float, str, float]]) -> None:
    if isinstance(value, list):
        for v in value:
            _part_pairs(v, out)
    if not isinstance(value, dict):
        return
    parts = [(str(k), float(v)) for k, v in value.items() if _number(v)
             and _PART_KEY.search(str(k)) and not _WHOLE_KEY.search(str(k))]
    wholes = [(str(k), float(v)) for k, v in value.items() if _number(v)
              and _WHOLE_KEY.search(str(k)) and not _PART_KEY.search(str(k))]
    out.extend((pk, p, wk, w) for pk, p in parts for wk, w in wholes if w > p > 0)
    for v in value.values():
        if isinstance(v, dict | list):
            _part_pairs(v, out)


# What the user is paid: "you're getting £X back", "you'll receive", "a refund of £X".
_RECEIVED = re.compile(r"\b(?:get(?:ting)?|receiv(?:e|ing)|be (?:paid|refunded|reimbursed)|"
                       r"paying you|pay you|refund(?:ing|ed)? you|(?:payout|refund|"
                       r"reimbursement|settlement) (?:is|of|will be|comes to))\b",
                       re.IGNORECASE)
# The amount a result pays the user, after everything is taken off.
_PAYOUT_KEY = re.compile(r"(?:^|_)(?:payout|payout_amount|net_payout|amount_payable|"
                         r"settlement_amount|refund_amount|amount_refunded|reimbursement|"
                         r"amount_to_pay|payable|net_refund)$", re.IGNORECASE)


def received_misread(final: str, results: list[Any]) -> list[Misread]:
    """A money figure the answer says the user gets that is not the amount the results pay
    out, where they hold exactly one such amount (``payout: 1712.8``) and the figure is none
    of its parts' sum: "you're getting £2,141.00 back" when the co-payment was left out."""
    payouts: list[tuple[str, float]] = []
    for r in results:
        _payouts(r, payouts)
    if len({v for _, v in payouts}) != 1:
        return []
    key, paid = payouts[0]
    for clause in _CLAUSE.split(final):
        verb = _RECEIVED.search(clause)
        if verb is None:
            continue
        # The amount the verb governs: the first one after it ("after the £99 excess you're
        # getting £2,141.00 back": not the excess).
        said = next((f for f in quantities(clause) if f.money and f.start >= verb.end()), None)
        if said is not None and not any(same(v, paid) for v in said.values):
            return [Misread(said.value, clause.strip(), f"{key} is {paid:g}")]
    return []


def _payouts(value: Any, out: list[tuple[str, float]]) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            if _PAYOUT_KEY.search(str(k)) and _number(v) and v > 0:
                out.append((str(k), float(v)))
            else:
                _payouts(v, out)
    elif isinstance(value, list):
        for v in value:
            _payouts(v, out)


def _pairs(value: Any) -> list[tuple[tuple[str, float], tuple[str, float], float]]:
    """((key, before), (key, after), deducted) for each object of a result holding two
    amounts that differ by the deductions it lists."""
    out: list[tuple[tuple[str, float], tuple[str, float], float]] = []
    if isinstance(value, list):
        for v in value:
            out += _pairs(v)
        return out
    if not isinstance(value, dict):
        return out
    amounts = {str(k): float(v) for k, v in value.items() if _number(v)}
    taken = {_total(v) for k, v in value.items() if _DEDUCTION_KEY.search(str(k))} - {0.0}
    if len(taken) > 1:
        taken.add(sum(taken))
    for d in taken:
        for bk, b in amounts.items():
            for ak, a in amounts.items():
                if bk != ak and not _DEDUCTION_KEY.search(ak) and a > 0 \
                        and abs(b - d - a) <= 0.01:
                    out.append(((bk, b), (ak, a), d))
    for v in value.values():
        out += _pairs(v)
    return out


def _total(value: Any) -> float:
    """A deduction's amount: a number, or the sum of a list's amounts."""
    if _number(value):
        return float(value)
    if isinstance(value, list):
        total = 0.0
        for item in value:
            if _number(item):
                total += float(item)
            elif isinstance(item, dict):
                numbers = [float(v) for v in item.values() if _number(v)]
                amount = item.get("amount")
                if _number(amount):
                    total += float(amount)
                elif len(numbers) == 1:
                    total += numbers[0]
        return round(total, 2)
    return 0.0


def _number(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)
