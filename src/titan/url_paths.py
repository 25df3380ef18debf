"""Names and references as URL path segments: the one way the SDK, the CLI, the dashboard and
the trace recorder put a job, a DAG, a run, a store key or a file into a path (escaped, with
what no route could find refused before anything is sent)."""

from __future__ import annotations

import operator
from typing import Any
from urllib.parse import quote

from titan.errors import NotFound, ValidationFailed


def quote_ref(ref: str | int) -> str:
    """A reference or key as one path segment (``/`` and ``#`` are escaped, and a segment of
    dots, which URL normalisation would remove: the key ``.`` went to another route)."""
    if ref == "":  # the path would name the collection (a redirect), not one of it
        raise ValidationFailed("an empty reference names nothing: give an id or a name",
                               details={"field": "ref"})
    if "\x00" in str(ref):  # the master refuses any URL with one: said here, before sending
        raise ValidationFailed(f"{ref!r} holds a NUL character (U+0000), which no name, id, "
                               "key or reference may hold", details={"field": "ref",
                                                                     "reason": "nul"})
    try:
        quoted = quote(str(ref), safe="")
    except UnicodeEncodeError:  # lone surrogates: bytes that were not UTF-8, read as text
        raise ValidationFailed(
            f"{ref!r} is not UTF-8 text: a name or key holds bytes that were not UTF-8",
            details={"field": "ref", "reason": "not_utf8"}) from None
    return quoted.replace(".", "%2E") if quoted in (".", "..") else quoted


def quote_segment(ref: str | int, missing: str, **details: Any) -> str:
    """``ref`` as the one path segment of a route that takes a name without '/' (a run, a
    schedule, a token, a task), or NotFound(``missing``), worded as the master words it
    (``no agent run 'x'``). Escaped or not, a '/' splits the segment (the server decodes
    ``%2F`` before routing, as every ASGI server does), so ``ü/../x`` reached another route or
    none and was answered a bare ``Not Found``; no such name can exist, so none is asked for.
    Names that may hold a '/' (store keys, files, jobs and DAGs) go to routes that take it,
    with :func:`quote_ref`."""
    if isinstance(ref, str) and "/" in ref:
        raise NotFound(missing, details=details)
    return quote_ref(ref)


def quote_run(run_id: str) -> str:
    """An agent run's id as one path segment (:func:`quote_segment`)."""
    return quote_segment(run_id, f"no agent run {run_id!r}", id=run_id)


def row_ref(obj: Any) -> Any:
    """What the SDK handed back or was handed, as the reference it stands for: a DAG's
    object (``submit_dag``'s answer) its ``DAG-name#run``, a job's its ``name#run/job``, a
    ``TitanJob`` its ``job_id`` (the newest job of that name); anything else as it is.
    ``wait(client.submit_dag(...))`` and ``wait(job)`` were refused as no reference."""
    if isinstance(obj, dict):
        ref = obj.get("ref")
        if not isinstance(ref, str):
            return obj
        return f"DAG-{ref}" if "job_count" in obj and "/" not in ref else ref
    job_id = getattr(obj, "job_id", None)
    if isinstance(job_id, str) and not isinstance(obj, str | int):
        return job_id
    return obj


def quote_row_ref(ref: str | int) -> str:
    """A job or DAG reference as one path segment, an int being the numeric id alone
    (``#17``, a form no name takes): the text ``"17"`` may also be a job or DAG named so,
    which the master refuses as ambiguous when both exist. An object the SDK returned, or a
    ``TitanJob``, is read as its reference (:func:`row_ref`)."""
    ref = row_ref(ref)
    if isinstance(ref, str):
        return quote_ref(ref)
    if not isinstance(ref, bool) and hasattr(type(ref), "__index__"):  # numpy's ids too
        return quote_ref(f"#{operator.index(ref)}")
    # Sent as its text, get_job(None) read a job named "None".
    raise ValidationFailed(f"a job or DAG reference is a name or a reference such as "
                           f"'nightly#3/train' (a str), a numeric id (an int), or the job "
                           f"or DAG object the client returned, got "
                           f"{'None' if ref is None else type(ref).__name__}",
                           details={"field": "ref"})
