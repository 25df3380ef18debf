"""What the master does for workers: register, long-poll for jobs, heartbeat, report.

A worker keeps one poll open at all times. A poll returns at once when jobs or cancels are
waiting; otherwise it parks a future that the dispatcher resolves — with the commit future of
the leases it made — the moment a matching job becomes ready. Nothing here sleeps.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from titan.errors import ValidationFailed
from titan.formats import cut_text
from titan.master.auth.tokens import Principal, check_worker
from titan.master.scheduling import kills, log_cap, services, worker_clock, worker_names
from titan.master.scheduling.engine import Engine
from titan.master.scheduling.state import (
    RUNNING,
    Changes,
    WorkerRec,
    capacity,
)
from titan.master.scheduling.validation import check_name
from titan.master.scheduling.worker_fields import (
    attempt_key,
    entries,
    int_field,
    label,
    number_field,
    worker_version,
)
from titan.redaction import scrub_titan_tokens
from titan.storage.base import Row
from titan.version import __version__

log = logging.getLogger("titan.master")

MAX_LINE = 64 * 1024
#: The longest worker id (its column and jobs.worker_id are PostgreSQL's varchar(80)): past
#: it the worker joined in memory and its row was refused, a worker no page showed that
#: took jobs whose leases were refused in turn. The master's own ids are 14 characters.
MAX_WORKER_ID = 80
#: The highest number a log line may have: its column is PostgreSQL's INTEGER. Past it the
#: report was taken in memory (a result beside the line finished its job there) and then
#: refused by the database, so the job stayed RUNNING there for good; SQLite stored it.
MAX_SEQ = 2**31 - 1


async def register(engine: Engine, body: Row, who: Principal,
                   user_agent: str | None = None) -> Row:
    """Join, or re-join with an old id. Only the holder of a worker's credential (or an admin)
    may name its id: a bare worker token gets a fresh random id, so no one holding a worker
    token can take over a live worker, nor claim one's id while a restarted master waits for
    it to come back."""
    caps = body.get("capabilities") or ["GENERAL"]
    if not isinstance(caps, list):
        raise ValidationFailed("'capabilities' must be a list of strings",
                               details={"field": "capabilities"})
    capabilities = frozenset(check_name(c, "capability").upper() for c in caps)
    slots = int_field(body.get("slots"), "slots", default=1, lo=1, hi=4096)
    running = [attempt_key(r, "running") for r in entries(body, "running")]
    worker_id = body.get("worker_id")
    if worker_id is not None:
        check_name(worker_id, "worker_id")
        if len(worker_id) > MAX_WORKER_ID:
            raise ValidationFailed(f"worker_id is longer than {MAX_WORKER_ID} characters",
                                   details={"field": "worker_id", "max_length": MAX_WORKER_ID})
    if who.role == "worker":
        if worker_id is not None:
            check_worker(who, worker_id)
        worker_id = who.worker
    worker_id = worker_id if worker_id is not None else f"w-{secrets.token_hex(6)}"
    name, hostname = label(body, "name", worker_id), label(body, "hostname", "")
    given = body.get("name_given") is True
    absent = worker_names.absent_holders(engine) if given else set()
    if absent:  # their names are the database's: read before the name is chosen
        rows = await engine.read(lambda tx: tx.list_workers())
        absent = {r["id"] for r in rows if r["id"] in absent and r["name"] == name[:200]}
    now = time.time()
    old = engine.sched.workers.get(worker_id)
    if old is not None and old.poll is not None and not old.poll.done():
        old.poll.set_result(None)
    # Checked and taken with no await between: two registering at once cannot both get it.
    name = worker_names.choose(engine, worker_id, name[:200], given, absent)
    worker = WorkerRec(
        id=worker_id, name=name[:200], hostname=hostname[:255], capabilities=capabilities,
        slots=slots, last_seen=now, lends=body.get("lend") is True,
        version=worker_version(body, user_agent),
    )
    if old is not None:
        worker.clock = old.clock  # re-joining: what was learnt of its clock still holds
    _clock_said(worker, body.get("now"), now)
    if worker.version != __version__ and (old is None or old.version != worker.version):
        # Once per worker (and again if it comes back on another version): a fleet half
        # upgraded went unnoticed, the version only in each request's User-Agent.
        log.warning("worker %s (%s) runs Titan %s, this master %s: upgrade them together",
                    worker_id, worker.name, worker.version or "of an unknown version",
                    __version__)
    ch = Changes()
    engine.sched.add_worker(worker, ch)
    kill = engine.sched.renew(worker, running)
    worker.cancels.extend(kill)
    if "running" in body:  # re-joining: it lists every attempt it holds
        worker.assigned.extend(undelivered(engine, worker, set(running)))
    ch.events.append(("worker_updated", {"id": worker_id, "state": "live"}))
    row = {"id": worker_id, "name": worker.name, "hostname": worker.hostname,
           "capabilities": sorted(capabilities), "slots": slots, "state": "live",
           "registered_at": now, "last_seen_at": now, "version": worker.version}
    await engine.submit(ch, extra=lambda tx: tx.upsert_worker(row))
    lease = engine.config.lease_seconds
    reply: Row = {"worker_id": worker_id, "name": worker.name, "lease_seconds": lease,
                  "heartbeat_seconds": lease / 3}
    if who.token_id is not None and engine.worker_credentials is not None:
        reply["credential"] = engine.worker_credentials.issue(who.token_id, worker_id)
    return reply


def undelivered(engine: Engine, worker: WorkerRec, held: set[tuple[int, int]]) -> list[int]:
    """Jobs leased to this worker that it does not hold: the poll reply carrying them was lost
    when the master died after committing the lease. Nothing ran, so the same attempt is sent
    again (on the next poll) instead of letting its lease expire into a second attempt. The
    worker lists finished attempts whose results are still queued as held, so a job that ran
    is never sent twice."""
    expires = engine.sched.now() + engine.config.lease_seconds
    # A job already waiting to go out is not listed again: a re-registration followed by the
    # channel's hello (or a reconnect while a lease commits) would queue it twice, and the
    # master would spend two of the worker's credits on one job.
    pending = set(worker.assigned)
    out = []
    for job in engine.sched.jobs.values():
        if (job.state == RUNNING and job.worker_id == worker.id and job.id not in pending
                and (job.id, job.attempt) not in held):
            job.lease_expires = expires
            worker.running.add(job.id)
            out.append(job.id)
    return out


async def poll(engine: Engine, worker_id: str, free_slots: int, wait: float,
               draining: bool = False,
               gone: Callable[[], Awaitable[None]] | None = None) -> Row:
    """A worker's long-poll: jobs leased to it, and attempts to cancel. ``gone``: returns
    once the worker's connection has closed (an HTTP request's client going away), which
    ends a parked poll at once. A parked poll counts as a connection held (worker_names):
    a worker killed in one held its name until the poll timed out, and a supervisor's
    restart of it under that name was refused and exited."""
    worker = engine.worker(worker_id)
    if draining and worker.live:
        # The worker is finishing its jobs before it stops: it takes no new ones, its
        # affinity jobs go to others, and the dashboard shows it as draining.
        ch = Changes()
        engine.sched.lose_worker(worker, ch, state="draining")
        ch.events.append(("worker_updated", {"id": worker_id, "state": "draining"}))
        await engine.submit(ch)
    free = max(0, min(int(free_slots), 4096))
    wait = max(0.0, min(float(wait), 60.0))
    parked = worker.poll is not None and not worker.poll.done()
    if worker.poll is not None and parked:
        worker.poll.set_result(None)  # a newer poll supersedes: its offer may be out of date
    stale = False
    if wait > 0:
        stale, worker.stale_offer = worker.stale_offer, False
    elif not parked:
        worker.stale_offer = True
    ch = Changes()
    want = capacity(worker, free)
    if want > 0 and worker.state == "live":
        worker.assigned.extend(j.id for j in engine.sched.take(worker, want, ch))
    commit: Any = engine.submit(ch) if not ch.empty() else None
    if commit is not None and worker.assigned:
        worker.lease_commit = commit
    if not worker.assigned and not worker.cancels and wait > 0 and not stale:
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        worker.poll, worker.poll_free = fut, free
        watch = asyncio.ensure_future(gone()) if gone is not None else None
        if watch is not None:
            watch.add_done_callback(partial(_poll_gone, fut))
        try:
            commit = await asyncio.wait_for(asyncio.shield(fut), wait)
        except TimeoutError:
            # The dispatcher may have resolved the poll in the same instant.
            commit = fut.result() if fut.done() else None
        finally:
            if watch is not None:
                watch.cancel()
            # Not a sign of life: the poll ended here, the worker may be frozen.
            if worker.poll is fut:
                worker.poll = None
    if commit is not None:
        # Shielded: the commit is shared (its notices, other waiters); a poll whose client
        # went away must not cancel it (see Engine.submit).
        await asyncio.shield(commit)
    await leases_committed(worker)
    cancels = kills.cancel_entries(engine, worker.cancels, worker)
    worker.cancels.clear()
    return {"jobs": engine.assignments(worker), "cancel": cancels}


def _poll_gone(poll: asyncio.Future[Any], watch: asyncio.Future[None]) -> None:
    """The poll's connection closed (or could no longer be read): the poll ends, with
    nothing to hand over, and no longer counts as a connection the worker holds."""
    if watch.cancelled():
        return
    watch.exception()  # read: one the connection raised means it is gone as well
    if not poll.done():
        poll.set_result(None)


async def leases_committed(worker: WorkerRec) -> None:
    """Wait until every lease in the worker's hand-over list is durable. Another poll (the
    one that superseded this one, a dispatcher's lease to this worker) may have added jobs
    whose commit is still queued; sending them now would let a master that dies before it
    lands run them twice (DESIGN: nothing runs twice unless its lease expired)."""
    while (pending := worker.lease_commit) is not None and not pending.done():
        await asyncio.shield(pending)


async def heartbeat(engine: Engine, worker_id: str, body: Row) -> Row:
    worker = engine.worker(worker_id)
    running = [attempt_key(r, "running") for r in entries(body, "running")]
    _clock_said(worker, body.get("now"), time.time())
    kill = engine.sched.renew(worker, running)
    kill.extend(worker.cancels)
    worker.cancels.clear()
    kill.extend(services.stopping(engine.sched, worker, running))
    return {"cancel": kills.cancel_entries(engine, kill, worker)}


def _clock_said(worker: WorkerRec, worker_now: Any, now: float) -> None:
    """The worker said its time (``now`` in a registration or heartbeat): a sample of its
    clock's offset, which its log lines' times are shifted by; said in the log once it is
    past :data:`~titan.master.scheduling.worker_clock.WARN_AT`, again when the estimate moves,
    and withdrawn when it comes back within that."""
    worker.clock.sample(worker_now, now)
    offset = worker.clock.news()
    if offset is None:
        return
    if abs(offset) >= worker_clock.WARN_AT:
        log.warning("worker %s (%s): its clock is %.1f s %s the master's; the times of its "
                    "jobs' log lines are shifted by that, their durations are measured on its "
                    "monotonic clock", worker.id, worker.name, abs(offset),
                    "behind" if offset > 0 else "ahead of")
    else:
        log.warning("worker %s (%s): its clock is now within %g s of the master's; the times "
                    "of its jobs' log lines are %s", worker.id, worker.name,
                    worker_clock.WARN_AT, f"shifted by {offset:.1f} s" if offset
                    else "kept as they are")


async def report(engine: Engine, worker_id: str, body: Row) -> Row:
    worker = engine.worker(worker_id)
    logs = [(attempt_key(line, "logs"), int_field(line.get("seq"), "logs[].seq", hi=MAX_SEQ),
             time.time() if line.get("ts") is None
             else worker.clock.shift(number_field(line["ts"], "logs[].ts", default=0.0)), line)
            for line in entries(body, "logs")]
    results = [(attempt_key(r, "results"),
                None if r.get("exit_code") is None
                else int_field(r["exit_code"], "results[].exit_code", lo=-2**31, hi=2**31 - 1),
                None if r.get("error") is None  # cut: every read of the job carried MBs
                else cut_text(scrub_titan_tokens(str(r["error"]).replace("\x00", "\ufffd"))),
                r)
               for r in entries(body, "results")]
    statuses = [services.check_entry({**s, "id": key[0], "attempt": key[1]})
                for s in entries(body, "services")
                for key in [attempt_key(s, "services")]]
    ch = Changes()
    rejected: dict[tuple[int, int], None] = {}
    reasons: dict[tuple[int, int], Row] = {}  # why a result was refused, when it says more
    touched_logs: set[int] = set()
    for key, seq, ts, line in logs:
        if not engine.sched.is_current(*key, worker_id=worker_id):
            rejected[key] = None
            continue
        # A job may print a NUL; PostgreSQL's text cannot hold one (the whole report failed
        # there), so it is kept as U+FFFD, as bytes that are not UTF-8 are. A token it prints
        # (its own, from its environment) is not kept: every viewer reads job logs.
        row = {"job": key[0], "attempt": key[1], "seq": seq,
               "stream": "stderr" if line.get("stream") == "stderr" else "stdout", "ts": ts,
               "line": scrub_titan_tokens(
                   str(line.get("line", "")).replace("\x00", "\ufffd"))[:MAX_LINE],
               "continues": line.get("continues") is True}
        kept = _within_log_cap(engine, key, row)
        if kept:
            ch.log_lines.extend(kept)
            touched_logs.add(key[0])
    # A service's status comes after the lines before it and before its result (the
    # worker's queue order): a result that ends the service withdraws what a status published.
    for status in statuses:
        if not services.report(engine.sched, worker_id, status, ch):
            rejected[(status["id"], status["attempt"])] = None
    for key, exit_code, error, result in results:
        ending = _log_ending(engine, key, worker_id)
        if ending:
            ch.log_lines.extend(ending)
            touched_logs.add(key[0])
        # Another worker's attempt is rejected like a stale one: the job runs on untouched.
        ok = engine.sched.finish(
            key[0], key[1], exit_code, error, bool(result.get("timed_out")), ch,
            worker_id=worker_id, released=result.get("released") is True,
            lost=result.get("lost") is True,
            ended_at=None if result.get("ended_at") is None else number_field(
                result["ended_at"], "results[].ended_at", default=0.0),
            elapsed=None if result.get("elapsed") is None else number_field(
                result["elapsed"], "results[].elapsed", default=0.0),
        )
        if not ok:
            rejected[key] = None
            held_by, why = engine.sched.superseded.get(key, (None, {}))
            if why and held_by == worker_id:  # its lease ran out and the job went again
                reasons[key] = why  # (said only to its worker: it names the job)
        else:
            ch.dispatch = True  # a slot freed: a parked poll may now take a queued job
    if not ch.empty() or ch.dispatch:
        fut = engine.submit(ch)
        await fut
        for job in touched_logs:
            engine.hub.notify(("log", job))
        if engine.hub.watched:
            publish_log_lines(engine, ch.log_lines)
    # A reason's fields are new: a worker of an earlier version reads only "id" and "attempt".
    return {"rejected": [{"id": j, "attempt": a, **reasons.get((j, a), {})}
                         for j, a in rejected]}


def _within_log_cap(engine: Engine, key: tuple[int, int], row: Row) -> list[Row]:
    """The rows to write for a line of attempt ``key`` (``TITAN_MAX_LOG_MB``, log_cap.py)."""
    cap = engine.config.max_log_bytes
    job = engine.sched.jobs.get(key[0])
    if not cap or job is None:
        return [row]
    job.log = log_cap.attempt_log(job.log, key[1])
    return job.log.keep(row, cap)


def _log_ending(engine: Engine, key: tuple[int, int], worker_id: str) -> list[Row]:
    """The lines an attempt printed last past the cap, written as its result comes."""
    job = engine.sched.jobs.get(key[0])
    if job is None or job.log is None or job.log.attempt != key[1] or not job.log.tail \
            or not engine.sched.is_current(*key, worker_id=worker_id):
        return []
    return job.log.ending()


def publish_log_lines(engine: Engine, rows: list[Row]) -> None:
    """One ``log_lines`` event per (job, attempt) of a committed batch, for followers."""
    by_attempt: dict[tuple[int, int], list[Row]] = {}
    for r in rows:
        by_attempt.setdefault((r["job"], r["attempt"]), []).append(
            {"seq": r["seq"], "stream": r["stream"], "ts": r["ts"], "line": r["line"],
             "continues": True} if r["continues"] else
            {"seq": r["seq"], "stream": r["stream"], "ts": r["ts"], "line": r["line"]})
    for (job, attempt), lines in by_attempt.items():
        engine.hub.publish("log_lines", {"job": job, "attempt": attempt, "lines": lines})


async def deregister(engine: Engine, worker_id: str) -> Row:
    with contextlib.suppress(Exception):
        worker = engine.worker(worker_id)
        ch = Changes()
        engine.sched.lose_worker(worker, ch, state="stopped")
        ch.events.append(("worker_updated", {"id": worker_id, "state": "stopped"}))
        if worker.poll is not None and not worker.poll.done():
            worker.poll.set_result(None)
        await engine.submit(ch)
    return {}
