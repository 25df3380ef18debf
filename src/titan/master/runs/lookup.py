"""Finding runs: one by id (or the 404 every route answers), and the time windows filters name."""

from __future__ import annotations

import re
import time

from titan.errors import NotFound, ValidationFailed
from titan.storage.base import Row, Transaction


def run_or_404(tx: Transaction, run_id: str) -> Row:
    """The run, or the 404 every route and service answers for a run that does not exist."""
    run = tx.get_run(run_id)
    if run is None:
        raise NotFound(f"no agent run {run_id!r}", details={"id": run_id})
    return run


#: ``<n>m``, ``<n>h`` or ``<n>d``: a plain number (not ``nan``, ``inf`` or ``1e3``).
_WINDOW = re.compile(r"(\d{1,7}(?:\.\d{1,6})?)([mhd])", re.IGNORECASE)
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
