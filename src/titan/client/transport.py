"""HTTP to the master: one pooled connection set per client, errors mapped to ``titan.errors``.

A reply that is an error is read by :mod:`titan.client.replies` (a 4xx body becomes the
matching :mod:`titan.errors` class; a 5xx says it is a bug in the master); an unreachable
master is a :class:`~titan.errors.ConnectionFailed` that says where the SDK looked.

Retries follow :mod:`titan.retry`: an unreachable master is retried for up to
``TITAN_MASTER_RESTART_GRACE`` seconds (a restart takes a few), a request that may have been
received only when its method is idempotent or it was sent with ``idempotency_key=True`` (an
``Idempotency-Key`` the master records with the write and answers from on a repeat): any other
POST lost mid-flight is reported, not replayed, so nothing is applied twice by accident.

Given several masters (a leader and its standbys, :attr:`Endpoint.urls`), a call that meets a
standby (``503 not_leader``, nothing applied: any method may go again) or a master that
refuses the connection goes on to the leader the standby named, if it is a configured master,
else to the next one (:mod:`titan.client.masters`); the master found to lead is used by the
calls that follow. Long-polls simply ask the new leader. The same grace bounds the whole
tour, and the error raised when no master leads says what each one answered.

A call given a ``deadline`` (a wait's ``timeout``) is retried up to it and no further: the
restart grace is what a call may spend riding out a restart, not more than its caller allowed.
:meth:`Transport.retrying_within` sets such a deadline for every call a thread makes in a
block: an MCP tool call (several API calls) must answer before its client gives up on it.
A request the master holds (a long-poll, a submission with ``wait``: :class:`Hold`) asks on
each try for what is left of its hold, so a retry after a restart does not start it afresh.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

import httpx

from titan import errors, retry
from titan.client import replies, tls
from titan.client.config import Endpoint
from titan.client.download_file import save_stream
from titan.client.file_body import file_body
from titan.client.hold import Hold
from titan.client.http_wire import BodyCutOff, Reply, not_text, refuse_nul
from titan.client.lean_requests import LeanRequests
from titan.client.master_check import TokenUnknown
from titan.client.masters import Masters, Tour, not_leader, standby_reason
from titan.client.plain_http import PlainHTTPTransport, tcp_transport
from titan.client.tls import httpx_verify
from titan.version import __version__

API_PREFIX = "/api/v1"
CHUNK = 1 << 20

Body = bytes | Path | None


#: Transport errors that say nothing was sent because the master is not there: another
#: master may lead. (A pool timeout is this client's own congestion, not the master's.)
_ABSENT = (httpx.ConnectError, httpx.ConnectTimeout)


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
        #: How long an unreachable master is retried (None: ``TITAN_MASTER_RESTART_GRACE``).
        self.restart_grace = retry.restart_grace() if restart_grace is None else restart_grace
        #: Whether this client has had an answer from its master, or runs inside a job (whose
        #: master was up to start it): only then is an unreachable master a restart to ride
        #: out. Before, it is more likely a wrong address or nothing running, and a person at
        #: a terminal should hear so in seconds, not after the whole grace.
        self._reached = retry.in_job()
        #: ``until``: the deadline :meth:`retrying_within` set for this thread's calls.
        self._bounds = threading.local()
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

    @contextmanager
    def retrying_within(self, seconds: float) -> Iterator[None]:
        """In the block, this thread's calls retry no later than ``seconds`` from now (each
        still tries once): a deadline for a group of calls, as ``deadline`` is for one. A
        block inside another keeps the earlier deadline of the two."""
        outer: float | None = getattr(self._bounds, "until", None)
        until = time.monotonic() + seconds
        self._bounds.until = until if outer is None else min(outer, until)
        try:
            yield
        finally:
            self._bounds.until = outer

    # ------------------------------------------------------------------ errors

    def _unreachable(self, exc: Exception, tries: int = 1, tour: Tour | None = None,
                     within: float | None = None) -> errors.ConnectionFailed:
        """``within``: the seconds the tries were given, where the caller's deadline (not
        the restart grace) ended them."""
        detail = str(exc) or type(exc).__name__
        grace = round(within, 1) if within is not None else self.restart_grace \
            if self._reached else min(self.restart_grace, retry.FIRST_CONTACT_GRACE)
        after = f" after {tries} tries within {grace:g}s" if tries > 1 else ""
        urls = self._masters.urls
        if tour is not None and tour.answers and (len(urls) > 1
                                                  or isinstance(exc, errors.NotLeader)):
            where = f"any of {', '.join(urls)}" if len(urls) > 1 else urls[0]
            return errors.ConnectionFailed(
                f"no Titan master leads at {where}{after}: {tour.summary()} "
                f"(address{'es' if len(urls) > 1 else ''} from {self.endpoint.source})"
            )
        if any(said in detail for said in replies.PASSING.values()):
            return errors.ConnectionFailed(
                f"the Titan master at {self.endpoint.url} did not serve the request: "
                f"{detail}{after} (address from {self.endpoint.source})")
        hint = "is `titan up` running?"
        if isinstance(exc, httpx.RemoteProtocolError) and "without a reply" in detail \
                and self.endpoint.url.startswith("http://"):
            # What an HTTPS master does with a plain request: it closes without a word.
            hint = "if it serves HTTPS, use an https:// URL"
        return errors.ConnectionFailed(
            f"cannot reach the Titan master at {self.endpoint.url}: {detail}{after} "
            f"({hint}; address from {self.endpoint.source})"
        )

    def _check(self, response: httpx.Response | Reply) -> None:
        replies.check(response, self.endpoint)

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
        return self._http.build_request(
            method, url + API_PREFIX + path, params=clean, json=json, content=content,
            headers=extra, timeout=timeout,
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
            response: httpx.Response = self._retrying(method, headers, exchange, stream=stream,
                                                      deadline=deadline)
        except UnicodeEncodeError as exc:
            raise not_text(method, path, exc) from None
        return response

    def _retrying(self, method: str, headers: Mapping[str, str] | None,
                  exchange: Callable[[str], Any], *, stream: bool = False,
                  deadline: float | None = None) -> Any:
        """``exchange(master_url)``'s checked reply, retried and sent on to the leader as the
        module docstring says, never past ``deadline``."""
        replayable = retry.replayable(method, headers)
        bound: float | None = getattr(self._bounds, "until", None)
        if bound is not None:
            deadline = bound if deadline is None else min(deadline, bound)
        backoff = retry.Backoff(self.restart_grace if self._reached
                                else min(self.restart_grace, retry.FIRST_CONTACT_GRACE),
                                until=deadline)
        tour = Tour(self._masters)
        silent = 0  # tries in a row that a master accepted and closed without a reply
        cut = 0  # tries in a row whose request a master accepted and closed mid-write
        while True:
            url = self._masters.current
            failure: Exception
            leader: str | None = None
            try:
                response = exchange(url)
            except httpx.TimeoutException as exc:
                # A master that is up but slow: waiting again would only double the wait.
                # Unless other masters were given and the request may go again: one frozen
                # (a paused VM) may have been replaced meanwhile, and the next one leads.
                elsewhere = replayable and isinstance(exc, httpx.ReadTimeout) \
                    and len(self._masters.urls) > 1
                if not elsewhere and not retry.retryable_error(exc, replayable=replayable):
                    raise errors.ConnectionFailed(
                        f"the Titan master at {url} did not answer in time "
                        f"({type(exc).__name__})"
                    ) from None
                failure, reason = exc, f"no answer ({type(exc).__name__})"
                move = elsewhere or isinstance(exc, _ABSENT)
            except httpx.HTTPError as exc:
                if isinstance(exc, TokenUnknown) and not self._reached \
                        and len(self._masters.urls) == 1:
                    # Before any master has answered this client, believed (a wrong token
                    # is said at once); after, anyone on the port could say it: waited out.
                    raise errors.Unauthorized(str(exc)) from None
                if str(exc).startswith("not an HTTP reply") and not self._reached \
                        and len(self._masters.urls) == 1:
                    # Something else holds the port (an SSH banner, a database): no master
                    # restarting answers that, so waiting out its grace (60 s) cannot help.
                    raise errors.ConnectionFailed(
                        f"{url} is not a Titan master: it answered with something that is not "
                        f"HTTP ({str(exc).removeprefix('not an HTTP reply: ')}); check the "
                        "--master URL / TITAN_PORT") from None
                silent = silent + 1 if "without a reply" in str(exc) else 0
                cut = cut + 1 if isinstance(exc, BodyCutOff) else 0
                if cut >= 2:
                    # A restart refuses the next connection; a master (or proxy) that takes
                    # it and cuts the body off again refuses the body (a 413 sent is read).
                    raise errors.ConnectionFailed(
                        f"the master at {url} closed the connection while this request was "
                        "being sent, twice, without an answer: it does not take this body "
                        "(over its TITAN_MAX_BODY_BYTES, or a proxy's limit?)") from None
                if silent >= 3 and url.startswith("http://"):
                    # Accepted, then closed without a word, again and again: no restart
                    # looks like that; a plain request to an HTTPS master does.
                    raise self._unreachable(exc) from None
                if not isinstance(exc, _ABSENT) and not self._reached:
                    # A connection was made: a master is there (a restart, a failover is
                    # what follows), so the whole grace applies, not a newcomer's 2 s.
                    self._reached = True
                    backoff = retry.Backoff(self.restart_grace, until=deadline)
                advice = tls.explain(str(exc), url)
                if advice is not None:
                    # A certificate refused, or no TLS at all: trying again cannot help. Said
                    # in the words a worker logs (client/tls.py).
                    raise errors.ConnectionFailed(advice) from None
                if not retry.retryable_error(exc, replayable=replayable):
                    raise self._unreachable(exc) from None
                failure, reason = exc, str(exc) or type(exc).__name__
                # Any master that failed the exchange is left for the next one (a standby
                # resets an upload before reading it; a killed leader closes mid-reply).
                move = True
            else:
                status = response.status_code
                if stream and status >= 400:
                    response.read()
                    response.close()
                standby = not_leader(status, response.headers, replies.error_body(response)) \
                    if status == errors.NotLeader.status else None
                if standby is not None:
                    # Nothing was applied: whatever the method, it goes to another master.
                    response.close()
                    failure, reason, move = standby, standby_reason(standby, self._masters), True
                    leader = standby.leader
                else:
                    self._reached = True
                    if not retry.retryable_status(status, replayable=replayable):
                        self._check(response)
                        return response
                    said = replies.passing(replies.error_body(response))
                    response.close()
                    if said is not None:  # a master said so itself: it was reached
                        self._reached = True
                        backoff.widen(self.restart_grace)
                    failure = errors.ConnectionFailed(
                        f"HTTP {status}: {said}" if said else f"HTTP {status} from a proxy")
                    reason, move = str(failure), True
            if tour.failed(url, reason, move=move, leader=leader):
                delay = backoff.next_delay()
                if delay is None:
                    raise self._unreachable(failure, tour.tries, tour, backoff.span
                                            if backoff.caller_bound else None) from None
                time.sleep(delay)

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
            # Given several masters, one that froze mid-call is found out in seconds and
            # the call goes on to the next (client/stalls.py); with one, there is nowhere to go.
            watch = len(self._masters.urls) > 1

            def exchange(url: str) -> Reply:
                query, read = (params, read_timeout) if hold is None else hold.for_try(params)
                return lean.send(url, method, API_PREFIX + path, query, json, body, headers,
                                 read, connect_timeout, watch=watch)

            try:
                response = self._retrying(method, headers, exchange, deadline=deadline)
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
        nothing half-written behind. A target that cannot be written (a folder, a full disk,
        no permission) is a :class:`~titan.errors.LocalFileError` naming it, never the temp
        file's name nor a bare ``OSError``.
        """
        response = self.send("GET", path, params=params, stream=True)
        try:
            dest = dest_for(response.headers)
            save_stream(response, dest)
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from None
        finally:
            response.close()
        return dest
