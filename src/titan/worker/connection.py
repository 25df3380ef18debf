"""The worker's HTTP link to the master: one keep-alive client per thread, patient retries.

A worker outlives master restarts, so every call here retries transport errors and 5xx
answers with the jittered, capped backoff of :mod:`titan.retry` (0.1 s doubling to 2 s) with no
deadline, until it succeeds or the worker is told to stop hard; nothing the worker queued is
ever dropped because the master was briefly away. Repeating any of these calls after a lost
reply is harmless, which is why even a POST whose reply broke off is retried: registering is
keyed by ``worker_id``, a poll's jobs are delivered again and deduplicated by (job, attempt),
a report's log lines are keyed by (job, attempt, seq) and a result for an attempt that already
finished is answered ``rejected``, never applied twice. A 4xx is final and raised as the matching :mod:`titan.errors` class (a 404 with
code ``unknown_worker`` included: the caller re-registers and tries again). A TLS failure (a
certificate refused, an ``https://`` URL to a plain-HTTP master) is final before any master has
answered, and tried slowly once it has lasted, after (:mod:`titan.worker.tls_failures`).

Given several masters (a leader and its standbys), a call that meets a standby (``503
not_leader``: nothing applied) or a master that refuses the connection turns to the leader the
standby named, if it is a configured master, else to the next one (:mod:`titan.client.masters`,
shared with the SDK), at once while there are masters not tried since the last pause; every
thread then uses the master found. A new leader is to the worker what a restarted master is:
if it does not know the worker, it answers ``unknown_worker`` and the worker re-joins.

Before any master has answered the worker, a master that says it does not know the token is
believed once a round of the masters found no other that could lead (each refused the
connection or was a standby): the worker stops, as it does with a single master. A round of
standbys only is said as such, naming the leader they name when it is not a configured master.

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
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

from titan import errors, retry
from titan.client.master_check import MasterUnproven, TokenUnknown
from titan.client.masters import Masters, Tour, not_leader, standby_reason
from titan.client.plain_http import tcp_transport
from titan.client.replies import error_body
from titan.client.tls import explain, httpx_verify
from titan.permissions import make_dirs
from titan.version import __version__
from titan.worker.tls_failures import TlsFailures, plain_to_tls

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
#: Transport errors that say the master is not there (nothing was sent): another may lead.
_ABSENT = (httpx.ConnectError, httpx.ConnectTimeout)


def is_unknown_worker(exc: BaseException) -> bool:
    """True for the master's "I do not know this worker" answer (it restarted and forgot)."""
    return isinstance(exc, errors.NotFound) and exc.code == UNKNOWN_WORKER


class Stopped(errors.ConnectionFailed):
    """The worker is stopping; the call was abandoned."""


class MasterConnection:
    """Calls to the leading master's ``/api/v1`` (one of ``master_url``: a URL or the list of
    a leader and its standbys) that retry until they succeed or ``stop`` is set."""

    def __init__(self, master_url: str | Sequence[str], token: str | None,
                 stop: threading.Event) -> None:
        urls = [master_url] if isinstance(master_url, str) else list(master_url)
        #: The configured masters and the one in use, shared with the worker channel.
        self.masters = Masters([u.rstrip("/") for u in urls])
        self._stop = stop
        self._headers = {"User-Agent": f"titan-worker/{__version__}"}
        # Sent per request, not set on the per-thread clients: set_credential swaps it for
        # every thread at once by replacing the dict (never mutating one a request reads).
        self._auth: dict[str, str] = {"Authorization": f"Bearer {token}"} if token else {}
        self._local = threading.local()
        self._clients: list[httpx.Client] = []
        self._clients_lock = threading.Lock()
        #: Whether a master has answered this worker yet: until one has, a server that says
        #: it does not know the token is believed (a wrong token stops the worker at once);
        #: afterwards anyone on the port could say it, and it is waited out. The same holds
        #: for a certificate refused (or no TLS at all): final before, tried slowly after.
        self._answered = False
        #: TLS failures in a row, shared with the worker channel (worker/tls_failures.py).
        self.tls_failures = TlsFailures()

    @property
    def master_url(self) -> str:
        """The root URL of the master in use (the last one found to lead)."""
        return self.masters.current

    @property
    def api_url(self) -> str:
        return self.masters.current + API_PREFIX

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
                transport=tcp_transport(max_connections=4, max_keepalive=2,
                                        verify=httpx_verify(self.masters.current)),
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

    def _backoff(self, attempt: int, what: str, exc: BaseException | str,
                 where: str | None = None) -> None:
        """Pause before the next try, saying why now and then. ``where``: the master whose
        answer this was (by default the one in use, which a turn may already have moved)."""
        delay = retry.pause(attempt, start=BACKOFF_START, cap=BACKOFF_MAX)
        # Named: a worker started with no --master says which default it tried.
        where = where or self.masters.current
        advice = explain(str(exc), where)
        if advice is not None:  # retrying cannot fix it; after a while, not so often
            delay = self.tls_failures.failed(advice) or delay
        if attempt in (0, 5) or attempt % 20 == 0:
            hint = None if advice is not None else self.tls_failures.hint(str(exc), where)
            if advice is not None:  # what would fix it, in the CLI's words
                log.error("%s (%s); retrying", advice, what)
            elif isinstance(exc, errors.NotLeader):
                self._say_standby(where, exc)
            elif hint:
                log.error("master %s unreachable (%s: %s); %s; retrying", where, what, exc,
                          hint)
            else:
                log.warning("master %s unreachable (%s: %s); retrying", where, what, exc)
        if self._stop.wait(delay):
            raise Stopped(f"stopped while retrying {what}")

    def _say_standby(self, where: str, exc: errors.NotLeader) -> None:
        """A standby answered, and no configured master leads: it is up, not "unreachable"
        (which read as a network fault, with the leader's own address in it)."""
        leader = exc.leader
        if leader is not None and self.masters.listed(leader) is None:
            # Retrying does not reach a leader this worker was not given (nothing vouches
            # for an address a standby names, so it is never followed): say what would.
            log.error("master %s is a standby; the leader it names, %s, is not one of this "
                      "worker's masters: add it (--master %s, repeated or comma-separated "
                      "with the others) if it is yours; retrying", where, leader, leader)
        elif leader is not None:
            log.warning("master %s is a standby naming the leader %s, which does not lead "
                        "(an election in progress?); retrying", where, leader)
        else:
            log.warning("master %s is a standby that does not know the leader yet (an "
                        "election in progress?); retrying", where)

    def _failed(self, tour: Tour, attempt: int, url: str, reason: str, *, move: bool,
                leader: str | None = None) -> bool:
        """Note a failed try on ``url`` (turning to another master with ``move``); True
        when the backoff's pause is due before the next try."""
        pause = tour.failed(url, reason, move=move, leader=leader)
        if tour.turned is not None:
            # As often as "master unreachable": a long outage turns on every round.
            level = logging.WARNING if attempt in (0, 5) or attempt % 20 == 0 else logging.DEBUG
            log.log(level, "master %s: %s; turning to %s", url, reason, tour.turned)
        return pause

    def _standby(self, response: httpx.Response) -> errors.NotLeader | None:
        if response.status_code != errors.NotLeader.status:
            return None
        return not_leader(response.status_code, response.headers, error_body(response))

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
        A callable ``body`` is called for each try: its ``now`` is when that try was sent.

        Raises :class:`Stopped` if the worker stops meanwhile, and the :mod:`titan.errors`
        class of any 4xx answer.
        """
        attempt = server_errors = 0
        tour = Tour(self.masters)
        #: What each master said in this round (since the last pause), while none has ever
        #: answered: a round in which one said it does not know the token and none of the
        #: others could lead (refused, a standby) is that master's final word.
        unknown: dict[str, str] = {}
        while True:
            if self._stop.is_set():
                raise Stopped(f"stopped before {method} {path}")
            base = self.masters.current
            what = f"{method} {path}"
            try:
                response = self._client().request(
                    method, base + API_PREFIX + path, headers=self._auth,
                    json=body() if callable(body) else body,
                    timeout=httpx.Timeout(timeout, connect=5.0),
                )
            except httpx.TransportError as exc:
                token_unknown = isinstance(exc, TokenUnknown) and not self._answered
                if token_unknown and len(self.masters.urls) == 1:
                    raise errors.Unauthorized(str(exc)) from None
                if not self._answered and len(self.masters.urls) == 1:
                    advice = explain(str(exc), base) or plain_to_tls(str(exc), base)
                    if advice is not None:  # before any answer: a mistake, as the CLI says
                        raise errors.ConnectionFailed(advice) from None
                if isinstance(exc, httpx.ReadTimeout) and len(self.masters.urls) > 1:
                    # Connected, then no answer: a leader that froze (SIGSTOP, a paused
                    # VM) keeps accepting connections. Asked briefly whether it leads, so
                    # the next try goes to the master that took over, if one did.
                    self.leads(base)
                if token_unknown:
                    unknown[base] = str(exc)
                elif isinstance(exc, _ABSENT) and not isinstance(exc, MasterUnproven):
                    unknown[base] = ""  # nothing listens there: it cannot be leading
                else:
                    unknown[base] = "?"
                if self._failed(tour, attempt, base, str(exc) or type(exc).__name__,
                                move=isinstance(exc, _ABSENT)):
                    _token_unknown_everywhere(unknown, self._answered)
                    self._backoff(attempt, what, exc, base)
                    attempt += 1
                continue
            self.tls_failures.cleared()
            standby = self._standby(response)
            self.tls_failures.heard(base)
            if standby is None:
                self._answered = True
            if standby is not None:
                # Nothing was applied: the same call goes to another master.
                unknown[base] = ""
                reason = standby_reason(standby, self.masters)
                if self._failed(tour, attempt, base, reason, move=True, leader=standby.leader):
                    _token_unknown_everywhere(unknown, self._answered)
                    self._backoff(attempt, what, standby, base)
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
                # A gateway's "the master behind me is away": another master may lead.
                if self._failed(tour, attempt, base, f"HTTP {status}",
                                move=status in TRANSIENT_5XX):
                    unknown.clear()
                    self._backoff(attempt, what, f"HTTP {status}", base)
                    attempt += 1
                continue
            if not response.content:
                return {}
            return response.json()

    def leads(self, url: str) -> bool:
        """Whether ``url`` leads, asked once (``GET /health``) after it refused the worker
        channel. When it does not — a standby, or no answer at all — the masters turn away
        from it (to the leader it names, when configured) and False is returned; True means
        the refusal was that master's own answer."""
        try:
            # Short: a master that froze answers nothing, and every second spent here is one
            # the jobs' leases at the new leader run down (see ChannelIntake.ping_seconds).
            response = self._client().get(url + API_PREFIX + "/health", headers=self._auth,
                                          timeout=httpx.Timeout(3.0, connect=3.0))
        except httpx.TransportError as exc:
            reason, leader = str(exc) or type(exc).__name__, None
        else:
            self.tls_failures.cleared()
            standby = self._standby(response)
            if standby is None:
                return True
            reason, leader = standby_reason(standby, self.masters), standby.leader
        if self.masters.move_on(url, leader):
            log.info("master %s: %s; turning to %s", url, reason, self.masters.current)
        return False

    def download(self, path: str, dest: Path, *, expect_sha256: str | None = None,
                 known: frozenset[str] = frozenset()) -> str:
        """Stream ``GET path`` into ``dest`` atomically and return the body's sha256.

        The body is hashed as it arrives; a mismatch with ``expect_sha256`` (or with the
        ``X-Titan-Sha256`` header) is refused, so a corrupted transfer never lands in the
        cache. When the header names a hash in ``known`` (already cached), the body is not
        read at all and that hash is returned: an unchanged archive is not sent again.
        """
        attempt = mismatches = 0
        tour = Tour(self.masters)
        while True:
            if self._stop.is_set():
                raise Stopped(f"stopped before GET {path}")
            base = self.masters.current
            reason: BaseException | str
            move, leader, standby = False, None, None
            try:
                with self._client().stream("GET", base + API_PREFIX + path, headers=self._auth,
                                           timeout=60.0) as response:
                    self.tls_failures.cleared()
                    if response.status_code == errors.NotLeader.status:
                        response.read()
                    standby = self._standby(response)
                    if standby is not None:
                        reason = standby_reason(standby, self.masters)
                        move, leader = True, standby.leader
                    elif response.status_code < 500:
                        if response.status_code >= 400:
                            response.read()
                            self._check(response)
                        header = (response.headers.get("X-Titan-Sha256") or "").lower()
                        if header and header in known:
                            return header
                        return _save(response, dest, expect_sha256 or header or None)
                    else:
                        reason = f"HTTP {response.status_code}"
                        move = response.status_code in TRANSIENT_5XX
            except httpx.TransportError as exc:
                reason = exc  # the body broke off mid-stream: start the download again
                move = isinstance(exc, _ABSENT)
            except _Mismatch as exc:
                mismatches += 1
                if mismatches >= 3:
                    raise errors.TitanError(f"GET {path}: {exc}") from None
                reason = exc
            if self._failed(tour, attempt, base, str(reason) or type(reason).__name__, move=move,
                            leader=leader):
                self._backoff(attempt, f"GET {path}", standby or reason, base)
                attempt += 1


class _Mismatch(Exception):
    pass


def _token_unknown_everywhere(said: dict[str, str], answered: bool) -> None:
    """At the end of a round of the masters (``said``: what each answered, cleared here):
    raise the refusal of the token when one master said it does not know it and every other
    could not lead (``""``: refused the connection, or a standby), before any master ever
    answered this worker. As with a single master, a wrong token (another cluster's) stops a
    new worker at once; with several it looped for ever. A master that might lead and said
    anything else (``"?"``) keeps it waiting: so does a stranger on one master's port while
    the leader is reachable, since the leader then answers."""
    refusals = [reason for reason in said.values() if reason not in ("", "?")]
    final = not answered and refusals and "?" not in said.values()
    said.clear()
    if final:
        raise errors.Unauthorized(refusals[0])


def _save(response: httpx.Response, dest: Path, expected: str | None) -> str:
    # Modes of their own: under umask 000 a cached script was 0666, anyone's to rewrite.
    make_dirs(dest.parent, 0o755)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    digest = hashlib.sha256()
    tmp.unlink(missing_ok=True)  # one a crash left: O_EXCL below, and the mode of its own
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o644)
        with os.fdopen(fd, "wb") as fh:
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
