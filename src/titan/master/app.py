"""The master's ASGI application: routers, error bodies, its guards, startup and shutdown."""

from __future__ import annotations

import asyncio
import gc
import logging
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.routing import BaseRoute, Match

import titan
from titan.atomic import atomic_file
from titan.dashboard import pages as dashboard_pages
from titan.dashboard import render
from titan.errors import (
    APIError,
    BlobStoreUnavailable,
    BlobStoreUnwritable,
    DatabaseUnavailable,
    MasterStopping,
    ValidationFailed,
)
from titan.master import blob_mark, file_retention, tls_pin
from titan.master.api import (
    admin,
    dags,
    explorer,
    files,
    jobs,
    openapi,
    runs,
    schedules,
    store,
    stream,
    workers,
)
from titan.master.api import (
    evaluations as evaluation_api,
)
from titan.master.api import (
    otlp as otlp_api,
)
from titan.master.api import (
    projects as project_api,
)
from titan.master.api import (
    replays as replay_api,
)
from titan.master.api.limits import BodyGuard
from titan.master.api.mcp import McpEndpoint
from titan.master.auth import tokens as auth
from titan.master.auth.audit import Refusals
from titan.master.auth.proofs import ProofKeys
from titan.master.blob_gc import BlobCollector
from titan.master.config import MasterConfig
from titan.master.context import Ctx
from titan.master.egress import EgressPolicy
from titan.master.evaluations.service import Evaluations
from titan.master.events import EventHub
from titan.master.http_errors import ErrorGuard
from titan.master.http_guard import HeadAsGet, HostCheck, upgrade_required
from titan.master.otel.exporter import Exporter
from titan.master.otel.known import Known
from titan.master.otel.receiver import Receiver
from titan.master.replays.service import Replays
from titan.master.runs import liveness
from titan.master.runs.retention import Retention
from titan.master.runs.service import RunService
from titan.master.schedules.service import Schedules
from titan.master.scheduling.dag_retention import finish_at_start, keep_pruning
from titan.master.scheduling.engine import Engine
from titan.permissions import require_owned, secure_files, secure_tree
from titan.storage import Storage, open_storage
from titan.storage.blobs import open_blob_store

log = logging.getLogger("titan.master")


def write_secret_file(path: Path, value: str) -> None:
    """Write a token file readable by its owner only (created 0600, never world-readable)."""
    with atomic_file(path, 0o600, durable=True) as fh:
        fh.write((value + "\n").encode())


async def ensure_token_file(engine: Engine, path: Path, role: str, name: str) -> bool:
    """Make sure ``path`` holds a token (created on first start) registered in the database;
    whether that token is revoked."""
    token = auth.read_token_file(path)
    if not token:
        token = auth.new_token()
        write_secret_file(path, token)
    digest = auth.token_hash(token)

    def op(tx: Any) -> bool:
        row = tx.token_by_hash(digest)
        if row is None:
            tx.add_token({"id": "tok-" + secrets.token_hex(6), "token_hash": digest, "role": role,
                          "name": name, "created_at": time.time()})
        return row is not None and bool(row.get("revoked_at"))

    if await engine.run(op):
        # Revoked (rotated after a leak): a revoked token is never made live again, so the
        # file stays useless until it is replaced, and the CLI that reads it says only 401.
        log.warning("%s holds a revoked token: delete the file and restart the master to get "
                    "a new one (docs/security.md#rotating-the-admin-token)", path)
        return True
    return False


def open_secured_storage(config: MasterConfig) -> Storage:
    """Open the master's database, its files the owner's alone; nothing claimed yet."""
    # Before anything is opened: the data dir holds what makes an admin (tokens, the key
    # that signs sessions) and must be the owner's alone (titan.permissions).
    secure_tree(config.data_path)
    url = config.resolved_database_url
    files: list[Path] = []
    if url.startswith("sqlite:///"):
        db = Path(url.removeprefix("sqlite:///"))
        files = [db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")]
        # Outside the data dir it was not walked: a database another user can replace holds
        # the key that signs sessions and job tokens all the same.
        require_owned(files, "master")
    storage = open_storage(url)
    secure_files(files)
    return storage


def open_claimed_storage(config: MasterConfig) -> Storage:
    """Open the master's database and claim its scheduler (refused if another master runs)."""
    storage = open_secured_storage(config)
    try:
        storage.claim_scheduler()
    except BaseException:
        storage.close()
        raise
    return storage


#: The cyclic collector's thresholds once the master runs: a young generation of 20,000
#: objects (not 700) and older ones collected 20 times less often than they fill (not 10).
GC_THRESHOLDS = (20_000, 20, 20)


def _settle_heap() -> None:
    """Take what start-up made (the app, the ORM, the recovered scheduler) out of the cyclic
    collector's sight, and collect less often. A 10,000-job DAG allocates some 500,000 objects
    on its way in; with the default thresholds the collector ran ~210 times a submission, its
    full passes walking the whole heap, the live jobs' records included: 1,576 ms of GC over six
    such submissions on the master's own code (validation, engine, SQLite), against 218 ms with
    this (the one full collection here included). Objects are still freed by reference
    counting as ever; only cyclic garbage waits longer for the collector."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def create_app(config: MasterConfig, storage: Storage | None = None) -> FastAPI:
    """The ASGI app. ``storage``, when given, is already open and claimed (the CLI does that
    first so a refusal is a one-line error, not a startup traceback)."""
    mcp_endpoint = McpEndpoint(config)  # POST /mcp; started by its first request

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        nonlocal storage
        data = config.data_path
        if storage is None:
            storage = open_claimed_storage(config)
        hub = EventHub()
        engine = Engine(config, storage, hub)
        await engine.start()
        # Named for the command that made them: `titan master` named them "admin (titan up)"
        # and "local worker", though it starts no worker (its worker.token is one the
        # operator may give their `titan worker`s: docs/configuration.md, --data-dir).
        made = config.started_by
        for file, role, name in (
                ("admin.token", "admin", f"admin ({made})"),
                ("worker.token", "worker",
                 "local worker (titan up)" if made == "titan up" else f"worker ({made})")):
            if await ensure_token_file(engine, data / file, role, name):
                config.revoked_files.add(file)
            else:
                config.revoked_files.discard(file)
        blobs = open_blob_store(config.blob_settings(), storage)
        mark = await engine.read(lambda tx: blob_mark.ensure(tx, blobs))
        # This store is now the one its blobs are in (a new mark), and where, for standbys.
        await engine.run(lambda tx: blob_mark.record(tx, mark, blobs))
        pin = await engine.read(lambda tx: tls_pin.ensure(tx, config))
        if pin is not None:  # what a standby compares its certificate with
            await engine.run(lambda tx: tx.set_meta(tls_pin.KEY, pin))
        runs = RunService(engine, blobs, config.redactor())
        export_settings = config.otlp_export_settings()
        exporter = Exporter(export_settings, storage) if export_settings else None
        if exporter is not None:  # before load(): runs it settles are exported too
            runs.listeners.append(exporter)
            exporter.start()
        await runs.load()
        retention = Retention(engine, config.archive_days)
        replays = Replays(engine, blobs, runs)
        await replays.load()
        evals = Evaluations(engine, blobs, runs, EgressPolicy.from_env(
            own_ports=[p for p in (config.port, config.dashboard_port) if p]))
        await evals.load()
        otlp_in = Receiver(runs, config.otlp_hold_seconds(), transient=storage.unavailable,
                           known=Known(engine))
        otlp_in.start()
        tasks = [asyncio.create_task(retention.keep_retention(config.run_retention))
                 ] if config.run_retention else []
        tasks.append(asyncio.create_task(liveness.keep_reaping(runs, config.run_alive_timeout)))
        if config.archive_days:
            tasks.append(asyncio.create_task(retention.keep_archiving()))
        if config.dag_retention:
            tasks.append(asyncio.create_task(keep_pruning(engine, config.dag_retention)))
        else:  # (keep_pruning starts with it)
            tasks.append(asyncio.create_task(finish_at_start(engine)))
        if config.file_retention:
            tasks.append(asyncio.create_task(
                file_retention.keep_pruning(engine, config.file_retention)))
        blob_gc = BlobCollector(engine, blobs, config.blob_gc_min_age)
        if blob_gc.min_age is not None:
            tasks.append(asyncio.create_task(blob_gc.keep_collecting()))
        # After the engine's recovery: a tick's overlap policy asks which runs still run.
        scheduled = Schedules(engine)
        scheduled.driver_done = runs.driver_done
        await scheduled.start()
        app.state.ctx = Ctx(config=config, storage=storage, engine=engine, hub=hub,
                            blobs=blobs, tokens=auth.TokenCache(),
                            proofs=ProofKeys(engine), runs=runs,
                            retention=retention, replays=replays, evals=evals,
                            otlp=otlp_in, exporter=exporter, schedules=scheduled,
                            blob_gc=blob_gc)
        log.info("master ready: %s (database %s)", config.api_url, storage.url.split("@")[-1])
        _settle_heap()
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            blob_gc.stop()
            await mcp_endpoint.stop()  # its calls loop back through the API: stop it first
            await scheduled.stop()  # no tick starts once the engine is stopping
            await otlp_in.stop()  # held spans are recorded while the writer still runs
            await evals.stop()
            await engine.stop()
            if exporter is not None:  # after the last commit it could hear of
                await asyncio.to_thread(exporter.stop)
            blobs.close()
            storage.close()
            storage = None

    app = FastAPI(
        title="Titan", version=titan.__version__, lifespan=lifespan,
        # /api/v1/docs is the master's own page (api/explorer.py): FastAPI's loads Swagger
        # UI from a CDN, and stayed blank offline.
        openapi_url="/api/v1/openapi.json", docs_url=None, redoc_url=None,
        description="Run DAGs of Python jobs and agent loops; see docs/api.md.",
    )
    # The workers' protocol and the store are the hottest routes: match them first. Routes are
    # added flat rather than with include_router, whose per-router wrappers cost a match pass
    # each on every request (measured: ~0.2 ms per request on a 2-core VM).
    for module in (workers, store, jobs, dags, files, runs, replay_api, evaluation_api,
                   project_api, schedules, admin, otlp_api, stream, explorer):
        app.router.routes.extend(module.router.routes)
    app.router.routes.append(mcp_endpoint.route())
    app.router.routes.extend(upgrade_required(app.router.routes))
    # A path with a '/' added is answered before routing (HostCheck): a 404 naming the route
    # on the API, a redirect with a relative Location on a page.
    app.router.redirect_slashes = False
    # The dashboard's pages (and their JSON twins) after the API: /api/v1 is matched first.
    app.router.routes.extend(dashboard_pages.router.routes)
    openapi.install(app)  # the description with real models and error statuses

    # One place turns every error into its answer, and picks the format: the error page (or
    # the sign-in redirect) on a dashboard page, the JSON error body everywhere else.
    async def answer(request: Request, err: APIError) -> Response:
        if render.wants_page(request):
            return await render.error_page(request, err)
        return JSONResponse(err.to_body(), status_code=err.status)

    refusals = Refusals()

    @app.exception_handler(APIError)
    async def api_error(request: Request, exc: APIError) -> Response:
        if exc.status == 401:  # on the security log, a line a minute per address at most
            refusals.refused(request.client.host if request.client else "an unknown address",
                             f"{request.method} {request.url.path}", exc.message)
        response = await answer(request, exc)
        if isinstance(exc, MasterStopping):  # ask again in a moment, on a new connection
            response.headers["Retry-After"] = "1"
            response.headers["Connection"] = "close"
        elif isinstance(exc, DatabaseUnavailable | BlobStoreUnavailable):
            # Ask again shortly. (The blob store's outage is said on the log by the store:
            # once at its start, then a count every 30 s, and its end; outage.py.)
            response.headers["Retry-After"] = "1"
        elif isinstance(exc, BlobStoreUnwritable):  # the operator must act: said on the log
            log.warning("%s %s: %s", request.method, request.url.path, exc.message)
        if exc.status == 401:  # RFC 9110 section 15.5.2, as /mcp and OTLP's 401s said it
            response.headers["WWW-Authenticate"] = "Bearer"
        return response

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError) -> Response:
        errors = [{"loc": list(e.get("loc", ())), "msg": e.get("msg")} for e in exc.errors()]
        where = "; ".join(_problem(e) for e in exc.errors()[:5])
        # details.field, as every other 400 names what it refused (a client reads one key).
        return await answer(request, ValidationFailed(
            f"invalid request: {where}",
            details={"field": _field(exc.errors()[0]) if errors else "body", "errors": errors}))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        response = await answer(request, APIError(str(exc.detail), code=code,
                                                  status=exc.status_code))
        # The exception's headers go with it: a 405 must say which methods the route takes
        # (Allow, RFC 9110 section 15.5.6), and it was answered without one.
        response.headers.update(exc.headers or {})
        if exc.status_code == 405:
            response.headers["Allow"] = _allowed(request)
        return response

    @app.exception_handler(ClientDisconnect)
    async def gone(request: Request, exc: ClientDisconnect) -> Response:
        # The client hung up before its body was in (an exporter timing out and retrying):
        # nothing to answer and nothing wrong here. It was an "internal error" with two
        # tracebacks in the log.
        log.debug("client left during %s %s", request.method, request.url.path)
        return Response(status_code=499)

    # Outermost last: the Host check, then what answers an error no handler took (the
    # database away, a bug: never re-raised for the server to log again), then the body
    # guard (who may send a body, how big).
    app.add_middleware(BodyGuard, config=config)
    app.add_middleware(ErrorGuard, answer=answer)
    app.add_middleware(HostCheck, config=config)
    app.add_middleware(HeadAsGet)  # outermost: every layer sees the GET it answers
    return app


#: The error code of an HTTP-level refusal (routing, the framework), as docs/api.md lists
#: them; ``http_error`` for any other status.
_HTTP_CODES = {400: "invalid_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
               405: "method_not_allowed", 409: "conflict", 413: "payload_too_large",
               415: "unsupported_media_type", 416: "range_not_satisfiable",
               426: "upgrade_required"}


def _allowed(request: Request) -> str:
    """The methods the request's path takes, for a 405's ``Allow``: of every route it reaches
    (Starlette names only the first route's: ``DELETE /dags`` said GET, not GET and POST),
    with HEAD wherever GET is (:class:`~titan.master.http_guard.HeadAsGet`). A path that a
    fixed route spells (``/runs/batch``) is that route's: a route with a parameter that also
    matches it (``/runs/{run_id}``) is not counted (``PUT /runs/batch`` said GET, HEAD, PATCH,
    POST, and a PATCH there named a run 'batch')."""
    fixed: set[str] = set()
    methods: set[str] = set()
    for route in request.app.router.routes:
        if isinstance(route, BaseRoute) and route.matches(request.scope)[0] != Match.NONE:
            taken = getattr(route, "methods", None) or set()
            methods |= taken
            if not getattr(route, "param_convertors", None):
                fixed |= taken
    methods = fixed or methods
    if "GET" in methods:
        methods.add("HEAD")
    return ", ".join(sorted(methods))


def _field(error: Any) -> str:
    """The parameter or body field one of FastAPI's validation errors is about: ``limit``,
    ``jobs.0.delay`` (``body`` for the whole body)."""
    loc = [str(part) for part in error.get("loc", ())]
    return ".".join(loc[1:]) or "body"


def _problem(error: Any) -> str:
    """One of FastAPI's validation errors as a user reads it: ``the query parameter 'limit'
    must be less than or equal to 1000 (got '5000')``, not ``query.limit: Input should...``."""
    loc = [str(part) for part in error.get("loc", ())]
    kind = {"query": "the query parameter", "path": "the path's", "header": "the header",
            "cookie": "the cookie"}.get(loc[0]) if loc else None
    name = ".".join(loc[1:] if kind else loc) or "the body"
    subject = f"{kind} {name!r}" if kind else name
    msg = str(error.get("msg") or "is invalid")
    msg = msg.replace("Input should be", "must be").replace("Field required", "is required")
    got = error.get("input")
    shown = f" (got {str(got)[:60]!r})" if isinstance(got, str | int | float) else ""
    return f"{subject}: {msg}{shown}" if not msg.startswith(("must", "is ")) \
        else f"{subject} {msg}{shown}"
