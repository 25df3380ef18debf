"""Firing a schedule's ticks: a timer per schedule, a run (or a record of why not) per tick.

The machinery behind :class:`~titan.master.schedules.service.Schedules` (which manages the
schedules): each schedule is a record in memory with a ``loop.call_at`` timer armed for its
next tick (no polling loop). When it goes off, :func:`~titan.master.schedules.rules.plan` says
which due ticks fire (catch-up), :func:`~titan.master.schedules.rules.overlap_action` what each
does while the last run still runs, and a tick that submits hands the engine its fire record:
``Engine.submit_dag(within=...)`` inserts it, and moves the schedule's ``next_fire_at`` past
the tick, in the transaction that stores the DAG. The (schedule, tick) unique key is the last
guard: a tick found recorded aborts the submission.
"""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from titan.errors import NotLeader, TitanError
from titan.master.schedules import rules
from titan.master.scheduling.engine import Engine
from titan.master.scheduling.state import APPROVAL
from titan.storage.base import Row, Transaction
from titan.storage.base_schedules import FAILED, QUEUED, SKIPPED, SUBMITTED

log = logging.getLogger("titan.master")
#: The longest a timer sleeps before looking at the wall clock again: the loop's clock is
#: monotonic and ticks are wall-clock times, so a clock step (NTP, a VM resumed) is noticed
#: within this, not at a tick days away. Well under the misfire grace: a suspended machine's
#: monotonic clock stops (a laptop's lid closed overnight), so a timer armed before the
#: suspend wakes up to this long after a tick that fell just after the resume — and with 5
#: minutes here, ``catchup="skip"`` found that tick over 60 s late and dropped it, though the
#: master was running when it fell.
MAX_SLEEP = rules.MISFIRE_GRACE / 2
#: How long a schedule whose tick failed unexpectedly waits before it tries again.
RETRY_SECONDS = 60.0


def _done_driving(tx: Transaction, run_id: str, now: float) -> None:
    """In the commit that submits a fire's stage: the schedule, the run's only driver, is
    done with it, so the run ends as its last stage does (``PATCH {"status": "ended"}``'s
    rule, runs/updates.py). Nothing else ended it: it stayed ``running`` for good, never
    archived nor pruned. Written here, a master killed before the run service settles it
    settles it as it starts (a running run whose driver is done, RunService.load)."""
    run = tx.get_run(run_id)
    if run is not None and run["status"] == "running" and run["ended_at"] is None:
        tx.update_run(run_id, {"ended_at": now})


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
    created_at: float = 0.0
    #: The template of each fire's agent run id (``{tick}`` filled), or None: no run id.
    agent_run_id: str | None = None
    last_dag_id: int | None = None  # the run it started last
    #: The runs it started that may still be going: what overlap looks at (the last run is
    #: not enough: a run by hand that ended while a tick's run went on hid that one). A run
    #: that ended leaves it; a retry that makes one run again brings it back (_revived).
    live: set[int] = field(default_factory=set)
    #: The fires waiting for the running run to end, oldest tick first ({"id", "tick"}):
    #: one at most, but for the ticks a ``catchup: all`` backfills one after another.
    queued: list[Row] = field(default_factory=list)
    timer: asyncio.TimerHandle | None = None
    deleted: bool = False
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class Firing:
    """The ticks of the schedules in ``recs`` (what :class:`Schedules` is built on)."""

    engine: Engine
    clock: Callable[[], float]
    recs: dict[str, ScheduleRec]
    #: Ends a fire's agent run once its stages have (the run service's, set by the app): a
    #: schedule is its runs' only driver, done as soon as it has submitted the stage.
    driver_done: Callable[[str], Coroutine[Any, Any, None]] | None
    _tasks: set[asyncio.Task[Any]]
    _stopped: bool

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
            # Said in its history too, once per outage (at the first tick missed): the log
            # alone left `titan schedule show` silent on why last night's run never came.
            missed = {"schedule_id": rec.id, "tick": first, "fired_at": now,
                      "outcome": SKIPPED, "dag_id": None, "error": self._missed(rec, now, p)}
            moved = {"next_fire_at": p.next_at} if not p.fire else {}

            def record_missed(tx: Transaction) -> None:
                tx.record_fire(missed)  # (None when a restart recorded it already)
                if moved:
                    tx.update_schedule(rec.id, moved)

            await self.engine.run(record_missed)
        elif not p.fire and p.next_at != first:
            await self.engine.run(lambda tx: tx.update_schedule(
                rec.id, {"next_fire_at": p.next_at}))
        # Several ticks at once are a backfill (catchup: all after an outage): under skip or
        # queue they run one after another, oldest first, rather than only the first. Under
        # catchup: all, so is a single tick missed (a master away for one tick, or back in
        # the middle of a backfill it had begun): skipped behind the running run, it left a
        # hole between the backfill's ticks and those after it.
        for i, tick in enumerate(p.fire):
            after = p.fire[i + 1] if i + 1 < len(p.fire) else p.next_at
            backfill = rec.overlap != "allow" and (
                len(p.fire) > 1 or rec.catchup == "all" and rules.missed(tick, now))
            await self._deal(rec, tick, after, backfill=backfill)
            rec.next_fire_at = after  # committed: a retry after a failure goes on from here
        rec.next_fire_at = p.next_at
        self._arm(rec)
        if p.fire or p.next_at != first:  # not a timer that only looked at the clock
            self._announce(rec, "ticked")

    def _missed(self, rec: ScheduleRec, now: float, p: rules.Plan) -> str:
        """Why the ticks from the first missed one on were not fired (the catch-up policy)."""
        fired = ("fires none of them" if not p.fire else
                 f"fired only the latest, {_wall(rec, p.fire[-1])}" if len(p.fire) == 1 else
                 f"fired the latest {len(p.fire)}, from {_wall(rec, p.fire[0])}")
        return (f"missed: this tick and those after it until {_wall(rec, now)} fell while no "
                f"master ran on time (catchup: {rec.catchup} {fired})")

    async def _deal(self, rec: ScheduleRec, tick: float, after: float | None, *,
                    backfill: bool = False) -> None:
        """One tick: a run, or a record of why not (skipped, or queued behind the running
        one); either way the schedule moves on to ``after`` in the same commit. A
        ``backfill`` tick waits behind the running run and those queued before it."""
        going = self._running(rec)
        if backfill and (going is not None or rec.queued):
            action = rules.QUEUE
        else:
            action = rules.overlap_action(rec.overlap, going is not None, bool(rec.queued))
        if action == rules.SUBMIT:
            await self._submit(rec, tick, after)
            return
        outcome = QUEUED if action == rules.QUEUE else SKIPPED
        why = None
        if outcome == SKIPPED:  # named as users see it, not by the DAG's internal id
            dag = self.engine.sched.dags.get(going) if going is not None else None
            previous = f"the previous run ({dag.name}#{dag.run})" if dag else "the previous run"
            waiting = rec.overlap == "queue" and bool(rec.queued)
            why = (f"{previous} was still running"
                   + (" and a tick already waited behind it" if waiting else "")
                   + f" (overlap: {rec.overlap})")
        fire_id = await self.engine.run(lambda tx: self._record(tx, rec, tick, after, outcome,
                                                                 None, why))
        if outcome == QUEUED and fire_id is not None:
            rec.queued.append({"id": fire_id, "tick": tick})
            if len(rec.queued) == 1:
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
            if run_id is not None:
                _done_driving(tx, run_id, self.clock())

        run_id = None if rec.agent_run_id is None else rules.run_id_for(
            rec.agent_run_id, self.clock() if tick is None else tick)
        try:
            dag_id = await self.engine.submit_dag(
                rec.dag_name, self._jobs_for(rec, tick), run_id, schedule=rec.name,
                within=within, idempotency_key=idempotency_key, scope=scope,
                # Who started a fire's run: the schedule (its Runs page said "started by -").
                started_by=None if run_id is None else {"role": "schedule", "name": rec.name})
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
            else:  # it waited for nothing: recorded as failed, with why. Only this one:
                # dropping every queued fire left the rest of a backfill never tried.
                await self.engine.run(lambda tx: tx.fail_queued_fire(queued, error))
            return None
        rec.last_dag_id = dag_id
        rec.live.add(dag_id)
        if run_id is not None and self.driver_done is not None:
            self._spawn(self.driver_done(run_id))
        return dag_id

    def _jobs_for(self, rec: ScheduleRec, tick: float | None) -> list[Row]:
        """The schedule's jobs for the run of ``tick`` (None: a run by hand, now), each told
        which tick it runs for: a run that starts late (a catch-up after an outage, a tick
        queued behind the last run, a retry days later) cannot read it off the clock, and a
        job that processes "its" day or hour needs it — as Airflow's logical date and
        Prefect's expected start time say. In the schedule's zone, with its offset: the day
        the expression speaks of, and unambiguous in a repeated hour."""
        told = {"TITAN_SCHEDULE": rec.name,
                "TITAN_SCHEDULE_TICK": _wall(rec, self.clock() if tick is None else tick)}
        jobs = copy.deepcopy(rec.jobs)
        for job in jobs:
            if job.get("job_type") != APPROVAL:  # a gate runs nothing (and takes no env)
                job["env"] = {**(job.get("env") or {}), **told}
        return jobs

    def _revived(self, row: Row) -> None:
        """A retry reads a finished DAG back (the engine's revive listener): a run of a
        schedule counts as going again, as a restarted master would read it from the
        database. Without this, a retried older run was invisible to ``skip`` and ``queue``:
        ``live`` had let it go when it ended. A retry refused after all leaves the DAG out of
        the scheduler's memory, where :meth:`_running` drops it again."""
        rec = self.recs.get(row.get("schedule") or "")
        # Runs submitted before this schedule was created are a deleted namesake's: its fires
        # (what the database counts) went with it.
        if rec is not None and not rec.deleted and row["submitted_at"] >= rec.created_at:
            rec.live.add(int(row["id"]))

    def _running(self, rec: ScheduleRec) -> int | None:
        """A run of the schedule that has not finished (its latest), or None. Runs that have
        finished are forgotten (the last one's id stays): a retry brings one back."""
        dags = self.engine.sched.dags
        rec.live = {d for d in rec.live if d in dags}
        if rec.last_dag_id is not None and rec.last_dag_id in dags:
            return rec.last_dag_id
        return max(rec.live, default=None)

    # -- overlap: queue -----------------------------------------------------------------------
    def _watch(self, rec: ScheduleRec) -> None:
        """Start the oldest queued fire once no run is going any more (the events hub says
        when each ends)."""
        dag_id = self._running(rec)
        if dag_id is None:
            self._spawn(self._release(rec))
            return
        waiter = self.engine.hub.waiter(("dag", dag_id))
        waiter.add_done_callback(lambda _: self._spawn(self._release(rec)))

    async def _release(self, rec: ScheduleRec) -> None:
        async with rec.lock:
            if rec.deleted or not rec.queued:
                return
            if self._running(rec) is not None:
                self._watch(rec)  # another run still goes, or it runs again (a retry)
                return
            fire = rec.queued.pop(0)
            await self._submit(rec, fire["tick"], None, queued=int(fire["id"]))
            if rec.queued:  # a backfill's next tick: once the run just started ends
                self._watch(rec)
            self._announce(rec, "ticked")

    def _announce(self, rec: ScheduleRec, op: str) -> None:
        """Tell the event feed (the Schedules page) once what ``op`` did has committed."""
        self.engine.hub.publish("schedule_updated", {
            "name": rec.name, "op": op, "paused": rec.paused, "next_fire_at": rec.next_fire_at,
            "last_dag_id": rec.last_dag_id})


def _wall(rec: ScheduleRec, ts: float) -> str:
    """A time in the schedule's zone, with its offset: ``2026-10-25T02:30:00+02:00``."""
    return dt.datetime.fromtimestamp(ts, rec.rule.tz).isoformat(timespec="seconds")
