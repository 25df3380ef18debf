"""HTTP/1.1 on the wire: a request's head written as bytes, a reply read whole from a socket.

What :mod:`titan.client.plain_http` sends and reads, with no parser but this one.

A large request is written watching for an early answer (:func:`send`): a master refuses a
body over its limit (413) or without a valid token (401) from the headers alone, answers at
once and closes the connection, and the bytes written after that earn a reset. The answer is
read then, as curl reads it: the SDK used to take the reset for a restart and send a 70 MiB
body again and again for the whole restart grace.

Only what a Titan master's replies need (uvicorn with httptools): a status line, headers, and
a body sized by Content-Length, chunked, or ending with the connection; 1xx replies skipped.
Anything else is an ``httpx.RemoteProtocolError``, so the retry policy reads it as a reply
lost. Lines are capped at 64 KiB and headers at 100, as http.client caps them.
"""

from __future__ import annotations

import http.client
import json
import select
import socket
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import httpx

from titan import errors
from titan.client import stalls

_UNSAFE = (b"\r", b"\n", b"\0")
_MAX_LINE = 65536
_MAX_HEADERS = 100
T = TypeVar("T")
#: A request larger than this is written in pieces of :data:`_PIECE`, watching for an answer
#: between them; a smaller one goes in one ``sendall`` (the common case: one segment).
WATCHED = 1 << 20
_PIECE = 1 << 18


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


def send(sock: socket.socket, data: bytes | memoryview,
         alive: Callable[[], bool] | None = None) -> tuple[bool, OSError | None]:
    """Write ``data`` (a request, or a piece of one): ``(all of it sent, the error a write
    met)``. A large one stops as soon as the server has :func:`refused` it: that answer is
    to be read, not written past. A reset or a closed pipe is returned, not
    raised: the server's answer may be waiting all the same (the caller reads it, and raises
    the error only when there is none). A write timeout is ``httpx.WriteTimeout``; with
    ``alive`` (given several masters), so is a master that stopped taking the request and
    does not answer a new connection either (:func:`titan.client.stalls.await_writable`)."""
    try:
        if alive is None and len(data) <= WATCHED:
            sock.sendall(data)
            return True, None
        view = memoryview(data)
        if alive is None:
            for start in range(0, len(view), _PIECE):
                if refused(sock):
                    return False, None
                sock.sendall(view[start:start + _PIECE])
            return True, None
        timeout = sock.gettimeout()
        start = 0
        while start < len(view):
            if len(view) > WATCHED and refused(sock):
                return False, None
            stalls.await_writable(sock, timeout, alive)
            # Writable: this send takes what fits without waiting (a sendall could block
            # for the whole timeout on the rest, against a master that froze meanwhile).
            start += sock.send(view[start:start + _PIECE])
        sock.settimeout(timeout)
    except TimeoutError as exc:
        raise httpx.WriteTimeout(str(exc) or "timed out writing the request") from exc
    except (BrokenPipeError, ConnectionResetError) as exc:
        return False, exc
    return True, None


def refused(sock: socket.socket) -> bool:
    """Whether the server has answered with an error, or closed, while the request is still
    being written: a refusal of its body, after which a client stops sending (RFC 9112,
    9.5). An early answer of another kind leaves the body to be sent."""
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except ValueError:  # a descriptor past FD_SETSIZE cannot be watched: written on
        return False
    if not readable:
        return False
    try:
        seen = sock.recv(16, socket.MSG_PEEK)  # left for the reader: b"HTTP/1.1 413 Req"
    except OSError:
        return True
    parts = seen.split(None, 2)
    return not seen or (seen.startswith(b"HTTP/1.") and len(parts) > 1
                        and parts[1][:1] in (b"4", b"5"))


class BodyCutOff(httpx.WriteError):
    """The server closed the connection while the request was being written, and left no
    answer to read."""


def despite(read: Callable[[], T], failed: OSError | None) -> T:
    """``read()``: the server's answer, even after a write it cut short (:func:`send`); when
    there is none, the cut-off write is what went wrong."""
    try:
        return read()
    except (OSError, httpx.HTTPError, http.client.HTTPException):
        if failed is None:
            raise
        raise BodyCutOff(f"the master closed the connection while the request was being "
                         f"sent ({failed.strerror or type(failed).__name__})") from failed


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


def not_text(method: str, path: str, exc: UnicodeEncodeError) -> errors.ValidationFailed:
    """A request whose text cannot be sent: Python's stand-ins for bytes that were not UTF-8
    (a binary file read as text, a Latin-1 file name), refused before anything is sent."""
    bad = exc.object[exc.start:exc.end] if isinstance(exc.object, str) else ""
    return errors.ValidationFailed(
        f"{method} {path!r}: what Titan sends must be UTF-8 text, and this holds {bad!r} — "
        "bytes that were not UTF-8 (a binary or Latin-1 file read as text?); encode binary "
        "data first (base64, say) or decode the file with its own encoding",
        details={"reason": "not_utf8"},
    )


def refuse_nul(method: str, path: str, params: Mapping[str, Any] | None) -> None:
    """Refuse a request whose URL would carry a NUL character, which the master refuses for
    every route (``400``), here, before anything is sent, as the master would. (Sent, its
    first request on a connection was the master's proof, which the NUL made it refuse, and
    the refusal read as an impostor's: ``did not prove it is the Titan master``.)"""
    values = [path] + [str(item) for value in (params or {}).values()
                       for item in (value if isinstance(value, list | tuple) else [value])]
    if any("\x00" in value for value in values) or "%00" in path:
        raise errors.ValidationFailed(
            f"{method} {path!r}: a name, key, reference or filter holds a NUL character "
            "(U+0000), which no URL to the master may carry", details={"reason": "nul"})
