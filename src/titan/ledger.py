"""The run ledger: each recorded action hashed and chained to the one before it in its run.

An action's *content* is the canonical JSON array of :data:`CONTENT_FIELDS` (in that order,
after the version tag; objects with sorted keys, no spaces, UTF-8 as is). Its *chain hash*
links that content to the action before it::

    h_0 = sha256("titan-ledger-v1:" + run_id)
    h_n = sha256(h_{n-1} + ":" + seq_n + ":" + content_n)      (h as hex digests)

and the run keeps ``h_last`` (its *head*) beside its action count. Both are computed by the
master in the transaction that numbers the actions, from the head its locked run row held, so
a batch and its links commit together. :func:`titan.ledger_verify.verify` walks a run's
actions in seq order, recomputes every link and names the first action that no longer fits:
edited, deleted, inserted or reordered after recording. What this proves, and what it does
not, is in docs/security.md ("The run ledger").

Runs recorded before the ledger existed have no head: their chain starts at the first action
recorded after the upgrade (the run's ``chain_start``); the actions before it are reported as
unchained, never as verified. A leaf: it imports nothing of Titan, so the storage layer (which
chains), the master (which verifies) and the CLI (which verifies an export offline) share it.
"""

from __future__ import annotations

import hashlib
import json
import math
import operator
from collections.abc import Callable, Iterable, Mapping
from typing import Any

VERSION = "titan-ledger-v1"
#: Inputs and outputs up to this size (their canonical JSON, UTF-8) are kept in the action's
#: row; larger ones in the blob store, the row keeping a preview. Since ``*_size`` is in the
#: content, a payload the chain says is this small was never a preview anywhere: an export
#: holds it whole, and verifying it checks it against its hash whatever else the file says.
INLINE_BYTES = 64 * 1024

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
    """Whether a payload kept in the row no longer matches its recorded hash. A payload in
    the blob store is checked by the master's verification against the store
    (``_payload_problem``, set by :func:`titan.master.runs.ledger.verify_run`): its row keeps
    only a preview, and a row's blob flag set by hand once hid an edited payload."""
    if a.get("_payload_problem"):
        return str(a["_payload_problem"])
    for side in ("inputs", "outputs"):
        text, recorded = a[side], a[f"{side}_hash"]
        if a[f"{side}_blob"] or (text is None and recorded is None):
            continue
        if text is None or recorded is None or \
                hashlib.sha256(text.encode()).hexdigest() != recorded:
            return f"its {side} no longer match the hash recorded with them"
    return None
