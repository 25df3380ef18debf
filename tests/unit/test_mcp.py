"""The MCP server's parts that need no cluster: the jobs an agent may send, the door of the
master's /mcp, and the shipped client configurations (tests/integration/test_mcp.py drives the
whole thing with the SDK's own client)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import sys
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.types import ASGIApp, Receive, Scope, Send

from titan.cli import build_parser
from titan.errors import ConfigError, ValidationFailed
from titan.master.api.deps import PRINCIPAL
from titan.master.api.mcp import McpEndpoint
from titan.master.auth.tokens import Principal
from titan.master.config import MasterConfig
from titan.mcp.jobs import JobSpec, dag_request

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "mcp"


def test_an_inline_script_is_sent_as_a_blob_named_by_its_hash() -> None:
    body, scripts = dag_request("etl", [
        JobSpec(job_id="extract", script="print('x')\n", args=["--day", "1"]),
        JobSpec(job_id="load", script_sha256="a" * 64, filename="lib/load.py",
                parents=["extract"], hitl_message="Load it?"),
        JobSpec(job_id="report", archive="proj/main.py", parents=["load"]),
        JobSpec(job_id="sign-off", job_type="APPROVAL", parents=["report"]),
    ])
    assert scripts == [b"print('x')\n"]
    extract, load, report, gate = body["jobs"]
    assert body["name"] == "etl"
    assert (extract["filename"], extract["script_sha256"], extract["args"]) == (
        "extract.py", hashlib.sha256(b"print('x')\n").hexdigest(), ["--day", "1"])
    assert (load["filename"], load["script_sha256"], load["hitl_message"]) == (
        "lib/load.py", "a" * 64, "Load it?")
    assert (report["filename"], report["is_archive"], report["script_sha256"]) == (
        "proj/main.py", True, None)
    assert (gate["job_type"], gate["filename"], gate["script_sha256"]) == ("APPROVAL", "", None)


@pytest.mark.parametrize(("spec", "says"), [
    ({"job_id": "a"}, "exactly one of script, script_sha256 and archive"),
    ({"job_id": "a", "script": "x", "archive": "p/m.py"}, "exactly one of"),
    ({"job_id": "a", "job_type": "APPROVAL", "script": "x"}, "an APPROVAL job runs no script"),
    ({"job_id": "a/b", "script": "x"}, "job_id"),
    ({"job_id": "a", "script": "x", "requirement": " "}, "requirement must be a capability"),
])
def test_a_job_is_refused_with_the_sdks_message(spec: dict[str, str], says: str) -> None:
    with pytest.raises(ValidationFailed, match=says):
        dag_request("d", [JobSpec.model_validate(spec)])


def test_a_dag_needs_jobs_and_a_job_takes_no_path() -> None:
    with pytest.raises(ValidationFailed, match="no jobs"):
        dag_request("d", [])
    with pytest.raises(ValueError, match="path"):
        JobSpec.model_validate({"job_id": "a", "path": "/etc/passwd"})


def post(app: ASGIApp, headers: dict[str, str]) -> httpx.Response:
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as c:
            return await c.post("/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "ping"},
                                headers=headers)

    return asyncio.run(go())


def app_as(role: str) -> ASGIApp:
    """/mcp behind a stand-in for the body guard, which names the bearer's principal."""
    app = Starlette(routes=[McpEndpoint(MasterConfig()).route()])

    async def guarded(scope: Scope, receive: Receive, send: Send) -> None:
        scope[PRINCIPAL] = Principal(role=role)
        await app(scope, receive, send)

    return guarded


def test_the_door_takes_bearer_tokens_of_roles_that_read() -> None:
    reply = post(app_as("viewer"), {"Cookie": "titan_session=abc"})
    assert reply.status_code == 401 and reply.headers["www-authenticate"] == "Bearer"
    assert "Authorization: Bearer" in reply.json()["error"]["message"]
    reply = post(app_as("worker"), {"Authorization": "Bearer tw.x"})
    assert reply.status_code == 403 and reply.json()["error"]["code"] == "forbidden"


def test_without_the_sdk_the_master_says_how_to_get_it(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [m for m in sys.modules if m == "mcp" or m.startswith(("mcp.", "titan.mcp."))]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "mcp", None)  # as if it were not installed
    reply = post(app_as("viewer"), {"Authorization": "Bearer tt_x"})
    assert reply.status_code == 501
    assert reply.json()["error"]["code"] == "mcp_unavailable"
    assert "pip install 'titan-agents[mcp]'" in reply.json()["error"]["message"]


def test_the_shipped_client_configurations_name_a_real_command_and_endpoint() -> None:
    stdio = json.loads((EXAMPLES / "claude_desktop_config.json").read_text())["mcpServers"]
    server = stdio["titan"]
    assert server["command"] == "titan" and "TITAN_TOKEN" in server["env"]
    args = build_parser().parse_args(server["args"])
    assert args.command == "mcp" and args.master == ["http://127.0.0.1:9090"]
    http = json.loads((EXAMPLES / "mcp.json").read_text())["mcpServers"]["titan"]
    assert (http["type"], http["url"]) == ("http", "http://127.0.0.1:9090/mcp")
    assert http["headers"]["Authorization"].startswith("Bearer ")


def test_store_values_are_cut_at_256_kib_of_utf8_never_inside_a_character() -> None:
    from titan.mcp.replies import MAX_VALUE_BYTES, shown_value

    small = shown_value("k", "é" * 1000)
    assert small == {"key": "k", "value": "é" * 1000}
    wide = "€" * 100_000  # 300,000 bytes in 100,000 characters: over the limit
    cut = shown_value("k", wide)
    assert cut["truncated"] is True and cut["size"] == 300_000
    assert len(cut["value"].encode()) <= MAX_VALUE_BYTES and set(cut["value"]) == {"€"}


def test_a_tool_call_is_bounded_well_within_what_an_mcp_client_waits() -> None:
    from titan.mcp.refusals import DEFAULT_GRACE, MAX_CALL_SECONDS, restart_grace
    from titan.mcp.tools import MAX_WAIT

    # MCP clients give up on a call after about a minute: the longest call (a wait, or the
    # retries of a master that is away) ends well before, and not at the SDK's 60 s.
    assert restart_grace({}) == DEFAULT_GRACE == 30
    assert max(DEFAULT_GRACE, MAX_WAIT) == MAX_CALL_SECONDS == 50
    assert restart_grace({"TITAN_MASTER_RESTART_GRACE": "60"}) == 30
    assert restart_grace({"TITAN_MCP_RESTART_GRACE": "2.5"}) == 2.5
    assert restart_grace({"TITAN_MCP_RESTART_GRACE": "0"}) == 0
    for bad in ("51", "-1", "soon", "inf", "nan"):
        with pytest.raises(ConfigError, match="TITAN_MCP_RESTART_GRACE must be"):
            restart_grace({"TITAN_MCP_RESTART_GRACE": bad})


def test_which_messages_titan_answers_itself() -> None:
    from titan.mcp.jsonrpc import refusal

    def said(line: str) -> tuple[object, int, str] | None:
        error = refusal(line)
        return None if error is None else (error.id, error.error.code, error.error.message)

    # What the SDK serves, and what JSON-RPC never answers, go on to it.
    for line in ('{"jsonrpc":"2.0","id":1,"method":"ping"}', '{"jsonrpc":"2.0","id":"a",'
                 '"method":"tools/list"}', '{"jsonrpc":"2.0","method":"notifications/x"}',
                 '{"jsonrpc":"2.0","id":9,"result":{}}', '{"id":9,"error":{}}', "", "  \n"):
        assert said(line) is None, line
    assert said("nope") == (None, -32700, "Parse error: the message is not JSON")
    assert said("[]")[:2] == (None, -32600)  # type: ignore[index]
    assert said('{"jsonrpc":"1.0","id":5,"method":"ping"}') == (
        5, -32600, 'Invalid Request: "jsonrpc" must be "2.0"')
    assert said('{"jsonrpc":"2.0","id":"x","method":"ping","params":[1]}') == (
        "x", -32600, 'Invalid Request: "params" must be an object')
    for ident in ("null", "1.5", "true", '{"a":1}', "[1]"):
        assert said(f'{{"jsonrpc":"2.0","id":{ident},"method":"ping"}}') == (
            None, -32600, "Invalid Request: an id is a string or an integer"), ident
