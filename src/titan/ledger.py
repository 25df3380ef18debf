"""The run ledger: each recorded action hashed and chained to the one before it in its run.

An action's *content* is the canonical JSON array of :data:`CONTENT_FIELDS` (in that order,
after the version tag; objects with sorted keys, no spaces, UTF-8 as is). Its *chain hash*
links that content to the action before it::

    h_0 = sha256("titan-ledger-v1:" + run_id)
    h_n = sha256(h_{n-1} + ":" + seq_n + ":" + content_n)      (h as hex digests)

and the run keeps ``h_last`` (its *head*) beside its action count. Both are computed by the
master in the transaction that numbers the actions, from the head its locked run row held, so
a batch and its links commit together. :func:`verify` walks a run's actions in seq order,
recomputes every link and names the first action that no longer fits: edited, deleted,
inserted or reordered after recording. What this proves, and what it does not, is in
docs/security.md ("The run ledger").

Runs recorded before the ledger existed have no head: their chain starts at the first action
recorded after the upgrade (the run's ``chain_start``); the actions before it are reported as
unchained, never as verified. A leaf: it imports nothing of Titan, so the storage layer (which
chains), the master (which verifies) and the CLI (which verifies an export offline) share it.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import operator
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

VERSION = "titan-ledger-v1"

#: What an action's content covers, in order: every recorded field but those that say where
#: it sits (``run_id`` and ``seq``: the chain covers them) and where its payloads are kept
#: (the row's text and blob flags: the payloads' sha256 are covered, and verification checks
#: a payload kept in the row against its hash).
CONTENT_FIELDS = (
    "id", "parent_id", "actor", "channel", "name", "ordinal", "inputs_hash", "inputs_size",
    "outputs_hash", "outputs_size", "error_type", "error_message", "outcome", "model",
    "input_tokens", "output_tokens", "cached_tokens", "reasoning_tokens", "cost_usd",
    "cost_source", "started_at", "duration_ns", "tags", "replay_status", "pii", "recorded_at",
)
#: Columns of an action row that are not content: position, payload storage, the hash.
NOT_CONTENT = ("run_id", "seq", "inputs", "inputs_blob", "outputs", "outputs_blob",
               "chain_hash")
#: Where the content's floats sit in its array (after the version tag).
_FLOATS = tuple(1 + CONTENT_FIELDS.index(f) for f in ("cost_usd", "started_at", "recorded_at"))
#: How far past a misplaced action :func:`verify` looks for the one recorded in its place.
SEARCH = 100_000

# Content is encoded for every action recorded, so how is part of the ledger's cost. The
# reference encoder is json's C encoder (made once: its usual entry point builds one per call,
# a fifth of the cost). orjson writes the same bytes for the same values four to five times
# faster, except for floats json writes in exponent form (|x| < 1e-4 or >= 1e16, where the two
# spell exponents differently): those go in as json's own text. Values orjson refuses (a lone
# surrogate, an int past 64 bits) take the reference path; tests/unit/test_ledger_encoding.py
# holds the two to the same bytes.
_object = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode
_make_c_encoder: Callable[..., Callable[[Any, int], Iterable[str]]] | None = getattr(
    json.encoder, "c_make_encoder", None)
if _make_c_encoder is not None:
    _c_array = _make_c_encoder(None, None, json.encoder.encode_basestring, None, ":", ",",
                               False, False, True)

    def _array(values: list[Any]) -> str:
        return "".join(_c_array(values, 0))
else:  # pragma: no cover - CPython has the C encoder
    _py_array = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode

    def _array(values: list[Any]) -> str:
        return _py_array(values)


def _reference(values: list[Any]) -> bytes:
    """The content's bytes as json writes them: what every encoding must equal."""
    return _array(values).encode()


def _floatless(value: Any) -> bool:
    """Whether a JSON value holds only strings, integers, booleans and nulls: where orjson
    and json write the same bytes (their floats' exponent forms differ)."""
    stack = [value]
    while stack:
        x = stack.pop()
        kind = type(x)
        if kind is dict:
            stack.extend(x.values())
        elif kind is list:
            stack.extend(x)
        elif not (kind is str or kind is int or kind is bool or x is None):
            return False
    return True


try:
    import orjson
except ImportError:  # pragma: no cover - a dependency; the reference path stays correct
    _encode = _reference

    def _dumps_fields(values: tuple[Any, ...]) -> bytes:
        raise TypeError  # no fast path: the general one encodes every row

    def _small(value: Any) -> str:
        return _object(value)
else:
    _Fragment, _dumps, _SORTED = orjson.Fragment, orjson.dumps, orjson.OPT_SORT_KEYS
    _dumps_fields = _dumps  # type: ignore[assignment]  # the fallback's signature is narrower

    def _encode(values: list[Any]) -> bytes:
        fast = values
        for i in _FLOATS:
            x = values[i]
            if x is not None and not (1e-4 <= abs(x) < 1e16 or x == 0.0):
                if not math.isfinite(x):
                    return _reference(values)  # json's NaN and Infinity
                if fast is values:
                    fast = list(values)
                fast[i] = _Fragment(float.__repr__(x))
        try:
            return _dumps(fast)
        except TypeError:
            return _reference(values)

    def _small(value: Any) -> str:
        """Tags or PII counts as the content holds them: json's canonical text, written by
        orjson (sorted keys; ~10x faster) when it is the same, by json otherwise."""
        if _floatless(value):
            try:
                return _dumps(value, option=_SORTED).decode()
            except TypeError:  # a key that is not a string, nesting past orjson's depth
                pass
        return _object(value)


Row = dict[str, Any]


def canonical(value: Any) -> str:
    """Canonical JSON of a JSON value: what ``titan.trace.canonical.dumps`` stores for it, so
    an exported payload hashes as recorded."""
    return _object(value)


def content(a: Mapping[str, Any]) -> bytes:
    """An action's canonical content (UTF-8), from a row as storage holds it (tags and PII
    counts decoded). Numbers are hashed as stored: a cost sent as 0 is kept, and hashed, as
    0.0."""
    # The common row, written in one pass: its fields taken at once, with no tags or PII to
    # encode and its floats where orjson writes json's bytes, needs no list built per action
    # (that was most of the content's cost). Anything else takes the general path.
    try:
        values = _fields(a)
    except KeyError:
        return _content(a)
    cost, started, recorded = values[_COST], values[_STARTED], values[_RECORDED]
    if values[_TAGS] is None and values[_PII] is None and type(started) is float \
            and type(recorded) is float and (1e-4 <= abs(started) < 1e16 or started == 0.0) \
            and (1e-4 <= abs(recorded) < 1e16 or recorded == 0.0) and (
                cost is None or type(cost) is float and (1e-4 <= abs(cost) < 1e16
                                                         or cost == 0.0)):
        try:
            return _PREFIX + _dumps_fields(values)[1:]
        except TypeError:  # what orjson refuses (an int past 64 bits, a lone surrogate)
            pass
    return _content(a)


_fields = operator.itemgetter(*CONTENT_FIELDS)
_COST, _STARTED, _RECORDED, _TAGS, _PII = (CONTENT_FIELDS.index(f) for f in (
    "cost_usd", "started_at", "recorded_at", "tags", "pii"))
_PREFIX = b'["' + VERSION.encode() + b'",'


def _content(a: Mapping[str, Any]) -> bytes:
    """:func:`content` for any row."""
    tags, pii, cost = a["tags"], a.get("pii"), a["cost_usd"]
    return _encode([
        VERSION, a["id"], a["parent_id"], a["actor"], a["channel"], a["name"], a["ordinal"],
        a["inputs_hash"], a["inputs_size"], a["outputs_hash"], a["outputs_size"],
        a["error_type"], a["error_message"], a["outcome"], a["model"], a["input_tokens"],
        a["output_tokens"], a["cached_tokens"], a["reasoning_tokens"],
        None if cost is None else float(cost), a["cost_source"], float(a["started_at"]),
        a["duration_ns"], None if tags is None else _small(tags), a.get("replay_status"),
        _small(pii) if pii else None, float(a["recorded_at"]),
    ])


def genesis(run_id: str) -> str:
    """h_0: binds the chain to its run, so actions cannot be moved to another run."""
    return hashlib.sha256(f"{VERSION}:{run_id}".encode()).hexdigest()


def link(prev: str, seq: int, text: bytes) -> str:
    """h_n from h_{n-1}, the action's seq and its content."""
    return hashlib.sha256(f"{prev}:{seq}:".encode() + text).hexdigest()


def extend(run_id: str, head: str | None, start: int | None, rows: list[Row]) -> tuple[str, int]:
    """Chain ``rows`` (numbered, ``recorded_at`` set, in seq order) after the run's ``head``,
    setting each one's ``chain_hash``; a row's content is taken from its ``_content`` when
    the caller computed it already (the master does, off its writer thread). Returns the new
    head and the chain's start: the first seq given now when the run had no head yet (a new
    run, or one recorded before the ledger existed)."""
    if head is None:
        start, head = rows[0]["seq"], genesis(run_id)
    assert start is not None
    for r in rows:
        r["chain_hash"] = head = link(head, r["seq"], r.get("_content") or content(r))
    return head, start


def payload_problem(a: Mapping[str, Any]) -> str | None:
    """Whether a payload kept in the row no longer matches its recorded hash (a payload in
    the blob store is named by that hash, so it cannot drift from it)."""
    for side in ("inputs", "outputs"):
        text, recorded = a[side], a[f"{side}_hash"]
        if a[f"{side}_blob"] or (text is None and recorded is None):
            continue
        if text is None or recorded is None or \
                hashlib.sha256(text.encode()).hexdigest() != recorded:
            return f"its {side} no longer match the hash recorded with them"
    return None


def _break(seq: int, kind: str, message: str, action_id: str | None = None) -> Row:
    return {"seq": seq, "kind": kind, "action_id": action_id, "message": message}


class _Walk:
    """One pass over a run's actions in seq order (see :func:`verify`)."""

    def __init__(self, run_id: str, count: int, head: str | None, start: int | None,
                 resume: tuple[int, str | None] | None) -> None:
        self.run_id, self.count, self.head, self.start = run_id, count, head, start
        self.expected, self.prev = (resume[0] + 1, resume[1]) if resume else (1, None)
        self.read = 0  # rows read, this walk
        self.head_at: int | None = None  # the seq whose chain hash the run's head is

    def step(self, a: Mapping[str, Any]) -> Row | None:
        """Check one action; the break it shows, if any (kind "" when only the rows after
        it can tell which: see :meth:`misplaced`)."""
        seq = a["seq"]
        self.read += 1
        if seq != self.expected:
            missing = (f"#{self.expected}" if seq == self.expected + 1
                       else f"#{self.expected}–#{seq - 1}")
            return _break(self.expected, "deleted",
                          f"action {missing} is missing: deleted after recording (the run "
                          f"goes from #{self.expected - 1} to #{seq})")
        self.expected = seq + 1
        if self.start is None or seq < self.start:
            if a["chain_hash"]:
                return _break(seq, "head", f"action #{seq} carries a chain hash but the run "
                              "has no chain head: the run's head was removed", a["id"])
            return None
        if seq == self.start:
            self.prev = genesis(self.run_id)
        if not a["chain_hash"]:
            return _break(seq, "edited", f"action #{seq} lost its chain hash: removed after "
                          "recording", a["id"])
        problem = payload_problem(a)
        if problem is not None:
            return _break(seq, "edited", f"action #{seq} was edited: {problem}", a["id"])
        assert self.prev is not None
        if a["chain_hash"] != link(self.prev, seq, content(a)):
            return _break(seq, "", "", a["id"])
        self.prev = a["chain_hash"]
        if a["chain_hash"] == self.head:
            self.head_at = seq
        return None

    def misplaced(self, found: Row, rest: Iterator[Mapping[str, Any]]) -> Row:
        """Action #k does not hash to its chain hash: read the rest of the run to say why
        (the action recorded at #k found further on; more or fewer rows than it counts)."""
        k, prev, action_id = found["seq"], self.prev, found["action_id"]
        assert prev is not None
        rows, moved_to = k, None
        for b in rest:
            rows += 1
            if moved_to is None and rows - k <= SEARCH and b["chain_hash"] and \
                    b["chain_hash"] == link(prev, k, content(b)):
                moved_to = b["seq"]
        if moved_to is not None and rows > self.count:
            return _break(k, "inserted", f"action #{k} was inserted after recording: the "
                          f"action recorded as #{k} now sits at #{moved_to}", action_id)
        if moved_to is not None:
            return _break(k, "reordered", f"actions were reordered: #{k} holds another "
                          f"action, and the one recorded as #{k} now sits at #{moved_to}",
                          action_id)
        if rows < self.count:
            return _break(k, "deleted", f"an action at or before #{k} was deleted and the "
                          f"ones after it renumbered (the run counts {self.count}, the table "
                          f"holds {rows})", action_id)
        if rows > self.count:
            return _break(k, "inserted", f"action #{k} was inserted after recording (the run "
                          f"counts {self.count}, the table holds {rows})", action_id)
        return _break(k, "edited", f"action #{k} was edited after recording: it no longer "
                      "hashes to the chain hash recorded with it", action_id)

    def end(self) -> Row | None:
        """All rows read: what the run's count and head say of the end of the chain."""
        last = self.expected - 1
        if last == 0 and self.count:
            return _break(1, "deleted", f"all {self.count} of the run's actions are missing: "
                          "deleted after recording")
        if last < self.count:
            missing = f"#{last + 1}" if last + 1 == self.count else f"#{last + 1}–#{self.count}"
            return _break(last + 1, "deleted", f"action {missing} is missing: the run counts "
                          f"{self.count}, the table stops at #{last}")
        if self.start is None:
            if self.head is not None:
                return _break(last, "head", "the run has a chain head but no chain start: "
                              "its ledger columns were changed")
            return None
        if self.head is None:
            return _break(last, "head", "the run's chain head was removed")
        if self.prev != self.head:
            if self.head_at is not None:
                return _break(self.head_at + 1, "inserted", f"actions after #{self.head_at} "
                              "were inserted after recording: the run's head is "
                              f"#{self.head_at}'s hash")
            return _break(last + 1, "deleted", f"the run's head is not the hash of its last "
                          f"action #{last}: actions after it were deleted (or the head was "
                          "changed)")
        return None


def verify(run_id: str, count: int, head: str | None, start: int | None,
           rows: Iterable[Mapping[str, Any]], *, resume: tuple[int, str | None] | None = None,
           limit: int | None = None) -> Row:
    """Check a run's chain: ``count``, ``head`` and ``start`` are the run's (action count,
    chain head, chain start), ``rows`` its actions in seq order (after ``resume[0]`` when
    resuming from a seq already found sound, whose chain hash is ``resume[1]``: None before
    the chain's start).

    Returns ``{"status", "actions", "checked", "unchained", "chained_from", "head",
    "through", "verified_through", "last_hash", "read", "break", "message"}``: ``status``
    is ``verified`` (or ``unchained`` for a run recorded wholly before the ledger), ``broken``
    with ``break`` naming the first action that fails (``seq``, ``kind`` — edited, deleted,
    inserted, reordered or head — ``action_id``, ``message``), or ``partial`` when ``limit``
    rows were read before the end. ``through`` is the last seq the walk found sound,
    ``verified_through`` the same when it is chained, and ``last_hash`` its chain hash: a
    later walk may resume from ``(through, last_hash)``. ``read`` counts the rows this walk
    read."""
    walk = _Walk(run_id, count, head, start, resume)
    found: Row | None = None
    it = iter(rows)
    for a in it:
        if a["seq"] > count:
            # More rows than the run counts: the last ones were added behind its back, or
            # the run's count was lowered (the rows past it then still chain to its head).
            found = _count_lowered(walk, a, it) or walk.end() or _break(
                a["seq"], "inserted", f"action #{a['seq']} was inserted after recording: the "
                f"run counts {count}", a["id"])
            break
        found = walk.step(a)
        if found is not None:
            if not found["kind"]:
                found = walk.misplaced(found, it)
            break
        if limit is not None and walk.read >= limit and walk.expected <= count:
            return _report(walk, None, partial=True)
    else:
        found = walk.end()
    return _report(walk, found)


def _count_lowered(walk: _Walk, first: Mapping[str, Any],
                   rest: Iterator[Mapping[str, Any]]) -> Row | None:
    """The break when the rows past the run's count, ``first`` and ``rest``, still chain on
    to the run's head: nothing was added, the run's action count was changed. None when
    they do not (then they were added)."""
    prev, seq, expected = walk.prev, walk.expected - 1, walk.expected
    if walk.start is None or prev is None or walk.head is None:
        return None
    for b in itertools.chain((first,), rest):
        if b["seq"] != expected or not b["chain_hash"] or \
                b["chain_hash"] != link(prev, b["seq"], content(b)):
            return None
        prev, seq, expected = b["chain_hash"], b["seq"], b["seq"] + 1
    if prev != walk.head:
        return None
    return _break(walk.count + 1, "head", f"the run counts {walk.count} actions but holds "
                  f"{seq}, chained up to its head: the run's action count was changed after "
                  "recording")


def _report(walk: _Walk, found: Row | None, partial: bool = False) -> Row:
    through = (found["seq"] - 1 if found else walk.expected - 1)
    start = walk.start
    chained = start is not None and through >= start
    # Derived rather than counted, so a walk resumed half-way reports the whole run.
    unchained = min(walk.count, start - 1) if start is not None else walk.count
    checked = through - start + 1 if start is not None and chained else 0
    if found is not None:
        status, message = "broken", found["message"]
    elif partial:
        status, message = "partial", f"verified through #{through} of {walk.count}"
    elif start is None and walk.count:
        status = "unchained"
        message = f"recorded before the ledger existed: its {walk.count} actions are unchained"
    else:
        status = "verified"
        message = f"{checked} action{'' if checked == 1 else 's'} verified"
        if unchained:
            message += (f" from #{start}; the {unchained} before were recorded before the "
                        "ledger existed")
    return {"status": status, "actions": walk.count, "checked": checked,
            "unchained": unchained, "chained_from": start, "head": walk.head,
            "through": through, "verified_through": through if chained else None,
            "last_hash": walk.prev if chained else None, "read": walk.read, "break": found,
            "message": message}
