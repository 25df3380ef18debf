"""Agent telemetry on the master: runs opened and closed, actions appended, budgets enforced.

Every write goes through the group-commit writer like the scheduler's, so an acknowledged
batch of actions is durable; events (``run_created``, ``action_created``, ``run_updated``,
``run_completed``, ``run_failed``) are published only after the commit. A run whose spend
crosses its budget is blocked in the same transaction that recorded the spend: its further LLM
calls are refused by the SDK (outcome ``blocked``) and its READY jobs are held by the
scheduler until an operator raises the budget.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
import time
from collections import Counter
from typing import TYPE_CHECKING, Any, Protocol

from titan import ledger
from titan.errors import Conflict, Forbidden, NotFound, ValidationFailed
from titan.master.auth.tokens import OPERATE, Principal
from titan.master.runs import compliance
from titan.master.runs import ingest as action_input
from titan.master.runs.ledger import LedgerChecks
from titan.master.scheduling.state import Changes, dag_status
from titan.redaction import Redactor, merge
from titan.status import RunStatus
from titan.storage.base import Row, RunQuery, Transaction
from titan.storage.blobs import BlobStore
from titan.trace.naming import agent_of_run

if TYPE_CHECKING:
    from titan.master.scheduling.engine import Engine

log = logging.getLogger("titan.master")
#: The event a run ending in each status publishes (a cancel is an ordinary update).
TERMINAL_RUN = {RunStatus.COMPLETED: "run_completed", RunStatus.FAILED: "run_failed",
                RunStatus.CANCELLED: "run_updated"}
INLINE_BYTES = 64 * 1024  # inputs/outputs larger than this go to the blob store


def effective_budget(tx: Transaction, run: Row) -> float | None:
    if run.get("budget_usd") is not None:
        return float(run["budget_usd"])
    if run.get("agent_id"):
        agent = tx.get_agent(run["agent_id"])
        if agent is not None and agent["budget_usd"] is not None:
            return float(agent["budget_usd"])
    return None


def _check_budget(tx: Transaction, run: Row, now: float) -> Row:
    """Block the run if its spend is past its budget, release it if no longer; returns the
    fields changed."""
    budget = effective_budget(tx, run)
    over = budget is not None and run["cost_usd"] > budget
    changed: Row = {}
    if over and not run["blocked"]:
        changed = {"blocked": True, "over_budget_at": run.get("over_budget_at") or now}
    elif not over and run["blocked"]:
        changed = {"blocked": False}
    if changed:
        tx.update_run(run["id"], changed)
        run.update(changed)
    return changed


def run_summary(run: Row) -> Row:
    """The fields live pages patch from an event (the run card's)."""
    keys = ("id", "agent_id", "status", "started_at", "ended_at", "cost_usd", "action_count",
            "success_count", "error_count", "blocked_count", "replayed_count", "blocked",
            "over_budget_at", "budget_usd", "last_action_at")
    return {k: run.get(k) for k in keys}


class RunListener(Protocol):
    """What hears of recorded telemetry once it has committed (the OTLP exporter): called on
    the event loop, so it only queues what it needs."""

    def actions_recorded(self, run: Row, actions: list[Row]) -> None:
        """``actions`` (as stored, without their seq) were appended to ``run``."""

    def run_changed(self, before: Row, run: Row) -> None:
        """The run row changed (its status, totals, budget state)."""


def code_version(scripts: list[tuple[str, str]]) -> str | None:
    if not scripts:
        return None
    h = hashlib.sha256()
    for name, sha in scripts:
        h.update(f"{name}\0{sha}\n".encode())
    return h.hexdigest()[:16]


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
        engine.stage_hooks = self  # a DAG naming a run opens it (see Engine.stage_hooks)
        engine.dag_listeners.append(self.dag_settled)  # and its last stage ends it

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
        for run_id in blocked:
            self.engine.sched.block_run(run_id)
        for run_id in ending:
            # Ends it if its last stage has ended; otherwise it waits in self.ending again.
            await self._settle(run_id)

    # -- runs ---------------------------------------------------------------------------------
    async def create_run(self, body: Any, who: Principal) -> tuple[Row, bool]:
        fields = action_input.parse_run(body, creating=True)
        if fields.get("budget_usd") is not None and who.role not in OPERATE:
            raise Forbidden("only an operator or admin may set a run's budget")
        compliance.check_retention_class(fields, who)
        pii = compliance.redact_run_error(self.redactor, fields)
        now = time.time()
        run_id = fields.pop("id", None) or f"run-{_hex(12)}"
        row = {"id": run_id, "created_at": now, "started_at": fields.pop("started_at", now),
               "status": "running", **{k: v for k, v in fields.items() if k != "status"},
               "started_by": compliance.started_by(who, self.engine.sched), "pii": pii or None}

        def op(tx: Transaction) -> tuple[Row, bool]:
            created = tx.create_run(row)
            if not created:
                existing = tx.get_run(run_id)
                assert existing is not None
                fill = {k: v for k, v in row.items()
                        if k in ("agent_id", "agent_version", "code_version", "tags",
                                 "started_by") and v is not None and existing.get(k) is None}
                # A stage may have opened the run first, with the default class: a class
                # asked for at creation still applies (every other class keeps more).
                if existing["retention_class"] == "standard" and row.get("retention_class"):
                    fill["retention_class"] = row["retention_class"]
                if fill:
                    tx.update_run(run_id, fill)
            found = tx.get_run(run_id)
            assert found is not None
            return found, created

        run, created = await self.engine.run(op)
        self.hub.publish("run_created" if created else "run_updated", run_summary(run))
        return run, created

    async def update_run(self, run_id: str, body: Any, who: Principal) -> Row:
        self._check_own_run(run_id, who)
        fields = action_input.parse_run(body, creating=False)
        if "budget_usd" in fields and who.role not in OPERATE:
            raise Forbidden("only an operator or admin may change a run's budget")
        pii = compliance.redact_run_error(self.redactor, fields)
        now = time.time()

        def op(tx: Transaction) -> tuple[Row, Row]:
            run = run_or_404(tx, run_id)
            compliance.check_retention_class(fields, who, run["retention_class"])
            before = dict(run)
            changes = {k: v for k, v in fields.items() if k != "status"}
            if pii:
                changes["pii"] = merge(dict(run.get("pii") or {}), pii)
            status = fields.get("status")
            if status == "ended":
                status = self._derived_end(tx, run)
                if status is None:  # stages still run: finish when they do
                    changes["ended_at"] = fields.get("ended_at") or now
            if status is not None and status != run["status"]:
                if run["status"] != RunStatus.RUNNING and status != RunStatus.RUNNING:
                    raise Conflict(f"agent run {run_id} already ended {run['status']}")
                changes["status"] = status
                changes["ended_at"] = (None if status == RunStatus.RUNNING
                                       else fields.get("ended_at") or now)
            if changes:
                tx.update_run(run_id, changes)
                run.update(changes)
            if "budget_usd" in fields:
                _check_budget(tx, run, now)
            return before, run

        before, run = await self.engine.run(op)
        if run["status"] == RunStatus.RUNNING and run["ended_at"] is not None:
            self.ending.add(run_id)
        else:
            self.ending.discard(run_id)
        self._after_run_change(before, run)
        return run

    def _derived_end(self, tx: Transaction, run: Row) -> str | None:
        """A driver finished without saying how: completed unless its last stage did not.
        None while a stage is still going."""
        dags, _ = tx.list_dags(agent_run_id=run["id"], limit=1, newest_first=True)
        if not dags:
            failed = run["error_count"] and not run["success_count"]
            return RunStatus.FAILED.value if failed else RunStatus.COMPLETED.value
        last = dags[0]
        counts = tx.job_counts([last["id"]])[last["id"]]
        status = dag_status(Counter(counts))
        if status in ("WAITING", "RUNNING"):
            return None
        if status in ("FAILED", "CANCELLED"):
            tx.update_run(run["id"], {"error": f"its last stage {last['name']} ended {status}"})
            return RunStatus.FAILED.value
        return RunStatus.COMPLETED.value

    # -- the engine's stage hooks (scheduling/engine.py StageHooks) --------------------------
    def stage_submitted(self, tx: Transaction, run_id: str, agent_id: str | None,
                        now: float, started_by: Row | None = None) -> list[tuple[str, Row]]:
        return stage_submitted(tx, run_id, agent_id, now, started_by)

    def stage_stored(self, tx: Transaction, run_id: str) -> None:
        record_code_version(tx, run_id)

    def dag_settled(self, run_id: str, status: str) -> None:
        """A stage of a run changed status; if the run's driver already finished and this
        stage has ended, settle the run now."""
        if run_id in self.ending and status not in ("WAITING", "RUNNING"):
            self.ending.discard(run_id)
            task = asyncio.ensure_future(self._settle(run_id))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _settle(self, run_id: str) -> None:
        try:
            await self.update_run(run_id, {"status": "ended"}, Principal(role="admin"))
        except (NotFound, Conflict):
            pass

    def _after_run_change(self, before: Row, run: Row) -> None:
        for listener in self.listeners:
            listener.run_changed(before, run)
        if run["status"] != before["status"]:
            self.hub.publish(TERMINAL_RUN.get(run["status"], "run_updated"), run_summary(run))
        else:
            self.hub.publish("run_updated", run_summary(run))
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
                    if _check_budget(tx, run, now):
                        changed.append((before, run))
            agent = tx.get_agent(agent_id)
            assert agent is not None
            return agent, changed

        agent, changed = await self.engine.run(op)
        for before, run in changed:
            self._after_run_change(before, run)
        return agent

    # -- actions ------------------------------------------------------------------------------
    def _check_own_run(self, run_id: str, who: Principal) -> None:
        """A job's token may write only into the job's own agent run."""
        if who.role != "job":
            return
        job = self.engine.sched.jobs.get(who.job or -1)
        dag = self.engine.sched.dags.get(job.dag_id) if job else None
        if dag is None or dag.agent_run_id != run_id:
            raise Forbidden(f"a job may only write into its own agent run, not {run_id!r}")

    async def ingest(self, run_id: str, body: Any, who: Principal) -> Row:
        self._check_own_run(run_id, who)
        now = time.time()  # each action's recorded_at, which its ledger content hash covers
        loop = asyncio.get_running_loop()
        rows = await loop.run_in_executor(None, self._prepare, body, now)

        def op(tx: Transaction) -> tuple[Row, Row, list[Row], int]:
            run = tx.get_run(run_id)
            if run is None:
                raise NotFound(f"no agent run {run_id!r}; create it first with POST /api/v1/runs")
            before = dict(run)
            # Copies: the writer may run this again alone if a neighbour in its batch failed.
            known = tx.known_action_ids(run_id, [r["id"] for r in rows])
            fresh = [dict(r) for r in rows if r["id"] not in known]
            if any(r["ordinal"] is None for r in fresh):
                _fill_ordinals(tx, run_id, fresh)
            for r in fresh:
                for sha, size in r["_blobs"]:
                    tx.add_blob(sha, size, now)
            result = tx.insert_actions(run_id, fresh, now, run)
            after = tx.get_run(run_id)
            assert after is not None
            found = compliance.batch_pii(fresh)
            if found:  # the run row is locked by the insert: no lost update
                after["pii"] = merge(dict(after.get("pii") or {}), found)
                tx.update_run(run_id, {"pii": after["pii"]})
            _check_budget(tx, after, now)
            return before, after, fresh, result.get("first_seq") or 0

        before, run, fresh, first = await self.engine.run(op)
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
            self._after_run_change(before, run)
        return {"accepted": len(fresh), "duplicates": len(rows) - len(fresh),
                "first_seq": first if fresh else None, "run": _budget_state(run)}

    def _prepare(self, body: Any, now: float) -> list[Row]:
        """Validate and canonicalise a batch (off the event loop: a 10,000-action batch is
        tens of milliseconds of work); oversized payloads are written to the blob store. The
        ledger's content hashes too, off the writer thread, which only links them."""
        rows = action_input.parse_actions(body)
        for r in rows:
            blobs = []
            texts = compliance.redact_action(self.redactor, r)  # before anything is hashed
            for side in ("inputs", "outputs"):
                cols, data = action_input.payload(r[side], INLINE_BYTES, texts[side])
                if side == "outputs" and r["outputs"] is None and r["outcome"] != "success":
                    cols.update(text=None, hash=None, size=0)
                r[side], r[f"{side}_hash"] = cols["text"], cols["hash"]
                r[f"{side}_size"], r[f"{side}_blob"] = cols["size"], cols["blob"]
                if data is not None:
                    blobs.append((self.blobs.write_bytes(data), len(data)))
            r["_blobs"] = blobs
            r["recorded_at"] = now
            if r["ordinal"] is not None:
                r["_content"] = ledger.content(r)
        return rows


def run_or_404(tx: Transaction, run_id: str) -> Row:
    """The run, or the 404 every route and service answers for a run that does not exist."""
    run = tx.get_run(run_id)
    if run is None:
        raise NotFound(f"no agent run {run_id!r}", details={"id": run_id})
    return run


def stage_submitted(tx: Transaction, run_id: str, agent_id: str | None, now: float,
                    started_by: Row | None = None) -> list[tuple[str, Row]]:
    """submit_dag named an agent run (in its transaction): a new run is created, running, by
    ``started_by`` (the submitter, see compliance.started_by); one that had ended runs again.
    Returns the events to publish after the commit."""
    if tx.ensure_agent_run(run_id, now, agent_id or agent_of_run(run_id)):
        if started_by is not None:
            tx.update_run(run_id, {"started_by": started_by})
        run = tx.get_run(run_id)
        assert run is not None
        return [("run_created", run_summary(run))]
    run = tx.get_run(run_id)
    assert run is not None
    if run["status"] != "running":
        tx.update_run(run_id, {"status": "running", "ended_at": None})
        run.update(status="running", ended_at=None)
        return [("run_updated", run_summary(run))]
    return []


def record_code_version(tx: Transaction, run_id: str) -> None:
    """The run's code version: a hash of every script its stages ran."""
    version = code_version(tx.run_scripts(run_id))
    if version is not None:
        tx.update_run(run_id, {"code_version": version})


def _budget_state(run: Row) -> Row:
    return {"id": run["id"], "status": run["status"], "cost_usd": run["cost_usd"],
            "budget_usd": run["budget_usd"], "blocked": run["blocked"],
            "over_budget_at": run["over_budget_at"], "action_count": run["action_count"]}


def _fill_ordinals(tx: Transaction, run_id: str, rows: list[Row]) -> None:
    """Number actions sent without an ordinal after the run's existing ones of the same key
    (only clients that do not number their own calls pay for this scan)."""
    counts: dict[tuple[str, str, str], int] = {}
    for a in tx.iter_actions(run_id):
        key = (a["actor"], a["channel"], a["name"])
        counts[key] = max(counts.get(key, 0), a["ordinal"] + 1)
    for r in rows:
        key = (r["actor"], r["channel"], r["name"])
        if r["ordinal"] is None:
            r["ordinal"] = counts.get(key, 0)
        counts[key] = max(counts.get(key, 0), r["ordinal"] + 1)


def _hex(n: int) -> str:
    return secrets.token_hex(n // 2)


def check_window(value: str | None) -> float | None:
    """``24h``/``7d``/``30d``/``all`` (or any ``<n>h``/``<n>d``) -> a 'since' timestamp."""
    if value in (None, "", "all"):
        return None
    assert value is not None
    unit = value[-1:]
    try:
        n = float(value[:-1])
    except ValueError:
        n = -1
    if unit not in ("h", "d", "m") or n <= 0:
        raise ValidationFailed(f"window must be like 24h, 7d, 30d or all, got {value!r}")
    return time.time() - n * {"m": 60, "h": 3600, "d": 86400}[unit]
