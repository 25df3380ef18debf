"""``titan mcp``: Titan's MCP server on stdin and stdout, for an MCP client that starts it.

An MCP client (Claude Desktop, an IDE, an agent framework) runs ``titan mcp`` as a child
process and speaks the protocol over its pipes; the tools (:mod:`titan.mcp.tools`) call the
master this command finds like every other ``titan`` command, with the token it resolves
(``--token``, ``TITAN_TOKEN``, the data dir or the user config). The token's role decides
what the tools may do. A tool call answers within 50 s, retries of a master that went away
included (``TITAN_MCP_RESTART_GRACE``, :mod:`titan.mcp.refusals`). Stdout carries the protocol alone: anything else this process says goes
to stderr, which MCP clients keep as the server's log.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from titan.client import TitanClient
from titan.errors import ConfigError


def run(args: argparse.Namespace, client: TitanClient) -> int:
    try:
        import anyio

        from titan.mcp.refusals import restart_grace
        from titan.mcp.tools import build_server
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] != "mcp":
            raise
        raise ConfigError("titan mcp needs the MCP SDK: pip install 'titan-agents[mcp]'") from None

    grace = restart_grace()  # a bad setting is said before the client starts waiting on us
    # Warnings and worse, on stderr: the SDK would log every tool call and the client every
    # request there at INFO (it configures logging only where nothing has yet).
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")

    @contextmanager
    def the_client(_request: Any) -> Iterator[TitanClient]:
        yield client  # one for the process (thread-safe): stdio has one caller

    with client:
        anyio.run(build_server(the_client, grace=grace).run_stdio_async)
    return 0
