"""TitanStore from the SDK: shared string values and sets, and waiting for a key (seed 001's
signal helpers built on it are in :mod:`titan.client.signals`).

A mixin of :class:`~titan.client.TitanClient`; every method is one HTTP call (a wait is one
server-side long poll per 30 s slice — never a client polling loop). A missing key reads as
``None``; values are strings, and anything else is refused before it is sent. A key holds a
value or a set, not both: an operation of the other kind raises
:class:`~titan.errors.WrongKind` (the master's 409 ``wrong_kind``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any, Literal

from titan import services
from titan.client import replay_keys
from titan.client.long_poll import long_poll
from titan.client.transport import Transport
from titan.errors import ValidationFailed
from titan.url_paths import quote_ref

#: Keys asked for per request when listing the store (the master's most).
KEYS_PAGE = 10_000


def check_key(key: Any) -> str:
    """``key`` as sent: a non-empty string (:class:`ValidationFailed` otherwise), renamed to
    its run's own in a replay."""
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
        self._transport.call("PUT", f"/store/values/{quote_ref(check_key(key))}",
                             json={"value": value})

    def store_get(self, key: str) -> str | None:
        """The value of ``key``, or ``None`` if it is not set; :class:`~titan.errors.WrongKind`
        when it holds a set (read with :meth:`store_smembers`)."""
        reply = self._transport.call("GET", f"/store/values/{quote_ref(check_key(key))}")
        value = reply.get("value") if isinstance(reply, dict) else None
        return None if value is None else str(value)

    def store_delete(self, key: str) -> bool:
        """Delete a value or a set; ``True`` if there was one."""
        reply = self._transport.call("DELETE", f"/store/values/{quote_ref(check_key(key))}")
        return bool(reply.get("deleted")) if isinstance(reply, dict) else False

    def store_incr(self, key: str, by: int = 1) -> int:
        """Atomically add ``by`` to the integer in ``key`` (missing counts as 0); the result.
        :class:`~titan.errors.WrongKind` when the key holds a set."""
        if not isinstance(by, int) or isinstance(by, bool):
            raise ValidationFailed(f"store_incr(by=...) must be an integer, got {by!r}",
                                   details={"field": "by"})
        reply = self._transport.call("POST", f"/store/incr/{quote_ref(check_key(key))}",
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
        reply = self._transport.call("POST", f"/store/sets/{quote_ref(check_key(key))}",
                                     json={"member": member}, idempotency_key=True)
        return int(reply.get("added", 0))

    def store_smembers(self, key: str) -> set[str]:
        """The members of the set ``key`` (empty if there is none);
        :class:`~titan.errors.WrongKind` when the key holds a value."""
        reply = self._transport.call("GET", f"/store/sets/{quote_ref(check_key(key))}")
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
        reply = long_poll(self._transport, f"/store/wait/{quote_ref(check_key(key))}", timeout,
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
