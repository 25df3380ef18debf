"""The worker's HTTP link to the master: one keep-alive client per thread, patient retries.

A worker outlives master restarts, so every call here retries transport errors and 5xx
answers with the jittered, capped backoff of :mod:`titan.retry` (0.1 s doubling to 2 s) with no
deadline, until it succeeds or the worker is told to stop hard; nothing the worker queued is
ever dropped because the master was briefly away. Repeating any of these calls after a lost
reply is harmless, which is why even a POST whose reply broke off is retried: registering is
keyed by ``worker_id``, a poll's jobs are delivered again and deduplicated by (job, attempt),
a report's log lines are keyed by (job, attempt, seq) and a result for an attempt that already
finished is answered ``rejected``, never applied twice. A 4xx is final and raised as the matching :mod:`titan.errors` class (a 404 with
code ``unknown_worker`` included: the caller re-registers and tries again).

Each thread gets its own :class:`httpx.Client` because the long-poll, the heartbeat, the
reporter and the script fetchers run concurrently; sharing one pool would let a 20-second
long-poll hold a connection another thread is waiting for, and per-thread clients keep every
connection warm for the thread that uses it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from pathlib import Path
from typing import Any

import httpx

from titan import errors, retry
from titan.client.transport import error_body, tcp_transport
from titan.version import __version__

log = logging.getLogger("titan.worker")

API_PREFIX = "/api/v1"
BACKOFF_START = 0.1
BACKOFF_MAX = 2.0
#: Read time allowed beyond a server-side long-poll wait before the socket is given up.
WAIT_MARGIN = 15.0
UNKNOWN_WORKER = "unknown_worker"
#: Gateway answers (a proxy in front of a restarting master) are retried for ever; any other
#: 5xx is a bug in the master, retried this many times before it is raised, so one request
#: that crashes the master cannot wedge the worker's report queue behind it.
TRANSIENT_5XX = retry.GATEWAY_STATUSES
MAX_SERVER_ERRORS = 5


def is_unknown_worker(exc: BaseException) -> bool:
    """True for the master's "I do not know this worker" answer (it restarted and forgot)."""
    return isinstance(exc, errors.NotFound) and exc.code == UNKNOWN_WORKER


class Stopped(errors.ConnectionFailed):
    """The worker is stopping; the call was abandoned."""


class MasterConnection:
    """Calls to one master's ``/api/v1`` that retry until they succeed or ``stop`` is set."""

    def __init__(self, master_url: str, token: str | None, stop: threading.Event) -> None:
        self.master_url = master_url.rstrip("/")
        self.api_url = self.master_url + API_PREFIX
        self._stop = stop
        self._headers = {"User-Agent": f"titan-worker/{__version__}"}
        # Sent per request, not set on the per-thread clients: set_credential swaps it for
        # every thread at once by replacing the dict (never mutating one a request reads).
        self._auth: dict[str, str] = {"Authorization": f"Bearer {token}"} if token else {}
        self._local = threading.local()
        self._clients: list[httpx.Client] = []
        self._clients_lock = threading.Lock()

    @property
    def auth(self) -> dict[str, str]:
        """The Authorization header every call for this worker sends."""
        return self._auth

    def set_credential(self, credential: str) -> None:
        """Use the worker credential registration returned: calls for this worker (and
        re-registering it after a master restart) need it; the worker token only registers."""
        self._auth = {"Authorization": f"Bearer {credential}"}

    # ------------------------------------------------------------------ clients

    def _client(self) -> httpx.Client:
        client: httpx.Client | None = getattr(self._local, "client", None)
        if client is None:
            # keepalive_expiry under uvicorn's 5 s keep-alive: the client drops an idle
            # connection before the server does, so a request never races a server-side close.
            # trust_env=False: an internet proxy must not capture a loopback master.
            client = httpx.Client(
                headers=self._headers,
                timeout=httpx.Timeout(30.0, connect=5.0),
                trust_env=False,
                transport=tcp_transport(max_connections=4, max_keepalive=2),
            )
            self._local.client = client
            with self._clients_lock:
                self._clients.append(client)
        return client

    def close(self) -> None:
        """Close every thread's pooled connections."""
        with self._clients_lock:
            clients, self._clients = self._clients, []
        for client in clients:
            client.close()

    # ------------------------------------------------------------------ retrying

    def _backoff(self, attempt: int, what: str, exc: BaseException | str) -> None:
        delay = retry.pause(attempt, start=BACKOFF_START, cap=BACKOFF_MAX)
        if attempt in (0, 5) or attempt % 20 == 0:
            log.warning("master unreachable (%s: %s); retrying", what, exc)
        if self._stop.wait(delay):
            raise Stopped(f"stopped while retrying {what}")

    def _check(self, response: httpx.Response) -> bool:
        """True when the response is usable; False when it should be retried (5xx)."""
        status = response.status_code
        if status < 400:
            return True
        if status >= 500:
            return False
        raise errors.from_response(status, error_body(response))

    def call(self, method: str, path: str, body: Any = None, *, timeout: float = 30.0) -> Any:
        """Send a JSON request and return the decoded JSON answer, retrying until it lands.

        Raises :class:`Stopped` if the worker stops meanwhile, and the :mod:`titan.errors`
        class of any 4xx answer.
        """
        url = self.api_url + path
        attempt = server_errors = 0
        while True:
            if self._stop.is_set():
                raise Stopped(f"stopped before {method} {path}")
            try:
                response = self._client().request(
                    method, url, json=body, headers=self._auth,
                    timeout=httpx.Timeout(timeout, connect=5.0),
                )
            except httpx.TransportError as exc:
                self._backoff(attempt, f"{method} {path}", exc)
                attempt += 1
                continue
            if not self._check(response):
                status = response.status_code
                if status not in TRANSIENT_5XX:
                    server_errors += 1
                    if server_errors >= MAX_SERVER_ERRORS:
                        raise errors.APIError(
                            f"{method} {path}: the master failed with HTTP {status} "
                            f"(a bug in the master): {response.text[:300]}",
                            status=status, code="internal_error",
                        )
                self._backoff(attempt, f"{method} {path}", f"HTTP {status}")
                attempt += 1
                continue
            if not response.content:
                return {}
            return response.json()

    def download(self, path: str, dest: Path, *, expect_sha256: str | None = None,
                 known: frozenset[str] = frozenset()) -> str:
        """Stream ``GET path`` into ``dest`` atomically and return the body's sha256.

        The body is hashed as it arrives; a mismatch with ``expect_sha256`` (or with the
        ``X-Titan-Sha256`` header) is refused, so a corrupted transfer never lands in the
        cache. When the header names a hash in ``known`` (already cached), the body is not
        read at all and that hash is returned: an unchanged archive is not sent again.
        """
        url = self.api_url + path
        attempt = mismatches = 0
        while True:
            if self._stop.is_set():
                raise Stopped(f"stopped before GET {path}")
            reason: BaseException | str
            try:
                with self._client().stream("GET", url, headers=self._auth,
                                           timeout=60.0) as response:
                    if response.status_code < 500:
                        if response.status_code >= 400:
                            response.read()
                            self._check(response)
                        header = (response.headers.get("X-Titan-Sha256") or "").lower()
                        if header and header in known:
                            return header
                        return _save(response, dest, expect_sha256 or header or None)
                    reason = f"HTTP {response.status_code}"
            except httpx.TransportError as exc:
                reason = exc  # the body broke off mid-stream: start the download again
            except _Mismatch as exc:
                mismatches += 1
                if mismatches >= 3:
                    raise errors.TitanError(f"GET {path}: {exc}") from None
                reason = exc
            self._backoff(attempt, f"GET {path}", reason)
            attempt += 1


class _Mismatch(Exception):
    pass


def _save(response: httpx.Response, dest: Path, expected: str | None) -> str:
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    digest = hashlib.sha256()
    try:
        with tmp.open("wb") as fh:
            for chunk in response.iter_bytes():
                digest.update(chunk)
                fh.write(chunk)
        sha = digest.hexdigest()
        if expected and sha != expected.lower():
            raise _Mismatch(f"body hash {sha[:12]} does not match {expected[:12]}")
        os.replace(tmp, dest)
        return sha
    finally:
        tmp.unlink(missing_ok=True)
