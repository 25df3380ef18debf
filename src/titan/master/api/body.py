"""Request bodies: the one strict JSON parser every route's body goes through.

Python's ``json`` accepts what the rest of the master cannot hold: ``NaN`` and ``Infinity``
(a run's cost became null for good), numbers that overflow to infinity (``1e999``), integers
past 64 bits (SQLite and PostgreSQL refuse them with an ``OverflowError``), lone UTF-16
surrogates (``"\\ud800"``, which no database or response can encode), and nesting deep enough
to exhaust the interpreter's stack. Each is refused here with a 400 that names the field,
once, rather than as a 500 wherever the value first hits a database or an encoder.

Cost matters on the workers' and the store's routes and on large DAGs: parsing stays in C,
and the check after it is one pass over the parsed values that looks at containers and
numbers only. orjson parses first (an action batch of 11 KB: 17 µs against json's 46 µs); it
already refuses NaN, infinities, overflowing numbers and lone surrogates, so a body it parses
needs no look at its strings. Whatever it refuses, and any body where it read a float of
2**63 or more (orjson reads an integer past 64 bits as a float, silently), goes the way of
``json.loads``, whose values and errors name the field as before.

Neither parser refuses a key written twice in one object: each keeps the last, silently, so
``{"role": "viewer", "role": "admin"}`` made an admin token while a proxy or a log reading the
first saw a viewer's. Such a body is refused, naming the key (titan/repeated_keys.py, which
MCP's messages go through too).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Coroutine
from typing import Any
from urllib.parse import parse_qs

import orjson
from fastapi import Request, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel

from titan.errors import APIError, ValidationFailed
from titan.master.api import models, query
from titan.master.api.deps import API_PREFIX, PRINCIPAL, principal
from titan.master.api.openapi import REQUESTS
from titan.master.auth import sessions
from titan.master.runs.ingest import action_label
from titan.master.scheduling.validation import unknown_field
from titan.repeated_keys import first_repeated

#: Deepest nesting of arrays and objects a body may have (the top level counts as 1).
MAX_DEPTH = 64
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
_TWO_63 = float(2**63)
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
_SURROGATE = re.compile("[\ud800-\udfff]")
_ACTION_AT = re.compile(r"actions\[(\d+)\]")
_JOB_AT = re.compile(r"jobs\[(\d+)\]")
#: How a refusal names the action or job its field is in: words, and details.
Whose = tuple[str, dict[str, Any]]


def loads(raw: bytes) -> Any:
    """Parse a request body, refusing what JSON or the master cannot hold (400, naming the
    field as a path such as ``actions[0].inputs.q``)."""
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        pass  # json's parse below says what is wrong, naming the field
    else:
        if _fine(value, False, orjson_read=True):  # nesting depth, integers past int64
            _no_duplicate_keys(raw, value)
            return value
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValidationFailed(f"the body is not valid UTF-8 JSON (byte {exc.start})",
                               details={"field": "body"}) from None
    try:
        # NaN and Infinity parse to floats here and are refused below with their path.
        value = json.loads(text)
    except RecursionError:
        raise _too_deep(None) from None
    except ValueError as exc:
        raise ValidationFailed(f"the body is not valid JSON: {exc}",
                               details={"field": "body"}) from None
    strings = _SURROGATE_ESCAPE.search(raw) is not None
    if not _fine(value, strings):
        raise _problem(value, strings)
    _no_duplicate_keys(raw, value)
    return value


def _no_duplicate_keys(raw: bytes, value: Any) -> None:
    """Refuse a body that names a key twice in one object (titan/repeated_keys.py)."""
    field = first_repeated(raw, value)
    if field is not None:
        raise _bad(field, "this key appears more than once in its object (JSON readers "
                          "disagree on which one counts: send it once)", _whose(value, field))


def _fine(value: Any, strings: bool, orjson_read: bool = False) -> bool:
    """One breadth-first pass, a level at a time so depth costs nothing to track.

    ``orjson_read``: a float of magnitude 2**63 or more may be an integer orjson read as a
    float; such a body is not fine here, and json reads it again."""
    level = [value]
    depth = 0
    while level:
        depth += 1
        below: list[Any] = []
        for x in level:
            t = type(x)
            if t is dict:
                if depth > MAX_DEPTH:
                    return False
                below.extend(x.values())
                if strings:
                    below.extend(x.keys())
            elif t is list:
                if depth > MAX_DEPTH:
                    return False
                below.extend(x)
            elif t is str:
                if strings and _SURROGATE.search(x):
                    return False
            elif t is float:
                if x - x != 0.0:  # inf - inf and nan - nan are nan
                    return False
                if orjson_read and not -_TWO_63 < x < _TWO_63:
                    return False
            elif t is int and not INT64_MIN <= x <= INT64_MAX:
                return False
        level = below
    return True


def no_body(body: Any, what: str) -> None:
    """Refuse a body on a route that takes none (``None`` or ``{}`` are fine): a field sent
    there would be ignored without a word, where every other route refuses what it does not
    know."""
    if body is not None and body != {}:
        raise ValidationFailed(f"{what} takes no body (send none, or {{}})",
                               details={"field": "body"})


def _problem(value: Any, strings: bool) -> ValidationFailed:
    """The first offending value, found again with its path (only on the way to a 400)."""
    stack: list[tuple[Any, str, int]] = [(value, "", 1)]
    while stack:
        x, path, depth = stack.pop()
        if isinstance(x, dict | list) and depth > MAX_DEPTH:
            return _too_deep(path, _whose(value, path))
        if isinstance(x, dict):
            for k, v in reversed(x.items()):
                if strings and _SURROGATE.search(k):
                    return _bad(path, "has a key with a lone UTF-16 surrogate (an unpaired "
                                      "\\ud800-\\udfff escape)", _whose(value, path))
                stack.append((v, f"{path}.{k}" if path else k, depth + 1))
        elif isinstance(x, list):
            stack.extend((v, f"{path}[{i}]", depth + 1) for i, v in reversed(list(enumerate(x))))
        elif isinstance(x, str) and strings and _SURROGATE.search(x):
            return _bad(path, "contains a lone UTF-16 surrogate (an unpaired \\ud800-\\udfff "
                              "escape); send text as valid Unicode", _whose(value, path))
        elif isinstance(x, float) and x - x != 0.0:
            return _bad(path, f"must be a finite number, got {x!r} (JSON has no NaN or "
                              "infinities; 1e999 overflows to one)", _whose(value, path))
        elif type(x) is int and not INT64_MIN <= x <= INT64_MAX:
            return _bad(path, "is an integer outside the signed 64-bit range",
                        _whose(value, path))
    return ValidationFailed("the body is not valid", details={"field": "body"})


def _whose(body: Any, path: str) -> Whose:
    """The action or job a path into a batch or a DAG is in, by name (``actions[3]`` or
    ``jobs[1]`` alone meant nothing to the person whose tool made it or whose pipeline said
    it), and the details that name it: a job's ``job_id``, which a pipeline's error turns
    into its ``file:line`` (client/pipeline.py)."""
    if not isinstance(body, dict):
        return "", {}
    found = _ACTION_AT.match(path)
    if found is not None and isinstance(body.get("actions"), list):
        index = int(found.group(1))
        return (action_label(body["actions"][index]) if index < len(body["actions"]) else "",
                {})
    found = _JOB_AT.match(path)
    if found is not None and isinstance(body.get("jobs"), list):
        index = int(found.group(1))
        job = body["jobs"][index] if index < len(body["jobs"]) else None
        job_id = job.get("job_id") if isinstance(job, dict) else None
        if isinstance(job_id, str) and not _SURROGATE.search(job_id):
            return f" (job {job_id[:200]!r})", {"job_id": job_id}
    return "", {}


def _bad(path: str, message: str, whose: Whose = ("", {})) -> ValidationFailed:
    field = path or "body"
    return ValidationFailed(f"invalid JSON body: {field}{whose[0]}: {message}",
                            details={"field": field, **whose[1]})


def _too_deep(path: str | None, whose: Whose = ("", {})) -> ValidationFailed:
    shown = path if path is None or len(path) <= 120 else path[:120] + "..."
    where = f" at {shown}{whose[0]}" if shown else ""
    return ValidationFailed(
        f"invalid JSON body: nested deeper than {MAX_DEPTH} levels of arrays and "
        f"objects{where}", details={"field": shown or "body", "max_depth": MAX_DEPTH,
                                    **whose[1]})


async def json_of(request: Request, model: type[BaseModel]) -> Any:
    """The request's body, parsed strictly, for routes that read their body by hand (an
    action batch is parsed once, off FastAPI): sent as JSON (else ``415``) and holding only
    the top-level fields of ``model`` (its schema in the description), as on every route."""
    content_type = request.headers.get("content-type")
    raw = await request.body()
    if raw:  # `text/plain` was taken: a type a browser sends cross-site without asking
        require_json(content_type)
    body = loads(raw)
    if type(body) is dict:
        check_fields(body, frozenset(model.model_fields))
    return body


def require_json(content_type: str | None) -> None:
    """415 for a body not sent as JSON (``application/json`` or any ``+json`` type)."""
    if not _is_json(content_type):
        raise APIError(f"send the body as JSON, with Content-Type: application/json "
                       f"(got {content_type or 'no Content-Type'!r})",
                       code="unsupported_media_type", status=415,
                       details={"header": "Content-Type"})


def _is_json(content_type: str | None) -> bool:
    if not content_type:
        return False
    media = content_type.partition(";")[0].strip().lower()
    return media == "application/json" or (media.startswith("application/")
                                           and media.endswith("+json"))


#: Request models whose handlers refuse unknown fields themselves, with their own code and the
#: path of a nested one (``invalid_dag``, ``jobs[2].parent``).
_OWN_CHECK: frozenset[type[BaseModel]] = frozenset({models.DagSubmit, models.ScheduleCreate})
#: Methods whose routes take no body unless they declare one.
_WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def _fields_of(path: str, methods: set[str]) -> frozenset[str] | None:
    """The top-level fields the route's body may have (its request model in the description),
    or None where its handler checks them itself (or its model takes any)."""
    for method in methods:
        found = REQUESTS.get((method.lower(), path))
        if found is None or found[0] in _OWN_CHECK:
            continue
        model = found[0]
        if model.model_config.get("extra") == "forbid":
            return frozenset(model.model_fields)
    return None


def check_fields(body: Any, known: frozenset[str]) -> None:
    """Refuse a field the route does not know, naming it (with the likely one it meant): a
    typo was dropped without a word, ``{"commnet": ...}`` approved a gate with no comment and
    ``{"step": 10}`` incremented by 1."""
    unknown = unknown_field(body, known)
    if unknown is not None:
        raise ValidationFailed(unknown[1], details={"field": unknown[0]})


def _only_csrf(content_type: str | None, raw: bytes) -> bool:
    """Whether a body is a dashboard form's: its CSRF token as a form field and nothing else
    (a plain ``<form method=post>`` sends it so; the session check reads it)."""
    media = (content_type or "").partition(";")[0].strip().lower()
    if media != "application/x-www-form-urlencoded":
        return False
    fields = parse_qs(raw.decode("latin-1"), keep_blank_values=True)
    return set(fields) <= {"csrf_token"}


async def _session_first(request: Request) -> None:
    """A write the session cookie authenticates proves its write key before its body is read
    or judged (master/auth/sessions.py): a cookie-only ``PUT`` with a misspelt field answered
    ``400 unknown field`` — telling a cookie another port of the host was sent what the route
    takes — where ``403 csrf_failed`` was due. The principal is left for the route's own
    dependency, which then checks nothing twice."""
    if (request.method in _WRITES and PRINCIPAL not in request.scope
            and "authorization" not in request.headers and sessions.COOKIE in request.cookies):
        request.scope[PRINCIPAL] = await principal(request)


class JSONRoute(APIRoute):
    """An API route whose JSON body is parsed by :func:`loads` before FastAPI sees it.

    FastAPI reads JSON with ``request.json()``, which Starlette caches in ``request._json``;
    filling that cache first makes FastAPI's own parse a lookup, so each body is parsed once.
    Every router of the API uses this class (``APIRouter(route_class=JSONRoute)``).

    Its top-level fields are checked against the route's request model (:data:`REQUESTS`,
    models that forbid extra fields) before the handler runs; a write route that declares no
    body refuses one (``{}`` and ``null`` aside), unless its handler takes the request and
    reads the body itself (uploads, OTLP, action batches). Under /api/v1 its query string
    holds only the parameters the route declares, each once unless a list (api/query.py)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = self._body_handler()
        if self.path_format.startswith(API_PREFIX):  # (not OTLP's /v1/traces)
            return query.checking(handler, self.dependant)
        return handler

    def _body_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        methods = self.methods or set()
        if self.body_field is None:
            if (not methods & _WRITES or self.dependant.request_param_name is not None
                    or not self.include_in_schema):  # (a fallback that says what is wrong)
                return handler
            what = f"{'/'.join(sorted(methods))} {self.path_format}"

            async def refuse_a_body(request: Request) -> Response:
                await _session_first(request)
                raw = await request.body()
                if raw.strip():
                    # ``{"force": true}`` on a DAG's cancel was taken without a word.
                    content_type = request.headers.get("content-type")
                    if _is_json(content_type):
                        no_body(loads(raw), what)
                    elif not _only_csrf(content_type, raw):
                        no_body(raw, what)
                return await handler(request)

            return refuse_a_body
        known = _fields_of(self.path_format, methods)

        async def parse_first(request: Request) -> Response:
            await _session_first(request)
            content_type = request.headers.get("content-type")
            if _is_json(content_type):
                raw = await request.body()
                if raw:
                    request._json = loads(raw)
                    if known is not None and type(request._json) is dict:
                        check_fields(request._json, known)
            elif await request.body():
                # `curl -d '{...}'` sends JSON as a form: FastAPI then said "Input should be a
                # valid dictionary" of a body that was one.
                require_json(content_type)
            return await handler(request)

        return parse_first
