"""Starting the agent under test and watching it finish.

* A ``job`` agent runs as one Titan job in its own DAG (``<run id>_AGENT``), joined to the run,
  so its LLM calls are recorded like any agent's. Its task and the proxy's address come in the
  environment; it answers with :func:`titan.evals.respond`. Its credential is its run's agent
  token (``ta.``), not a job token (:func:`agent_under_test`). A coding task runs
  :mod:`titan.evals.coding_job` instead, which seeds the workspace, runs the agent's script in
  it and grades the result.
* An ``http`` agent gets the task POSTed to its endpoint; the reply's ``final_response`` is the
  answer, and how the call failed (status, timeout, refused connection, bad body) is its error
  class (:func:`titan.evals.failures.classify_http`).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
import secrets
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

import titan
from titan.evals.failures import classify_http
from titan.master.evaluations.active import ActiveRun, RunLifecycle, Spawn
from titan.master.scheduling.validation import validate_dag
from titan.status import EVAL_TERMINAL
from titan.storage.base import Row

if TYPE_CHECKING:
    from titan.master.egress import EgressPolicy
    from titan.master.evaluations.proxy import ToolProxy
    from titan.master.scheduling.engine import Engine
    from titan.master.scheduling.state import DagRec, JobRec
    from titan.storage.blobs import BlobStore

log = logging.getLogger("titan.master.evaluations.service")
CODING_JOB = Path(titan.__file__).resolve().parent / "evals" / "coding_job.py"
RAW_LIMIT = 100_000
AGENT_STAGE = "AGENT"
JOB_ROOT_ACTOR = f"{AGENT_STAGE}/agent"
# What the coding job may see of its task: never the behaviour instructions, the world or the
# failure rules — those are the simulator's secret. (The job hides scorers and turns from the
# agent itself.)
_AGENT_VISIBLE = ("id", "user_instruction", "kind", "workspace", "scorers", "metadata", "turns")


#: Why a run whose agent job lost its worker ends (docs/evaluations.md, internal_error).
LOST_ATTEMPT = ("the agent's job lost its worker mid-run (the worker, or a `titan up` master "
                "with it, was killed) and would have run again from the start against a world "
                "and a trajectory its first attempt had already changed; re-run the task")
_ENDED = ("COMPLETED", "FAILED", "CANCELLED", "SKIPPED", "TIMED_OUT")


#: A run's id and its job's DAG name (``<run id>_AGENT``) are each held to 200 characters.
RUN_ID_MAX = 200 - len(f"_{AGENT_STAGE}")


def run_id_of(evaluation_id: str, task_id: str) -> str:
    """A new run's id: ``<evaluation>.<task>.<8 hex digits>``, its head shortened (with a
    hash of it, so two long names stay apart) when the ids given, each allowed 100
    characters, would make it too long for a run or its job's DAG (such a task failed to
    run: "invalid run: id: must be 1-200 characters", or an internal_error)."""
    head, tail = f"{evaluation_id}.{task_id}", secrets.token_hex(4)
    room = RUN_ID_MAX - len(tail) - 1
    if len(head) > room:
        head = f"{head[:room - 9]}-{hashlib.sha256(head.encode()).hexdigest()[:8]}"
    return f"{head}.{tail}"


def restarted(job: Row) -> bool:
    """The agent's job runs (or waits to run) again after an attempt that was lost: a
    job agent is submitted without retries, so any attempt after its first is one."""
    attempt = int(job.get("attempt") or 0)
    return attempt > 1 or (attempt >= 1 and job.get("state") in ("PENDING", "READY"))


def agent_under_test(job: JobRec, dag: DagRec) -> bool:
    """Whether ``job`` is the agent under test of a non-coding run (the engine's
    ``agent_under_test``): the worker hands it its run's agent token, not a job token. A job
    token can do what an operator can: the agent would read its task's answer key (behaviour
    and failure rules, the seeded world), other runs and the store, and submit jobs. The agent
    token calls its run's tools, answers, and records actions into its run, nothing else.

    Read from the job as :meth:`Dispatcher._submit_job` stored it (its DAG, its environment),
    not from the runs in flight: it holds after a master restart, from the first lease on.
    Someone else's job made to look so only holds less than its job token would give it. A
    coding run's job is the harness, which needs its job token to grade the run (it hands
    its agent the agent token itself)."""
    run_id = dag.agent_run_id
    env = job.row.get("env") or {}
    return (run_id is not None and dag.name == f"{run_id}_{AGENT_STAGE}"
            and env.get("TITAN_EVAL_RUN") == run_id and "TITAN_EVAL_AGENT" not in env)


def agent_task(seed: Row, agent: Row) -> Row:
    task = {k: seed.get(k) for k in _AGENT_VISIBLE if seed.get(k) is not None}
    task["tools"] = [{k: t.get(k) for k in ("name", "description", "input_schema")}
                     for t in agent.get("tools") or []]
    return task


#: How much of the end of a crashed agent's log is read for the line that says why.
TAIL_LINES = 200
TAIL_BYTES = 64 * 1024
#: A job error that says only its exit code (the agent wrote nothing on stderr).
_BARE_EXIT = re.compile(r"exit code -?\d+")


def _whole_lines(rows: list[Row]) -> list[tuple[str, str]]:
    """Log rows as (stream, line): a line sent in pieces (``continues``) joined again."""
    out: list[tuple[str, str]] = []
    piece = ""
    for row in rows:
        piece += row["line"]
        if not row.get("continues"):
            out.append((row["stream"], piece))
            piece = ""
    if piece:
        out.append((rows[-1]["stream"], piece))
    return out

class Dispatcher:
    def __init__(self, engine: Engine, blobs: BlobStore, egress: EgressPolicy,
                 proxy: ToolProxy, *, lifecycle: RunLifecycle, spawn: Spawn) -> None:
        self.engine = engine
        self.blobs = blobs
        self.egress = egress
        self.proxy = proxy
        self.lifecycle = lifecycle
        self.spawn = spawn
        self._ending: set[str] = set()  # runs ending as their job's attempt was lost
        self._calls: dict[str, asyncio.Future[Any]] = {}  # HTTP agents' calls in flight
        self._slots: dict[str, asyncio.Semaphore] = {}  # evaluation → its calls at once
        engine.job_listeners.append(self._job_changed)
        engine.agent_under_test = agent_under_test

    @property
    def proxy_base(self) -> str:
        return self.engine.config.api_url + "/api/v1/runs"

    async def start(self, active: ActiveRun, token: str) -> None:
        if active.agent["kind"] == "http":
            # Pending until one of the evaluation's slots is free (TITAN_EVAL_HTTP_CONCURRENCY).
            call = self._calls[active.run_id] = self.spawn(self._call_http(active, token))
            call.add_done_callback(lambda _: self._calls.pop(active.run_id, None))
        else:
            dag_id = await self._submit_job(active, token)
            if await self.lifecycle.mark_running(active.run_id):
                self.spawn(self._watch_job(active.run_id, dag_id))
            else:  # cancelled while its job was submitted
                await self.engine.cancel_stages_of(active.run_id)

    def drop_calls(self, run_ids: list[str]) -> None:
        """Drop the endpoint calls of these runs (settled already), or their wait for one."""
        for run_id in run_ids:
            call = self._calls.pop(run_id, None)
            if call is not None:
                call.cancel()

    def resume(self, active: ActiveRun) -> None:
        """After a master restart: a job agent is still a job; an HTTP call is lost."""
        if active.agent["kind"] == "http":
            self.spawn(self.lifecycle.settle(
                active.run_id, "failed", "internal_error",
                "the master restarted while waiting for the agent endpoint; re-run the task"))
            return
        self.spawn(self._resume_job(active.run_id))

    async def _resume_job(self, run_id: str) -> None:
        dags, _ = await self.engine.read(
            lambda tx: tx.list_dags(agent_run_id=run_id, limit=1, newest_first=True))
        if not dags:
            await self.lifecycle.settle(run_id, "failed", "internal_error",
                                    "the agent's job was never submitted")
            return
        await self._watch_job(run_id, dags[0]["id"])

    # -- job agents ---------------------------------------------------------------------------
    async def _submit_job(self, active: ActiveRun, token: str) -> int:
        agent, seed = active.agent, active.task
        env = {"TITAN_EVAL_RUN": active.run_id,
               "TITAN_EVAL_TASK": json.dumps(agent_task(seed, agent)),
               "TITAN_TOOL_PROXY": self.proxy_base}
        # Its worker hands it its run's agent token in TITAN_TOKEN (agent_under_test: not a
        # coding run's harness, which gets a job token), which the proxy accepts for its run:
        # the run's token never has to be written into the job's stored environment.
        job: Row = {"job_id": "agent", "retries": 0, "timeout": agent["timeout_s"],
                    "requirement": agent.get("requirement") or "GENERAL"}
        if seed.get("kind") == "coding":
            sha = await self._coding_job_blob()
            env["TITAN_EVAL_AGENT"] = json.dumps({
                "script_sha256": agent["script_sha256"], "filename": agent.get("script"),
                "args": agent.get("args") or [], "timeout_s": agent["timeout_s"]})
            job.update(filename="titan_coding_job.py", script_sha256=sha,
                       timeout=agent["timeout_s"] + 600)  # grading gets time of its own
        else:
            job.update(filename=Path(agent.get("script") or "agent.py").name,
                       script_sha256=agent["script_sha256"], args=agent.get("args") or [])
        job["env"] = env
        # Stage AGENT, job agent: the agent's actor path is AGENT/agent (sub-agents below it).
        name = f"{active.run_id}_{AGENT_STAGE}"
        _, specs = validate_dag(name, [job], max_jobs=1)
        return await self.engine.submit_dag(name, specs, active.run_id, agent["name"])

    async def _coding_job_blob(self) -> str:
        """The coding job script in the blob store, stored (a look, once it is there) and
        recorded as used at each dispatch: kept in memory, its name outlived the blob once
        garbage collection took it with the last job that ran it."""
        script = CODING_JOB.read_bytes()
        sha = await asyncio.get_running_loop().run_in_executor(
            None, self.blobs.write_bytes, script)
        await self.engine.run(lambda tx: tx.add_blob(sha, len(script), time.time()))
        self.engine.blob_holds.known.add(sha)
        return sha

    def _job_changed(self, job_id: int, state: str) -> None:
        """An agent job queued again after its attempt was lost (its worker died, or the
        master of `titan up` with its worker): the run ends now, before the new attempt
        stacks its tool calls on the first one's and changes the world a second time."""
        job = self.engine.sched.jobs.get(job_id)
        dag = self.engine.sched.dags.get(job.dag_id) if job is not None else None
        run_id = dag.agent_run_id if dag is not None else None
        if (job is None or dag is None or run_id is None or run_id not in self.proxy.active
                or dag.name != f"{run_id}_{AGENT_STAGE}" or run_id in self._ending
                or not restarted({"state": state, "attempt": job.attempt})):
            return
        self._ending.add(run_id)  # told again (PENDING, then RUNNING): ended once
        self.spawn(self._lost(run_id))

    async def _lost(self, run_id: str) -> None:
        """End the run as Titan's failure and stop what its agent would still run."""
        try:
            await self.lifecycle.settle(run_id, "failed", "internal_error", LOST_ATTEMPT)
            await self.engine.cancel_stages_of(run_id)
        finally:
            self._ending.discard(run_id)

    async def _watch_job(self, run_id: str, dag_id: int) -> None:
        hub = self.engine.hub
        while True:
            waiter = hub.waiter(("dag", dag_id))
            try:
                jobs = await self.engine.read(lambda tx: tx.jobs_of_dags([dag_id]))
                job = jobs[0] if jobs else None
                if job is None or job["state"] in _ENDED or restarted(job):
                    break
                await waiter
            finally:
                hub.discard(("dag", dag_id), waiter)
        await self._job_ended(run_id, job)

    async def _job_ended(self, run_id: str, job: Row | None) -> None:
        row = await self.engine.read(lambda tx: tx.get_eval_run(run_id))
        if row is None or row["status"] in EVAL_TERMINAL:
            return
        coding = (row.get("coding") or {}) if row else {}
        if job is None:
            await self.lifecycle.settle(run_id, "failed", "internal_error", "the agent's job vanished")
            return
        if restarted(job):  # found so at a master's start, or after the attempt ran on
            await self._lost(run_id)
            return
        state, code = job["state"], job.get("exit_code")
        # The run's latency is the agent's: from when its job started, not from a dispatch
        # that waited for a free worker slot (a run of 0.2 s showed 50 s behind a queue).
        began = job.get("started_at")
        extra = {"started_at": began} if began and began > (row.get("started_at") or 0) \
            else None
        if state == "CANCELLED":
            await self.lifecycle.settle(run_id, "cancelled", None, "the agent's job was cancelled",
                                        extra)
        elif state == "TIMED_OUT":
            await self.lifecycle.settle(run_id, "failed", "agent_timeout",
                                        f"the agent did not finish within {job.get('timeout')} s",
                                        extra)
        elif state in ("FAILED", "SKIPPED"):
            tail = await self._log_tail(job)
            tail = re.sub(r"^exit code -?\d+:\s*", "", tail)  # the job's error says it too
            await self.lifecycle.settle(run_id, "failed", "agent_5xx",
                                        f"the agent crashed (exit code {code}): {tail}".strip(),
                                        extra)
        elif row.get("final_response") is None and not coding:
            await self.lifecycle.settle(
                run_id, "failed", "agent_bad_response",
                "the agent finished without a final response (call titan.evals.respond())", extra)
        else:
            await self.lifecycle.settle(run_id, "completed", extra=extra)

    async def _log_tail(self, job: Row) -> str:
        """Why the agent's job failed: its error, unless that says no more than its exit
        code (an agent that wrote nothing on stderr), then its log's last line with text
        (stderr's first). Read from the end of the log, at most :data:`TAIL_LINES` lines and
        :data:`TAIL_BYTES`: the error is at the end of a long log, which its first 10,000
        lines (read whole) missed."""
        error = str(job.get("error") or "")
        if error and not _BARE_EXIT.fullmatch(error):
            return error[-500:]
        attempt = job["attempt"] or 1
        rows = await self.engine.read(lambda tx: tx.log_lines(
            job["id"], attempt, limit=TAIL_LINES, tail=True, max_bytes=TAIL_BYTES))
        text = [(stream, line) for stream, line in _whole_lines(rows) if line.strip()]
        errors = [line for stream, line in text if stream == "stderr"] or [
            line for _, line in text]
        return errors[-1][-500:] if errors else error

    # -- http agents --------------------------------------------------------------------------
    async def _call_http(self, active: ActiveRun, token: str) -> None:
        evaluation = active.row["evaluation_id"]
        slots = self._slots.setdefault(
            evaluation, asyncio.Semaphore(self.engine.config.eval_http_concurrency))
        async with slots:
            if await self.lifecycle.mark_running(active.run_id):
                await self._post(active, token)

    async def _post(self, active: ActiveRun, token: str) -> None:
        agent = active.agent
        body = {
            "run_id": active.run_id, "evaluation": active.row["evaluation_id"],
            "task": agent_task(active.task, agent),
            "user_instruction": active.task["user_instruction"],
            "proxy": {"url": f"{self.proxy_base}/{active.run_id}/tools", "token": token,
                      "events_url": f"{self.proxy_base}/{active.run_id}/eval/events"},
        }
        status: int | None = None
        reply: Any = None
        raw = ""
        exc: BaseException | None = None
        try:
            response = await self.egress.post(agent["url"], body, timeout=agent["timeout_s"],
                                              headers=agent.get("headers") or {})
            status, raw = response.status_code, response.text[:RAW_LIMIT]
            try:
                reply = response.json()
            except ValueError:
                reply = None
        except (httpx.HTTPError, httpx.InvalidURL) as e:
            exc = e
        error_class, detail = classify_http(status, exc, reply if reply is not None else raw)
        if error_class is not None:
            # An error page is not kept: it says nothing about the agent's answer and may
            # say what the master can reach that its readers cannot (docs/security.md).
            kept = raw if status is not None and 200 <= status < 300 else None
            await self.lifecycle.settle(active.run_id, "failed", error_class, detail,
                                    {"raw_response": kept or None})
            return
        assert isinstance(reply, dict)
        await self.proxy.accept_response(active.run_id, reply, raw)
        await self.lifecycle.settle(active.run_id, "completed")
