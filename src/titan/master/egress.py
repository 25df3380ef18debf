"""Where the master itself may connect: the egress policy of its outbound HTTP calls.

The master calls URLs that users register: an evaluation's HTTP agent (``url``) and its
passthrough tools (``endpoint``). Unchecked, that is server-side request forgery — a viewer
reading the run would see what the master's own API, a PostgreSQL port or a cloud metadata
service answered (issue 15 item 5). So every outbound connection goes through
:class:`GuardedBackend`, which resolves the name itself, checks every address it would
connect to against the policy, and connects to the checked address (TLS still verifies the
URL's host name), so DNS cannot answer differently between the check and the connection.
Redirects are not followed: a 3xx would carry the agent's headers and the run's proxy token
to whatever host it names. :meth:`EgressPolicy.post` is the call itself: its ``timeout``
bounds the whole answer (an endpoint sending a byte at a time must not hold the call open
past it), and an answer over :data:`ANSWER_LIMIT` (16 MiB) is refused, never read into memory.

The policy, in order:

1. ``TITAN_EGRESS_DENY`` entries are refused;
2. ``TITAN_EGRESS_ALLOW`` entries are allowed (``*`` allows everything);
3. the master's own ports on any address of its host are refused (only an ALLOW entry naming
   the port exactly lets a call through to them);
4. anything that is not a public unicast address is refused: loopback, private (RFC 1918,
   ``fc00::/7``), link-local (``169.254.0.0/16``, cloud metadata, ``fe80::/10``), shared
   (``100.64.0.0/10``), multicast, reserved and unspecified ones, IPv4-mapped IPv6 forms of
   those, and any address of the master's own host (a service bound to it: its database);
5. the rest (public addresses) is allowed.

An entry is a CIDR or address (``10.1.0.0/16``, ``127.0.0.1``, ``::1``), optionally with a
port (``127.0.0.1:8080``, ``[::1]:8080``), or a host name as written in URLs, optionally with
a port (``agent.internal``, ``agent.internal:8443``).
"""

from __future__ import annotations

import asyncio
import codecs
import ipaddress
import json
import os
import socket
import ssl
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

import httpcore
import httpx

from titan.errors import ConfigError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


#: The most of an answer the master reads from an agent or tool endpoint (16 MiB).
ANSWER_LIMIT = 16 << 20


class AnswerTooLarge(httpx.DecodingError):
    """An endpoint's answer is over the limit: refused, not read (an httpx DecodingError, so
    it is reported as an answer that could not be read)."""


@dataclass(frozen=True)
class Answer:
    """An endpoint's whole answer, read within the call's time and size limits."""

    status_code: int
    content: bytes
    encoding: str = "utf-8"

    @property
    def text(self) -> str:
        return self.content.decode(self.encoding, "replace")

    def json(self) -> Any:
        """The body parsed as JSON (a ValueError when it is not)."""
        return json.loads(self.content)


def _encoding(response: httpx.Response) -> str:
    name = response.charset_encoding or "utf-8"
    try:
        return codecs.lookup(name).name
    except LookupError:
        return "utf-8"


class EgressRefused(httpcore.ConnectError):
    """The policy refused a connection (an httpcore ConnectError, so httpx reports it as
    ``httpx.ConnectError``: the target is unreachable, for the reason given)."""


@dataclass(frozen=True)
class Rule:
    network: IPNetwork | None = None
    host: str | None = None
    port: int | None = None

    def matches(self, host: str, address: IPAddress, port: int) -> bool:
        if self.port is not None and self.port != port:
            return False
        if self.host is not None:
            return self.host == host.lower()
        return self.network is not None and address in self.network


def parse_rule(entry: str, setting: str) -> Rule:
    """One entry of TITAN_EGRESS_ALLOW / _DENY; ConfigError naming the setting if malformed."""
    raw = entry.strip()
    if "://" in raw:
        # A URL pasted whole read "bad port in 'http://agent.internal'".
        raise ConfigError(f"{setting}: {raw!r} is a URL; an entry is a host or address, with "
                          "a port if only that port is meant (agent.internal, "
                          "agent.internal:8443, 10.0.0.0/8)")
    port: int | None = None
    target = raw
    if raw.startswith("["):  # [v6] or [v6]:port
        close = raw.find("]")
        target, rest = raw[1:close], raw[close + 1:]
        if rest:
            port = _port(rest.removeprefix(":"), raw, setting)
    elif raw.count(":") == 1:  # v4:port or name:port
        target, _, port_s = raw.partition(":")
        port = _port(port_s, raw, setting)
    try:
        return Rule(network=ipaddress.ip_network(target, strict=False), port=port)
    except ValueError:
        pass
    if not target or any(ch in target for ch in "/ @") or target.count(":"):
        raise ConfigError(f"{setting}: {raw!r} is neither an address, a network nor a host name")
    return Rule(host=target.lower(), port=port)


def _port(text: str, raw: str, setting: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ConfigError(f"{setting}: bad port in {raw!r}")
    return int(text)


def _rules(text: str | None, setting: str) -> tuple[tuple[Rule, ...], bool]:
    entries = [e for e in (text or "").split(",") if e.strip()]
    if any(e.strip() == "*" for e in entries):
        return (), True
    return tuple(parse_rule(e, setting) for e in entries), False


@lru_cache(maxsize=4096)
def is_local(address: IPAddress) -> bool:
    """Whether ``address`` belongs to this host: binding a socket to it succeeds only then."""
    family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.bind((str(address), 0))
        return True
    except OSError:
        return False


_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def _plain(address: IPAddress) -> IPAddress:
    """The IPv4 address an IPv6 one carries (mapped ``::ffff:a.b.c.d``, or NAT64's
    ``64:ff9b::a.b.c.d`` on IPv6-only hosts), judged as that address; else itself."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        if address in _NAT64:
            return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address


class EgressPolicy:
    def __init__(self, allow: Iterable[Rule] = (), deny: Iterable[Rule] = (), *,
                 allow_all: bool = False, own_ports: Iterable[int] = ()) -> None:
        self.allow = tuple(allow)
        self.deny = tuple(deny)
        self.allow_all = allow_all
        self.own_ports = frozenset(own_ports)
        self._ssl: ssl.SSLContext | None = None

    @classmethod
    def from_env(cls, own_ports: Iterable[int] = ()) -> EgressPolicy:
        allow, allow_all = _rules(os.environ.get("TITAN_EGRESS_ALLOW"), "TITAN_EGRESS_ALLOW")
        deny, _ = _rules(os.environ.get("TITAN_EGRESS_DENY"), "TITAN_EGRESS_DENY")
        return cls(allow, deny, allow_all=allow_all, own_ports=own_ports)

    def refusal(self, host: str, address: IPAddress, port: int) -> str | None:
        """Why connecting to ``address:port`` (for URL host ``host``) is refused, or None."""
        address = _plain(address)
        if any(r.matches(host, address, port) for r in self.deny):
            return "denied by TITAN_EGRESS_DENY"
        allowed = [r for r in self.allow if r.matches(host, address, port)]
        if port in self.own_ports and is_local(address) and not any(
                r.port == port for r in allowed):
            return "the master's own port (allow it explicitly, with its port, to call it)"
        if self.allow_all or allowed:
            return None
        if address.is_loopback:
            return "a loopback address"
        if address.is_link_local:
            return "a link-local address (cloud metadata lives there)"
        if address.is_multicast or address.is_unspecified or address.is_reserved:
            return "not a unicast address"
        if not address.is_global:
            return "a private address"
        if is_local(address):
            return "an address of the master's own host"
        return None

    def check_url(self, url: str) -> str | None:
        """Why a URL is refused when its host is an address (in any spelling the resolver
        accepts, e.g. ``2130706433``): the check at registration. Names are checked when
        called, after resolution."""
        try:
            parts = urlsplit(url)
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError as exc:
            return f"{url!r} is not a valid URL ({exc})"
        host = parts.hostname or ""
        address = literal_address(host)
        if address is None:
            return None
        why = self.refusal(host, address, port)
        return None if why is None else f"{address}:{port} is {why}; {_HINT}"

    def client(self, timeout: float) -> httpx.AsyncClient:
        """An HTTP client whose every connection obeys the policy. Redirects are not followed:
        the agent's headers (API keys) and the body (the run's proxy token) would travel to
        whatever host a 3xx names. No proxy from the environment either, whose address the
        policy could not see through."""
        if self._ssl is None:  # built once: a context costs ~20 ms, on the event loop
            self._ssl = httpx.create_ssl_context()
        return httpx.AsyncClient(transport=GuardedTransport(self, self._ssl), timeout=timeout,
                                 follow_redirects=False, trust_env=False)

    async def post(self, url: str, body: Any, *, timeout: float,
                   headers: dict[str, str] | None = None,
                   limit: int = ANSWER_LIMIT) -> Answer:
        """POST ``body`` as JSON to ``url`` and read the whole answer, within ``timeout``
        seconds in all — connecting, sending and every byte of the answer, not each read
        alone (``httpx.ReadTimeout`` past it) — and at most ``limit`` bytes of it
        (:class:`AnswerTooLarge` as soon as the length said or read is over it)."""
        try:
            async with asyncio.timeout(timeout), self.client(timeout) as client, \
                    client.stream("POST", url, json=body, headers=headers) as response:
                said = response.headers.get("content-length", "")
                if said.isdigit() and int(said) > limit:
                    raise AnswerTooLarge(_too_large(said + " bytes", limit))
                chunks: list[bytes] = []
                size = 0
                async for chunk in response.aiter_bytes():  # decoded: gzip counts unpacked
                    size += len(chunk)
                    if size > limit:
                        raise AnswerTooLarge(_too_large("more", limit))
                    chunks.append(chunk)
                return Answer(response.status_code, b"".join(chunks), _encoding(response))
        except TimeoutError:  # asyncio.timeout's: the whole answer took too long
            raise httpx.ReadTimeout(
                f"no whole answer within {timeout:g} s (the timeout bounds the whole "
                "answer, not each read)") from None


def _too_large(size: str, limit: int) -> str:
    return (f"the answer is larger than {limit >> 20} MiB ({size}): refused unread; "
            "an endpoint's answer may be at most that")


_HINT = "allow it with TITAN_EGRESS_ALLOW (docs/security.md)"


def literal_address(host: str) -> IPAddress | None:
    """The address a host written as one stands for: ``127.0.0.1``, ``::1``, and the forms
    resolvers also accept (``2130706433``, ``0x7f.1``, ``0177.0.0.1``)."""
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        pass
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except OSError:
        return None


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend, resolving and checking before it connects."""

    def __init__(self, policy: EgressPolicy) -> None:
        self.policy = policy
        self.inner = httpcore.AnyIOBackend()

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                          local_address: str | None = None,
                          socket_options: Iterable[Any] | None = None
                          ) -> httpcore.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        try:
            infos = await asyncio.wait_for(
                loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), timeout)
        except TimeoutError:
            raise httpcore.ConnectTimeout(f"resolving {host} timed out") from None
        except OSError as exc:
            raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from None
        reasons: list[str] = []
        failure: Exception | None = None
        for *_, sockaddr in infos:
            address = ipaddress.ip_address(str(sockaddr[0]).split("%")[0])
            why = self.policy.refusal(host, address, port)
            if why is not None:
                reasons.append(f"{address}:{port} is {why}")
                continue
            try:  # as a plain client would: the next allowed address when one does not answer
                return await self.inner.connect_tcp(str(address), port, timeout=timeout,
                                                    local_address=local_address,
                                                    socket_options=socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
        if failure is not None:
            raise failure
        raise EgressRefused(f"egress policy refused {host}:{port}: "
                            f"{'; '.join(dict.fromkeys(reasons))}; {_HINT}")

    async def connect_unix_socket(self, path: str, timeout: float | None = None,
                                  socket_options: Iterable[Any] | None = None
                                  ) -> httpcore.AsyncNetworkStream:
        raise EgressRefused("egress policy: no Unix sockets")

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


class GuardedTransport(httpx.AsyncHTTPTransport):
    def __init__(self, policy: EgressPolicy, ssl_context: ssl.SSLContext) -> None:
        super().__init__(verify=ssl_context, trust_env=False)
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context, network_backend=GuardedBackend(policy))
