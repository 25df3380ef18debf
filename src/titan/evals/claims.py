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

from titan.evals import numbers
from titan.evals.dates import in_date_or_time

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
     ("transfer", "move", "send", "change", "update", "rebook", "schedule")),
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
    (r"ordered|placed|purchased|put in an order", ("order", "place", "purchase", "buy"),
     ("order", "place", "purchase", "buy")),
    (r"granted|assigned", ("grant", "assign"), ("grant", "assign", "add")),
    (r"issued", ("issue",), ("issue", "refund", "credit", "create")),
    (r"approved", ("approve",), ("approve",)),
    (r"replaced|exchanged", ("replace", "exchange"), ("replace", "exchange")),
    (r"paused", ("pause",), ("pause", "suspend", "hold", "freeze")),
    (r"resumed|unpaused", ("resume", "unpause"), ("resume", "unpause", "activate")),
    (r"redeemed", ("redeem",), ("redeem",)),
    (r"enrolled|registered|subscribed", ("enroll", "enrol", "register", "subscribe", "sign up"),
     ("enrol", "register", "subscribe", "sign", "join", "add")),
    (r"unsubscribed", ("unsubscribe", "opt out"), ("unsubscribe", "opt", "remove", "cancel")),
    (r"redirected|rerouted", ("redirect", "reroute"), ("redirect", "route", "update", "change")),
    (r"restored|recovered", ("restore", "recover"), ("restore", "recover", "undo")),
    (r"requested", ("request",), ("request", "submit", "place", "create", "file", "order")),
    (r"waived", ("waive",), ("waive", "discount", "credit", "adjust", "override")),
    (r"flagged", ("flag",), ("flag", "note", "alert", "notify", "allerg")),
)
#: Every verb an instruction asks for an action with.
ACTION_VERBS = frozenset(v for _, verbs, _ in ACTIONS for v in verbs)
# Names of tools that only read: their success backs no claimed action ("check_upgrade"
# quoting a price is not an upgrade).
READ_VERBS = frozenset({"get", "list", "search", "find", "read", "lookup", "look", "check",
                        "fetch", "show", "view", "query", "describe", "count", "track",
                        "quote", "estimate", "preview", "validate", "verify"})
# Mutually exclusive states, by domain. An answer asserting one the tools never reported,
# while they reported another of the same group, contradicts them ("on time" / "delayed").
STATE_GROUPS: tuple[tuple[str, ...], ...] = (
    ("on time", "delayed", "cancell?ed", "departed", "landed", "diverted"),
    ("processing", "shipped|in transit|dispatched", "delivered", "cancell?ed",
     "out for delivery", "on hold"),
    ("approved", "denied|rejected", "under review|in review|being (?:processed|reviewed)",
     "paid out", "pending documents|awaiting documents|action required"),
    ("active", "frozen|blocked|locked", "suspended", "expired", "paused"),
    ("posted", "pending", "declined", "reversed"),
)
# What an answer says when it implies the asked-for action happened without naming it: "a
# replacement is on its way", "your rental now runs until June 14".
IMPLIED = re.compile(
    r"\b(?:is|are|'s|'re)\s+(?:now\s+)?(?:on (?:its|their|the|your) way|being (?:sent|shipped|"
    r"mailed|posted|processed|prepared|issued|arranged)|in the (?:post|mail))\b|"
    r"\bhas been (?:dispatched|mailed|posted)\b|\b(?:is|are|'s|'re) now\b|"
    r"\b(?:is|are|'s|'re) (?:all )?(?:confirmed|booked|reserved|scheduled|arranged|set up|"
    r"in place|on order)\b|"
    r"\bnow (?:runs?|ships?|goes|shows|has|have|includes?|covers?|ends?|starts?|expires?|"
    r"renews?|reads?|lists?|points?|belongs?|is|are)\b", re.IGNORECASE)
# Narrower than _CONDITIONAL: "now runs until June 14" is a claim, "until" notwithstanding.
_HEDGED = re.compile(r"\b(?:if|once|when|whenever|unless|would|could|should|might|can|"
                     r"will|want|like|going to|about to|let me)\b|'ll\b", re.IGNORECASE)
# The world reporting progress itself: "on its way" is then a state report, not a claim.
PROGRESS = re.compile(r"\b(?:in transit|shipped|dispatched|out for delivery|on (?:its|the) way|"
                      r"en route|processing|issued|sent|posted|scheduled|approved|paid)\b")
_QUESTION = re.compile(r"^\W*(?:where|what|what's|when|which|who|why|how|has|have|is|are|was|"
                       r"were|did|does|do)\b", re.IGNORECASE)
_ASKING = re.compile(r"\b(?:please|can you|could you|would you|i want|i'd like|i need)\b",
                     re.IGNORECASE)
_NO_ACTION = re.compile(
    r"\b(?:(?:don't|do not|won't|will not) (?:need|have) to do anything|no (?:further |other )?"
    r"action (?:is |was )?(?:needed|required|necessary)|nothing (?:else |more )?(?:is |for you )?"
    r"(?:needed|required|to do)|(?:there's|there is) nothing (?:else |more )?"
    r"(?:you need |for you )?to do|(?:all|everything)(?: is|'s) in order)\b", re.IGNORECASE)
_NEGATION = re.compile(r"\b(?:not|no|never|nothing|none|neither|nor|unable|cannot|without|"
                       r"failed|didn't|wasn't|weren't|isn't|aren't|hasn't|haven't|couldn't|"
                       r"can't|won't|wouldn't|no longer|yet to)\b|n't\b", re.IGNORECASE)
_CONDITIONAL = re.compile(r"\b(?:if|once|when|whenever|until|unless|after|before|will|would|"
                          r"can|could|should|might|shall|want|like|need|needs|try|tried|"
                          r"trying|able|going to|about to|let me|to be)\b", re.IGNORECASE)
# Not commas: "It costs £2.00 per day, charged only on days you use it" is one thought.
# A dash between words parts clauses too ("Sorted - you won't be billed"); not "5 - 7 days".
_CLAUSES = re.compile(r"(?<!\d)[.!?;:](?!\d)|[.!?:](?=\s|$)|\n|(?<!\d)\s[—–-]\s(?!\d)|"
                      r"(?<!\d)—(?!\d)|\bbut\b|\band\b|\bso\b|\bwhile\b|\bthough\b",
                      re.IGNORECASE)
_DONE = re.compile(r"^\W*(?:(?:ok|okay|great|sure|yes|alright|no problem)\W+)?(?:(?:you're|"
                   r"you are|we're|that's|it's|that is|it is|everything's|everything is) )?"
                   r"(?:done|all done|all set|sorted|taken care of|completed?|finished)\b",
                   re.IGNORECASE)
# The asked-for action claimed without its verb: "I've arranged a 2pm checkout", "we've
# sorted out your upgrade" claim what the user asked for, as "Done!" does.
_ARRANGED = re.compile(r"\b(?:i|we)(?:'ve| have)? (?:just |now |already )?(?:arranged|"
                       r"organi[sz]ed|sorted(?: out)?|secured|got you)\b", re.IGNORECASE)
_ACTOR = re.compile(r"\b(?:i|we)(?:'ve|'d| have| had| just| already)?\b|(?:\b(?:has|have|had) |"
                    r"'s |'ve )been\b|\b(?:is|are) now\b|\byou(?:'re| are)\b|\byou(?:'ve| have) been\b",
                    re.IGNORECASE)
_COPULAS = frozenset({"is", "are", "was", "were", "be", "been", "being", "that's", "it's",
                      "there's", "which", "that"})
_UNIT = (r"(?:\s*(?:-|–|to)\s*\d+)?[\s-]*(?:business\s+|working\s+|calendar\s+)?"
         r"(?:minutes?|mins?|hours?|hrs?|days?|weeks?|months?|years?|nights?|seconds?)\b")
_DURATION = re.compile(_UNIT, re.IGNORECASE)


@dataclass(frozen=True)
class Claim:
    """An action the answer says was done: its clause, the past form it used (None for a
    bare "Done!") and the tool-name stems that would have done it."""

    text: str
    word: str | None  # without a re- prefix: "reissued" claims "issued"
    stems: tuple[str, ...]
    forms: tuple[str, ...] = ()  # the action's other plain past forms: "emailed" is "sent"


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
        if _NEGATION.search(low) or _CONDITIONAL.search(low) or _modal_may(clause):
            continue
        for forms, verbs, stems in ACTIONS:
            m = re.search(rf"\b(?:re-?)?({forms})\b", low)
            if m and _claims(low[:m.start()]):
                found.append(Claim(clause, m.group(1), stems,
                                   tuple(f for f in forms.split("|") if f.isalpha())))
            if (_DONE.search(low) or _ARRANGED.search(low)) \
                    and any(re.search(rf"\b{v}\b", asked) for v in verbs):
                found.append(Claim(clause, None, stems))  # "Done!" claims what was asked
    return found


def _modal_may(clause: str) -> bool:
    """"may" as a modal ("you may see it", "May I..."), not the month ("your May bill")."""
    return re.search(r"\bmay\b|^\W*May\b(?!\s+\d)", clause.strip()) is not None


def reported(word: str, told: str) -> bool:
    """Whether a tool's result reports a claimed past form itself, in any of its word forms:
    "issued" by ``status: issued``, ``"documents_reissued": true``, "re-issued", ``issue_date``
    with a date; not by a key that says it did not happen (``"refund_issued": false``)."""
    if re.search(rf"\b(?:re[\s-]?)?{re.escape(word)}\b(?!\"?:\s*(?:false|null|0)\b)", told):
        return True
    # A key named by the verb itself, with a value: "refunded" by ``refund: 40`` or
    # ``refund_amount: 89.99``; not by ``refund_status: pending`` or ``refund: false``.
    bases = {word[:-k] for k in (1, 2, 3) if len(word) - k >= 4}
    return any(re.search(rf"\"(?:[a-z ]* )?{re.escape(b)}(?: [a-z ]*)?\":\s*(?!\s|false\b|null\b|"
                         rf"0\b|\"\"|\[\]|\"(?:pending|none|not|denied|rejected|failed|declined|"
                         rf"ineligible))", told) for b in bases)


def names_result(clause: str, response: Any) -> bool:
    """Whether a clause names an identifier a result returned ("voucher V-88213 issued"
    after ``voucher: V-88213``), or an amount it returned under a key the clause names ("£10
    credit added" after ``goodwill_credit: 10``): a claim about what that call made."""
    said = json.dumps(response, default=str)
    if any(re.search(rf"(?<![\w-]){re.escape(ident)}(?![\w-])", said)
           for ident in re.findall(r"(?<![\w-])[A-Za-z]{0,6}[-_]?\d[\w-]*", clause)
           if len(ident) >= 3 and re.search(r"[A-Za-z]", ident)):
        return True
    words = set(re.findall(r"[a-z]{4,}", clause.lower()))
    amounts = {(keys[-1], v) for keys, v in leaves(response) if keys and type(v) is float
               and words & set(re.findall(r"[a-z]{4,}", keys[-1].lower()))}
    return any(numbers.same(x, v) for f in numbers.find(clause) for x in f.values
               for _, v in amounts)


def leaves(value: Any, keys: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], str | float]]:
    """Every string and number of a result, with the keys above it (list items take their
    list's key)."""
    if isinstance(value, str):
        return [(keys, value.strip())]
    if isinstance(value, int | float) and not isinstance(value, bool):
        return [(keys, float(value))]
    if isinstance(value, dict):
        return [x for k, v in value.items() for x in leaves(v, (*keys, str(k)))]
    if isinstance(value, list):
        return [x for v in value for x in leaves(v, keys)]
    return []


def asks_action(instruction: str) -> bool:
    """Whether the user asked for something to be done ("send me a replacement", "extend my
    rental"), not a question about how things stand ("where is my order?")."""
    if _QUESTION.search(instruction) and not _ASKING.search(instruction):
        return False
    return any(re.search(rf"\b{re.escape(v)}\b", instruction, re.IGNORECASE)
               for v in ACTION_VERBS)


def says_done(final: str) -> bool:
    """Whether an affirmative clause says the work is done without naming it ("All done",
    "I've arranged it"): such an answer does not tell the user that a call failed."""
    return any((_DONE.search(c) or _ARRANGED.search(c)) and not _NEGATION.search(c)
               for c in clauses(final))


def implied_done(final: str) -> list[str]:
    """Affirmative clauses that say the asked-for action took effect without a verb of
    doing ("a replacement is on its way", "your rental now runs until June 14")."""
    return [c for c in clauses(final) if IMPLIED.search(c)
            and not _NEGATION.search(c) and not _HEDGED.search(c) and not _modal_may(c)
            and not re.search(r"\bstill\b", c, re.IGNORECASE)]


def says_nothing_needed(final: str) -> str | None:
    """The clause telling the user no action is needed on their side, if one does."""
    return next((c for c in clauses(final) if _NO_ACTION.search(c)), None)


def _claims(before: str) -> bool:
    """Whether the words before a past form make it a claim of having done it: "I've
    cancelled", "has been cancelled", "is now frozen", "You're rebooked", or the form near
    the clause's start without a copula ("Switched you to 14C", "dispute opened"). "Your
    order was cancelled" is a state report, checked against the tools' states instead."""
    if re.search(r"\b(?:you|they)\s*$", before):
        return False  # "the card you paid with": the user's doing, not a claim
    if _ACTOR.search(before):
        return True
    words = before.split()
    return len(words) <= 3 and not any(w in _COPULAS for w in words)


def is_write(tool: str) -> bool:
    """Whether a tool name reads as an action (``cancel_order``) rather than a read."""
    words = re.split(r"[_\W]+", tool.lower())
    return bool(words) and words[0] not in READ_VERBS


def backs(tool: str, claim: Claim, arguments: Any = None) -> bool:
    """Whether a call of ``tool`` does the claimed action: its name holds one of the action's
    words, or (a write) one of its arguments does and is set ("flagged your allergy" by
    ``place_order(notes="sesame allergy")``)."""
    if not is_write(tool):
        return False
    if any(s in tool.lower() for s in claim.stems):
        return True
    return isinstance(arguments, dict) and any(
        v not in (None, "", [], {}, False) and any(s in str(k).lower() for s in claim.stems)
        for k, v in arguments.items())


# --- figures --------------------------------------------------------------------------------

def figures(final: str) -> list[tuple[numbers.Figure, str]]:
    """The figures ``final`` states, each with its clause: amounts and counts, with every
    reading they may have (:mod:`titan.evals.numbers`). Durations, identifiers (T-5512, 14C,
    SPRING15), dates' parts and clock times are not (the judge checks dates and times whole:
    :mod:`titan.evals.misreports`)."""
    out = []
    for clause in clauses(final):
        for f in numbers.find(clause):
            if in_date_or_time(clause, f.start, f.end) or _DURATION.match(clause, f.end):
                continue
            out.append((f, clause))
    return out


# --- states ---------------------------------------------------------------------------------

def stated_states(final: str) -> list[tuple[int, str, str]]:
    """(group, state pattern, clause) for each state the answer affirms."""
    out = []
    for clause in clauses(final):
        low = _plain(clause)
        for g, group in enumerate(STATE_GROUPS):
            for state in group:
                m = re.search(rf"\b(?:{state})\b", low)
                # A negation's reach ends at a comma: "Not yet, it's still being processed".
                if m and not _NEGATION.search(re.split(r"[,—–]", low[:m.start()])[-1]) \
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
