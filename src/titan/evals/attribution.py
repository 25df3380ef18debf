"""Whose figure: an answer's numbers held against the fields they name.

A figure a tool returned can still be misreported. :mod:`titan.evals.checks` already fails a
figure no result holds; this module reads the subtler errors, where the number exists but is
given for the wrong **field** (:mod:`titan.evals.misreports` turns them into findings): "8
days left" when ``remaining`` is 5 (8 is allowance minus used), "389 kWh in May" when 389 is
``previous_period_kwh``. A figure is read as naming a field when the words beside it are the
field's name ("5 days *remaining*", "*balance* is $40") and every word of that name is in its
clause. Words right after a figure are its own ("4 vCPU / 16 GB": GB is the 16's, not vCPU),
figures in a list share a name ("seats 21 and 22"), and a figure that any field named beside
it holds is not failed. The wrong **entity** of a list is :mod:`titan.evals.entities`'.

It also tells a result's settled values from hypothetical ones (a quote's ``new_return_date``
is what would be, not what is). Like :mod:`titan.evals.claims`, everything errs towards
reading nothing: a figure whose field is unclear, or whose reading is ambiguous
(:mod:`titan.evals.numbers`), is left alone.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from titan.evals import numbers
from titan.evals.dates import answer_dates, in_date_or_time

# A figure's reach: the part of its sentence between commas (not a thousands comma),
# brackets, colons and conjunctions that start a new thought.
_SUB = re.compile(r"(?<!\d),(?!\d)|[;:()\[\]\n—–|]|\s[-/]\s|(?<!\d)\.(?!\d)|\.(?=\s|$)|[!?]|"
                  r"\b(?:so|but|while|whereas)\b")
_JOINS = frozenset({"and", "or", "plus", "but", "then"})
# Words that relate a figure to another quantity, not name it: "after tax", "per night".
_RELATIVE = frozenset({"after", "before", "including", "incl", "excluding", "excl", "ex",
                       "without", "minus", "less", "per", "plus"})
# What joins two figures of one list: "21 and 22", "£20 or £30", "21, 22".
_JOINED = re.compile(r"\s*(?:,\s*(?:and|or)?|and|or|&|\+)\s*[$£€¥₹]?", re.IGNORECASE)
# Words after a figure that end what it counts: a verb or a new clause ("8 days *are* ...").
_ENDS = frozenset({"is", "are", "was", "were", "has", "have", "had", "will", "would", "can",
                   "could", "should", "be", "been", "so", "and", "but", "or", "which", "that",
                   "because", "while", "then", "goes", "go", "went", "comes", "come"})
# A number that is a name, not a quantity: "BA 212", "flight 88", "ending 0123", "#4".
_NAMED_BEFORE = re.compile(
    r"(?:#|\bno\.|\b(?:number|ending(?: in)?|ends in|last four|flight|room|seat|gate|line|order|"
    r"ticket|account|ref|reference|code|id|extension|ext|platform|terminal|suite|apt|unit|"
    r"floor|section|sec|version|v|pitch|plot|bay|desk|table|slot|lane|court|berth|locker|"
    r"cabin|pod|stand|pump|dock|door|bed|ward|row|block|building|lot|space|pier|stop|route))"
    r"\s*$", re.IGNORECASE)
_CODE_BEFORE = re.compile(r"\b[A-Z]{2,3}\s*$")  # "BA 212", "UA 1586"
_WITHIN = re.compile(r"\b(?:within|in|after|every|up to)\s*$", re.IGNORECASE)
_COMPOUND = re.compile(r"-[A-Za-z]")  # "6-day", "3-bed", "2-year"
_TIMES = re.compile(r"\d\s*[×xX*]\s*$")  # "14 × 410 W", "3x 20 kg"
_AT = re.compile(r"\bat\s*[$£€¥₹]?\s*$", re.IGNORECASE)  # "at £22"
_EACH = re.compile(r"\s*[$£€¥₹]?\s*(?:each|apiece|a head|per\b|an? (?:night|day|hour|week|"
                   r"month|person|adult|child)\b)", re.IGNORECASE)
_NEGATED = re.compile(r"\b(?:not|no|never|isn't|aren't|wasn't|weren't|none)\b|n't\b",
                      re.IGNORECASE)
_STOP = frozenset({"in", "of", "to", "from", "per", "the", "a", "an", "at", "by", "for", "on",
                   "is", "id", "num", "count", "number", "value", "amount", "and", "or"})
PAST = frozenset({"previous", "prev", "prior", "old", "last", "original", "before", "earlier",
                  "was"})
NEW = frozenset({"new", "current", "updated", "now", "after", "resulting", "latest"})
_PAST_HINTS = re.compile(r"\b(?:previous|prior|before|earlier|last|ago|was|were|from|than|"
                         r"compared|vs|versus|used to|old|original|down|up)\b")
_ROUGH = re.compile(r"\b(?:about|around|roughly|approximately|approx|nearly|almost|over|under|"
                    r"more than|less than|up to|at least|at most|some|~)\b|~")
_FILLER = frozenset({"is", "are", "was", "were", "of", "at", "now", "just", "only", "currently",
                     "still", "be", "been", "stands", "comes", "to", "a", "an", "the", "your",
                     "you", "have", "has", "with"})
_SYNONYMS = {"left": "remain", "remaining": "remain", "remain": "remain", "owed": "due",
             "outstanding": "due", "cost": "cost", "costs": "cost", "fee": "fee"}
_TIME_UNITS = {"second": 1 / 60, "sec": 1 / 60, "minut": 1.0, "min": 1.0, "hour": 60.0,
               "hr": 60.0, "day": 1440.0, "week": 10080.0}  # by stem: minutes -> minut


def stem(word: str) -> str:
    """A light stem, the same for a key's words and an answer's: remaining/remains -> remain,
    delayed -> delay, days -> day, completed/complete -> complet (never shorter than three
    letters)."""
    word = word.lower().strip("'")
    word = _SYNONYMS.get(word, word)
    for suffix in ("ing", "ed", "es", "s"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            word = _SYNONYMS.get(word[:-len(suffix)], word[:-len(suffix)])
            break
    return word[:-1] if word.endswith("e") and len(word) >= 4 else word  # complete(d)


def _key_words(key: str) -> list[str]:
    spaced = re.sub(r"([a-z])([A-Z])", r"\1 \2", key)
    return [w.lower() for w in re.split(r"[^A-Za-z0-9]+", spaced) if w]


@dataclass(frozen=True)
class Field:
    """A number a tool returned, by the words of its key: ``previous_period_kwh`` has the
    content words {period, kwh} and the qualifier ``previous``."""

    key: str
    content: frozenset[str]
    qualifier: str | None
    value: float


def fields(values: list[Any]) -> list[Field]:
    """Every number in the results (responses, ledger operations), by its key's words."""
    out: list[Field] = []

    def walk(value: Any, key: str | None) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(v, str(k))
        elif isinstance(value, list):
            for v in value:
                walk(v, key)
        elif key and isinstance(value, int | float) and not isinstance(value, bool):
            words = _key_words(key)
            qualifier = next((w for w in words if w in PAST or w in NEW), None)
            content = frozenset(stem(w) for w in words
                                if w not in _STOP and w not in PAST and w not in NEW)
            if content:
                out.append(Field(key, content, qualifier, float(value)))

    for v in values:
        walk(v, None)
    return out


def same(a: float, b: float) -> bool:
    """Whether a stated figure ``a`` gives the value ``b``: equal, in cents or whole units, or
    ``b`` rounded to the places ``a`` shows ("£24" for 23.75)."""
    return any(abs(a - c) <= max(0.005, abs(c) * 1e-6) for c in (b, b * 100, b / 100)) \
        or numbers.places(a) < numbers.places(b) and round(b, numbers.places(a)) == a


def subclauses(text: str) -> list[str]:
    """The parts of a text a figure's name can reach: between commas (not a thousands
    comma), brackets, colons, slashes and conjunctions that start a new thought."""
    return [c.strip() for c in _SUB.split(text) if c and c.strip()]


def quantities(text: str) -> list[numbers.Figure]:
    """Figures of a text that are quantities: not part of a date or a time, and not a name
    ("BA 212", "ending 0123")."""
    out = []
    for f in numbers.find(text):
        before = text[max(0, f.start - 16):f.start]
        if in_date_or_time(text, f.start, f.end) or _NAMED_BEFORE.search(before) \
                or _CODE_BEFORE.search(before):
            continue
        out.append(f)
    return out


def _after(text: str, end: int) -> list[str]:
    """The words right after a figure that say what it counts: up to three, to the next
    verb, mark or figure ("16 *GB*", "8 *vacation days left*")."""
    after = re.split(r"[,;:()\[\]/|]|\d", text[end:], maxsplit=1)[0]
    words: list[str] = []
    for w in re.findall(r"[a-z']+", after.lower().replace("-", " ")):
        if w in _ENDS or w in _RELATIVE or len(words) == 3:
            break  # "$120 after tax": what follows "after" is not what 120 counts
        words.append(w)
    return words


def _labels(text: str) -> list[tuple[numbers.Figure, list[str], str | None, bool]]:
    """Each figure of a clause with the words that name what it counts, and its time unit.

    The words are those right after it ("8 vacation days left") and the key before it past
    filler words ("balance is now $40"), except the words right after the figure before it:
    those are that figure's own ("4 vCPU / 16 GB": vCPU is the 4's, GB the 16's). A figure
    joined to the one before by "and", "or" or a comma, with no words of its own
    after it before the clause ends, shares that one's name ("seats 21 and 22"; not "12 used
    and 3 are pending")."""
    out: list[tuple[numbers.Figure, list[str], str | None, bool]] = []
    prev: numbers.Figure | None = None
    prev_near: list[str] = []
    for f in quantities(text):
        words_after = _after(text, f.end)
        unit = next((_unit(w) for w in words_after[:1] if _unit(w)), None)
        before = re.split(r"[,;:()\[\]]|\d", text[:f.start])[-1]
        words_before = re.findall(r"[a-z']+", before.lower().replace("-", " "))
        if prev is not None and f.start - len(before) == prev.end:
            words_before = words_before[len(_after(text, prev.end)):]
        named: list[str] = []
        for i in range(len(words_before) - 1, -1, -1):
            w = words_before[i]
            if w in _FILLER and not named or w in _RELATIVE or i and words_before[i - 1] \
                    in _RELATIVE:
                continue  # "your total after tax is $120": tax is not what 120 counts
            if w in _JOINS:
                break  # "2 adults and 1 child": the words before "and" name the 2
            named.append(w)
            if len(named) >= 2:
                break
        near, shared = words_after + named, False
        if prev is not None and _JOINED.fullmatch(text, prev.end, f.start) \
                and not re.search(r"[A-Za-z]", text[f.end:]):
            near, shared = prev_near, True  # the list ends the clause: "seats 21 and 22"
        out.append((f, near, unit, shared))
        prev, prev_near = f, near
    return out


def _unit(word: str) -> str | None:
    s = stem(word)
    return s if s in _TIME_UNITS else None


@dataclass(frozen=True)
class Misread:
    """A figure the answer gives for the wrong field or entity, and what the results say."""

    value: float
    clause: str
    detail: str  # what the results say instead


def misattributed_fields(final: str, found: list[Field],
                         times: frozenset[int] | set[int] = frozenset()) -> list[Misread]:
    """Figures stated for a field the results give another value, or given plainly when
    the results hold them only as an earlier value (``previous_...``, ``old_...``). A figure
    that may be one of the clock ``times`` the results hold ("14.30") is not read."""
    out: list[Misread] = []
    for clause in subclauses(final):
        words = {stem(w) for w in re.findall(r"[a-z']+", clause.lower())}
        labelled = _labels(clause)
        timed = sum(1 for _, _, unit, _ in labelled if unit)
        past = _PAST_HINTS.search(clause.lower()) is not None
        for figure, near, unit, shared_name in labelled:
            if _TIMES.search(clause[:figure.start]):
                continue  # "14 × 410 W panels": the panels are the 14's; 410 is each one's
            if figure.money and (_AT.search(clause[:figure.start])
                                 or _EACH.match(clause, figure.end)) \
                    or numbers.PER.match(clause, figure.end):
                continue  # "two adults at £22 each", "£50.68 a ticket": a rate, not a count
            if _NEGATED.search(clause):
                continue  # "pitch 14 isn't dog-friendly" says which it is not
            if _COMPOUND.match(clause, figure.end):
                continue  # "both 6-day passes": 6 is the passes' length, not their count
            if re.search(r"=\s*[$£€¥₹]?\s*$", clause[:figure.start]):
                continue  # "22 × £27.60 = £607.20": the answer's own sum, checked apart
            if unit and _WITHIN.search(clause[:figure.start]):
                continue  # "approve it within 7 days": a deadline, not the count of days
            near_stems = {stem(w) for w in near}
            # previous_total names "your total" only where the clause says it is an earlier
            # one; total and new_total name it as it is.
            matched = [f for f in found if f.content <= words and f.content & near_stems
                       and (f.qualifier not in PAST or past)]
            if re.match(r"\s*%", clause[figure.end:]) and not any(
                    re.search(r"pct|percent|rate", f.key) for f in matched):
                continue  # "the 10% sibling discount": a share, not the discount's amount
            values = figure.values
            if not matched or _ROUGH.search(clause.lower()) or (unit and timed > 1) \
                    or figure.clock & times or len(values) < len(figure.readings):
                continue  # rough, a time, or perhaps a list ("21,22"): ambiguous
            if any(_matches(v, unit, f) for v in values for f in found
                   if f.content <= words and (f.qualifier not in PAST or past)):
                continue  # a field the clause names holds it: "your total after tax is 120"
            if shared_name and any(_matches(v, unit, f) for v in values for f in found):
                continue  # a name shared from the figure before is a guess
            # Any field a word beside the figure names may be the one it gives ("16 GB" is
            # memory_gb's, though "memory" is not said): an ambiguous figure is not failed.
            if any(_matches(v, unit, f) for v in values for f in found
                   if f.content & near_stems and (f.qualifier not in PAST or past)):
                continue
            value = figure.value
            shared = set().union(*(f.content for f in matched))
            related = [f for f in found if f.content & shared
                       and any(_matches(v, unit, f) for v in values)]
            if any(f.qualifier not in PAST for f in related):
                continue  # a new or sibling value stated plainly ("total is 54.98")
            if related and _PAST_HINTS.search(clause.lower()):
                continue  # an earlier value, said to be one ("up from 389 kWh")
            f = matched[0]
            said = (f"{related[0].key} (an earlier value), while {f.key} is {f.value:g}"
                    if related else f"{f.key} is {f.value:g}")
            out.append(Misread(value, clause, said))
    return out


def _matches(value: float, unit: str | None, f: Field) -> bool:
    if same(value, f.value):
        return True
    key_unit = next((_unit(w) for w in f.content if _unit(w)), None)
    if unit and key_unit and unit != key_unit:
        return same(value * _TIME_UNITS[unit] / _TIME_UNITS[key_unit], f.value)
    return False


_HYPOTHETICAL = re.compile(r"^(?:new|proposed|projected|quoted|estimated|expected|would_be)_",
                           re.IGNORECASE)


def settled(value: Any) -> Any:
    """A result without its hypothetical fields: ``new_return_date`` from a quote is what
    would be, not what is."""
    if isinstance(value, dict):
        return {k: settled(v) for k, v in value.items() if not _HYPOTHETICAL.match(str(k))}
    if isinstance(value, list):
        return [settled(v) for v in value]
    return value


def restates(clause: str, results: list[Any]) -> bool:
    """Whether a clause's figures and dates are all values the results hold as settled
    ("your balance is now $40" after ``balance: 40``), and it has at least one."""
    texts = [plain_json(settled(v)) for v in results]
    held = {float(n) for t in texts for n in re.findall(r"\d+(?:\.\d+)?",
                                                         re.sub(r"(?<=\d),(?=\d)", "", t))}
    dates = {(m, d) for t in texts for m, d, _, _ in answer_dates(t)}
    said = quantities(clause)
    days = [(m, d) for m, d, _, _ in answer_dates(clause)]
    return bool(said or days) and all(any(same(v, n) for v in f.values for n in held)
                                      for f in said) and all(d in dates for d in days)


def plain_json(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str)
