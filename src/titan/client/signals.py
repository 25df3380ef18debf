"""Seed 001's orchestrator helpers: a stage signals that it is done by putting a key in
TitanStore, the orchestrator waits for it — ``wait_for_signal(client, key)`` for one key,
``wait_for_signals(client, keys)`` for all of several in any order — with ``store_wait``.

A signal wait also watches the stages this thread submitted through the client: once none is
still going and one ended FAILED, PARTIAL or CANCELLED without the key having come, it raises
:class:`~titan.errors.StageFailed` instead of waiting for a signal that will not come. The
client may be left out, as ``publish_artifact(key, filename)`` leaves it out: the wait then
uses the client this thread last submitted a stage through (so its stages are still watched),
else one of its own. Arguments come by position or by name (:mod:`titan.client.call_forms`).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from titan.client.call_forms import client_and_arguments
from titan.client.client import TitanClient, last_submitter
from titan.client.long_poll import wait_deadline
from titan.client.store import check_key
from titan.errors import NotFound, StageFailed, ValidationFailed, WaitTimeout

#: How often a signal wait looks at the stages that could write it (seconds).
STAGE_CHECK = 2.0
#: What a stage that will never signal ended as; and one still going.
_UNFINISHED = ("FAILED", "PARTIAL", "CANCELLED")
_ACTIVE = ("WAITING", "RUNNING")


def wait_for_signal(*args: Any, key: str | None = None, timeout: float | None = None,
                    client: TitanClient | None = None) -> str:
    """``wait_for_signal(client, key, timeout=None)``, or ``wait_for_signal(key,
    timeout=None)``: wait until a stage signals ``key`` (puts it in TitanStore); its value.
    Raises :class:`~titan.errors.WaitTimeout` after ``timeout`` seconds (None: as long as it
    takes), and :class:`~titan.errors.StageFailed` once no stage this thread submitted through
    the client is still going and one of them ended FAILED, PARTIAL or CANCELLED without the
    key having come: seed 001's loop waited for ever on a stage that had failed before
    signalling."""
    given, (key, timeout) = client_and_arguments(
        args, client, {"key": key, "timeout": timeout}, 1,
        "wait_for_signal(key, timeout=None)")
    with _Client(given) as waiter:
        return _signal(waiter, key, wait_deadline(timeout), timeout)


def wait_for_signals(*args: Any, keys: Iterable[str] | None = None,
                     timeout: float | None = None,
                     client: TitanClient | None = None) -> dict[str, str]:
    """``wait_for_signals(client, keys, timeout=None)``, or without the client: wait until
    every one of ``keys`` is signalled, in whatever order they come, within ``timeout``
    seconds in all; their values by key (:class:`~titan.errors.StageFailed` as for
    :func:`wait_for_signal`)."""
    given, (keys, timeout) = client_and_arguments(
        args, client, {"keys": keys, "timeout": timeout}, 1,
        "wait_for_signals(keys, timeout=None)")
    if isinstance(keys, str):  # its characters would be waited on, one key each
        raise ValidationFailed(
            f"wait_for_signals takes a list of keys, e.g. [{keys!r}], got the string {keys!r} "
            "(wait_for_signal waits on one)", details={"field": "keys"})
    keys = list(keys)
    for key in keys:  # all before waiting: a bad third key is not found minutes later
        check_key(key)
    deadline = wait_deadline(timeout)
    with _Client(given) as waiter:
        return {key: _signal(waiter, key, deadline, timeout) for key in keys}


class _Client:
    """The client a signal wait uses: the one given, else the one this thread last submitted
    a stage through, else one made for the wait (and closed after it)."""

    def __init__(self, given: TitanClient | None) -> None:
        self.client = given or last_submitter()
        self.made = self.client is None

    def __enter__(self) -> TitanClient:
        if self.client is None:
            self.client = TitanClient()
        return self.client

    def __exit__(self, *exc: object) -> None:
        if self.made and self.client is not None:
            self.client.close()


def _signal(client: TitanClient, key: str, deadline: float | None,
            timeout: float | None) -> str:
    while True:
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        watched = client.submitted_stages()
        step = left if not watched else STAGE_CHECK if left is None else min(STAGE_CHECK, left)
        try:
            # Steps of the whole wait: a master that is away is waited for until the whole
            # wait's end (None: the restart grace), not the step's.
            return client._store_wait(key, step, until=deadline)
        except WaitTimeout:
            if left is not None and left <= (step or 0.0):
                raise WaitTimeout(f"timed out after {round(timeout or 0, 1):g}s waiting for "
                                  f"store key {key!r}") from None
        failed = _failed_stage(client, watched)
        if failed is not None:
            try:  # a stage may have signalled before another failed
                return client._store_wait(key, 0, until=deadline)
            except WaitTimeout:
                watched.remove(failed["id"])  # said once: a later wait is not failed by it
                raise StageFailed(
                    f"stage {failed.get('ref')} ended {failed['status']} without signalling "
                    f"{key!r}, and no other stage submitted here is still going: the signal "
                    "will not come (its jobs' logs say why)", failed, key) from None


def _failed_stage(client: TitanClient, watched: list[int]) -> dict[str, Any] | None:
    """The stage of ``watched`` submitted last of those that ended without completing, once
    none of them is still going (None while one is, or when all completed: then something
    else may still signal). Completed stages leave the list: they can fail no wait. The last
    one, because a wait is for the stage an orchestrator just submitted: a stage that
    signalled and then ended PARTIAL stays on the list, and was blamed for the next stage's
    failure (and a retry of ``StageFailed.dag`` retried the wrong stage)."""
    failed = None
    for dag_id in reversed(list(watched)):
        try:
            dag = client.get_dag(dag_id)
        except NotFound:  # deleted by retention since: nothing to tell from it
            watched.remove(dag_id)
            continue
        status = dag.get("status")
        if status in _ACTIVE:
            return None
        if status in _UNFINISHED:
            failed = failed or dag
        else:
            watched.remove(dag_id)
    return failed
