"""Seed 001's artifact calls as functions: ``publish_artifact(key, filename)`` in a worker's
script and ``get_artifact(key, save_path=...)`` in the orchestrator, with no client to make
(inside a job, ``TitanClient()`` is the job's own). A client may come first, as it does for
``wait_for_signal(client, key)``, or be named (``client=``). Every argument may be given by
position or by the name the seed gives it (``key=``, ``filename=``, ``save_path=``), as the
client's methods take them. :class:`~titan.client.TitanClient` does the work
(:mod:`titan.client.files`)."""

from __future__ import annotations

import os
from typing import Any

from titan.client.client import TitanClient
from titan.errors import ValidationFailed


def publish_artifact(*args: Any, key: str | None = None,
                     filename: str | os.PathLike[str] | None = None,
                     client: Any = None) -> dict[str, Any]:
    """Seed 001's ``publish_artifact(key, filename)`` as a function of its own (a worker's
    script needs no client of its own: inside a job, ``TitanClient()`` is the job's). Also
    ``publish_artifact(client, key, filename)``, as ``wait_for_signal(client, key)`` is
    called. The file object, as :meth:`TitanClient.publish_artifact` returns it."""
    given_client, client, (key, filename) = _arguments(
        args, client, {"key": key, "filename": filename}, 2,
        "publish_artifact(key, filename)")
    try:
        reply: dict[str, Any] = client.publish_artifact(key, filename)
    finally:
        if not given_client:  # made here: its connections go with it
            client.close()
    return reply


def get_artifact(*args: Any, key: str | None = None,
                 save_path: str | os.PathLike[str] | None = None,
                 client: Any = None) -> str:
    """``get_artifact(key, save_path=...)`` as a function (or ``get_artifact(client, key,
    save_path=...)``); the path written, as :meth:`TitanClient.get_artifact` returns it."""
    given_client, client, (key, save_path) = _arguments(
        args, client, {"key": key, "save_path": save_path}, 1,
        "get_artifact(key, save_path=None)")
    try:
        return str(client.get_artifact(key, save_path))
    finally:
        if not given_client:  # made here: its connections go with it
            client.close()


def _arguments(args: tuple[Any, ...], client: Any, named: dict[str, Any], required: int,
               usage: str) -> tuple[bool, Any, list[Any]]:
    """(whether the caller gave the client, the client, the values of ``named`` in order):
    by position after an optional client, else by name. One given both ways, or a required
    one given neither way, is a usage error naming it (before anything is sent)."""
    if args and isinstance(args[0], TitanClient):
        if client is not None:
            raise ValidationFailed(f"usage: {usage}: got the client twice (first and client=)")
        client, args = args[0], args[1:]
    names = list(named)
    if len(args) > len(names):
        raise ValidationFailed(f"usage: {usage}, or with a TitanClient first; got "
                               f"{len(args)} argument(s) besides the client")
    values = [*args, *[None] * (len(names) - len(args))]
    for i, name in enumerate(names):
        if named[name] is not None:
            if i < len(args):
                raise ValidationFailed(f"usage: {usage}: got {name} twice (by position and "
                                       f"as {name}=)", details={"field": name})
            values[i] = named[name]
    missing = [name for name, value in zip(names[:required], values, strict=False)
               if value is None]
    if missing:
        raise ValidationFailed(f"usage: {usage}, or with a TitanClient first; "
                               f"{', '.join(missing)} not given", details={"field": missing[0]})
    given = client is not None
    return given, client if given else TitanClient(), values
