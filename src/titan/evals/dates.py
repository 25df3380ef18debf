"""Calendar dates and clock times, in an answer and in the evidence it rests on.

The judge's figure check reads "June 4" as the number 4, which the day of any date of the
month can seem to support; here a date is read whole (month, day and, when given, year:
"June 4", "4th of June", "2024-06-04", "6/4" either way round, "June 20-21") and must be one
the results or the request hold, or one of those moved by a span they name ("two weeks",
``"nights": 3``). A clock time ("5:05 PM", "17:05", "9am", "2.30pm", "14h30") must be one
they hold. Opening hours and deadlines ("opens at 9am", "by 5pm") are left alone: agents add
them from their own instructions. A bare "14.30" may be a time or an amount: the figure
check reads it both ways (:mod:`titan.evals.numbers`).
"""

from __future__ import annotations

import re
from typing import Any

MONTHS = {m: n for n, names in enumerate((
    ("jan", "january"), ("feb", "february"), ("mar", "march"), ("apr", "april"), ("may",),
    ("jun", "june"), ("jul", "july"), ("aug", "august"), ("sep", "sept", "september"),
    ("oct", "october"), ("nov", "november"), ("dec", "december")), 1) for m in names}
_MONTH = r"(?:" + "|".join(sorted(MONTHS, key=len, reverse=True)) + r")\.?"
_ORD = r"(?:st|nd|rd|th)?"
# Not "20 of June's 30 days": a count of the month's days, not a date.
_DAY_FIRST = re.compile(rf"\b(\d{{1,2}}){_ORD}\s+(?:of\s+)?({_MONTH})(?!['’]s)(?:,?\s+(\d{{4}}))?\b",
                        re.IGNORECASE)
_MONTH_FIRST = re.compile(rf"\b({_MONTH})\s+(\d{{1,2}}){_ORD}(?:\s*[-–]\s*(\d{{1,2}}){_ORD})?"
                          rf"(?![\d:%]|\.\d)(?:,?\s+(\d{{4}}))?\b", re.IGNORECASE)
_ISO = re.compile(r"\b(\d{4})-(\d{2})-(\d{2})")
_SLASH = re.compile(r"(?<![\d/])(\d{1,2})/(\d{1,2})(?:/(\d{2,4}))?(?![\d/])")
_TIME = re.compile(r"(?<![\d:])(\d{1,2}):(\d{2})(?::\d{2})?(?![\d:])(?:\s*([ap])\.?m\b\.?)?",
                   re.IGNORECASE)
_HOUR = re.compile(r"(?<![\d:.])(?<!\dh)(\d{1,2})\s*([ap])\.?m\b\.?", re.IGNORECASE)
# "2.30pm" (a point needs the am/pm to be a time) and "14h30".
_DOT_TIME = re.compile(r"(?<![\d:.,])(\d{1,2})\.(\d{2})\s*([ap])\.?m\b\.?", re.IGNORECASE)
_H_TIME = re.compile(r"(?<![\w:.,])(\d{1,2})h(\d{2})\b(?:\s*([ap])\.?m\b\.?)?", re.IGNORECASE)
_DURATION = re.compile(r"(\d+|a|one|two|three|four|five|six|seven|ten|fourteen)[\s-]+"
                       r"(day|night|week)s?\b", re.IGNORECASE)
_WORDS = {"a": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
          "ten": 10, "fourteen": 14}


def in_date_or_time(text: str, start: int, end: int) -> bool:
    """Whether the number at ``text[start:end]`` is a date's day ("June 4", "18 June") or a
    clock's hour ("5 PM", "21:10"): the date and time checks read those."""
    before, after = text[max(0, start - 16):start], text[end:end + 12]
    return bool(re.search(rf"\b{_MONTH}\s*$", before, re.IGNORECASE)
                or re.match(rf"{_ORD}\s+(?:of\s+)?{_MONTH}\b", after, re.IGNORECASE)
                or re.match(r"\s*(?:[ap]\.?m\b|:\d{2})", after, re.IGNORECASE))


# --- dates and times -------------------------------------------------------------------------

def _year(y: str | None) -> int | None:
    if not y:
        return None
    return int(y) + 2000 if len(y) == 2 else int(y)


def answer_dates(text: str) -> list[tuple[int, int, int | None, str]]:
    """(month, day, year or None, the text) for each calendar date the text states."""
    out = []
    for m in _MONTH_FIRST.finditer(text):  # "June 20-21" is two dates
        month, year = MONTHS[m.group(1).lower().rstrip(".")], _year(m.group(4))
        out += [(month, int(day), year, m.group()) for day in (m.group(2), m.group(3)) if day]
    for m in _DAY_FIRST.finditer(text):
        out.append((MONTHS[m.group(2).lower().rstrip(".")], int(m.group(1)), _year(m.group(3)),
                    m.group()))
    for m in _ISO.finditer(text):
        out.append((int(m.group(2)), int(m.group(3)), int(m.group(1)), m.group()))
    return [d for d in out if 1 <= d[0] <= 12 and 1 <= d[1] <= 31]


def slash_dates(text: str) -> list[tuple[tuple[int, int], tuple[int, int], str]]:
    """"5/12" read both ways: (month, day) and (day, month)."""
    out = []
    for m in _SLASH.finditer(text):
        if m.group() == "24/7":
            continue  # round the clock, not the 24th of July
        a, b = int(m.group(1)), int(m.group(2))
        if (a <= 12 and b <= 31) or (b <= 12 and a <= 31):
            out.append(((a, b), (b, a), m.group()))
    return out


def _ordinal(month: int, day: int) -> int:
    return (month - 1) * 31 + day  # close enough for "a few days later" within a year


def evidence_dates(texts: list[str]) -> tuple[set[tuple[int, int, int | None]], set[int]]:
    """The dates the evidence holds, and the day offsets it names ("2 days", "two weeks",
    ``"nights": 3``) that an answer may add to one."""
    dates: set[tuple[int, int, int | None]] = set()
    offsets: set[int] = set()
    for text in texts:
        dates.update((mo, d, y) for mo, d, y, _ in answer_dates(text))
        for m in _DURATION.finditer(text):
            word = m.group(1).lower()
            n = int(word) if word.isdigit() else _WORDS.get(word, 0)
            offsets.add(n * (7 if m.group(2).lower() == "week" else 1))
        for key, n in re.findall(r"\"([a-z_]*(?:day|night|week)s?)\": (\d+)\b", text):
            offsets.add(int(n) * (7 if "week" in key else 1))
    # Business days: 5 of them span a week.
    offsets |= {o + 2 * ((o + 4) // 5) for o in offsets}
    return dates, {o for o in offsets if 0 < o <= 120}


def date_supported(month: int, day: int, year: int | None,
                   dates: set[tuple[int, int, int | None]], offsets: set[int]) -> bool:
    for mo, d, y in dates:
        if year is not None and y is not None and year != y:
            continue
        if (mo, d) == (month, day):
            return True
        gap = abs(_ordinal(month, day) - _ordinal(mo, d))
        if any(abs(gap - o) <= 1 for o in offsets):
            return True
    return False


# Opening hours and deadlines are the agent's own boilerplate more often than a result.
_HOURS_TALK = re.compile(r"\b(?:open|opens|opening|close|closes|closing|hours|between|before|by|"
                         r"until|from|after|every|daily)\b", re.IGNORECASE)


def stated_times(final: str) -> list[tuple[set[int], str]]:
    """The clock times an answer states as facts of the run (not opening hours, not a
    deadline). "2h30" without "at" before it may be a duration ("takes 2h30"): not read."""
    return [t for clause in re.split(r"[.;!?\n]\s|,\s", final) if not _HOURS_TALK.search(clause)
            for t in answer_times(clause) if not re.fullmatch(r"\d{1,2}h\d{2}", t[1])
            or re.search(rf"\bat\s+{t[1]}\b", clause)]


def answer_times(text: str) -> list[tuple[set[int], str]]:
    """Clock times a text states, each as the minutes of the day it may mean (a time without
    am/pm may be either half of the day)."""
    out = []
    for m in _TIME.finditer(text):
        h, mi = int(m.group(1)), int(m.group(2))
        if h > 23 or mi > 59:
            continue
        out.append((_clock(h, mi, m.group(3)), m.group()))
    for m in _DOT_TIME.finditer(text):
        out.append((_clock(int(m.group(1)), int(m.group(2)), m.group(3)), m.group()))
    for m in _H_TIME.finditer(text):
        if int(m.group(1)) <= 23 and int(m.group(2)) <= 59:
            out.append((_clock(int(m.group(1)), int(m.group(2)), m.group(3)), m.group()))
    for m in _HOUR.finditer(text):
        out.append((_clock(int(m.group(1)), 0, m.group(2)), m.group()))
    return [t for t in out if t[0]]


def _clock(h: int, mi: int, half: str | None) -> set[int]:
    if half:
        if not 1 <= h <= 12:
            return set()
        h = h % 12 + (12 if half.lower() == "p" else 0)
        return {h * 60 + mi}
    return {h * 60 + mi, ((h + 12) % 24) * 60 + mi} if h <= 12 else {h * 60 + mi}


def evidence_times(texts: list[str]) -> set[int]:
    out: set[int] = set()
    for text in texts:
        for minutes, _ in answer_times(text):
            out |= minutes
    return out




# --- a date given for the wrong field ----------------------------------------------------------

# Words that give the date after them a role, and the result keys that hold a date in that
# role: "runs until 27 June" is an end (``expires``, ``end_date``), "next one's coming 19
# June" a next one (``next_delivery``).
_ROLES = (
    ("when it ends",
     re.compile(r"\b(?:until|till|til|through|thru|ends?|ending|expires?|expiring|expiry|valid "
                r"(?:to|until|through)|runs? (?:to|out)|last day)\b(?:\s+(?:on|at|is|the|of))*"
                r"\s*$", re.IGNORECASE),
     re.compile(r"(?:^|_)(?:expires?|expiry|expiration|expiring|end|ends|ending|until|valid_to|"
                r"through|last_day)(?:_|$)", re.IGNORECASE)),
    # "next one's coming Thursday 19 June", not "slots next Thursday, 21 August" (a weekday
    # named relative to today), nor "first → last: 1 Jul → 1 Dec" (another date or role
    # between the word and the date).
    ("the next one",
     re.compile(r"\bnext\b(?!\s+(?:mon|tue|wed|thu|fri|sat|sun|week|month|year|time)\w*)"
                r"[^.;:!?\n\d→–|-]{0,30}$", re.IGNORECASE),
     re.compile(r"(?:^|_)next(?:_|$)", re.IGNORECASE)),
    ("the first one",
     re.compile(r"\bfirst\b(?![^.;:!?\n]*\b(?:last|to|until)\b)[^.;:!?\n\d→–|-]{0,30}$",
                re.IGNORECASE),
     re.compile(r"(?:^|_)first(?:_|$)", re.IGNORECASE)),
)
# Keys of a date that was, beside one that is: ``eta: {original: ..., revised: ...}``.
# (``scheduled`` counts only beside a ``revised``-like key of the same object.)
_WAS = re.compile(r"(?:^|_)(?:original|previous|prev|old|initial|former|scheduled|planned)"
                  r"(?:_|$)", re.IGNORECASE)
_IS = re.compile(r"(?:^|_)(?:revised|new|current|updated|latest|rescheduled)(?:_|$)",
                 re.IGNORECASE)
_SAYS_WAS = re.compile(r"\b(?:original(?:ly)?|previous(?:ly)?|was|were|had been|before|"
                       r"instead of|from|moved|changed|delayed|pushed|now)\b", re.IGNORECASE)
_ISO_VALUE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})")


def _date_fields(value: Any, out: list[tuple[str, int, int, int]], group: list[int]) -> None:
    """(key, month, day, the object it is in) of every date a result holds."""
    if isinstance(value, dict):
        group[0] += 1
        here = group[0]
        for key, v in value.items():
            for item in v if isinstance(v, list) else [v]:  # ``skipped: [dates]`` too
                m = _ISO_VALUE.match(item) if isinstance(item, str) else None
                if m:
                    out.append((str(key), int(m.group(2)), int(m.group(3)), here))
                elif not isinstance(item, str):
                    _date_fields(item, out, group)
    elif isinstance(value, list):
        for v in value:
            _date_fields(v, out, group)


def _dates_in_text(value: Any) -> set[tuple[int, int]]:
    """(month, day) of every ISO date written anywhere in the results' strings."""
    if isinstance(value, str):
        return {(int(m.group(2)), int(m.group(3))) for m in _ISO.finditer(value)}
    if isinstance(value, dict):
        return {d for v in value.values() for d in _dates_in_text(v)}
    if isinstance(value, list):
        return {d for v in value for d in _dates_in_text(v)}
    return set()


def role_misread(final: str, results: list[Any]) -> tuple[str, str, str] | None:
    """A date the answer gives in a role (when something ends, the next one) that no field
    of that role holds, while one does hold another date and the one given is another
    field's; or a date a result holds only as what was (``original``) beside what is
    (``revised``), given without a word that it was. (the answer's words, the role, what the
    results say)."""
    fields: list[tuple[str, int, int, int]] = []
    _date_fields(results, fields, [0])
    said_dates = [(m, d, said, final.find(said)) for m, d, _, said in answer_dates(final)]
    for role, words, keys in _ROLES:
        held = [(k, m, d) for k, m, d, _ in fields if keys.search(k)]
        for month, day, said, at in said_dates if held else []:
            if at < 0 or not words.search(final[max(0, at - 40):at]):
                continue
            if any((m, d) == (month, day) for _, m, d in held):
                continue
            other = next((k for k, m, d, _ in fields if (m, d) == (month, day)), None)
            if other is None and (month, day) in _dates_in_text(results):
                other = "another date the results name"  # "the 2025-09-06 class is full"
            if other is not None:
                key, m, d = held[0]
                return said, role, f"{key} is {m:02d}-{d:02d}; {said} is {other}"
    for month, day, said, at in said_dates:
        was = [(k, g) for k, m, d, g in fields if (m, d) == (month, day) and _WAS.search(k)]
        if not was or any((m, d) == (month, day) and not _WAS.search(k)
                          for k, m, d, _ in fields):
            continue
        key, group = was[0]
        now = next(((k, m, d) for k, m, d, g in fields if g == group and _IS.search(k)), None)
        end = final.find(".", at)
        sentence = final[final.rfind(".", 0, at) + 1:end if end >= 0 else len(final)]
        if now is not None and not _SAYS_WAS.search(sentence):
            k, m, d = now
            return said, "when it will be", f"{said} is the {key} date; {k} is {m:02d}-{d:02d}"
    return None
