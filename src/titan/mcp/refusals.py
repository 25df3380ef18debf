"""How the MCP server says what went wrong, and where and for how long each call runs.

Titan's refusals keep the API's code in front (``not_found: no job 'x/y'``), so an agent can
tell a typo from a refusal; the SDK's own refusals (arguments that do not fit a tool's schema,
an unknown tool) are worded the same way here. Each call runs on a worker thread with the
client for the request it came in on, and answers within :data:`MAX_CALL_SECONDS`: MCP
clients give up on a call after about a minute, so a master that cannot be reached is retried
for ``TITAN_MCP_RESTART_GRACE`` seconds (a wait: until its timeout, if that is later), not for
the SDK's ``TITAN_MASTER_RESTART_GRACE`` (60 s, after which no ``connection_failed`` reached
the agent).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from typing import Any, TypeVar

import anyio
import httpx
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import (
    ResourceError,
    ResourceNotFoundError,
    ToolError,
    UnexpectedToolError,
)
from pydantic import ValidationError

from titan.client import TitanClient
from titan.errors import APIError, NotFound, TitanError, ValidationFailed
from titan.mcp import stdio
from titan.retry import seconds_setting

#: Given the HTTP request a call came in on (``None`` on stdio), the client to make it with.
Clients = Callable[[Any], AbstractContextManager[TitanClient]]
T = TypeVar("T")

#: Tool calls one caller (a token at ``/mcp``; the one client of ``titan mcp``) runs at once,
#: each holding a thread while its API calls are in flight. Per caller: a viewer's sixteen
#: waits held the master's one pool and every other caller's call queued behind them.
MAX_CALLS = 16
#: The longest a tool call may take, its waits and retries included: MCP clients give up on a
#: call after about a minute, and an answer sent later reaches nobody.
MAX_CALL_SECONDS = 50.0
#: How long ``titan mcp`` waits, once its stdin has ended, for the answers it still owes:
#: every call answers within :data:`MAX_CALL_SECONDS`, so this only bounds a stuck one.
DRAIN_SECONDS = MAX_CALL_SECONDS + 10
GRACE_ENV = "TITAN_MCP_RESTART_GRACE"
#: Seconds a tool call retries a master it cannot reach (one restarting takes a few).
DEFAULT_GRACE = 30.0


def restart_grace(env: Mapping[str, str] | None = None) -> float:
    """``TITAN_MCP_RESTART_GRACE``: seconds, from 0 to :data:`MAX_CALL_SECONDS`."""
    return seconds_setting(GRACE_ENV, DEFAULT_GRACE, env, most=MAX_CALL_SECONDS,
                           why=" (MCP clients give up on a call after about a minute)")


class TitanServer(MCPServer):
    """The SDK's server, with its own refusals worded as Titan's: arguments that do not fit a
    tool's schema are ``invalid_request: field: what is wrong`` (the SDK says "Error executing
    tool" and pydantic's multi-line report), an unknown tool ``not_found``."""

    async def call_tool(self, name: str, arguments: dict[str, Any],
                        context: Context[Any, Any] | None = None) -> Any:
        tool = self._tool_manager.get_tool(name)
        if tool is not None and isinstance(arguments, dict):
            # The SDK ignores an argument the tool does not take: a misspelt
            # "timeout_seconds" would wait the default without a word.
            takes = set((tool.parameters or {}).get("properties") or {})
            unknown = sorted(set(arguments) - takes)
            if unknown:
                raise ToolError(f"invalid_request: {name}: unknown argument {unknown[0]!r} "
                                f"(it takes: {', '.join(sorted(takes)) or 'none'})")
        try:
            return await super().call_tool(name, arguments, context)
        except UnexpectedToolError:
            raise
        except ToolError as exc:
            cause = exc.__cause__
            if isinstance(cause, ToolError):
                # Titan's refusal (tool_error), which the SDK prefixed "Error executing tool
                # <name>: ": the code goes in front, as for every other refusal.
                raise ToolError(str(cause)) from cause.__cause__
            if isinstance(cause, ValidationError):
                problems = "; ".join(
                    f"{'.'.join(str(part) for part in err['loc']) or 'arguments'}: {err['msg']}"
                    for err in cause.errors())
                raise ToolError(f"invalid_request: {name}: {problems}") from cause
            if cause is None and tool is None:
                tools = ", ".join(sorted(t.name for t in self._tool_manager.list_tools()))
                raise ToolError(f"not_found: no tool {name!r} (tools: {tools})") from None
            raise

    async def run_stdio_async(self) -> None:
        """The SDK's stdio server, each line JSON-RPC answers answered and every request
        answered before the end of stdin ends it (:mod:`.stdio`)."""
        async with stdio.transport(drain=DRAIN_SECONDS) as (read_stream, write_stream):
            server = self._lowlevel_server
            await server.run(read_stream, write_stream, server.create_initialization_options())


class Calls:
    """Runs a call with the client for the request it came in on, on a worker thread (at most
    :data:`MAX_CALLS` at once for each caller, so no caller's waits hold up another's), and
    turns a Titan error into what MCP reports (``failure``). A master that cannot be reached
    is retried for ``grace`` seconds from the call's start, or until the end of its ``wait``
    if that is later."""

    def __init__(self, clients: Clients, failure: Callable[[TitanError], Exception],
                 grace: float = DEFAULT_GRACE) -> None:
        self._clients = clients
        self._failure = failure
        self._grace = grace
        self._limiters: dict[str | None, anyio.CapacityLimiter] = {}

    async def __call__(self, ctx: Context, call: Callable[[TitanClient], T], *,
                       wait: float = 0.0) -> T:
        request = ctx.request_context.request
        caller = _caller(request)
        limiter = self._limiters.get(caller)
        if limiter is None:  # made on the loop that serves: anyio needs one to exist
            limiter = self._limiters[caller] = anyio.CapacityLimiter(MAX_CALLS)

        def run() -> T:
            # The bound starts here, on the thread, after any queueing for the limiter.
            with self._clients(request) as client, \
                    client.retrying_within(max(self._grace, wait)):
                return call(client)

        try:
            return await anyio.to_thread.run_sync(run, limiter=limiter)
        except TitanError as exc:
            raise self._failure(exc) from None
        except httpx.InvalidURL as exc:
            # A reference or key too long for a URL (httpx refuses it before sending): the
            # caller's to shorten, not a crash ("Error executing tool" and a traceback).
            raise self._failure(ValidationFailed(
                f"an argument is too long or malformed to send ({exc})")) from None
        finally:
            stats = limiter.statistics()
            if not stats.borrowed_tokens and not stats.tasks_waiting:
                self._limiters.pop(caller, None)  # a job's token is used for one job only


def _caller(request: Any) -> str | None:
    """Whose call it is: the bearer credential of the HTTP request it came in on (checked by
    ``/mcp`` before any call runs), None on stdio, where there is one caller."""
    headers = getattr(request, "headers", None)
    return None if headers is None else headers.get("authorization")


def message(exc: TitanError) -> str:
    """``code: what went wrong``: the API's code, else the error's class in snake case
    (``connection_failed: could not reach the master ...``): a master that cannot be reached
    came back without one, unlike every other error (a QA pass)."""
    return f"{code(exc)}: {exc}"


def code(exc: TitanError) -> str:
    if isinstance(exc, APIError):
        return exc.code
    return re.sub(r"(?<!^)(?=[A-Z])", "_", type(exc).__name__).lower()


def tool_error(exc: TitanError) -> Exception:
    return ToolError(message(exc))


def resource_error(exc: TitanError) -> Exception:
    return ResourceNotFoundError(str(exc)) if isinstance(exc, NotFound) else \
        ResourceError(message(exc))
