"""Downloads streamed from the blob store: length, ETag, conditional requests and ranges."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI, Request, Response

from titan.errors import NotFound
from titan.master.api.downloads import blob_response
from titan.storage.blobs import DirectoryBlobStore

DATA = bytes(range(256)) * 40  # 10,240 bytes


class Client:
    """Requests to the app in-process (httpx over ASGI), one event loop per request."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app

    def get(self, path: str, headers: dict[str, str] | None = None) -> httpx.Response:
        async def go() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                return await client.get(path, headers=headers)

        return asyncio.run(go())


@pytest.fixture
def http(tmp_path: Path) -> tuple[Client, str]:
    store = DirectoryBlobStore(tmp_path / "blobs")
    sha = store.write_bytes(DATA)
    store.write_bytes(b"")
    app = FastAPI()

    @app.get("/b/{sha256}")
    async def get(sha256: str, request: Request) -> Response:
        try:
            return await blob_response(store, request, sha256, filename="data ✓.bin")
        except NotFound:
            return Response(status_code=404)

    return Client(app), sha


def test_the_whole_blob(http: tuple[Client, str]) -> None:
    client, sha = http
    r = client.get(f"/b/{sha}")
    assert r.status_code == 200 and r.content == DATA
    assert r.headers["content-length"] == str(len(DATA))
    assert r.headers["accept-ranges"] == "bytes" and r.headers["etag"] == f'"{sha}"'
    assert r.headers["content-disposition"] == "attachment; filename*=utf-8''data%20%E2%9C%93.bin"
    assert client.get(f"/b/{'0' * 64}").status_code == 404


@pytest.mark.parametrize(("header", "start", "end"), [
    ("bytes=0-0", 0, 1), ("bytes=100-199", 100, 200), ("bytes=10000-", 10000, 10240),
    ("bytes=-40", 10200, 10240), ("bytes=-99999", 0, 10240), ("bytes=10200-99999", 10200, 10240),
])
def test_one_range(http: tuple[Client, str], header: str, start: int, end: int) -> None:
    client, sha = http
    r = client.get(f"/b/{sha}", headers={"Range": header})
    assert r.status_code == 206 and r.content == DATA[start:end]
    assert r.headers["content-range"] == f"bytes {start}-{end - 1}/{len(DATA)}"
    assert r.headers["content-length"] == str(end - start)


@pytest.mark.parametrize("header", ["bytes=0-1,5-6", "bytes=9-3", "items=0-5", "bytes=x-y",
                                    "bytes=5"])
def test_ranges_we_do_not_serve_get_the_whole_blob(http: tuple[Client, str],
                                                   header: str) -> None:
    client, sha = http
    r = client.get(f"/b/{sha}", headers={"Range": header})
    assert r.status_code == 200 and r.content == DATA


def test_a_range_past_the_end(http: tuple[Client, str]) -> None:
    client, sha = http
    for target, header in ((sha, "bytes=10240-"), (sha, "bytes=-0"),
                           (hashlib.sha256(b"").hexdigest(), "bytes=0-")):
        r = client.get(f"/b/{target}", headers={"Range": header})
        assert r.status_code == 416, header


def test_conditional_requests(http: tuple[Client, str]) -> None:
    client, sha = http
    for tag in (f'"{sha}"', f'W/"{sha}"', f'"other", "{sha}"', "*"):
        assert client.get(f"/b/{sha}", headers={"If-None-Match": tag}).status_code == 304
    assert client.get(f"/b/{sha}", headers={"If-None-Match": '"other"'}).status_code == 200
    # If-Range: the range only while the blob is still the one the client has part of.
    r = client.get(f"/b/{sha}", headers={"Range": "bytes=0-9", "If-Range": f'"{sha}"'})
    assert r.status_code == 206 and r.content == DATA[:10]
    r = client.get(f"/b/{sha}", headers={"Range": "bytes=0-9", "If-Range": '"other"'})
    assert r.status_code == 200 and r.content == DATA
