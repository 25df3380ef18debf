"""A recorded exception raised again in a replay: of the class the agent's code raised, with
the data it carried, so its ``except`` clauses catch it and read it as they did in the
original run.

An action's error is recorded as its type's name and its message (the ``error`` of the action
schema, which the ledger hashes). That alone could not tell ``urllib.error.HTTPError`` from
``httpx.HTTPError``, nor give back ``e.code`` or a ``retry_after``: so a failed call's outputs,
which it has none of otherwise, hold what rebuilds it — ``{"$error": {"module", "class",
"args", "attrs"}}`` (:func:`payload`): its module and qualified name, its arguments and its
public attributes as far as JSON holds them (headers as their text; bytes, a failed
command's ``stderr`` or an HTTP error's body, as tool results hold them, ``{"$bytes": ...}``).
Runs recorded before have no such outputs: their exceptions are found by name, as they were.
"""

from __future__ import annotations

import base64
import contextlib
import os
import sys
from collections.abc import Mapping
from typing import Any, Protocol

from titan import errors
from titan.trace.canonical import BYTES, revived

#: The key of a failed call's outputs that holds what rebuilds its exception.
MARKER = "$error"
_MAX_ATTRS = 50
#: The longest text or bytes an attribute or argument is kept with (the error message's own
#: bound, titan.trace.emit): a failed command's whole stderr, an error page's body.
_MAX_DATA = 100_000
_SIMPLE = (str, int, float, bool, type(None))


class _Failed(Protocol):
    """What of a recorded call this needs (a :class:`titan.trace.recorded.Recorded`)."""

    @property
    def error_type(self) -> str | None: ...
    @property
    def error_message(self) -> str | None: ...
    @property
    def outputs(self) -> str | None: ...
    @property
    def duration_ns(self) -> int | None: ...


def payload(error: BaseException) -> dict[str, Any]:
    """What a failed call's outputs record of its exception (see the module's text). Never
    raises: what cannot be read is left out."""
    cls = type(error)
    saved: dict[str, Any] = {"module": getattr(cls, "__module__", None),
                             "class": getattr(cls, "__qualname__", None)}
    with contextlib.suppress(Exception):
        # All or none: a constructor takes its arguments in order (CalledProcessError's
        # returncode, then its command, a list).
        args = [_kept(a) for a in error.args]
        if args and all(a is not _SKIP for a in args):
            saved["args"] = args
    attrs: dict[str, Any] = {}
    with contextlib.suppress(Exception):
        for name, value in list(vars(error).items())[:_MAX_ATTRS * 4]:
            if name.startswith("_") or len(attrs) >= _MAX_ATTRS:
                continue
            kept = _kept(value)
            if kept is not _SKIP:
                attrs[name] = kept
    if isinstance(error, OSError):
        # Not in vars() (C slots), nor in args: FileNotFoundError(2, "No such file or
        # directory") came back without its filename, and str(e) said less than it had.
        for name in _OS_ERROR_FIELDS:
            with contextlib.suppress(Exception):
                value = getattr(error, name)
                if name.startswith("filename") and value is not None \
                        and not isinstance(value, str | bytes):
                    value = os.fspath(value)  # a Path given to open()
                kept = _kept(value)
                if value is not None and kept is not _SKIP and name not in attrs:
                    attrs[name] = kept
    if attrs:
        saved["attrs"] = attrs
    return {MARKER: saved}


#: What an OSError carries outside its arguments and its __dict__.
_OS_ERROR_FIELDS = ("errno", "strerror", "filename", "filename2")


_SKIP = object()


def _simple(value: Any) -> bool:
    return isinstance(value, _SIMPLE) and not (isinstance(value, str) and len(value) > _MAX_DATA)


def _plain(value: Any) -> Any:
    """A plain value as JSON holds it (bytes under the ``$bytes`` marker), else _SKIP."""
    if _simple(value):
        return value
    if isinstance(value, bytes | bytearray) and len(value) <= _MAX_DATA:
        # Dropped, a replay's ``e.stderr.decode()`` raised AttributeError in the agent's
        # own except clause (a QA pass): kept as a tool's bytes result is.
        return {BYTES: base64.b64encode(bytes(value)).decode()}
    return _SKIP


def _kept(value: Any) -> Any:
    """An attribute or argument as JSON holds it: plain values and bytes as they are, a list
    of them (a command), headers (an email message, a mapping of text) as text or a dict;
    anything else (a file, a response) is skipped."""
    plain = _plain(value)
    if plain is not _SKIP:
        return plain
    if isinstance(value, list | tuple) and len(value) <= 100:
        items = [_plain(v) for v in value]
        return _SKIP if any(v is _SKIP for v in items) else items
    email = sys.modules.get("email.message")
    if email is not None and isinstance(value, email.Message):
        text = str(value)
        return text if len(text) <= _MAX_DATA else _SKIP
    if isinstance(value, Mapping) and len(value) <= 100 and all(
            isinstance(k, str) and _simple(v) for k, v in value.items()):
        return dict(value)
    return _SKIP


def replayed_error(recorded: _Failed) -> BaseException:
    """The recorded exception, raised again: of the same class — the one its module and
    qualified name give, else the one of its name among Titan's, Python's and then the loaded
    modules' (the script's own ``QuotaError``, ``json.JSONDecodeError``) — with its arguments
    and attributes, so the agent's ``except`` clauses catch it as they did; else
    :class:`~titan.errors.ReplayedError` naming the original type."""
    message = recorded.error_message or ""
    saved = _saved(recorded.outputs)
    cls = _qualified(saved.get("module"), saved.get("class")) or _exception_class(
        recorded.error_type or "", saved.get("module"))
    if cls is not None:
        return _rebuilt(cls, message, saved)
    return errors.ReplayedError(f"{recorded.error_type}: {message}",
                                error_type=recorded.error_type)


def _saved(outputs: str | None) -> dict[str, Any]:
    if not outputs or not outputs.startswith('{"$error":'):
        return {}
    import json

    with contextlib.suppress(ValueError):
        found = json.loads(outputs).get(MARKER)
        if isinstance(found, dict):
            # Its bytes as bytes again (an attribute, an argument): what the code reads.
            return {k: revived(v) if k in ("args", "attrs") else v for k, v in found.items()}
    return {}


def _qualified(module: Any, qualname: Any) -> type[BaseException] | None:
    """The class at ``module``.``qualname`` if that module is loaded (never imported here: the
    agent's code imports what it catches)."""
    if not isinstance(module, str) or not isinstance(qualname, str) or "<" in qualname:
        return None
    found: Any = sys.modules.get(module)
    for part in qualname.split("."):
        found = getattr(found, part, None)
    return found if isinstance(found, type) and issubclass(found, BaseException) else None


def _rebuilt(cls: type[BaseException], message: str, saved: dict[str, Any]) -> BaseException:
    """An instance of ``cls`` as recorded: made as its constructor takes the recorded
    arguments (else the message), or without it when it takes neither, and given the recorded
    attributes that it does not have as they were."""
    found, args = saved.get("attrs"), saved.get("args")
    attrs: dict[str, Any] = found if isinstance(found, dict) else {}
    args = args if isinstance(args, list) else None
    exc = _http_error(cls, attrs)
    for tried in ([args] if args is not None else []) + [[message]]:
        if exc is not None:
            break
        with contextlib.suppress(Exception):
            exc = cls(*tried)
    if exc is None:  # a constructor wanting other arguments: built without calling it
        exc = cls.__new__(cls)
        exc.args = tuple(args) if args is not None else (message,)
    for name, value in attrs.items():
        # Those it has already (headers made a message again) stay; those its constructor
        # set otherwise (RateLimited("rate limited").retry_after) take the recorded value.
        with contextlib.suppress(Exception):  # a read-only property, an odd __eq__
            now = getattr(exc, name, _SKIP)
            if now is _SKIP or now != value and (
                    _simple(now) or isinstance(now, list | dict | bytes)):
                setattr(exc, name, value)
    return exc


def _http_error(cls: type[BaseException], attrs: dict[str, Any]) -> BaseException | None:
    """``urllib.error.HTTPError`` (or a subclass) as its constructor makes one: it is a
    response too, whose file must exist, and its headers a message again (``e.headers.get``)."""
    urllib_error = sys.modules.get("urllib.error")
    if urllib_error is None or not issubclass(cls, urllib_error.HTTPError):
        return None
    import http.client
    import io

    hdrs = attrs.get("hdrs")
    headers = http.client.parse_headers(io.BytesIO(hdrs.encode("latin-1", "replace"))) \
        if isinstance(hdrs, str) else None
    exc = cls.__new__(cls)
    urllib_error.HTTPError.__init__(exc, attrs.get("url") or attrs.get("filename"),
                                    attrs.get("code"), attrs.get("msg"), headers, None)
    return exc


def _exception_class(name: str, module: Any = None) -> type[BaseException] | None:
    """The exception class of that name: Titan's, a builtin, the script's (``__main__``) or a
    loaded module's — the one of the recorded module when several define it."""
    import builtins

    def fits(x: Any) -> bool:
        return isinstance(x, type) and issubclass(x, Exception)

    if not name.isidentifier():
        return None
    for home in (errors, builtins, sys.modules.get("__main__")):
        found = getattr(home, name, None)
        if fits(found):
            return found
    candidates = {found for m in list(sys.modules.values())
                  if fits(found := getattr(m, name, None))}
    if len(candidates) > 1 and isinstance(module, str):
        candidates = {c for c in candidates if c.__module__ == module}
    return candidates.pop() if len(candidates) == 1 else None


async def cancelled_again(recorded: _Failed) -> None:
    """A replayed async call that was cut off while awaited (cancelled: ``asyncio.wait_for``
    timed out, a task group failed): pending until its caller cuts it off again, as the
    recorded call was, so the caller sees what it saw (a ``TimeoutError`` from its
    ``wait_for``, not the recorded ``CancelledError`` raised at once); if nothing does
    within twice the recorded call's time and a second, it fails as recorded."""
    import asyncio

    seconds = (recorded.duration_ns or 0) / 1e9
    await asyncio.sleep(2 * seconds + 1.0)
    raise replayed_error(recorded)
