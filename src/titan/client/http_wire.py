"""HTTP/1.1 on the wire: a request's head written as bytes, a reply read whole from a socket.

What :mod:`titan.client.plain_http` sends and reads, with no parser but this one.

Only what a Titan master's replies need (uvicorn with httptools): a status line, headers, and
a body sized by Content-Length, chunked, or ending with the connection; 1xx replies skipped.
Anything else is an ``httpx.RemoteProtocolError``, so the retry policy reads it as a reply
lost. Lines are capped at 64 KiB and headers at 100, as http.client caps them.
"""

from __future__ import annotations

import json
from typing import Any

import httpx

_UNSAFE = (b"\r", b"\n", b"\0")
_MAX_LINE = 65536
_MAX_HEADERS = 100


class Reply:
    """A whole reply read by :meth:`PlainHTTPTransport.exchange`: the part of an
    ``httpx.Response`` the transport's callers read."""

    __slots__ = ("status_code", "raw_headers", "content", "url", "_headers")

    def __init__(self, status: int, headers: list[tuple[bytes, bytes]], content: bytes,
                 url: str) -> None:
        self.status_code, self.raw_headers, self.content, self.url = status, headers, content, url
        self._headers: httpx.Headers | None = None

    @property
    def headers(self) -> httpx.Headers:
        if self._headers is None:
            self._headers = httpx.Headers(self.raw_headers)
        return self._headers

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")

    def json(self) -> Any:
        return json.loads(self.content)

    def read(self) -> bytes:
        return self.content

    def close(self) -> None:
        """Nothing to release: the body was read whole and the socket went back already."""


def request_head(method: str, target: bytes, headers: list[tuple[bytes, bytes]]) -> bytes:
    """The request line and headers of a request, refusing what would split them."""
    lines = [method.encode("ascii") + b" " + target + b" HTTP/1.1"]
    lines += [name + b": " + value for name, value in headers]
    if any(bad in line for line in lines for bad in _UNSAFE) or b" " in target:
        raise httpx.LocalProtocolError("a header or the target holds CR, LF, NUL or a space")
    return b"\r\n".join(lines) + b"\r\n\r\n"


def read_reply(fp: Any, method: str) -> tuple[int, list[tuple[bytes, bytes]], bytes, bool]:
    """(status, headers, body, keep-alive) of one HTTP/1.x reply read from ``fp``."""
    while True:
        line = _line(fp)
        if not line:
            raise httpx.RemoteProtocolError("the master closed the connection without a reply")
        if line[:1] == b"\x15" and line[1:2] == b"\x03":  # a TLS alert record
            raise httpx.RemoteProtocolError("the master answered in TLS: it serves HTTPS, so "
                                            "use an https:// URL")
        parts = line.split(None, 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit() \
                or len(parts[1]) != 3:
            raise httpx.RemoteProtocolError(f"not an HTTP reply: {line[:80]!r}")
        status, version = int(parts[1]), parts[0]
        headers: list[tuple[bytes, bytes]] = []
        while True:
            line = _line(fp)
            if line in (b"\r\n", b"\n"):
                break
            name, colon, value = line.partition(b":")
            if not colon or not line.endswith(b"\n") or len(headers) >= _MAX_HEADERS:
                raise httpx.RemoteProtocolError(f"a malformed reply header: {line[:80]!r}")
            headers.append((name.strip(), value.strip()))
        if not 100 <= status < 200:
            break  # a 1xx is interim: the reply follows it
    fields = {name.lower(): value for name, value in headers}
    keep = version == b"HTTP/1.1" and fields.get(b"connection", b"").lower() != b"close"
    if method == "HEAD" or status in (204, 304):
        return status, headers, b"", keep
    coding = fields.get(b"transfer-encoding", b"").lower()
    length = fields.get(b"content-length")
    if coding:
        if coding != b"chunked":
            raise httpx.RemoteProtocolError(f"unsupported transfer-encoding {coding!r}")
        body = _read_chunked(fp)
    elif length is not None:
        if not length.isdigit():
            raise httpx.RemoteProtocolError(f"a malformed content-length {length[:40]!r}")
        body = _read_exactly(fp, int(length))
    else:
        body, keep = fp.read(), False  # the body ends where the connection does
    return status, headers, body, keep


def _line(fp: Any) -> bytes:
    line: bytes = fp.readline(_MAX_LINE + 1)
    if len(line) > _MAX_LINE:
        raise httpx.RemoteProtocolError("a reply line longer than 64 KiB")
    return line


def _read_exactly(fp: Any, size: int) -> bytes:
    data: bytes = fp.read(size)
    if len(data) < size:
        raise httpx.RemoteProtocolError(
            "the master closed the connection before the whole reply came")
    return data


def _read_chunked(fp: Any) -> bytes:
    parts: list[bytes] = []
    while True:
        size_line = _line(fp).split(b";", 1)[0].strip()
        try:
            size = int(size_line, 16)
        except ValueError:
            raise httpx.RemoteProtocolError(f"a malformed chunk size {size_line[:40]!r}") from None
        if size == 0:
            while _line(fp) not in (b"\r\n", b"\n", b""):
                pass  # trailers: none that Titan reads
            return b"".join(parts)
        parts.append(_read_exactly(fp, size))
        if _line(fp) not in (b"\r\n", b"\n"):
            raise httpx.RemoteProtocolError("a chunk that does not end where its size says")


