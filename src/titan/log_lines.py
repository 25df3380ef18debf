"""A job's log read back as the job printed it: the pieces of a line past 64 KiB joined again.

The worker stores a line longer than 64 KiB in pieces, each but the last marked ``continues``
(titan/worker/output.py). Pieces of one line are joined with the later pieces *of the same
stream*: stdout and stderr are read from separate pipes, so a stderr line may be stored between
two pieces of a stdout line, and joining in storage order mixed them. A joined line takes the
place (and ``seq``) of its last piece, so a reader that follows a log never shows half a line.
The plain-text log, ``fetch_logs``, ``titan logs`` and the MCP tool read through
:class:`Rejoin`; ``iter_logs`` and the API give the pieces. A leaf: the master, the client
and the CLI share it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any


class Rejoin:
    """Feed log entries in order (dicts with ``stream``, ``line`` and maybe ``continues``);
    get whole lines out."""

    __slots__ = ("_held",)

    def __init__(self) -> None:
        self._held: dict[str, list[str]] = {}  # stream -> pieces waiting for their end

    def feed(self, entry: dict[str, Any]) -> dict[str, Any] | None:
        """The whole line ``entry`` ends, or None while its line goes on."""
        stream = entry.get("stream", "")
        held = self._held.get(stream)
        if entry.get("continues"):
            if held is None:
                self._held[stream] = [str(entry.get("line", ""))]
            else:
                held.append(str(entry.get("line", "")))
            return None
        if held is None:
            return entry
        del self._held[stream]
        held.append(str(entry.get("line", "")))
        return {**entry, "line": "".join(held)}

    def rest(self) -> list[dict[str, Any]]:
        """Lines whose end never came (a job killed mid-line), joined as far as they go."""
        out = [{"stream": stream, "line": "".join(pieces)}
               for stream, pieces in self._held.items()]
        self._held.clear()
        return out


def whole(entries: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """``entries`` with every line stored in pieces joined again (see :class:`Rejoin`)."""
    rejoin = Rejoin()
    for entry in entries:
        line = rejoin.feed(entry)
        if line is not None:
            yield line
    yield from rejoin.rest()


def text(entries: Iterable[dict[str, Any]]) -> str:
    """The log as text: whole lines joined by newlines."""
    return "\n".join(str(e.get("line", "")) for e in whole(entries))
