"""Long-polls: a server-side wait (``?timeout=``) asked for in slices until it answers.

``wait``, ``store_wait`` and the rest wait on the master, not by polling: each slice asks it to
hold the request up to :data:`WAIT_SLICE` seconds, and the socket is given that long plus
:data:`WAIT_MARGIN`. A master restarting meanwhile is ridden out by the transport's retries.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from titan import errors

if TYPE_CHECKING:
    from titan.client.transport import Transport

#: The longest single server-side wait asked for; longer waits loop over slices.
WAIT_SLICE = 30.0
#: Extra read time allowed beyond a server-side wait before the client gives up on the socket.
WAIT_MARGIN = 15.0


def long_poll(
    transport: Transport,
    path: str,
    timeout: float | None,
    *,
    what: str,
    params: Mapping[str, Any] | None = None,
) -> Any:
    """GET a server-side wait endpoint (``?timeout=``) in slices until it answers.

    Each slice asks the master to hold the request up to :data:`WAIT_SLICE` seconds; a
    ``408`` slice is repeated until ``timeout`` (``None``: forever) is used up, then
    :class:`~titan.errors.WaitTimeout` is raised naming ``what``.
    """
    deadline = wait_deadline(timeout)
    asked = False
    while True:
        slice_s = WAIT_SLICE
        if deadline is not None:
            slice_s = min(slice_s, deadline - time.monotonic())
            if slice_s <= 0 and asked:
                break
            slice_s = max(0.0, slice_s)  # asked once at least: timeout=0 is "is it done?"
        asked = True
        # Whole milliseconds, so the master sees a plain number it can parse.
        wait = math.ceil(slice_s * 1000) / 1000
        query = dict(params or {})
        query["timeout"] = wait
        try:
            return transport.call("GET", path, params=query, read_timeout=wait + WAIT_MARGIN)
        except errors.WaitTimeout:
            if deadline is not None and time.monotonic() >= deadline:
                break
    raise errors.WaitTimeout(f"timed out after {round(timeout or 0, 1):g}s waiting for {what}")


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
