"""Parameters several routes share: integers bounded to what the database can hold, and
store keys (the store's routes and artifact publishing both name one).

SQLite and PostgreSQL store integers in 64 bits; a larger one reached them as an
``OverflowError`` (a 500). Every integer parameter that becomes an id, an offset or a sequence
number uses one of these types, so FastAPI refuses it with a 400 naming the parameter.
Ids and sequence numbers past 2^31-1 (PostgreSQL's INTEGER) but within 64 bits name no row:
the routes answer as SQLite does, 404 or nothing (``ROW_MAX``).
"""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import Path, Query
from pydantic import AfterValidator
from starlette.convertors import Convertor, register_url_convertor

from titan import services
from titan.errors import Forbidden, ValidationFailed
from titan.master.api.body import INT64_MAX
from titan.master.scheduling.refs import ROW_MAX


def _past_every_row(after: int | None) -> int | None:
    """An ``after`` past every row's sequence number (:data:`ROW_MAX`) as the last one: the
    same empty answer, in the range PostgreSQL's INTEGER columns compare with."""
    return after if after is None else min(after, ROW_MAX)


Offset = Annotated[int, Query(ge=0, le=INT64_MAX, description="Rows to skip (paging)")]
After = Annotated[int, Query(ge=0, le=INT64_MAX,
                             description="Only entries after this sequence number"),
                  AfterValidator(_past_every_row)]
MaybeAfter = Annotated[int | None, Query(ge=0, le=INT64_MAX,
                                         description="Only entries after this sequence number"),
                       AfterValidator(_past_every_row)]
Attempt = Annotated[int | None, Query(ge=1, le=INT64_MAX,
                                      description="Attempt number (default: the latest)")]
DagFilter = Annotated[int | None, Query(ge=1, le=INT64_MAX, description="Only this DAG run's")]
Seq = Annotated[int, Path(ge=0, le=INT64_MAX, description="The action's sequence number")]
#: A filter of several values, given repeated (``?status=a&status=b``) or comma-separated
#: (``?status=a,b``) or both: a ``str`` parameter kept only the last of repeated ones, so a
#: scripted export silently left out what the others matched.
Choices = Annotated[list[str] | None, Query(description="Repeat it or separate with commas")]


MAX_KEY = 1024


class _AnyText(Convertor[str]):
    """A path parameter that may hold any character, line breaks included (Starlette's
    ``path`` is ``.*``, which stops at one: a store key holding a newline was a 404)."""

    regex = "[\\s\\S]*"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


#: ``{key:anytext}`` in a route: a store key, whatever it holds (check_key says what may not).
register_url_convertor("anytext", _AnyText())


#: C0, DEL and C1 control characters.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


#: The rule every refusal of a key ends with, so each says it in one sentence.
KEY_RULE = (f"keys are 1 to {MAX_KEY} characters without control characters "
            "(U+0000–U+001F, U+007F–U+009F)")


def _bad_key(key: str, problem: str) -> ValidationFailed:
    return ValidationFailed(f"store key {key[:100]!r}{'…' if len(key) > 100 else ''} "
                            f"{problem}: {KEY_RULE}", details={"field": "key", "key": key[:100]})


def check_key(key: str) -> str:
    """A key a read or a delete names: one stored before control characters were refused
    (below) is still read and deleted; only what no key can be (empty, too long, a NUL) is
    refused."""
    if not key:
        raise _bad_key(key, "is empty")
    if len(key) > MAX_KEY:
        raise _bad_key(key, f"has {len(key)} characters")
    if "\x00" in key:
        raise _bad_key(key, f"holds a control character (U+0000 at position {key.index(chr(0))})")
    return key


def check_new_key(key: str) -> str:
    """A key a write stores (a value, a set member, an artifact): no control character. A
    CR or LF in a key split the lines it was shown or logged on (a forged line in a listing,
    an export, a terminal)."""
    check_key(key)
    found = _CONTROL.search(key)
    if found is not None:
        raise _bad_key(key, f"holds a control character (U+{ord(found.group()):04X} at "
                            f"position {found.start()})")
    return key


def check_unreserved(key: str) -> str:
    """A key a write or a delete names, outside the master's own keys: a service's address
    (``services/...``) is published and withdrawn by the master alone, so no token (an
    operator's, a job's) can point a service's callers elsewhere or hide a live service."""
    if key.startswith(services.STORE_PREFIX):
        raise Forbidden(f"store key {key[:100]!r} is under {services.STORE_PREFIX!r}, where "
                        "the master publishes services' addresses: it alone writes there "
                        "(read these keys; write your own under another prefix)",
                        details={"field": "key", "key": key[:100]})
    return key
