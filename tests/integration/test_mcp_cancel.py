"""cancel_job and cancel_dag (docs/mcp.md): an agent could submit work over MCP but not stop
it (a QA pass). Who may cancel is the API's to say, as for every tool: an operator and a job's
token may, a viewer may not. Against one real cluster, over the master's /mcp."""

from __future__ import annotations

import asyncio
import json
import textwrap

from mcp import Client

from tests.integration.harness import Cluster, shared_cluster
from tests.integration.test_mcp import call, over_http, refused, run

cluster = shared_cluster()
SLEEPER = "import time\ntime.sleep(120)\n"


async def running(client: Client, ref: str) -> None:
    for _ in range(300):
        if (await call(client, "get_job_status", ref=ref))["state"] == "RUNNING":
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{ref} never ran")


def test_an_operator_cancels_a_job_and_a_dag_a_viewer_may_not(cluster: Cluster) -> None:
    admin = cluster.client()
    operator = admin.create_token("operator", "mcp-canceller")["token"]
    viewer = admin.create_token("viewer", "mcp-cancel-viewer")["token"]

    async def scenario() -> None:
        async with over_http(cluster, operator) as client:
            await call(client, "submit_dag", name="mcp-cancel", jobs=[
                {"job_id": "long", "script": SLEEPER},
                {"job_id": "after", "script": "print('after')\n", "parents": ["long"]}])
            await call(client, "submit_dag", name="mcp-cancel-all", jobs=[
                {"job_id": "one", "script": SLEEPER}, {"job_id": "two", "script": SLEEPER}])
            await running(client, "mcp-cancel/long")
            async with over_http(cluster, viewer) as looker:
                for tool, ref in (("cancel_job", "mcp-cancel/long"),
                                  ("cancel_dag", "mcp-cancel-all")):
                    text = await refused(looker, tool, ref=ref)
                    assert text.startswith("forbidden: a viewer token may not"), (tool, text)
            assert (await call(client, "get_job_status", ref="mcp-cancel/long"))["state"] == \
                "RUNNING"

            job = await call(client, "cancel_job", ref="mcp-cancel/long")
            assert job["job_id"] == "long" and job["state"] == "CANCELLED", job
            done = await call(client, "wait_dag", ref="mcp-cancel", timeout_seconds=30)
            assert {j["job_id"]: j["state"] for j in done["jobs"]} == {
                "long": "CANCELLED", "after": "SKIPPED"}, done
            # A job already finished is the API's conflict, with its code.
            text = await refused(client, "cancel_job", ref="mcp-cancel/long")
            assert text.startswith("conflict: "), text

            dag = await call(client, "cancel_dag", ref="mcp-cancel-all")
            assert dag["name"] == "mcp-cancel-all" and dag["status"] == "CANCELLED", dag
            assert {j["state"] for j in dag["jobs"]} == {"CANCELLED"}, dag
            text = await refused(client, "cancel_dag", ref="mcp-nothing")
            assert text.startswith("not_found: "), text

    run(scenario)


def test_a_job_cancels_work_with_its_own_token(cluster: Cluster) -> None:
    # A job's token may cancel, as the API allows it: an orchestrator job stops a stage.
    admin = cluster.client()
    orchestrator = textwrap.dedent("""\
        import json, os, urllib.request
        call = {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                "params": {"name": "cancel_dag", "arguments": {"ref": "mcp-stage"}}}
        request = urllib.request.Request(
            os.environ["TITAN_MASTER_URL"] + "/mcp", data=json.dumps(call).encode(),
            headers={"Authorization": "Bearer " + os.environ["TITAN_TOKEN"],
                     "Content-Type": "application/json", "MCP-Protocol-Version": "2025-06-18",
                     "Accept": "application/json, text/event-stream"})
        with urllib.request.urlopen(request, timeout=60) as reply:
            result = json.loads(reply.read())["result"]
        print(json.dumps({"error": result.get("isError", False),
                          "status": (result.get("structuredContent") or {}).get("status")}))
        """)

    async def scenario() -> None:
        async with over_http(cluster, admin.endpoint.token or "") as client:
            await call(client, "submit_dag", name="mcp-stage", jobs=[
                {"job_id": "stage", "script": SLEEPER}])
            await running(client, "mcp-stage/stage")
            await call(client, "submit_job", job={"job_id": "mcp-orchestrator",
                                                  "script": orchestrator})
            done = await call(client, "wait_job", ref="mcp-orchestrator/mcp-orchestrator",
                              timeout_seconds=45)
            assert done["state"] == "COMPLETED", done
            logs = await call(client, "fetch_logs", ref="mcp-orchestrator/mcp-orchestrator")
            assert json.loads(logs["text"]) == {"error": False, "status": "CANCELLED"}, logs
            stage = await call(client, "get_job_status", ref="mcp-stage/stage")
            assert stage["state"] == "CANCELLED", stage

    run(scenario)
