"""The worker protocol's request and reply shapes, for the OpenAPI description.

Workers speak these (``/workers/register``, ``/poll``, ``/heartbeat``, ``/report``), not the
SDK; the master reads them by hand on its hottest routes (:mod:`titan.master.api.workers`).
Built as :mod:`titan.master.api.models`' are: requests closed, replies open.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from titan.master.api.models import Closed, Open, Timestamp


class AttemptRef(Open):
    id: int
    attempt: int


class WorkerRegister(Closed):
    worker_id: str | None = None
    name: str | None = Field(None, max_length=200)
    hostname: str | None = Field(None, max_length=255)
    pid: int | None = Field(None, ge=0, le=2**31 - 1)
    version: str | None = Field(None, max_length=64, description="Its Titan version")
    now: Timestamp | None = Field(None, description="Its clock as it sent this (clock skew)")
    capabilities: list[str] | None = None
    slots: int | None = Field(None, ge=1, le=4096)
    running: list[AttemptRef] | None = None
    # It may run more jobs than its slots while some wait on the master (their slots lent).
    lend: bool = False
    # Its name was given (--name): refused while a live worker holds it, not made free
    # (master/scheduling/worker_names.py).
    name_given: bool = False


class WorkerPoll(Closed):
    free_slots: int = Field(0, ge=0)
    wait: float = Field(20.0, ge=0, le=60, description="Seconds to hold the poll open")
    draining: bool = False


class Heartbeat(Closed):
    running: list[AttemptRef] | None = None
    now: Timestamp | None = Field(None, description="Its clock as it sent this (clock skew)")


class Report(Closed):
    logs: list[dict[str, Any]] | None = Field(
        None, description="{id, attempt, seq, ts, stream, line}")
    results: list[dict[str, Any]] | None = Field(
        None, description="{id, attempt, exit_code, error, timed_out, released}")
    services: list[dict[str, Any]] | None = Field(
        None, description="{id, attempt, health, host, port, restarts, up_since, detail, pid}")


class WorkerRegistered(Open):
    worker_id: str
    lease_seconds: float
    heartbeat_seconds: float
    # Bound to worker_id: calls for this worker (and re-registering it) must carry it.
    credential: str | None = None


class PollReply(Open):
    jobs: list[dict[str, Any]]
    cancel: list[AttemptRef]


class HeartbeatReply(Open):
    cancel: list[AttemptRef]
