"""Finding runs: one by id (or the 404 every route answers), and the time windows filters name."""

from __future__ import annotations

import time

from titan.errors import NotFound, ValidationFailed
from titan.storage.base import Row, Transaction


def run_or_404(tx: Transaction, run_id: str) -> Row:
    """The run, or the 404 every route and service answers for a run that does not exist."""
    run = tx.get_run(run_id)
    if run is None:
        raise NotFound(f"no agent run {run_id!r}", details={"id": run_id})
    return run


def check_window(value: str | None) -> float | None:
    """``24h``/``7d``/``30d``/``all`` (or any ``<n>h``/``<n>d``) -> a 'since' timestamp."""
    if value in (None, "", "all"):
        return None
    assert value is not None
    unit = value[-1:]
    try:
        n = float(value[:-1])
    except ValueError:
        n = -1
    if unit not in ("h", "d", "m") or n <= 0:
        raise ValidationFailed(f"window must be like 24h, 7d, 30d or all, got {value!r}")
    return time.time() - n * {"m": 60, "h": 3600, "d": 86400}[unit]
