"""The served OpenAPI description, made to tell the truth about the API.

FastAPI derives the description from the handlers' signatures, which here take and return
plain dicts (validated by hand, cheaply): every body came out as ``object``, every operation
as answering 2xx or 422, and downloads as JSON. The master never answers 422 (validation is a
400 with the error body of DESIGN.md), so this module rewrites the generated description once,
at first request: request and reply schemas from :mod:`titan.master.api.models` (the
workers' from :mod:`~titan.master.api.worker_models`), the error statuses each operation
really answers with the ``Error`` schema, raw uploads and downloads with their media types. ``tests/integration/test_api_fuzz.py`` holds the server to it.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from titan.master.api import models as m
from titan.master.api import worker_models as w

Op = tuple[str, str]  # (method, path) as the description spells them
_P = "/api/v1"

#: Request bodies (JSON). The second item: whether a body is required.
REQUESTS: dict[Op, tuple[type[BaseModel], bool]] = {
    ("post", f"{_P}/dags"): (m.DagSubmit, True),
    ("post", f"{_P}/jobs/{{ref}}/approve"): (m.Decision, False),
    ("post", f"{_P}/jobs/{{ref}}/reject"): (m.Decision, False),
    ("post", f"{_P}/jobs/{{ref}}/stop"): (m.Stop, False),
    ("put", f"{_P}/store/values/{{key}}"): (m.StoreValue, True),
    ("post", f"{_P}/store/sets/{{key}}"): (m.SetMember, True),
    ("post", f"{_P}/store/incr/{{key}}"): (m.Increment, False),
    ("post", f"{_P}/blobs/missing"): (m.BlobList, True),
    ("post", f"{_P}/blobs/gc"): (m.BlobCollect, False),
    ("post", f"{_P}/tokens"): (m.TokenCreate, True),
    ("post", f"{_P}/workers/register"): (w.WorkerRegister, True),
    ("post", f"{_P}/workers/{{worker_id}}/poll"): (w.WorkerPoll, True),
    ("post", f"{_P}/workers/{{worker_id}}/heartbeat"): (w.Heartbeat, True),
    ("post", f"{_P}/workers/{{worker_id}}/report"): (w.Report, True),
    ("post", f"{_P}/schedules"): (m.ScheduleCreate, True),
    ("post", f"{_P}/runs/{{run_id}}/actions"): (m.ActionBatch, True),
    ("post", f"{_P}/runs/batch"): (m.RunsBatch, True),
}

#: Replies of the success status (JSON).
REPLIES: dict[Op, type[BaseModel]] = {
    ("get", f"{_P}/health"): m.Health,
    ("get", f"{_P}/master-proof"): m.MasterProof,
    ("post", f"{_P}/dags"): m.DagView,
    ("get", f"{_P}/dags"): m.DagList,
    ("get", f"{_P}/dags/{{ref}}"): m.DagView,
    ("get", f"{_P}/dags/{{ref}}/wait"): m.DagView,
    ("post", f"{_P}/dags/{{ref}}/cancel"): m.DagView,
    ("get", f"{_P}/jobs"): m.JobView,
    ("get", f"{_P}/jobs/{{ref}}"): m.JobView,
    ("get", f"{_P}/jobs/{{ref}}/wait"): m.JobView,
    ("post", f"{_P}/jobs/{{ref}}/cancel"): m.JobView,
    ("post", f"{_P}/jobs/{{ref}}/stop"): m.JobView,
    ("post", f"{_P}/jobs/{{ref}}/retry"): m.JobView,
    ("post", f"{_P}/jobs/{{ref}}/approve"): m.JobView,
    ("post", f"{_P}/jobs/{{ref}}/reject"): m.JobView,
    ("get", f"{_P}/jobs/{{ref}}/logs"): m.LogPage,
    ("get", f"{_P}/store"): m.Keys,
    ("get", f"{_P}/store/values/{{key}}"): m.StoreReply,
    ("put", f"{_P}/store/values/{{key}}"): m.StoreReply,
    ("delete", f"{_P}/store/values/{{key}}"): m.Deleted,
    ("post", f"{_P}/store/incr/{{key}}"): m.Counter,
    ("post", f"{_P}/store/sets/{{key}}"): m.SetAdded,
    ("get", f"{_P}/store/sets/{{key}}"): m.Members,
    ("get", f"{_P}/store/wait/{{key}}"): m.StoreReply,
    ("post", f"{_P}/blobs/missing"): m.Missing,
    ("post", f"{_P}/blobs/gc"): m.BlobsCollected,
    ("put", f"{_P}/blobs/{{sha256}}"): m.BlobStored,
    ("put", f"{_P}/files/{{name}}"): m.FileView,
    ("get", f"{_P}/files"): m.FileList,
    ("post", f"{_P}/artifacts"): m.FileView,
    ("delete", f"{_P}/files/{{name}}"): m.FilesDeleted,
    ("delete", f"{_P}/artifacts"): m.FilesDeleted,
    ("post", f"{_P}/tokens"): m.TokenCreated,
    ("get", f"{_P}/tokens"): m.TokenList,
    ("delete", f"{_P}/tokens/{{token_id}}"): m.Revoked,
    ("post", f"{_P}/workers/register"): w.WorkerRegistered,
    ("post", f"{_P}/workers/{{worker_id}}/poll"): w.PollReply,
    ("post", f"{_P}/workers/{{worker_id}}/heartbeat"): w.HeartbeatReply,
    ("post", f"{_P}/schedules"): m.ScheduleView,
    ("get", f"{_P}/schedules"): m.ScheduleList,
    ("get", f"{_P}/schedules/{{name}}"): m.ScheduleView,
    ("delete", f"{_P}/schedules/{{name}}"): m.ScheduleDeleted,
    ("post", f"{_P}/schedules/{{name}}/pause"): m.ScheduleView,
    ("post", f"{_P}/schedules/{{name}}/resume"): m.ScheduleView,
    ("post", f"{_P}/schedules/{{name}}/run"): m.DagView,
}

#: Raw bodies in, raw bytes out: (media type, schema).
_BINARY = {"type": "string", "format": "binary"}
RAW_UPLOADS = {("put", f"{_P}/blobs/{{sha256}}"), ("put", f"{_P}/files/{{name}}"),
               ("post", f"{_P}/artifacts")}
DOWNLOADS: dict[Op, dict[str, Any]] = {
    ("get", f"{_P}/blobs/{{sha256}}"): {"application/octet-stream": {"schema": _BINARY}},
    ("get", f"{_P}/files/{{name}}"): {"application/octet-stream": {"schema": _BINARY}},
    ("get", f"{_P}/artifacts"): {"application/octet-stream": {"schema": _BINARY}},
    ("get", f"{_P}/runs/export"): {t: {"schema": {"type": "string"}} for t in
                                   ("text/csv", "application/json", "application/x-ndjson")},
}

#: OTLP/HTTP (api/otlp.py): protobuf or JSON in, the reply in the same encoding.
_OTLP_BODIES = {"application/x-protobuf": {"schema": _BINARY},
                "application/json": {"schema": {"type": "object"}}}
OTLP = {("post", f"{_P}/otlp/v1/traces")}

_WHY = {
    400: "Invalid request: a parameter or the body (details.field names it)",
    401: "No token, or an unknown or revoked one",
    403: "This token's role may not do this",
    404: "No such object",
    408: "The wait timed out before the thing happened",
    409: "The object's state does not allow this (or the attempt is stale; a store key "
         "holds the other kind: wrong_kind)",
    413: "The body is larger than the configured limit",
    415: "The body's Content-Type is not one this route reads",
    503: "Not now, nothing applied: ask again after Retry-After seconds (a standby master: "
         "not_leader; the database or the blob store away: database_unavailable, "
         "blob_store_unavailable; a long-poll of a master stopping: master_stopping)",
    507: "The blob store cannot take the upload (its disk is full or read-only): nothing was "
         "stored; the message names the directory and what to do",
}
_RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait before asking again",
                                "schema": {"type": "integer", "minimum": 0}}}


def error_statuses(method: str, path: str, has_body: bool) -> list[int]:
    """What an operation may answer besides success: every authenticated route can refuse a
    parameter (400), a token (401) or a role (403), look something up (404), and refuse a
    job's token whose attempt ended (409 ``stale_attempt``, reads included); any route may be
    answered 503 (a standby, an outage)."""
    if path == f"{_P}/health":
        return []
    codes = [400, 401, 403, 404]
    if "/wait" in path:
        codes.append(408)
    if path != f"{_P}/master-proof" or method != "get":
        codes.append(409)
    if has_body:
        codes += [413, 415]
    codes.append(503)
    if (method, path) in RAW_UPLOADS:
        codes.append(507)
    return codes


def describe(app: FastAPI) -> dict[str, Any]:
    """The generated description, rewritten (see the module's docstring)."""
    schema = get_openapi(title=app.title, version=app.version, description=app.description,
                         routes=app.routes)
    models = {("Error", m.Error)} | {(x.__name__, x) for x, _ in REQUESTS.values()} \
        | {(x.__name__, x) for x in REPLIES.values()}
    _, defs = models_json_schema(
        [(model, "serialization" if name in _reply_names() else "validation")
         for name, model in sorted(models, key=lambda t: t[0])],
        ref_template="#/components/schemas/{model}")
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)
    components.update(defs.get("$defs", {}))
    error = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    for path, item in schema.get("paths", {}).items():
        for method, op in item.items():
            key = (method, path)
            has_body = key in REQUESTS or key in RAW_UPLOADS or key in OTLP \
                or "requestBody" in op
            responses: dict[str, Any] = op.setdefault("responses", {})
            responses.pop("422", None)
            if key in REQUESTS:
                model, required = REQUESTS[key]
                op["requestBody"] = {"required": required, "content": {"application/json": {
                    "schema": {"$ref": f"#/components/schemas/{model.__name__}"}}}}
            elif key in RAW_UPLOADS:
                op["requestBody"] = {"required": True,
                                     "content": {"application/octet-stream": {"schema": _BINARY}}}
            elif key in OTLP:
                op["requestBody"] = {"required": False, "content": _OTLP_BODIES}
            ok = next((s for s in responses if s.startswith("2")), "200")
            if key in REPLIES:
                responses[ok] = {"description": responses.get(ok, {}).get("description", "OK"),
                                 "content": {"application/json": {"schema": {
                                     "$ref": f"#/components/schemas/{REPLIES[key].__name__}"}}}}
            elif key in DOWNLOADS:
                responses[ok] = {"description": "The bytes", "content": DOWNLOADS[key]}
            elif key in OTLP:
                responses[ok] = {"description": "An ExportTraceServiceResponse",
                                 "content": _OTLP_BODIES}
            if path == f"{_P}/health":  # the same body, status "unavailable"
                responses["503"] = {"description": "This master cannot vouch for itself: its "
                                    "writes wait for the database, or its leadership is "
                                    "unconfirmed", "content": responses[ok]["content"],
                                    "headers": _RETRY_AFTER}
            for code in error_statuses(method, path, has_body):
                responses[str(code)] = {"description": _WHY[code], "content": error}
                if code == 503:
                    responses["503"]["headers"] = _RETRY_AFTER
    return schema


def _reply_names() -> set[str]:
    return {x.__name__ for x in REPLIES.values()}


def install(app: FastAPI) -> None:
    """Serve :func:`describe`'s description at the app's openapi_url (built once)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = describe(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
