"""Cutting a job's output stream into the log lines the master stores.

A line is what ends in ``\\n`` (a trailing ``\\r`` goes too), decoded as UTF-8 with bad
bytes replaced. A line longer than :data:`MAX_LINE` bytes is cut into pieces of at most that
size, at a character boundary, so a job that prints a megabyte without a newline cannot
make one log entry the master would refuse; and not inside something that may be one of
Titan's tokens, which the master redacts line by line (cut in two, neither half matched, and
a viewer read the token by joining two lines). Each piece but the last *continues*: it is
stored so, and the plain-text log, ``fetch_logs`` and ``titan logs`` join it to the next as the
job printed it. What is left at end-of-file is a last line.
"""

from __future__ import annotations

MAX_LINE = 64 * 1024
#: Where a Titan token may start (titan.redaction: a job's, an evaluation agent's — the
#: credential of a job that is an agent under test —, a worker's, an API token, a session
#: cookie), and how far one reaches at most.
_TOKEN_STARTS = (b"tj.", b"ta.", b"tw.", b"tt_", b"tok-")
_TOKEN_REACH = 300


def _token_safe(buf: bytearray, start: int, cut: int) -> int:
    """``cut`` moved back before a token that may straddle it (one starting within its
    reach before the cut), when that leaves something before it."""
    low = max(start + 1, cut - _TOKEN_REACH)
    # A prefix that begins before the cut and ends after it counts (its last byte past it).
    found = [i for prefix in _TOKEN_STARTS
             if (i := buf.find(prefix, low, cut + len(prefix) - 1)) >= 0]
    return min(found) if found else cut


def _char_boundary(buf: bytearray, start: int, cut: int) -> int:
    """``cut`` moved back so it does not split a UTF-8 sequence (at most 3 bytes back)."""
    for candidate in range(cut, max(start + 1, cut - 3) - 1, -1):
        if buf[candidate] & 0xC0 != 0x80:  # not a continuation byte: a character starts here
            return candidate
    return cut


class LineSplitter:
    """Feed bytes in, get complete lines out."""

    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[tuple[str, bool]]:
        """The lines ``data`` completed, each with whether it continues (a cut piece)."""
        buf = self._buf
        buf += data
        lines: list[tuple[str, bool]] = []
        pos, end = 0, len(buf)
        while pos < end:
            nl = buf.find(b"\n", pos, pos + MAX_LINE + 1)
            if nl >= 0:
                stop = nl - 1 if nl > pos and buf[nl - 1] == 0x0D else nl
                lines.append((buf[pos:stop].decode("utf-8", "replace"), False))
                pos = nl + 1
            elif end - pos > MAX_LINE:
                cut = _token_safe(buf, pos, _char_boundary(buf, pos, pos + MAX_LINE))
                lines.append((buf[pos:cut].decode("utf-8", "replace"), True))
                pos = cut
            else:
                break
        del buf[:pos]
        return lines

    def close(self) -> list[tuple[str, bool]]:
        """The unterminated last line, if any (it continues nothing)."""
        rest = bytes(self._buf)
        self._buf.clear()
        if rest.endswith(b"\r"):
            rest = rest[:-1]
        return [(rest.decode("utf-8", "replace"), False)] if rest else []
