"""Provider credentials kept out of what a call records: its parameters as a run stores them.

A call's parameters go to the provider whole, but the recording (a run's ``call_llm`` inputs,
readable by viewer tokens and in exports) and the hash a replay matches inputs by get them
with every credential replaced by ``"[redacted]"``: a key passed as ``api_key=``, an
``Authorization`` (or ``api-key``, ``x-api-key``, cookie) header in ``extra_headers``, the
user and password or a ``key=``/``token=`` query parameter of an ``api_base`` URL. That one was
given stays on record; its value does not, so rotating a key changes nothing a replay sees.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

REDACTED = "[redacted]"

#: Words that make a parameter, header or query name a credential (``max_tokens`` is not:
#: its word is "tokens"; ``prompt_cache_key`` is not: a key of a cache).
_SECRET_WORDS = frozenset({
    "token", "secret", "password", "passwd", "pwd", "credential", "credentials", "auth",
    "authorization", "cookie", "apikey", "signature", "sig",
})
_SECRET_NAME = re.compile(r"(?:^|[_-])(?:api|access|private|secret|subscription|account)"
                          r"[_-]?key(?:$|[_-])|^key$", re.IGNORECASE)
_HEADERS = ("extra_headers", "headers")
_BEARER = re.compile(r"^\s*(?:bearer|basic|token)\s+\S", re.IGNORECASE)


def secret_name(name: str) -> bool:
    """Whether a parameter, header or query parameter of this name carries a credential."""
    words = {w.lower() for w in re.split(r"[_\-\s.]+", name) if w}
    return bool(words & _SECRET_WORDS) or bool(_SECRET_NAME.search(name))


def _url(value: str) -> str:
    """A URL without the credentials in it (its user info, credential query parameters)."""
    if "://" not in value:
        return value
    try:
        parts = urlsplit(value)
        query = parse_qsl(parts.query, keep_blank_values=True)
    except ValueError:
        return value
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{REDACTED}@{netloc.rsplit('@', 1)[1]}"
    if any(secret_name(k) for k, _ in query):
        kept = urlencode([(k, REDACTED if secret_name(k) else v) for k, v in query],
                         safe="[]")
    else:
        kept = parts.query
    if netloc == parts.netloc and kept == parts.query:
        return value
    return urlunsplit((parts.scheme, netloc, parts.path, kept, parts.fragment))


def _headers(headers: Any) -> Any:
    if not isinstance(headers, dict):
        return headers
    return {k: REDACTED if v is not None and (secret_name(str(k)) or (
        isinstance(v, str) and _BEARER.match(v))) else v for k, v in headers.items()}


def recordable(params: dict[str, Any]) -> dict[str, Any]:
    """``params`` as a call records them: every credential replaced by ``"[redacted]"``.
    Only the parameters' own names and values are looked at (and headers' and URLs'): a
    ``json_schema`` or ``tools`` that names a ``password`` field is the caller's data."""
    out: dict[str, Any] = {}
    for name, value in params.items():
        if value is not None and secret_name(name):
            out[name] = REDACTED
        elif name in _HEADERS:
            out[name] = _headers(value)
        elif isinstance(value, str):
            out[name] = _url(value)
        else:
            out[name] = value
    return out
