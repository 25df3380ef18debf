"""Schedules: a DAG submitted at each tick of a cron expression; change, pause, resume, run now."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Request

from titan.master.api.body import JSONRoute
from titan.master.api.deps import API_PREFIX, CtxDep, Reader, ScheduleManager
from titan.master.auth import tokens as auth
from titan.master.idempotency import key_of, scope_of
from titan.master.scheduling.views import dag_view
from titan.storage.base import Row, Transaction

router = APIRouter(prefix=API_PREFIX, route_class=JSONRoute, tags=["schedules"])


@router.post("/schedules", status_code=201,
             summary="Create a schedule: a DAG submitted at each tick of a cron expression")
async def create_schedule(c: CtxDep, p: ScheduleManager, request: Request,
                          body: dict[str, Any] = Body(...)) -> Row:
    return await c.schedules.create(body, p.name or p.role, idempotency_key=key_of(request),
                                    scope=await scope_of(request, p),
                                    max_jobs=c.config.max_dag_jobs)


@router.get("/schedules", summary="Every schedule, with its next ticks and latest fires")
async def list_schedules(c: CtxDep, p: Reader) -> Row:
    return {"schedules": await c.schedules.views()}


@router.get("/schedules/{name}", summary="One schedule: next ticks, latest fires, its jobs")
async def get_schedule(c: CtxDep, p: Reader, name: str) -> Row:
    # A job's env holds its API keys: only who may manage schedules reads their values.
    return await c.schedules.view(name, env_values=p.role in auth.OPERATE)


@router.patch("/schedules/{name}",
              summary="Change a schedule's cron, time zone, policies or DAG (from its next tick)")
async def update_schedule(c: CtxDep, p: ScheduleManager, name: str,
                          body: dict[str, Any] = Body(...)) -> Row:
    return await c.schedules.update(name, body, max_jobs=c.config.max_dag_jobs)


@router.delete("/schedules/{name}", summary="Delete a schedule (the runs it started stay)")
async def delete_schedule(c: CtxDep, p: ScheduleManager, name: str) -> Row:
    await c.schedules.delete(name)
    return {"name": name, "deleted": True}


@router.post("/schedules/{name}/pause", summary="Pause a schedule: its ticks stop firing")
async def pause_schedule(c: CtxDep, p: ScheduleManager, name: str) -> Row:
    return await c.schedules.pause(name)


@router.post("/schedules/{name}/resume",
             summary="Resume a schedule from its next tick (ticks while paused are not run)")
async def resume_schedule(c: CtxDep, p: ScheduleManager, name: str) -> Row:
    return await c.schedules.resume(name)


@router.post("/schedules/{name}/run", status_code=201,
             summary="Run a schedule's DAG now, outside its ticks")
async def run_schedule(c: CtxDep, p: ScheduleManager, request: Request, name: str) -> Row:
    dag_id = await c.schedules.run_now(name, idempotency_key=key_of(request),
                                       scope=await scope_of(request, p))

    def read(tx: Transaction) -> Row:
        dag = tx.get_dag(dag_id)
        assert dag is not None  # committed before run_now returned
        return dag_view(dag, tx.job_counts([dag_id])[dag_id])

    return await c.engine.read(read)
