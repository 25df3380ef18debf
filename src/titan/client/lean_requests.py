"""The SDK's calls to a plain-HTTP master as bytes: requests built as httpx's client would
build them, sent and read whole with :meth:`~titan.client.plain_http.PlainHTTPTransport.exchange`
(~0.3 ms less of the caller's CPU per call than going through httpx's client)."""

from __future__ import annotations

import json as _json
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import httpx

from titan.client.http_wire import Reply, request_head
from titan.client.master_check import bearer_token
from titan.client.plain_http import PlainHTTPTransport

#: What a path keeps unescaped on the lean path (as httpx does: existing escapes stay).
_PATH_SAFE = "/%:@!$&'()*+,;=~"


class LeanRequests:
    """Requests as httpx's client would build them, written as bytes and sent with
    :meth:`PlainHTTPTransport.exchange`: what :class:`titan.client.transport.Transport` uses
    for calls whose reply it reads whole (its default headers and read timeout here)."""

    def __init__(self, transport: PlainHTTPTransport, headers: Mapping[str, str],
                 timeout: float) -> None:
        self._transport = transport
        self._headers = [(k.lower().encode("latin-1"), v.encode("latin-1"))
                         for k, v in headers.items()]
        self._timeout = timeout
        self._origins: dict[str, tuple[tuple[str, int], bytes] | None] = {}

    def reaches(self, url: str) -> bool:
        """Whether ``url`` is a plain-HTTP master (the lean path's only kind)."""
        return self._origin(url) is not None

    def _origin(self, url: str) -> tuple[tuple[str, int], bytes] | None:
        """(host, port) and the Host header of a plain-HTTP master; None for any other."""
        if url not in self._origins:
            parts = urlsplit(url)
            found = None
            if parts.scheme == "http" and parts.hostname:
                found = ((parts.hostname, parts.port or 80),
                         parts.netloc.rsplit("@", 1)[-1].encode("idna"))
            self._origins[url] = found
        return self._origins[url]

    def send(self, url: str, method: str, path: str, params: Mapping[str, Any] | None,
             json: Any, body: bytes | None, headers: Mapping[str, str] | None,
             read_timeout: float | None, connect_timeout: float | None = None, *,
             watch: bool = False) -> Reply:
        """One exchange with the master at ``url``: ``path`` (quoted as httpx would), its
        ``params`` (booleans as ``true``/``false``, None left out, a list or tuple as the
        parameter repeated, as httpx sends it), a JSON or bytes body. ``watch``: a master
        that froze while the reply is awaited is found out (:mod:`titan.client.stalls`)."""
        origin = self._origin(url)
        if origin is None:  # only reached when a caller skipped reaches()
            raise httpx.UnsupportedProtocol(f"not a plain-HTTP master: {url}")
        target = quote(path, safe=_PATH_SAFE)
        if params:
            pairs = [(k, "true" if v is True else "false" if v is False else str(v))
                     for k, given in params.items()
                     for v in (given if isinstance(given, list | tuple) else (given,))
                     if v is not None]
            if pairs:
                target += "?" + urlencode(pairs, quote_via=quote, safe="")
        fields = {b"host": origin[1]}
        fields.update(self._headers)
        content = body
        if json is not None:
            content = _json.dumps(json, ensure_ascii=False, separators=(",", ":"),
                                  allow_nan=False).encode()
            fields[b"content-type"] = b"application/json"
        elif body is not None:
            fields[b"content-type"] = b"application/octet-stream"
        for name, value in (headers or {}).items():
            fields[name.lower().encode("latin-1")] = value.encode("latin-1")
        if content is not None or method in ("POST", "PUT", "PATCH"):
            fields[b"content-length"] = b"%d" % len(content or b"")
        head = request_head(method, target.encode("ascii"), list(fields.items()))
        return self._transport.exchange(
            origin[0], head, content, method=method, url=url + path, connect_timeout=connect_timeout or 5.0,
            read_timeout=self._timeout if read_timeout is None else read_timeout,
            host=origin[1], token=bearer_token(fields.get(b"authorization")), watch=watch)
