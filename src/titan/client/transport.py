"""HTTP to the master: one pooled connection set per client, errors mapped to ``titan.errors``.

A reply that is an error is read by :mod:`titan.client.replies` (a 4xx body becomes the
matching :mod:`titan.errors` class; a 5xx says it is a bug in the master); an unreachable
master is a :class:`~titan.errors.ConnectionFailed` that says where the SDK looked.

Each call's tries — retried through a restart, sent on to the leader among several masters,
repeated only when that is harmless — are :mod:`titan.client.retrying`'s; this module makes
the exchanges they try: a call whose JSON reply is read whole on the lean path
(:mod:`titan.client.lean_requests`) to a plain-HTTP master, anything else (a stream, a file
upload, https) through httpx's client on the same pool. Given several masters, both find out
a master that froze mid-call (:mod:`titan.client.stalls`), and a download that broke off
starts again from nothing (:meth:`Transport.fetch`).

A request the master holds (a long-poll, a submission with ``wait``: :class:`Hold`) asks on
each try for what is left of its hold, so a retry after a restart does not start it afresh.
:meth:`Transport.retrying_within` bounds every call a thread makes in a block: an MCP tool
call (several API calls) must answer before its client gives up on it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

import httpx

from titan import errors, retry
from titan.client import stalls
from titan.client.config import Endpoint
from titan.client.download_file import save_stream
from titan.client.file_body import file_body
from titan.client.hold import Hold
from titan.client.http_wire import Reply, not_text, refuse_nul
from titan.client.lean_requests import LeanRequests
from titan.client.masters import Masters
from titan.client.plain_http import PlainHTTPTransport, tcp_transport
from titan.client.retrying import Retrier
from titan.client.tls import httpx_verify
from titan.version import __version__

API_PREFIX = "/api/v1"
CHUNK = 1 << 20

Body = bytes | Path | None
T = TypeVar("T")


class Transport:
    """A keep-alive HTTP client bound to one Titan's ``/api/v1`` (the master that leads,
    among ``endpoint.urls``).

    ``http_transport`` replaces the network (tests pass an ``httpx.MockTransport``).
    """

    def __init__(
        self,
        endpoint: Endpoint,
        *,
        timeout: float = 60.0,
        http_transport: httpx.BaseTransport | None = None,
        restart_grace: float | None = None,
    ) -> None:
        self._masters = Masters(endpoint.urls, endpoint.url)
        self._endpoints = {url: endpoint.at(url) for url in endpoint.urls}
        #: Each call's tries (titan.client.retrying); ``restart_grace`` None:
        #: ``TITAN_MASTER_RESTART_GRACE``.
        self._tries = Retrier(self._masters, lambda: self.endpoint, restart_grace)
        headers = {"User-Agent": f"titan-sdk/{__version__}", "Accept": "application/json"}
        if endpoint.token:
            headers["Authorization"] = f"Bearer {endpoint.token}"
        # keepalive_expiry stays under uvicorn's 5 s keep-alive so the client drops an idle
        # connection before the server does (a request racing a server-side close fails).
        # trust_env=False: a proxy set for the internet must not capture a loopback master.
        # No base_url: each request names the master in use when it is built.
        transport = http_transport or tcp_transport(
            max_connections=32, max_keepalive=16, verify=httpx_verify(endpoint.url))
        self._http = httpx.Client(
            headers=headers,
            timeout=httpx.Timeout(timeout, connect=5.0),
            trust_env=False,
            transport=transport,
        )
        #: The lean path for whole replies from plain-HTTP masters (titan.client.plain_http):
        #: ~0.3 ms less of the caller's CPU per call than httpx's client. Not with a transport
        #: given (tests' mocks see every request).
        self._lean = LeanRequests(transport, headers, timeout) \
            if isinstance(transport, PlainHTTPTransport) else None

    @property
    def endpoint(self) -> Endpoint:
        """The endpoint, its ``url`` the master in use (the last one found to lead)."""
        return self._endpoints[self._masters.current]

    # ------------------------------------------------------------------ lifecycle

    def close(self) -> None:
        """Close the pooled connections."""
        self._http.close()

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called (no request can be sent any more)."""
        return self._http.is_closed

    @property
    def restart_grace(self) -> float:
        """How long an unreachable master is retried (seconds)."""
        return self._tries.restart_grace

    def retrying_within(self, seconds: float) -> AbstractContextManager[None]:
        """In the block, this thread's calls retry no later than ``seconds`` from now (each
        still tries once): a deadline for a group of calls, as ``deadline`` is for one. A
        block inside another keeps the earlier deadline of the two."""
        return self._tries.within(seconds)

    # ------------------------------------------------------------------ sending

    def _build(
        self,
        url: str,
        method: str,
        path: str,
        params: Mapping[str, Any] | None,
        json: Any,
        body: Body,
        headers: Mapping[str, str] | None,
        read_timeout: float | None,
        connect_timeout: float | None = None,
    ) -> httpx.Request:
        extra = dict(headers or {})
        content: bytes | Iterator[bytes] | None = None
        if isinstance(body, Path):
            # An explicit length keeps uploads out of chunked encoding, so the master can
            # refuse an oversized body before reading it; exactly that length is sent, and a
            # file that changes meanwhile is cut short (client/file_body.py).
            length, content = file_body(body, CHUNK)
            extra["Content-Length"] = str(length)
        elif body is not None:
            content = body
        if content is not None:
            extra.setdefault("Content-Type", "application/octet-stream")
        clean = {k: v for k, v in (params or {}).items() if v is not None}
        timeout: Any = httpx.USE_CLIENT_DEFAULT
        if read_timeout is not None or connect_timeout is not None:
            read = self._http.timeout.read if read_timeout is None else read_timeout
            timeout = httpx.Timeout(read, connect=connect_timeout or 5.0)
        # Given several masters, one that froze while this request is sent or its reply
        # (a download's body too) comes is found out in seconds, and the request goes on to
        # the next master where it may go again (client/stalls.py): with one, there is
        # nowhere to go.
        watch = {stalls.WATCH: True} if len(self._masters.urls) > 1 else None
        return self._http.build_request(
            method, url + API_PREFIX + path, params=clean, json=json, content=content,
            headers=extra, timeout=timeout, extensions=watch,
        )

    def send(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        body: Body = None,
        headers: Mapping[str, str] | None = None,
        read_timeout: float | None = None,
        stream: bool = False,
        idempotency_key: bool = False,
        hold: Hold | None = None,
        deadline: float | None = None,
        connect_timeout: float | None = None,
    ) -> httpx.Response:
        """Send one request (retrying as the module docstring says) and check its status.

        With ``idempotency_key`` the request carries a fresh ``Idempotency-Key``, the same on
        every retry, so the master applies it once even when a reply was lost. With
        ``stream=True`` the body is not read; the caller must close the response. ``hold``
        sets the hold's parameter and the read timeout of each try (``read_timeout`` is then
        not used); ``deadline`` (monotonic) is the last moment to try again;
        ``connect_timeout`` bounds each try's connection (5 s).
        """
        method = method.upper()
        refuse_nul(method, path, params)
        if idempotency_key:
            headers = {**(headers or {}), retry.IDEMPOTENCY_HEADER: retry.new_key()}

        def exchange(url: str) -> httpx.Response:
            query, read = (params, read_timeout) if hold is None else hold.for_try(params)
            request = self._build(url, method, path, query, json, body, headers, read,
                                  connect_timeout)
            return self._http.send(request, stream=stream)

        try:
            response: httpx.Response = self._tries.run(method, headers, exchange, stream=stream,
                                                      deadline=deadline)
        except UnicodeEncodeError as exc:
            raise not_text(method, path, exc) from None
        return response

    def call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        body: Body = None,
        read_timeout: float | None = None,
        idempotency_key: bool = False,
        hold: Hold | None = None,
        deadline: float | None = None,
        connect_timeout: float | None = None,
    ) -> Any:
        """Send a request and return its decoded JSON reply (``None`` for an empty one);
        ``hold``, ``deadline`` and ``connect_timeout`` as for :meth:`send`."""
        response: httpx.Response | Reply
        lean = self._lean
        if lean is not None and not isinstance(body, Path) \
                and all(lean.reaches(url) for url in self._masters.urls):
            method = method.upper()
            refuse_nul(method, path, params)
            headers = {retry.IDEMPOTENCY_HEADER: retry.new_key()} if idempotency_key else None
            # As for httpx's requests (_build): a master that froze is found out.
            watch = len(self._masters.urls) > 1

            def exchange(url: str) -> Reply:
                query, read = (params, read_timeout) if hold is None else hold.for_try(params)
                return lean.send(url, method, API_PREFIX + path, query, json, body, headers,
                                 read, connect_timeout, watch=watch)

            try:
                response = self._tries.run(method, headers, exchange, deadline=deadline)
            except UnicodeEncodeError as exc:
                raise not_text(method, path, exc) from None
        else:
            response = self.send(
                method, path, params=params, json=json, body=body, read_timeout=read_timeout,
                idempotency_key=idempotency_key, hold=hold, deadline=deadline,
                connect_timeout=connect_timeout,
            )
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise errors.APIError(
                f"the Titan master sent a reply that is not JSON for {method} {path}: "
                f"{response.text[:200]!r}",
                status=response.status_code,
                code="bad_response",
            ) from None

    def fetch(self, path: str, consume: Callable[[httpx.Response], T], *,
              params: Mapping[str, Any] | None = None) -> T:
        """``consume(reply)`` of a streamed GET, its body read as it comes; the reply is
        closed after it.

        A GET may go again, so a body that breaks off (its master killed, or frozen and
        found out: client/stalls.py) is asked for again from its start, of the next master
        where several were given, as the retry rules say for a reply lost: ``consume`` is
        then called again on the new reply, and must drop whatever it kept of the broken one
        (a download's temp file, a buffer). One that cannot (bytes handed on already) raises
        a :class:`~titan.errors.TitanError` of its own instead of httpx's error.
        """
        refuse_nul("GET", path, params)
        consumed: list[T] = []

        def exchange(url: str) -> httpx.Response:
            request = self._build(url, "GET", path, params, None, None, None, None)
            response = self._http.send(request, stream=True)
            if not response.is_success:
                return response  # read and checked by the retry loop
            try:
                consumed[:] = [consume(response)]
            finally:
                response.close()
            return response

        try:
            self._tries.run("GET", None, exchange, stream=True)
        except UnicodeEncodeError as exc:
            raise not_text("GET", path, exc) from None
        return consumed[0]

    def download(
        self,
        path: str,
        dest_for: Callable[[httpx.Headers], Path | BinaryIO],
        *,
        params: Mapping[str, Any] | None = None,
    ) -> Path | BinaryIO:
        """Stream a GET reply into the file ``dest_for(reply_headers)`` (or the stream it
        gives, :func:`~titan.client.download_file.save_stream`) and return its path.

        The file is written through a temp file and renamed, so a failed download leaves
        nothing half-written behind, and one that broke off is started again (:meth:`fetch`).
        A stream's bytes cannot be taken back: a download to one that broke off is reported.
        A target that cannot be written (a folder, a full disk, no permission) is a
        :class:`~titan.errors.LocalFileError` naming it, never the temp file's name nor a
        bare ``OSError``.
        """
        def save(response: httpx.Response) -> Path | BinaryIO:
            dest = dest_for(response.headers)
            if isinstance(dest, Path):
                save_stream(response, dest)
                return dest
            try:
                save_stream(response, dest)
            except httpx.HTTPError as exc:
                raise self._tries.unreachable(exc) from None
            return dest

        return self.fetch(path, save, params=params)
