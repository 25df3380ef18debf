"""How far a worker's wall clock is from the master's, estimated from what it says its time is.

A worker whose clock runs behind or ahead (a VM restored from a snapshot, no NTP) stamped its
jobs' log lines with its own time, and those times are what the master keeps and shows. Each
registration and heartbeat carries the worker's ``time.time()`` as it sends it (``now``: each
try of a request retried through an outage is stamped anew); the master's own time on receipt
minus that is the offset plus the time the message took on the way, which is never negative.
So the smallest of the last few samples is the best estimate (as NTP's clock filter takes the
sample of least delay), and a worker whose clock is set right meanwhile is followed within
:data:`SAMPLES` heartbeats.

One sample proves nothing: a heartbeat that waited (a master paused or restarting while it was
on its way, a worker of an earlier version that sent a retried request with the time of its
first try) made a worker on the master's own host "4.8 s behind" on its first sample after a
restart, warned once and never withdrawn. An estimate is taken only when the two least delayed
samples agree (within :data:`TOLERANCE`): two samples delayed alike are unlikely. Until then
the last estimate holds (none at first: times are kept as they are). A worker registers and
heartbeats at once, so its first job's lines already have an estimate.

Below :data:`TOLERANCE` the worker's times are kept as they are: the estimate is then mostly
network delay, and shifting lines by it would only add noise. Job durations do not use this:
a worker reports each attempt's elapsed time on its monotonic clock
(:meth:`~titan.master.scheduling.outcomes.JobOutcomes.finish`).
"""

from __future__ import annotations

import math
from collections import deque

#: Samples kept: the estimate follows a clock stepped on the worker within that many beats.
SAMPLES = 5
#: Offsets smaller than this (seconds) are taken as agreement: times are not shifted. Two
#: samples this close to each other agree.
TOLERANCE = 1.0
#: Offsets past this (seconds) are worth a warning in the master's log.
WARN_AT = 2.0


class WorkerClock:
    """The offset of one worker's wall clock from the master's (master minus worker)."""

    def __init__(self) -> None:
        self._samples: deque[float] = deque(maxlen=SAMPLES)
        self._estimate = 0.0
        #: The offset the master's log said last (past WARN_AT), None when it said none.
        self.said: float | None = None

    def sample(self, worker_now: object, master_now: float) -> None:
        """Note that the worker said it was ``worker_now`` when the master read ``master_now``;
        anything but a finite number is ignored (an older worker sends none)."""
        if isinstance(worker_now, bool) or not isinstance(worker_now, int | float) \
                or not math.isfinite(worker_now):
            return
        self._samples.append(master_now - float(worker_now))
        if len(self._samples) >= 2:
            best, next_best = sorted(self._samples)[:2]
            if next_best - best < TOLERANCE:
                self._estimate = best

    @property
    def offset(self) -> float:
        """Seconds to add to the worker's times to read them on the master's clock (0.0 while
        unknown or within :data:`TOLERANCE`)."""
        return self._estimate if abs(self._estimate) >= TOLERANCE else 0.0

    def shift(self, worker_time: float) -> float:
        """``worker_time`` (a worker's wall-clock time) on the master's clock."""
        return worker_time + self.offset

    def news(self) -> float | None:
        """The offset to say in the master's log, when what it said no longer holds: past
        :data:`WARN_AT` for the first time, moved by :data:`TOLERANCE` or more since it was
        said, or back within :data:`WARN_AT` (a warning withdrawn); None when nothing changed.
        """
        offset = self.offset
        if abs(offset) >= WARN_AT:
            if self.said is None or abs(offset - self.said) >= TOLERANCE:
                self.said = offset
                return offset
        elif self.said is not None:
            self.said = None
            return offset
        return None
