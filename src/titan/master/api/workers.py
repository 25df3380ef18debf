"""The worker protocol's routes (logic in :mod:`titan.master.scheduling.worker_protocol`)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body

from titan.master.api.body import JSONRoute
from titan.master.api.deps import API_PREFIX, CtxDep, Reader, WorkerAuth, WorkerSelf
from titan.master.scheduling import worker_protocol as proto
from titan.storage.base import Row

router = APIRouter(prefix=API_PREFIX, route_class=JSONRoute, tags=["workers"])


@router.post("/workers/register", summary="A worker joins (or re-joins with its old id)")
async def register(c: CtxDep, p: WorkerAuth, body: dict[str, Any] = Body(...)) -> Row:
    return await proto.register(c.engine, body, p)


@router.post("/workers/{worker_id}/poll", summary="Long-poll for jobs and cancels")
async def poll(c: CtxDep, p: WorkerSelf, worker_id: str, body: dict[str, Any] = Body(...)) -> Row:
    return await proto.poll(c.engine, worker_id,
                            proto.int_field(body.get("free_slots"), "free_slots", default=0),
                            proto.number_field(body.get("wait"), "wait", default=20.0),
                            draining=body.get("draining") is True)


@router.post("/workers/{worker_id}/heartbeat", summary="Renew leases")
async def heartbeat(c: CtxDep, p: WorkerSelf, worker_id: str, body: dict[str, Any] = Body(...)) -> Row:
    return await proto.heartbeat(c.engine, worker_id, body)


@router.post("/workers/{worker_id}/report", summary="Log lines and results")
async def report(c: CtxDep, p: WorkerSelf, worker_id: str, body: dict[str, Any] = Body(...)) -> Row:
    return await proto.report(c.engine, worker_id, body)


@router.post("/workers/{worker_id}/deregister", summary="A draining worker leaves")
async def deregister(c: CtxDep, p: WorkerSelf, worker_id: str) -> Row:
    return await proto.deregister(c.engine, worker_id)


@router.get("/workers", summary="Workers, queue depths, and jobs no worker can run")
async def list_workers(c: CtxDep, p: Reader) -> Row:
    return await proto.workers_view(c.engine)
