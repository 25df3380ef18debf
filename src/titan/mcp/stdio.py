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

A client that writes its requests and closes stdin (``printf ... | titan mcp``, or one that
ends the session while calls are in flight) is owed every answer. The SDK takes the end of
stdin for the end of the connection and cancels the calls still running, whose answers were
then lost: a store_get and a wait_dag piped in came back as nothing but the initialize answer
(a QA pass). So the end of stdin reaches the SDK only once every request it was given has
been answered (:class:`Owed`, which watches the answers on their way to stdout), or
cancelled by the client (never answered, as the protocol has it), or after ``drain`` seconds.
"""

from __future__ import annotations

import io
import json
import sys
from collections import Counter
from collections.abc import AsyncIterable, AsyncIterator
from contextlib import asynccontextmanager, suppress
from typing import Any, cast

import anyio
from mcp import types
from mcp.server.stdio import stdio_server
from mcp.shared.dispatcher import as_request_id, coerce_request_id
from mcp.shared.message import SessionMessage

from titan.mcp.jsonrpc import refusal


class Owed:
    """The requests handed to the SDK and not yet answered, by id (as the SDK correlates
    them: ``"7"`` and ``7`` are one id)."""

    def __init__(self) -> None:
        self._ids: Counter[str | int] = Counter()
        self._settled = anyio.Event()
        self._settled.set()

    def received(self, line: str) -> None:
        """Note a line the SDK is given: a request is owed an answer; a cancellation of one
        settles it (the SDK never answers a request its client cancelled)."""
        with suppress(ValueError):
            message = json.loads(line)
            if not isinstance(message, dict) or not isinstance(message.get("method"), str):
                return
            if "id" in message:
                ident = as_request_id(message["id"])
                if ident is not None:
                    self._ids[coerce_request_id(ident)] += 1
                    if self._settled.is_set():
                        self._settled = anyio.Event()
            elif message["method"] == "notifications/cancelled":
                params = message.get("params")
                self._settle(as_request_id(params.get("requestId"))
                             if isinstance(params, dict) else None)

    def answered(self, message: SessionMessage) -> None:
        """Note a message on its way to stdout: a response or error settles its request."""
        if isinstance(message.message, types.JSONRPCResponse | types.JSONRPCError):
            self._settle(message.message.id)

    def _settle(self, ident: str | int | None) -> None:
        if ident is None:
            return
        key = coerce_request_id(ident)
        if self._ids[key] > 1:
            self._ids[key] -= 1
        else:
            self._ids.pop(key, None)
        if not self._ids:
            self._settled.set()

    async def settled(self) -> None:
        """Return once nothing is owed."""
        while self._ids:
            await self._settled.wait()


class Lines:
    """Stdin's lines for the SDK's reader, less those :func:`refusal` answers: their errors
    go on the stream :meth:`answer_on` gives (a clone of the SDK's write stream, closed when
    stdin ends, so the SDK's writer puts out the last of them before it stops). Stdin's end
    is passed on once ``owed`` is settled, or after ``drain`` seconds."""

    def __init__(self, source: AsyncIterable[str], owed: Owed, drain: float) -> None:
        self._source = source
        self._owed = owed
        self._drain = drain
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
                    self._owed.received(line)
                    yield line
                    continue
                await self._ready.wait()  # the SDK hands its write stream out once started
                await self._out.send(SessionMessage(error))
            with anyio.move_on_after(self._drain):
                await self._owed.settled()
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
async def transport(drain: float) -> AsyncIterator[tuple[Any, Any]]:
    """The SDK's stdio streams (read, write), stdin read through :class:`Lines`, whose end
    waits up to ``drain`` seconds for the answers still owed."""
    owed = Owed()
    lines = Lines(anyio.wrap_file(_Stdin(sys.stdin.buffer, encoding="utf-8", errors="replace")),
                  owed, drain)
    async with stdio_server(stdin=cast(Any, lines)) as (read_stream, write_stream):
        lines.answer_on(write_stream.clone())
        # The SDK writes to ``send``; each message is noted on its way to its writer.
        send, receive = anyio.create_memory_object_stream[SessionMessage](0)

        async def relay() -> None:
            async with receive, write_stream:
                async for message in receive:
                    owed.answered(message)
                    await write_stream.send(message)

        async with anyio.create_task_group() as group:
            group.start_soon(relay)
            yield read_stream, send
