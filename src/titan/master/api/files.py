"""Blobs (content-addressed bodies), named files and published artifacts; deleting files
and artifacts (every version, or all but the newest: ``master/file_retention.py``).

Bodies are streamed in and out, never base64 and never held whole in memory.
"""

from __future__ import annotations

import asyncio
import re
import time
import unicodedata
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Body, Query, Request, Response

from titan.errors import Forbidden, NotFound, ValidationFailed
from titan.formats import file_name, invisible_in_file_name
from titan.master.api.body import INT64_MAX, JSONRoute
from titan.master.api.deps import (
    API_PREFIX,
    Collector,
    CtxDep,
    Fetcher,
    FileDeleter,
    Reader,
    Uploader,
    Writer,
)
from titan.master.api.downloads import blob_response
from titan.master.api.params import DagFilter, check_key, check_new_key, check_unreserved
from titan.master.api.store import writable
from titan.master.auth.tokens import Principal
from titan.master.context import Ctx
from titan.master.file_retention import delete_files
from titan.master.idempotency import key_of, once, scope_of
from titan.master.scheduling.refs import ROW_MAX
from titan.master.scheduling.state import RUNNING, JobRec
from titan.storage.base import Row
from titan.storage.blobs import check_sha256

router = APIRouter(prefix=API_PREFIX, route_class=JSONRoute, tags=["files"])


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def check_filename(name: str) -> str:
    """A plain file name: no directories, no traversal, no control characters (a name is
    sent back in headers, where a CR or LF would end the header)."""
    if (not name or name in (".", "..") or "/" in name or "\\" in name or _CONTROL.search(name)
            or len(name.encode("utf-8", "surrogatepass")) > 255):
        raise ValidationFailed(f"name {name[:80]!r} is not a valid file name (no '/', '\\', "
                               "'..' or control characters, at most 255 bytes)",
                               details={"field": "name", "name": name[:255]})
    return name


#: Unicode's direction controls (embeddings, overrides, isolates, marks): in a file name
#: they show it as other than it is (``\u202eexe.txt`` reads "txt.exe").
_BIDI = re.compile("[\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def check_new_filename(name: str) -> str:
    """A name an upload or a publish stores, as it stores it: a plain file name
    (:func:`check_filename`) without direction controls or other invisible characters,
    composed (NFC: :func:`~titan.formats.file_name`). One stored before such names were
    refused or composed is still downloaded, by either form (``file_name_forms``)."""
    check_filename(name)
    found = _BIDI.search(name)
    if found is not None:
        raise ValidationFailed(
            f"name {name[:80]!r} holds a text-direction control (U+{ord(found.group()):04X} "
            f"at position {found.start()}), which shows a name as other than it is: "
            "leave it out", details={"field": "name", "name": name[:255]})
    hidden = invisible_in_file_name(name)
    if hidden is not None:
        at, char = hidden
        raise ValidationFailed(
            f"name {name[:80]!r} holds U+{ord(char):04X} "
            f"({unicodedata.name(char, 'an invisible character')}) at position {at}, which "
            "shows as nothing: the name would read as another; leave it out",
            details={"field": "name", "name": name[:255]})
    return check_filename(file_name(name))


async def _store_body(c: Ctx, request: Request, expect: str | None = None) -> tuple[str, int]:
    sha, size = await c.blobs.write(request.stream(), expect=expect)
    now = time.time()
    await c.engine.run(lambda tx: tx.add_blob(sha, size, now))
    c.engine.blob_holds.known.add(sha)
    return sha, size


def _file_view(row: Row) -> Row:
    return {"id": row["id"], "name": row["name"], "sha256": row["sha256"], "size": row["size"],
            "key": row["store_key"], "dag_id": row["dag_id"], "job_id": row["job"],
            "created_at": row["created_at"], "created_by": row.get("created_by")}


async def _add_file(c: Ctx, p: Principal, name: str, sha: str, size: int,
                    key: str | None, request: Request | None = None) -> Row:
    # Who uploads, as a gate's decided_by names its decider: the token's name (its role when
    # it has none); a job's own token has none, so the job, as `dag#run/job`, which outlives
    # the job's and the DAG's rows once retention deletes them.
    dag_id, by = None, p.name or p.role
    if p.job is not None:
        job = c.engine.sched.jobs.get(p.job)
        dag = c.engine.sched.dags.get(job.dag_id) if job else None
        dag_id = job.dag_id if job else None
        by = f"{dag.name}#{dag.run}/{job.job_id}" if job and dag else f"job {p.job}"
    row = {"name": name, "sha256": sha, "size": size, "store_key": key, "dag_id": dag_id,
           "job": p.job, "created_at": time.time(), "created_by": by[:300]}

    def op(tx: Any) -> Row:
        if key is not None:
            writable(tx, key, "value")  # a set there is not replaced by the file's name
            tx.store_put(key, name, row["created_at"])
        return _file_view({**row, "id": int(tx.add_file(row))})

    # A publish retried after a lost reply (an Idempotency-Key) answers with the first one,
    # whole: the view recorded with it (the file stored), not one made of this request's
    # fields. The key names the publish's key, name and content too: another is refused.
    idem_key, scope = (key_of(request), await scope_of(
        request, p, {"key": key, "name": name}, content=sha)) if request else (None, "")
    view, replayed = await c.engine.run(once(idem_key, scope, op))
    if key is not None and not replayed:
        c.hub.notify(("store", key), name)
        c.hub.publish("store_updated", {"key": key, "op": "put"})
    return view


async def _send(c: Ctx, request: Request, row: Row) -> Response:
    # Header values are Latin-1: the name goes as RFC 5987 ``filename*`` (when it needs
    # quoting) and percent-encoded UTF-8 in X-Titan-Filename. Names stored before control
    # characters were refused are sent the same way, never raw.
    name = row["name"]
    return await blob_response(c.blobs, request, row["sha256"], filename=name,
                               modified=row["created_at"],
                               headers={"X-Titan-Sha256": row["sha256"],
                                        "X-Titan-Filename": quote(name, safe="")})


@router.post("/blobs/missing", summary="Which of these blobs the master lacks")
async def missing(c: CtxDep, p: Uploader, body: dict[str, Any] = Body(...)) -> Row:
    shas = body.get("sha256")
    if not isinstance(shas, list) or not all(isinstance(s, str) for s in shas):
        raise ValidationFailed("'sha256' must be a list of hex digests")
    # Those present count as used now: the client names them a moment later without
    # uploading them, and garbage collection spares a blob used within its grace period.
    # A write, through the writer, so it comes wholly before or after a collection's
    # deletion (then the blob is gone, and said missing).
    now = time.time()
    present = await c.engine.run(lambda tx: tx.use_blobs(shas, now))
    # Recorded and in the store: a row whose body the store lacks (a directory wiped by
    # hand, a store switched without moving its blobs) asks the client to upload it again.
    stored = await asyncio.to_thread(c.blobs.present, [s for s in shas if s in present])
    return {"missing": [s for s in shas if s not in stored]}


@router.post("/blobs/gc", summary="Delete blobs nothing names, unused for a grace period "
             "(garbage collection)")
async def collect_blobs(c: CtxDep, p: Collector, body: Any = Body(None)) -> Row:
    body = {} if body is None else body
    if not isinstance(body, dict) or set(body) - {"dry_run", "min_age"}:
        raise ValidationFailed('the body must be {"dry_run": true, "min_age": "1d"} (both '
                               "optional)")
    dry_run = body.get("dry_run", False)
    if not isinstance(dry_run, bool):
        raise ValidationFailed("dry_run must be true or false", details={"field": "dry_run"})
    return await c.blob_gc.collect(body.get("min_age"), dry_run=dry_run)


@router.put("/blobs/{sha256}", status_code=201, summary="Upload a blob (raw body, streamed)")
async def put_blob(c: CtxDep, p: Writer, sha256: str, request: Request) -> Row:
    check_sha256(sha256)  # before a byte of the body is read
    sha, size = await _store_body(c, request, expect=sha256)
    return {"sha256": sha, "size": size}


def _worker_may_fetch(c: Ctx, p: Principal, *, sha256: str | None = None,
                      archive: str | None = None) -> None:
    """A worker downloads the script or the project archive of a job it runs now, nothing
    else: an uploaded file or a published artifact is not a worker's to read. A pinned
    archive (its upload's sha256 is the job's ``script_sha256``) is fetched as that blob; by
    name only an archive job stored before archives were pinned."""
    if p.role != "worker":
        return

    def fetches(job: JobRec | None) -> bool:
        if job is None or job.state != RUNNING or job.worker_id != p.worker:
            return False
        row = job.row
        if sha256 is not None:
            return bool(row.get("script_sha256") == sha256)
        return bool(archive is not None and row.get("is_archive")
                    and not row.get("script_sha256")
                    and file_name(str(row.get("filename", "")).split("/", 1)[0] + ".zip")
                    == file_name(archive))

    sched = c.engine.sched
    worker = sched.workers.get(p.worker) if p.worker else None
    if any(fetches(sched.jobs.get(j)) for j in (worker.running if worker is not None else ())):
        return
    # A restarted master knows which jobs are leased to a worker (recovered from the
    # database) before the worker registers again and has a record: a script download
    # retried through the restart came first, was refused, and the job, handed back, ran
    # again as its next attempt. (Registering lists every attempt it holds in its record.)
    if worker is None and p.worker and any(fetches(job) for job in sched.jobs.values()):
        return
    raise Forbidden("a worker downloads only the scripts and projects of the jobs it runs")


@router.get("/blobs/{sha256}", summary="Download a blob")
async def get_blob(c: CtxDep, p: Fetcher, sha256: str, request: Request) -> Response:
    _worker_may_fetch(c, p, sha256=sha256)
    return await blob_response(c.blobs, request, sha256, headers={"X-Titan-Sha256": sha256})


# `{name:anytext}`: a name with an encoded '/' (``..%2Fx``) or a line break (``x%0Ay``) must
# reach check_filename and get its 400, not fall through the router as an unknown path
# (Starlette's `path` stops at a line break: a bare 404).
@router.put("/files/{name:anytext}", status_code=201, summary="Upload a named file (upload_file)")
async def put_file(c: CtxDep, p: Writer, name: str, request: Request) -> Row:
    name = check_new_filename(name)
    sha, size = await _store_body(c, request)
    return await _add_file(c, p, name, sha, size, None)


@router.get("/files", summary="List files, newest first")
async def list_files(c: CtxDep, p: Reader, dag_id: DagFilter = None,
                     limit: int = Query(100, ge=1, le=10_000),
                     before: int | None = Query(None, ge=1, le=INT64_MAX)) -> Row:
    if dag_id is not None and dag_id > ROW_MAX:  # no DAG's id (PostgreSQL: out of range)
        return {"files": [], "next": None}
    if before is not None and before > ROW_MAX:  # before every file: no bound
        before = None
    rows = await c.engine.read(lambda tx: tx.list_files(dag_id=dag_id, limit=limit,
                                                        before=before))
    # A full page may have more after it: ``before=next`` asks for them.
    return {"files": [_file_view(r) for r in rows],
            "next": rows[-1]["id"] if len(rows) == limit else None}


@router.get("/files/{name:anytext}", summary="Download the latest file with this name (fetch_artifact)")
async def get_file(c: CtxDep, p: Fetcher, name: str, request: Request) -> Response:
    check_filename(name)
    _worker_may_fetch(c, p, archive=name)
    row = await c.engine.read(lambda tx: tx.latest_file(name=name))
    if row is None:
        raise NotFound(f"no file named {name!r}", details={"name": name})
    return await _send(c, request, row)


@router.post("/artifacts", status_code=201, summary="Publish a file under a store key")
async def publish(c: CtxDep, p: Writer, request: Request, key: str, name: str) -> Row:
    check_unreserved(check_new_key(key))
    name = check_new_filename(name)
    # Before the body is read: a key holding a set is refused without taking the upload
    # (its own transaction checks again, for a set made meanwhile).
    await c.engine.read(lambda tx: writable(tx, key, "value"))
    sha, size = await _store_body(c, request)
    return await _add_file(c, p, name, sha, size, key, request)


@router.get("/artifacts", summary="Download the artifact published under a store key")
async def get_artifact(c: CtxDep, p: Reader, request: Request,
                       key: str = Query(...)) -> Response:
    row = await c.engine.read(lambda tx: tx.latest_file(store_key=key))
    if row is None:
        raise NotFound(f"no artifact published under key {key!r}", details={"key": key})
    return await _send(c, request, row)


KEEP_LATEST = Query(False, description="delete every version but the newest")


@router.delete("/files/{name:anytext}", summary="Delete every version of a file (or all but "
               "the newest)")
async def delete_file(c: CtxDep, p: FileDeleter, name: str, request: Request,
                      keep_latest: bool = KEEP_LATEST) -> Row:
    check_filename(name)
    result = await delete_files(c.engine, name=name, keep_latest=keep_latest,
                                idempotency_key=key_of(request),
                                scope=await scope_of(request, p, {"keep_latest": keep_latest}))
    _deleted(c, result)
    return {"name": name, **result}


@router.delete("/artifacts", summary="Delete the artifacts published under a store key (or "
               "all but the newest)")
async def delete_artifact(c: CtxDep, p: FileDeleter, request: Request, key: str = Query(...),
                          keep_latest: bool = KEEP_LATEST) -> Row:
    check_unreserved(check_key(key))
    result = await delete_files(c.engine, key=key, keep_latest=keep_latest,
                                idempotency_key=key_of(request), scope=await scope_of(
                                    request, p, {"key": key, "keep_latest": keep_latest}))
    _deleted(c, result)
    store = result["store"]
    return {"key": key, **result, "value_deleted": key in store and store[key] is None}


def _deleted(c: Ctx, result: Row) -> None:
    """Say what a deletion changed: the store values it moved on or deleted; and collect the
    blobs only the deleted versions named (once unused for the grace period)."""
    for key, value in result["store"].items():
        if value is not None:
            c.hub.notify(("store", key), value)
        c.hub.publish("store_updated", {"key": key, "op": "put" if value is not None
                                        else "delete"})
    if result["deleted"]:
        c.blob_gc.soon()
