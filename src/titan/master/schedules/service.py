"""The schedules on the master's event loop: loaded at start, and created, changed, paused,
resumed, deleted and run by hand (the ticks themselves fire in :mod:`.firing`).

The database never holds a run without its tick or a tick without its run, and a restarted
master — or a standby that took over — starts from each schedule's ``next_fire_at``: a tick
is fired once. Everything a schedule does (a tick, an update, pause, resume, delete, run now)
holds that schedule's lock, so two of them never interleave; each writes before it changes
memory.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from titan.errors import Conflict, NotFound, ValidationFailed
from titan.formats import schedule_name_problem
from titan.master.idempotency import once
from titan.master.schedules import rules
from titan.master.schedules.firing import Firing, ScheduleRec
from titan.master.schedules.views import schedule_view
from titan.master.scheduling.engine import Engine
from titan.master.scheduling.engine_submission import use_scripts
from titan.master.scheduling.validation import dag_name_of, validate_dag
from titan.storage.base import Row, Transaction

log = logging.getLogger("titan.master")
#: Fires listed with one schedule, and with each in the list.
DETAIL_FIRES, LIST_FIRES = 20, 5
#: What an update may change; a schedule's name is its identity, and pause/resume have their
#: own calls (they drop or re-arm ticks).
EDITABLE = frozenset({"dag_name", "jobs", "cron", "timezone", "catchup", "overlap",
                      "agent_run_id"})
FIELDS = EDITABLE | {"name", "paused"}


class Schedules(Firing):
    """Every schedule of this master: loaded at start, created, changed, paused, resumed,
    deleted and run by hand through the API (the ticks themselves: :class:`Firing`)."""

    def __init__(self, engine: Engine, clock: Callable[[], float] = time.time) -> None:
        self.engine = engine
        self.clock = clock
        self.recs: dict[str, ScheduleRec] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stopped = False
        self.driver_done = None
        engine.revive_listeners.append(self._revived)

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
            rec.last_dag_id, rec.queued = state.get("last_dag_id"), list(state.get("queued", ()))
            rec.live = set(state.get("live", ()))
            self.recs[rec.name] = rec
            self._arm(rec)
            if rec.queued:
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

    # -- operations ---------------------------------------------------------------------------
    def get(self, name: str) -> ScheduleRec:
        rec = self.recs.get(name)
        if rec is None:
            raise NotFound(f"no schedule named {name!r}", details={"name": name})
        return rec

    async def create(self, body: Row, created_by: str, *, idempotency_key: str | None = None,
                     scope: str = "", max_jobs: int = 10_000) -> Row:
        """A new schedule from an API body (checked whole; 409 if the name is taken)."""
        _check_fields(body, FIELDS)
        # Only at creation: a schedule stored before the rule is still read, run and deleted.
        why = schedule_name_problem(body.get("name"), "name")
        if why is not None:
            raise ValidationFailed(why, details={"field": "name"})
        name: str = body["name"]
        rules.zone_for_new_rule(body.get("timezone", "UTC"))
        rule = rules.CronRule.parse(body.get("cron"), body.get("timezone", "UTC"))
        catchup = rules.choice(body.get("catchup", "skip"), "catchup", rules.CATCHUP)
        overlap = rules.choice(body.get("overlap", "allow"), "overlap", rules.OVERLAP)
        run_ids = rules.run_id_template(body.get("agent_run_id"))
        paused = body.get("paused", False)
        if not isinstance(paused, bool):
            raise ValidationFailed("paused must be true or false", details={"field": "paused"})
        given = body.get("dag_name")
        dag_name, specs = validate_dag(name if given is None else given, body.get("jobs"),
                                       max_jobs=max_jobs,
                                       name_field="name" if given is None else "dag_name")
        await self.engine.pin_projects(specs)  # each tick runs the project as it is now
        await self.engine.check_scripts(specs)
        # The name is checked by the insert, not here first: a create the client sends again
        # (its reply lost) must get the first one's answer from its key, not a 409.
        now = self.clock()
        row: Row = {"name": name, "dag_name": dag_name, "cron": rule.expr,
                    "timezone": rule.timezone, "jobs": specs, "catchup": catchup,
                    "overlap": overlap, "paused": paused, "agent_run_id": run_ids,
                    "next_fire_at": None if paused else rule.next_after(now),
                    "last_fire_at": None, "created_at": now, "created_by": created_by[:200],
                    "updated_at": now}

        def insert(tx: Transaction) -> int:
            use_scripts(tx, specs, time.time())  # (the clock a test sets is not this)
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

    async def update(self, name: str, body: Row, *, max_jobs: int = 10_000) -> Row:
        """Change a schedule's rule, policies or DAG (fields left out stay as they are). A new
        rule or zone moves the next tick to the new rule's first after now; the next run,
        a queued one included, runs the new DAG; a tick queued behind a run is dropped when
        the overlap policy is no longer ``queue``."""
        rec = self.get(name)  # a schedule that is not there is that, whatever the body
        _check_fields(body, EDITABLE, "update")
        async with rec.lock:
            if rec.deleted:  # while this waited for the lock
                raise NotFound(f"no schedule named {name!r}", details={"name": name})
            rule = rec.rule
            if "timezone" in body:
                rules.zone_for_new_rule(body["timezone"])
            if "cron" in body or "timezone" in body:
                rule = rules.CronRule.parse(body.get("cron", rule.expr),
                                            body.get("timezone", rule.timezone))
            catchup = rules.choice(body.get("catchup", rec.catchup), "catchup", rules.CATCHUP)
            overlap = rules.choice(body.get("overlap", rec.overlap), "overlap", rules.OVERLAP)
            run_ids = rules.run_id_template(body.get("agent_run_id", rec.agent_run_id))
            dag_name, jobs = rec.dag_name, rec.jobs
            if "jobs" in body:
                # A dag_name given is checked whatever it is: "" with new jobs kept the old
                # name without a word, while "" alone was refused.
                given = body.get("dag_name")
                dag_name, jobs = validate_dag(dag_name if given is None else given,
                                              body["jobs"], max_jobs=max_jobs,
                                              name_field="dag_name")
                await self.engine.pin_projects(jobs)
                await self.engine.check_scripts(jobs)
            elif body.get("dag_name") is not None:
                dag_name = dag_name_of(body["dag_name"], "dag_name")
            now = self.clock()
            fields: Row = {"cron": rule.expr, "timezone": rule.timezone, "catchup": catchup,
                           "overlap": overlap, "dag_name": dag_name, "jobs": jobs,
                           "agent_run_id": run_ids, "updated_at": now}
            moved = (rule.expr, rule.timezone) != (rec.rule.expr, rec.rule.timezone)
            if moved and not rec.paused:
                fields["next_fire_at"] = rule.next_after(now)
            # A backfill waits under skip as under queue (firing.py); allow runs it now.
            unqueue = bool(rec.queued) and overlap not in ("queue", rec.overlap)

            def op(tx: Transaction) -> None:
                if "jobs" in body:
                    use_scripts(tx, jobs, time.time())
                tx.update_schedule(rec.id, fields)
                if unqueue:
                    tx.drop_queued_fires(rec.id, "the schedule's overlap policy changed")

            await self.engine.run(op)
            rec.rule, rec.catchup, rec.overlap = rule, catchup, overlap
            rec.dag_name, rec.jobs, rec.agent_run_id = dag_name, jobs, run_ids
            rec.next_fire_at = fields.get("next_fire_at", rec.next_fire_at)
            if unqueue:
                rec.queued = []
            self._arm(rec)
            self._announce(rec, "updated")
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
                rec.paused, rec.next_fire_at, rec.queued = True, None, []
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
    async def view(self, name: str, fires: int = DETAIL_FIRES, *,
                   env_values: bool = True) -> Row:
        """One schedule with its jobs (``env_values``: :func:`schedule_view`'s)."""
        def read(tx: Transaction) -> Row:
            row = tx.get_schedule(name)
            if row is None:
                raise NotFound(f"no schedule named {name!r}", details={"name": name})
            return schedule_view(row, tx.schedule_fires(row["id"], fires), now=self.clock(),
                                 jobs=True, env_values=env_values, last_run=_last_run(tx, row))

        return await self.engine.read(read)

    async def views(self, fires: int = LIST_FIRES) -> list[Row]:
        """Every schedule with its latest ``fires``, by name."""
        return await self.engine.read(lambda tx: [
            schedule_view(row, tx.schedule_fires(row["id"], fires), now=self.clock(),
                          last_run=_last_run(tx, row))
            for row in tx.list_schedules()])


def _last_run(tx: Transaction, row: Row) -> Row | None:
    """The fire of the run the schedule started last (None before its first)."""
    found = tx.schedule_fires(row["id"], 1, started=True)
    return found[0] if found else None


def _check_fields(body: Any, allowed: frozenset[str], what: str = "schedule") -> None:
    if not isinstance(body, dict):
        raise ValidationFailed("the body must be a JSON object")
    unknown = sorted(str(k) for k in body if k not in allowed)
    if unknown:
        hint = (" (use pause or resume)" if unknown[0] == "paused" else
                " (a schedule's name cannot change: create another)" if unknown[0] == "name"
                else "")
        raise ValidationFailed(f"{what}: unknown field {unknown[0]!r}{hint}; known fields: "
                               f"{', '.join(sorted(allowed))}", details={"field": unknown[0]})
    if what == "update" and not body:
        raise ValidationFailed(f"nothing to update: give one of {', '.join(sorted(allowed))}")


def _rec(row: Row) -> ScheduleRec:
    return ScheduleRec(
        id=int(row["id"]), name=row["name"], dag_name=row["dag_name"],
        rule=rules.CronRule.parse(row["cron"], row["timezone"]), catchup=row["catchup"],
        overlap=row["overlap"], jobs=row["jobs"], paused=bool(row["paused"]),
        next_fire_at=row["next_fire_at"], created_at=float(row["created_at"]),
        agent_run_id=row.get("agent_run_id"))
