"""Seed 001's artifact calls as functions: ``publish_artifact(key, filename)`` in a worker's
script and ``get_artifact(key, save_path=...)`` in the orchestrator, with no client to make
(inside a job, ``TitanClient()`` is the job's own). A client may come first, as it does for
``wait_for_signal(client, key)``. :class:`~titan.client.TitanClient` does the work
(:mod:`titan.client.files`)."""

from __future__ import annotations

import os
from typing import Any

from titan.client.client import TitanClient
from titan.errors import ValidationFailed


def publish_artifact(*args: Any, client: Any = None) -> dict[str, Any]:
    """Seed 001's ``publish_artifact(key, filename)`` as a function of its own (a worker's
    script needs no client of its own: inside a job, ``TitanClient()`` is the job's). Also
    ``publish_artifact(client, key, filename)``, as ``wait_for_signal(client, key)`` is
    called. The file object, as :meth:`TitanClient.publish_artifact` returns it."""
    given_client = client is not None or (args and isinstance(args[0], TitanClient))
    client, (key, filename) = _client_and(args, client, (2,), "publish_artifact(key, filename)")
    try:
        reply: dict[str, Any] = client.publish_artifact(key, filename)
    finally:
        if not given_client:  # made here: its connections go with it
            client.close()
    return reply


def get_artifact(*args: Any, save_path: str | os.PathLike[str] | None = None,
                 client: Any = None) -> str:
    """``get_artifact(key, save_path=...)`` as a function (or ``get_artifact(client, key,
    save_path=...)``); the path written, as :meth:`TitanClient.get_artifact` returns it."""
    given_client = client is not None or (args and isinstance(args[0], TitanClient))
    client, given = _client_and(args, client, (1, 2), "get_artifact(key, save_path=None)")
    try:
        if len(given) == 2:
            if save_path is not None:
                raise ValidationFailed("get_artifact() got save_path twice")
            save_path = given[1]
        return str(client.get_artifact(given[0], save_path))
    finally:
        if not given_client:  # made here: its connections go with it
            client.close()


def _client_and(args: tuple[Any, ...], client: Any, counts: tuple[int, ...],
                usage: str) -> tuple[Any, tuple[Any, ...]]:
    if args and isinstance(args[0], TitanClient):
        client, args = args[0], args[1:]
    if len(args) not in counts:
        raise ValidationFailed(f"usage: {usage}, or with a TitanClient first; got "
                               f"{len(args)} argument(s) besides the client")
    return client if client is not None else TitanClient(), args
