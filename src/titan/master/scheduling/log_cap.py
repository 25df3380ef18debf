"""The log one attempt of a job keeps (``TITAN_MAX_LOG_MB``), and its ending past the cap.

A job printing without end filled the master's disk at the speed it printed, so an attempt
keeps its lines up to the cap, then one line saying so. What a runaway job prints last is what
its user reads first — the traceback of the loop that ran away, the summary it printed before
it exited — so past the cap the master still holds the attempt's latest lines in memory, up to
:data:`TAIL_BYTES`, and writes them when the attempt's result comes, after a line saying how
many were dropped in between. Nothing past the cap is written before the attempt ends: a job
printing for ever costs the master at most :data:`TAIL_BYTES` of memory, never disk.

Counted since this master took the job in: a restart (or a failover) starts the count again,
and an ending held in memory by a master that stops is not written.
"""

from __future__ import annotations

from collections import deque

from titan.storage.base import Row

#: The most of an attempt's ending (its lines past the cap) kept until the attempt ends; at
#: most the cap itself when the cap is smaller.
TAIL_BYTES = 64 * 1024
#: What a line counts for besides its characters: about a row's overhead, so empty lines count.
LINE_OVERHEAD = 32


def _size(row: Row) -> int:
    return len(row["line"]) + LINE_OVERHEAD


class AttemptLog:
    """One job's count of kept log bytes for its current attempt, and the ending it holds once
    the cap is reached."""

    __slots__ = ("attempt", "kept", "capped", "tail", "tail_bytes", "dropped", "dropped_seq")

    def __init__(self, attempt: int) -> None:
        self.attempt = attempt
        self.kept = 0
        self.capped = False
        self.tail: deque[Row] = deque()
        self.tail_bytes = 0
        self.dropped = 0  # lines past the cap that the ending no longer holds
        self.dropped_seq = 0  # the last of those: the gap line takes its place

    def keep(self, row: Row, cap: int) -> list[Row]:
        """The rows to write now for ``row``, a line of this attempt: itself while the
        attempt is within ``cap``; the line saying the cap was reached, once; then nothing
        (the line is held as the ending, :meth:`ending`)."""
        if self.capped:
            self._hold(row, min(TAIL_BYTES, cap))
            return []
        self.kept += _size(row)
        if self.kept <= cap:
            return [row]
        self.capped = True
        return [{**row, "continues": False, "line": (
            f"[titan: this attempt's log reached TITAN_MAX_LOG_MB ({cap / 2**20:.3g} MiB): "
            f"the lines after this one are not kept, but its last "
            f"{min(TAIL_BYTES, cap) // 1024 or 1} KiB, written when it ends]")}]

    def _hold(self, row: Row, budget: int) -> None:
        self.tail.append(row)
        self.tail_bytes += _size(row)
        while self.tail_bytes > budget and len(self.tail) > 1:
            gone = self.tail.popleft()
            self.tail_bytes -= _size(gone)
            self.dropped += 1
            self.dropped_seq = gone["seq"]

    def ending(self) -> list[Row]:
        """The rows to write as the attempt ends: the lines held past the cap, after one
        saying how many were dropped between the cap and them (in the place of the last
        dropped line: a row's sequence number is its place in the log). Given once."""
        rows = list(self.tail)
        self.tail.clear()
        self.tail_bytes = 0
        if self.dropped and rows:
            first = rows[0]
            rows.insert(0, {**first, "seq": self.dropped_seq, "stream": "stderr",
                            "continues": False, "line": (
                                f"[titan: {self.dropped:,} lines past TITAN_MAX_LOG_MB were "
                                f"not kept; the attempt's last {len(rows):,} follow]")})
            self.dropped = 0
        return rows


def attempt_log(current: AttemptLog | None, attempt: int) -> AttemptLog:
    """The count for ``attempt``: ``current`` while it counts that attempt, else a new one
    (a retry's log starts afresh)."""
    if current is None or current.attempt != attempt:
        return AttemptLog(attempt)
    return current
