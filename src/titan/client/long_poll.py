"""Long-polls: a server-side wait (``?timeout=``) asked for in slices until it answers.

``wait``, ``store_wait`` and the rest wait on the master, not by polling: each slice asks it to
hold the request up to :data:`WAIT_SLICE` seconds, and the socket is given that long plus
:data:`WAIT_MARGIN`. A master restarting meanwhile is ridden out by the transport's retries,
within the wait's ``timeout``: a wait never outlasts it because the master went away (the
restart grace bounds only waits without one).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

from titan import errors
from titan.client.hold import Hold

if TYPE_CHECKING:
    from titan.client.transport import Transport

#: The longest single server-side wait asked for; longer waits loop over slices.
WAIT_SLICE = 30.0
#: Extra read time allowed beyond a server-side wait before the client gives up on the socket.
WAIT_MARGIN = 15.0
#: The same for the slice that ends a wait's ``timeout``: the master answers a hold's end
#: (408) at once, so this covers a loaded master or a large answer made at the last moment,
#: and gives up on a master that is frozen (SIGSTOP, a paused VM) 5 s past the timeout.
DEADLINE_MARGIN = 5.0


def long_poll(
    transport: Transport,
    path: str,
    timeout: float | None,
    *,
    what: str,
    params: Mapping[str, Any] | None = None,
    until: float | None | Literal["timeout"] = "timeout",
) -> Any:
    """GET a server-side wait endpoint (``?timeout=``) in slices until it answers.

    Each slice asks the master to hold the request up to :data:`WAIT_SLICE` seconds; a
    ``408`` slice is repeated until ``timeout`` (``None``: forever) is used up, then
    :class:`~titan.errors.WaitTimeout` is raised naming ``what``. A master that cannot be
    reached is tried again until ``until`` (monotonic; by default the end of ``timeout``;
    ``None``: the restart grace alone), then :class:`~titan.errors.ConnectionFailed` says
    so: a caller that waits in steps of a longer wait passes that wait's end.
    """
    deadline = wait_deadline(timeout)
    bound = deadline if until == "timeout" else until
    asked = False
    while True:
        slice_s = WAIT_SLICE
        margin = WAIT_MARGIN
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0 and asked:
                break
            if left <= WAIT_SLICE:  # the last slice (asked once at least: timeout=0 is
                # "is it done?"), whose answer is not waited for long past the timeout
                slice_s, margin = max(0.0, left), DEADLINE_MARGIN
        asked = True
        hold = Hold("timeout", time.monotonic() + slice_s, margin)
        try:
            return transport.call("GET", path, params=params, hold=hold, deadline=bound)
        except errors.WaitTimeout:
            if deadline is not None and time.monotonic() >= deadline:
                break
        except errors.ConnectionFailed as exc:
            raise unreachable_within(exc, bound, f"waiting for {what}") from None
    raise errors.WaitTimeout(f"timed out after {round(timeout or 0, 1):g}s waiting for {what}")


def unreachable_within(exc: errors.ConnectionFailed, until: float | None,
                       doing: str) -> errors.ConnectionFailed:
    """``exc`` said as what ended a wait: the master was not reached before ``until``, the
    wait's end (``exc`` as it is while time is left: something else ended the call)."""
    if until is None or time.monotonic() < until:
        return exc
    return errors.ConnectionFailed(
        f"no answer from the Titan master within the wait's timeout, {doing}: {exc}")


def wait_deadline(timeout: float | None) -> float | None:
    """The monotonic deadline of a wait of ``timeout`` seconds (None: forever); a timeout
    that is not a number of seconds >= 0 is refused before anything is sent."""
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) \
            or not math.isfinite(timeout) or timeout < 0:
        raise errors.ValidationFailed(f"timeout must be a number of seconds >= 0 (or none, to "
                                      f"wait for ever), got {timeout!r}",
                                      details={"field": "timeout"})
    return time.monotonic() + timeout
