"""The MCP server (docs/mcp.md), driven by the official SDK's own client over both transports:
stdio (``titan mcp`` as the client's child process) and streamable HTTP (the master's /mcp
with a bearer token), against one real cluster."""

from __future__ import annotations

import asyncio
import json
import sys
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import httpx2
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from tests.conftest import free_port
from tests.integration.harness import Cluster, shared_cluster

cluster = shared_cluster()

TOOLS = {"submit_dag", "submit_job", "get_dag_status", "get_job_status", "wait_dag",
         "wait_job", "fetch_logs", "store_get", "store_put", "list_runs", "get_run_actions",
         "start_replay", "approve", "reject", "cancel_job", "cancel_dag"}
HELLO = "import sys\nprint('hello from', sys.argv[1])\nprint('line two')\n"


@asynccontextmanager
async def over_http(cluster: Cluster, token: str, mode: str = "auto") -> AsyncIterator[Client]:
    """``mode``: "auto" speaks the newest protocol the server offers, "legacy" the
    initialize handshake of the clients shipped before it (Claude Desktop's, today's IDEs')."""
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx2.AsyncClient(headers=headers, timeout=90) as http, \
            Client(streamable_http_client(f"{cluster.url}/mcp", http_client=http),
                   mode=mode) as client:  # type: ignore[arg-type]
        yield client


@asynccontextmanager
async def over_stdio(cluster: Cluster, token: str) -> AsyncIterator[Client]:
    server = StdioServerParameters(command=sys.executable, cwd=str(cluster.root),
                                   args=["-m", "titan", "mcp", "--master", cluster.url,
                                         "--token", token], env=dict(cluster.env))
    async with Client(server, mode="legacy") as client:  # as Claude Desktop starts it
        yield client


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(scenario(), timeout=120))


async def call(client: Client, tool: str, **arguments: Any) -> dict[str, Any]:
    """A tool's structured result; a refusal fails the test with its text."""
    result = await client.call_tool(tool, arguments)
    assert not result.is_error, f"{tool}: {result.content}"
    assert result.structured_content is not None
    return result.structured_content


async def refused(client: Client, tool: str, **arguments: Any) -> str:
    result = await client.call_tool(tool, arguments)
    assert result.is_error, f"{tool} was allowed: {result.structured_content}"
    return " ".join(getattr(part, "text", "") for part in result.content)


async def submit_wait_and_read(client: Client, dag: str) -> None:
    """What an agent does with a token that may submit: a DAG with an inline script, waited
    for, its logs read, the store written and read, the runs listed."""
    assert {tool.name for tool in (await client.list_tools()).tools} >= TOOLS
    jobs = [{"job_id": "hello", "script": HELLO, "args": [dag]},
            {"job_id": "after", "script": "print('after')\n", "parents": ["hello"]}]
    submitted = await call(client, "submit_dag", name=dag, jobs=jobs)
    assert submitted["ref"] == f"{dag}#1" and len(submitted["scripts"]) == 2
    # The submission's reply carries no jobs: none shown, rather than "jobs": [] beside
    # job_count 2 (a QA pass); get_dag_status and wait_dag list them.
    assert submitted["job_count"] == 2 and "jobs" not in submitted, submitted
    done = await call(client, "wait_dag", ref=dag, timeout_seconds=45)
    assert done["finished"] and done["status"] == "COMPLETED", done
    assert {job["job_id"]: job["state"] for job in done["jobs"]} == {
        "hello": "COMPLETED", "after": "COMPLETED"}
    logs = await call(client, "fetch_logs", ref=f"{dag}/hello")
    assert logs["text"] == f"hello from {dag}\nline two" and logs["omitted"] == 0
    page = await call(client, "fetch_logs", ref=f"{dag}/hello", after=0, max_lines=1)
    assert page["text"] == f"hello from {dag}" and not page["done"]
    rest = await call(client, "fetch_logs", ref=f"{dag}/hello", after=page["next"])
    assert rest["text"] == "line two" and rest["done"]
    # The same script again is named by its sha256: nothing to upload.
    again = await call(client, "submit_job", job={
        "job_id": "again", "script_sha256": submitted["scripts"]["hello"], "args": ["x"],
        "filename": "hello.py"})
    assert (await call(client, "wait_job", ref=f"{again['ref']}/again"))["state"] == "COMPLETED"

    await call(client, "store_put", key=f"{dag}:note", value="from an agent")
    assert (await call(client, "store_get", key=f"{dag}:note"))["value"] == "from an agent"
    assert (await call(client, "store_get", key=f"{dag}:missing"))["value"] is None
    assert "runs" in await call(client, "list_runs", limit=5)


def test_over_stdio_an_agent_submits_waits_and_reads(cluster: Cluster) -> None:
    started = time.monotonic()

    async def scenario() -> None:
        async with over_stdio(cluster, cluster.admin_token) as client:
            await submit_wait_and_read(client, "mcp-stdio")
            # Errors come back as the API's, with their code.
            text = await refused(client, "get_job_status", ref="mcp-stdio/nope")
            assert text.startswith("not_found: no job 'mcp-stdio/nope'"), text
            # Arguments the schema refuses, and a tool that does not exist, are said the same
            # way: a code, then what to fix (not the SDK's "Error executing tool" and
            # pydantic's multi-line report).
            text = await refused(client, "wait_dag", ref="mcp-stdio", timeout_seconds="soon")
            assert text.startswith("invalid_request: wait_dag: timeout_seconds: "), text
            assert "\n" not in text, text
            text = await refused(client, "get_job_status")
            assert text.startswith("invalid_request: get_job_status: ref: Field required"), text
            text = await refused(client, "wait_dag", ref="mcp-stdio", bogus=1)
            assert text.startswith("invalid_request: wait_dag: unknown argument 'bogus' "
                                   "(it takes: "), text
            text = await refused(client, "submit_jobs", job={})
            assert text.startswith("not_found: no tool 'submit_jobs' (tools: "), text
            # store_put says its size in bytes, as store_get does (it said characters:
            # 200,000 for 400,000 bytes).
            wide = "é" * 200_000
            put = await call(client, "store_put", key="mcp-stdio:wide", value=wide)
            got = await call(client, "store_get", key="mcp-stdio:wide")
            assert put["stored"] == got["size"] == 400_000 and got["truncated"]

    run(scenario)
    print(f"stdio scenario: {time.monotonic() - started:.1f}s")


def test_a_master_that_cannot_be_reached_is_an_error_with_its_code(cluster: Cluster) -> None:
    # Every error starts with its code (docs/mcp.md); a connection failure had none.
    gone = f"http://127.0.0.1:{free_port()}"

    async def scenario() -> None:
        server = StdioServerParameters(
            command=sys.executable, cwd=str(cluster.root),
            args=["-m", "titan", "mcp", "--master", gone, "--token", cluster.admin_token],
            env=dict(cluster.env))
        async with Client(server, mode="legacy") as client:
            text = await refused(client, "store_get", key="k")
            assert text.startswith("connection_failed: ") and gone in text, text

    run(scenario)


def test_over_http_an_operator_submits_and_approves_a_gate(cluster: Cluster) -> None:
    operator = cluster.client().create_token("operator", "mcp-operator")["token"]

    async def scenario() -> None:
        async with over_http(cluster, operator) as client:
            await submit_wait_and_read(client, "mcp-http")
            gated = [{"job_id": "build", "script": "print('built')\n",
                      "hitl_message": "Ship it?"},
                     {"job_id": "ship", "script": "print('shipped')\n", "parents": ["build"]}]
            await call(client, "submit_dag", name="mcp-gate", jobs=gated)
            gate = "mcp-gate/build.approval"
            for _ in range(200):
                state = (await call(client, "get_job_status", ref=gate))["state"]
                if state == "WAITING_APPROVAL":
                    break
                await asyncio.sleep(0.1)
            assert state == "WAITING_APPROVAL"
            decided = await call(client, "approve", gate=gate, comment="looks good")
            assert decided["decided_by"] == "mcp-operator"
            done = await call(client, "wait_dag", ref="mcp-gate", timeout_seconds=45)
            assert done["status"] == "COMPLETED", done

    run(scenario)


def test_a_viewer_reads_but_cannot_submit_write_or_decide(cluster: Cluster) -> None:
    admin = cluster.client()
    viewer = admin.create_token("viewer", "mcp-viewer")["token"]
    admin.store_put("mcp-viewer:key", "readable")
    cluster.api("POST", "/runs", {"id": "mcpview-1", "agent_id": "mcpview"})

    async def scenario() -> None:
        async with over_http(cluster, viewer, mode="legacy") as client:
            # Every tool is listed; the API's role check refuses what the role may not do.
            assert {tool.name for tool in (await client.list_tools()).tools} >= TOOLS
            assert (await call(client, "store_get", key="mcp-viewer:key"))["value"] == "readable"
            job = {"job_id": "nope", "script": "print(1)\n"}
            for tool, arguments in (("submit_job", {"job": job}),
                                    ("store_put", {"key": "mcp-viewer:key", "value": "x"}),
                                    ("approve", {"gate": "mcp-gate/build.approval"}),
                                    ("start_replay", {"run_id": "mcpview-1"})):
                text = await refused(client, tool, **arguments)
                assert text.startswith("forbidden: a viewer token may not"), (tool, text)
            # A reference too long for a URL: the caller's to fix, said as such (it was a bare
            # "Error executing tool store_get" and a traceback in the master's log).
            # A NUL, which no URL may carry, the same (it read as an impostor master).
            for tool, arguments in (("store_get", {"key": "k" * 70_000}),
                                    ("get_dag_status", {"ref": "d" * 70_000}),
                                    ("store_get", {"key": "nul\x00k"}),
                                    ("get_job_status", {"ref": "a\x00b"}),
                                    ("fetch_logs", {"ref": "a\x00b"})):
                text = await refused(client, tool, **arguments)
                assert text.startswith("invalid_request: "), (tool, text[:200])
        assert admin.store_get("mcp-viewer:key") == "readable"

    run(scenario)


def test_resources_and_run_actions(cluster: Cluster, tmp_path: Path) -> None:
    admin = cluster.client()
    run_id = "RESEARCH_mcp0a1"
    # The agent a stage submission derives from the id (RESEARCH_1a9ac3 -> RESEARCH).
    cluster.api("POST", "/runs", {"id": run_id, "agent_id": "RESEARCH"})
    action = {"id": "a1", "actor": "planner", "channel": "tool", "name": "search",
              "inputs": {"q": "mcp"}, "outputs": {"hits": 3}, "started_at": time.time()}
    cluster.api("POST", f"/runs/{run_id}/actions", {"actions": [action]})
    report = tmp_path / "report.md"
    report.write_text("# Report\n\nMCP works.\n")
    admin.publish_artifact(f"research:{run_id}:report", report)
    (tmp_path / "data.bin").write_bytes(b"\x00\xff binary")
    admin.publish_artifact("mcp/data", tmp_path / "data.bin")

    async def scenario() -> None:
        async with over_http(cluster, admin.endpoint.token or "") as client:
            actions = await call(client, "get_run_actions", run_id=run_id, limit=10)
            assert [a["name"] for a in actions["actions"]] == ["search"]
            assert actions["next"] == actions["actions"][0]["seq"]
            # The research agent's start: no recorded code to replay yet, as the API says.
            text = await refused(client, "start_replay", run_id=run_id)
            assert "replay_not_available: " in text, text

            templates = {t.uri_template for t in
                         (await client.list_resource_templates()).resource_templates}
            assert templates == {"titan://runs/{run_id}", "titan://runs/{run_id}/report",
                                 "titan://artifacts/{+key}"}
            got = (await client.read_resource(f"titan://runs/{run_id}")).contents[0]
            assert json.loads(getattr(got, "text", ""))["agent_id"] == "RESEARCH"
            got = (await client.read_resource(f"titan://runs/{run_id}/report")).contents[0]
            assert getattr(got, "text", "") == "# Report\n\nMCP works.\n"
            got = (await client.read_resource("titan://artifacts/mcp/data")).contents[0]
            assert getattr(got, "blob", None)  # bytes travel base64-encoded
            try:
                await client.read_resource("titan://artifacts/mcp/absent")
            except MCPError as exc:
                assert "mcp/absent" in str(exc)
            else:
                raise AssertionError("an absent artifact was read")

    run(scenario)


def test_without_a_good_token_nothing_is_served(cluster: Cluster) -> None:
    hello = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    headers = {"Accept": "application/json, text/event-stream"}
    worker = (cluster.data / "worker.token").read_text().strip()
    with httpx.Client(base_url=cluster.url, timeout=30) as http:
        for auth in ({}, {"Authorization": "Bearer tt_not-a-token"}):
            reply = http.post("/mcp", json=hello, headers={**headers, **auth})
            assert reply.status_code == 401, reply.text
            assert reply.headers["WWW-Authenticate"] == "Bearer"
            assert reply.json()["error"]["code"] == "unauthorized"
        reply = http.post("/mcp", json=hello,
                          headers={**headers, "Authorization": f"Bearer {worker}"})
        assert reply.status_code == 403 and reply.json()["error"]["code"] == "forbidden"
        # Stateless: no event stream to open, no session to end.
        admin = {"Authorization": f"Bearer {cluster.admin_token}"}
        assert http.get("/mcp", headers={**headers, **admin}).status_code == 405
        assert http.delete("/mcp", headers=admin).status_code == 405


def test_over_http_every_malformed_request_gets_a_json_rpc_answer(cluster: Cluster) -> None:
    # An id of null or 1.5 was taken for a notification: 202, no body, and the client waited
    # for its timeout; a batch or "jsonrpc": "1.0" was -32602 with pydantic's multi-line
    # report and a null id. Each is now JSON-RPC's -32700/-32600, as over stdio.
    headers = {"Accept": "application/json, text/event-stream",
               "Content-Type": "application/json",
               "Authorization": f"Bearer {cluster.admin_token}"}
    cases: list[tuple[str, Any, int, str]] = [
        ("this is not json", None, -32700, "Parse error"),
        (json.dumps([{"jsonrpc": "2.0", "id": 2, "method": "ping"}]), None, -32600,
         "batches are not supported"),
        (json.dumps({"jsonrpc": "1.0", "id": 5, "method": "ping"}), 5, -32600,
         '"jsonrpc" must be "2.0"'),
        (json.dumps({"jsonrpc": "2.0", "id": "six", "method": "ping", "params": [1]}), "six",
         -32600, '"params" must be an object'),
    ]
    for ident in (None, 1.5, {"a": 1}):
        cases.append((json.dumps({"jsonrpc": "2.0", "id": ident, "method": "ping"}), None,
                       -32600, "an id is a string or an integer"))
    # A key named twice: the SDK took the last ({"method": "ping", "method": "tools/list"}
    # ran tools/list), as the API's bodies refuse it, neither is taken (escapes included).
    cases += [('{"jsonrpc": "2.0", "id": 3, "method": "ping", "method": "tools/list"}', 3,
               -32600, "the key 'method' appears more than once"),
              ('{"jsonrpc": "2.0", "id": 3, "id": 4, "method": "ping"}', None, -32600,
               "the key 'id' appears more than once"),
              ('{"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "x",'
               ' "\\u006eame": "y"}}', 7, -32600, "the key 'params.name' appears")]
    # A lone UTF-16 surrogate (an unpaired \\ud800-\\udfff escape), which no reply can
    # encode: in the id it was a 500 (the refusal echoing it could not be written), elsewhere
    # "not a JSON-RPC 2.0 request" without saying where. Refused as the API's bodies are,
    # naming where; an id holding one is not repeated.
    cases += [('{"jsonrpc": "2.0", "id": "\\ud800", "method": "ping"}', None, -32600,
               "id: a string holds a lone UTF-16 surrogate"),
              ('{"jsonrpc": "2.0", "id": 10, "method": "tools/call", "params": {"name": '
               '"store_put", "arguments": {"key": "k", "value": "a\\udc00"}}}', 10, -32600,
               "params.arguments.value: a string holds a lone UTF-16 surrogate")]
    with httpx.Client(base_url=cluster.url, timeout=30) as http:
        for body, ident, code, said in cases:
            reply = http.post("/mcp", content=body, headers=headers)
            assert reply.status_code == 400, (body, reply.status_code, reply.text)
            got = reply.json()
            assert got["jsonrpc"] == "2.0" and got["id"] == ident, (body, got)
            assert got["error"]["code"] == code and said in got["error"]["message"], (body, got)
        # What the SDK serves still reaches it: a request, a notification, a response.
        ping = http.post("/mcp", json={"jsonrpc": "2.0", "id": 8, "method": "ping"},
                         headers={**headers, "MCP-Protocol-Version": "2025-06-18"})
        assert ping.status_code == 200 and ping.json() == {"jsonrpc": "2.0", "id": 8,
                                                           "result": {}}, ping.text
        for quiet in ({"jsonrpc": "2.0", "method": "notifications/initialized"},
                      {"jsonrpc": "2.0", "id": 9, "result": {}}):
            assert http.post("/mcp", json=quiet, headers=headers).status_code == 202


def test_over_http_a_protocol_version_not_served_is_a_400_naming_those_served(
        cluster: Cluster) -> None:
    # Any MCP-Protocol-Version the SDK does not serve went to its newest era's checks:
    # -32602 "params._meta must be an object ...", which says nothing of the version (a QA
    # pass). The protocol asks for a 400 saying it is unsupported.
    headers = {"Accept": "application/json, text/event-stream",
               "Authorization": f"Bearer {cluster.admin_token}"}
    ping = {"jsonrpc": "2.0", "id": 3, "method": "ping"}
    with httpx.Client(base_url=cluster.url, timeout=30) as http:
        for version in ("1999-01-01", "", "9" * 10_000, "2025-06-18x"):
            reply = http.post("/mcp", json=ping,
                              headers={**headers, "MCP-Protocol-Version": version})
            assert reply.status_code == 400, (version[:20], reply.text[:300])
            got = reply.json()
            assert got["id"] == 3 and got["error"]["code"] == -32022, got
            said = got["error"]["message"]
            assert said.startswith("Unsupported protocol version: MCP-Protocol-Version "), said
            assert "2025-06-18, 2025-11-25, 2026-07-28" in said and len(said) < 400, said
            assert got["error"]["data"]["supported"][-1] == "2026-07-28"
        # What it serves, or no header at all (2025-03-26, as the protocol has it), is served.
        for version in ("2025-06-18", "2025-03-26", None):
            extra = {} if version is None else {"MCP-Protocol-Version": version}
            reply = http.post("/mcp", json=ping, headers={**headers, **extra})
            assert reply.status_code == 200 and reply.json()["result"] == {}, reply.text




def test_one_callers_waits_do_not_hold_up_another_callers_calls(cluster: Cluster) -> None:
    # The tool calls of /mcp ran on one pool of 16 threads for every caller: a viewer's 16
    # waits made an admin's store_get wait until they ended (19 s of a 20 s wait, a QA pass).
    viewer = cluster.client().create_token("viewer", "mcp-waiter")["token"]

    def tool(token: str, name: str, **arguments: Any) -> dict[str, Any]:
        reply = httpx.post(f"{cluster.url}/mcp", timeout=90, json={
            "jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": {"name": name, "arguments": arguments}}, headers={
            "Accept": "application/json, text/event-stream",
            "MCP-Protocol-Version": "2025-06-18", "Authorization": f"Bearer {token}"})
        result: dict[str, Any] = reply.json()["result"]
        assert not result.get("isError"), result
        return result["structuredContent"]

    tool(cluster.admin_token, "submit_job", job={
        "job_id": "mcp-sleeper", "script": "import time\ntime.sleep(60)\n"})
    waits = [threading.Thread(target=tool, args=(viewer, "wait_dag"),
                              kwargs={"ref": "mcp-sleeper", "timeout_seconds": 15})
             for _ in range(16)]
    for wait in waits:
        wait.start()
    try:
        time.sleep(2)  # every wait under way
        started = time.monotonic()
        assert tool(cluster.admin_token, "store_get", key="mcp-busy")["value"] is None
        assert time.monotonic() - started < 5
    finally:
        for wait in waits:
            wait.join()
        cluster.client().cancel("mcp-sleeper/mcp-sleeper")


def test_a_job_with_huge_arguments_is_shown_cut(cluster: Cluster) -> None:
    # get_job_status and wait_job sent a job whole: 1,000 args of 1,000 characters were a
    # 1 MB reply, all of it in the agent's context window (a QA pass).
    job = {"job_id": "mcp-wide", "script": "print('ok')\n", "args": ["a" * 1000] * 1000,
           "hitl_message": "q" * 5000}

    async def scenario() -> None:
        async with over_http(cluster, cluster.admin_token) as client:
            await call(client, "submit_job", job=job)
            for tool in ("get_job_status", "wait_job"):
                got = await call(client, tool, ref="mcp-wide/mcp-wide")
                assert len(json.dumps(got)) < 60_000, (tool, len(json.dumps(got)))
                assert got["args"] == ["a" * 1000] * 50 and got["args_omitted"] == 950
                assert got["hitl_message"] == "q" * 2000
                assert set(got["truncated"]) == {"args", "hitl_message"}, got["truncated"]
            dag = await call(client, "get_dag_status", ref="mcp-wide")
            assert dag["jobs"][0]["hitl_message"] == "q" * 2000

    run(scenario)


def test_a_body_not_sent_as_json_is_the_api_s_415(cluster: Cluster) -> None:
    # The SDK answered a plain-text 400 "Invalid Content-Type header", no error body.
    hello = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
    headers = {"Accept": "application/json, text/event-stream",
               "Authorization": f"Bearer {cluster.admin_token}"}
    with httpx.Client(base_url=cluster.url, timeout=30) as http:
        for content_type in ("text/plain", "application/x-www-form-urlencoded"):
            reply = http.post("/mcp", content=hello,
                              headers={**headers, "Content-Type": content_type})
            assert reply.status_code == 415, reply.text
            assert reply.json()["error"]["code"] == "unsupported_media_type"
        reply = http.post("/mcp", content=hello,
                          headers={**headers, "Content-Type": "application/json"})
        assert reply.status_code == 200 and reply.json()["result"]["tools"]
