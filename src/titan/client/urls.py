"""Master URLs: how they are written, read, listed and compared.

A master URL is a server's root (``http://host:port``; a missing scheme means http, a missing
port 9090, or 443 for https). The API's base (``http://host:port/api/v1``, what a master's
banner once printed) names the same master and is read as its root; any other path is refused.
Several URLs may name one Titan (a leader and its standbys);
loopback spellings (``localhost``, ``127.0.0.1``, ``::1``) count as one host when two are
compared, so a token recorded for one is found for the others.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from titan.errors import ConfigError

DEFAULT_PORT = 9090
#: The API's base path: a master URL that ends with it names that master's root.
API_PATH = "/api/v1"

_LOOPBACK = {"localhost", "127.0.0.1", "::1", "0.0.0.0", "::"}
#: What no host name or address holds: spaces and controls, and the characters a URL
#: quotes (a '%' is an IPv6 literal's zone only: ``fe80::1%25eth0``).
_NOT_HOST = re.compile(r'[\s\x00-\x1f\x7f<>"{}|\\^`]')


def make_url(host: str, port: int, scheme: str = "http") -> str:
    """``http://host:port``, bracketing IPv6 literals."""
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"{scheme}://{host}:{port}"


def redacted(url: str) -> str:
    """``url`` as an error may show it: what stands before an ``@`` in its authority (a user
    and password) as ``***``."""
    return _USERINFO.sub(lambda m: f"{m.group(1) or ''}***@", url, count=1)


_USERINFO = re.compile(r"^(\s*[A-Za-z][A-Za-z0-9+.-]*://)?[^/?#@]*@")


def parse_url(url: str) -> tuple[str, str, int]:
    """Split a master URL into ``(normalized_url, host, port)``; a missing scheme means http.

    Credentials in it (``user:password@host``) are refused, not dropped: Titan sends a token,
    so a user:password a proxy wanted never reached it, and the request failed as one without
    them. Errors show the URL with them left out."""
    text = url.strip().rstrip("/")
    url = redacted(url)  # every message below names the URL as shown
    if re.search(r"[\t\r\n]", text):  # urlsplit drops these: 'a\tb' would be the host 'ab'
        raise ConfigError(f"invalid Titan master URL {url!r}: it holds a tab or a line break")
    if "://" not in text:
        text = "http://" + text
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"invalid Titan master URL {url!r}: {exc}") from None
    if "@" in parts.netloc:
        raise ConfigError(
            f"invalid Titan master URL {url!r}: it holds credentials (user:password@), which "
            "Titan does not send; a master takes a token: token=, --token or TITAN_TOKEN")
    if parts.query or parts.fragment:
        raise ConfigError(f"invalid Titan master URL {parts.scheme}://{parts.netloc}...: give "
                          "the server's root URL, without a query (?...) or fragment (#...)")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"invalid Titan master URL {url!r}: expected http://HOST:PORT")
    if parts.path not in ("", API_PATH):
        raise ConfigError(
            f"invalid Titan master URL {url!r}: give the server's root URL, without a path "
            f"(or with {API_PATH}, the API's base)"
        )
    if port is None:
        port = 443 if parts.scheme == "https" else DEFAULT_PORT
    host = parts.hostname
    if _NOT_HOST.search(host) or ("%" in host and ":" not in host):
        # Tried as it is, 'a b' failed only after the client's retries, as a name that did
        # not resolve ("is `titan up` running?").
        raise ConfigError(f"invalid Titan master URL {url!r}: {host!r} is no host name or "
                          "address (spaces and characters such as % < > \" are not allowed)")
    return make_url(host, port, parts.scheme), host, port


def parse_port(value: Any, where: str) -> int:
    """A port number (1-65535) from ``where``: a ConfigError naming it otherwise."""
    try:
        port = int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"invalid port {value!r} in {where}") from None
    if not 0 < port < 65536:
        raise ConfigError(f"invalid port {port} in {where}: must be 1-65535")
    return port


def master_key(url: str) -> str:
    """A comparison key for master URLs: loopback spellings collapse to one."""
    try:
        normalized, host, port = parse_url(url)
    except ConfigError:
        return url
    scheme = normalized.split("://", 1)[0]
    if host.lower() in _LOOPBACK:
        host = "127.0.0.1"
    return f"{scheme}://{host.lower()}:{port}"


def same_master(a: str, b: str) -> bool:
    """Whether two master URLs name the same server (loopback spellings are one host)."""
    return master_key(a) == master_key(b)


def split_urls(value: str | Iterable[str] | None) -> list[str]:
    """The items of a master-URL list: a comma-separated string, or strings that may each
    hold commas (``--master A --master B,C``); blanks are skipped."""
    if value is None:
        return []
    items = [value] if isinstance(value, str) else list(value)
    return [part.strip() for item in items for part in str(item).split(",") if part.strip()]


def parse_urls(value: str | Iterable[str] | None, where: str) -> tuple[str, ...]:
    """Normalized master URLs from :func:`split_urls`, in order, each server once.

    A bad URL is a :class:`ConfigError` naming it and ``where`` it came from; a list that
    names none is one too.
    """
    found: dict[str, str] = {}
    for item in split_urls(value):
        try:
            url = parse_url(item)[0]
        except ConfigError as exc:
            raise ConfigError(f"{exc} (in {where})") from None
        found.setdefault(master_key(url), url)
    if not found:
        raise ConfigError(f"{where} names no Titan master URL")
    return tuple(found.values())
