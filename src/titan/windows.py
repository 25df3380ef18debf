"""Time windows as filters and retention name them: ``24h``, ``7d``, ``90m``, ``all`` (a
filter also takes seed 004's ``24 hours``, ``7 days``, ``All time``).

A leaf: the master's config (which checks ``TITAN_RUN_RETENTION`` at start), the runs
service, the API and the dashboard read windows the same way.
"""

from __future__ import annotations

import re
import time

from titan.errors import ValidationFailed

#: ``<n>m``, ``<n>h`` or ``<n>d``: a plain number (not ``nan``, ``inf`` or ``1e3``), in ASCII
#: digits (``\d`` took ``٣d``, Arabic-Indic three days, for a window).
_WINDOW = re.compile(r"([0-9]{1,7}(?:\.[0-9]{1,6})?)([mhd])", re.IGNORECASE)
_UNIT = {"m": 60, "h": 3600, "d": 86400}


#: A filter's window as seed 004's Runs page labels it ("24 hours", "7 days", "All time"):
#: the number and a unit in words, with or without a space between.
_WORDED = re.compile(r"([0-9]{1,7}(?:\.[0-9]{1,6})?)[ _-]?([a-z]+)")
_UNIT_WORDS = {"m": "m", "min": "m", "mins": "m", "minute": "m", "minutes": "m",
               "h": "h", "hr": "h", "hrs": "h", "hour": "h", "hours": "h",
               "d": "d", "day": "d", "days": "d"}
_ALL = frozenset({"", "all", "all time", "all_time", "all-time", "alltime"})


def canonical_window(value: str | None) -> str:
    """A filter's window in Titan's own spelling: ``all`` or ``<n>m``/``<n>h``/``<n>d``,
    lower case. Seed 004's labels are taken for them (``24 hours`` is ``24h``, ``All time``
    is ``all``), in any case; anything else is refused, naming ``window``."""
    text = " ".join(str(value or "").split()).lower()
    if text in _ALL:
        return "all"
    m = _WORDED.fullmatch(text)
    unit = _UNIT_WORDS.get(m.group(2)) if m else None
    if m is None or unit is None:
        raise ValidationFailed(f"window must be like 24h, 7d, 30d or all, got "
                               f"{str(value)[:40]!r}", details={"field": "window"})
    return m.group(1) + unit


def check_window(value: str | None) -> float | None:
    """``24h``/``7d``/``30d``/``all`` (or any ``<n>m``/``<n>h``/``<n>d``, or seed 004's
    ``24 hours``/``All time``) -> a 'since' timestamp. Anything else is refused: ``nan``
    would make the filter NaN, and a window before 1970 a negative time."""
    canonical = canonical_window(value)
    if canonical == "all":
        return None
    m = _WINDOW.fullmatch(canonical)
    seconds = float(m.group(1)) * _UNIT[m.group(2)] if m else 0.0
    if not 0 < seconds <= time.time():
        raise ValidationFailed(f"window must be like 24h, 7d, 30d or all, got "
                               f"{str(value)[:40]!r}", details={"field": "window"})
    return time.time() - seconds


def deletion_cutoff(value: str, what: str, field: str = "older_than") -> float:
    """The 'before' timestamp of a deletion window (retention, prune, a blob's grace period):
    hours or days only, an hour at least. ``3m`` is refused: read as minutes it deleted almost
    every run of someone who meant months. ``field``: the request field it came from."""
    m = _WINDOW.fullmatch(value.strip()) if isinstance(value, str) else None
    unit = m.group(2).lower() if m else ""
    seconds = float(m.group(1)) * _UNIT[unit] if m and unit in ("h", "d") else 0.0
    if seconds > time.time():
        raise ValidationFailed(f"{what} {str(value)[:40]!r} reaches back before 1970: nothing "
                               "is that old (write a shorter window)",
                               details={"field": field})
    if not seconds >= 3600:
        why = " (minutes or months? write hours or days)" if unit == "m" else ""
        raise ValidationFailed(f"{what} must be a number of hours or days, at least 1h "
                               f"(12h, 90d), got {str(value)[:40]!r}{why}",
                               details={"field": field})
    return time.time() - seconds
