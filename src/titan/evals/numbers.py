"""Figures as people write them, read with every meaning they may have.

An answer writes a figure its own way: "6,60 €" and "€6.60", "1,234.50" and "1.234,50",
"14.30" for half past two. The judge's checks (:mod:`titan.evals.claims`,
:mod:`titan.evals.attribution`) read figures here, so every check reads them alike:

- a **decimal comma or point** and **thousands separators** in either convention ("1,234.5",
  "1.234,5", "1'234", "1 234,50" with a space or a non-breaking one); when both marks appear
  the last is the decimal one, and a lone mark before three digits ("1,500", "3.125") keeps
  both readings ("2 100" may also be two figures);
- a **currency sign** before or after the figure ("£40", "40 €") marks it as money, which
  is never a list or a clock time and shows at most two places ("£1,350" is 1350);
- a figure that may be a **clock time** ("14.30", "9.05": hours, a point, two digits of
  minutes, no currency) keeps that reading too, as minutes of the day;
- "6,60" without a space may also be a list ("seats 21,22"): it keeps that reading.

A check holds a figure against the results and accepts any of its readings: a figure read
one way when it was meant another would fail a correct answer, the worst error a judge
makes. :func:`known` gathers what the results support (their numbers and the arithmetic an
answer may do with them) and :func:`supports` accepts a figure any reading of which is
among them — or is one of them rounded to the figure's own precision ("£145" for 145.30),
to two significant figures when the answer says it is rough ("about 12 km" for 12.4), or a
percentage two of them make ("11% less" for 1139.2 against 1284.5).
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from typing import Any

_CURRENCY = "$£€¥₹"
_SEPARATORS = ",.'\u00a0\u202f "
# A figure: not inside an identifier, a date, a version or another figure. A thousands group
# is three digits after one kind of separator; then, optionally, a decimal mark of the other.
_TOKEN = re.compile(
    r"(?<![\w.,\-/:#'])(\d{1,3}(?:([,.'\u00a0\u202f ])\d{3})(?:\2\d{3})*(?:[.,]\d+)?"
    r"|\d+(?:[.,]\d+)?)(?![\w:]|[.,]\d|-\d|/\d)")
_CLOCK = re.compile(r"^(\d{1,2})\.(\d{2})$")


@dataclass(frozen=True)
class Figure:
    """A figure of a text: where it is, what it may mean, and whether it is money."""

    start: int
    end: int
    text: str
    readings: tuple[tuple[float, ...], ...]  # each a whole reading (a list reads as two)
    money: bool
    clock: frozenset[int]  # the minutes of the day it may mean ("14.30"); empty if none

    @property
    def value(self) -> float:
        """The likeliest reading: what a finding quotes."""
        return self.readings[0][0]

    @property
    def values(self) -> tuple[float, ...]:
        """Every reading of it as one number."""
        return tuple(r[0] for r in self.readings if len(r) == 1)


def find(text: str) -> list[Figure]:
    """Every figure of ``text``, in order."""
    out = []
    for m in _TOKEN.finditer(text):
        token = m.group(1)
        before = text[max(0, m.start() - 2):m.start()]
        after = text[m.end():m.end() + 2]
        money = any(c in _CURRENCY for c in before + after)
        readings = _readings(token)
        if money:  # "6,60 €" is no list 6, 60; "£1,350" no 1.350 (money shows two places)
            readings = tuple(r for r in readings if len(r) == 1)
            if re.fullmatch(r"\d{1,3}[.,]\d{3}", token):
                readings = ((float(re.sub(r"\D", "", token)),),)
        clock = frozenset() if money else _clock(token)
        out.append(Figure(m.start(), m.end(), token, readings, money, clock))
    return out


def values(text: str) -> set[float]:
    """Every reading of every figure of ``text``: what evidence written by people supports."""
    return {v for f in find(text) for r in f.readings for v in r}


def _readings(token: str) -> tuple[tuple[float, ...], ...]:
    marks = [c for c in token if c in _SEPARATORS]
    groups = re.split(r"[,.'\u00a0\u202f ]", token)
    if not marks:
        return ((float(token),),)
    if " " in marks:  # "1 234,50" is one figure, or "2 100" two
        first, *rest = token.split(" ")
        parts = tuple(r[0] for p in [first, *rest] for r in _readings(p)[:1])
        return (*_readings(first + "'" + "'".join(rest)), parts)
    if len(set(marks)) > 1:  # "1,234.56" or "1.234,56": the last mark is the decimal one
        return ((float("".join(groups[:-1]) + "." + groups[-1]),),)
    mark = marks[0]
    if mark not in ",.":  # "1'234", "1 234": only ever thousands
        return ((float("".join(groups)),),)
    if len(marks) > 1:  # "1,234,567", "1.234.567": only thousands repeat
        return ((float("".join(groups)),),)
    whole, decimal = float("".join(groups)), float(f"{groups[0]}.{groups[1]}")
    if len(groups[1]) == 3 and 1 <= len(groups[0]) <= 3:
        # "1,500" is 1500 in one convention and 1.5 in the other; "3.125" the other way.
        return ((whole,), (decimal,)) if mark == "," else ((decimal,), (whole,))
    if mark == ",":  # "6,60" is 6.60, or the list "21,22"
        return ((decimal,), (float(groups[0]), float(groups[1])))
    return ((decimal,),)


def _clock(token: str) -> frozenset[int]:
    m = _CLOCK.match(token)
    if not m or int(m.group(1)) > 23 or int(m.group(2)) > 59:
        return frozenset()
    h, mi = int(m.group(1)), int(m.group(2))
    return frozenset({h * 60 + mi, ((h + 12) % 24) * 60 + mi} if h <= 12 else {h * 60 + mi})


# --- what the evidence supports ------------------------------------------------------------

_DIGITS = re.compile(r"\d+(?:\.\d+)?")
_CODE_YEAR = re.compile(r"(?<![A-Za-z])[A-Za-z]{1,3}\d?[-'’]?(\d{2})(?![\w.])")
_WORD_NUMBERS = {w: n for n, w in enumerate((
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
    "eleven", "twelve"))}
_ROUGH = re.compile(r"\b(?:about|around|roughly|approximately|approx|nearly|almost|over|under|"
                    r"more than|less than|some|just|circa|ca)\b|~|≈", re.IGNORECASE)
# A figure stated as a rate: "275 litres a day", "£12.50 per person", "3 each", "**£3.14** a
# day" (markdown between).
PER = re.compile(r"[\s*_]*(?:[A-Za-z³²]+\s+){0,2}(?:(?:per|each|every|/)\s*[A-Za-z]+|(?:a|an)\s+"
                  r"(?:day|night|week|month|year|hour|person|head|adult|child|unit|item|visit|"
                  r"trip|mile|km)\b|(?:a|an)\s+[A-Za-z]+(?=\s*(?:[.,;:)!?]|$)))", re.IGNORECASE)
# Conversions people do ("28 m³, roughly 990 cubic feet"): the unit words of the converted
# figure, and the factors from the units it may come from.
_CONVERSIONS = (
    (re.compile(r"cubic f(?:ee|oo)t|ft³|cu\.? ?ft", re.IGNORECASE), (35.3147,)),
    (re.compile(r"miles?\b|mi\b", re.IGNORECASE), (0.621371,)),
    (re.compile(r"km\b|kilomet", re.IGNORECASE), (1.60934,)),
    (re.compile(r"lbs?\b", re.IGNORECASE), (2.20462,)),
    (re.compile(r"kg\b|kilo", re.IGNORECASE), (0.453592,)),
    (re.compile(r"gallons?\b|gal\b", re.IGNORECASE), (0.264172, 0.219969)),
    (re.compile(r"f(?:ee|oo)t\b|ft\b", re.IGNORECASE), (3.28084,)),
    (re.compile(r"inch(?:es)?\b|in\.|\"", re.IGNORECASE), (0.393701, 39.3701)),
    (re.compile(r"°?F\b|fahrenheit", re.IGNORECASE), ()),
)
_PERCENT = re.compile(r"\s*(?:%|percent\b|per cent\b)", re.IGNORECASE)


@dataclass(frozen=True)
class Known:
    """What the evidence supports: its numbers and what an answer may derive from them."""

    figures: set[float] = field(default_factory=set)  # the numbers and the arithmetic
    base: set[float] = field(default_factory=set)  # the numbers themselves
    products: set[float] = field(default_factory=set)  # of two numbers: checked to the places


def known(texts: list[str], lists: list[list[Any]]) -> Known:
    """Every figure the evidence supports: numbers in it (also inside ids and dates: the day
    of a date, the hour of a time), list sizes, how often a value occurs in a list, the
    simple arithmetic an answer may do (sums, differences, small multiples, cents, 12-hour
    clock times), and the last digits of long numbers ("ending 0123", a card's last four)."""
    base: set[float] = set()
    tails: set[float] = set()
    for text in texts:
        base.update(values(text))  # as people write them: "6,60 €", "1.234,50"
        plain = re.sub(r"(?<=\d),(?=\d{3})", "", text)
        for m in _DIGITS.finditer(plain):
            base.add(float(m.group()))
            digits = m.group().split(".")[0]
            if len(digits) >= 7:
                tails.update(float(digits[-k:]) for k in (3, 4))
        # A year a code gives in two digits ("FA24", "FY25", "Q3-24") is the answer's "2024".
        tails.update(2000.0 + int(m.group(1)) for m in _CODE_YEAR.finditer(text))
        for word, n in _WORD_NUMBERS.items():
            if re.search(rf"\b{word}\b", text, re.IGNORECASE):
                base.add(float(n))
    for items in lists:
        base.add(float(len(items)))
        counts: dict[str, int] = {}
        for item in items:
            if isinstance(item, dict):
                for key, value in item.items():
                    counts[f"{key}={value}"] = counts.get(f"{key}={value}", 0) + 1
        base.update(float(c) for c in counts.values())
    derived = base | tails
    derived |= series(lists)
    derived.update(n - 12 for n in base if 13 <= n <= 23 and n == int(n))
    derived.update(n * 100 for n in base)
    derived.update(n / 100 for n in base)
    small = sorted(base)[:60]  # every pair of a long tool output would support anything
    for a in small:
        for b in small:
            derived.update((a + b, abs(a - b)))
            if b == int(b) and 2 <= b <= 12:
                derived.add(a * b)
    return Known(derived, base, _products(base))


def series(lists: list[list[Any]]) -> set[float]:
    """What each numeric series of the results adds up to and averages ("411 kWh over the
    three months, 137 a month"): an answer summarises a series a tool returned, and sums of
    pairs missed it. The average also as people round it (to a whole and to one place)."""
    out: set[float] = set()
    for column in _columns(lists):
        total = sum(column)
        mean = total / len(column)
        out.update((total, mean, float(round(mean)), round(mean, 1)))
    return out


def lists_of(value: Any, into: list[list[Any]] | None = None) -> list[list[Any]]:
    """Every list inside a result, nested ones too."""
    into = [] if into is None else into
    if isinstance(value, list):
        into.append(value)
        for v in value:
            lists_of(v, into)
    elif isinstance(value, dict):
        for v in value.values():
            lists_of(v, into)
    return into


def _columns(lists: list[list[Any]]) -> list[list[float]]:
    """The numeric series of the results' lists, two values or more: a list of numbers, or
    one key's numbers across a list of records (``months: [{kwh: 312}, {kwh: 298}]``)."""
    out: list[list[float]] = []
    for items in lists:
        if len(items) < 2:
            continue
        if all(_number(i) for i in items):
            out.append([float(i) for i in items])
            continue
        records = [i for i in items if isinstance(i, dict)]
        for key in {k for r in records for k in r}:
            column = [float(r[key]) for r in records if _number(r.get(key))]
            if len(column) >= 2:
                out.append(column)
    return out


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def same(value: float, k: float) -> bool:
    return abs(value - k) <= max(0.005, abs(k) * 1e-6)


def supports(evidence: Known, figure: Figure, clause: str = "",
             times: frozenset[int] | set[int] = frozenset()) -> bool:
    """Whether any reading of a figure is supported: its numbers (all of a list's), the
    clock time it may be ("the 14.30 sailing" against ``departs: ...T14:30``), a known
    figure rounded to the figure's precision, a rough one ("about 12 km"), or a percentage
    ("11% less")."""
    if any(all(any(same(v, k) for k in evidence.figures) for v in reading)
           for reading in figure.readings) or figure.clock & times:
        return True
    if any(c.start == figure.start and right for c, right, _ in worked(clause)):
        return True  # "22 × £27.60 = £607.20": the answer's own sum, checked apart
    rough = _ROUGH.search(clause[max(0, figure.start - 24):figure.start]) is not None
    percent = _PERCENT.match(clause, figure.end) is not None
    per = PER.match(clause, figure.end) is not None
    for v in figure.values:
        shown = places(v)
        if any(round(k, shown) == v and places(k) > shown or rough and _about(v, k)
               for k in evidence.figures):
            return True
        if percent and any(abs(v - r) <= (1.0 if rough else 0.5 if shown == 0 else 0.05)
                           for r in _ratios(evidence.base)):
            return True
        # A rate of the results' numbers, or of the figures its own clause states ("25,000
        # litres over 91 days (about 275 litres a day)"), which are held to the results too.
        # A product of two of the results' numbers ("25 m³ at £2.1432" is £53.58), to the
        # places shown, never roughly: there are too many products for that.
        if shown and any(round(p, shown) == v for p in evidence.products):
            return True
        # A product of a figure the clause itself states (held to the results too) and
        # another of the clause's or the results' ("those 64 at £39.45 are worth about
        # £2,525", "104 shares, roughly £4,103"): roughly, when it says so.
        own = values(clause) - {v}
        if own and any(round(a * b, shown) == v or rough and _about(v, a * b)
                       for a in own for b in own | set(sorted(evidence.base)[:80])):
            return True
        unit = clause[figure.end:figure.end + 16]
        for words, factors in _CONVERSIONS:
            if words.match(unit.lstrip()) and any(
                    _about(v, k * f) or round(k * f, shown) == v
                    for k in evidence.base for f in factors):
                return True
        if per and any(round(q, shown) == v or rough and stated and _about(v, q)
                       for q, stated in _quotients(evidence.base, values(clause) - {v})):
            return True
    return False


def _about(value: float, k: float) -> bool:
    """Whether ``value`` is ``k`` rounded to two or more significant figures ("about £1,100"
    for 1139.20, "around 150" for 145.3, "about 12 km" for 12.4)."""
    digits = len(str(int(abs(k)))) if abs(k) >= 1 else 1
    return any(round(k, p) == value for p in range(-(digits - 2), 3)) if digits >= 2 \
        else abs(value - k) <= 0.5


def places(value: float) -> int:
    """How many decimal places a value shows (145 -> 0, 11.3 -> 1, 6.25 -> 2)."""
    text = f"{value:.6f}".rstrip("0")
    return len(text.split(".")[1]) if "." in text else 0


#: What a result charges, by the keys results name it with, first found first.
_CHARGE_KEYS = ("total", "total_charged", "amount_due", "amount", "price", "charge", "cost",
                "fee")


def totals(results: list[Any]) -> set[float]:
    """What several calls charge together: a booking, a workshop and a hotel each report a
    price, and "€1,287 in total" is their sum (every combination of two or more calls)."""
    charges = [c for r in results if (c := _charge(r)) is not None]
    out: set[float] = set()
    for size in range(2, min(len(charges), 6) + 1):
        out.update(sum(group) for group in itertools.combinations(charges, size))
    return out


def _charge(result: Any) -> float | None:
    if not isinstance(result, dict):
        return None
    for key in _CHARGE_KEYS:
        value = result.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
            return float(value)
    return None


def _products(base: set[float]) -> set[float]:
    numbers = sorted(n for n in base if n > 0)[:80]
    return {a * b for i, a in enumerate(numbers) for b in numbers[i:]}


def _quotients(base: set[float], stated: set[float]) -> list[tuple[float, bool]]:
    """A rate two numbers make ("about 275 litres a day" for 25,000 litres over 91 days),
    and whether one of them is a figure of the clause itself (``stated``, always among them):
    only such a rate may be rough — rough readings of every quotient of the results would
    support almost any figure."""
    numbers = {n for n in sorted(base)[:80] if n >= 2} | {n for n in stated if n >= 2}
    return [(a / b, a in stated or b in stated) for a in numbers for b in numbers if a > b]


def _ratios(base: set[float]) -> set[float]:
    """The percentages two numbers make: a share (a of b) and a change (a against b)."""
    numbers = sorted(n for n in base if n > 0)[:120]
    return {r for a in numbers for b in numbers if a != b
            for r in (a / b * 100, (a - b) / b * 100, (b - a) / b * 100)}


# --- an answer's own arithmetic ------------------------------------------------------------------

_OPERATOR = re.compile(r"\s*[$£€¥₹]?\s*([×xX*+−-])\s*[$£€¥₹]?\s*$")
_EQUALS = re.compile(r"\s*[$£€¥₹]?\s*=\s*[$£€¥₹]?\s*$")


def worked(text: str) -> list[tuple[Figure, bool, float]]:
    """Each "a × b = c" (or +, −) the text writes out: its result figure, whether it is right
    to the places it shows, and what the operation makes."""
    figures = find(text)
    out = []
    for a, b, c in zip(figures, figures[1:], figures[2:], strict=False):
        op = _OPERATOR.fullmatch(text, a.end, b.start)
        if op is None or _EQUALS.fullmatch(text, b.end, c.start) is None:
            continue
        made = [_apply(op.group(1), x, y) for x in a.values for y in b.values]
        right = any(round(m, places(v)) == v or same(v, m) for m in made for v in c.values)
        out.append((c, right, made[0] if made else 0.0))
    return out


def _apply(op: str, a: float, b: float) -> float:
    if op in "×xX*":
        return a * b
    return a + b if op == "+" else a - b
