"""How Titan spells names, times and costs, one rule for the SDK, the master, the CLI, the dashboard
and exports (they had drifted apart: the master refused a name of only spaces the SDK
accepted; exports wrote ``+00:00`` where the dashboard wrote ``Z``)."""

from __future__ import annotations

import datetime as dt
import math
import re
import unicodedata
from typing import Any

from titan.errors import ValidationFailed

#: The longest DAG name, job id or capability.
MAX_NAME = 200
#: The zero-width non-joiner and joiner: format characters, but Persian, the Indic scripts and
#: emoji sequences need them to spell a word, and file systems hand them out.
_JOINERS = "\u200c\u200d"
#: '/', '#', and control characters: C0, DEL, C1 (U+0085 breaks a line in some terminals) and
#: the Unicode line and paragraph separators.
#: Besides '/' and '#': controls, the line separators, and the invisible format characters
#: (zero-width spaces and joiners, direction marks, the BOM, the word joiner): 'plan\u200b' and
#: 'plan' read alike everywhere, yet were two names.
_BAD_NAME = re.compile(r"[/#\x00-\x1f\x7f-\x9f\u00ad\u061c\u180e\u200b-\u200f\u2028-\u202e"
                       r"\u2060-\u206f\ufeff\ufff9-\ufffb]")


#: An agent run's id: what the master takes, the SDK makes and the API's paths carry.
_RUN_ID = re.compile(r"[A-Za-z0-9._:\-]{1,200}")
_NOT_RUN_ID = re.compile(r"[^A-Za-z0-9._:\-]+")
#: The longest tag of a run's list of tags.
MAX_TAG = 200


#: The API's own routes under ``/runs/``: a run of such an id could never be read at its
#: own path (``GET /api/v1/runs/export`` is the export).
RESERVED_RUN_IDS = frozenset({"alive", "batch", "export", "intercepts", "prune"})


def run_id_problem(value: object) -> str | None:
    """What is wrong with an agent run's id (None when nothing is): 1-200 letters, digits,
    '.', '_', ':' or '-', and not only dots (a path segment of dots is no name: URLs drop it),
    nor one of the :data:`RESERVED_RUN_IDS`. A DAG's ``agent_run_id`` is held to it too, or
    its run could never be read back."""
    if not isinstance(value, str) or not _RUN_ID.fullmatch(value) or not value.strip("."):
        return ("must be 1-200 characters of ASCII letters (A-Z, a-z), digits, '.', '_', ':' "
                "or '-' (no spaces, not only dots)")
    if value in RESERVED_RUN_IDS:
        return (f"{value!r} is the name of an API route under /runs/ (reserved: "
                f"{', '.join(sorted(RESERVED_RUN_IDS))}): choose another id")
    return None


#: An evaluation's or project's id: one path segment of the API.
_EVAL_ID = re.compile(r"(?!\.+\Z)[A-Za-z0-9._\-]{1,100}")


def check_eval_id(value: Any, what: str) -> str:
    """An evaluation's (or project's) id, or the 400 that says the rule: 1-100 letters,
    digits, '.', '_' or '-', not only dots. The master holds names to it, and the client
    before it sends one: a '/' (or '../') made another path, which the master answered
    "Not Found" rather than with the rule."""
    if not isinstance(value, str) or not _EVAL_ID.fullmatch(value):
        raise ValidationFailed(f"{what} must be 1-100 letters, digits, '.', '_' or '-' (not "
                               f"only dots), got {value!r}", details={"field": what})
    return value


def run_id_for(agent_id: str, tail: str) -> str:
    """A run id made from its agent's (free text: ``ünïcødé agent``) and a random ``tail``:
    the agent id without accents, what the run-id rule refuses of it as '-'
    (``unicode-agent-1a2b``)."""
    ascii_ = "".join(c for c in unicodedata.normalize("NFKD", agent_id)
                     if not unicodedata.combining(c))
    stem = _NOT_RUN_ID.sub("-", ascii_).strip("-.")[:200 - len(tail) - 1] or "run"
    return f"{stem}-{tail}"


def tags_problem(value: Any) -> str | None:
    """What is wrong with a run's tags (None when nothing is): a list of strings of at most
    MAX_TAG characters, or an object (its size is the master's to check)."""
    if value is None or isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return None
    if not isinstance(value, list):
        return "must be a list of strings or an object with string keys"
    for i, tag in enumerate(value):
        if not isinstance(tag, str):
            return f"must be a list of strings: tag {i} is a {type(tag).__name__}"
        if len(tag) > MAX_TAG:
            return f"must be strings of at most {MAX_TAG} characters: tag {i} has {len(tag)}"
    return None


def name_problem(value: Any, what: str) -> str | None:
    """What is wrong with a DAG name, job id, schedule name or capability (None when nothing
    is): a non-blank string of at most MAX_NAME characters without '/', '#', control
    characters, not only dots ('..' in a URL is the folder above), or whitespace at either end (' nightly' and 'plan ' read as 'nightly' and
    'plan' in every table, and were two names). The caller raises its error with it, naming
    its own field."""
    if not isinstance(value, str):
        return f"{what} must be a string, got {type(value).__name__}"
    if not value.strip():
        return f"{what} must be a non-empty string, not blank"
    if value != value.strip():
        return f"{what} {value!r} may not begin or end with whitespace"
    if len(value) > MAX_NAME:
        return f"{what} is longer than {MAX_NAME} characters"
    if _BAD_NAME.search(value):
        return f"{what} {value!r} may not contain '/', '#' or control characters"
    if not value.strip("."):  # '.' and '..' are path segments no URL keeps
        return f"{what} {value!r} may not be only dots: a URL path drops such a segment"
    odd = _ODD_SPACE.search(value)
    if odd is not None:
        char = odd.group()
        return (f"{what} {value!r} may not contain U+{ord(char):04X} "
                f"({unicodedata.name(char, 'a space')}): it reads as a plain space, and the "
                "name as another; use ' '")
    if not unicodedata.is_normalized("NFC", value):
        composed = unicodedata.normalize("NFC", value)
        return (f"{what} {value!r} is written in decomposed Unicode (a letter and its accent "
                f"apart) and reads as {composed!r}, another name: write it composed (NFC), "
                f"{composed!r}")
    return None


#: What a schedule's name may not hold besides a :func:`name_problem` name's: '%' and '?'
#: break its API path (``/schedules/{name}``: '%' starts an escape, '?' the query), '\\'
#: is a path separator to some proxies and an escape to a shell, and ';' ends a shell
#: command (``titan schedule run a;b`` is two commands).
SCHEDULE_NAME_REFUSED = "%\\?;"


def schedule_name_problem(value: Any, what: str) -> str | None:
    """What is wrong with a new schedule's name (None when nothing is): the rule of
    :func:`name_problem`, and none of :data:`SCHEDULE_NAME_REFUSED`."""
    why = name_problem(value, what)
    if why is not None:
        return why
    for char in SCHEDULE_NAME_REFUSED:
        if char in value:
            return (f"{what} {value!r} may not contain {char!r}: a schedule's name is part of "
                    "URLs and shell commands, where '%', '\\', '?' and ';' mean something else")
    return None


def file_name(name: str) -> str:
    """A file's name as the master stores it: composed (NFC). A file system picks the form
    (macOS hands out 'cafe\u0301.txt'), and the two read alike: one name, not two files."""
    return unicodedata.normalize("NFC", name)


def file_name_forms(name: str) -> list[str]:
    """The spellings a lookup of the file ``name`` matches, so either form finds the file:
    composed (as stored since names were composed), decomposed (as macOS writes it, and as a
    name stored before then most likely was), and as given."""
    return list(dict.fromkeys((unicodedata.normalize("NFC", name),
                               unicodedata.normalize("NFD", name), name)))


def invisible_in_file_name(name: str) -> tuple[int, str] | None:
    """(position, character) of the first character of ``name`` that shows as nothing and
    is no part of spelling: a format character (Cf: zero-width space, BOM, soft hyphen,
    direction marks; not the joiners) or a line or paragraph separator (Zl, Zp). None when
    there is none. 'a\u200bb.txt' and 'ab.txt' read alike, yet were two files."""
    if name.isascii():
        return None
    for i, char in enumerate(name):
        if unicodedata.category(char) in ("Cf", "Zl", "Zp") and char not in _JOINERS:
            return i, char
    return None


#: Unicode's space separators but the plain space (no-break, thin, ideographic ...): 'a b'
#: and 'a b' read alike in every table, yet were two names. So were 'café' and
#: 'café' (the accent apart): names must be composed (NFC).
_ODD_SPACE = re.compile("[   -   　]")


#: What a terminal or a log reader would act on rather than show: C0 and C1 controls (escape
#: sequences start with ESC or CSI; U+0085 breaks a line), DEL, the Unicode line and paragraph
#: separators, and the bidirectional embeddings, overrides and isolates that make text read
#: backwards.
_UNSHOWN = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


#: Direction marks: invisible, allowed in text, but in a label they reorder what is read.
_MARKS = re.compile("[\u200e\u200f]")


def shown(value: Any, keep: str = "") -> str:
    """``value`` as text that shows as itself: every control (:data:`_UNSHOWN`) but those in
    ``keep`` written as its Python escape (``\\n``, ``\\x07``, ``\\u202e``; ESC as ``\\e``),
    never sent raw to a terminal or a log. Values others choose (a worker's name, a key, a job's
    output) may hold them: a newline forges a line, ESC sets a reader's window title."""
    text = "" if value is None else str(value)
    return _UNSHOWN.sub(lambda m: m.group() if m.group() in keep else
                        repr(m.group())[1:-1] if m.group() != "\x1b" else "\\e", text)


def label_problem(value: Any, what: str, limit: int = MAX_NAME,
                  blank: bool = False) -> str | None:
    """What is wrong with a free-text label that is shown and logged, such as a worker's name,
    its host name or a token's name (None when nothing is, or when it is None): a non-blank
    string of at most ``limit`` characters without the characters :func:`shown` would escape
    or the direction marks (U+200E/U+200F) that reorder what is read. Anything else is
    allowed ('/' and '#' too, unlike a :func:`name_problem` name, which is also part of a
    reference). ``blank``: an empty or blank label is allowed (a worker's unknown host name)."""
    if value is None:
        return None
    if not isinstance(value, str):
        return f"{what} must be a string, got {type(value).__name__}"
    if not blank and not value.strip():
        return f"{what} must be a non-empty string, not blank"
    if len(value) > limit:
        return f"{what} is longer than {limit} characters"
    found = _UNSHOWN.search(value) or _MARKS.search(value)
    if found is not None:
        return (f"{what} '{shown(value[:100])}' holds a control character "
                f"(U+{ord(found.group()):04X} at position {found.start()}); it is shown and "
                "logged, where a newline or an escape sequence would forge what others read")
    return None


def args_problem(args: list[str]) -> str | None:
    """What no process's argument list can hold (None when nothing): a NUL ends a C string,
    so a job with one could not start as a program (subprocess runner, a ``.sh``); the SDK
    and the master refuse it at submit with these words."""
    for i, arg in enumerate(args):
        if "\x00" in arg:
            return (f"args[{i}] {arg[:100]!r} holds a NUL character, which no program's "
                    "argument can (a C string ends there)")
    return None


def env_problem(env: dict[str, str]) -> str | None:
    """What no process environment can hold (None when nothing), in the words the SDK and
    the master refuse it with at submit."""
    for name, value in env.items():
        if not name or "=" in name or "\x00" in name or "\x00" in value:
            return (f"env variable {name[:100]!r}: names are non-empty and hold no '=' or NUL, "
                    "values no NUL")
    return None


def runner_problem(runner: str, filename: str) -> str | None:
    """Why ``runner`` cannot run ``filename`` (None when it can), in the words the SDK and the
    master refuse it with at submit: ``fork`` runs the file as Python in the warm zygote
    (a suffix-less Python file may ask for it), so a ``.sh`` forked ended in a SyntaxError on
    its first shell line, the job FAILED on the worker."""
    if runner == "fork" and filename.endswith(".sh"):
        return (f"runner 'fork' runs a Python script in the warm interpreter; {filename!r} is a "
                "shell script (leave runner out, or say 'subprocess', to run it with the shell)")
    return None


def iso(ts: float | None) -> str:
    """A Unix time as RFC 3339 in UTC with milliseconds and ``Z``; "" for None."""
    if ts is None:
        return ""
    return (dt.datetime.fromtimestamp(ts, dt.UTC).isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"))


#: A Host header as clients send it: a name or address and an optional port, nothing else.
HOST_HEADER = re.compile(r"(?:[A-Za-z0-9.-]{1,253}|\[[0-9A-Fa-f:.]{2,45}\])(?::\d{1,5})?")


def setting_number(value: float) -> str:
    """``value`` as a setting's error says it: whole numbers in full up to 16 digits
    (a byte count; %g wrote 1048576 as 1.04858e+06), anything else as %g (1e+305, not its
    306 digits)."""
    if isinstance(value, int) and len(str(abs(value))) > 16:
        return f"a {len(str(abs(value)))}-digit number"
    if float(value).is_integer() and abs(value) < 1e16:
        return str(int(value))
    return f"{value:g}"


#: A switch setting's spellings, compared without regard to case: on, and off.
SWITCH_ON = ("1", "true", "yes", "on")
SWITCH_OFF = ("0", "false", "no", "off")


def switch_value(raw: str) -> bool | None:
    """A switch setting's value (``TITAN_SANDBOX``, ``TITAN_TRACE_DRIVER``): True for 1, true,
    yes or on, False for 0, false, no or off (any case), None for anything else — which
    each reader refuses or says, never takes for either."""
    word = raw.strip().lower()
    if word in SWITCH_ON:
        return True
    if word in SWITCH_OFF:
        return False
    return None


def human_size(n: int) -> str:
    """A byte count as people read it: ``512 bytes``, ``48.2 MiB`` (GiB at most)."""
    if n < 1024:
        return f"{n} bytes"
    size = float(n)
    for unit in ("KiB", "MiB", "GiB"):
        size /= 1024
        if size < 1024 or unit == "GiB":
            break
    return f"{size:.1f} {unit}"


#: The most decimal places a cost is written with ($0.000000000001).
MAX_COST_PLACES = 12


def cost_places(cost: float) -> int:
    """The decimal places a cost under $1 is written with: four ($0.0008), or as many as show
    two significant digits of a smaller one that is not zero ($0.0000059 for one
    gpt-4o-mini call of 18 tokens), at most :data:`MAX_COST_PLACES`: with four, a run of
    cheap calls read $0.0000, as if it cost nothing. The dashboard's ``T.usd`` does the same."""
    size = abs(cost)
    if size == 0 or size >= 0.0001 or not math.isfinite(size):
        return 4
    return min(1 - math.floor(math.log10(size)), MAX_COST_PLACES)


def dollars(cost: float) -> str:
    """A cost as the CLI and logs write it: ``$0.0120``, ``$0.0000059`` (:func:`cost_places`)."""
    return f"${cost:.{cost_places(cost)}f}"


def cost_text(cost: float | None, unpriced: int = 0) -> str:
    """A cost in dollars as the CLI and logs write it: four decimals (more for a cost under
    $0.0001, :func:`cost_places`), "-" when there is none; with ``unpriced`` LLM calls of no
    known price a lower bound (">=$0.0120"), or "unknown" when no call was priced — never a
    paid run shown as $0 (the dashboard's ``run_cost`` writes the same)."""
    text = "-" if cost is None else dollars(cost)
    if not unpriced:
        return text
    return f">={text}" if cost else "unknown"


#: The most of an error message a list shows, and a job keeps: a job's log holds what it
#: printed, a run's and an action's own reads the whole message.
ERROR_SHOWN = 2000


def cut_text(text: str, limit: int = ERROR_SHOWN, total: int | None = None) -> str:
    """``text`` cut to ``limit`` characters, saying how many more there were
    (``'...\\n… 2,998,000 more characters'``); ``total``: the whole text's length when
    ``text`` is already a cut of it (a database's preview)."""
    more = (len(text) if total is None else total) - limit
    return text if more <= 0 else f"{text[:limit]}\n… {more:,} more characters"
