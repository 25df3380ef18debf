"""A tool call of ``titan mcp`` answers in time while its master is down: MCP clients give up
on a call after about a minute, and with the SDK's 60 s restart grace every call blocked that
long, so the documented ``connection_failed`` never reached the agent (a QA pass). The bound
(``TITAN_MCP_RESTART_GRACE``) is set small here; its default is checked in
tests/unit/test_mcp.py."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
from mcp import Client, StdioServerParameters

from tests.integration.harness import Cluster


@pytest.fixture
def cl(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster(tmp_path_factory.mktemp("mcp-outage"))
    try:
        yield c.start_master()
    finally:
        c.stop()


async def answer(client: Client, tool: str, **arguments: Any) -> tuple[str, bool, float]:
    """The call's text, whether it is an error, and the seconds it took."""
    started = time.monotonic()
    result = await client.call_tool(tool, arguments)
    took = time.monotonic() - started
    return " ".join(getattr(part, "text", "") for part in result.content), result.is_error, took


def test_a_tool_call_answers_within_the_mcp_grace_while_the_master_is_down(
        cl: Cluster) -> None:
    # The SDK's grace as shipped, so that only the MCP bound can end the calls early.
    env = {**cl.env, "TITAN_MASTER_RESTART_GRACE": "60", "TITAN_MCP_RESTART_GRACE": "2"}
    server = StdioServerParameters(command=sys.executable, cwd=str(cl.root), env=env,
                                   args=["-m", "titan", "mcp", "--master", cl.url,
                                         "--token", cl.admin_token])

    async def scenario() -> None:
        async with Client(server, mode="legacy") as client:
            text, error, _ = await answer(client, "store_put", key="k", value="v")
            assert not error, text  # reached: from now on an outage is a restart to ride out
            cl.kill_master()
            text, error, took = await answer(client, "store_get", key="k")
            assert error and text.startswith("connection_failed: "), text
            assert "within 2s" in text, text
            assert 1.5 < took < 8, took  # was 60 s: TITAN_MASTER_RESTART_GRACE
            text, error, took = await answer(client, "submit_job", job={
                "job_id": "whiledown", "script": "print(1)\n"})
            assert error and text.startswith("connection_failed: ") and took < 8, (text, took)
            # A wait longer than the grace rides the outage out until its own timeout.
            text, error, took = await answer(client, "wait_job", ref="someday",
                                             timeout_seconds=4)
            assert error and text.startswith("connection_failed: "), text
            assert 3.5 < took < 10, took

    asyncio.run(asyncio.wait_for(scenario(), timeout=90))
