"""When a call is tried again, and for how long: one policy for the SDK, the worker, the
trace recorder and hosted LLM calls.

A master restart (``kill -9`` and start again, an upgrade) leaves its port closed for a few
seconds, and requests in flight at that moment lose their reply. Both the SDK inside a job and
the worker ride that out here, so a job with ``retries=0`` does not fail because the master
was briefly away (issue 15 item 7).

What is retried:

* a request that never reached the master (connection refused, connect timeout, no pooled
  connection free): always, whatever its method, since nothing was sent;
* a request that may have been received (the connection broke before the reply, a 502/503/504
  from a proxy in front of a restarting master): only when repeating it cannot apply it twice,
  i.e. its method is idempotent (GET, PUT, DELETE...) or it carries an ``Idempotency-Key``
  header that the master records in the write's own commit and answers from on a repeat;
* nothing else: a 4xx is final, and a read timeout means a master that is up but slow (a
  retry would only multiply the wait) — except where the client was given several masters
  and the request may go again: it goes to the next one, since a leader frozen (a paused VM)
  is replaced by a standby meanwhile (``client/retrying.py``).

How long: :class:`Backoff` pauses exponentially from ``start`` up to ``cap`` with jitter (each
pause is drawn from the upper half of its step, so a crowd of jobs reconnecting after a
restart does not arrive in lockstep), and gives up once ``TITAN_MASTER_RESTART_GRACE``
seconds (default 60) have passed since the first try. The worker passes ``grace=None``: it
outlives any outage and stops only when told to.
"""

from __future__ import annotations

import os
import random
import secrets
import time
from collections.abc import Callable, Mapping

import httpx

from titan.errors import ConfigError

GRACE_ENV = "TITAN_MASTER_RESTART_GRACE"
DEFAULT_GRACE = 60.0
#: How long the SDK retries a master it has never reached (outside a job): long enough for a
#: master that is starting, short enough for a wrong address to be said at once.
FIRST_CONTACT_GRACE = 2.0


def in_job(env: Mapping[str, str] | None = None) -> bool:
    """Whether this process is a Titan job (its worker sets TITAN_JOB_UID)."""
    return bool((os.environ if env is None else env).get("TITAN_JOB_UID"))
IDEMPOTENCY_HEADER = "Idempotency-Key"
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
#: A proxy's answers while the master behind it is down.
GATEWAY_STATUSES = frozenset({502, 503, 504})

_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
# The request may have reached the master, which died before its reply was written.
_REPLY_LOST = (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)


def restart_grace(env: Mapping[str, str] | None = None) -> float:
    """Seconds to keep retrying an unreachable master (``TITAN_MASTER_RESTART_GRACE``)."""
    return seconds_setting(GRACE_ENV, DEFAULT_GRACE, env)


def seconds_setting(name: str, default: float, env: Mapping[str, str] | None = None, *,
                    most: float | None = None, why: str = "") -> float:
    """A number of seconds from the environment: ``default`` when unset or blank, else a
    finite number from 0 (to ``most``); anything else is a ConfigError naming the setting
    (``why``: the bound's reason, said with it)."""
    raw = (os.environ if env is None else env).get(name)
    if raw is None or not raw.strip():
        return default
    try:
        seconds = float(raw)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds < float("inf") or (most is not None and seconds > most):
        bound = ">= 0" if most is None else f"from 0 to {most:g}"
        raise ConfigError(f"{name} must be a number of seconds {bound}{why} (got {raw!r})")
    return seconds


def new_key() -> str:
    """A fresh ``Idempotency-Key``: one per logical call, reused by each of its retries."""
    return secrets.token_urlsafe(18)


def replayable(method: str, headers: Mapping[str, str] | None = None) -> bool:
    """True when sending the request twice has the effect of sending it once."""
    if method.upper() in IDEMPOTENT_METHODS:
        return True
    return bool(headers) and any(k.lower() == IDEMPOTENCY_HEADER.lower() for k in headers or ())


def retryable_error(exc: BaseException, *, replayable: bool) -> bool:
    """Whether a transport error is worth another try (see the module docstring)."""
    if isinstance(exc, _NOT_SENT):
        return True
    return replayable and isinstance(exc, _REPLY_LOST)


def retryable_status(status: int, *, replayable: bool) -> bool:
    """Whether an HTTP answer is a proxy's "the master is away" worth another try."""
    return replayable and status in GATEWAY_STATUSES


def pause(tries: int, *, start: float, cap: float,
          rand: Callable[[], float] = random.random) -> float:
    """The jittered pause after ``tries`` failed tries: exponential from ``start``, capped at
    ``cap``, drawn from the upper half of the step (never shorter than half of it)."""
    step = min(cap, start * (2.0 ** min(tries, 32)))
    return step / 2 + rand() * step / 2


class Backoff:
    """The pauses between tries of one logical call: jittered, capped, within a deadline.

    ``until`` (a time on ``clock``) is a bound the caller set, which no grace, widened or
    not, goes past: a wait with ``timeout=5`` is not made to last the restart grace."""

    def __init__(self, grace: float | None, *, start: float = 0.05, cap: float = 2.0,
                 rand: Callable[[], float] = random.random,
                 clock: Callable[[], float] = time.monotonic,
                 until: float | None = None) -> None:
        self.start, self.cap = start, cap
        self.tries = 0
        self._rand, self._clock = rand, clock
        self._began = clock()
        self._until = until
        self._grace_end = None if grace is None else self._began + grace

    @property
    def deadline(self) -> float | None:
        """When the tries stop (None: never): the grace's end or ``until``, the earlier."""
        if self._until is None:
            return self._grace_end
        return self._until if self._grace_end is None else min(self._grace_end, self._until)

    @property
    def caller_bound(self) -> bool:
        """Whether the caller's ``until`` is what ends the tries (not the grace)."""
        return self._until is not None and self.deadline == self._until

    @property
    def span(self) -> float | None:
        """Seconds from the first try to :attr:`deadline` (None: no deadline)."""
        deadline = self.deadline
        return None if deadline is None else max(0.0, deadline - self._began)

    def widen(self, grace: float | None) -> None:
        """Give the call ``grace`` seconds from its first try, if that is longer (a master
        answered: it is there, only passing through a restart, not a wrong address); never
        past ``until``."""
        if self._grace_end is not None:
            self._grace_end = None if grace is None else max(self._grace_end,
                                                             self._began + grace)

    def next_delay(self) -> float | None:
        """The pause before the next try, or None once the grace is spent."""
        delay = pause(self.tries, start=self.start, cap=self.cap, rand=self._rand)
        self.tries += 1
        deadline = self.deadline
        if deadline is None:
            return delay
        remaining = deadline - self._clock()
        if remaining <= 0:
            return None
        return min(delay, remaining)
