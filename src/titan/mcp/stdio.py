"""``titan mcp``'s stdio transport: the SDK's, with every line JSON-RPC 2.0 answers answered.

The SDK's stdio server (``mcp.server.stdio``) reads one message per line. A line that is not
JSON, not one object (a batch), or not a valid message (``"jsonrpc": "1.0"``, ``params`` an
array) it drops without a word, and a request whose id is neither a string nor an integer
(null, 1.5, an object) it reads as a notification, which gets no answer: either way the client
waited for its own timeout (a QA pass). JSON-RPC 2.0 answers such a line with ``-32700``
(parse error) or ``-32600`` (invalid request), naming the request's id where it can be read
and null otherwise (:mod:`titan.mcp.jsonrpc`, which the master's ``/mcp`` shares).

So stdin reaches the SDK through :class:`Lines`: the lines the SDK serves go on to it, and for
each of the others :func:`refusal` is sent on the SDK's own write stream, which its one writer
puts on stdout a whole line at a time. The SDK still owns stdout (it points fd 1 at stderr
while it serves, so stray output cannot corrupt the protocol); stdin is read in place, fd 0
left as it is (no tool starts a process that could read it). Not answered, as before: a blank
line (no message at all) and a malformed *response* (a line with ``result`` or ``error`` and
no ``method``): JSON-RPC never answers a response.
"""

from __future__ import annotations

import io
import sys
from collections.abc import AsyncIterable, AsyncIterator
from contextlib import asynccontextmanager, suppress
from typing import Any, cast

import anyio
from mcp.server.stdio import stdio_server
from mcp.shared.message import SessionMessage

from titan.mcp.jsonrpc import refusal


class Lines:
    """Stdin's lines for the SDK's reader, less those :func:`refusal` answers: their errors
    go on the stream :meth:`answer_on` gives (a clone of the SDK's write stream, closed when
    stdin ends, so the SDK's writer puts out the last of them before it stops)."""

    def __init__(self, source: AsyncIterable[str]) -> None:
        self._source = source
        self._out: Any = None
        self._ready = anyio.Event()

    def answer_on(self, out: Any) -> None:
        self._out = out
        self._ready.set()

    def __aiter__(self) -> AsyncIterator[str]:
        return self._lines()

    async def _lines(self) -> AsyncIterator[str]:
        try:
            async for line in self._source:
                error = refusal(line)
                if error is None:
                    yield line
                    continue
                await self._ready.wait()  # the SDK hands its write stream out once started
                await self._out.send(SessionMessage(error))
        finally:
            if self._out is not None:
                self._out.close()


class _Stdin(io.TextIOWrapper):
    """Stdin as UTF-8 text (bytes that are not become U+FFFD, as the SDK reads them), whose
    closing never closes ``sys.stdin``'s buffer."""

    def close(self) -> None:
        with suppress(ValueError):
            self.detach()


@asynccontextmanager
async def transport() -> AsyncIterator[tuple[Any, Any]]:
    """The SDK's stdio streams (read, write), stdin read through :class:`Lines`."""
    lines = Lines(anyio.wrap_file(_Stdin(sys.stdin.buffer, encoding="utf-8", errors="replace")))
    async with stdio_server(stdin=cast(Any, lines)) as (read_stream, write_stream):
        lines.answer_on(write_stream.clone())
        yield read_stream, write_stream
