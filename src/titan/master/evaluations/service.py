"""Evaluations on the master: dispatching a task, settling a run; an evaluation and its tasks
are registered by :mod:`titan.master.evaluations.registration`.

A dispatch makes an agent run (the evaluation run's id is the agent run's id, so the agent's
LLM calls and its proxied tool calls are that run's actions) and starts the agent under test:
a Titan job, or a POST to a registered endpoint (:mod:`titan.master.evaluations.dispatch`). While it
works, its tool calls come through the proxy (:mod:`titan.master.evaluations.proxy`), which keeps the
run's world ledger. When the agent is done the run is settled here: its status and, for a
failure, the ``error_class`` derived from what happened; then the judge scores it in the
background, and a transient transport failure is dispatched once more automatically.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import time
from typing import TYPE_CHECKING, Any

from titan.errors import Conflict, NotFound
from titan.evals.failures import RETRYABLE
from titan.evals.ledger import Ledger
from titan.master.auth.tokens import token_hash
from titan.master.egress import EgressPolicy
from titan.master.evaluations import hierarchy, registration
from titan.master.evaluations.active import ADMIN, ActiveRun
from titan.master.evaluations.dispatch import Dispatcher, run_id_of
from titan.master.evaluations.judging import judge_run, trajectory
from titan.master.evaluations.proxy import ToolProxy
from titan.master_proof import stored_ref
from titan.status import EVAL_TERMINAL
from titan.storage.base import Row, Transaction

if TYPE_CHECKING:
    from titan.master.runs.service import RunService
    from titan.master.scheduling.engine import Engine
    from titan.storage.blobs import BlobStore

log = logging.getLogger("titan.master.evaluations.service")


class Evaluations:
    def __init__(self, engine: Engine, blobs: BlobStore, runs: RunService,
                 egress: EgressPolicy | None = None) -> None:
        self.engine = engine
        self.blobs = blobs
        self.runs = runs
        self.active: dict[str, ActiveRun] = {}
        # Which models play the tools and judge when an evaluation does not say: the LLM
        # layer's default (the local model) unless these are set.
        self.simulator_model = os.environ.get("TITAN_EVAL_SIMULATOR_MODEL") or None
        self.judge_model = os.environ.get("TITAN_EVAL_JUDGE_MODEL") or None
        # Where the agent endpoint and passthrough tool calls may go (master/egress.py).
        self.egress = egress if egress is not None else EgressPolicy.from_env()
        self._tasks: set[asyncio.Future[Any]] = set()
        self._cancelled: dict[str, float] = {}  # evaluation → when it was last cancelled
        # Its parts get what they use, not the service (see evaluations/active.py).
        self.proxy = ToolProxy(engine, runs, self.egress, self.active, spawn=self.spawn,
                               publish=self.publish, simulator_model=self.simulator_model)
        self.dispatcher = Dispatcher(engine, blobs, self.egress, self.proxy, lifecycle=self,
                                     spawn=self.spawn)

    def spawn(self, coro: Any) -> asyncio.Future[Any]:
        """Run background work (waiting for an agent, judging) that outlives the request."""
        task: asyncio.Future[Any] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def load(self) -> None:
        """Pick up the runs a previous master left in flight."""
        rows = await self.engine.read(lambda tx: [
            (r, tx.get_task(r["evaluation_id"], r["task_id"]), trajectory(tx, r["id"]))
            for r in tx.unfinished_eval_runs()])
        waiting: list[tuple[Row, Row]] = []
        for row, task, calls in rows:
            if task is None:
                continue
            if row["status"] == "pending" and not calls:
                waiting.append((row, task["seed"]))  # not started yet: starts now
                continue
            self._activate(row, task["seed"]).recall(calls)
            self.dispatcher.resume(self.active[row["id"]])
        if waiting:
            self.spawn(self._start_waiting(waiting))

    async def _start_waiting(self, waiting: list[tuple[Row, Row]]) -> None:
        """Start the runs a previous master recorded but had not started (a large suite is
        started after the reply, a few a second): they ended as internal_error ("the agent's
        job was never submitted"). A job agent whose job went in before the stop is watched
        as a running one; the others start afresh, with a new proxy token (only its hash
        was kept)."""
        for row, seed in waiting:
            run_id: str = row["id"]

            def submitted(tx: Transaction, run_id: str = run_id) -> bool:
                return bool(tx.list_dags(agent_run_id=run_id, limit=1)[0])

            if row["agent"]["kind"] != "http" and await self.engine.read(submitted):
                self.dispatcher.resume(self._activate(row, seed))
                await self.mark_running(run_id)
                continue
            token = "tr_" + secrets.token_urlsafe(24)
            fresh = {**row, "token_hash": token_hash(token)}

            def renew(tx: Transaction, run_id: str = run_id, digest: str = fresh["token_hash"]
                      ) -> None:
                tx.update_eval_run(run_id, {"token_hash": digest})

            await self.engine.run(renew)
            await self._start(fresh, token, seed)

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()

    # -- evaluations and tasks (registration.py) ---------------------------------------------
    async def put_evaluation(self, evaluation_id: str, body: Any) -> Row:
        row = await registration.put_evaluation(self.engine, self.egress, evaluation_id, body)
        self.changed(evaluation_id, "put")
        return row

    async def add_tasks(self, evaluation_id: str, body: Any, *, run: bool = True) -> Row:
        """Seed tasks and, as seed 003 has it ("runs are created when a task is seeded"),
        dispatch each one's run; ``run=False`` (or ``"run": false`` in the body) seeds
        without running."""
        seeded, run = await registration.seed_tasks(self.engine, evaluation_id, body, run=run)
        self.changed(evaluation_id, "tasks")
        # Committed first: a dispatch that fails (no agent script, say) leaves the tasks
        # seeded, and the reply's runs say what was started.
        seeded["runs"] = await self.dispatch(evaluation_id, seeded["tasks"]) if run else []
        return seeded

    # -- dispatch -----------------------------------------------------------------------------
    async def dispatch(self, evaluation_id: str, task_ids: list[str] | None, *,
                       source_run: str | None = None,
                       redispatch_of: str | None = None) -> list[Row]:
        """Start one run per task (every task when ``task_ids`` is None)."""

        def read(tx: Transaction) -> tuple[Row, list[Row]]:
            evaluation = tx.get_evaluation(evaluation_id)
            if evaluation is None:
                raise NotFound(f"no evaluation {evaluation_id!r}")
            if task_ids is None:
                return evaluation, tx.list_tasks(evaluation_id)
            found = []
            for tid in task_ids:
                task = tx.get_task(evaluation_id, tid)
                if task is None:
                    raise NotFound(f"evaluation {evaluation_id!r} has no task {tid!r}")
                found.append(task)
            return evaluation, found

        evaluation, tasks = await self.engine.read(read)
        if not tasks:
            raise Conflict(f"evaluation {evaluation_id!r} has no tasks to run; add some first "
                           f"(POST /api/v1/evaluations/{evaluation_id}/tasks)")
        # Every run is recorded (pending) before the reply, and started after it: started
        # one by one within the request, a suite of 1,000 tasks outlasted the client's
        # timeout ("did not answer in time") and the dispatch stopped where the client left.
        now = time.time()
        planned = [self._plan(evaluation, task, source_run, redispatch_of, now)
                   for task in tasks]
        await self.engine.run(lambda tx: [tx.insert_eval_run(row) for row, _, _ in planned])
        for row, _, _ in planned:
            self.publish(row)
        self.spawn(self._start_all(planned))
        return [self.summary(row) for row, _, _ in planned]

    @staticmethod
    def _plan(evaluation: Row, task: Row, source_run: str | None, redispatch_of: str | None,
              now: float) -> tuple[Row, str, Row]:
        """A new run's row (pending), its proxy token and its task's seed."""
        seed = task["seed"]
        token = "tr_" + secrets.token_urlsafe(24)
        return {
            "id": run_id_of(evaluation["id"], task["id"]),
            "evaluation_id": evaluation["id"], "task_id": task["id"],
            "status": "pending", "agent": evaluation["agent"], "tool_calls": 0,
            "by_source": {}, "violations": 0, "proxy_refusals": 0,
            "world": Ledger(seed.get("initial_state") or {}).snapshot(),
            "source_run": source_run, "redispatch_of": redispatch_of,
            "token_hash": token_hash(token), "created_at": now, "soft_warnings": [],
        }, token, seed

    async def _start_all(self, planned: list[tuple[Row, str, Row]]) -> None:
        for row, token, seed in planned:
            await self._start(row, token, seed)

    async def _start(self, row: Row, token: str, seed: Row) -> None:
        run_id, agent = row["id"], row["agent"]
        now = await self.engine.read(lambda tx: tx.get_eval_run(run_id))
        if now is None or now["status"] in EVAL_TERMINAL:
            return  # cancelled (titan eval cancel) before its turn came
        try:
            await self.runs.create_run({
                "id": run_id, "agent_id": agent["name"], "agent_version": agent.get("version"),
                "tags": {"evaluation": row["evaluation_id"], "task": row["task_id"]}}, ADMIN)
            await self.dispatcher.start(self._activate(row, seed), token)
        except Exception as exc:  # a bug or a refusal of the job: the run must still end
            log.exception("dispatching %s failed", run_id)
            await self.settle(run_id, "failed", "internal_error",
                              f"Titan could not dispatch the agent: {exc}")

    def _activate(self, row: Row, seed: Row) -> ActiveRun:
        active = ActiveRun(row=row, task=seed, agent=row["agent"],
                           ledger=Ledger.from_snapshot(row["world"]) if row.get("world")
                           else Ledger(seed.get("initial_state") or {}))
        self.active[row["id"]] = active
        return active

    async def mark_running(self, run_id: str) -> bool:
        """The run's agent is starting; False when the run was cancelled meanwhile (it stays
        so: its agent must not start, and its agent run ends as it did)."""
        now = time.time()

        def op(tx: Transaction) -> str | None:
            row = tx.get_eval_run(run_id)
            if row is None or row["status"] in EVAL_TERMINAL:
                return row["status"] if row else "cancelled"
            tx.update_eval_run(run_id, {"status": "running", "started_at": now})
            return None

        ended = await self.engine.run(op)
        if ended is not None:
            self.active.pop(run_id, None)
            with contextlib.suppress(Conflict, NotFound):
                await self.runs.update_run(run_id, {"status": ended}, ADMIN)
            return False
        active = self.active.get(run_id)
        if active is not None:
            active.row.update(status="running", started_at=now)
            self.publish(active.row)
        return True

    # -- settling -----------------------------------------------------------------------------
    async def settle(self, run_id: str, status: str, error_class: str | None = None,
                     detail: str | None = None, extra: Row | None = None) -> Row:
        """End a run once: its status, error class, the agent run's end; then judge it and,
        for a transient failure, dispatch it again."""
        active = self.active.pop(run_id, None)
        if status == "failed" and active is not None:
            error_class = self._refine(active, error_class)
        now = time.time()
        # What the agent said, quoted in the detail or kept as its raw answer, may hold a NUL
        # (a raw byte in an HTTP agent's reply): U+FFFD, as in a job's log. PostgreSQL's text
        # holds none, and the run's end failed there: it stayed running for good.
        detail = None if detail is None else detail.replace("\x00", "\ufffd")
        ended = {k: v.replace("\x00", "\ufffd") if isinstance(v, str) else v
                 for k, v in (extra or {}).items()}
        fields: Row = {"status": status, "error_class": error_class if status == "failed"
                       else None, "error_detail": detail, "ended_at": now, **ended}

        def op(tx: Transaction) -> Row:
            row = tx.get_eval_run(run_id)
            if row is None:
                raise NotFound(f"no evaluation run {run_id!r}")
            if row["status"] in EVAL_TERMINAL:
                return row
            if row.get("started_at") is None:
                fields["started_at"] = now
            tx.update_eval_run(run_id, fields)
            return row | fields

        row = await self.engine.run(op)
        try:
            await self.runs.update_run(run_id, {"status": status if status != "pending"
                                                else "failed", "error": detail}, ADMIN)
        except (Conflict, NotFound):
            pass  # the agent run already ended (an agent that ended it itself)
        self.publish(row)
        if row["status"] == status and fields.get("ended_at") == row.get("ended_at"):
            self.spawn(self._after(row))
        return row

    def token_digest(self, ref: str) -> str | None:
        """The hash of the token of a run in flight that ``ref`` names
        (titan/master_proof.py): an HTTP agent's proxy asks the master to prove it holds
        the run's token before sending it."""
        for active in list(self.active.values()):
            digest = active.row.get("token_hash")
            if digest and stored_ref(digest) == ref:
                return str(digest)
        return None

    def _refine(self, active: ActiveRun, error_class: str | None) -> str | None:
        """A crash explained by what happened at the proxy is classed by that cause."""
        if error_class not in ("agent_5xx", "agent_bad_response", None):
            return error_class
        kinds = {r["kind"] for r in active.refusals}
        if "bad_arguments" in kinds:
            return "contract_error"
        # A request without the run's token names the agent only if the agent never called
        # with it: anyone may send one (knowing the run id), an agent that did is set up.
        if "unknown_tool" in kinds or "bad_token" in kinds and not active.calls:
            return "proxy_misconfigured"
        if active.last_source == "transport_error":
            return "transport_error"
        return error_class

    async def _after(self, row: Row) -> None:
        try:
            await judge_run(self.engine, row["id"], judge_model=self.judge_model,
                            publish=self.publish)
        except Exception:
            log.exception("judging %s failed", row["id"])
        if (row["status"] == "failed" and row.get("error_class") in RETRYABLE
                and not row.get("redispatch_of")
                and self._cancelled.get(row["evaluation_id"], 0) < row["created_at"]):
            log.info("%s failed with %s: dispatching it once more", row["id"],
                     row["error_class"])
            await self.dispatch(row["evaluation_id"], [row["task_id"]],
                                source_run=row.get("source_run"), redispatch_of=row["id"])

    async def cancel(self, evaluation_id: str, task_ids: list[str] | None = None) -> Row:
        """Cancel every run of the evaluation (of ``task_ids`` only, when given) that is
        still pending or running, in one transaction: each ends ``cancelled`` (not failed, so
        never dispatched again), its endpoint call is dropped and, just after, its agent's
        job cancelled. Says which runs it cancelled. (Run by run, 1,000 runs took 37 s.)"""
        now, detail = time.time(), "cancelled with titan eval cancel"

        def op(tx: Transaction) -> list[Row]:
            if tx.get_evaluation(evaluation_id) is None:
                raise NotFound(f"no evaluation {evaluation_id!r}")
            ended = []
            for run in tx.unfinished_eval_runs():
                if run["evaluation_id"] != evaluation_id or (
                        task_ids is not None and run["task_id"] not in task_ids):
                    continue
                fields = {"status": "cancelled", "error_class": None, "error_detail": detail,
                          "ended_at": now, "started_at": run.get("started_at") or now}
                tx.update_eval_run(run["id"], fields)
                ended.append(run | fields)
            return ended

        if task_ids is None:
            self._cancelled[evaluation_id] = now
        ended = await self.engine.run(op)
        for row in ended:
            self.active.pop(row["id"], None)  # the proxy refuses its agent's calls from now
            self.publish(row)
        self.dispatcher.drop_calls([r["id"] for r in ended])
        self.spawn(self._cancelled_runs(ended, detail))
        return {"evaluation": evaluation_id, "cancelled": [self.summary(r) for r in ended]}

    async def _cancelled_runs(self, rows: list[Row], detail: str) -> None:
        """After a cancel: the agents' jobs (one commit), the agent runs' ends, the cards."""
        await self.engine.cancel_stages_of(*(r["id"] for r in rows))
        for row in rows:
            with contextlib.suppress(Conflict, NotFound):  # never created, or ended itself
                await self.runs.update_run(row["id"], {"status": "cancelled", "error": detail},
                                           ADMIN)
            await self._after(row)

    async def rerun(self, evaluation_id: str, task_id: str, run_id: str) -> Row:
        # The lookups the project routes use too: the same 404 says which level is missing.
        await self.engine.read(lambda tx: hierarchy.check_run(tx, evaluation_id, task_id,
                                                                run_id))
        started = await self.dispatch(evaluation_id, [task_id], source_run=run_id)
        return {"source_run_id": run_id, "run_id": started[0]["id"],
                "status": started[0]["status"]}

    # -- views --------------------------------------------------------------------------------
    @staticmethod
    def summary(row: Row) -> Row:
        keys = ("id", "evaluation_id", "task_id", "status", "error_class", "error_detail",
                "tool_calls", "by_source", "created_at", "started_at", "ended_at",
                "source_run", "redispatch_of")
        return {k: row.get(k) for k in keys}

    def changed(self, evaluation_id: str, op: str) -> None:
        """An evaluation created or edited (``put``), seeded (``tasks``) or ``deleted``: the
        Evaluations and Projects lists, and its Data Explorer, re-read themselves on it (a run
        event alone left a new evaluation off an open list until a reload)."""
        self.engine.hub.publish("evaluation_updated", {"id": evaluation_id, "op": op})

    def publish(self, row: Row) -> None:
        if self.engine.hub.watched:
            self.engine.hub.publish("eval_run_updated", self.summary(row))
