"""What a run's final answer asserts, read by code: actions it claims, figures, states.

The judge's code checks (:mod:`titan.evals.checks`) hold these against the recorded tool
results. Everything here errs towards *not* reading a claim: a sentence it misses leaves the
run to the model, a sentence it misreads would fail a good run. So a clause is skipped when
it is negated ("nothing was charged"), conditional or future ("once you've set a new
password", "I can reset it"), and a figure is ignored when it is a duration ("5-7 business
days": agents add such boilerplate from their own instructions) or part of an identifier.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

# One row per action: the past forms an answer claims it with, the verbs an instruction asks
# for it with, and the words a tool that does it is named with. A claim is backed by a
# successful call whose name holds one of those words ("cancelled" by cancel_order, "sent"
# by send_password_reset).
ACTIONS: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...] = (
    (r"cancell?ed", ("cancel",), ("cancel",)),
    (r"refunded", ("refund",), ("refund", "credit")),
    (r"rebooked", ("rebook",), ("rebook", "book", "change")),
    (r"booked|reserved", ("book", "reserve"), ("book", "reserve", "schedule", "appointment")),
    (r"scheduled", ("schedule",), ("schedule", "book", "pay")),
    (r"transferred|moved", ("transfer", "move"),
     ("transfer", "move", "send", "change", "update", "rebook")),
    (r"paid", ("pay",), ("pay", "bill")),
    (r"charged", ("charge",), ("charge", "pay", "bill")),
    (r"updated|changed|switched|modified|edited", ("change", "update", "switch", "modify", "edit"),
     ("update", "change", "switch", "set", "edit", "modify", "move", "assign")),
    (r"added|applied", ("add", "apply"), ("add", "apply", "create", "attach")),
    (r"created|opened|filed|logged|raised|submitted", ("create", "open", "file", "submit", "log"),
     ("create", "open", "file", "submit", "log", "add", "raise")),
    (r"escalated", ("escalate",), ("escalate", "assign", "transfer")),
    (r"deleted|removed", ("delete", "remove"), ("delete", "remove")),
    (r"sent|emailed", ("send", "email"), ("send", "email", "notify", "reset")),
    (r"reset", ("reset",), ("reset",)),
    (r"frozen|froze|blocked|locked|suspended", ("freeze", "block", "lock", "suspend"),
     ("freeze", "block", "lock", "suspend")),
    (r"unlocked|unblocked|unfrozen|reactivated|activated|enabled",
     ("unlock", "unblock", "unfreeze", "activate", "enable"),
     ("unlock", "unblock", "unfreeze", "activate", "enable", "turn")),
    (r"disabled|deactivated", ("disable", "deactivate"), ("disable", "deactivate", "turn")),
    (r"upgraded|downgraded", ("upgrade", "downgrade"), ("upgrade", "downgrade", "change", "update")),
    (r"renewed|extended", ("renew", "extend"), ("renew", "extend")),
    (r"ordered|placed|purchased", ("order", "place", "purchase", "buy"),
     ("order", "place", "purchase", "buy")),
    (r"granted|assigned", ("grant", "assign"), ("grant", "assign", "add")),
    (r"issued", ("issue",), ("issue", "refund", "credit", "create")),
    (r"approved", ("approve",), ("approve",)),
    (r"replaced|exchanged", ("replace", "exchange"), ("replace", "exchange")),
)
# Names of tools that only read: their success backs no claimed action ("check_upgrade"
# quoting a price is not an upgrade).
READ_VERBS = frozenset({"get", "list", "search", "find", "read", "lookup", "look", "check",
                        "fetch", "show", "view", "query", "describe", "count", "track",
                        "quote", "estimate", "preview", "validate", "verify"})
# Mutually exclusive states, by domain. An answer asserting one the tools never reported,
# while they reported another of the same group, contradicts them ("on time" / "delayed").
STATE_GROUPS: tuple[tuple[str, ...], ...] = (
    ("on time", "delayed", "cancell?ed", "departed", "landed", "diverted"),
    ("processing", "shipped", "delivered", "cancell?ed", "out for delivery", "on hold"),
    ("approved", "denied|rejected", "under review|in review", "paid out"),
    ("active", "frozen|blocked|locked", "suspended", "expired"),
    ("posted", "pending", "declined", "reversed"),
)
_NEGATION = re.compile(r"\b(?:not|no|never|nothing|none|neither|nor|unable|cannot|without|"
                       r"failed|didn't|wasn't|weren't|isn't|aren't|hasn't|haven't|couldn't|"
                       r"can't|won't|wouldn't|no longer|yet to)\b|n't\b", re.IGNORECASE)
_CONDITIONAL = re.compile(r"\b(?:if|once|when|whenever|until|unless|after|before|will|would|"
                          r"can|could|should|may|might|shall|want|like|need|needs|try|tried|"
                          r"trying|able|going to|about to|let me|to be)\b", re.IGNORECASE)
# Not commas: "It costs £2.00 per day, charged only on days you use it" is one thought.
_CLAUSES = re.compile(r"(?<!\d)[.!?;:](?!\d)|\n|\bbut\b|\band\b|\bso\b|\bwhile\b|"
                      r"\bthough\b", re.IGNORECASE)
_DONE = re.compile(r"^\W*(?:(?:ok|okay|great|sure|yes|alright)\W+)?(?:done|all done|all set|"
                   r"taken care of|completed?|finished|that's done|it's done)\b", re.IGNORECASE)
_ACTOR = re.compile(r"\b(?:i|we)(?:'ve|'d| have| had| just| already)?\b|\b(?:has|have|had) "
                    r"been\b|\b(?:is|are) now\b|\byou(?:'re| are)\b|\byou(?:'ve| have) been\b",
                    re.IGNORECASE)
_COPULAS = frozenset({"is", "are", "was", "were", "be", "been", "being", "that's", "it's",
                      "there's", "which", "that"})
_UNIT = (r"(?:\s*(?:-|–|to)\s*\d+)?[\s-]*(?:business\s+|working\s+|calendar\s+)?"
         r"(?:minutes?|mins?|hours?|hrs?|days?|weeks?|months?|years?|nights?|seconds?)\b")
_NUMBER = re.compile(r"(?<![\w.\-/:#])[$£€]?(\d{1,3}(?:,\d{3})+|\d+)(\.\d+)?(?![\w]|\.\d|-\d|/\d)"
                     r"(?!" + _UNIT + ")", re.IGNORECASE)
_DIGITS = re.compile(r"\d+(?:\.\d+)?")
_WORD_NUMBERS = {w: n for n, w in enumerate((
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
    "eleven", "twelve"))}


@dataclass(frozen=True)
class Claim:
    """An action the answer says was done: its clause, the past form it used (None for a
    bare "Done!") and the tool-name stems that would have done it."""

    text: str
    word: str | None
    stems: tuple[str, ...]


def clauses(text: str) -> list[str]:
    return [c.strip() for c in _CLAUSES.split(text) if c and c.strip()]


def _plain(text: str) -> str:
    return re.sub(r"[_\-]+", " ", text.lower())


def claimed_actions(final: str, instruction: str) -> list[Claim]:
    """Actions ``final`` says were done, from its affirmative clauses."""
    asked = instruction.lower()
    found: list[Claim] = []
    for clause in clauses(final):
        low = clause.lower()
        if _NEGATION.search(low) or _CONDITIONAL.search(low):
            continue
        for forms, verbs, stems in ACTIONS:
            m = re.search(rf"\b(?:{forms})\b", low)
            if m and _claims(low[:m.start()]):
                found.append(Claim(clause, m.group(), stems))
            if _DONE.search(low) and any(re.search(rf"\b{v}\b", asked) for v in verbs):
                found.append(Claim(clause, None, stems))  # "Done!" claims what was asked
    return found


def _claims(before: str) -> bool:
    """Whether the words before a past form make it a claim of having done it: "I've
    cancelled", "has been cancelled", "is now frozen", "You're rebooked", or the form near
    the clause's start without a copula ("Switched you to 14C", "dispute opened"). "Your
    order was cancelled" is a state report, checked against the tools' states instead."""
    if _ACTOR.search(before):
        return True
    words = before.split()
    return len(words) <= 3 and not any(w in _COPULAS for w in words)


def is_write(tool: str) -> bool:
    """Whether a tool name reads as an action (``cancel_order``) rather than a read."""
    words = re.split(r"[_\W]+", tool.lower())
    return bool(words) and words[0] not in READ_VERBS


def backs(tool: str, claim: Claim) -> bool:
    return is_write(tool) and any(s in tool.lower() for s in claim.stems)


# --- figures --------------------------------------------------------------------------------

def figures(final: str) -> list[tuple[float, str]]:
    """The figures ``final`` states, each with its clause: amounts, counts, times.
    Durations, identifiers (T-5512, 14C, SPRING15) and dates' parts after a slash are not."""
    out = []
    for clause in clauses(final):
        for m in _NUMBER.finditer(clause):
            out.append((float(m.group(1).replace(",", "") + (m.group(2) or "")), clause))
    return out


def known_figures(texts: list[str], lists: list[list[Any]]) -> set[float]:
    """Every figure the evidence supports: numbers in it (also inside ids and dates: the day
    of a date, the hour of a time), list sizes, how often a value occurs in a list, the
    simple arithmetic an answer may do (sums, differences, small multiples, cents, 12-hour
    clock times), and the last digits of long numbers ("ending 0123", a card's last four)."""
    base: set[float] = set()
    tails: set[float] = set()
    for text in texts:
        plain = re.sub(r"(?<=\d),(?=\d{3})", "", text)
        for m in _DIGITS.finditer(plain):
            base.add(float(m.group()))
            digits = m.group().split(".")[0]
            if len(digits) >= 7:
                tails.update(float(digits[-k:]) for k in (3, 4))
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
    derived.update(n - 12 for n in base if 13 <= n <= 23 and n == int(n))
    derived.update(n * 100 for n in base)
    derived.update(n / 100 for n in base)
    small = sorted(base)[:60]  # every pair of a long tool output would support anything
    for a in small:
        for b in small:
            derived.update((a + b, abs(a - b)))
            if b == int(b) and 2 <= b <= 12:
                derived.add(a * b)
    return derived


def supported(value: float, known: set[float]) -> bool:
    return any(abs(value - k) <= max(0.005, abs(k) * 1e-6) for k in known)


# --- states ---------------------------------------------------------------------------------

def stated_states(final: str) -> list[tuple[int, str, str]]:
    """(group, state pattern, clause) for each state the answer affirms."""
    out = []
    for clause in clauses(final):
        low = _plain(clause)
        for g, group in enumerate(STATE_GROUPS):
            for state in group:
                m = re.search(rf"\b(?:{state})\b", low)
                if m and not _NEGATION.search(low[:m.start()]) \
                        and not re.search(r"\b(?:will|once|if|until|when|should)\b", low):
                    out.append((g, state, clause))
    return out


def mentions(state: str, evidence: str) -> bool:
    return re.search(rf"\b(?:{state})\b", evidence) is not None


def evidence_text(value: Any) -> str:
    """A tool result as plain words for state matching: keys and values, ``_``/``-`` as
    spaces (``out_for_delivery`` reads as "out for delivery")."""
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return _plain(text)


def affirms_availability(final: str) -> bool:
    """Whether the answer affirms that something is available or in stock."""
    for clause in clauses(final):
        low = clause.lower()
        m = re.search(r"\b(?:in stock|available|have (?:it|them|some)|can order)\b", low)
        if m and not _NEGATION.search(low[:m.start()]) and "unavailable" not in low:
            return True
    return False
