"""Titan's MCP server: the tools and resources an agent gets, over :class:`TitanClient`.

One definition serves both ways in. ``titan mcp`` (:mod:`titan.cli.mcp`) serves it on stdio
with the client the CLI resolves (its master, its token); the master serves it at ``/mcp``
(:mod:`titan.master.api.mcp`) with a client per call that loops back through its own API with
the caller's token. Either way a tool is one or a few API calls, so the API's role checks are
the only ones: every tool is listed for every token, its description names the role it needs,
and a call the role may not make comes back as the API's refusal, word for word
(``forbidden: a viewer token may not change anything``). Listing only what a role may use
would need a second copy of those rules here, which could drift from the API's.

The client is synchronous: each call runs on a worker thread (:mod:`titan.mcp.refusals`), a
few at a time, so a slow wait never stalls the event loop serving the other calls. What comes back is
bounded — a wait returns within :data:`MAX_WAIT` seconds (unfinished, and saying so, if need
be), logs, store values, action pages and artifacts are capped — because every byte of a
result lands in the agent's context window.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Annotated, Any, Literal

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.resources import ResourceSecurity
from mcp.types import ToolAnnotations
from pydantic import Field

from titan import log_lines
from titan.client import TitanClient
from titan.errors import NotFound, WaitTimeout
from titan.mcp import replies
from titan.mcp.jobs import JobSpec, dag_request
from titan.mcp.refusals import (
    DEFAULT_GRACE,
    MAX_CALL_SECONDS,
    Calls,
    Clients,
    TitanServer,
    resource_error,
    tool_error,
)
from titan.mcp.replies import MAX_LOG_LINES
from titan.url_paths import quote_ref, quote_run
from titan.version import __version__

#: The longest wait a tool makes: MCP clients give up on a call after about a minute.
MAX_WAIT = MAX_CALL_SECONDS
MAX_ACTIONS = 200
MAX_ARTIFACT_BYTES = 4 * 1024 * 1024
_LOG_PAGE = 10_000

READS = ToolAnnotations(read_only_hint=True, open_world_hint=False)
WRITES = ToolAnnotations(read_only_hint=False, destructive_hint=False, open_world_hint=False)
DECIDES = ToolAnnotations(read_only_hint=False, destructive_hint=True, open_world_hint=False)

INSTRUCTIONS = """\
Titan runs DAGs of Python jobs on a cluster of workers and records what agents do.
Submit work with submit_dag (or submit_job), passing each job's script inline; follow it
with wait_dag, get_dag_status and fetch_logs; stop it with cancel_job or cancel_dag. A job
reference is its numeric id, a job id (the latest job with it) or "DAG/job"; a DAG reference
is its id, its name (latest run) or "name#run". Jobs share data through the store (store_get / store_put). Agent runs, their
recorded actions and replays: list_runs, get_run_actions, start_replay. A job with a
hitl_message is followed by the gate "<job_id>.approval": the jobs after it wait until
someone calls approve or reject.
What each tool may do depends on the token's role; its description says which it needs."""

JobRef = Annotated[str, Field(description='A job: its numeric id, its job id (the latest job '
                                         'with it), "DAG/job" or "DAG#run/job".')]
DagRef = Annotated[str, Field(description='A DAG: its numeric id, its name (its latest run) or '
                                         '"name#run".')]
GateRef = Annotated[str, Field(description='The gate: "DAG/job.approval" (a job\'s '
                                          'hitl_message made it) or its numeric id.')]
Timeout = Annotated[float, Field(gt=0, le=MAX_WAIT, description=f"Seconds to wait, at most "
                                                                 f"{MAX_WAIT:g}.")]


def build_server(clients: Clients, *, grace: float = DEFAULT_GRACE) -> MCPServer:
    """The MCP server: Titan's tools and resources, each call made with a client from
    ``clients``, retrying a master it cannot reach for ``grace`` seconds (a wait: until its
    timeout, if that is later; :mod:`titan.mcp.refusals`)."""
    server: MCPServer = TitanServer("titan", version=__version__, instructions=INSTRUCTIONS)
    tool = Calls(clients, tool_error, grace)
    read = Calls(clients, resource_error, grace)

    @server.tool(annotations=WRITES)
    async def submit_dag(name: str, jobs: list[JobSpec], ctx: Context) -> dict[str, Any]:
        """Submit jobs as one DAG named `name`, atomically (all or nothing). Each job's script
        is given inline (`script`), by the sha256 of one submitted before, or as an archive
        entry point. Returns the DAG (its `ref` names it in other tools) and `scripts`, the
        sha256 of each inline script. Needs an operator or admin token (or a job's)."""
        return await tool(ctx, lambda client: _submit(client, name, jobs))

    @server.tool(annotations=WRITES)
    async def submit_job(job: JobSpec, ctx: Context) -> dict[str, Any]:
        """Submit one job as a DAG named after its job id. Needs an operator or admin token
        (or a job's)."""
        return await tool(ctx, lambda client: _submit(client, job.job_id, [job]))

    @server.tool(annotations=READS)
    async def get_dag_status(ref: DagRef, ctx: Context) -> dict[str, Any]:
        """A DAG's status (RUNNING, COMPLETED, FAILED, PARTIAL, CANCELLED), its jobs' counts by
        state, and its jobs. Any token but a worker's."""
        return await tool(ctx, lambda client: replies.shown_dag(client.get_dag(ref)))

    @server.tool(annotations=READS)
    async def get_job_status(ref: JobRef, ctx: Context) -> dict[str, Any]:
        """One job: its state (PENDING, READY, RUNNING, WAITING_APPROVAL, COMPLETED, FAILED,
        ...), attempt, exit code and error; texts over 2,000 characters and lists over 50
        items are cut (`truncated` names them). Any token but a worker's."""
        return await tool(ctx, lambda client: replies.shown_job(client.get_job(ref)))

    @server.tool(annotations=READS)
    async def wait_dag(ref: DagRef, ctx: Context,
                       timeout_seconds: Timeout = 30.0) -> dict[str, Any]:
        """Wait until every job of the DAG has finished, or the timeout: `finished` says which
        (call again to keep waiting). Returns the DAG. Any token but a worker's."""
        return await tool(ctx, lambda client: _wait(client.wait_dag, client.get_dag, ref,
                                                    timeout_seconds, replies.shown_dag),
                          wait=timeout_seconds)

    @server.tool(annotations=READS)
    async def wait_job(ref: JobRef, ctx: Context,
                       timeout_seconds: Timeout = 30.0) -> dict[str, Any]:
        """Wait until the job has finished, or the timeout: `finished` says which. Returns the
        job. Any token but a worker's."""
        return await tool(ctx, lambda client: _wait(client.wait_job, client.get_job, ref,
                                                    timeout_seconds, replies.shown_job),
                          wait=timeout_seconds)

    @server.tool(annotations=READS)
    async def fetch_logs(
        ref: JobRef, ctx: Context,
        attempt: Annotated[int | None, Field(ge=1, description="Which attempt (default: the "
                                                                "latest).")] = None,
        after: Annotated[int | None, Field(ge=0, description="Page forward from this line "
                                                              "number (`next` of the previous "
                                                              "page); default: the last "
                                                              "lines.")] = None,
        max_lines: Annotated[int, Field(ge=1, le=MAX_LOG_LINES)] = 200,
    ) -> dict[str, Any]:
        """A job's output (stdout and stderr interleaved): its last `max_lines` lines, or with
        `after` the lines that follow that line number. At most 65,536 characters of text;
        `omitted` counts the lines left out before them. Any token but a worker's."""
        return await tool(ctx, lambda client: _logs(client, ref, attempt, after, max_lines))

    @server.tool(annotations=READS)
    async def store_get(key: str, ctx: Context) -> dict[str, Any]:
        """The store value of `key` (null when missing); values over 256 KiB are cut, with
        `truncated`. Any token but a worker's."""
        return await tool(ctx, lambda client: replies.shown_value(key, client.store_get(key)))

    @server.tool(annotations=WRITES)
    async def store_put(key: str, value: str, ctx: Context) -> dict[str, Any]:
        """Set the store key `key` to the string `value` (jobs waiting for it wake up); the reply's
        `stored` is its size in bytes of UTF-8. Needs an operator or admin token (or a job's)."""
        await tool(ctx, lambda client: client.store_put(key, value))
        # Bytes of UTF-8, as store_get's `size` (characters said 200,000 for 400,000 bytes).
        return {"key": key, "stored": len(value.encode("utf-8", "surrogatepass"))}

    @server.tool(annotations=READS)
    async def list_runs(
        ctx: Context,
        status: Annotated[str | None, Field(description="running, completed, failed, ... "
                                                        "(comma-separated)")] = None,
        agent: Annotated[str | None, Field(description="Only this agent's runs.")] = None,
        limit: Annotated[int, Field(ge=1, le=100)] = 20,
        offset: Annotated[int, Field(ge=0)] = 0,
    ) -> dict[str, Any]:
        """Agent runs, most recent first, with their status, cost and action counts; `total`
        counts every match. Any token but a worker's."""
        params = {"status": status, "agent": agent, "limit": limit, "offset": offset}
        return await tool(ctx, lambda client: client.api("GET", "/runs", params=params))

    @server.tool(annotations=READS)
    async def get_run_actions(
        run_id: str, ctx: Context,
        after: Annotated[int, Field(ge=0, description="Actions after this seq (`next` of the "
                                                      "previous page).")] = 0,
        limit: Annotated[int, Field(ge=1, le=MAX_ACTIONS)] = 50,
        outcome: Annotated[str | None, Field(description="success, error, blocked, replayed "
                                                         "(comma-separated)")] = None,
    ) -> dict[str, Any]:
        """A run's recorded actions (LLM calls, tool calls, ...) in order, a page at a time,
        inputs and outputs previewed to 400 characters; `next` is the seq to page on from.
        Any token but a worker's."""
        return await tool(ctx, lambda client: _actions(client, run_id, after, limit, outcome))

    @server.tool(annotations=WRITES)
    async def start_replay(
        run_id: str, ctx: Context,
        mode: Literal["strict", "lenient"] = "strict",
        fork_at: Annotated[int | None, Field(ge=1, description="Serve the recording up to this "
                                                               "seq, then run live.")] = None,
    ) -> dict[str, Any]:
        """Replay a finished run: its code runs again with its recorded LLM, tool and ambient
        calls served, and the replay run (`run_id`) reports where it diverged. Needs an
        operator or admin token."""
        body: dict[str, Any] = {"mode": mode}
        if fork_at is not None:
            body["fork_at"] = fork_at
        return await tool(ctx, lambda client: client.api(
            "POST", f"/runs/{quote_run(run_id)}/replay", json=body))

    @server.tool(annotations=DECIDES)
    async def approve(gate: GateRef, ctx: Context, comment: str | None = None) -> dict[str, Any]:
        """Approve a gate waiting for approval ("DAG/job.approval" or its id): the jobs after it
        run. Needs an operator or admin token (a person's decision: never a job's)."""
        return await tool(ctx, lambda client: client.approve(gate, comment))

    @server.tool(annotations=DECIDES)
    async def reject(gate: GateRef, ctx: Context, comment: str | None = None) -> dict[str, Any]:
        """Reject a gate waiting for approval: it fails and the jobs after it are skipped.
        Needs an operator or admin token."""
        return await tool(ctx, lambda client: client.reject(gate, comment))

    @server.tool(annotations=DECIDES)
    async def cancel_job(ref: JobRef, ctx: Context) -> dict[str, Any]:
        """Cancel a job that has not finished: it ends CANCELLED (killed if running) and the
        jobs after it are skipped. Returns the job. Needs an operator or admin token (or a
        job's)."""
        return await tool(ctx, lambda client: replies.shown_job(
            client.api("POST", f"/jobs/{quote_ref(ref)}/cancel")))

    @server.tool(annotations=DECIDES)
    async def cancel_dag(ref: DagRef, ctx: Context) -> dict[str, Any]:
        """Cancel every unfinished job of a DAG (running ones are killed). Returns the DAG.
        Needs an operator or admin token (or a job's)."""
        return await tool(ctx, lambda client: replies.shown_dag(
            client.api("POST", f"/dags/{quote_ref(ref)}/cancel")))

    @server.resource("titan://runs/{run_id}", mime_type="application/json")
    async def run(run_id: str, ctx: Context) -> dict[str, Any]:
        """An agent run: status, totals, stages, cost by stage, actor and channel."""
        return await read(ctx, lambda client: client.api("GET", f"/runs/{quote_run(run_id)}"))

    @server.resource("titan://runs/{run_id}/report", mime_type="text/markdown")
    async def report(run_id: str, ctx: Context) -> str:
        """The report a run published: the artifact '<agent>:<run id>:report', agent in lower
        case (the research agent's research:RESEARCH_1a9ac3:report)."""
        return await read(ctx, lambda client: _report(client, run_id))

    @server.resource("titan://artifacts/{+key}", mime_type="application/octet-stream",
                     security=ResourceSecurity(exempt_params={"key"}))
    async def artifact(key: str, ctx: Context) -> str | bytes:
        """The artifact published under a store key (publish_artifact): text when it is UTF-8,
        else bytes; at most 4 MiB."""
        return await read(ctx, lambda client: replies.text_or_bytes(
            client.read_artifact(key, MAX_ARTIFACT_BYTES)[1]))

    return server


# --------------------------------------------------------------------------- the calls


def _submit(client: TitanClient, name: str, jobs: list[JobSpec]) -> dict[str, Any]:
    body, scripts = dag_request(name, jobs)
    client.upload_blobs(scripts)
    dag = replies.shown_dag(client.api("POST", "/dags", json=body, idempotency_key=True))
    dag["scripts"] = {job["job_id"]: job["script_sha256"] for job in body["jobs"]
                      if job["script_sha256"]}
    return dag


def _wait(wait: Callable[..., dict[str, Any]], get: Callable[[str], dict[str, Any]], ref: str,
          timeout: float, shape: Callable[[dict[str, Any]], dict[str, Any]]) -> dict[str, Any]:
    try:
        return {"finished": True, **shape(wait(ref, timeout=timeout))}
    except WaitTimeout:
        return {"finished": False, **shape(get(ref))}


def _logs(client: TitanClient, ref: str, attempt: int | None, after: int | None,
          max_lines: int) -> dict[str, Any]:
    path = f"/jobs/{quote_ref(ref)}/logs"
    if after is not None:  # one page on from `after`; what the size cap cuts is the next page's
        page = client.api("GET", path, params={"attempt": attempt, "after": after,
                                                "limit": max_lines})
        lines = replies.fit_lines(page["lines"], keep_end=False)
        return {**replies.log_head(page), "text": log_lines.text(lines),
                "next": lines[-1]["seq"] if lines else after,
                "done": page["done"] and len(lines) == len(page["lines"])}
    # The tail: every page read in order, only the last lines kept.
    tail: deque[dict[str, Any]] = deque(maxlen=max_lines)
    seen = start = 0
    while True:
        page = client.api("GET", path, params={"attempt": attempt, "after": start,
                                                "limit": _LOG_PAGE})
        tail.extend(page["lines"])
        seen += len(page["lines"])
        start = page["next"]
        # Stay on the attempt the first page read, should a retry start meanwhile.
        attempt = attempt or page["attempt"] or None
        if not page.get("more", len(page["lines"]) == _LOG_PAGE):  # short at the byte cap too
            break
    lines = replies.fit_lines(list(tail), keep_end=True)
    return {**replies.log_head(page), "text": log_lines.text(lines), "next": start,
            "omitted": seen - len(lines)}


def _actions(client: TitanClient, run_id: str, after: int, limit: int,
             outcome: str | None) -> dict[str, Any]:
    page = client.api("GET", f"/runs/{quote_run(run_id)}/actions", params={
        "after": after, "limit": limit, "outcome": outcome, "preview": 400})
    actions = page.get("actions") or []
    return {"run_id": run_id, "actions": actions, "matched": page.get("matched"),
            "next": actions[-1]["seq"] if actions else after}


def _report(client: TitanClient, run_id: str) -> str:
    agent = client.api("GET", f"/runs/{quote_run(run_id)}").get("agent_id")
    if not agent:
        raise NotFound(f"run {run_id!r} names no agent, so no report of its", details={})
    key = f"{str(agent).lower()}:{run_id}:report"
    try:
        _, data = client.read_artifact(key, MAX_ARTIFACT_BYTES)
    except NotFound:
        raise NotFound(f"run {run_id!r} published no report (no artifact {key!r})",
                       details={"key": key}) from None
    return data.decode("utf-8", errors="replace")
