"""A file that changes while it is uploaded (a log still written, a checkpoint being saved) is
published not at all, never as a mix: the SDK sends exactly the length it declared and cuts the
body short when the file grew, shrank or was written to, raising ``FileChanged``.

The change is made at a known point: the client's own transport, with a hook run once the
first piece of the body has gone to the master."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.integration.harness import Cluster, shared_cluster
from titan import TitanClient
from titan.client.plain_http import tcp_transport
from titan.client.transport import CHUNK
from titan.errors import FileChanged, NotFound

cluster = shared_cluster(slots=1)


class _Midway(httpx.SyncByteStream):
    def __init__(self, inner: httpx.SyncByteStream, change: Callable[[], None]) -> None:
        self.inner, self.change = inner, change

    def __iter__(self) -> Iterator[bytes]:
        for i, piece in enumerate(self.inner):
            yield piece
            if i == 0:
                self.change()


class ChangeMidway(httpx.BaseTransport):
    """The SDK's transport, running ``change`` once an upload's first piece is sent."""

    def __init__(self, change: Callable[[], None]) -> None:
        self.inner = tcp_transport(max_connections=4, max_keepalive=4)
        self.change = change

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if isinstance(request.stream, httpx.SyncByteStream) \
                and not isinstance(request.stream, httpx.ByteStream):
            request.stream = _Midway(request.stream, self.change)
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()


def _client(cluster: Cluster, change: Callable[[], None]) -> TitanClient:
    # A 10 s read timeout: a body that never ends held the old client for its 60 s.
    return TitanClient(host="127.0.0.1", port=cluster.port, token=cluster.admin_token,
                       timeout=10, transport=ChangeMidway(change))


def _grow(path: Path) -> None:
    with open(path, "ab") as fh:
        fh.write(b"x" * 100)


def _shrink(path: Path) -> None:
    os.truncate(path, CHUNK + 5)


def _rewrite(path: Path) -> None:
    with open(path, "r+b") as fh:
        fh.write(b"rewritten")
    stat = os.stat(path)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))


@pytest.mark.parametrize("change", [_grow, _shrink, _rewrite])
def test_a_file_changed_during_its_upload_is_not_published(
        cluster: Cluster, tmp_path: Path, change: Callable[[Path], None]) -> None:
    path = tmp_path / "growing.log"
    path.write_bytes(os.urandom(3 * CHUNK))
    key = f"changing:{change.__name__}"
    client = _client(cluster, lambda: change(path))
    with pytest.raises(FileChanged) as info:
        client.publish_artifact(key, path)
    assert str(info.value).startswith(f"{path} changed while it was being uploaded")
    assert "nothing was stored" in str(info.value) and "\n" not in str(info.value)
    assert info.value.path == str(path)
    # Nothing published: no store value, no artifact, no file of that name.
    admin = cluster.client()
    assert admin.store_get(key) is None
    with pytest.raises(NotFound):
        admin.read_artifact(key)
    assert not [f for f in admin.api("GET", "/files")["files"] if f["name"] == "growing.log"]
    with pytest.raises(FileChanged):
        client.upload_file(path)  # PUT /files: the same body, the same check
    assert not [f for f in admin.api("GET", "/files")["files"] if f["name"] == "growing.log"]


def test_a_file_left_alone_is_published_whole_through_the_same_transport(
        cluster: Cluster, tmp_path: Path) -> None:
    path = tmp_path / "steady.bin"
    data = os.urandom(2 * CHUNK + 17)
    path.write_bytes(data)
    client = _client(cluster, lambda: None)
    reply = client.publish_artifact("changing:none", path)
    assert reply["size"] == len(data)
    assert cluster.client().read_artifact("changing:none") == ("steady.bin", data)
