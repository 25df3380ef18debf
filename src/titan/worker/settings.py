"""The worker's settings from its environment, each checked at start: a value out of range, or
not among those a setting takes, is a one-line ConfigError naming the variable and what it
takes, never a traceback, nor taken silently for the default.

:func:`check_environment` reads every one of them at once, so that ``titan up`` refuses a bad
one before it starts its master (it printed its banner, then its worker died on the value).
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
from collections.abc import Mapping, Sequence

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


#: How jobs and reports travel: ``channel`` (one WebSocket, the default) or ``http``.
TRANSPORTS = ("channel", "http")
TRANSPORT_ENV = "TITAN_WORKER_TRANSPORT"
#: What the worker logs on stderr; unset: warnings only (Python's own default).
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
LOG_LEVEL_ENV = "TITAN_LOG_LEVEL"
#: "1" (the default): a lean zygote too, for scripts whose imports it holds; "0": none.
LEAN_ENV = "TITAN_ZYGOTE_LEAN"
SPARES_ENV = "TITAN_ZYGOTE_SPARES"
CACHE_DAYS_ENV = "TITAN_WORKER_CACHE_DAYS"
DEFAULT_CACHE_DAYS = 7.0
#: A running attempt's log lines held in memory, by default, before its output is paused.
OUTPUT_BUFFER_ENV = "TITAN_WORKER_OUTPUT_BUFFER"
DEFAULT_OUTPUT_BUFFER = 16 << 20
#: Where a worker's services are reached, when the route to the master is not the answer.
SERVICE_HOST_ENV = "TITAN_SERVICE_HOST"
_HOST_NAME = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_.-]{0,252})")


def transport(given: str | None = None) -> str:
    """``--transport``, else ``TITAN_WORKER_TRANSPORT``, else ``channel``."""
    chosen = given or os.environ.get(TRANSPORT_ENV, "").strip() or "channel"
    if chosen not in TRANSPORTS:
        raise errors.ConfigError(f"the worker transport must be one of {', '.join(TRANSPORTS)}"
                                 f" (got {chosen!r}; {TRANSPORT_ENV})")
    return chosen


def log_level() -> str:
    """``TITAN_LOG_LEVEL``: one of :data:`LOG_LEVELS`, or "" (warnings only)."""
    return env_choice(LOG_LEVEL_ENV, "", LOG_LEVELS)


def zygote_lean() -> bool:
    """Whether the worker also runs a lean zygote (``TITAN_ZYGOTE_LEAN``, 1)."""
    return env_choice(LEAN_ENV, "1", ("0", "1")) == "1"


def zygote_spares(slots: int) -> int:
    """How many children each zygote keeps forked ahead: ``TITAN_ZYGOTE_SPARES``, by default
    one per slot up to 8 (a burst of an agent's parallel steps starts without forking)."""
    raw = os.environ.get(SPARES_ENV, "").strip()
    if not raw:
        return min(slots, 8)
    try:
        value = int(raw)
    except ValueError:
        raise errors.ConfigError(f"{SPARES_ENV} must be a whole number, got {raw!r}") from None
    if not 0 <= value <= 64:
        raise errors.ConfigError(f"{SPARES_ENV} must be between 0 and 64, got {value}")
    return value


def cache_days() -> float:
    """How long a cached script blob unused is kept (``TITAN_WORKER_CACHE_DAYS``; 0: for
    ever)."""
    return env_number(CACHE_DAYS_ENV, DEFAULT_CACHE_DAYS, 0, 36_500,
                      "the days a cached script unused is kept (0: for ever)")


def output_buffer() -> int:
    """The per-attempt limit on held log lines, in bytes, from ``TITAN_WORKER_OUTPUT_BUFFER``
    (MiB; at least 1)."""
    mib = env_number(OUTPUT_BUFFER_ENV, DEFAULT_OUTPUT_BUFFER / (1 << 20), 1, 1 << 20,
                     "the MiB of log lines a running job may hold in the worker's memory")
    return int(mib * (1 << 20))


def service_host(environ: Mapping[str, str] = os.environ) -> str | None:
    """``TITAN_SERVICE_HOST``: an address or a host name, or None when unset. Anything else
    (a space, a URL, a port) was published as the services' address, where nothing could
    reach them, and every readiness check failed on it."""
    given = environ.get(SERVICE_HOST_ENV, "").strip()
    if not given:
        return None
    try:
        ipaddress.ip_address(given)
        return given
    except ValueError:
        pass
    if _HOST_NAME.fullmatch(given) is None:
        raise errors.ConfigError(
            f"{SERVICE_HOST_ENV} must be an address or a host name (where other machines "
            f"reach this worker's services, e.g. 10.0.0.5 or gpu-3.internal), got {given[:80]!r}")
    return given


def check_environment() -> None:
    """Read every setting above, so a bad one is refused before anything starts."""
    log_level()
    transport()
    zygote_lean()
    zygote_spares(1)
    cache_days()
    output_buffer()
    service_host()
