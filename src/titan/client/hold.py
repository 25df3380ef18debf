"""A request the master holds: a long-poll (``?timeout=``) or a submission with ``?wait=``.

The SDK asks the master to hold such a request until what it waits for happens or the hold
runs out; :class:`Hold` is what :mod:`titan.client.transport` needs to send one again after a
restart without starting the hold afresh, and how long to wait for its answer.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Hold:
    """A request the master holds until what it waits for happens or ``param`` seconds pass
    (a long-poll's ``timeout``, a submission's ``wait``), which ends at ``ends`` (monotonic).

    Each try, a retry after a restart included, asks the master for what is left of the hold,
    and its socket waits ``margin`` seconds past it for the answer: the master answers a
    hold's end at once, the margin is for a loaded master or a large answer."""

    param: str
    ends: float
    margin: float

    def for_try(self, params: Mapping[str, Any] | None) -> tuple[dict[str, Any], float]:
        """This try's query (the hold in whole milliseconds, a number the master parses)
        and read timeout."""
        left = math.ceil(max(0.0, self.ends - time.monotonic()) * 1000) / 1000
        return {**(params or {}), self.param: left}, left + self.margin
