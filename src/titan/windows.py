"""Time windows as filters and retention name them: ``24h``, ``7d``, ``90m``, ``all``.

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


def check_window(value: str | None) -> float | None:
    """``24h``/``7d``/``30d``/``all`` (or any ``<n>m``/``<n>h``/``<n>d``) -> a 'since'
    timestamp. Anything else is refused: ``nan`` would make the filter NaN, and a window
    before 1970 a negative time."""
    if value in (None, "", "all"):
        return None
    assert value is not None
    m = _WINDOW.fullmatch(value.strip())
    seconds = float(m.group(1)) * _UNIT[m.group(2).lower()] if m else 0.0
    if not 0 < seconds <= time.time():
        raise ValidationFailed(f"window must be like 24h, 7d, 30d or all, got {value[:40]!r}",
                               details={"field": "window"})
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
