"""Agent telemetry on the master: runs opened and closed, actions appended, budgets enforced.

Every write goes through the group-commit writer like the scheduler's, so an acknowledged
batch of actions is durable; events (``run_created``, ``action_created``, ``run_updated``,
``run_completed``, ``run_failed``) are published only after the commit. A run whose spend
crosses its budget is blocked in the same transaction that recorded the spend: its further LLM
calls are refused by the SDK (outcome ``blocked``) and its READY jobs are held by the
scheduler until an operator raises the budget.

The service is the event loop's side of it (commit, then publish, hold and tell the
listeners); what happens inside the transactions lives beside it: :mod:`.actions` (a batch
appended), :mod:`.updates` (a run's fields and status as an update changes them),
:mod:`.budgets`, :mod:`.stages` (what a run's DAGs open, derive and end), :mod:`.events` and
:mod:`.lookup`.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from typing import TYPE_CHECKING, Any, Protocol

from titan.errors import Conflict, Forbidden, NotFound
from titan.master.auth.tokens import OPERATE, Principal
from titan.master.runs import compliance, job_scope, liveness
from titan.master.runs import ingest as action_input
from titan.master.runs.actions import append_batch, prepare_batch
from titan.master.runs.agent_events import AgentRunEvents
from titan.master.runs.budgets import budget_state, check_budget
from titan.master.runs.events import TERMINAL_RUN, run_summary
from titan.master.runs.ledger import LedgerChecks
from titan.master.runs.lookup import reopening
from titan.master.runs.stages import orphaned_replay_end, record_code_version, stage_submitted
from titan.master.runs.updates import apply_update
from titan.master.scheduling.state import TERMINAL, Changes
from titan.redaction import Redactor
from titan.status import RunStatus
from titan.storage.base import Row, RunQuery, Transaction
from titan.storage.blobs import BlobStore

if TYPE_CHECKING:
    from titan.master.scheduling.engine import Engine



class RunListener(Protocol):
    """What hears of recorded telemetry once it has committed (the OTLP exporter): called on
    the event loop, so it only queues what it needs."""

    def actions_recorded(self, run: Row, actions: list[Row]) -> None:
        """``actions`` (as stored, without their seq) were appended to ``run``."""

    def run_changed(self, before: Row, run: Row) -> None:
        """The run row changed (its status, totals, budget state)."""


class RunService:
    """Agent runs on the master: opening and ending them (a run whose driver finished ends
    with its last stage), budgets and the holds they put on jobs, and action batches."""

    def __init__(self, engine: Engine, blobs: BlobStore,
                 redactor: Redactor | None = None) -> None:
        self.engine = engine
        self.blobs = blobs
        self.redactor = redactor  # None: PII redaction is off (TITAN_PII_REDACTION)
        # Runs whose driver has finished while stages still ran: settled when they end.
        self.ending: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.ledger = LedgerChecks()  # the Activity Ledger's verdict per run
        self.listeners: list[RunListener] = []
        # A DAG naming a run opens it, and its last stage ends it (see Engine.stage_hooks).
        engine.stage_hooks = self
        self.agent_events = AgentRunEvents(engine, engine.hub, self._spawn)
        #: The runs each job started or kept alive (an orchestrator running as a job): when
        #: the job ends for good, those it started and still held open end too
        #: (liveness.end_runs_of).
        self.drivers: dict[int, set[str]] = {}
        engine.job_listeners.append(self.job_changed)

    @property
    def hub(self) -> Any:
        return self.engine.hub

    async def load(self) -> None:
        """At start: which runs are blocked, and which wait for their last stage to end.

        A waiting run is settled again here rather than only when its stage next changes:
        the stage may have ended before the crash (the master died between the stage's commit
        and the run's) or during recovery, and then no change would ever come."""
        def q(tx: Transaction) -> tuple[list[str], list[str]]:
            rows = list(tx.iter_runs(RunQuery(statuses=("running",))))
            return ([r["id"] for r in rows if r["blocked"]],
                    [r["id"] for r in rows if r["ended_at"] is not None])
        blocked, ending = await self.engine.read(q)
        self.drivers = await self.engine.read(liveness.driving_jobs)
        for run_id in blocked:
            self.engine.sched.block_run(run_id)
        for run_id in ending:
            # Ends it if its last stage has ended; otherwise it waits in self.ending again.
            await self._settle(run_id)

    # -- runs ---------------------------------------------------------------------------------
    async def create_run(self, body: Any, who: Principal, *,
                         once: bool = False) -> tuple[Row, bool]:
        """Open a run, or fill in one of that id (a stage opened it first, a resend). ``once``
        (``POST /runs``): a run that has ended is not opened again (Conflict), unless the
        body is its own start again (the same ``started_at``: a resend) or a later attempt
        of the job that opened it opens it (its retry: running again, see lookup.reopening)."""
        fields = action_input.parse_run(body, creating=True)
        # An evaluation's agent under test records into its own run, which it does not open
        # (POST /runs/batch passes its "create" ops here).
        job_scope.check_agent_run(self.engine.sched, str(fields.get("id") or ""), who, "open")
        if fields.get("budget_usd") is not None and who.role not in OPERATE:
            raise Forbidden("only an operator or admin may set a run's budget")
        compliance.check_retention_class(fields, who)
        await job_scope.check_replay_of(self.engine, fields, who)
        pii = compliance.redact_run_error(self.redactor, fields)
        now = time.time()
        run_id = fields.pop("id", None) or f"run-{secrets.token_hex(6)}"
        # Its process will show signs of life: watched from now, not from the first of them
        # (a process that exited or was killed before one left the run running for good).
        watched = fields.pop("watched", False)
        row = {"id": run_id, "created_at": now, "started_at": fields.pop("started_at", now),
               "status": "running", **{k: v for k, v in fields.items() if k != "status"},
               "started_by": compliance.started_by(who, self.engine.sched), "pii": pii or None,
               "alive_at": now if watched else None}

        own = job_scope.own_run(self.engine.sched, who) if who.role == "job" else None
        reopens: list[tuple[Row, Row]] = []  # (before, after) of a run a retry opened again

        def op(tx: Transaction) -> tuple[Row, bool]:
            created = tx.create_run(row)
            if not created:
                existing = tx.get_run(run_id)
                assert existing is not None
                by = existing.get("started_by") or {}
                if who.role == "job" and own != run_id and not (
                        by.get("role") == "job" and by.get("job") == who.job):
                    # Its labels and class were filled in: a job could put another's run on
                    # legal hold, out of retention's reach, or relabel it.
                    raise Forbidden(f"a job may only write into its own agent run or one it "
                                    f"started, not {run_id!r}")
                job_scope.check_person_opening(existing, who)
                if once and existing["status"] != RunStatus.RUNNING \
                        and existing["started_at"] != row["started_at"]:
                    # Its job's next attempt opens it again (lookup.reopening); else 409.
                    changes = reopening(existing, row, who, watched)
                    tx.update_run(run_id, changes)
                    reopens.append((existing, {**existing, **changes}))
                    return reopens[-1][1], False
                fill = {k: v for k, v in row.items()
                        if k in ("agent_id", "agent_version", "code_version", "tags",
                                 "started_by") and v is not None and existing.get(k) is None}
                # A stage may have opened the run first, with the default class: a class
                # asked for at creation still applies (every other class keeps more).
                if existing["retention_class"] == "standard" and row.get("retention_class"):
                    fill["retention_class"] = row["retention_class"]
                if watched and existing["status"] == RunStatus.RUNNING \
                        and existing["ended_at"] is None and existing["alive_at"] is None:
                    fill["alive_at"] = now
                if fill:
                    tx.update_run(run_id, fill)
            found = tx.get_run(run_id)
            assert found is not None
            return found, created

        run, created = await self.engine.run(op)
        if who.role == "job" and who.job is not None and (created or reopens):
            self.drivers.setdefault(who.job, set()).add(run["id"])
        if reopens:
            self.ending.discard(run["id"])
            self.after_run_change(*reopens[-1])
            return run, created
        self.hub.publish("run_created" if created else "run_updated", run_summary(run))
        return run, created

    async def update_run(self, run_id: str, body: Any, who: Principal, *,
                         silent_since: float | None = None) -> Row:
        """``PATCH /runs/{id}``; ``silent_since``: the reaper's (:mod:`.liveness`) end of a run
        silent since then, refused (Conflict) if it has shown a sign of life since."""
        await self.check_may_drive(run_id, who)
        fields = action_input.parse_run(body, creating=False)
        if "budget_usd" in fields and who.role not in OPERATE:
            raise Forbidden("only an operator or admin may change a run's budget")
        await job_scope.check_replay_of(self.engine, fields, who)
        pii = compliance.redact_run_error(self.redactor, fields)
        now = time.time()
        own_dag = job_scope.own_dag_ending(self.engine.sched, who)

        before, run = await self.engine.run(lambda tx: apply_update(
            tx, run_id, fields, who, pii=pii, now=now, own_dag=own_dag,
            silent_since=silent_since))
        if run["status"] == RunStatus.RUNNING and run["ended_at"] is not None:
            self.ending.add(run_id)
        else:
            self.ending.discard(run_id)
        self.after_run_change(before, run)
        return run

    async def stage_retried(self, run_id: str) -> None:
        """A user runs a stage of ``run_id`` again (a job or DAG retry): a run that had
        ended with that stage reopens, its driver done, and ends again when the stage does
        (as when a stage still runs as its driver exits). A cancelled run stays so."""
        now = time.time()

        def op(tx: Transaction) -> tuple[Row, Row] | None:
            run = tx.get_run(run_id)
            if run is None or run["status"] not in (RunStatus.COMPLETED, RunStatus.FAILED):
                return None
            before = dict(run)
            changes = {"status": RunStatus.RUNNING, "error": None,
                       "ended_at": run["ended_at"] or now}
            tx.update_run(run_id, changes)
            run.update(changes)
            return before, run

        reopened = await self.engine.run(op)
        if reopened is not None:
            self.ending.add(run_id)
            self.after_run_change(*reopened)
            await self._settle(run_id)  # the stage may have ended already (a quick job)

    # -- the engine's stage hooks (scheduling/engine_core.py StageHooks) ---------------------
    def stage_submitted(self, tx: Transaction, run_id: str, agent_id: str | None,
                        now: float, started_by: Row | None = None) -> list[tuple[str, Row]]:
        return stage_submitted(tx, run_id, agent_id, now, started_by)

    def stage_stored(self, tx: Transaction, run_id: str) -> None:
        record_code_version(tx, run_id)

    def stage_changed(self, run_id: str, dag_id: int, status: str) -> None:
        """A stage of a run was created or changed status (committed): said as the run's
        event, and if the run's driver already finished and this stage has ended, the run is
        settled now. A stage cancelled or failed may be a replay's DRIVER, which ends its run
        itself unless it was killed: then it is ended here."""
        self.agent_events.changed(run_id, dag_id, status)
        if run_id in self.ending and status not in ("WAITING", "RUNNING"):
            self.ending.discard(run_id)
            self._spawn(self._settle(run_id))
        elif status in ("CANCELLED", "FAILED") and "-replay-" in run_id:
            # (a replay's id, replays/service.py: other runs' failed stages read nothing)
            self._spawn(self._end_orphaned_replay(run_id))

    def job_changed(self, job_id: int, state: str) -> None:
        """A job's state changed: if it drove runs and has ended for good (cancelled, failed,
        timed out), those it started and still held open end now, not a silent timeout later.
        A job going back to wait for its retry keeps them: its next attempt may drive the
        same run again (ended "crashed" meanwhile, the run finished with that error)."""
        if state in TERMINAL and job_id in self.drivers:
            self._spawn(liveness.end_runs_of(self, job_id, state, self.drivers.pop(job_id)))

    def stage_opened_by_job(self, job_id: int, run_id: str) -> None:
        """Job ``job_id`` submitted a stage of ``run_id`` (committed): if it opened the run,
        the run ends with the job should the job end first, even before the first sign of
        life its SDK sends from a thread after the submission (a job cancelled in between
        left its run running for ever). A job ended meanwhile ends it now."""
        job = self.engine.sched.jobs.get(job_id)
        if job is None:  # its DAG ended and left memory: nothing to go by
            return
        if job.state in TERMINAL:
            self._spawn(liveness.end_runs_of(self, job_id, job.state, {run_id}))
        else:
            self.drivers.setdefault(job_id, set()).add(run_id)

    def _spawn(self, work: Any) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _end_orphaned_replay(self, run_id: str) -> None:
        """A replay whose DRIVER job was cancelled (Ctrl-C on `titan replay`, `titan cancel`)
        or died never ends its run: it stayed running for good. Ended as its driver did."""
        end = await self.engine.read(lambda tx: orphaned_replay_end(tx, run_id))
        if end is None:
            return
        try:
            await self.update_run(run_id, end, Principal(role="admin"))
        except (NotFound, Conflict):
            pass

    async def driver_done(self, run_id: str) -> None:
        """The run's driver is done (a schedule once it has submitted a fire's stage): it
        ends with its last stage, now if that has ended, else when it does."""
        await self._settle(run_id)

    async def _settle(self, run_id: str) -> None:
        try:
            await self.update_run(run_id, {"status": "ended"}, Principal(role="admin"))
        except (NotFound, Conflict):
            pass

    def after_run_change(self, before: Row, run: Row) -> None:
        for listener in self.listeners:
            listener.run_changed(before, run)
        if run["status"] != before["status"]:
            self.hub.publish(TERMINAL_RUN.get(run["status"], "run_updated"), run_summary(run))
        else:
            self.hub.publish("run_updated", run_summary(run))
        if run["status"] != before["status"] \
                or (not before.get("action_count") and run.get("action_count")):
            # What its Agent Runs row says changed (its first action: WAITING no more).
            self.agent_events.changed(run["id"])
        if run["blocked"] != before["blocked"]:
            self._apply_hold(run["id"], run["blocked"])

    def _apply_hold(self, run_id: str, blocked: bool) -> None:
        if blocked:
            self.engine.sched.block_run(run_id)
            return
        ch = Changes()
        self.engine.sched.release_run(run_id, ch)
        if not ch.empty() or ch.dispatch:
            self.engine.submit(ch)

    async def set_agent_budget(self, agent_id: str, budget: float | None) -> Row:
        now = time.time()

        def op(tx: Transaction) -> tuple[Row, list[tuple[Row, Row]]]:
            tx.set_agent_budget(agent_id, budget, now)
            changed = []
            for run in tx.iter_runs(RunQuery(statuses=("running",), agent=agent_id)):
                if run["budget_usd"] is None:
                    before = dict(run)
                    if check_budget(tx, run, now):
                        changed.append((before, run))
            agent = tx.get_agent(agent_id)
            assert agent is not None
            return agent, changed

        agent, changed = await self.engine.run(op)
        for before, run in changed:
            self.after_run_change(before, run)
        return agent

    # -- actions ------------------------------------------------------------------------------
    async def check_may_drive(self, run_id: str, who: Principal, doing: str = "drive") -> None:
        await job_scope.check_may_drive(self.engine, run_id, who, doing)

    async def check_stage(self, run_id: str, who: Principal) -> None:
        await job_scope.check_stage(self.engine, run_id, who)

    async def ingest(self, run_id: str, body: Any, who: Principal) -> Row:
        await self.check_may_drive(run_id, who, "write into")
        now = time.time()  # each action's recorded_at, which its ledger content hash covers
        loop = asyncio.get_running_loop()
        rows = await loop.run_in_executor(None, prepare_batch, body, now, self.redactor,
                                          self.blobs)
        before, run, fresh, first = await self.engine.run(
            lambda tx: append_batch(tx, run_id, rows, now))
        if self.hub.watched:
            for i, r in enumerate(fresh):
                self.hub.publish("action_created", {
                    "run_id": run_id, "seq": first + i, "id": r["id"], "actor": r["actor"],
                    "channel": r["channel"], "name": r["name"], "outcome": r["outcome"],
                    "cost_usd": r["cost_usd"], "duration_ns": r["duration_ns"],
                    "started_at": r["started_at"], "model": r["model"]})
        if fresh:
            for listener in self.listeners:
                listener.actions_recorded(run, fresh)
            self.after_run_change(before, run)
        return {"accepted": len(fresh), "duplicates": len(rows) - len(fresh),
                "first_seq": first if fresh else None, "run": budget_state(run)}
