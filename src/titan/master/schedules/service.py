"""The schedules on the master's event loop: a timer per schedule, a run per tick.

Each schedule is a record in memory with a ``loop.call_at`` timer armed for its next tick (no
polling loop). When it goes off, :func:`~titan.master.schedules.rules.plan` says which due
ticks fire (catch-up), :func:`~titan.master.schedules.rules.overlap_action` what each does
while the last run still runs, and a tick that submits hands the engine its fire record:
``Engine.submit_dag(within=...)`` inserts it, and moves the schedule's ``next_fire_at`` past
the tick, in the transaction that stores the DAG. So the database never holds a run without
its tick or a tick without its run, and a restarted master — or a standby that took over —
starts from ``next_fire_at``: a tick is fired once. The (schedule, tick) unique key is the
last guard: a tick found recorded aborts the submission.

Everything a schedule does (a tick, pause, resume, delete, run now) holds that schedule's
lock, so two of them never interleave; each writes before it changes memory.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from titan.errors import Conflict, NotFound, NotLeader, TitanError, ValidationFailed
from titan.master.idempotency import once
from titan.master.schedules import rules
from titan.master.schedules.views import schedule_view
from titan.master.scheduling.engine import Engine
from titan.master.scheduling.validation import check_name, validate_dag
from titan.storage.base import Row, Transaction
from titan.storage.base_schedules import FAILED, QUEUED, SKIPPED, SUBMITTED

log = logging.getLogger("titan.master")
#: The longest a timer sleeps before looking at the wall clock again: the loop's clock is
#: monotonic and ticks are wall-clock times, so a clock step (NTP, a VM resumed) is noticed
#: within this, not at a tick days away.
MAX_SLEEP = 300.0
#: How long a schedule whose tick failed unexpectedly waits before it tries again.
RETRY_SECONDS = 60.0
#: Fires listed with one schedule, and with each in the list.
DETAIL_FIRES, LIST_FIRES = 20, 5
FIELDS = frozenset({"name", "dag_name", "jobs", "cron", "timezone", "catchup", "overlap",
                    "paused"})


class _AlreadyFired(Exception):
    """The tick is recorded already: its submission is rolled back."""


@dataclass(eq=False)
class ScheduleRec:
    id: int
    name: str
    dag_name: str
    rule: rules.CronRule
    catchup: str
    overlap: str
    jobs: list[Row]
    paused: bool
    next_fire_at: float | None
    last_dag_id: int | None = None  # the run it started last: what overlap looks at
    queued: Row | None = None  # {"id", "tick"}: the fire waiting for that run to end
    timer: asyncio.TimerHandle | None = None
    deleted: bool = False
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class Schedules:
    def __init__(self, engine: Engine, clock: Callable[[], float] = time.time) -> None:
        self.engine = engine
        self.clock = clock
        self.recs: dict[str, ScheduleRec] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stopped = False

    # -- lifecycle ----------------------------------------------------------------------------
    async def start(self) -> None:
        """Load every schedule and arm its timer; one whose tick fell due while no master
        led fires at once, as its catch-up policy says. After the engine's recovery: the
        overlap policy asks the scheduler which runs are still going."""
        rows, states = await self.engine.read(
            lambda tx: (tx.list_schedules(), tx.schedule_states()))
        for row in rows:
            try:
                rec = _rec(row)
            except ValidationFailed as exc:  # its time zone left this machine's database
                log.error("schedule %s cannot run here: %s", row["name"], exc)
                continue
            state = states.get(rec.id, {})
            rec.last_dag_id, rec.queued = state.get("last_dag_id"), state.get("queued")
            self.recs[rec.name] = rec
            self._arm(rec)
            if rec.queued is not None:
                self._watch(rec)
        if self.recs:
            log.info("loaded %d schedule(s)", len(self.recs))

    async def stop(self) -> None:
        self._stopped = True
        for rec in self.recs.values():
            if rec.timer is not None:
                rec.timer.cancel()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        if self._stopped:
            coro.close()
            return
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("schedule work failed: %r", task.exception(), exc_info=task.exception())

    # -- timers -------------------------------------------------------------------------------
    def _arm(self, rec: ScheduleRec) -> None:
        if rec.timer is not None:
            rec.timer.cancel()
            rec.timer = None
        if rec.paused or rec.deleted or rec.next_fire_at is None or self._stopped:
            return
        loop = asyncio.get_running_loop()
        delay = min(MAX_SLEEP, max(0.0, rec.next_fire_at - self.clock()))
        rec.timer = loop.call_at(loop.time() + delay, self._wake, rec)

    def _wake(self, rec: ScheduleRec) -> None:
        rec.timer = None
        self._spawn(self.tick(rec))

    async def tick(self, rec: ScheduleRec) -> None:
        """Deal with every tick due now (the timer's work; tests call it with a fake clock)."""
        async with rec.lock:
            try:
                await self._tick(rec)
            except Exception:  # a bug, not the database (the writer waits for that)
                log.exception("schedule %s: dealing with its ticks failed; trying again in "
                              "%.0f s", rec.name, RETRY_SECONDS)
                if rec.timer is None and not rec.deleted and not self._stopped:
                    rec.timer = asyncio.get_running_loop().call_later(
                        RETRY_SECONDS, self._wake, rec)

    async def _tick(self, rec: ScheduleRec) -> None:
        first = rec.next_fire_at
        if rec.deleted or rec.paused or first is None:
            return
        now = self.clock()
        p = rules.plan(rec.rule, first, now, rec.catchup)
        if p.dropped:
            log.warning("schedule %s: ticks due since %s were missed; catch-up %r fires %d of "
                        "them", rec.name, time.ctime(first), rec.catchup, len(p.fire))
        if not p.fire and p.next_at != first:
            await self.engine.run(lambda tx: tx.update_schedule(
                rec.id, {"next_fire_at": p.next_at}))
        for i, tick in enumerate(p.fire):
            after = p.fire[i + 1] if i + 1 < len(p.fire) else p.next_at
            await self._deal(rec, tick, after)
            rec.next_fire_at = after  # committed: a retry after a failure goes on from here
        rec.next_fire_at = p.next_at
        self._arm(rec)
        if p.fire or p.next_at != first:  # not a timer that only looked at the clock
            self._announce(rec, "ticked")

    async def _deal(self, rec: ScheduleRec, tick: float, after: float | None) -> None:
        """One tick: a run, or a record of why not (skipped, or queued behind the running
        one); either way the schedule moves on to ``after`` in the same commit."""
        running = rec.last_dag_id is not None and rec.last_dag_id in self.engine.sched.dags
        action = rules.overlap_action(rec.overlap, running, rec.queued is not None)
        if action == rules.SUBMIT:
            await self._submit(rec, tick, after)
            return
        outcome = QUEUED if action == rules.QUEUE else SKIPPED
        why = None if outcome == QUEUED else \
            f"the previous run (DAG {rec.last_dag_id}) was still running (overlap: {rec.overlap})"
        fire_id = await self.engine.run(lambda tx: self._record(tx, rec, tick, after, outcome,
                                                                 None, why))
        if outcome == QUEUED and fire_id is not None:
            rec.queued = {"id": fire_id, "tick": tick}
            self._watch(rec)

    def _record(self, tx: Transaction, rec: ScheduleRec, tick: float | None,
                after: float | None, outcome: str, dag_id: int | None,
                error: str | None) -> int | None:
        fire_id = tx.record_fire({"schedule_id": rec.id, "tick": tick, "fired_at": self.clock(),
                                  "outcome": outcome, "dag_id": dag_id, "error": error})
        if tick is not None:
            tx.update_schedule(rec.id, {"next_fire_at": after, "last_fire_at": tick})
        return fire_id

    async def _submit(self, rec: ScheduleRec, tick: float | None, after: float | None, *,
                      queued: int | None = None, idempotency_key: str | None = None,
                      scope: str = "") -> int | None:
        """Start a run for ``tick`` (None: by hand) with its fire in the same commit; a
        ``queued`` fire becomes that run. A tick that cannot start (its scripts gone...) is
        recorded as failed and the schedule moves on; by hand, the error is the caller's."""
        def within(tx: Transaction, dag_id: int) -> None:
            if queued is not None:
                if not tx.start_queued_fire(queued, dag_id):
                    raise _AlreadyFired(f"fire {queued} is no longer queued")
            elif self._record(tx, rec, tick, after, SUBMITTED, dag_id, None) is None:
                raise _AlreadyFired(f"tick {tick} is recorded already")

        try:
            dag_id = await self.engine.submit_dag(
                rec.dag_name, copy.deepcopy(rec.jobs), None, schedule=rec.name, within=within,
                idempotency_key=idempotency_key, scope=scope)
        except _AlreadyFired as exc:
            log.warning("schedule %s: %s; not fired again", rec.name, exc)
            return None
        except TitanError as exc:
            if tick is None or isinstance(exc, NotLeader):  # replaced: this master stops
                raise
            log.error("schedule %s: the run for %s could not start: %s", rec.name,
                      time.ctime(tick), exc)
            error = str(exc)[:2000]
            if queued is None:
                await self.engine.run(lambda tx: self._record(tx, rec, tick, after, FAILED,
                                                               None, error))
            else:  # it waited for nothing: recorded as not run, with why
                await self.engine.run(lambda tx: tx.drop_queued_fires(
                    rec.id, f"the run could not start: {error}"))
            return None
        rec.last_dag_id = dag_id
        return dag_id

    # -- overlap: queue -----------------------------------------------------------------------
    def _watch(self, rec: ScheduleRec) -> None:
        """Start the queued fire once the running run ends (the events hub says when)."""
        dag_id = rec.last_dag_id
        if dag_id is None or dag_id not in self.engine.sched.dags:
            self._spawn(self._release(rec))
            return
        waiter = self.engine.hub.waiter(("dag", dag_id))
        waiter.add_done_callback(lambda _: self._spawn(self._release(rec)))

    async def _release(self, rec: ScheduleRec) -> None:
        async with rec.lock:
            if rec.deleted or rec.queued is None:
                return
            if rec.last_dag_id is not None and rec.last_dag_id in self.engine.sched.dags:
                self._watch(rec)  # running again (a job of it was retried)
                return
            fire, rec.queued = rec.queued, None
            await self._submit(rec, fire["tick"], None, queued=int(fire["id"]))
            self._announce(rec, "ticked")

    def _announce(self, rec: ScheduleRec, op: str) -> None:
        """Tell the event feed (the Schedules page) once what ``op`` did has committed."""
        self.engine.hub.publish("schedule_updated", {
            "name": rec.name, "op": op, "paused": rec.paused, "next_fire_at": rec.next_fire_at,
            "last_dag_id": rec.last_dag_id})

    # -- operations ---------------------------------------------------------------------------
    def get(self, name: str) -> ScheduleRec:
        rec = self.recs.get(name)
        if rec is None:
            raise NotFound(f"no schedule named {name!r}", details={"name": name})
        return rec

    async def create(self, body: Row, created_by: str, *, idempotency_key: str | None = None,
                     scope: str = "", max_jobs: int = 10_000) -> Row:
        """A new schedule from an API body (checked whole; 409 if the name is taken)."""
        if not isinstance(body, dict):
            raise ValidationFailed("the body must be a JSON object")
        unknown = sorted(str(k) for k in body if k not in FIELDS)
        if unknown:
            raise ValidationFailed(f"unknown field {unknown[0]!r}; known fields: "
                                   f"{', '.join(sorted(FIELDS))}", details={"field": unknown[0]})
        name = check_name(body.get("name"), "name")
        rule = rules.CronRule.parse(body.get("cron"), body.get("timezone", "UTC"))
        catchup = rules.choice(body.get("catchup", "skip"), "catchup", rules.CATCHUP)
        overlap = rules.choice(body.get("overlap", "allow"), "overlap", rules.OVERLAP)
        paused = body.get("paused", False)
        if not isinstance(paused, bool):
            raise ValidationFailed("paused must be true or false", details={"field": "paused"})
        dag_name = name if body.get("dag_name") is None else body["dag_name"]
        dag_name, specs = validate_dag(dag_name, body.get("jobs"), max_jobs=max_jobs)
        await self.engine.check_scripts(specs)
        # The name is checked by the insert, not here first: a create the client sends again
        # (its reply lost) must get the first one's answer from its key, not a 409.
        now = self.clock()
        row: Row = {"name": name, "dag_name": dag_name, "cron": rule.expr,
                    "timezone": rule.timezone, "jobs": specs, "catchup": catchup,
                    "overlap": overlap, "paused": paused,
                    "next_fire_at": None if paused else rule.next_after(now),
                    "last_fire_at": None, "created_at": now, "created_by": created_by[:200],
                    "updated_at": now}

        def insert(tx: Transaction) -> int:
            schedule_id = tx.insert_schedule(row)
            if schedule_id is None:
                raise Conflict(f"a schedule named {name!r} exists already (delete it "
                               "first)", details={"name": name})
            return schedule_id

        schedule_id, replayed = await self.engine.run(once(idempotency_key, scope, insert))
        if not replayed and name not in self.recs:
            rec = _rec(dict(row, id=schedule_id))
            self.recs[name] = rec
            self._arm(rec)
            self._announce(rec, "created")
        return await self.view(name)

    async def pause(self, name: str) -> Row:
        rec = self.get(name)
        async with rec.lock:
            if not rec.paused:
                def op(tx: Transaction) -> None:
                    tx.update_schedule(rec.id, {"paused": True, "next_fire_at": None,
                                                "updated_at": self.clock()})
                    tx.drop_queued_fires(rec.id, "the schedule was paused")

                await self.engine.run(op)
                rec.paused, rec.next_fire_at, rec.queued = True, None, None
                self._arm(rec)
                self._announce(rec, "paused")
        return await self.view(name)

    async def resume(self, name: str) -> Row:
        """Ticks from now on fire again; those that fell while paused are not missed ones."""
        rec = self.get(name)
        async with rec.lock:
            if rec.paused:
                nxt = rec.rule.next_after(self.clock())
                await self.engine.run(lambda tx: tx.update_schedule(rec.id, {
                    "paused": False, "next_fire_at": nxt, "updated_at": self.clock()}))
                rec.paused, rec.next_fire_at = False, nxt
                self._arm(rec)
                self._announce(rec, "resumed")
        return await self.view(name)

    async def delete(self, name: str) -> None:
        """The schedule and its fire records go; the runs it started stay, naming it."""
        rec = self.get(name)
        async with rec.lock:
            await self.engine.run(lambda tx: tx.delete_schedule(rec.id))
            rec.deleted = True
            self._arm(rec)  # disarms
            if self.recs.get(name) is rec:
                del self.recs[name]
            self._announce(rec, "deleted")

    async def run_now(self, name: str, *, idempotency_key: str | None = None,
                      scope: str = "") -> int:
        """Start a run now, outside the ticks (the overlap policy is for ticks: asking is
        deciding); the new DAG's id."""
        rec = self.get(name)
        async with rec.lock:
            dag_id = await self._submit(rec, None, None, idempotency_key=idempotency_key,
                                        scope=scope)
            self._announce(rec, "ran")
        assert dag_id is not None  # by hand, a refusal raises
        return dag_id

    # -- reading ------------------------------------------------------------------------------
    async def view(self, name: str, fires: int = DETAIL_FIRES) -> Row:
        def read(tx: Transaction) -> Row:
            row = tx.get_schedule(name)
            if row is None:
                raise NotFound(f"no schedule named {name!r}", details={"name": name})
            return schedule_view(row, tx.schedule_fires(row["id"], fires), jobs=True)

        return await self.engine.read(read)

    async def views(self, fires: int = LIST_FIRES) -> list[Row]:
        """Every schedule with its latest ``fires``, by name."""
        return await self.engine.read(lambda tx: [
            schedule_view(row, tx.schedule_fires(row["id"], fires))
            for row in tx.list_schedules()])


def _rec(row: Row) -> ScheduleRec:
    return ScheduleRec(
        id=int(row["id"]), name=row["name"], dag_name=row["dag_name"],
        rule=rules.CronRule.parse(row["cron"], row["timezone"]), catchup=row["catchup"],
        overlap=row["overlap"], jobs=row["jobs"], paused=bool(row["paused"]),
        next_fire_at=row["next_fire_at"])
