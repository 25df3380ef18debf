"""How far a worker's wall clock is from the master's, estimated from what it says its time is.

A worker whose clock runs behind or ahead (a VM restored from a snapshot, no NTP) stamped its
jobs' log lines with its own time, and those times are what the master keeps and shows. Each
registration and heartbeat carries the worker's ``time.time()`` as it sends it (``now``); the
master's own time on receipt minus that is the offset plus the time the message took on the
way, which is never negative. So the smallest of the last few samples is the best estimate (as
NTP's clock filter takes the sample of least delay): a heartbeat retried after an outage, sent
with the time of its first try, or a slow network, only adds to a sample, and a worker whose
clock is set right meanwhile is followed within :data:`SAMPLES` heartbeats.

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
#: Offsets smaller than this (seconds) are taken as agreement: times are not shifted.
TOLERANCE = 1.0
#: Offsets past this (seconds) are worth a warning in the master's log, once per worker.
WARN_AT = 2.0


class WorkerClock:
    """The offset of one worker's wall clock from the master's (master minus worker)."""

    def __init__(self) -> None:
        self._samples: deque[float] = deque(maxlen=SAMPLES)
        #: Whether the master has said (logged) that this worker's clock is off.
        self.warned = False

    def sample(self, worker_now: object, master_now: float) -> None:
        """Note that the worker said it was ``worker_now`` when the master read ``master_now``;
        anything but a finite number is ignored (an older worker sends none)."""
        if isinstance(worker_now, bool) or not isinstance(worker_now, int | float) \
                or not math.isfinite(worker_now):
            return
        self._samples.append(master_now - float(worker_now))

    @property
    def offset(self) -> float:
        """Seconds to add to the worker's times to read them on the master's clock (0.0 while
        unknown or within :data:`TOLERANCE`)."""
        if not self._samples:
            return 0.0
        best = min(self._samples)
        return best if abs(best) >= TOLERANCE else 0.0

    def shift(self, worker_time: float) -> float:
        """``worker_time`` (a worker's wall-clock time) on the master's clock."""
        return worker_time + self.offset
