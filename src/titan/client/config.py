"""Finding the master: its address and the token to use with it.

:func:`resolve` decides which master a client talks to, from the first source that names one:

1. explicit arguments (``TitanClient(host=..., port=...)``; ``host`` may be a full URL; or
   ``TitanClient(url=...)``: one URL, several separated by commas, or a list of them);
2. the environment: ``TITAN_MASTER_URLS`` (comma-separated), else ``TITAN_URL``, else
   ``TITAN_HOST`` / ``TITAN_PORT`` (a worker sets ``TITAN_MASTER_URLS``, ``TITAN_HOST``,
   ``TITAN_PORT`` and ``TITAN_TOKEN`` for every job it runs);
3. ``$TITAN_DATA_DIR`` — ``master.json`` (``{"url", "host", "port"}``) and ``admin.token``,
   as written by ``titan up``;
4. ``./.titan/`` — the same files, so a project directory where ``titan up`` runs just works
   (the nearest one holding ``master.json``, from the current directory up, as git finds
   ``.git``: a subfolder of the project works too);
5. the user config ``~/.titan/config.json`` (directory overridable with ``TITAN_CONFIG_DIR``):
   ``{"default": url, "masters": {url: {"token": ...}}}``; ``default`` may also be a list of
   URLs (or one string of comma-separated URLs);
6. ``http://127.0.0.1:9090``.

Several URLs name one Titan: a leading master and its standbys (one PostgreSQL database).
The :class:`Endpoint` keeps them all, in order, in ``urls``; ``url`` is the one in use, the
first until :mod:`titan.client.masters` finds the leader elsewhere. ``TITAN_MASTER_URLS`` comes
before ``TITAN_URL`` because a job inherits the worker's environment: a ``TITAN_URL`` the
worker was started with names one master, while the list the worker sets names them all.

The token is the explicit one (an empty one is an error, not "none given"), else
``TITAN_TOKEN`` (empty counts as unset), else the one stored beside the address
(``admin.token``), else the one the user config records for one of the master URLs (in their
order), else the ``admin.token`` of a data directory whose ``master.json`` names one of them.
Loopback spellings (``localhost``, ``127.0.0.1``, ``::1``) count as the same host when
looking a token up. What a data dir holds, and which one is found, is
:mod:`titan.client.data_dirs`'s.
"""

from __future__ import annotations

import os
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from titan.client.data_dirs import (
    MASTER_FILE,
    TOKEN_FILE,
    data_dirs,
    no_master_in,
    read_json,
    read_token,
    recorded_master,
)
from titan.client.urls import (
    DEFAULT_PORT,
    make_url,
    master_key,
    parse_port,
    parse_url,
    parse_urls,
    redacted,
)
from titan.errors import ConfigError
from titan.permissions import warn_if_exposed

DEFAULT_HOST = "127.0.0.1"
CONFIG_FILE = "config.json"
#: Every master of one Titan (the leader and its standbys), comma-separated.
MASTERS_ENV = "TITAN_MASTER_URLS"

@dataclass(frozen=True)
class Endpoint:
    """Where a master is and how to authenticate to it."""

    url: str
    host: str
    port: int
    #: Never in its repr: an endpoint printed or logged (``client.endpoint``) showed it.
    token: str | None = field(default=None, repr=False)
    #: Where the address came from (for error messages): "arguments", "TITAN_URL", a path...
    source: str = "default"
    #: Every configured master, in order: the leader and its standbys. ``url`` is always one
    #: of them (put first when a caller leaves it out); one master is ``(url,)``.
    urls: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        urls = tuple(self.urls)
        if self.url not in urls:
            urls = (self.url, *urls)
        object.__setattr__(self, "urls", urls)

    @property
    def api_url(self) -> str:
        """The base URL of the v1 API."""
        return self.url + "/api/v1"

    def at(self, url: str) -> Endpoint:
        """The same endpoint with ``url`` (one of :attr:`urls`) as the master in use."""
        normalized, host, port = parse_url(url)
        return replace(self, url=normalized, host=host, port=port)


# --------------------------------------------------------------------------- the user config


def config_dir() -> Path:
    """The user's Titan config directory: ``$TITAN_CONFIG_DIR`` or ``~/.titan``."""
    override = os.environ.get("TITAN_CONFIG_DIR")
    if override:
        return Path(override).expanduser()
    return Path.home() / ".titan"


def config_path() -> Path:
    """The user config file, ``<config_dir>/config.json``."""
    return config_dir() / CONFIG_FILE


def load_user_config() -> dict[str, Any]:
    """The user config as a dict (empty when there is none); a corrupt file is a ConfigError."""
    path = config_path()
    data = read_json(path)
    if data is None:
        return {}
    warn_if_exposed(path)  # the README says 0600: one that is not is read, said once
    if not isinstance(data, dict) or not isinstance(data.get("masters", {}), dict):
        raise ConfigError(
            f"{path} is not a Titan config (expected {{\"default\": url, \"masters\": {{...}}}});"
            " fix or delete the file"
        )
    return data


def token_for(url: str | Sequence[str]) -> str | None:
    """The token recorded for the master at ``url`` (user config, then data directories);
    given several URLs (one Titan's masters), the first one recorded for any of them."""
    keys = [master_key(u) for u in ([url] if isinstance(url, str) else url)]
    masters = load_user_config().get("masters", {})
    for key in keys:
        for recorded_url, entry in masters.items():
            if master_key(recorded_url) == key and isinstance(entry, dict) \
                    and entry.get("token"):
                return str(entry["token"])
    for directory in data_dirs():
        found = recorded_master(directory)
        if not found:
            continue
        # The dashboard's port serves the same API: a client pointed there is this master's.
        dashboard = (read_json(directory / MASTER_FILE) or {}).get("dashboard_port")
        names = {master_key(found[0])}
        if isinstance(dashboard, int):
            names.add(master_key(make_url(found[1], dashboard)))
        if names.intersection(keys):
            token = read_token(directory / TOKEN_FILE)
            if token:
                return token
    return None


# --------------------------------------------------------------------------- resolve


def _address(
    host: str | None, port: int | str | None, urls: str | Sequence[str] | None = None,
) -> tuple[tuple[str, ...], str | None, str]:
    """``(urls, token_from_same_source, source)`` from the first source naming a master."""
    # An empty string or list is no URL given (discovery decides); " , " is a mistake.
    if urls is not None and (urls.strip() if isinstance(urls, str) else len(urls)):
        if host is not None:
            raise ConfigError("name the master either by host/port or by URLs, not both")
        found = parse_urls(urls, "the master URLs given")
        if port is not None:
            if len(found) > 1:
                raise ConfigError("a port cannot apply to several master URLs; give each "
                                  "URL its port")
            return (_withparse_port(found[0], port),), None, "arguments"
        return found, None, "arguments"
    if host is not None or port is not None:
        return (_host_url(host, port, "the port argument"),), None, "arguments"

    env_urls = os.environ.get(MASTERS_ENV)
    if env_urls:
        return parse_urls(env_urls, MASTERS_ENV), None, MASTERS_ENV
    # Blank counts as unset, as for TITAN_TOKEN (a shell's `TITAN_URL=" "`, an unfilled
    # template line).
    env_url = os.environ.get("TITAN_URL", "").strip()
    if env_url:
        return (parse_url(env_url)[0],), None, "TITAN_URL"
    env_host = os.environ.get("TITAN_HOST", "").strip() or None
    env_port = os.environ.get("TITAN_PORT", "").strip() or None
    if env_host or env_port:
        try:
            url = _host_url(env_host, env_port, "TITAN_PORT")
        except ConfigError as exc:
            if env_host is None or "TITAN_PORT" in str(exc):
                raise
            raise ConfigError(f"{exc} (from TITAN_HOST={redacted(env_host)!r})") from None
        return (url,), None, "TITAN_HOST/TITAN_PORT"

    for first, directory in zip((True, False), data_dirs(), strict=False):
        found_dir = recorded_master(directory)
        if found_dir:
            return (found_dir[0],), read_token(directory / TOKEN_FILE), str(directory)
        if first and os.environ.get("TITAN_DATA_DIR"):
            # Named, and nothing there: a typo must not send the work to another master
            # (the next place looked in, the user config's default).
            raise ConfigError(no_master_in(directory))

    default = load_user_config().get("default")
    if default:
        path = str(config_path())
        if not isinstance(default, str) and not (
                isinstance(default, list) and all(isinstance(u, str) for u in default)):
            raise ConfigError(f"{path}: \"default\" must be a master URL or a list of them")
        return parse_urls(default, f"{path} \"default\""), None, path

    return (make_url(DEFAULT_HOST, DEFAULT_PORT),), None, "default"


def _host_url(host: str | None, port: int | str | None, port_from: str) -> str:
    """The master's URL from a host and a port, as ``--host``/``--port`` and ``TITAN_HOST``/
    ``TITAN_PORT`` give them: the host may be a URL, or HOST:PORT (`10.0.0.5:9091`,
    "[::1]:9091"), not only a plain host name (it was bracketed as an IPv6 literal and
    refused; TITAN_HOST=master:9090 still was, though documented as --host is); the port,
    when given, wins over the one the host names."""
    if host is not None and ("://" in host or host.startswith("[") or "@" in host or (
            host.count(":") == 1 and host.rsplit(":", 1)[1].isdigit())):
        url = parse_url(host)[0]
        return url if port is None else _withparse_port(url, port, port_from)
    p = parse_port(port, port_from) if port is not None else DEFAULT_PORT
    return parse_url(make_url(host or DEFAULT_HOST, p))[0]


def _withparse_port(url: str, port: int | str, port_from: str = "the port argument") -> str:
    """``url`` with its port replaced by the port argument."""
    scheme = url.split("://", 1)[0]
    return make_url(parse_url(url)[1], parse_port(port, port_from), scheme)


def resolve(
    host: str | None = None, port: int | str | None = None, token: str | None = None,
    *, urls: str | Sequence[str] | None = None,
) -> Endpoint:
    """Find the master to talk to and its token (see the module docstring for the order).

    ``urls`` names one Titan's masters (the leader and its standbys) explicitly: a list, or
    a string of comma-separated URLs; it excludes ``host``, and ``port`` only applies to a
    single URL.
    """
    found, source_token, source = _address(host, port, urls)
    url, h, p = parse_url(found[0])
    if token is not None:
        # Given, but empty ("" or blank): most likely a variable that was not set
        # (`--token "$TOKEN"`). Falling through to the discovered token, the data dir's
        # admin token, would run the call with rights nobody asked for.
        key = _clean_token(token)
        if key is None:
            raise ConfigError("the token given (token= or --token) is empty: pass a token, "
                              "or leave it out to use TITAN_TOKEN or the one discovered")
    else:
        # An empty TITAN_TOKEN counts as unset, as an empty TITAN_URL does (a shell's
        # `TITAN_TOKEN= cmd` or a template that left it blank).
        key = _clean_token(os.environ.get("TITAN_TOKEN")) \
            or _clean_token(source_token or token_for(found))
    return Endpoint(url=url, host=h, port=p, token=key, source=source, urls=found)


#: The control characters a token is most likely to pick up, by the names people know.
_CONTROL_NAMES = {0: "NUL", 9: "tab", 10: "line feed", 11: "vertical tab", 12: "form feed",
                  13: "carriage return", 27: "escape", 127: "delete"}


def _described(c: str) -> str:
    """A character as a token's error names it: "a space (U+0020)", "U+0009 (tab)",
    "U+200B (ZERO WIDTH SPACE)"."""
    if c == " ":
        return "a space (U+0020)"
    code = f"U+{ord(c):04X}"
    if ord(c) < 32 or ord(c) == 127:
        return f"{code} ({_CONTROL_NAMES.get(ord(c), 'a control character')})"
    name = unicodedata.name(c, "")
    return f"{code} ({name})" if name else code


def _clean_token(token: str | None) -> str | None:
    """The token without the line end a file or a secret mount leaves (Titan's own
    ``admin.token`` ends in one); one that still holds a space, a control character or
    anything outside ASCII is no token, said so here rather than as a refused header ("cannot
    reach the master") or httpx's bare ``UnicodeEncodeError``: HTTP headers are ASCII, and a
    smart quote or a zero-width space pasted along with a token is the usual way one gets in.
    The message names the character and where it sits, never the token."""
    if token is None:
        return None
    if not isinstance(token, str):
        raise ConfigError(f"a token is text, got {type(token).__name__}")
    token = token.strip()
    for position, c in enumerate(token, 1):
        if c.isspace() or not 32 < ord(c) < 127:
            pasted = " (a smart quote, a zero-width space)" if ord(c) > 126 else ""
            raise ConfigError(
                f"the token holds {_described(c)} at character {position} of {len(token)}, "
                "which no Titan token has (they are printable ASCII, without spaces): it was "
                f"likely pasted along with the token{pasted}; give it as written by "
                "`titan token create` or the data dir's admin.token")
    return token or None
