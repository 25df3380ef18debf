"""What a master's reply means, for the client: a Titan error body
(``{"error": {"code", "message", "details"}}``) becomes the matching :mod:`titan.errors` class;
anything else (another web server, a proxy's error page, a master that failed outright) is
said as what it is, in one line, never a page of HTML."""

from __future__ import annotations

import re
from typing import Any

import httpx

from titan import errors
from titan.client.config import Endpoint
from titan.client.http_wire import Reply


def error_body(response: httpx.Response | Reply) -> Any:
    """A reply's body as JSON when it is, else its text (for error messages)."""
    try:
        return response.json()
    except ValueError:
        return response.text


def code_of(body: Any) -> str | None:
    err = body.get("error") if isinstance(body, dict) else None
    return str(err.get("code")) if isinstance(err, dict) else None


#: What a master's own passing refusals say (answered again later, or by the next master).
PASSING = {"database_unavailable": "the master's database is unavailable for now",
            "blob_store_unavailable": "the master's blob store is unavailable for now",
            "master_stopping": "the master is stopping"}


def final(response: httpx.Response | Reply) -> bool:
    """A 503 that asking again at once cannot change, and says so in the master's words: the
    database cancelled the statement for a timeout its DBA set, after the master's own tries
    (its message names the setting). Retried as a proxy's 503, it was "HTTP 503 from a proxy"
    a restart grace later."""
    return response.status_code == errors.StatementCancelled.status \
        and code_of(error_body(response)) == errors.StatementCancelled.code


def passing(body: Any) -> str | None:
    """What a passing refusal (:data:`PASSING`) says, for the error raised once the tries are
    spent; None for any other answer. The blob store's adds the master's own words: which
    store, and why (unreachable, throttling, credentials refused)."""
    code = code_of(body)
    said = PASSING.get(code or "")
    if said is None or code != "blob_store_unavailable":
        return said
    message = str(body["error"].get("message") or "")
    return f"{said}: {message}" if message else said


def url_of(response: httpx.Response | Reply) -> str:
    return response.url if isinstance(response, Reply) else str(response.request.url)


def check(response: httpx.Response | Reply, endpoint: Endpoint) -> None:
    """Return if ``response`` is a success; else raise what it says (module docstring)."""
    status = response.status_code
    if status < 300 or status == 304:  # 304: the copy the request named is current
        return
    if status < 400:  # the API never redirects: whatever did, the call did not happen
        raise errors.APIError(
            f"HTTP {status} redirect to {response.headers.get('location', '?')!r} from "
            f"{url_of(response)}: not the Titan API's answer (a proxy?)",
            status=status, code="unexpected_redirect")
    body = error_body(response)
    if code_of(body) is None and status == 400 and "Invalid HTTP request" in str(body):
        # The master's HTTP server could not parse the request (a line past its limit).
        raise errors.ValidationFailed(
            f"the master could not read the request ({str(body).strip()[:80]}): a "
            "reference, key or header too long?", status=status)
    if code_of(body) is None:
        # Every error of Titan's is {"error": {"code", "message"}}: this came from
        # something else on that address (another web server, a proxy's error page), or
        # from a master that failed outright. One line of it, not a page of HTML.
        kind = (response.headers.get("content-type") or "no content type").split(";")[0]
        text = str(body)
        title = re.search(r"<title>\s*(.*?)\s*</title>", text, re.I | re.S)
        first = title.group(1) if title else next(
            (line.strip() for line in text.splitlines() if line.strip()), "")
        said = f"{kind}{': ' + first[:80] if first else ''}"
        if status >= 500:
            raise errors.APIError(
                f"HTTP {status} from {url_of(response)} ({said}): the Titan master "
                "failed (a bug in the master), or something else answers there",
                status=status, code="internal_error")
        raise errors.for_status(status)(
            f"HTTP {status} from {url_of(response)} is not a Titan master's answer "
            f"({said}): check the host and port", status=status, code="not_titan")
    if status == 503 and code_of(body) in PASSING \
            or code_of(body) in (errors.BlobStoreUnwritable.code, errors.DatabaseCorrupt.code,
                                 errors.StatementCancelled.code):
        # Not a bug: the database or the blob store is away for now, or the master is
        # stopping, or its blob store's disk is full or read-only, or its database is damaged,
        # or cancelled the statement for a timeout its DBA set (the message says where, and
        # what to do).
        raise errors.from_response(status, body)
    if status >= 500:
        # The master's words, not its body's dict (`{'error': {'code': ...}}` was printed).
        failed = errors.from_response(status, body)
        raise errors.APIError(
            f"the Titan master failed with HTTP {status} (a bug in the master): "
            f"{failed.message[:500]}",
            status=status,
            code="internal_error",
            details=failed.details,
        )
    exc = errors.from_response(status, body)
    if isinstance(exc, errors.Unauthorized) and not endpoint.token:
        refused = exc.message
        exc = errors.Unauthorized(
            f"{refused} — no token was found for {endpoint.url}: pass token=, "
            "set TITAN_TOKEN, or run `titan up` on this machine (it records one)",
            details=exc.details,
        )
        exc.no_token_for, exc.refused = endpoint.url, refused
    raise exc
