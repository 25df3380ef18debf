"""Whose value: an answer's figures and states held against the entity of a list it names.

A result listing two or more objects (two phone lines, two containers, three loans) lets an
answer give one entity's value for another: "line ending 0123 used 11.7 GB" when 11.7 is the
other line's ``data_gb``; "MSKU7734120 is released" when ``status: RELEASED`` is the other
container's and MSKU7734120's is ``ON_HOLD``. A figure or state is read as an entity's when
that entity is the only one named before it in its sentence, with no contrast ("against",
"the other") between them and no other entity named right after it. A state is only read
from a field that says how a thing stands (``status``, ``state``, ``available``...) and
only when the sentence does not also give the entity's own value or negate the word.
:mod:`titan.evals.misreports` turns what is found here into findings.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from titan.evals.attribution import Misread, quantities, same
from titan.evals.dates import answer_dates

_ISO_DATE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})")
_SENTENCE = re.compile(r"(?<!\d)[.!?;](?!\d)|[.!?](?=\s|$)|\n")
_CONTRAST = re.compile(r"\b(?:other|another|against|vs|versus|compared|while|whereas|but|"
                       r"unlike|than|each|both|respectively|all|neither|either)\b",
                       re.IGNORECASE)
_IDENT_KEYS = re.compile(r"(?:^|_)(?:id|name|title|desc|description|item|product|label|msisdn|"
                         r"number|sku|code|line|account|flight|plan|type|card|last4|phone|"
                         # places a list tells apart: "DC-East has 36", "the Leeds branch"
                         r"site|location|warehouse|store|branch|depot|facility|region|"
                         r"office|campus|clinic|hotel|property)$")
# Fields that say how a thing stands: their values are what an answer calls it.
_STATE_KEYS = re.compile(r"(?:^|_)(?:status|state|stage|phase|condition|availability|"
                         r"available|eligible|eligibility|open|active|valid|ready)(?:_|$)")
# "will be released once the inspection is done" says how it will stand, not how it does.
_HEDGED = re.compile(r"\b(?:will|would|once|when|until|if|unless|after|before|should|could|"
                     r"can|may|might|expected|expect|soon|going to|yet)\b|'ll\b")
_NEGATED = re.compile(r"\b(?:not|no|never|isn't|aren't|wasn't|weren't|hasn't|haven't|"
                      r"without|nor|neither|yet to)\b|n't\b", re.IGNORECASE)


@dataclass(frozen=True)
class Record:
    """One object of a list in the results: how it is named, its numbers and its states."""

    names: tuple[str, ...]  # how the answer may name it
    numbers: dict[str, float]
    states: dict[str, str]  # a state field's value as words: ON_HOLD -> "on hold"
    dates: dict[str, tuple[int, int]] = field(default_factory=dict)  # (month, day) by key


def records(values: list[Any]) -> list[list[Record]]:
    """Every list of two or more objects in the results, as records that can be told apart
    by a name, an id, or a long number's last four digits."""
    groups: list[list[Record]] = []

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            for v in value.values():
                walk(v)
        elif isinstance(value, list):
            items = [v for v in value if isinstance(v, dict)]
            if len(items) >= 2:
                groups.append(_group(items))
            for v in value:
                walk(v)

    for v in values:
        walk(v)
    return groups


def _group(items: list[dict[str, Any]]) -> list[Record]:
    strings = [{k: str(v) for k, v in item.items() if isinstance(v, str | int)
                and not isinstance(v, bool) and _IDENT_KEYS.search(k.lower())}
               for item in items]
    counts: dict[str, int] = {}
    for s in strings:
        for v in set(s.values()):
            counts[v.lower()] = counts.get(v.lower(), 0) + 1
    out = []
    for item, s in zip(items, strings, strict=True):
        names = [v for v in s.values() if counts[v.lower()] == 1 and len(v) >= 3]
        names += [v[-4:] for v in names if v.isdigit() and len(v) >= 7]
        numbers = {k: float(v) for k, v in item.items()
                   if isinstance(v, int | float) and not isinstance(v, bool)}
        states = {k: _words(k) if v is True else "" if v is False else _words(v)
                  for k, v in item.items() if _STATE_KEYS.search(k.lower())
                  and (isinstance(v, bool) or isinstance(v, str) and re.fullmatch(
                      r"[A-Za-z][A-Za-z _-]{2,40}", v))}
        when = {k: (int(m.group(2)), int(m.group(3))) for k, v in item.items()
                if isinstance(v, str) and (m := _ISO_DATE.match(v))}
        out.append(Record(tuple(names), numbers, states, when))
    return out


def _words(value: Any) -> str:
    return " ".join(re.findall(r"[a-z]+", str(value).lower()))


def _key(name: str) -> str:
    return "".join(re.findall(r"[a-z0-9]+", name.lower()))


def _mentions(final: str, group: list[Record]) -> list[tuple[int, int, int]]:
    """(start, end, record) for each place ``final`` names a record of the group: one
    pattern for the whole list, "UA 1586" and "ua-1586" naming ``UA1586`` alike."""
    by_key: dict[str, int] = {}
    for r, rec in enumerate(group):
        for name in rec.names:
            by_key.setdefault(_key(name), r)
    if not by_key:
        return []
    alternatives = sorted({r"[\s\-]?".join(map(re.escape, re.findall(r"[a-z]+|\d+",
                                                                    name.lower())))
                           for rec in group for name in rec.names}, key=len, reverse=True)
    pattern = re.compile(r"(?<![\w-])(?:" + "|".join(alternatives) + r")(?![\w-])",
                         re.IGNORECASE)
    return [(m.start(), m.end(), by_key[_key(m.group())]) for m in pattern.finditer(final)
            if _key(m.group()) in by_key]


def _sentences(final: str) -> list[tuple[int, int]]:
    ends = [(m.start(), m.end()) for m in _SENTENCE.finditer(final)] + [(len(final),) * 2]
    return [(a, b) for (_, a), (b, _) in zip([(0, 0), *ends], ends, strict=False)]


def _owner(sentence: str, named: list[tuple[int, int, int]], start: int,
           end: int) -> int | None:
    """The record a word or figure at ``sentence[start:end]`` is said of: the only one named
    before it, with no contrast between and no other named right after it."""
    before = [(s, e, r) for s, e, r in named if e <= start]
    if len({r for _, _, r in before}) != 1:
        return None
    _, last, r = before[-1]
    if _CONTRAST.search(sentence[last:start]) or any(
            s >= end and r2 != r and len(sentence[end:s].split()) <= 3 for s, _, r2 in named):
        return None
    return r


def misattributed_entities(final: str, groups: list[list[Record]]) -> list[Misread]:
    """A figure given for one entity of a list that belongs to a sibling (the same field,
    another value) and not to it."""
    out: list[Misread] = []
    for group in groups:
        mentions = _mentions(final, group)
        for s0, s1 in _sentences(final) if mentions else []:
            sentence = final[s0:s1]
            named = [(s - s0, e - s0, r) for s, e, r in mentions if s >= s0 and e <= s1]
            for figure in quantities(sentence) if named else []:
                r = _owner(sentence, named, figure.start, figure.end)
                if r is None:
                    continue
                own, values = group[r], figure.values
                if any(same(v, n) for v in values for n in own.numbers.values()):
                    continue
                for other in group:
                    key = next((k for k, n in other.numbers.items() if other is not own
                                and k in own.numbers and any(same(v, n) for v in values)
                                and not same(n, own.numbers[k])), None)
                    if key:
                        whose = other.names[0] if other.names else "another entry"
                        out.append(Misread(figure.value, sentence.strip(),
                                           f"{key} {figure.value:g} is {whose}'s and "
                                           f"{own.names[0]}'s is {own.numbers[key]:g}"))
                        break
    return out


def misattributed_dates(final: str, groups: list[list[Record]]) -> list[tuple[str, str]]:
    """(sentence, what the results say) where a date given for one entity of a list is a
    sibling's (the same field, another date) and none of its own: "the £89.99 annual plan
    charge taken on 3 March" when 3 March is the monthly charge's date."""
    for group in groups:
        mentions = _mentions(final, group)
        for s0, s1 in _sentences(final) if mentions else []:
            sentence = final[s0:s1]
            named = [(s - s0, e - s0, r) for s, e, r in mentions if s >= s0 and e <= s1]
            for month, day, _, said in answer_dates(sentence) if named else []:
                at = sentence.find(said)
                r = _owner(sentence, named, at, at + len(said))
                if r is None or (month, day) in group[r].dates.values():
                    continue
                own = group[r]
                for other in group:
                    key = next((k for k, d in other.dates.items() if other is not own
                                and k in own.dates and d == (month, day)), None)
                    if key:
                        whose = other.names[0] if other.names else "another entry"
                        m, d = own.dates[key]
                        return [(sentence.strip(), f"{key} {said!r} is {whose}'s and "
                                                   f"{own.names[0]}'s is {m:02d}-{d:02d}")]
    return []


def misattributed_states(final: str, groups: list[list[Record]]) -> list[tuple[str, str]]:
    """(sentence, what the results say) where an entity of a list is given the state a
    sibling has and it has not ("MSKU7734120 is released" when that is the other
    container's ``status`` and MSKU7734120's is ``ON_HOLD``)."""
    out: list[tuple[str, str]] = []
    for group in groups:
        mentions = _mentions(final, group)
        for s0, s1 in _sentences(final) if mentions else []:
            sentence = final[s0:s1]
            low = "".join(c.lower() if len(c.lower()) == 1 else c
                          for c in sentence).replace("_", " ")  # ON_HOLD reads "on hold"
            named = [(s - s0, e - s0, r) for s, e, r in mentions if s >= s0 and e <= s1]
            for r in sorted({r for _, _, r in named}):
                found = _sibling_state(low, named, group, r)
                if found:
                    out.append((sentence.strip(), found))
                    break
    return out


def _sibling_state(low: str, named: list[tuple[int, int, int]], group: list[Record],
                   r: int) -> str | None:
    own = group[r]
    mine = {w for v in own.states.values() for w in v.split()}  # its own states' words
    for key, value in own.states.items():
        for other in group:
            said = other.states.get(key)
            if other is own or not said or said == value or set(said.split()) <= mine:
                continue
            m = re.search(rf"\b{re.escape(said)}\b", low)
            if m is None or (value and re.search(rf"\b{re.escape(value)}\b", low)) \
                    or _owner(low, named, m.start(), m.end()) != r \
                    or _NEGATED.search(re.split(r"[,;:(]", low[:m.start()])[-1]) \
                    or _HEDGED.search(re.split(r"[,;:(]", low[:m.start()])[-1]):
                continue
            whose = other.names[0] if other.names else "another entry"
            return (f"{key} {said!r} is {whose}'s, and {own.names[0]}'s is "
                    f"{value or 'false'!r}")
    return None
