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

from titan.client.call_forms import client_and_arguments
from titan.client.client import TitanClient


def publish_artifact(*args: Any, key: str | None = None,
                     filename: str | os.PathLike[str] | None = None,
                     client: Any = None) -> dict[str, Any]:
    """Seed 001's ``publish_artifact(key, filename)`` as a function of its own (a worker's
    script needs no client of its own: inside a job, ``TitanClient()`` is the job's). Also
    ``publish_artifact(client, key, filename)``, as ``wait_for_signal(client, key)`` is
    called. The file object, as :meth:`TitanClient.publish_artifact` returns it."""
    given, (key, filename) = client_and_arguments(
        args, client, {"key": key, "filename": filename}, 2,
        "publish_artifact(key, filename)")
    client = given or TitanClient()
    try:
        reply: dict[str, Any] = client.publish_artifact(key, filename)
    finally:
        if given is None:  # made here: its connections go with it
            client.close()
    return reply


def get_artifact(*args: Any, key: str | None = None,
                 save_path: str | os.PathLike[str] | None = None,
                 client: Any = None) -> str:
    """``get_artifact(key, save_path=...)`` as a function (or ``get_artifact(client, key,
    save_path=...)``); the path written, as :meth:`TitanClient.get_artifact` returns it."""
    given, (key, save_path) = client_and_arguments(
        args, client, {"key": key, "save_path": save_path}, 1,
        "get_artifact(key, save_path=None)")
    client = given or TitanClient()
    try:
        return str(client.get_artifact(key, save_path))
    finally:
        if given is None:  # made here: its connections go with it
            client.close()
