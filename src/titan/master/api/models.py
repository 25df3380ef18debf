"""The API's request and reply shapes as Pydantic models, for the OpenAPI description.

Documentation, not the hot path: handlers keep their hand-written checks (cheaper than model
validation on the workers' and the store's routes, and their 400s name the field the same
way), and :mod:`titan.master.api.openapi` puts these schemas on the operations. Request models
forbid unknown fields, and the API refuses a body with one by them (a top-level field the
model does not list is a 400 naming it: :class:`titan.master.api.body.JSONRoute`); reply
models list what the server always sends and allow more (an older client ignores a field it
does not know).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Timestamp = float  # Unix epoch seconds


class Closed(BaseModel):
    """A request: a field it does not list is refused."""

    model_config = ConfigDict(extra="forbid")


class Open(BaseModel):
    """A reply: what the server always sends, and maybe more."""

    model_config = ConfigDict(extra="allow")


class ErrorBody(Closed):
    code: str = Field(description="Stable machine-readable code, e.g. invalid_request")
    message: str = Field(description="What went wrong, naming the field")
    details: dict[str, Any] = Field(description="e.g. {'field': 'jobs[0].delay'}")


class Error(Closed):
    """Every 4xx (and the 5xx that would be a bug)."""
    error: ErrorBody


# ---------------------------------------------------------------------------- requests

class JobSpec(Closed):
    job_id: str = Field(min_length=1, max_length=200)
    filename: str | None = Field(None, description="Script path, relative, no '..'")
    script_sha256: str | None = Field(None, pattern="^[0-9a-f]{64}$")
    job_type: Literal["RUN_PAYLOAD", "RUN", "SERVICE", "DEPLOY_PAYLOAD", "RUN_ARCHIVE",
                      "APPROVAL"] = "RUN_PAYLOAD"
    args: list[str] = []
    parents: list[str] = []
    priority: int = Field(1, ge=-1_000_000, le=1_000_000)
    delay: float | None = Field(0, ge=0)
    affinity: bool = False
    requirement: str | None = "GENERAL"
    retries: int | None = Field(None, ge=0, le=100)
    timeout: float | None = Field(None, gt=0)
    env: dict[str, str] = {}
    runner: Literal["auto", "fork", "subprocess"] | None = "auto"
    port: int | None = Field(0, ge=0, le=65535)
    is_archive: bool = False
    hitl_message: str | None = Field(None, max_length=10_000)
    max_wait_seconds: float | None = Field(None, gt=0)
    # Services only (job_type SERVICE); None: the default (titan/services.py).
    readiness: str | None = Field(None, description="'tcp', 'http:/path' or 'none'")
    max_restarts: int | None = Field(None, ge=0, le=1000)
    restart_window: float | None = Field(None, gt=0, le=7 * 24 * 3600)
    stop_grace: float | None = Field(None, gt=0, le=3600)
    ready_timeout: float | None = Field(None, gt=0, le=24 * 3600)


class DagSubmit(Closed):
    name: str = Field(min_length=1, max_length=200)
    jobs: list[JobSpec] = Field(min_length=1)
    agent_run_id: str | None = None
    agent_id: str | None = None
    run_alias: str | None = None


class Decision(Closed):
    comment: str | None = None


class Stop(Closed):
    grace: float | None = Field(None, gt=0, le=3600,
                                description="Seconds between SIGTERM and SIGKILL (default: "
                                            "the service's stop_grace)")


class StoreValue(Closed):
    value: str = Field(description="A string (serialise other data, e.g. as JSON)")


class SetMember(Closed):
    member: str


class Increment(Closed):
    by: int = 1


class BlobList(Closed):
    sha256: list[str]


class BlobCollect(Closed):
    dry_run: bool = Field(False, description="Say what would go; delete nothing")
    min_age: str | None = Field(None, description="Only blobs unused this long: 12h, 1d "
                                "(at least 1h; default TITAN_BLOB_GC, else 1d)")


class TokenCreate(Closed):
    role: Literal["admin", "operator", "viewer", "worker"]
    name: str | None = Field(None, min_length=1, max_length=200,
                             description="Default: the role; no control or direction characters")


class ActionBatch(Closed):
    actions: list[dict[str, Any]] = Field(
        min_length=1, max_length=10_000,
        description="{id?, name, channel?, actor?, ordinal?, inputs?, outputs?, started_at, "
                    "...}: the action fields of docs/api.md")


class RunsBatch(Closed):
    ops: list[dict[str, Any]] = Field(
        min_length=1, max_length=1_000,
        description='{"run": id, and one of "create", "code", "actions", "update"}')


# ---------------------------------------------------------------------------- replies

class Health(Open):
    status: Literal["ok", "unavailable"] = Field(
        description="ok (200), or unavailable (503: writes wait for the database, or the "
                    "leadership cannot be confirmed; reason and since_seconds say more)")
    version: str
    time: Timestamp
    reason: str | None = Field(None, description="Why unavailable")
    since_seconds: float | None = Field(None, description="For how long it has been so")


class MasterProof(Open):
    proof: str = Field(description="HMAC-SHA256 of the nonce keyed by the token's SHA-256 "
                                   "(titan/master_proof.py)")


class JobView(Open):
    id: int
    job_id: str
    ref: str
    dag_id: int
    dag: str
    run: int
    state: str
    attempt: int
    kind: Literal["run", "service", "approval"]
    parents: list[str]
    submitted_at: Timestamp | None
    # Services: where it is reached while it runs, how it is, and the rest (else null).
    address: str | None
    health: Literal["starting", "ready", "unhealthy", "restarting"] | None
    service: dict[str, Any] | None
    decisions: list[dict[str, Any]] | None = Field(
        None, description="Approval gates: the decisions a retry asked again, first first, "
                          "each {state, decided_by, decided_at, comment, retried_by, "
                          "retried_at}; null until one")
    not_before: Timestamp | None = Field(
        None, description="While PENDING, waiting out a retry's backoff or its delay: when "
                          "it becomes runnable; else null")


class DagView(Open):
    id: int
    name: str
    run: int
    ref: str
    agent_run_id: str | None
    status: str
    submitted_at: Timestamp | None
    counts: dict[str, int]
    jobs: list[JobView] | None = None
    schedule: str | None = Field(None, description="The schedule whose tick started it")


class DagList(Open):
    dags: list[DagView]
    total: int
    limit: int
    offset: int


class LogLine(Open):
    seq: int
    line: str


class LogPage(Open):
    job: int
    attempt: int
    lines: list[LogLine]
    next: int
    more: bool = Field(description="Lines follow this page (its lines or bytes ran out): "
                                   "ask again after `next`")
    done: bool
    state: str
    latest: int


class StoreReply(Open):
    key: str
    value: str | None


class Counter(Open):
    key: str
    value: int


class SetAdded(Open):
    key: str
    added: int


class Members(Open):
    key: str
    members: list[str]


class Deleted(Open):
    key: str
    deleted: bool


class Keys(Open):
    keys: list[str]


class BlobStored(Open):
    sha256: str
    size: int


class Missing(Open):
    missing: list[str]


class BlobsCollected(Open):
    dry_run: bool
    min_age: str
    before: Timestamp = Field(description="Blobs last stored or used before this went")
    blobs: int = Field(description="How many went (with dry_run: would go)")
    bytes: int
    sha256: list[str] = Field(description="Their names, the first 1,000")
    kept: int = Field(description="Found unused, then used again while it ran: kept")
    seconds: float


class FileView(Open):
    id: int
    name: str
    sha256: str
    size: int
    key: str | None
    dag_id: int | None
    job_id: int | None
    created_at: Timestamp
    created_by: str | None = Field(description="Who uploaded or published it: the token's "
                                   "name (else its role), or a job's dag#run/job_id; null "
                                   "when stored before Titan recorded it")


class FileList(Open):
    files: list[FileView]


class FilesDeleted(Open):
    name: str | None = Field(None, description="DELETE /files/{name}: the file's name")
    key: str | None = Field(None, description="DELETE /artifacts: the store key")
    deleted: int = Field(description="Versions deleted")
    bytes: int = Field(description="Their sizes; the blobs go with garbage collection once "
                                   "nothing names them")
    kept: int = Field(description="Versions left (keep_latest: the newest)")
    ids: list[int] = Field(description="The deleted versions' ids, the first 1,000")
    store: dict[str, str | None] = Field(description="Store values changed with them: the "
                                                     "name of the newest version left under "
                                                     "the key, or null where deleted")
    value_deleted: bool | None = Field(None, description="DELETE /artifacts: whether the "
                                                         "key's store value was deleted")


class TokenCreated(Open):
    id: str
    token: str
    role: str
    name: str


class TokenView(Open):
    id: str
    role: str
    name: str
    created_at: Timestamp
    created_by: str | None  # who made it (role, token name and id, token or session)
    revoked_at: Timestamp | None


class TokenList(Open):
    tokens: list[TokenView]


class Revoked(Open):
    revoked: bool


# ---------------------------------------------------------------------------- schedules

class ScheduleCreate(Closed):
    name: str = Field(min_length=1, max_length=200)
    cron: str = Field(min_length=1, max_length=200, description=(
        "Five fields (minute hour day-of-month month day-of-week), six with seconds first, "
        "or @hourly, @daily, @weekly, @monthly, @yearly"))
    timezone: str = Field("UTC", description="An IANA time zone, e.g. Europe/Paris")
    catchup: Literal["skip", "all", "latest"] = "skip"
    overlap: Literal["allow", "skip", "queue"] = "allow"
    paused: bool = False
    dag_name: str | None = Field(None, min_length=1, max_length=200,
                                 description="The DAG each tick submits (default: name)")
    agent_run_id: str | None = Field(None, max_length=200, description=(
        "Each fire's agent run id: a template holding {tick}, the tick in ISO 8601 UTC "
        "basic format (nightly-{tick} -> nightly-20240501T060000Z)"))
    jobs: list[JobSpec] = Field(min_length=1)


class FireView(Open):
    id: int
    tick: Timestamp | None = Field(description="None: run by hand")
    manual: bool
    fired_at: Timestamp
    outcome: Literal["submitted", "skipped", "queued", "failed"]
    error: str | None
    dag: dict[str, Any] | None = Field(description="{id, name, run, ref, status}")


class ScheduleView(Open):
    id: int
    name: str
    dag_name: str
    cron: str
    timezone: str
    description: str
    catchup: str
    overlap: str
    paused: bool
    next_fire_at: Timestamp | None
    next_fires: list[Timestamp] = Field(description="the next ticks after now")
    agent_run_id: str | None = Field(description="each fire's agent run id, {tick} filled")
    due_since: Timestamp | None = Field(
        description="behind: the tick not yet dealt with that fell first (null when not)")
    last_fire_at: Timestamp | None
    created_at: Timestamp
    created_by: str | None
    updated_at: Timestamp
    job_count: int
    fires: list[FireView] | None = None
    jobs: list[dict[str, Any]] | None = None


class ScheduleList(Open):
    schedules: list[ScheduleView]


class ScheduleDeleted(Open):
    name: str
    deleted: bool
