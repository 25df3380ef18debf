"""Sending a blob: streamed from the blob store, with its length, a strong ETag and ranges.

The store may be a directory, a database or an object store, so a download is the store's
chunks, each read on a worker thread, rather than a file the server sends from its disk. What
clients had from a file response is kept: ``Content-Length``, ``Accept-Ranges`` and one byte
range (206; 416 past the end) honoured under ``If-Range``. The ETag is the blob's hash: the
bytes under a name never change, so it is a strong validator, and the same on every master
(``If-None-Match`` answers 304). A request for several ranges gets the whole blob, which
RFC 9110 allows.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from email.utils import formatdate
from urllib.parse import quote

from fastapi import Request, Response
from fastapi.responses import JSONResponse, StreamingResponse

from titan.errors import APIError, NotFound
from titan.storage.blobs import BlobStore

#: Set in a request's scope when it is a HEAD answered as a GET (master/http_guard.py): the
#: headers of the download without reading its blob.
HEAD_ONLY = "titan.head_only"


class _Unsatisfiable(Exception):
    pass


async def blob_response(blobs: BlobStore, request: Request, sha256: str, *,
                        filename: str | None = None, modified: float | None = None,
                        headers: dict[str, str] | None = None) -> Response:
    """The blob as a download (``filename``: as an attachment of that name)."""
    size = await asyncio.to_thread(blobs.size, sha256)  # checks the name too
    if size is None:
        raise NotFound(f"no blob {sha256}", details={"sha256": sha256})
    etag = f'"{sha256}"'
    out = {"accept-ranges": "bytes", "etag": etag, **(headers or {})}
    if filename is not None:
        out["content-disposition"] = _disposition(filename)
    if modified is not None:
        out["last-modified"] = formatdate(modified, usegmt=True)
    if _matches(request.headers.get("if-none-match"), etag):
        return Response(status_code=304, headers=out)
    try:
        span = _byte_range(request, size, etag)
    except _Unsatisfiable:
        # The error body of every other 4xx (it was empty), with the size a client retries by.
        err = APIError(f"the range {request.headers.get('range')!r} is past the end of the "
                       f"blob ({size} bytes)", code="range_not_satisfiable", status=416,
                       details={"header": "Range", "size": size})
        return JSONResponse(err.to_body(), status_code=416,
                            headers={"content-range": f"bytes */{size}"})
    start, end = span or (0, size)
    if span is not None:
        out["content-range"] = f"bytes {start}-{end - 1}/{size}"
    out["content-length"] = str(end - start)
    if request.scope.get(HEAD_ONLY):  # its length and validators, not a read of its bytes
        return Response(status_code=206 if span else 200, headers=out,
                        media_type="application/octet-stream")
    return StreamingResponse(_stream(blobs, sha256, start, end), status_code=206 if span else 200,
                             headers=out, media_type="application/octet-stream")


async def _stream(blobs: BlobStore, sha256: str, start: int, end: int) -> AsyncIterator[bytes]:
    chunks = blobs.read(sha256, start, end)  # lazy: nothing is read yet
    # A generator that is running cannot be closed: the lock makes closing wait for a read in
    # flight on its thread (when the client went away in the middle of one).
    lock = threading.Lock()

    def step() -> bytes | None:
        with lock:
            return next(chunks, None)

    def close() -> None:
        with lock:
            chunks.close()

    reading = False
    try:
        while True:
            reading = True
            chunk = await asyncio.to_thread(step)
            reading = False
            if chunk is None:
                return
            yield chunk
    finally:
        if reading:  # cancelled mid-read: close once that read is done, off the event loop
            threading.Thread(target=close, name="titan-blob-close", daemon=True).start()
        else:
            close()


def _byte_range(request: Request, size: int, etag: str) -> tuple[int, int] | None:
    """The one range asked for as (start, end exclusive); None for the whole blob (no Range,
    an If-Range naming something else, several ranges, or a header we do not read)."""
    raw = request.headers.get("range")
    if raw is None:
        return None
    if_range = request.headers.get("if-range")
    if if_range is not None and if_range.strip() != etag:
        return None  # another version (or a date): the whole blob, as RFC 9110 says
    unit, _, spec = raw.partition("=")
    first, dash, last = spec.strip().partition("-")
    if unit.strip().lower() != "bytes" or "," in spec or not dash:
        return None
    try:
        if not first.strip():  # the last N bytes
            n = int(last)
            if n <= 0 or size == 0:
                raise _Unsatisfiable
            return max(size - n, 0), size
        start = int(first)
        end = int(last) + 1 if last.strip() else None
    except ValueError:
        return None
    if start < 0 or end is not None and end <= start:
        return None  # not a valid range: ignored, like any we do not read
    if start >= size:
        raise _Unsatisfiable
    return start, size if end is None else min(end, size)


def _matches(if_none_match: str | None, etag: str) -> bool:
    if if_none_match is None:
        return False
    tags = [t.strip().removeprefix("W/") for t in if_none_match.split(",")]
    return "*" in tags or etag in tags


def _disposition(filename: str) -> str:
    # As Starlette writes it: a name that needs quoting goes as RFC 5987 ``filename*``.
    quoted = quote(filename)
    if quoted != filename:
        return f"attachment; filename*=utf-8''{quoted}"
    return f'attachment; filename="{filename}"'
