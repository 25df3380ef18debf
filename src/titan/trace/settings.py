"""What the recorder reads of the process it runs in: its ``TITAN_TRACE_*`` settings, and
whether Python's exit hooks will run there.

The recorder runs inside the user's program: a bad setting is said once on the log and its
default used (``float('abc')`` crashed a program at its first run, or an exit-time crash lost
its whole run).
"""

from __future__ import annotations

import logging
import math
import os
import sys
from typing import Any

from titan.formats import SWITCH_OFF, SWITCH_ON, switch_value

log = logging.getLogger("titan.trace")


def seconds(name: str, default: float, lo: float, hi: float) -> float | None:
    """The seconds setting ``name`` (from lo to hi), or None when unset; ``default`` when
    it is not such a number (said on the log)."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not lo <= value <= hi:  # NaN too
        log.warning("%s=%r is not a number of seconds from %g to %g: using %g",
                    name, raw[:40], lo, hi, default)
        return default
    return value


#: Seconds between two signs of life for the runs this process holds open.
HEARTBEAT = seconds("TITAN_TRACE_HEARTBEAT", 30.0, 0.05, 3600) or 30.0


def flush_interval() -> float:
    """Seconds actions wait to travel in batches (``TITAN_TRACE_FLUSH_INTERVAL``, 0.2)."""
    value = seconds("TITAN_TRACE_FLUSH_INTERVAL", 0.2, 0.0, 60.0)
    return 0.2 if value is None else value


def flush_timeout() -> tuple[float, bool]:
    """Seconds to wait for the master when this process's recording must be delivered (its
    exit, a run ended where exit hooks do not run): ``TITAN_TRACE_FLUSH_TIMEOUT``, 10; and
    whether the user set it."""
    value = seconds("TITAN_TRACE_FLUSH_TIMEOUT", 10.0, 0.0, 86400.0)
    return (10.0, False) if value is None else (value, True)


def switch(name: str, default: bool) -> bool:
    """The switch setting ``name``: 1, true, yes or on; 0, false, no or off (any case);
    ``default`` when unset, and when it is another word (said on the log)."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    value = switch_value(raw)
    if value is None:
        log.warning("%s=%r is not one of %s (on) or %s (off): using %s", name, raw[:40],
                    ", ".join(SWITCH_ON), ", ".join(SWITCH_OFF), "on" if default else "off")
        return default
    return value


def driver_ends_runs() -> bool:
    """Whether a process that drives an agent run from outside ends it when it exits
    (``TITAN_TRACE_DRIVER``, on). Read as a switch: ``false`` or ``off`` was taken for on
    (only "0" turned it off), and the run a user meant to resume ended with the process."""
    return switch("TITAN_TRACE_DRIVER", True)


def multiprocessing_child() -> Any:
    """The multiprocessing module when this process is one of its children, else None. Such
    a process never runs Python's exit hooks (its bootstrap leaves by ``os._exit`` after
    multiprocessing's own finalizers), and a ``Pool`` ends its workers with SIGTERM."""
    mp = sys.modules.get("multiprocessing")  # not imported: not a child of it
    if mp is None or getattr(mp, "parent_process", lambda: None)() is None:
        return None
    import multiprocessing.util  # noqa: F401  # for Finalize

    return mp
