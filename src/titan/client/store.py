"""TitanStore from the SDK: shared string values and sets, and waiting for a key.

``wait_for_signal(client, key)`` and ``wait_for_signals(client, keys)`` are seed 001's
orchestrator helpers: a stage signals that it is done by putting a key, the orchestrator
waits for it (one key, or all of several in any order) with ``store_wait``.

A mixin of :class:`~titan.client.TitanClient`; every method is one HTTP call (a wait is one
server-side long poll per 30 s slice — never a client polling loop). A missing key reads as
``None``; values are strings, and anything else is refused before it is sent. A key holds a
value or a set, not both: an operation of the other kind raises
:class:`~titan.errors.WrongKind` (the master's 409 ``wrong_kind``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any, Literal

from titan import services
from titan.client import replay_keys
from titan.client.long_poll import long_poll, wait_deadline
from titan.client.transport import Transport
from titan.errors import NotFound, StageFailed, ValidationFailed, WaitTimeout
from titan.url_paths import quote_ref

#: Keys asked for per request when listing the store (the master's most).
KEYS_PAGE = 10_000

if TYPE_CHECKING:
    from titan.client.client import TitanClient


def _key(key: Any) -> str:
    if not isinstance(key, str) or not key:
        raise ValidationFailed(f"store keys must be non-empty strings, got {key!r}",
                               details={"field": "key"})
    return replay_keys.rename(key)  # in a replay, its run's own keys (client/replay_keys.py)


class StoreOps:
    """The ``store_*`` methods."""

    _transport: Transport

    def store_put(self, key: str, value: str) -> None:
        """Set ``key`` to the string ``value`` (wakes everyone in :meth:`store_wait`);
        :class:`~titan.errors.WrongKind` when the key holds a set."""
        if not isinstance(value, str):
            raise ValidationFailed(
                f"store values are strings; got {type(value).__name__} for {key!r} "
                "(use str(value) or json.dumps(value))",
                details={"field": "value", "key": key},
            )
        self._transport.call("PUT", f"/store/values/{quote_ref(_key(key))}",
                             json={"value": value})

    def store_get(self, key: str) -> str | None:
        """The value of ``key``, or ``None`` if it is not set; :class:`~titan.errors.WrongKind`
        when it holds a set (read with :meth:`store_smembers`)."""
        reply = self._transport.call("GET", f"/store/values/{quote_ref(_key(key))}")
        value = reply.get("value") if isinstance(reply, dict) else None
        return None if value is None else str(value)

    def store_delete(self, key: str) -> bool:
        """Delete a value or a set; ``True`` if there was one."""
        reply = self._transport.call("DELETE", f"/store/values/{quote_ref(_key(key))}")
        return bool(reply.get("deleted")) if isinstance(reply, dict) else False

    def store_incr(self, key: str, by: int = 1) -> int:
        """Atomically add ``by`` to the integer in ``key`` (missing counts as 0); the result.
        :class:`~titan.errors.WrongKind` when the key holds a set."""
        if not isinstance(by, int) or isinstance(by, bool):
            raise ValidationFailed(f"store_incr(by=...) must be an integer, got {by!r}",
                                   details={"field": "by"})
        reply = self._transport.call("POST", f"/store/incr/{quote_ref(_key(key))}",
                                     json={"by": by}, idempotency_key=True)
        return int(reply["value"])

    def store_sadd(self, key: str, member: str) -> int:
        """Add ``member`` to the set ``key``: 1 if it is new, 0 if it was there;
        :class:`~titan.errors.WrongKind` when the key holds a value."""
        if not isinstance(member, str):
            raise ValidationFailed(
                f"set members are strings; got {type(member).__name__} for {key!r}",
                details={"field": "member", "key": key},
            )
        reply = self._transport.call("POST", f"/store/sets/{quote_ref(_key(key))}",
                                     json={"member": member}, idempotency_key=True)
        return int(reply.get("added", 0))

    def store_smembers(self, key: str) -> set[str]:
        """The members of the set ``key`` (empty if there is none);
        :class:`~titan.errors.WrongKind` when the key holds a value."""
        reply = self._transport.call("GET", f"/store/sets/{quote_ref(_key(key))}")
        return {str(m) for m in (reply.get("members") or [])}

    def store_wait(self, key: str, timeout: float | None = None) -> str:
        """Block until ``key`` has a value and return it; :class:`WaitTimeout` after
        ``timeout`` seconds (``None``: wait as long as it takes); :class:`WrongKind` when the
        key holds a set, or one is made there meanwhile."""
        return self._store_wait(key, timeout)

    def _store_wait(self, key: str, timeout: float | None,
                    until: float | None | Literal["timeout"] = "timeout") -> str:
        """:meth:`store_wait`, as one step of a longer wait that ends at ``until``
        (:func:`~titan.client.long_poll.long_poll`)."""
        reply = long_poll(self._transport, f"/store/wait/{quote_ref(_key(key))}", timeout,
                          what=f"store key {key!r}", until=until)
        return str(reply["value"])

    def service_address(self, job_id: str, timeout: float | None = None, *,
                        dag: str | None = None, run: int | None = None) -> str:
        """Wait until the service ``job_id`` is ready and return its address (``host:port``);
        :class:`WaitTimeout` after ``timeout`` seconds (``None``: as long as it takes).

        Inside a job, the service of the job's own DAG run (``TITAN_DAG``, ``TITAN_DAG_RUN``):
        the key ``services/<dag>#<run>/<job_id>``, so a run's jobs never get the service of
        another run of the same DAG alive at the same time. ``dag`` names another DAG
        (``run``: one of its runs; left out, its latest run's live service, the key
        ``services/<dag>/<job_id>``)."""
        own = os.environ.get("TITAN_DAG") or None
        if dag is None:
            dag = own
            if dag is None:
                raise ValidationFailed(
                    "service_address() outside a job needs dag=: the DAG whose service to "
                    "wait for", details={"field": "dag"})
        if dag.startswith("DAG-"):
            dag = dag[4:]
        if run is None and dag == own:
            mine = os.environ.get("TITAN_DAG_RUN", "")
            run = int(mine) if mine.isascii() and mine.isdigit() else None
        if run is not None and (isinstance(run, bool) or not isinstance(run, int) or run < 1):
            raise ValidationFailed(f"run must be a run number (1, 2, ...), got {run!r}",
                                   details={"field": "run"})
        key = services.store_key(dag, job_id) if run is None else \
            services.run_store_key(dag, run, job_id)
        return self._store_wait(key, timeout)

    def store_keys(self, prefix: str = "", limit: int | None = 1000) -> list[str]:
        """Keys (values and sets) starting with ``prefix``, sorted, at most ``limit``
        (``None``: all of them, read a page at a time)."""
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int)
                                  or limit < 0):
            # -1 read as "no limit" elsewhere, and gave [] here without a word.
            raise ValidationFailed(f"limit must be a whole number >= 0, or None for every "
                                   f"key, got {limit!r}", details={"field": "limit"})
        keys: list[str] = []
        for key in self.iter_store_keys(prefix):
            if limit is not None and len(keys) >= limit:
                break
            keys.append(key)
        return keys

    def iter_store_keys(self, prefix: str = "") -> Iterator[str]:
        """Every key starting with ``prefix``, sorted, read from the master a page of
        :data:`KEYS_PAGE` at a time (a store of millions of keys is never held whole)."""
        after: str | None = None
        last: str | None = None
        while True:
            reply = self._transport.call("GET", "/store", params={
                "prefix": replay_keys.rename(prefix), "limit": KEYS_PAGE, "after": after})
            for item in reply.get("keys", []):
                key = str(item["key"])
                # A key holding a value and a set (written before one kind per key) comes
                # once per kind.
                if key != last:
                    last = key
                    yield key
            after = reply.get("next")
            if after is None:
                return


#: How often a signal wait looks at the stages that could write it (seconds).
STAGE_CHECK = 2.0
#: What a stage that will never signal ended as; and one still going.
_UNFINISHED = ("FAILED", "PARTIAL", "CANCELLED")
_ACTIVE = ("WAITING", "RUNNING")


def wait_for_signal(client: TitanClient, key: str, timeout: float | None = None) -> str:
    """Wait until a stage signals ``key`` (puts it in TitanStore); its value. Raises
    :class:`~titan.errors.WaitTimeout` after ``timeout`` seconds (None: as long as it takes),
    and :class:`~titan.errors.StageFailed` once no stage this thread submitted through
    ``client`` is still going and one of them ended FAILED, PARTIAL or CANCELLED without the
    key having come: seed 001's loop waited for ever on a stage that had failed before
    signalling."""
    return _signal(client, key, wait_deadline(timeout), timeout)


def wait_for_signals(client: TitanClient, keys: Iterable[str],
                     timeout: float | None = None) -> dict[str, str]:
    """Wait until every one of ``keys`` is signalled, in whatever order they come, within
    ``timeout`` seconds in all; their values by key (:class:`~titan.errors.StageFailed` as
    for :func:`wait_for_signal`)."""
    if isinstance(keys, str):  # its characters would be waited on, one key each
        raise ValidationFailed(
            f"wait_for_signals takes a list of keys, e.g. [{keys!r}], got the string {keys!r} "
            "(wait_for_signal waits on one)", details={"field": "keys"})
    keys = list(keys)
    for key in keys:  # all before waiting: a bad third key is not found minutes later
        _key(key)
    deadline = wait_deadline(timeout)
    return {key: _signal(client, key, deadline, timeout) for key in keys}


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
