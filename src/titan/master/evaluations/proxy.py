"""The tool proxy: every tool call of an agent under test, answered by exactly one source.

``POST /api/v1/runs/{run}/tools/{name}`` with the run's token, or the run's agent token
(``ta.``: the one a non-coding run's agent job holds, and a coding run's job hands the agent
it runs), or the coding job's own token.
Per call, in order: a matching failure rule answers (``injected``); a passthrough tool is
forwarded to its real endpoint (``passthrough``, or ``transport_error`` when that hop fails);
otherwise the simulator plays the tool against the run's world (``odyssey``, seed 003's word,
or ``error`` when it could not produce a valid answer). The call is recorded as an action of the run
(channel ``tool``, tag ``source``), and what it did to the world — the ledger operations, the
refused ones, the state after — beside it. Calls of one run are serialised: the world is one
sequence of states.

The same family of routes takes the agent's answer (``eval/response``), live trace events
(``eval/events``) and a coding run's grading (``eval/coding``).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import httpx

from titan.errors import Conflict, Forbidden, NotFound, Unauthorized, ValidationFailed
from titan.evals.failures import match_failure_rule
from titan.evals.findings import ODYSSEY
from titan.evals.handoffs import ROOT_ACTOR
from titan.master.auth.tokens import OPERATE, Principal, matches, token_hash
from titan.master.evaluations import coding_report, trace_events
from titan.master.evaluations.active import ADMIN, ActiveRun, Spawn, dumps_short
from titan.master.evaluations.dispatch import JOB_ROOT_ACTOR
from titan.storage.base import Row

if TYPE_CHECKING:
    from titan.master.egress import EgressPolicy
    from titan.master.runs.service import RunService
    from titan.master.scheduling.engine import Engine

PASSTHROUGH_TIMEOUT_S = 30.0
HISTORY = 12  # earlier calls the simulator sees (the world state carries the rest)
MAX_REFUSALS = 20  # refused proxy requests recorded per run
# Checks a bearer that is not the run's own (a user's token): its principal, or Unauthorized.
UserCheck = Callable[[str], Awaitable[Principal]]


def _schema_problem(schema: Any, value: Any) -> str | None:
    if not schema:
        return None
    import jsonschema

    try:
        jsonschema.validate(value, schema)
    except jsonschema.ValidationError as exc:
        where = "/".join(str(p) for p in exc.absolute_path) or "(the arguments)"
        return f"{where}: {exc.message}"
    except jsonschema.SchemaError as exc:
        return f"the tool's input_schema is not valid JSON Schema: {exc.message}"
    return None


class ToolProxy:
    def __init__(self, engine: Engine, runs: RunService, egress: EgressPolicy,
                 active: dict[str, ActiveRun], *, spawn: Spawn,
                 publish: Callable[[Row], None], simulator_model: str | None) -> None:
        self.engine = engine
        self.runs = runs
        self.egress = egress
        self.active = active  # the service's runs in flight, shared
        self.spawn = spawn
        self.publish = publish
        self.simulator_model = simulator_model

    # -- who may call -------------------------------------------------------------------------
    async def caller(self, run_id: str, authorization: str | None,
                     user: UserCheck | None = None, *, grading: bool = False) -> ActiveRun:
        """The run being called for, if the bearer may act for it: the run's proxy token,
        the agent job's own token, the token a coding run's job handed its agent under test
        (``ta.``), or an operator's. 401 for any other bearer — before saying whether the
        run exists — then 404 (no such run) or 409 (it ended). ``grading`` (a coding run's
        grade): the job's own token or an operator's only — the agent under test holds the
        others, and must not grade itself."""
        token = (authorization or "").removeprefix("Bearer ").strip()
        active, row = await self._run(run_id)
        if row is not None and grading and token.startswith(("tr_", "ta.")) \
                and self._holds_run_token(token, row, run_id):
            raise Forbidden(f"the agent under test may not post the grade of run {run_id}: "
                            "its coding job does")
        if row is not None and self._holds_run_token(token, row, run_id):
            return self._open(active, row)
        who = await self._user_of(token, user)
        if who is not None and who.role not in OPERATE:
            # A user's own token (a viewer's): someone other than the agent, refused without
            # a word in the run's record (it turned a crash into proxy_misconfigured).
            raise Forbidden(f"a {who.role} token may not call tools for run {run_id}")
        if who is None:
            if active is not None:  # the agent holds the wrong token: part of why it fails
                self._refuse(active, "bad_token", "a proxy request without the run's token")
            raise Unauthorized(f"this token may not call tools for run {run_id}: use the "
                               "run's proxy token (proxy.token, or the agent job's own token)")
        if row is None:
            raise NotFound(f"no evaluation run {run_id!r}")
        return self._open(active, row)

    async def may_call(self, run_id: str, token: str, user: UserCheck) -> bool:
        """Whether this bearer may act for the run: the body guard's check (api/limits.py),
        made before a request's body is read. A refusal on a live run is recorded as the
        route's would be (a request refused here never reaches the route): an agent calling
        with the wrong token is part of why its run fails (proxy_misconfigured)."""
        active, row = await self._run(run_id)
        if row is not None and self._holds_run_token(token, row, run_id):
            return True
        who = await self._user_of(token, user)
        if who is None and active is not None:
            self._refuse(active, "bad_token", "a proxy request without the run's token")
        return who is not None and who.role in OPERATE

    async def _run(self, run_id: str) -> tuple[ActiveRun | None, Row | None]:
        active = self.active.get(run_id)
        row = active.row if active is not None else await self.engine.read(
            lambda tx: tx.get_eval_run(run_id))
        return active, row

    def _holds_run_token(self, token: str, row: Row, run_id: str) -> bool:
        return bool(token) and (matches(token_hash(token), row["token_hash"])
                                or self._job_of_run(token, run_id) is not None)

    @staticmethod
    async def _user_of(token: str, user: UserCheck | None) -> Principal | None:
        if user is None or not token:
            return None
        try:
            who = await user(token)
        except Unauthorized:
            return None
        # Another run's agent token is no user's: refused as a wrong proxy token (401, kept
        # on the run), as before the API took agent tokens for recording.
        return None if who.role == "agent" else who

    @staticmethod
    def _open(active: ActiveRun | None, row: Row) -> ActiveRun:
        if active is None:
            # Not running here: ended, or not started yet ("already ended pending" said so).
            status = row["status"]
            said = f"has not started (it is {status})" if status == "pending" \
                else f"already ended {status}"
            raise Conflict(f"evaluation run {row['id']} {said}", code="run_ended")
        return active

    def _job_of_run(self, token: str, run_id: str) -> Principal | None:
        """The attempt of the run's agent job that ``token`` is the job token (role ``job``)
        or the agent-under-test token (role ``agent``) of; None for any other token."""
        tokens = self.engine.job_tokens
        if tokens is None:
            return None
        who = tokens.verify(token) if token.startswith("tj.") else \
            tokens.verify_agent(token) if token.startswith("ta.") else None
        # Only while its attempt runs, as everywhere else a job token is taken: an ended
        # attempt's token (printed in a log, kept by a child process) calls no more tools.
        if who is None or who.job is None or who.attempt is None or \
                not self.engine.sched.is_current(who.job, who.attempt):
            return None
        job = self.engine.sched.jobs.get(who.job)
        dag = self.engine.sched.dags.get(job.dag_id) if job else None
        return who if dag is not None and dag.agent_run_id == run_id else None

    def agent_token(self, run_id: str, who: Principal) -> Row:
        """The token a coding run's job hands the agent it runs (``ta.``, of the job's
        attempt): the agent calls its run's tools, answers and sends events with it, and
        holds nothing that reads the cluster or grades the run. For that job's token only
        (``who``: the caller, its attempt current, as the API checked)."""
        tokens = self.engine.job_tokens
        job = self.engine.sched.jobs.get(who.job) if who.job is not None else None
        dag = self.engine.sched.dags.get(job.dag_id) if job else None
        if who.role != "job" or who.attempt is None or tokens is None or job is None \
                or dag is None or dag.agent_run_id != run_id:
            raise Forbidden(f"only the agent job of evaluation run {run_id} gets the token "
                            "of the agent it runs")
        return {"token": tokens.issue_agent(job.id, who.attempt)}

    def unproven(self, run_id: str) -> None:
        """A client about to call this run's proxy asked the master to prove it holds a
        token it does not know (titan/master_proof.py): the call is never sent, so it is
        counted here, as the call would have been refused (a wrong proxy token)."""
        active = self.active.get(run_id)
        if active is not None:
            self._refuse(active, "bad_token", "a proxy request without the run's token")

    def _refuse(self, active: ActiveRun, kind: str, message: str) -> None:
        if len(active.refusals) >= MAX_REFUSALS:
            # Enough to say why the run fails: a flood (anyone can send a request without a
            # token) no longer costs a database write and a list entry each.
            return
        active.refusals.append({"kind": kind, "message": message, "at": time.time()})
        active.row["proxy_refusals"] = int(active.row.get("proxy_refusals") or 0) + 1
        self._note(active, [message], "proxy_refusals")

    def _note(self, active: ActiveRun, messages: list[str], *also: str) -> None:
        """Say ``messages`` on the run (its soft warnings, the Debug panel's), with the
        fields ``also`` named as they now are."""
        warnings = list(active.row.get("soft_warnings") or []) + messages
        active.row["soft_warnings"] = warnings[-50:]
        fields = {k: active.row[k] for k in ("soft_warnings", *also)}
        self.spawn(self.engine.run(
            lambda tx: tx.update_eval_run(active.run_id, fields)))

    # -- a tool call --------------------------------------------------------------------------
    async def call(self, run_id: str, tool_name: str, body: Any, authorization: str | None,
                   actor: str | None, user: UserCheck | None = None) -> Row:
        active = await self.caller(run_id, authorization, user)
        tools = {t["name"]: t for t in active.agent.get("tools") or []}
        tool = tools.get(tool_name)
        if tool is None:
            message = (f"tool {tool_name!r} is not declared by agent {active.agent['name']!r} "
                       f"(declared: {', '.join(sorted(tools)) or 'none'})")
            self._refuse(active, "unknown_tool", message)
            raise NotFound(message, code="unknown_tool")
        if body is None:
            body = {}
        if not isinstance(body, dict) or not isinstance(body.get("arguments", {}), dict) \
                or not isinstance(body.get("actor") or "", str):
            raise ValidationFailed('the body must be {"arguments": {...}, "actor"?: "..."}')
        named = trace_events.actor_named(body, "")
        arguments = body.get("arguments") or {}
        problem = _schema_problem(tool.get("input_schema"), arguments)
        if problem is not None:
            message = f"{tool_name}: the arguments break the tool's input_schema: {problem}"
            self._refuse(active, "bad_arguments", message)
            raise ValidationFailed(message, code="contract_error")
        actor = (actor or named or ROOT_ACTOR)[:500]
        async with active.lock:
            return await self._answer(active, tool, arguments, actor)

    async def _answer(self, active: ActiveRun, tool: Row, arguments: Row, actor: str) -> Row:
        name = tool["name"]
        number = active.calls.get(name, 0) + 1
        active.calls[name] = number
        rules = active.rules
        started, t0 = time.time(), time.perf_counter()
        ops: list[Row] = []
        violations: list[Row] = []
        error: str | None = None
        failed = False
        sim_cost: float | None = 0.0
        hit = match_failure_rule(rules, name, arguments, number, active.fired)
        if hit is not None:
            active.fired[hit] = active.fired.get(hit, 0) + 1
            source, response = "injected", rules[hit].payload
            failed = rules[hit].error
            if failed:
                error = f"injected failure (failure rule {hit + 1})"
        elif tool["mode"] == "passthrough":
            source, response, error = await self._forward(tool, arguments)
            failed = error is not None
        else:
            source, response, error, ops, violations, sim_cost = await self._simulate(
                active, tool, arguments)
            failed = error is not None
        latency_ms = (time.perf_counter() - t0) * 1000
        state = active.ledger.snapshot()
        action: Row = {
            "id": uuid.uuid4().hex, "actor": actor, "channel": "tool", "name": name,
            "inputs": arguments, "outputs": response, "outcome": "error" if failed else "success",
            "started_at": started, "duration_ns": int(latency_ms * 1e6),
            "tags": {"source": source, "evaluation": active.row["evaluation_id"]},
        }
        if error:
            action["error"] = {"type": source, "message": error}
        got = await self.runs.ingest(active.run_id, {"actions": [action]}, ADMIN)
        seq = int(got["first_seq"] or 0)
        row = active.row
        by_source = dict(row.get("by_source") or {})
        by_source[source] = by_source.get(source, 0) + 1
        row.update(tool_calls=int(row.get("tool_calls") or 0) + 1, by_source=by_source,
                   violations=int(row.get("violations") or 0) + len(violations), world=state,
                   simulator_cost_usd=float(row.get("simulator_cost_usd") or 0)
                   + (sim_cost or 0.0),
                   # A model with no known price: counted, so the run's cost is a lower
                   # bound rather than a made-up $0.
                   simulator_unpriced_calls=int(row.get("simulator_unpriced_calls") or 0)
                   + (sim_cost is None))
        fields = {k: row[k] for k in ("tool_calls", "by_source", "violations", "world",
                                      "simulator_cost_usd", "simulator_unpriced_calls")}
        call = {"run_id": active.run_id, "seq": seq, "source": source, "ops": ops,
                "violations": violations, "state": state, "latency_ms": latency_ms}

        def op(tx: Any) -> None:
            tx.insert_eval_call(call)
            tx.update_eval_run(active.run_id, fields)

        await self.engine.run(op)
        active.last_source = source
        active.history.append({"tool": name, "arguments": arguments, "response": response,
                               "source": source})
        del active.history[:-HISTORY]
        self.publish(row)
        return {"seq": seq, "source": source, "result": response, "error": error,
                "latency_ms": round(latency_ms, 3)}

    async def _forward(self, tool: Row, arguments: Row) -> tuple[str, Any, str | None]:
        try:
            response = await self.egress.post(tool["endpoint"], arguments,
                                              timeout=PASSTHROUGH_TIMEOUT_S)
        except httpx.HTTPError as exc:
            return "transport_error", None, f"{type(exc).__name__}: {exc}"
        if response.status_code >= 400:
            # The status only: an error page may tell readers of the run what the master can
            # reach that they cannot.
            return ("transport_error", None,
                    f"the tool endpoint answered HTTP {response.status_code}")
        try:
            return "passthrough", response.json(), None
        except ValueError:
            return "passthrough", response.text[:100_000], None

    async def _simulate(self, active: ActiveRun, tool: Row, arguments: Row
                        ) -> tuple[str, Any, str | None, list[Row], list[Row], float | None]:
        from titan.evals.simulator import simulate

        model = active.agent.get("simulator_model") or self.simulator_model
        loop = asyncio.get_running_loop()
        result = await loop.run_in_executor(None, lambda: simulate(
            tool, arguments, active.ledger.snapshot(), active.task.get("behavior_instructions"),
            list(active.history), model=model))
        cost = result.cost_usd  # None: a model with no known price
        if result.error:
            return "error", None, result.error, [], [], cost
        applied, violations = active.ledger.apply(result.ops)
        return ODYSSEY, result.response, None, applied, violations, cost

    # -- the agent's answer, its live events, a coding run's grading --------------------------
    async def accept_response(self, run_id: str, reply: Row, raw: str | None = None) -> Row:
        """Record the agent's final response (kept: a later answer replaces it)."""
        if not isinstance(reply, dict):
            raise ValidationFailed('the body must be {"final_response": "...", "messages": [...]}')
        final = reply.get("final_response")
        if not isinstance(final, str):
            raise ValidationFailed("final_response must be a string", details={
                "field": "final_response"})
        warnings = []
        messages = reply.get("messages")
        if messages is not None and not isinstance(messages, list):
            warnings.append("messages is not a list: ignored")
            messages = None
        known = {"final_response", "messages", "metadata"}
        extra = sorted(set(reply) - known)
        if extra:
            warnings.append(f"unknown fields in the response ignored: {', '.join(extra)}")
        # An answer may hold a NUL (escaped in an HTTP agent's JSON): kept as U+FFFD, as a
        # job's log keeps one. PostgreSQL's text holds none: the write failed there, and an
        # HTTP agent's run stayed running for good (a job agent's answer was a 400).
        fields = {"final_response": final[:200_000].replace("\x00", "\ufffd"),
                  "messages": messages,
                  "raw_response": (raw if raw is not None else dumps_short(reply)
                                   ).replace("\x00", "\ufffd")}
        active = self.active.get(run_id)
        if active is not None:
            fields["soft_warnings"] = list(active.row.get("soft_warnings") or []) + warnings
            active.row.update(fields)
        await self.engine.run(lambda tx: tx.update_eval_run(run_id, fields))
        return {"accepted": True, "soft_warnings": warnings}

    async def respond(self, run_id: str, body: Any, authorization: str | None,
                      user: UserCheck | None = None) -> Row:
        await self.caller(run_id, authorization, user)
        return await self.accept_response(run_id, body)

    async def events(self, run_id: str, body: Any, authorization: str | None,
                     actor: str | None, user: UserCheck | None = None) -> Row:
        """Live trace events: ``{"events": [{"kind", "data", "__occurred_at"?}]}`` (seed
        003's name; ``occurred_at`` is accepted too): epoch seconds or ISO 8601, the agent's
        clock, by which the timeline orders the event; without it, its arrival here. A
        malformed handoff is refused and recorded on the run (:mod:`.trace_events`)."""
        active = await self.caller(run_id, authorization, user)
        try:
            actions = trace_events.actions(body, actor)
        except ValidationFailed as exc:
            if exc.code == "bad_handoff":
                self._refuse(active, "bad_handoff", exc.message)
            raise
        said = set(active.row.get("soft_warnings") or [])  # once each, however often
        warnings = [w for w in dict.fromkeys(trace_events.unknown_targets(
            actions, active.agent.get("topology"), (ROOT_ACTOR, JOB_ROOT_ACTOR)))
            if w not in said]
        if warnings:
            self._note(active, warnings)
        return await self.runs.ingest(active.run_id, {"actions": actions}, ADMIN)

    async def coding(self, run_id: str, body: Any, authorization: str | None,
                     user: UserCheck | None = None) -> Row:
        await self.caller(run_id, authorization, user, grading=True)
        coding = coding_report.checked(body)
        if len(json.dumps(coding, default=str)) > 5_000_000:
            raise ValidationFailed("a coding result is at most 5 MB")
        await self.engine.run(lambda tx: tx.update_eval_run(run_id, {"coding": coding}))
        return {"accepted": True}

