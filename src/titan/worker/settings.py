"""The worker's numeric settings from its environment, each checked at start: a value out of
range is a one-line ConfigError naming the variable and what it means, never a traceback."""

from __future__ import annotations

import math
import os

from titan import errors


def env_number(name: str, default: float, low: float, high: float, meaning: str) -> float:
    """``name``'s value (``default`` when unset or blank), between ``low`` and ``high``;
    ``meaning`` says what it is in the error ("the days a cached script unused is kept")."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not low <= value <= high:
        raise errors.ConfigError(f"{name} is {meaning}, {low:g} to {high:g} (got {raw[:40]!r})")
    return value
