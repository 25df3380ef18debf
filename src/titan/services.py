"""Service jobs' settings: their names, defaults and rules, one place for the SDK, the master
and the worker.

A job of type ``SERVICE`` is a long-running process (an inference server, a tool endpoint):
its worker gives it a port, checks that it answers before calling it *ready*, restarts it in
place when it crashes, and stops it gracefully when asked (docs/sdk.md, "Services"). These
settings say how; each is optional and ``None`` means its default.

* ``readiness`` — ``"tcp"`` (the port accepts a connection), ``"http:/path"`` (a GET of that
  path answers 2xx or 3xx; ``"http"`` alone is ``/``) or ``"none"`` (ready once started).
* ``max_restarts`` within ``restart_window`` seconds — crashes past that many restarts in
  the window fail the job (``crashed 6 times in 300 s; last exit code 1``).
* ``stop_grace`` — seconds between SIGTERM and SIGKILL when the service is stopped.
* ``ready_timeout`` — seconds a start may take to become ready before it counts as a crash.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from typing import Any

#: The job types that are services (``DEPLOY_PAYLOAD``: the original SDK's name for one).
SERVICE_TYPES = frozenset({"SERVICE", "DEPLOY_PAYLOAD"})

DEFAULTS: dict[str, Any] = {
    "readiness": "tcp",
    "max_restarts": 5,
    "restart_window": 300.0,
    "stop_grace": 10.0,
    "ready_timeout": 60.0,
}
FIELDS = tuple(DEFAULTS)

#: Upper bounds, generous but finite (a typo of a few zeros is an error, not a week's wait).
_LIMITS = {"max_restarts": 1000, "restart_window": 7 * 24 * 3600.0, "stop_grace": 3600.0,
           "ready_timeout": 24 * 3600.0}
_HTTP_PATH = re.compile(r"^/[\x21-\x7e]{0,999}\Z")

#: Builds the error for (field, message): the SDK's ValidationFailed, the master's InvalidDAG.
Fail = Callable[[str, str], Exception]


def is_service(job_type: str | None) -> bool:
    return (job_type or "").upper() in SERVICE_TYPES


def readiness_problem(value: Any) -> str | None:
    """Why ``value`` is not a readiness check, or None when it is one."""
    if not isinstance(value, str):
        return f"readiness must be a string such as 'tcp' or 'http:/health', got {value!r}"
    if value in ("tcp", "none", "http"):
        return None
    if value.startswith("http:") and _HTTP_PATH.match(value[5:]):
        return None
    return (f"readiness must be 'tcp', 'none', 'http' or 'http:/path' (a path of printable "
            f"characters, no spaces), got {value!r}")


def settings(given: Mapping[str, Any], fail: Fail) -> dict[str, Any]:
    """The settings a service runs with: those ``given`` checked, the rest their defaults.
    Raises ``fail(field, message)`` for the first one that is wrong."""
    out = dict(DEFAULTS)
    for field in FIELDS:
        value = given.get(field)
        if value is None:
            continue
        if field == "readiness":
            why = readiness_problem(value)
            if why is not None:
                raise fail(field, why)
            out[field] = value
            continue
        if isinstance(value, bool) or not isinstance(value, int | float) \
                or not math.isfinite(value):
            raise fail(field, f"{field} must be a number, got {value!r}")
        if field == "max_restarts":
            if int(value) != value or not 0 <= value <= _LIMITS[field]:
                raise fail(field, f"max_restarts must be an integer between 0 and "
                                  f"{_LIMITS[field]}, got {value!r}")
            out[field] = int(value)
        else:
            if not 0 < value <= _LIMITS[field]:
                raise fail(field, f"{field} must be more than 0 and at most "
                                  f"{_LIMITS[field]:g} seconds, got {value!r}")
            out[field] = float(value)
    return out


#: Where services' addresses live in the TitanStore. The master alone writes under it: a job
#: that could put ``services/infer/model`` would send every caller of that service to an
#: address of its choosing (docs/security.md).
STORE_PREFIX = "services/"


def store_key(dag: str, job_id: str) -> str:
    """The TitanStore key a ready service's address (``host:port``) is published under: the
    service of that name in the latest run of ``dag`` whose service is live."""
    return f"{STORE_PREFIX}{dag}/{job_id}"


#: Set by the master in the settings of a service a job's token submitted: it is published
#: under its run's key alone, never its DAG's (a job that submitted a run of another DAG
#: would otherwise point that DAG's callers at a server of its own).
RUN_KEY_ONLY = "run_key_only"


def run_store_key(dag: str, run: int, job_id: str) -> str:
    """The key of the service ``job_id`` of run ``run`` of ``dag`` alone
    (``services/<dag>#<run>/<job_id>``, as its job's reference ``dag#run/job_id`` names it):
    another run of the same DAG, alive at the same time, never reads or withdraws it."""
    return f"{STORE_PREFIX}{dag}#{run}/{job_id}"
