"""Agent runs and their actions: ingestion, the registry, details, export, budgets, retention."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from fastapi import APIRouter, Body, Query, Request, Response
from fastapi.responses import StreamingResponse

from titan.errors import NotFound, ValidationFailed
from titan.master.api import models
from titan.master.api.body import JSONRoute, check_fields, json_of
from titan.master.api.deps import (
    API_PREFIX,
    CtxDep,
    Pruner,
    Reader,
    RunKeeper,
    RunReader,
    RunRecorder,
    Writer,
)
from titan.master.api.params import Choices, MaybeAfter, Offset, Seq
from titan.master.otel.ids import is_imported_run
from titan.master.runs import batch, export, job_scope, ledger, liveness
from titan.master.runs.ingest import MAX_AGENT_ID, MAX_USD, OUTCOMES
from titan.master.runs.lookup import run_or_404
from titan.master.runs.views import (
    INTERVENTION_ALERT,
    LIST_PREVIEW,
    action_view,
    agent_view,
    csv_choices,
    intercept_reasons,
    one_agent,
    run_detail,
    run_query,
    runs_view,
    stage_labels,
)
from titan.master.scheduling.refs import ROW_MAX
from titan.storage.base import ActionQuery, Row, Transaction
from titan.windows import check_window, deletion_cutoff

router = APIRouter(prefix=API_PREFIX, route_class=JSONRoute, tags=["runs"])


def _not_imported(body: Any) -> None:
    if isinstance(body, dict) and isinstance(body.get("id"), str) \
            and is_imported_run(body["id"]):
        # The runs of imported traces are the OTLP receiver's: spans of that trace went into
        # a run of this id that someone had made, and rewrote its times.
        raise ValidationFailed(
            "run ids of the form otel-<32 hex digits> are the runs of OpenTelemetry traces "
            "the master imports (docs/opentelemetry.md); choose another id",
            details={"field": "id"})


@router.post("/runs", status_code=201, summary="Open an agent run (idempotent by id)")
async def create_run(c: CtxDep, p: Writer, response: Response,
                     body: Any = Body(...)) -> Row:
    _not_imported(body)
    run, created = await c.runs.create_run(body, p, once=True)
    if not created:
        response.status_code = 200
    return await c.engine.read(lambda tx: runs_view(tx, [run], whole_error=True)[0])


@router.get("/runs", summary="The run registry, most recent first")
async def list_runs(c: CtxDep, p: Reader, status: Choices = None,
                    min_cost: float | None = None, window: str | None = None,
                    agent: str | None = None, agent_id: str | None = None,
                    q: str | None = None, sort: str | None = None,
                    archived: str | None = None,
                    limit: int = Query(50, ge=1, le=1000), offset: Offset = 0) -> Row:
    query = run_query(status, min_cost, window, one_agent(agent, agent_id), q, sort=sort,
                      archived=archived)

    def read(tx: Transaction) -> Row:
        rows, total = tx.list_runs(query, limit, offset)
        return {"runs": runs_view(tx, rows), "total": total, "limit": limit, "offset": offset}

    return await c.engine.read(read)


@router.get("/runs/intercepts", summary="Runs that need a look: failed, over budget, "
                                         "high intervention rate")
async def intercepts(c: CtxDep, p: Reader, window: str | None = None,
                     limit: int = Query(20, ge=1, le=500)) -> Row:
    since = check_window(window)

    def read(tx: Transaction) -> Row:
        runs = runs_view(tx, tx.intercepts(since, INTERVENTION_ALERT, limit))
        total = len(runs) if len(runs) < limit else tx.count_intercepts(since,
                                                                        INTERVENTION_ALERT)
        return {"intercepts": [dict(r, reasons=intercept_reasons(r)) for r in runs],
                "total": total}

    return await c.engine.read(read)


# Seed 004: an export "includes runs and all actions"; actions=false asks for the runs alone.
@router.get("/runs/export", summary="Export runs and all their actions (actions=false: the "
            "runs alone) as CSV, JSON or JSONL")
async def export_runs(c: CtxDep, p: Reader, format: str = "jsonl", actions: bool = True,
                      status: Choices = None, min_cost: float | None = None,
                      window: str | None = None, agent: str | None = None,
                      agent_id: str | None = None,
                      q: str | None = None, older_than: str | None = None,
                      sort: str | None = None, archived: str | None = None,
                      prunable: bool = False,
                      run: list[str] | None = Query(None, description=(
                          "only these runs (repeatable; each must exist), archived or not; "
                          "the other filters still apply"))) -> StreamingResponse:
    # In the list's order, checked as the list checks it: the Runs page sorted by cost
    # exported a file newest first, and a sort the list refuses was taken in silence.
    # prunable: only what a prune would delete (`titan runs prune --export-to` saved runs
    # of classes it keeps, and said "saved 4" then "deleted 2").
    query = run_query(status, min_cost, window, one_agent(agent, agent_id), q, older_than,
                      sort=sort,
                      archived=archived, prunable=prunable, ids=run)
    if query.ids:
        # Before the first byte: once the file streams, a status code can no longer say it.
        await c.engine.read(lambda tx: [run_or_404(tx, i) for i in dict.fromkeys(query.ids or ())])
    # In any case, as status and window are: seed 004 names them "CSV, JSON, JSONL".
    if format.lower() not in export.FORMATS:
        raise ValidationFailed(f"format must be one of {', '.join(export.FORMATS)}, "
                               f"got {format!r}", details={"field": "format"})
    format = format.lower()
    name = f"titan-runs-{time.strftime('%Y%m%d-%H%M%S')}.{format}"
    return StreamingResponse(
        export.stream(c.storage.transaction, query, format, actions, c.blobs),
        media_type=export.FORMATS[format],
        headers={"Content-Disposition": f'attachment; filename="{name}"'})


@router.post("/runs/prune", summary="Delete finished runs older than a window (retention)")
async def prune_runs(c: CtxDep, p: Pruner, body: Any = Body(...)) -> Row:
    if not isinstance(body, dict) or not isinstance(body.get("older_than"), str):
        raise ValidationFailed('the body must be {"older_than": "90d", "dry_run": false}')
    # A typo ("dryRun") was ignored, and the prune deleted for real.
    unknown = sorted(set(body) - {"older_than", "dry_run", "run_ids", "runs"})
    if unknown:
        raise ValidationFailed(f"unknown field {unknown[0]!r}; known fields: older_than, "
                               "dry_run, run_ids, runs", details={"field": unknown[0]})
    dry_run = body.get("dry_run", False)
    if not isinstance(dry_run, bool):
        raise ValidationFailed("dry_run must be true or false", details={"field": "dry_run"})
    before = deletion_cutoff(body["older_than"], "older_than")
    among = body.get("run_ids")
    if among is not None and (not isinstance(among, list)
                              or not all(isinstance(i, str) for i in among)):
        raise ValidationFailed("run_ids must be a list of run ids")
    reply: Row = {"dry_run": dry_run, "before": before}
    if "runs" in body:
        if among is not None:
            raise ValidationFailed("give run_ids or runs, not both", details={"field": "runs"})
        pruned = await c.retention.prune_exported(before, _exported(body["runs"]), dry_run)
        ids = pruned.run_ids
        reply.update(changed=pruned.changed[:1000], kept=pruned.kept[:1000])
    else:
        ids = await c.retention.prune(before, dry_run=dry_run, among=among)
    if ids and not dry_run:
        c.blob_gc.soon()  # what only those runs named goes too
    return {"pruned": len(ids), "run_ids": ids[:1000], **reply}


def _exported(runs: Any) -> dict[str, tuple[int, str | None]]:
    """``runs`` of a prune: each run as an export saved it, ``{"id", "action_count",
    "chain_head"}``."""
    shape = ('runs must be a list of {"id": "...", "action_count": 3, "chain_head": '
             '"..." or null}, each run as the export saved it')
    if not isinstance(runs, list):
        raise ValidationFailed(shape, details={"field": "runs"})
    exported: dict[str, tuple[int, str | None]] = {}
    for i, r in enumerate(runs):
        if not (isinstance(r, dict) and set(r) == {"id", "action_count", "chain_head"}
                and isinstance(r["id"], str) and type(r["action_count"]) is int
                and (r["chain_head"] is None or isinstance(r["chain_head"], str))):
            raise ValidationFailed(f"runs[{i}]: {shape}", details={"field": f"runs[{i}]"})
        exported[r["id"]] = (r["action_count"], r["chain_head"])
    return exported


@router.post("/runs/batch", summary="Several runs' opening, code, actions and ends in one "
                                      "request, in order")
async def runs_batch(c: CtxDep, p: RunRecorder, request: Request) -> Row:
    return await batch.apply(c.runs, c.replays.set_code, _not_imported,
                             await json_of(request, models.RunsBatch), p)


@router.post("/runs/alive", summary="A sign of life of the process recording these runs")
async def runs_alive(c: CtxDep, p: Writer, body: Any = Body(...)) -> Row:
    return await liveness.mark_alive(c.runs, body, p)


@router.get("/runs/{run_id}", summary="One run: totals, stages, cost by stage/actor/channel")
async def get_run(c: CtxDep, p: RunReader, run_id: str) -> Row:
    job_scope.check_agent_run(c.engine.sched, run_id, p, "read")

    def read(tx: Transaction) -> Row:
        run = run_or_404(tx, run_id)
        return run_detail(tx, run)

    return await c.engine.read(read)


@router.patch("/runs/{run_id}", summary="End a run, set its budget, tags or version")
async def patch_run(c: CtxDep, p: Writer, run_id: str, body: Any = Body(...)) -> Row:
    run = await c.runs.update_run(run_id, body, p)
    return await c.engine.read(lambda tx: runs_view(tx, [run], whole_error=True)[0])


@router.post("/runs/{run_id}/archive", summary="Archive a run: hidden from the registry, "
                                            "kept whole")
async def archive_run(c: CtxDep, p: RunKeeper, run_id: str) -> Row:
    run = await c.retention.set_archived(run_id, True)
    return await c.engine.read(lambda tx: runs_view(tx, [run], whole_error=True)[0])


@router.post("/runs/{run_id}/unarchive", summary="Bring an archived run back to the registry")
async def unarchive_run(c: CtxDep, p: RunKeeper, run_id: str) -> Row:
    run = await c.retention.set_archived(run_id, False)
    return await c.engine.read(lambda tx: runs_view(tx, [run], whole_error=True)[0])


@router.post("/runs/{run_id}/actions", summary="Record a batch of actions (all or nothing)")
async def add_actions(c: CtxDep, p: RunRecorder, request: Request, run_id: str) -> Row:
    return await c.runs.ingest(run_id, await json_of(request, models.ActionBatch), p)


@router.get("/runs/{run_id}/actions", summary="A run's actions in order, filtered, by page")
async def list_actions(c: CtxDep, p: Reader, run_id: str, outcome: Choices = None,
                       q: str | None = None, actor: str | None = None,
                       channel: str | None = None, after: MaybeAfter = None,
                       limit: int = Query(100, ge=1, le=1000), offset: Offset = 0,
                       preview: int = Query(LIST_PREVIEW, ge=0, le=100_000)) -> Row:
    query = ActionQuery(outcomes=csv_choices(outcome, OUTCOMES, "outcome"), search=q or None,
                        actor=actor or None, channel=channel or None, after=after)

    def read(tx: Transaction) -> Row:
        stages = stage_labels(tx, run_or_404(tx, run_id))
        rows, matched = tx.list_actions(run_id, query, limit, offset, preview)
        return {"actions": [action_view(a, stages) for a in rows], "matched": matched,
                "limit": limit, "offset": offset}

    return await c.engine.read(read)


@router.get("/runs/{run_id}/actions/{seq}", summary="One action, inputs and outputs in full")
async def get_action(c: CtxDep, p: Reader, run_id: str, seq: Seq) -> Row:
    def read(tx: Transaction) -> tuple[Row | None, frozenset[str]]:
        run = tx.get_run(run_id)
        return tx.get_action(run_id, seq), stage_labels(tx, run) if run else frozenset()

    a, stages = (None, frozenset()) if seq > ROW_MAX else await c.engine.read(read)
    if a is None:
        raise NotFound(f"agent run {run_id!r} has no action {seq}")
    for side in ("inputs", "outputs"):
        if a[f"{side}_blob"] and a[f"{side}_hash"]:
            text = await asyncio.to_thread(c.blobs.read_text, a[f"{side}_hash"])
            if text is not None:
                a[side] = text
                a[f"{side}_blob"] = False
    return action_view(a, stages)


@router.get("/runs/{run_id}/verify", summary="Check a run's ledger: the first action edited, "
                                           "deleted, inserted or reordered after recording")
async def verify_run(c: CtxDep, p: Reader, run_id: str) -> Row:
    verdict = await c.engine.read(lambda tx: ledger.verify_run(tx, run_or_404(tx, run_id),
                                                               blobs=c.blobs))
    c.runs.ledger.remember(verdict)  # the Activity Ledger shows it from now on
    return ledger.verdict_view(verdict)


@router.get("/agents", summary="Agent ids containing some text, for the pages' agent fields")
async def find_agents(c: CtxDep, p: Reader, q: str = "",
                      limit: int = Query(50, ge=1, le=1000)) -> Row:
    # The Runs and Activity Ledger pages list the first 500 agent ids with the page; past
    # those, the agent field asks here as the user types (static/agent_ids.js).
    ids = await c.engine.read(lambda tx: tx.agent_ids(q.strip(), limit))
    return {"agent_ids": ids}


@router.get("/agents/{agent_id:path}", summary="An agent: its budget and its runs over time")
async def get_agent(c: CtxDep, p: Reader, agent_id: str,
                    limit: int = Query(100, ge=1, le=1000)) -> Row:
    def read(tx: Transaction) -> Row:
        series = tx.agent_runs_series(agent_id, limit)
        agent = tx.get_agent(agent_id)
        if not series and agent is None:
            raise NotFound(f"no agent {agent_id!r} (no run names it)")
        return agent_view(agent_id, agent, series)

    return await c.engine.read(read)


@router.patch("/agents/{agent_id:path}", summary="Set the budget every run of an agent gets")
async def patch_agent(c: CtxDep, p: RunKeeper, agent_id: str, body: Any = Body(...)) -> Row:
    if isinstance(body, dict):
        check_fields(body, frozenset({"budget_usd"}))
    if not isinstance(body, dict) or "budget_usd" not in body:
        raise ValidationFailed('the body must be {"budget_usd": <USD or null>}',
                               details={"field": "budget_usd"})
    if len(agent_id) > MAX_AGENT_ID:
        # As a run's agent_id: no run could belong to a longer one, and PostgreSQL's column
        # refused it (a 400 naming no field) where SQLite made the agent.
        raise ValidationFailed(f"agent_id is {len(agent_id):,} characters long; an agent id "
                               f"holds at most {MAX_AGENT_ID} characters",
                               details={"field": "agent_id", "max_length": MAX_AGENT_ID})
    budget = body["budget_usd"]
    if budget is not None and (not isinstance(budget, int | float) or isinstance(budget, bool)
                               or not 0 <= budget <= MAX_USD):
        raise ValidationFailed(f"budget_usd must be a number of USD from 0 to {MAX_USD:g}, "
                               "or null", details={"field": "budget_usd"})
    await c.runs.set_agent_budget(agent_id, None if budget is None else float(budget))
    return await get_agent(c, p, agent_id, limit=100)
