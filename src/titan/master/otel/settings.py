"""The OTLP settings (``TITAN_OTLP_*``, docs/configuration.md): where spans go, and which.

Its own light module: the master's settings check it before anything starts, without loading
protobuf or an HTTP client.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit, urlunsplit

from titan.errors import ConfigError
from titan.master.otel.ids import is_imported_run
from titan.storage.base import Row

MODES = ("all", "opt-in")
#: The tag (in a run's tags list, or a key of its tags object) that opts a run in.
OPT_IN_TAG = "otlp"


@dataclass(frozen=True)
class ExportSettings:
    """Where spans go and which runs (``TITAN_OTLP_*``, docs/configuration.md)."""

    url: str
    mode: str = "all"
    content: bool = True
    headers: dict[str, str] = field(default_factory=dict)
    #: Whether runs imported over OTLP (``POST /v1/traces``) go out too (TITAN_OTLP_REEXPORT).
    #: Off: their spans are the agent's, which sent them to Titan and often to the collector
    #: too (duplicated there); two Titans pointed at each other sent each other's runs back.
    reexport: bool = False

    @classmethod
    def parse(cls, endpoint: str | None, mode: str | None, headers: str | None,
              content: str | None, reexport: str | None = None) -> ExportSettings | None:
        """None when no endpoint is set; ConfigError for a setting that cannot work. The
        other settings are checked with or without an endpoint: a typo in one was found only
        on the day export was turned on."""
        mode = (mode or "all").strip().lower()
        if mode not in MODES:
            raise ConfigError(f"TITAN_OTLP_EXPORT must be one of {', '.join(MODES)}, "
                              f"got {mode!r}")
        flag = _flag(content, "on", "TITAN_OTLP_CONTENT")
        imported = _flag(reexport, "off", "TITAN_OTLP_REEXPORT")
        pairs: dict[str, str] = {}
        for item in filter(None, (p.strip() for p in (headers or "").split(","))):
            key, eq, value = item.partition("=")
            if not eq or not key.strip():
                raise ConfigError("TITAN_OTLP_HEADERS must be key=value pairs separated by "
                                  f"commas (values URL-encoded), got {item!r}")
            name, text = key.strip(), unquote(value.strip())
            # What no HTTP request can carry is refused now, not on every export after.
            if not _TOKEN.fullmatch(name):
                raise ConfigError(f"TITAN_OTLP_HEADERS: {name!r} is not a header name "
                                  "(letters, digits and !#$%&'*+-.^_`|~ only)")
            if not text.isascii() or any(ord(c) < 32 and c != "\t" or ord(c) == 127
                                         for c in text):
                raise ConfigError(f"TITAN_OTLP_HEADERS: the value of {name!r} holds a line "
                                  "break, a control character or a character beyond ASCII, "
                                  "which the exporter's requests cannot carry")
            pairs[name] = text
        if not endpoint:
            return None
        try:
            parts = urlsplit(endpoint.strip())
            ok = parts.scheme in ("http", "https") and bool(parts.hostname) and (
                parts.port is None or parts.port > 0)
        except ValueError:  # a bracketed host that is no IPv6 address, a port out of range
            ok = False
        if not ok:
            raise ConfigError("TITAN_OTLP_ENDPOINT must be an http(s) URL with a host, "
                              f"got {endpoint!r}")
        path = parts.path.rstrip("/")
        if not path.endswith("/v1/traces"):  # a base URL, as OTEL_EXPORTER_OTLP_ENDPOINT is
            path += "/v1/traces"
        # The query stays after the path (a collector's ?api_key=); a fragment is never sent.
        url = urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))
        return cls(url, mode, flag, pairs, imported)

    @property
    def shown_url(self) -> str:
        """The URL as the API and the log show it: without its userinfo and its query, where
        credentials may be (docs/opentelemetry.md says to put them in TITAN_OTLP_HEADERS)."""
        parts = urlsplit(self.url)
        return urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, "", ""))

    def wants(self, run: Row) -> bool:
        if not self.reexport and is_imported_run(str(run.get("id") or "")):
            return False
        if self.mode == "all":
            return True
        tags = run.get("tags")
        return (OPT_IN_TAG in tags if isinstance(tags, list)
                else isinstance(tags, dict) and bool(tags.get(OPT_IN_TAG)))


def _flag(raw: str | None, default: str, name: str) -> bool:
    value = (raw or default).strip().lower()
    if value not in ("on", "off", "1", "0", "true", "false"):
        raise ConfigError(f"{name} must be on or off, got {raw!r}")
    return value in ("on", "1", "true")


#: An HTTP header name (RFC 9110's token).
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


def hold_seconds(raw: str | None) -> float:
    """``TITAN_OTLP_HOLD``: how long a received span waits for its parent (default 120 s)."""
    if raw in (None, ""):
        return 120.0
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 86_400:
        raise ConfigError(f"TITAN_OTLP_HOLD must be a number of seconds from 0 to 86400, "
                          f"got {raw!r}")
    return value
