"""Query strings: a route takes the query parameters it declares, each once unless a list.

FastAPI reads the parameters a handler names and drops the rest without a word, so
``GET /dags?state=FAILED`` (the filter is ``status``) answered every DAG, and a script that
misspelt ``limit`` got the default page. As a body's unknown field is refused (api/body.py),
so is an unknown parameter: ``400 invalid_request`` with ``details.field`` naming it and the
message the one it likely meant. A parameter given twice kept its last value
(``?limit=1&limit=2`` read 2) where a proxy or a log may read the first, as a body's key
given twice (titan/repeated_keys.py): refused too, unless the parameter is a list
(``Choices``: ``?status=a&status=b`` means both).

What a route declares is read once, from its handler's signature and its dependencies'
(FastAPI's ``Dependant``), so no route keeps a list by hand: a parameter added to a handler
is taken, one removed is refused.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.dependencies.models import Dependant
from starlette.datastructures import QueryParams

from titan.errors import ValidationFailed
from titan.master.api.deps import AUTHENTICATING, principal

Handler = Callable[[Request], Coroutine[Any, Any, Response]]


class QueryRule:
    """The query parameters one route takes, by the name a client sends (an alias such as
    master-proof's ``for`` included), and those of them that may repeat (lists)."""

    __slots__ = ("known", "lists")

    def __init__(self, known: frozenset[str], lists: frozenset[str] = frozenset()) -> None:
        self.known = known
        self.lists = lists

    @classmethod
    def of(cls, dependant: Dependant) -> QueryRule:
        known: set[str] = set()
        lists: set[str] = set()
        stack = [dependant]
        while stack:
            d = stack.pop()
            for field in d.query_params:
                known.add(field.alias)
                if _is_sequence(field.field_info.annotation):
                    lists.add(field.alias)
            stack.extend(d.dependencies)
        return cls(frozenset(known), frozenset(lists))

    def check(self, query_string: bytes, params: QueryParams) -> None:
        """Refuse (400) a parameter the route does not declare, or one that is not a list
        given more than once. ``query_string`` first: most requests have none."""
        if not query_string:
            return
        unknown = [k for k in params if k not in self.known]
        if unknown:
            raise _unknown(unknown[0], self.known)
        if len(params.multi_items()) != len(params):  # some name is given twice
            for key in params:
                times = len(params.getlist(key))
                if times > 1 and key not in self.lists:
                    raise ValidationFailed(
                        f"the query parameter {key!r} is given {times} times: give it once "
                        "(readers disagree on which one counts)", details={"field": key})


def _is_sequence(annotation: Any) -> bool:
    """Whether a parameter's type is a list (``list[str] | None`` included)."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_is_sequence(arg) for arg in typing.get_args(annotation))
    if origin is typing.Annotated:
        return _is_sequence(typing.get_args(annotation)[0])
    found = origin or annotation
    return isinstance(found, type) and issubclass(found, list | tuple | set | frozenset)


def _unknown(key: str, known: frozenset[str]) -> ValidationFailed:
    shown = key if len(key) <= 60 else key[:60] + "…"
    close = difflib.get_close_matches(key, sorted(known), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    takes = f"it takes {', '.join(sorted(known))}" if known else "it takes none"
    return ValidationFailed(f"unknown query parameter {shown!r}{hint}; {takes}",
                            details={"field": shown})


def checking(handler: Handler, dependant: Dependant) -> Handler:
    """``handler`` refusing what its route's :class:`QueryRule` does not take. A request
    without a valid credential is still ``401`` first, as with the parameter right (a
    refusal must not tell a stranger what a route takes before the credential does)."""
    rule = QueryRule.of(dependant)
    authenticates = _authenticates(dependant)

    async def checked(request: Request) -> Response:
        try:
            rule.check(request.scope.get("query_string", b""), request.query_params)
        except ValidationFailed:
            if authenticates:
                await principal(request)
            raise
        return await handler(request)

    return checked


def _authenticates(dependant: Dependant) -> bool:
    stack = [dependant]
    while stack:
        d = stack.pop()
        if d.call in AUTHENTICATING:
            return True
        stack.extend(d.dependencies)
    return False
