"""A master the worker cannot talk TLS with: said clearly, then tried slowly.

Retrying never fixes a certificate the worker does not trust, a pin it does not match, a
host name the certificate does not list, an ``https://`` URL to a plain-HTTP master, or an
``http://`` URL to an HTTPS one (:func:`plain_to_tls`, told by a TLS handshake); the
worker retried every 2 s for ever, logging the raw OpenSSL text (a pin's refusal as a
tuple's repr) with advice to set what was set. Now, in the words the CLI uses
(:func:`titan.client.tls.explain`):

* before any master has answered the worker, such a failure from its only master stops it
  with exit status 1, as a wrong token does and as the CLI does
  (:class:`~titan.worker.connection.MasterConnection`);
* afterwards — the master's certificate changed under a running worker: a renewal gone
  wrong, a failover to a standby with a certificate of its own — the worker keeps its
  running jobs and keeps trying, since the operator may be fixing the certificate right
  then. Once every try for :data:`PERSIST_SECONDS` has failed so, it says once that this is
  a configuration error, not an outage, and tries every :data:`SLOW_SECONDS` until one
  succeeds. The HTTP calls and the worker channel share one :class:`TlsFailures`.
"""

from __future__ import annotations

import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable
from urllib.parse import urlsplit

from titan.client.tls import explain

log = logging.getLogger("titan.worker")

#: How long nothing but TLS failures makes them a configuration error (seconds).
PERSIST_SECONDS = 120.0
#: The pace of tries from then on (seconds).
SLOW_SECONDS = 30.0


class TlsFailures:
    """Since when every try has failed on TLS, and whether the worker said so."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._since: float | None = None
        self._said = False
        #: The masters that have answered (over plain HTTP for an http:// URL): a connection
        #: one of them drops later is an outage, not a sign that it serves HTTPS.
        self._heard: set[str] = set()

    def heard(self, url: str) -> None:
        """The master at ``url`` (its root URL) answered."""
        self._heard.add(url.rstrip("/"))

    def hint(self, error: str, url: str) -> str | None:
        """:func:`failure_hint`, but none for a plain-HTTP master that answered before."""
        return None if url.rstrip("/") in self._heard else failure_hint(error, url)

    def failed(self, advice: str) -> float | None:
        """Note a TLS failure (``advice``: what would fix it); the pause to take instead of
        the backoff's once they have persisted, None before."""
        with self._lock:
            now = self._clock()
            if self._since is None:
                self._since = now
            lasted = now - self._since
            if lasted < PERSIST_SECONDS:
                return None
            said, self._said = self._said, True
        if not said:
            log.error("%s. Every try for %.0f minutes has failed so: a configuration error, "
                      "not an outage; trying every %.0f s until it is fixed", advice,
                      lasted / 60, SLOW_SECONDS)
        return SLOW_SECONDS

    def cleared(self) -> None:
        """A master answered over TLS (or at all): the next failure starts afresh."""
        if self._since is None:
            return
        with self._lock:
            if self._said:
                log.warning("the master's TLS works again")
            self._since, self._said = None, False


def failure_hint(error: str, url: str) -> str | None:
    """What would fix a failure that retrying never will (a TLS mistake), or None."""
    advice = explain(error, url)
    if advice is not None:
        return advice
    if url.startswith("http://") and "without a reply" in error:
        return "if the master serves HTTPS (titan up --tls), name it with https://"
    return None


def plain_to_tls(error: str, url: str) -> str | None:
    """What to say when an ``http://`` URL names a master that serves HTTPS (None when it
    does not): it closes a plain request without a reply, which a restarting master or a
    proxy may do too, so a TLS handshake with it decides. A worker that was never answered
    stops on it, as on a certificate it does not trust: given http:// against a TLS port it
    retried for ever with a hint each time (a fleet QA pass)."""
    if not url.startswith("http://") or "without a reply" not in error:
        return None
    if not speaks_tls(url):
        return None
    return (f"the master at {url} serves HTTPS (it completes a TLS handshake, and closes a "
            "plain HTTP request without a reply): name it with https://"
            f"{url.removeprefix('http://')}")


def speaks_tls(url: str, timeout: float = 3.0) -> bool:
    """Whether the server at ``url``'s host and port completes a TLS handshake. Nothing is
    verified and nothing is sent: this tells TLS from plain HTTP, it trusts no one."""
    parts = urlsplit(url)
    if not parts.hostname:
        return False
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with socket.create_connection((parts.hostname, parts.port or 80), timeout=timeout) as raw, \
                context.wrap_socket(raw, server_hostname=parts.hostname):
            return True
    except (OSError, ValueError):  # ssl.SSLError is an OSError
        return False
