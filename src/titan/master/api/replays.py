"""Replay and determinism: start a replay, read its report, a run's code and recording."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Query

from titan.errors import NotFound
from titan.master.api.body import JSONRoute
from titan.master.api.deps import API_PREFIX, CtxDep, Reader, Replayer, Writer
from titan.master.api.params import After
from titan.master.replays.report import determinism_report, replay_report, replays_view
from titan.master.runs.lookup import run_or_404
from titan.storage.base import Row, Transaction

router = APIRouter(prefix=API_PREFIX, route_class=JSONRoute, tags=["replay"])


@router.post("/runs/{run_id}/replay", status_code=201,
             summary="Replay a run: re-execute its code with recorded calls served")
async def start_replay(c: CtxDep, p: Replayer, run_id: str, body: Any = Body(None)) -> Row:
    return await c.replays.start(run_id, body, p)


@router.get("/runs/{run_id}/replay", summary="A replay's report: match rate, divergences, "
                                             "comparison with its original")
async def get_replay(c: CtxDep, p: Reader, run_id: str) -> Row:
    def read(tx: Transaction) -> Row:
        run = run_or_404(tx, run_id)
        if not run.get("replay_of"):
            raise NotFound(f"agent run {run_id!r} is not a replay (its replays: "
                           f"GET /api/v1/runs/{run_id}/replays)")
        return replay_report(tx, c.blobs, run)

    return await c.engine.read(read)


@router.get("/runs/{run_id}/replays", summary="The replays of a run, newest first")
async def list_replays(c: CtxDep, p: Reader, run_id: str,
                       limit: int = Query(50, ge=1, le=500)) -> Row:
    def read(tx: Transaction) -> Row:
        run_or_404(tx, run_id)
        return {"replays": replays_view(tx.replays_of(run_id, limit))}

    return await c.engine.read(read)


@router.get("/runs/{run_id}/determinism", summary="A run's determinism score and findings")
async def determinism(c: CtxDep, p: Reader, run_id: str) -> Row:
    return await c.engine.read(lambda tx: determinism_report(tx, c.blobs, run_or_404(tx, run_id)))


@router.put("/runs/{run_id}/code", summary="Record the code a run is made of (for replays)")
async def put_code(c: CtxDep, p: Writer, run_id: str, body: Any = Body(...)) -> Row:
    return await c.replays.set_code(run_id, body, p)


@router.get("/runs/{run_id}/recording", summary="A run's recorded calls by actor, outputs "
                                                "in full (what a replay serves)")
async def recording(c: CtxDep, p: Reader, run_id: str, actor: str = Query(..., min_length=1),
                    after: After = 0, limit: int = Query(1000, ge=1, le=5000)) -> Row:
    def read(tx: Transaction) -> Row:
        run_or_404(tx, run_id)
        rows = tx.recorded_actions(run_id, actor, after, limit)
        out = []
        for a in rows:
            outputs = a["outputs"]
            if a["outputs_blob"] and a["outputs_hash"]:
                stored = c.blobs.read_text(a["outputs_hash"])
                outputs = outputs if stored is None else stored
            out.append({k: a[k] for k in ("seq", "id", "parent_id", "actor", "channel",
                                          "name", "ordinal", "inputs_hash", "outcome",
                                          "error_type", "error_message", "model",
                                          "duration_ns")} | {
                "outputs": outputs, "redacted": sorted(a.get("pii") or {})})
        # The patterns the master redacts with: the replay redacts a call's live inputs the
        # same way before comparing them with recorded inputs that were redacted.
        redactor = c.runs.redactor
        return {"actions": out, "next_after": rows[-1]["seq"] if len(rows) == limit else None,
                "redaction": redactor.config() if redactor is not None else None}

    return await c.engine.read(read)
