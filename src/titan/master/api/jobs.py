"""Jobs: status, waiting, cancel, stop, retry, approval decisions and logs.

A job ``{ref}`` may contain one '/' (``dag/job``), so these routes use a path parameter; the
action routes are declared first. A job literally named ``logs`` or ``wait`` is still
reachable by its numeric id or with ``GET /jobs?ref=``. What this module reads again by a
row's id it names ``#17``, the id alone (:func:`~titan.master.scheduling.refs.id_form`).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Body, Query, Request
from fastapi.responses import PlainTextResponse, StreamingResponse

from titan import log_lines
from titan.errors import NotFound, ValidationFailed, WaitTimeout, unstorable
from titan.master.api.body import JSONRoute
from titan.master.api.deps import API_PREFIX, CtxDep, Operator, Reader, Writer, still_valid
from titan.master.api.params import After, Attempt
from titan.master.auth.tokens import Principal
from titan.master.context import Ctx
from titan.master.events import Guard
from titan.master.scheduling.gates import MAX_COMMENT
from titan.master.scheduling.lending import lending
from titan.master.scheduling.refs import find_job
from titan.master.scheduling.state import TERMINAL
from titan.master.scheduling.views import job_with_attempts
from titan.storage.base import Row, Transaction

router = APIRouter(prefix=API_PREFIX, route_class=JSONRoute, tags=["jobs"])


def load_job(tx: Transaction, ref: str) -> Row:
    view = job_with_attempts(tx, find_job(tx, ref)["id"])
    if view is None:  # deleted by retention between the two reads
        raise NotFound(f"job {ref!r} no longer exists: it was deleted by retention",
                       details={"ref": ref})
    return view


@router.get("/jobs", summary="Look a job up by reference")
async def lookup(c: CtxDep, p: Reader, ref: str) -> Row:
    return await c.engine.read(lambda tx: load_job(tx, ref))


@router.get("/jobs/{ref:path}/wait", summary="Long-poll until the job has finished")
async def wait_job(c: CtxDep, p: Reader, request: Request, ref: str,
                   timeout: float = Query(30, ge=0, le=300)) -> Row:
    guard = still_valid(request)
    # A name submitted lately is known without a read: the wait registers on its job first.
    named = c.engine.job_names.newest(ref)
    if named is not None:
        try:
            with lending(c.engine, p):
                return await _wait_for(c, named, None, timeout, guard)
        except NotFound:
            pass  # deleted since: the name now means an older job, read as any other ref
    job = await c.engine.read(lambda tx: load_job(tx, ref))
    if job["state"] in TERMINAL:
        return job  # what it read is committed: finished, and so for good
    with lending(c.engine, p):
        return await _wait_for(c, job["id"], job, timeout, guard)


async def _wait_for(c: Ctx, job_id: int, job: Row | None, timeout: float, guard: Guard) -> Row:
    """Wait for job ``job_id`` to finish (``job``: its row as last read, if it was); its
    view, read in the commit that finished it when the wait began before that commit."""
    topic = ("job", job_id)
    waiter = c.hub.waiter(topic)
    try:
        live = c.engine.sched.jobs.get(job_id)
        if live is None or live.state in TERMINAL:  # memory knows; else read what committed
            job = await c.engine.read(lambda tx: load_job(tx, f"#{job_id}"))  # that id alone
        if job is None or job["state"] not in TERMINAL:
            try:
                await c.hub.until(waiter, timeout=timeout, guard=guard)
                view = waiter.result()
            except TimeoutError:
                if job is None:
                    job = await c.engine.read(lambda tx: load_job(tx, f"#{job_id}"))
                raise WaitTimeout(f"job {job['ref']} is still {job['state']} after {timeout:g}s",
                                  details={"state": job["state"]}) from None
            if isinstance(view, dict) and view.get("id") == job_id:
                return view  # read in the commit that finished it
            job = await c.engine.read(lambda tx: load_job(tx, f"#{job_id}"))
        assert job is not None
        return job
    finally:
        c.hub.discard(topic, waiter)


@router.post("/jobs/{ref:path}/cancel", summary="Cancel a queued or running job")
async def cancel_job(c: CtxDep, p: Writer, ref: str) -> Row:
    job = await c.engine.read(lambda tx: find_job(tx, ref))
    await c.engine.cancel_job(job["id"], job["state"], ref)
    return await c.engine.read(lambda tx: load_job(tx, f"#{job['id']}"))


@router.post("/jobs/{ref:path}/stop", summary="Stop a service gracefully (not a cancel)")
async def stop_job(c: CtxDep, p: Writer, ref: str, body: dict[str, Any] | None = Body(None)) -> Row:
    grace = (body or {}).get("grace")
    # The rule of a service's stop_grace (services.py): 0 would be a SIGKILL, which is cancel.
    if grace is not None and (isinstance(grace, bool) or not isinstance(grace, int | float)
                              or not 0 < grace <= 3600):
        raise ValidationFailed("grace must be more than 0 and at most 3600 seconds (for a "
                               "kill at once, cancel)", details={"field": "grace"})
    job = await c.engine.read(lambda tx: find_job(tx, ref))
    await c.engine.stop_service(job["id"], job["state"], None if grace is None else float(grace),
                                ref, job.get("job_type"))
    return await c.engine.read(lambda tx: load_job(tx, f"#{job['id']}"))


@router.post("/jobs/{ref:path}/retry", summary="Run a failed, cancelled or timed-out job again")
async def retry_job(c: CtxDep, p: Writer, ref: str) -> Row:
    job = await c.engine.read(lambda tx: find_job(tx, ref))
    await c.engine.retry_job(job["id"], job["dag_id"], p.name or p.role)
    view = await c.engine.read(lambda tx: load_job(tx, f"#{job['id']}"))
    if view.get("agent_run_id"):  # its agent run, ended with the stage, goes on too
        await c.runs.stage_retried(view["agent_run_id"])
    return view


@router.post("/jobs/{ref:path}/approve", summary="Approve a gate waiting for approval")
async def approve_job(c: CtxDep, p: Operator, ref: str, body: dict[str, Any] | None = Body(None)) -> Row:
    return await _decide(c, p, ref, True, body)


@router.post("/jobs/{ref:path}/reject", summary="Reject a gate waiting for approval")
async def reject_job(c: CtxDep, p: Operator, ref: str, body: dict[str, Any] | None = Body(None)) -> Row:
    return await _decide(c, p, ref, False, body)


async def _decide(c: CtxDep, p: Principal, ref: str, approve: bool, body: Row | None) -> Row:
    comment = (body or {}).get("comment")
    if comment is not None and not isinstance(comment, str):
        raise ValidationFailed("comment must be a string", details={"field": "comment"})
    if comment is not None and len(comment) > MAX_COMMENT:
        # Cut silently before: the end of a long "why" was lost with nobody told.
        raise ValidationFailed(f"comment is {len(comment):,} characters long; a decision's "
                               f"comment holds at most {MAX_COMMENT:,}",
                               details={"field": "comment", "max_length": MAX_COMMENT})
    if comment is not None and "\x00" in comment:
        # PostgreSQL's text holds no NUL: refused here, on either database, before the
        # scheduler decides anything (the decision is applied in memory before its commit).
        raise unstorable("comment holds a NUL character (U+0000)", field="comment")
    job = await c.engine.read(lambda tx: find_job(tx, ref))
    await c.engine.decide(job["id"], job["state"], approve, p, comment, name=ref)
    return await c.engine.read(lambda tx: load_job(tx, f"#{job['id']}"))


def _attempt_of(job: Row, ref: str, attempt: int | None) -> int:
    """The attempt whose log is asked for: the latest by default; one the job never had is
    a 404 (as plain text too: an empty 200 read as an empty log)."""
    if attempt is not None and not 1 <= attempt <= max(job["attempt"], 1):
        raise NotFound(f"job {ref!r} has no attempt {attempt}", details={"attempts": job["attempt"]})
    return attempt if attempt is not None else int(job["attempt"])


def _page(tx: Transaction, job: int, attempt: int, after: int, limit: int,
          tail: bool) -> tuple[list[Row], bool]:
    """A page of log lines, at most LOG_PAGE_BYTES of them, and whether lines follow it (a
    page the byte cap cut holds fewer than ``limit`` lines and is not the end)."""
    lines = tx.log_lines(job, attempt, after, limit, tail=tail, max_bytes=LOG_PAGE_BYTES)
    if tail or len(lines) == limit:
        return lines, not tail
    return lines, bool(lines) and bool(tx.log_lines(job, attempt, lines[-1]["seq"], 1))


async def _logs(c: CtxDep, ref: str, attempt: int | None, after: int, limit: int, wait: float,
                guard: Guard, tail: bool = False) -> Row:
    job = await c.engine.read(lambda tx: find_job(tx, ref))
    n = _attempt_of(job, ref, attempt)
    topic = ("log", job["id"])
    waiter = c.hub.waiter(topic) if wait > 0 else None
    try:
        lines, more = await c.engine.read(lambda tx: _page(tx, job["id"], n, after, limit, tail))
        current = await c.engine.read(lambda tx: tx.get_job(job["id"]))
        assert current is not None
        done = current["state"] in TERMINAL or current["attempt"] != n
        if not lines and not done and waiter is not None:
            # Woken by new lines or by the job finishing (it notifies ("job", id)).
            fin = c.hub.waiter(("job", job["id"]))
            try:
                with contextlib.suppress(TimeoutError):
                    await c.hub.until(waiter, fin, timeout=wait, guard=guard)
            finally:
                c.hub.discard(("job", job["id"]), fin)
            lines, more = await c.engine.read(
                lambda tx: _page(tx, job["id"], n, after, limit, False))
            current = await c.engine.read(lambda tx: tx.get_job(job["id"]))
            assert current is not None
            done = current["state"] in TERMINAL or current["attempt"] != n
        return {"job": job["id"], "attempt": n, "lines": lines,
                "next": lines[-1]["seq"] if lines else after,
                "more": more, "done": done and not more, "state": current["state"],
                "latest": int(current["attempt"])}
    finally:
        if waiter is not None:
            c.hub.discard(topic, waiter)


@router.get("/jobs/{ref:path}/logs", summary="Log lines of one attempt (long-poll with wait>0)")
async def job_logs(c: CtxDep, p: Reader, request: Request, ref: str, attempt: Attempt = None,
                   after: After = 0, limit: int = Query(10_000, ge=1, le=100_000),
                   wait: float = Query(0, ge=0, le=60),
                   tail: bool = Query(False, description=(
                       "the last `limit` lines after `after` instead of the first: a page "
                       "showing a long log starts at its end"))) -> Row:
    return await _logs(c, ref, attempt, after, limit, wait, still_valid(request), tail)


#: The most bytes of log lines one page of ``/logs`` (and one read behind ``logs.txt``)
#: carries, whatever its ``limit``: a stored line is up to 64 KiB, and a page bounded in
#: lines alone sent the job page 268 MB of JSON (20,000 lines from the end, each 100 KB).
LOG_PAGE_BYTES = 4 * 1024 * 1024

#: Log lines read per database read while a plain-text log streams out.
TEXT_PAGE = 5_000


@router.get("/jobs/{ref:path}/logs.txt", response_class=PlainTextResponse,
            summary="Log of one attempt as plain text")
async def job_logs_text(c: CtxDep, p: Reader, ref: str,
                        attempt: Attempt = None) -> StreamingResponse:
    job = await c.engine.read(lambda tx: find_job(tx, ref))
    n = _attempt_of(job, ref, attempt)

    async def pages() -> AsyncIterator[bytes]:
        # A page at a time: built whole, a 300 MB log took the master from 0.3 to 0.9 GB for
        # each download, and any viewer could ask for it three times at once.
        after = 0

        def page(tx: Transaction, start: int) -> list[Row]:
            return tx.log_lines(job["id"], n, start, TEXT_PAGE, max_bytes=LOG_PAGE_BYTES)

        rejoin = log_lines.Rejoin()  # a line stored in pieces, whole again
        while True:
            # Read until a read comes back empty: a page the byte cap cut is short of
            # TEXT_PAGE lines without being the end.
            batch = await c.engine.read(functools.partial(page, start=after))
            lines = [line for r in batch if (line := rejoin.feed(r)) is not None]
            if not batch:
                lines += rejoin.rest()
            if lines:
                yield "".join(line["line"] + "\n" for line in lines).encode()
            if not batch:
                return
            after = batch[-1]["seq"]

    return StreamingResponse(pages(), media_type="text/plain; charset=utf-8")


@router.get("/jobs/{ref:path}", summary="One job")
async def get_job(c: CtxDep, p: Reader, ref: str) -> Row:
    return await c.engine.read(lambda tx: load_job(tx, ref))
