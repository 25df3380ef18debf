"""PII redaction: named patterns found in recorded values, replaced by typed placeholders.

The master redacts what an action records (inputs, outputs, error message) and a run's error
before anything is written (``master/runs/ingest.py``); a replay redacts the live inputs of a
call whose recorded inputs were redacted, the same way, before comparing hashes
(``trace/replay.py``). So this module is a leaf both can import: it knows nothing of runs.

Each match becomes ``[REDACTED:<pattern>]``; what is kept is which patterns matched and how
often, never the matched text. Only strings are scanned (object keys included): a bare JSON
number is a count, a clock reading or a random draw far more often than a card number, and
those must replay unchanged.

Speed: every pattern is one alternative of a single compiled expression, so a string is
scanned once whatever the number of patterns, and each alternative starts with a lookbehind
that refuses a position inside a run of the characters it matches — a long token is walked
once, not once per starting position. Before walking a value, the patterns look for a cheap
necessary trace of themselves (an ``@``, a digit shape, a key prefix, a custom pattern's
literal prefix) in its canonical JSON text, which ingestion has anyway: most payloads hold
none and cost one scan. A custom pattern without a literal prefix promises no such trace (it
may need a character JSON escapes), so with one configured every string is scanned.

Custom patterns are hostile input (a typo can make an expression that backtracks for
minutes on a 1 KB string): they are compiled at start with an error naming the bad one, and
refused when they match the empty string, use back-references or named groups (which would
clash inside the combined expression), or nest unbounded repeats (``(a+)+``, the classic
catastrophic-backtracking shape). Overlapping alternatives under a repeat (``(a|ab)*``) are
not detected: docs/security.md says so.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from titan.errors import ConfigError

#: A dashboard session's cookie, ``titan_session=<token id>.<session id>.<expiry>.<mac>``
#: (master/auth/sessions.py): it reads what its token reads, so it is a credential too.
SESSION_COOKIE = r"tok-[0-9a-f]{4,32}\.p?[0-9a-f]{16,48}\.\d{9,12}\.[0-9a-f]{40}"
#: Titan's own credentials: admin/operator/viewer tokens, job tokens (and evaluation agents'),
#: worker credentials, dashboard sessions.
TITAN_TOKEN = (r"tt_[A-Za-z0-9_-]{40,}|t[ja]\.\d+\.\d+\.[0-9a-f]{32}|tw\.[^\s\"]{1,200}\.[0-9a-f]{40}|"
               + SESSION_COOKIE)
#: Where an API token's ``tt_`` may start: not inside a word ("Scott_..."), but after any
#: URL-encoded character (``token%3Dtt_``, ``Bearer%20tt_``) or a backslash escape of a
#: JSON or repr text (``"failed\\ntt_..."``), whose last character is a letter or digit.
TOKEN_START = (r"(?:(?<![A-Za-z0-9])|(?<=%[0-9A-Fa-f]{2})|(?<=\\[nrtbf0])"
               r"|(?<=\\x[0-9A-Fa-f]{2})|(?<=\\u[0-9A-Fa-f]{4}))")
#: Scrubbing a log: a job or worker token or a session cookie is found whatever comes before
#: it (``x``, ``Bearer_``, ``v1.`` hid one); an API token's ``tt_`` where :data:`TOKEN_START`
#: allows.
_TITAN_TOKEN = re.compile(TOKEN_START + r"tt_[A-Za-z0-9_-]{40,}|"
                          r"t[ja]\.\d+\.\d+\.[0-9a-f]{32}|"
                          r"tw\.[^\s\"]{1,200}\.[0-9a-f]{40}|" + SESSION_COOKIE)


def scrub_titan_tokens(text: str) -> str:
    """``text`` with Titan's own tokens replaced: a job's output is read by every viewer, and
    a job that prints its environment (a common debugging line) printed its token, which a
    viewer could then use to submit work. Cheap when there is none (a substring test)."""
    if "tj." not in text and "ta." not in text and "tt_" not in text and "tw." not in text \
            and "tok-" not in text:
        return text
    return _TITAN_TOKEN.sub("[titan token redacted]", text)


#: The built-in patterns by name. Each starts with a lookbehind that refuses a position inside
#: a run of its own characters, and bounds its repeats, so none can backtrack badly.
BUILTIN: dict[str, str] = {
    # Provider and platform secrets by their published prefixes, Titan's own tokens, JWTs
    # and PEM private keys. Prefixes keep false positives near zero.
    "api_key": (r"(?<![A-Za-z0-9_.-])(?:sk-[A-Za-z0-9_-]{20,}|sk_live_[0-9A-Za-z]{20,}"
                r"|(?:AKIA|ASIA)[0-9A-Z]{16}|gh[pousr]_[A-Za-z0-9]{30,}"
                r"|github_pat_[A-Za-z0-9_]{22,}|xox[abposr]-[A-Za-z0-9-]{10,}"
                r"|AIza[0-9A-Za-z_-]{35}|glpat-[A-Za-z0-9_-]{20,}|hf_[A-Za-z0-9]{30,}"
                r"|" + TITAN_TOKEN +
                r"|eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"
                # The whole block, not its first line only: the key is the body (its lines
                # broken by newlines, or by "\n" in JSON text), through the END line.
                r"|-----BEGIN [A-Z ]{0,20}PRIVATE KEY-----"
                r"(?:(?:[A-Za-z0-9+/=:, \t\r\n-]|\\[rn]){0,20000}?"
                r"-----END [A-Z ]{0,20}PRIVATE KEY-----"
                r"|(?:[A-Za-z0-9+/=\r\n]|\\[rn]){0,20000}))"),
    "email": (r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9-]{1,63}"
              r"(?:\.[A-Za-z0-9-]{1,63}){0,8}\.[A-Za-z]{2,24}(?![A-Za-z0-9-])"),
    "iban": (r"(?<![A-Za-z0-9])[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?"
             r"(?![A-Za-z0-9])"),
    # Issuer prefixes (Visa, Mastercard, Amex, Diners, Discover, JCB), 13-19 digits with
    # optional single spaces or dashes; the Luhn check decides.
    "credit_card": (r"(?<![\w-])(?:4\d{3}|5[1-5]\d{2}|2[2-7]\d{2}|3[47]\d{2}|3[0689]\d{2}"
                    r"|6(?:011|5\d{2}|4[4-9]\d))(?:[ -]?\d){9,15}(?![\w-])"),
    "us_ssn": r"(?<![\w-])(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}(?![\w-])",
    # +country forms, and North American (415) 555-0100 / 415-555-0100 / 415.555.0100.
    "phone": (r"(?<![\w+])(?:\+\d{1,3}[ .-]?\(?\d{1,4}\)?(?:[ .-]?\d{2,4}){2,4}"
              r"|\(?\d{3}\)?[ .-]\d{3}[ .-]\d{4})(?!\w)"),
    "ipv4": (r"(?<![\w.])(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}"
             r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?!\w|\.\d)"),
}
#: Applied when TITAN_PII_PATTERNS says nothing. IPv4 is left out: addresses in tool calls
#: are mostly infrastructure, and redacting them breaks replays of agents that call hosts.
DEFAULT = ("email", "phone", "credit_card", "iban", "us_ssn", "api_key")

# Necessary traces of the built-in patterns, looked for before any value is walked. Each is
# made of characters JSON never escapes, so a string a pattern matches leaves its trace in the
# value's canonical JSON text; one cheap scan per gate (Python's regex engine pays per
# character per alternative, so the strict expression costs ~6x the gates on typical text).
_AT = ("email",)
# Every digit pattern holds a run of 6+ digits and separators that starts and ends on a digit
# (every IBAN country format too: its account part is mostly digits).
_DIGIT_GATE = r"\d[\d .()-]{4,}\d"
_DIGITS = ("phone", "credit_card", "us_ssn", "ipv4", "iban")
_KEY_GATE = (r"sk[-_]|A(?:KIA|SIA|Iza)|g(?:h[pousr]_|ithub_pat_|lpat-)|xox|hf_|t[tjw][_.]|tok-|eyJ"
             r"|-----BEGIN")
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
_GLOBAL_FLAGS = re.compile(r"^\(\?([imsx]+)\)")
MAX_CUSTOM = 100


def placeholder(name: str) -> str:
    return f"[REDACTED:{name}]"


def luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def iban_valid(text: str) -> bool:
    """ISO 13616: 15-34 characters whose rearranged digits are 1 mod 97."""
    s = text.replace(" ", "")
    if not 15 <= len(s) <= 34:
        return False
    rearranged = s[4:] + s[:4]
    return int("".join(str(int(ch, 36)) for ch in rearranged)) % 97 == 1


def _card(text: str) -> bool:
    digits = text.replace(" ", "").replace("-", "")
    return 13 <= len(digits) <= 19 and luhn(digits)


_CHECKS = {"credit_card": _card, "iban": iban_valid}


def _nested_repeat(pattern: str) -> bool:
    """Whether an unbounded repeat contains another (``(a+)+``, ``(a*b?)*``): the shape that
    backtracks exponentially. Read from the parsed expression (CPython's own parser)."""
    try:
        parser: Any = importlib.import_module("re._parser")
    except ImportError:  # another interpreter: the check is skipped (docs/security.md)
        return False
    repeats = {parser.MAX_REPEAT, parser.MIN_REPEAT, getattr(parser, "POSSESSIVE_REPEAT", None)}

    def walk(items: Any, inside: bool) -> bool:
        for op, arg in items:
            if op in repeats:
                low, high, sub = arg
                unbounded = high == parser.MAXREPEAT or high > 100
                if unbounded and inside and op != getattr(parser, "POSSESSIVE_REPEAT", None):
                    return True
                if walk(sub, inside or unbounded):
                    return True
            elif op is parser.SUBPATTERN:
                if walk(arg[-1], inside):
                    return True
            elif op is parser.BRANCH:
                if any(walk(alt, inside) for alt in arg[1]):
                    return True
            elif op in (parser.ASSERT, parser.ASSERT_NOT) and walk(arg[1], inside):
                return True
        return False

    return walk(parser.parse(pattern), False)


def literal_prefix(pattern: str) -> str | None:
    """The literal text every match of ``pattern`` starts with (``EMP-`` of ``^EMP-\\d+``),
    when it has one of two characters or more that JSON never escapes: a custom pattern's
    gate. None otherwise (then every string is scanned)."""
    try:
        parser: Any = importlib.import_module("re._parser")
        parsed = parser.parse(pattern)
    except (ImportError, re.error):
        return None
    if parsed.state.flags & re.IGNORECASE:
        return None
    chars: list[str] = []
    for op, arg in parsed:
        if op is parser.AT and not chars:
            continue  # ^ or \A before the text
        if op is not parser.LITERAL:
            break
        chars.append(chr(arg))
    text = "".join(chars)
    if len(text) < 2 or any(c in '"\\' or c < " " for c in text):
        return None
    return text


def check_custom(name: str, pattern: str) -> str:
    """A custom pattern ready to join the combined expression; ConfigError naming it when it
    cannot."""
    if not _NAME.match(name):
        raise ConfigError(f"PII pattern name {name!r} must be 1-40 characters of a-z, 0-9 and "
                          "_, starting with a letter")
    try:
        compiled = re.compile(pattern)
    except re.error as exc:
        raise ConfigError(f"PII pattern {name!r} is not a valid regular expression: {exc}") \
            from None
    if compiled.groupindex:
        raise ConfigError(f"PII pattern {name!r} has a named group: use (?:...) instead")
    if re.search(r"\\[1-9]|\(\?P=", pattern):
        raise ConfigError(f"PII pattern {name!r} uses a back-reference, which Titan does not "
                          "allow (it makes matching slow and cannot be combined)")
    if compiled.match("") is not None or compiled.search("") is not None:
        raise ConfigError(f"PII pattern {name!r} matches the empty string")
    if _nested_repeat(pattern):
        raise ConfigError(f"PII pattern {name!r} nests unbounded repeats (like (a+)+), which can "
                          "backtrack for minutes on a short string; rewrite it without the "
                          "outer repeat")
    flags = _GLOBAL_FLAGS.match(pattern)
    if flags:  # a leading (?i) would apply to every pattern once combined: scope it
        pattern = f"(?{flags.group(1)}:{pattern[flags.end():]})"
    elif pattern.startswith("(?") and re.match(r"^\(\?[aLu]+\)", pattern):
        raise ConfigError(f"PII pattern {name!r}: only the i, m, s and x flags may be set")
    return pattern


class Redactor:
    """The combined expression of some patterns, and the walk that applies it."""

    def __init__(self, builtin: Iterable[str] = DEFAULT,
                 custom: dict[str, str] | None = None) -> None:
        self.builtin = tuple(dict.fromkeys(builtin))
        unknown = [n for n in self.builtin if n not in BUILTIN]
        if unknown:
            raise ConfigError(f"unknown PII pattern {unknown[0]!r} (built in: "
                              f"{', '.join(BUILTIN)}, or 'default' or 'all')")
        self.custom = {n: check_custom(n, p) for n, p in (custom or {}).items()}
        clash = set(self.custom) & set(self.builtin)
        if clash:
            raise ConfigError(f"custom PII pattern {sorted(clash)[0]!r} has a built-in's name")
        # Custom first: a user's pattern is the more specific one at a position both match.
        names = [*self.custom, *self.builtin]
        sources = [*self.custom.values(), *(BUILTIN[n] for n in self.builtin)]
        self.names = tuple(names)
        self._groups = {f"p{i}": n for i, n in enumerate(names)}
        self._rx = re.compile("|".join(f"(?P<p{i}>{s})" for i, s in enumerate(sources)))
        # The gates (see _KEY_GATE): None where no enabled pattern needs one.
        self._at = any(n in _AT for n in self.builtin)
        self._digits = (re.compile(_DIGIT_GATE) if any(n in _DIGITS for n in self.builtin)
                        else None)
        self._keys = re.compile(_KEY_GATE) if "api_key" in self.builtin else None
        # A custom pattern's gate is its literal prefix; one without any makes every string
        # worth scanning (None).
        prefixes = [literal_prefix(p) for p in self.custom.values()]
        self._literals: tuple[str, ...] | None = (
            None if None in prefixes else tuple(p for p in prefixes if p))

    def config(self) -> dict[str, Any]:
        """What a replay needs to redact the same way (the patterns' names and sources)."""
        return {"builtin": list(self.builtin), "custom": dict(self.custom)}

    @classmethod
    def from_config(cls, spec: dict[str, Any]) -> Redactor:
        return cls(spec.get("builtin") or (), spec.get("custom") or {})

    def might_match(self, text: str) -> bool:
        """False when no pattern can match any string of this canonical JSON text."""
        if self._literals is None:
            return True
        return (any(lit in text for lit in self._literals)
                or (self._at and "@" in text)
                or (self._digits is not None and self._digits.search(text) is not None)
                or (self._keys is not None and self._keys.search(text) is not None))

    def text(self, value: str, counts: dict[str, int]) -> str:
        """``value`` with every match replaced; adds what matched to ``counts``."""
        if self._rx.search(value) is None:
            return value

        def replace(m: re.Match[str]) -> str:
            name = self._groups[m.lastgroup or ""]
            check = _CHECKS.get(name) if name not in self.custom else None
            if check is not None and not check(m.group()):
                return m.group()
            counts[name] = counts.get(name, 0) + 1
            return placeholder(name)

        return self._rx.sub(replace, value)

    def value(self, value: Any, counts: dict[str, int]) -> Any:
        """A JSON value with every string (and key) redacted; the original when nothing
        matched (the caller tells by ``counts``)."""
        if isinstance(value, str):
            return self.text(value, counts)
        if isinstance(value, list):
            return [self.value(v, counts) for v in value]
        if isinstance(value, dict):
            out: dict[str, Any] = {}
            for k, v in value.items():
                key = self.text(k, counts) if isinstance(k, str) else k
                while key in out:  # two keys redacted alike: keep both
                    key = f"{key}#"
                out[key] = self.value(v, counts)
            return out
        return value


def merge(into: dict[str, int], more: dict[str, int] | None) -> dict[str, int]:
    for name, n in (more or {}).items():
        into[name] = into.get(name, 0) + n
    return into


def builtin_names(setting: str | None) -> tuple[str, ...]:
    """TITAN_PII_PATTERNS: comma-separated built-in names, ``default`` and ``all`` included."""
    names: list[str] = []
    # Blank (" ", ","): the default, as unset is; it named no pattern, and turned redaction
    # off without a word (TITAN_PII_REDACTION=off is how to do that).
    for item in (setting if setting and setting.replace(",", "").strip() else "default").split(","):
        item = item.strip()
        if item == "default":
            names.extend(DEFAULT)
        elif item == "all":
            names.extend(BUILTIN)
        elif item:
            names.append(item)
    return tuple(names)


def read_custom(path: str | None) -> dict[str, str]:
    """TITAN_PII_PATTERNS_FILE: ``name = regex`` lines; blank lines and ``#`` comments skipped."""
    if not path:
        return {}
    try:
        lines = Path(path).expanduser().read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"TITAN_PII_PATTERNS_FILE: cannot read {path}: {exc}") from None
    out: dict[str, str] = {}
    for number, line in enumerate(lines, 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, sep, pattern = line.partition("=")
        if not sep or not pattern.strip():
            raise ConfigError(f"{path}:{number}: expected 'name = regex', got {line.strip()!r}")
        name = name.strip()
        if name in out:
            raise ConfigError(f"{path}:{number}: PII pattern {name!r} is defined twice")
        out[name] = pattern.strip()
        if len(out) > MAX_CUSTOM:
            raise ConfigError(f"{path}: more than {MAX_CUSTOM} PII patterns")
    return out


def from_settings(enabled: str | None, patterns: str | None,
                  patterns_file: str | None) -> Redactor | None:
    """The master's redactor from its three settings; None when redaction is off."""
    switch = (enabled or "on").strip().lower()
    if switch in ("off", "0", "false", "no"):
        return None
    if switch not in ("on", "1", "true", "yes"):
        raise ConfigError(f"TITAN_PII_REDACTION must be on or off, got {enabled!r}")
    return Redactor(builtin_names(patterns), read_custom(patterns_file))
