"""Dynamic analysis: values in a run's recorded outputs that will differ on the next run.

An output holding the current time, a fresh UUID, a process id or a random-looking token
cannot come out the same twice. Which outputs are read follows what a replay runs again:

- a ``titan.trace.action`` block's (``custom``): every replay runs its code again;
- a tool's (``tool``): a replay serves it as recorded, but ``--verify`` runs a ``pure=True``
  tool again and compares, and a fork runs it live. Read when the run's code shows the tool
  pure, or does not show it at all (a tool recorded over the HTTP API, or defined outside
  the recorded files); a ``@titan.tool`` the code shows not pure is served by every replay
  that does not fork, as the static analysis reasons of its body, and is left alone. Only
  the run's own readings count there: a time taken while the call ran, a UUID, a process
  id (an API's tokens and dates are its data);
- a model's reply (``llm``) and a refused connection (``network``) are never read: a reply
  is served by every replay that does not fork and no ``--verify`` runs it again, and a date
  or an id in a model's text is what it wrote (quoting its prompt or what it learnt), not a
  reading of the run's clock;
- the ``clock`` and ``random`` channels are ``titan.trace.now()/uuid()/random()``, recorded
  so that replays get them back: the fix, and a value that first appeared there (or in the
  action's own inputs) is not reported in a later output either.

Runs have tens of thousands of actions, so one cheap regex decides whether an output is worth
parsing at all; most are not.
"""

from __future__ import annotations

import bisect
import json
import math
import re
import string
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from titan.trace.determinism.findings import RANK, Finding, make

AMBIENT = ("clock", "random")  # Titan's recorded ambient values: the fix, not a problem
# A model's reply and a refused connection: no replay but a fork runs them again, and a date
# in a model's text is not the run's clock (see the module docstring).
UNREAD = ("llm", "network")
#: How far outside the call a tool's answer may put "now" (a server's clock, a time cut to
#: the minute) and still be read as the current time rather than data.
CALL_SKEW_S = 300.0

ISO = re.compile(r"(?<!\d)(\d{4})-(\d\d)-(\d\d)[T ](\d\d):(\d\d)(?::(\d\d)(?:\.\d+)?)?"
                 r"(?:Z|[+-]\d\d:?\d\d)?(?!\d)")
UUID = re.compile(r"(?<![0-9a-fA-F-])[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-([0-9a-fA-F])[0-9a-fA-F]{3}"
                  r"-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}(?![0-9a-fA-F-])")
TOKEN = re.compile(r"(?<![A-Za-z0-9])[A-Za-z0-9]{16,64}(?![A-Za-z0-9])")
TIME_KEY = re.compile(r"^(?:ts|time|timestamp|created|updated|modified|date|"
                      r"\w*_(?:at|ts|time|timestamp))$", re.IGNORECASE)
PID_KEY = re.compile(r"^(?:pid|ppid|process_id)$", re.IGNORECASE)
KEYED_NUMBER = re.compile(r'"(\w{1,60})"\s*:\s*(-?\d+(?:\.\d+)?)')
# The prefilter. Patterns that start with a literal character are searched for at C speed
# (tens of times faster than ones starting with a character class): a timestamp or a UUID
# has a "-" followed by digits.
DASHED = re.compile(r"-(?:\d\d[T ]\d\d:|[0-9a-fA-F]{4}-)")
# Letters to "a" and digits to "0": a random token switches between the two both ways, so
# its text holds both "0a" and "a0" (a translate and two finds, no regex).
CLASSES = bytes.maketrans((string.digits + string.ascii_letters).encode(),
                          b"0" * 10 + b"a" * 52)

# A number that could be "now" (2017..2033 in seconds, or in milliseconds), whatever its key:
# an output worth parsing for a clock reading by value.
EPOCHISH = re.compile(r"1[5-9]\d{8}")
#: How close to the action's own time an unnamed number must be to read as a clock reading.
NEAR_ACTION_S = 86400.0
EPOCH_S = (978307200, 4102444800)  # 2001-01-01 .. 2100-01-01
EPOCH_MS = (EPOCH_S[0] * 1000, EPOCH_S[1] * 1000)
# Content digests (SHA-1, SHA-256, SHA-512 in hex) are as deterministic as their content.
DIGEST_LENGTHS = (40, 64, 128)
HEX = frozenset("0123456789abcdefABCDEF")

# Which replays a value differs in, by how the action is replayed (see _mode).
WHEN = {
    "block": "which will differ on replay.",
    "verify": "which will differ on replay with --verify, which runs the pure tool again "
              "and compares (a replay without it serves the recorded output).",
    "tool": "which will differ on replay where the tool runs again: with --verify if it is "
            "pure=True, or in a fork (--fork-at) at or before it (a strict replay serves the "
            "recorded output).",
}

WHAT = {
    "timestamp_in_output": "current timestamp",
    "uuid_in_output": "random UUID",
    "pid_in_output": "process id",
    "random_id_in_output": "random-looking id",
}


@dataclass
class _Seen:
    """One (kind, action name): how often, where first, and the worst example."""

    severity: str
    example: str
    first_seq: int | None
    mode: str
    actions: int = 1


def scan(actions: Iterable[dict[str, Any]], now: float | None = None,
         tools: dict[str, bool] | None = None) -> tuple[list[Finding], int]:
    """The dynamic findings of a run's actions, and how many actions there were. ``tools``:
    the tools the run's code defines, by recorded name -> pure (static.read_run)."""
    rows = actions if isinstance(actions, list) else list(actions)
    year = datetime.fromtimestamp(time.time() if now is None else now, UTC).year
    ambient_strings, clock = _recorded(rows)
    seen: dict[tuple[str, str], _Seen] = {}
    for row in rows:
        name = str(row.get("name") or "?")
        mode = _mode(row.get("channel"), name, tools or {})
        if mode is None:
            continue
        text = _text(row.get("outputs"))
        if not text or not _worth_parsing(text):
            continue
        inputs = _text(row.get("inputs")) or ""
        when = row.get("started_at")
        start = float(when) if isinstance(when, int | float) else None
        detector = _Detector(year, ambient_strings, clock, inputs, start)
        if mode != "block":
            detector.tokens = False
            if start is not None:
                took = row.get("duration_ns")
                took_s = took / 1e9 if isinstance(took, int | float) else 0.0
                detector.window = (start - CALL_SKEW_S, start + took_s + CALL_SKEW_S)
        seq = row.get("seq")
        for kind, (severity, example) in detector.run(text).items():
            old = seen.get((kind, name))
            if old is None:
                seen[(kind, name)] = _Seen(severity, example, seq, mode)
                continue
            old.actions += 1
            if RANK[severity] < RANK[old.severity]:
                old.severity, old.example = severity, example
    return [_finding(kind, name, s) for (kind, name), s in seen.items()], len(rows)


def _mode(channel: Any, name: str, tools: dict[str, bool]) -> str | None:
    """How a replay treats an action's outputs (a key of WHEN), None for those not read."""
    if channel in AMBIENT or channel in UNREAD:
        return None
    if channel != "tool":
        return "block"
    pure = tools.get(name)
    if pure is None:
        return "tool"  # not in the recorded code: whether it is pure is unknown
    # A @titan.tool the code shows not pure is served by every replay but a fork.
    return "verify" if pure else None


def _finding(kind: str, name: str, seen: _Seen) -> Finding:
    first = "" if seen.first_seq is None else f" #{seen.first_seq}"
    where = (f"Seen in {seen.actions} actions, first at{first or ' the start'}."
             if seen.actions > 1 else f"Seen in action{first or ' ' + repr(name)}.")
    description = f"Output contains {WHAT[kind]} ({seen.example}) {WHEN[seen.mode]} {where}"
    return make(kind, seen.severity, description, action=name, seq=seen.first_seq,
                source="dynamic")


def _worth_parsing(text: str) -> bool:
    """Whether any detector could fire on ``text``; most outputs are skipped here."""
    if DASHED.search(text) or _mixed(text) or EPOCHISH.search(text):
        return True
    return any(TIME_KEY.match(key) or PID_KEY.match(key)
               for key, _ in KEYED_NUMBER.findall(text))


def _mixed(text: str) -> bool:
    classes = text.encode("utf-8", "replace").translate(CLASSES)
    return b"0a" in classes and b"a0" in classes


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    try:
        return json.dumps(value, default=str)
    except (TypeError, ValueError):
        return str(value)


def _recorded(rows: list[dict[str, Any]]) -> tuple[set[str], list[float]]:
    """The values Titan recorded on its ambient channels: strings, and clock readings."""
    strings: set[str] = set()
    clock: list[float] = []
    for row in rows:
        if row.get("channel") not in AMBIENT:
            continue
        text = _text(row.get("outputs"))
        try:
            value = json.loads(text or "null")
        except ValueError:
            value = text  # not JSON: the text itself is the value
        if isinstance(value, str):
            strings.add(value)
        elif isinstance(value, int | float) and not isinstance(value, bool):
            clock.append(float(value))
    clock.sort()
    return strings, clock


class _Detector:
    """Finds, in one output, the first example of each kind (the worst for timestamps)."""

    def __init__(self, year: int, ambient: set[str], clock: list[float], inputs: str,
                 when: float | None = None) -> None:
        self.year, self.ambient, self.clock, self.inputs = year, ambient, clock, inputs
        self.when = when  # when the action ran: a clock reading in its output is near it
        # A tool's answer: a time is the run's own only while the call ran (else it is the
        # world's data, a publication date), and a random-looking token may be an API's.
        self.window: tuple[float, float] | None = None
        self.tokens = True
        self.hits: dict[str, tuple[str, str]] = {}

    def run(self, text: str) -> dict[str, tuple[str, str]]:
        try:
            value = json.loads(text)
        except ValueError:
            value = None  # a truncated preview or plain text: scan it as text
            self.strings(text)
            for key, number in KEYED_NUMBER.findall(text):
                self.keyed(key, float(number) if "." in number else int(number))
        else:
            for key, item in _leaves(value, None):
                if isinstance(item, str):
                    self.strings(item)
                elif isinstance(item, int | float) and not isinstance(item, bool):
                    self.keyed(key, item)
        return self.hits

    def hit(self, kind: str, severity: str, example: str) -> None:
        old = self.hits.get(kind)
        if old is None or RANK[severity] < RANK[old[0]]:
            self.hits[kind] = (severity, example)

    def passed_in(self, value: str) -> bool:
        # Copied from the inputs or from a recorded titan.trace value: a replay repeats it.
        return value in self.ambient or (len(value) >= 8 and value in self.inputs)

    def strings(self, text: str) -> None:
        dashed = "-" in text
        if dashed and self.hits.get("timestamp_in_output", ("",))[0] != "high":
            for m in ISO.finditer(text):
                if self.is_now(m) and not self.passed_in(m.group(0)):
                    self.hit("timestamp_in_output", "high", f'"{m.group(0)}"')
                    break
        if dashed and "uuid_in_output" not in self.hits:
            for m in UUID.finditer(text):
                # Versions 3 and 5 are name-based: the same name gives the same UUID.
                if m.group(1) not in "35" and not self.passed_in(m.group(0)):
                    self.hit("uuid_in_output", "high", f'"{m.group(0)}"')
                    break
        if self.tokens and "random_id_in_output" not in self.hits and len(text) >= 16 \
                and _mixed(text):
            for m in TOKEN.finditer(text):
                if _random_looking(m.group(0)) and not self.passed_in(m.group(0)):
                    self.hit("random_id_in_output", "medium", f'"{m.group(0)}"')
                    break

    def keyed(self, key: str | None, number: float) -> None:
        if key is not None and PID_KEY.match(key) and isinstance(number, int) and number > 0:
            self.hit("pid_in_output", "medium", f'"{key}": {number}')
            return
        if math.isnan(number) or math.isinf(number):
            return
        ms = EPOCH_MS[0] <= number < EPOCH_MS[1]
        seconds = number / 1000 if ms else number
        if (not EPOCH_S[0] <= seconds < EPOCH_S[1] or self.near_clock(seconds, 1.0)
                or str(number) in self.inputs):
            return
        named = key is not None and TIME_KEY.match(key)
        # By value, whatever the key ("t", a list item): a reading of time.time() (seconds
        # with a fraction) or of milliseconds, taken around when the action ran. A whole
        # number of seconds under a neutral key stays unreported: it may be a count or an id.
        by_value = (self.when is not None and abs(seconds - self.when) <= NEAR_ACTION_S
                    and (ms or not float(number).is_integer()))
        if (named or by_value) and self.during(seconds):
            label = f'"{key}": {number}' if key is not None else str(number)
            self.hit("timestamp_in_output", "medium", label)

    def is_now(self, m: re.Match[str]) -> bool:
        """Whether an ISO match is a valid time within ten years of now (within the call,
        for a tool's answer), not a recorded one."""
        year, month, day, hour, minute = (int(g) for g in m.groups()[:5])
        if not (abs(year - self.year) <= 10 and 1 <= month <= 12 and 1 <= day <= 31
                and hour < 24 and minute < 60):
            return False
        if not self.clock and self.window is None:
            return True
        try:
            when = datetime.fromisoformat(m.group(0))
        except ValueError:
            return self.window is None
        # A naive time may have been formatted in UTC or in local time.
        readings = [when.timestamp()] if when.tzinfo is not None else [
            when.replace(tzinfo=UTC).timestamp(), when.timestamp()]
        if not any(self.during(t) for t in readings):
            return False
        tolerance = 1.0 if m.group(6) else 60.0
        return not any(self.near_clock(t, tolerance) for t in readings)

    def during(self, seconds: float) -> bool:
        return self.window is None or self.window[0] <= seconds <= self.window[1]

    def near_clock(self, seconds: float, tolerance: float) -> bool:
        i = bisect.bisect_left(self.clock, seconds - tolerance)
        return i < len(self.clock) and self.clock[i] <= seconds + tolerance


def _leaves(value: Any, key: str | None) -> Iterator[tuple[str | None, Any]]:
    """Every scalar in a parsed JSON value with the key it sits under (keys are scanned as
    strings too: a dict keyed by fresh ids is as non-deterministic as a list of them)."""
    stack: list[tuple[str | None, Any]] = [(key, value)]
    while stack:
        key, value = stack.pop()
        if isinstance(value, dict):
            for k, v in reversed(value.items()):
                stack.append((k, v))
                stack.append((None, k))  # popped first: a key is read before its value
        elif isinstance(value, list):
            stack.extend((key, v) for v in reversed(value))
        else:
            yield key, value


def _random_looking(token: str) -> bool:
    """A token of 16-64 letters and digits that reads like random bytes, not like words."""
    n = len(token)
    digits = sum(c.isdigit() for c in token)
    if digits < 2 or n - digits < 2:
        return False
    if n in DIGEST_LENGTHS and set(token) <= HEX:
        return False
    # Random tokens switch between letters and digits often; "release2024notes" does not.
    switches = sum(a.isdigit() != b.isdigit() for a, b in zip(token, token[1:], strict=False))
    if switches < max(3, n // 6):
        return False
    counts: dict[str, int] = {}
    for c in token:
        counts[c] = counts.get(c, 0) + 1
    entropy = -sum(k / n * math.log2(k / n) for k in counts.values())
    return entropy >= 3.0
