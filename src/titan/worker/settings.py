"""The worker's settings from its environment, each checked at start: a value out of range, or
not among those a setting takes, is a one-line ConfigError naming the variable and what it
takes, never a traceback, nor taken silently for the default."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

from titan import errors
from titan.formats import SWITCH_OFF, SWITCH_ON, setting_number, switch_value


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
        raise errors.ConfigError(f"{name} is {meaning}, {setting_number(low)} to "
                                 f"{setting_number(high)} (got {raw[:40]!r})")
    return value


def env_choice(name: str, default: str, choices: Sequence[str]) -> str:
    """``name``'s value (``default`` when unset or blank): one of ``choices``, compared without
    regard to case and returned as listed there."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    for choice in choices:
        if raw.upper() == choice.upper():
            return choice
    raise errors.ConfigError(f"{name} must be one of {', '.join(choices)} (got {raw[:40]!r})")


def env_switch(name: str, default: bool) -> bool:
    """``name``'s value as on or off (``default`` when unset or blank): 1, true, yes or on;
    0, false, no or off. Anything else is refused, not taken for either (TITAN_SANDBOX=false
    turned the sandbox on: every value but "0" did)."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    value = switch_value(raw)
    if value is not None:
        return value
    raise errors.ConfigError(f"{name} must be one of {', '.join(SWITCH_ON)} (on) or "
                             f"{', '.join(SWITCH_OFF)} (off) (got {raw[:40]!r})")
