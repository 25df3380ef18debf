"""The tries of one SDK call: retried through a restart, sent on to the leader, given up on in
words that say where the SDK looked.

Retries follow :mod:`titan.retry`: an unreachable master is retried for up to
``TITAN_MASTER_RESTART_GRACE`` seconds (a restart takes a few), a request that may have been
received only when its method is idempotent or it was sent with an ``Idempotency-Key`` (the
master records the key with the write and answers from it on a repeat): any other POST lost
mid-flight is reported, not replayed, so nothing is applied twice by accident.

Given several masters (a leader and its standbys), a call that meets a standby
(``503 not_leader``, nothing applied: any method may go again) or a master that refuses the
connection goes on to the leader the standby named, if it is a configured master, else to the
next one (:mod:`titan.client.masters`); the master found to lead is used by the calls that
follow. The same grace bounds the whole tour, and the error raised when no master leads says
what each one answered.

A call given a ``deadline`` (a wait's ``timeout``) is retried up to it and no further: the
restart grace is what a call may spend riding out a restart, not more than its caller allowed.
:meth:`Retrier.within` sets such a deadline for every call a thread makes in a block.

How an exchange is made (httpx's client, or the lean path of :mod:`titan.client.lean_requests`)
is the caller's: this module sees only the reply or the httpx error each try ends in.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import httpx

from titan import errors, retry
from titan.client import replies, tls
from titan.client.config import Endpoint
from titan.client.http_wire import BodyCutOff
from titan.client.master_check import TokenUnknown
from titan.client.masters import Masters, Tour, not_leader, standby_reason

#: Transport errors that say nothing was sent because the master is not there: another
#: master may lead. (A pool timeout is this client's own congestion, not the master's.)
_ABSENT = (httpx.ConnectError, httpx.ConnectTimeout)


class Retrier:
    """One client's retry policy over its masters, shared by its threads."""

    def __init__(self, masters: Masters, endpoint: Callable[[], Endpoint],
                 restart_grace: float | None = None) -> None:
        self._masters = masters
        #: The endpoint of the master in use (its URL and where the address came from).
        self._endpoint = endpoint
        #: How long an unreachable master is retried (None: ``TITAN_MASTER_RESTART_GRACE``).
        self.restart_grace = retry.restart_grace() if restart_grace is None else restart_grace
        #: Whether this client has had an answer from its master, or runs inside a job (whose
        #: master was up to start it): only then is an unreachable master a restart to ride
        #: out. Before, it is more likely a wrong address or nothing running, and a person at
        #: a terminal should hear so in seconds, not after the whole grace.
        self._reached = retry.in_job()
        #: ``until``: the deadline :meth:`within` set for this thread's calls.
        self._bounds = threading.local()

    @contextmanager
    def within(self, seconds: float) -> Iterator[None]:
        """In the block, this thread's calls retry no later than ``seconds`` from now (each
        still tries once). A block inside another keeps the earlier deadline of the two."""
        outer: float | None = getattr(self._bounds, "until", None)
        until = time.monotonic() + seconds
        self._bounds.until = until if outer is None else min(outer, until)
        try:
            yield
        finally:
            self._bounds.until = outer

    def unreachable(self, exc: Exception, tries: int = 1, tour: Tour | None = None,
                    within: float | None = None) -> errors.ConnectionFailed:
        """The error for a call that reached no master. ``within``: the seconds the tries
        were given, where the caller's deadline (not the restart grace) ended them."""
        endpoint = self._endpoint()
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
                f"(address{'es' if len(urls) > 1 else ''} from {endpoint.source})"
            )
        if any(said in detail for said in replies.PASSING.values()):
            return errors.ConnectionFailed(
                f"the Titan master at {endpoint.url} did not serve the request: "
                f"{detail}{after} (address from {endpoint.source})")
        hint = "is `titan up` running?"
        if isinstance(exc, httpx.RemoteProtocolError) and "without a reply" in detail \
                and endpoint.url.startswith("http://"):
            # What an HTTPS master does with a plain request: it closes without a word.
            hint = "if it serves HTTPS, use an https:// URL"
        return errors.ConnectionFailed(
            f"cannot reach the Titan master at {endpoint.url}: {detail}{after} "
            f"({hint}; address from {endpoint.source})"
        )

    def run(self, method: str, headers: Mapping[str, str] | None,
            exchange: Callable[[str], Any], *, stream: bool = False,
            deadline: float | None = None) -> Any:
        """``exchange(master_url)``'s checked reply, retried and sent on to the leader as the
        module docstring says, never past ``deadline``. ``stream``: the reply's body has not
        been read (an error's is read here before it is looked at)."""
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
                # (a paused VM) may have been replaced meanwhile, and the next one leads —
                # whether it stopped answering or, mid-upload, stopped taking the body.
                elsewhere = replayable and isinstance(exc, httpx.ReadTimeout
                                                      | httpx.WriteTimeout) \
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
                    raise self.unreachable(exc) from None
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
                    raise self.unreachable(exc) from None
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
                    if not retry.retryable_status(status, replayable=replayable) \
                            or replies.final(response):
                        replies.check(response, self._endpoint())
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
                    raise self.unreachable(failure, tour.tries, tour, backoff.span
                                           if backoff.caller_bound else None) from None
                time.sleep(delay)
