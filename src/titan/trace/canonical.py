"""Canonical JSON: one spelling per value, so equal inputs hash equal on every machine.

Keys sorted, no insignificant whitespace, UTF-8 kept as is, integers and floats as Python's
``json`` writes them. The SDK uses it to key replays; the master uses it to store and hash what
any client sends, so a batch from another language hashes like one from Python. Values JSON
cannot hold are converted the way a person reading the trace would want them: dataclasses and
pydantic models as their fields, sets sorted, what lists or maps its items without being
consumed (``dict.keys()``/``values()``/``items()``, a deque, a range, a read-only mapping) as a
list or a dict, bytes whole as base64 under a ``$bytes`` marker (:func:`revived` turns them
back into bytes for a replay), anything else by repr — in a call's outputs (:func:`outputs`)
under a ``$repr`` marker, which a replay cannot give back and says so: an iterator (a
generator, ``map``, ``filter``) would have to be consumed to be recorded, and the caller get
an empty one;
what the master cannot store becomes a stand-in rather than losing the action: an integer past
64 bits as its decimal text, nesting past :data:`MAX_DEPTH` cut with a marker, a value whose
conversion fails (a ``__repr__`` that raises, a dataclass holding itself) as a marker naming
its type. Recording never raises into the program it records.
"""

from __future__ import annotations

import base64
import contextlib
import contextvars
import dataclasses
import hashlib
import json
import re
from collections import deque
from collections.abc import Callable, ItemsView, Iterable, Iterator, KeysView, Mapping, ValuesView
from typing import Any

_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")
#: Bytes are recorded as ``{"$bytes": "<base64>"}``.
BYTES = "$bytes"
#: Runs recorded before Titan kept bytes hold, for bytes over 256, only
#: ``{"$bytes_sha256": ..., "size": n}``: their content is gone.
LOST_BYTES = "$bytes_sha256"
_legacy_bytes: contextvars.ContextVar[bool] = contextvars.ContextVar("titan_legacy_bytes",
                                                                     default=False)
#: What a call returned that a replay cannot give back, recorded as ``{"$repr": "<text>"}``:
#: an object JSON cannot hold, by its repr, and an iterator (see the module's text).
REPR = "$repr"
_as_outputs: contextvars.ContextVar[bool] = contextvars.ContextVar("titan_as_outputs",
                                                                   default=False)
#: How a replay's refusal of such a call says it (:mod:`titan.trace.compare` reads it there).
NOT_REPLAYABLE_SAYS = "was recorded only as its repr, so the replay cannot return it"
#: The longest range recorded as its items (a range is lazy: range(10**12) holds none).
MAX_RANGE = 100_000
_encoder = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                            allow_nan=False, default=lambda o: jsonable(o))
# Every recorded action is canonicalised twice (inputs, outputs), on the caller's thread and
# again by the master: the C encoder is made once here rather than by each ``encode`` call
# (about 1 µs of the 3 to 5 µs a small value takes). Without a circular-reference check (its
# marker dict could not be shared between threads): a value holding itself raises
# RecursionError instead of ValueError, as dumps' fallback did already.
_make_c_encoder: Callable[..., Callable[[Any, int], Iterable[str]]] | None = getattr(
    json.encoder, "c_make_encoder", None)
_c_encode = None if _make_c_encoder is None else _make_c_encoder(
    None, _encoder.default, json.encoder.encode_basestring, None, ":", ",", True, False, False)


#: Deepest nesting of an action's inputs or outputs: the master takes bodies 64 levels deep
#: (titan.master.api.body.MAX_DEPTH) and a batch puts them 3 levels down
#: (``{"actions": [{"inputs": ...}]}``).
MAX_DEPTH = 61
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
# Whole tokens: a string, or a number with its fraction and exponent. Digits alone matched
# the 20 after a float's point too (0.00023436546325683594 became 0."000234..."), and the
# master refused the batch, every action in it lost (a QA pass).
_STRING_OR_INT = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|-?[0-9]+(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?')
_PARENS = bytes(40 if i in b"[{" else 41 if i in b"]}" else i for i in range(256))
_NOT_STRUCTURE = bytes(i for i in range(256) if i not in b'"[]{}')
_DIGITS = bytes(48 if 48 <= i <= 57 else 120 for i in range(256))  # digits as 0, others x
_19_DIGITS = b"0" * 19


def jsonable(value: Any) -> Any:
    """A JSON-representable stand-in for a value ``json`` cannot encode. Never raises: a
    conversion that fails (the value's own ``__repr__``, ``isoformat``, ``model_dump``) gives
    a marker naming the type, as a cycle does."""
    try:
        return _converted(value)
    except RecursionError:
        # The encoder's own depth (a dataclass holding itself, met again at each level):
        # dumps starts over with loops marked and the depth cut.
        raise
    except Exception as exc:  # noqa: BLE001 - any failure of the user's conversion methods
        return _stand_in(f"<{_type_name(value)}: not recordable ({type(exc).__name__})>")


def _stand_in(text: str) -> Any:
    """Text standing for a value: marked as such in a call's outputs, where a replay would
    otherwise hand the agent the text instead of the value."""
    return {REPR: text} if _as_outputs.get() else text


def _converted(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        # One level only (``asdict`` copies the whole tree, and recursed without end on a
        # dataclass that refers back to itself): the encoder converts what the fields hold.
        return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    dump = getattr(value, "model_dump", None)  # pydantic v2
    if callable(dump):
        return dump(mode="json")
    if isinstance(value, set | frozenset):
        return sorted((jsonable(v) if not isinstance(v, str | int | float) else v
                       for v in value), key=repr)
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, KeysView | ValuesView | ItemsView | deque) or (
            isinstance(value, range) and len(value) <= MAX_RANGE):
        # Their items, as a set's: by repr a replay handed back "dict_keys(['a.py'])", and the
        # agent iterated its characters while the replay reported a match (a QA pass).
        return list(value)
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, bytes | bytearray):
        # Whole, whatever their size (a payload past 64 KiB goes to the master's blob store
        # like any other): a replay hands them back (``fetch(url)`` returning the page read).
        data = bytes(value)
        if len(data) > 256 and _legacy_bytes.get():
            return {LOST_BYTES: hashlib.sha256(data).hexdigest(), "size": len(data)}
        return {BYTES: base64.b64encode(data).decode()}
    if hasattr(value, "isoformat"):
        return value.isoformat()
    # Without its memory address: "<Obj object at 0x7f...>" differs on every run, so a
    # replay read each such value as changed (an output mismatch, an input mismatch). An
    # iterator too (a generator, map, filter): recording it would consume it, and the caller
    # get an exhausted one.
    return _stand_in(_ADDRESS.sub("", repr(value)))


def _type_name(value: Any) -> str:
    try:
        return type(value).__name__
    except Exception:  # noqa: BLE001 - a __class__ property that raises
        return "object"


def dumps(value: Any) -> str:
    """The canonical JSON text of ``value``. NaN and infinities become strings (JSON has
    none), as do integers past 64 bits (the master's databases hold none); nesting past
    :data:`MAX_DEPTH` is cut with a marker. So an odd value never makes an action
    unrecordable, and never fails the call being recorded."""
    try:
        try:
            if _c_encode is None or isinstance(value, str):
                text = _encoder.encode(value)
            else:
                text = "".join(_c_encode(value, 0))
        except (ValueError, TypeError, RecursionError):
            # A NaN, keys of mixed or non-JSON types ({1: "a", "b": 2}, {(1, 2): "x"}), a
            # value holding itself or nested past the interpreter's stack: recorded as plain
            # JSON (keys as text, the loop marked, the depth cut) rather than failing the
            # call that is being recorded.
            text = _encoder.encode(_plain(value, set(), 0))
        else:
            # Its length, then its brackets, bound its depth cheaply (strings may hold some).
            if len(text) > 2 * MAX_DEPTH and text.count("{") + text.count("[") > MAX_DEPTH \
                    and _too_deep(text):
                text = _encoder.encode(_plain(value, set(), 0))
        # 19 digits in a row (an integer past 64 bits has as many; a string may too).
        if len(text) >= 19 and _19_DIGITS in text.encode("utf-8", "surrogatepass").translate(
                _DIGITS):
            text = _STRING_OR_INT.sub(_int64_or_text, text)
    except Exception as exc:  # noqa: BLE001 - the interpreter's stack already near its end
        text = json.dumps(_stand_in(f"<{_type_name(value)}: not recordable "
                                    f"({type(exc).__name__})>"), sort_keys=True,
                          separators=(",", ":"))
    return text if text.isascii() else utf8(text)


def outputs(value: Any) -> str:
    """:func:`dumps` of what a call returned: what only its repr stands for is marked
    (``{"$repr": ...}``), so a replay flags the call rather than serve the text."""
    token = _as_outputs.set(True)
    try:
        return dumps(value)
    finally:
        _as_outputs.reset(token)


def _too_deep(text: str) -> bool:
    """Whether JSON text nests past MAX_DEPTH, read from its brackets alone (strings dropped),
    each pass removing the innermost pairs: bytes operations, at most MAX_DEPTH passes."""
    raw = text.encode("utf-8", "surrogatepass")
    if b"\\" in raw:  # escapes read left to right: an escaped backslash, then a quote
        raw = raw.replace(b"\\\\", b"").replace(b'\\"', b"")
    nest = raw.translate(_PARENS, _NOT_STRUCTURE)  # brackets as parentheses, and quotes
    if b'"' in nest:
        # Two quotes side by side are an empty string or two strings with nothing between:
        # dropped at once; what is left quotes brackets, and goes with its quotes.
        nest = nest.replace(b'""', b"")
        if b'"' in nest:
            nest = b"".join(nest.split(b'"')[::2])
    for _ in range(MAX_DEPTH):
        nest = nest.replace(b"()", b"")
        if not nest:
            return False
    return True


def _int64_or_text(match: re.Match[str]) -> str:
    """A number of the encoded text as it stays, or as a string past 64 bits (strings and
    numbers that fit come back as they were)."""
    token = match.group()
    digits = token.lstrip("-")
    if token[0] == '"' or len(digits) < 19 or not digits.isdigit() or len(digits) == 19 and digits <= (
            "9223372036854775808" if token[0] == "-" else "9223372036854775807"):
        return token
    return f'"{token}"'


def utf8(text: str) -> str:
    """``text`` as UTF-8 can carry it: a lone surrogate (a file name read with
    ``surrogateescape``, ``os.fsdecode(b"\\xff")``) becomes U+FFFD. Sent as it was, it could
    not be encoded: the recorder kept retrying that batch, and nothing after it was recorded."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return _SURROGATE.sub("\ufffd", text)
    return text


_SURROGATE = re.compile("[\ud800-\udfff]")


def storable_text(text: str) -> str:
    """``text`` as the master stores a plain string (an error's type and message): UTF-8
    (:func:`utf8`) and no NUL, which PostgreSQL's text holds none of, so the master refuses
    it; U+FFFD stands for each. A tool whose exception said binary data vanished from the
    recording: its action was refused and dropped, and the run looked successful."""
    return utf8(text).replace("\x00", "\ufffd")


def _plain(value: Any, seen: set[int], depth: int) -> Any:
    """``value`` as plain JSON values, its loops marked, cut below MAX_DEPTH levels."""
    if isinstance(value, float):
        return value if value == value and value not in (float("inf"), float("-inf")) \
            else repr(value)
    if isinstance(value, int) and not _INT64_MIN <= value <= _INT64_MAX:
        # As a string (dumps would make it one), or past the digits Python writes at all.
        return str(value) if value.bit_length() < 14_000 else f"<int of {value.bit_length()} bits>"
    if value is None or isinstance(value, str | int | bool):
        return value
    if id(value) in seen:
        return f"<cycle: {_type_name(value)}>"
    if isinstance(value, type):
        return _stand_in(repr(value))
    if depth >= MAX_DEPTH and isinstance(value, dict | list | tuple):
        return f"<cut: nested deeper than {MAX_DEPTH} levels>"
    seen.add(id(value))
    try:
        if isinstance(value, dict):
            return {k if isinstance(k, str) else _key(k): _plain(v, seen, depth + 1)
                    for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [_plain(v, seen, depth + 1) for v in value]
        # Its stand-in at the same level, the object itself marked as seen: a dataclass
        # or model that refers back to itself is a loop like a list holding itself.
        return _plain(jsonable(value), seen, depth)
    finally:
        seen.discard(id(value))


def _key(key: Any) -> str:
    """A dict key as JSON spells it: numbers, booleans and None as json writes them, others
    by repr."""
    if key is None or isinstance(key, bool | int | float):
        return json.dumps(key)
    try:
        return repr(key)
    except Exception as exc:  # noqa: BLE001 - the user's __repr__
        return f"<{_type_name(key)}: not recordable ({type(exc).__name__})>"


@contextlib.contextmanager
def bytes_as_before() -> Iterator[None]:
    """Within it, :func:`dumps` writes bytes over 256 as runs recorded before Titan kept bytes
    did (their sha256 and size): a replay of such a run matches, and records, its calls' inputs
    as the recording hashed them. Per thread and task (a context variable)."""
    token = _legacy_bytes.set(True)
    try:
        yield
    finally:
        _legacy_bytes.reset(token)


def revived(value: Any) -> Any:
    """A recorded JSON value with its ``{"$bytes": ...}`` markers as bytes again: what the
    recorded call returned. A dict of that one key holding base64 is taken for bytes."""
    if isinstance(value, dict):
        if len(value) == 1 and isinstance(value.get(BYTES), str):
            with contextlib.suppress(ValueError):
                return base64.b64decode(value[BYTES], validate=True)
        return {k: revived(v) for k, v in value.items()}
    if isinstance(value, list):
        return [revived(v) for v in value]
    return value


def holds_lost_bytes(text: str | None) -> bool:
    """Whether recorded JSON text holds bytes recorded before Titan kept them (only their
    sha256 and size, see :data:`LOST_BYTES`): a replay cannot give them back."""
    if not text or f'"{LOST_BYTES}":' not in text:
        return False

    def lost(v: Any) -> bool:
        if isinstance(v, dict):
            return set(v) == {LOST_BYTES, "size"} or any(lost(x) for x in v.values())
        return isinstance(v, list) and any(lost(x) for x in v)

    try:
        return lost(json.loads(text))
    except ValueError:  # a preview (its blob gone): not the recording's whole value anyway
        return False


def holds_stand_in(text: str | None) -> bool:
    """Whether a call's recorded outputs hold a value recorded only as its repr
    (``{"$repr": ...}``, :func:`outputs`): a replay cannot give it back."""
    if not text or f'"{REPR}":' not in text:
        return False

    def marked(v: Any) -> bool:
        if isinstance(v, dict):
            return (len(v) == 1 and isinstance(v.get(REPR), str)) or any(
                marked(x) for x in v.values())
        return isinstance(v, list) and any(marked(x) for x in v)

    try:
        return marked(json.loads(text))
    except ValueError:  # a preview (its blob gone)
        return False


def digest(text: str) -> str:
    """sha256 hex of canonical JSON text."""
    return hashlib.sha256(text.encode()).hexdigest()
