"""The storage interface: everything the master keeps durably, method by method.

A :class:`Storage` hands out transactions. Everything happens inside one::

    with storage.transaction() as tx:
        dag_id = tx.insert_dag({...})
        tx.insert_jobs([...])
    # committed here; an exception inside the block rolls it all back

The master's group-commit writer (``titan.storage.writer``) runs many small operations in one
transaction, which is what makes durable state changes cheap. Rows come back as plain dicts;
JSON columns (``args``, ``parents``, ``env``, ``capabilities``) come back decoded. Domain code
only ever sees this interface — never a database driver.
"""

from __future__ import annotations

import abc
import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any

from titan.storage.base_evals import EvalTransaction
from titan.storage.base_jobs import JobsTransaction
from titan.storage.base_ledger import LedgerQuery, LedgerTransaction
from titan.storage.base_master import MasterTransaction
from titan.storage.base_runs import ActionQuery, RunQuery, RunsTransaction
from titan.storage.base_schedules import SchedulesTransaction
from titan.storage.base_store import StoreTransaction
from titan.storage.rows import Row

__all__ = ["ActionQuery", "LedgerQuery", "Row", "RunQuery", "Storage", "Transaction",
           "iter_chunks"]


class Transaction(MasterTransaction, JobsTransaction, RunsTransaction, LedgerTransaction,
                  StoreTransaction, EvalTransaction, SchedulesTransaction):
    """One database transaction: every concept's interface in one object (each is declared,
    and has its contract suite, on its own). Not thread-safe: use it from the thread that
    opened it."""

    def after_commit(self, read: Callable[[Transaction], None]) -> None:
        """Run ``read`` on what this write transaction leaves, for a caller that needs the
        answer only once it has committed (a waiter's view of what it finished).

        Here, now, inside the transaction. Where a read inside it would cost a round trip
        that its COMMIT could have carried (PostgreSQL, whose writes go with the COMMIT), the
        read runs after the commit instead, on the same thread, before anything else is
        written — unless another operation of the group transaction comes first
        (:meth:`reads_due`): it reads what its own operation left, never a later one's. A read that fails is logged and dropped, never failing the writes: its
        caller must cope with the answer missing (a waiter reads for itself)."""
        read_safely(read, self)

    def reads_due(self) -> None:
        """Another operation of this group transaction is about to run: reads put off until
        the commit (:meth:`after_commit`) run now, inside it, since that operation could
        change what they read. So only the last operation's reads wait for the commit."""


def read_safely(read: Callable[[Transaction], None], tx: Transaction) -> None:
    """Run an ``after_commit`` read; log what it raised."""
    try:
        read(tx)
    except Exception as exc:  # noqa: BLE001 - its caller copes without the answer
        logging.getLogger("titan.storage").warning("a read with a commit failed: %r", exc)


class Storage(abc.ABC):
    """A database holding Titan's state. Thread-safe: each transaction uses its own connection."""

    url: str

    @abc.abstractmethod
    def migrate(self) -> int:
        """Bring the schema to the current version; returns that version. Safe to repeat."""

    @abc.abstractmethod
    def transaction(self) -> AbstractContextManager[Transaction]:
        """Open a read-write transaction, committed when the block exits cleanly."""

    def read_transaction(self) -> AbstractContextManager[Transaction]:
        """A transaction that only reads (the master's reads: pages, waits, views). Writing
        in it is a bug, refused where the database can refuse it."""
        return self.transaction()

    def write_transaction(self, mark: int = 0) -> AbstractContextManager[Transaction]:
        """The master's write transaction: on a database several masters share, it first
        proves this master still leads (raising NotLeader if it was replaced) and records
        ``mark``, which :meth:`committed` looks up."""
        return self.transaction()

    def committed(self, mark: int) -> bool:
        """Whether the write transaction given ``mark`` committed, when the connection broke
        while it was committing (False where a failed commit is known not to have happened)."""
        return False

    def unavailable(self, exc: BaseException) -> bool:
        """Whether ``exc`` says the database is away for now (restarting, unreachable, disk
        full) rather than that the transaction itself was wrong: such a transaction is tried
        again once the database is back, not failed."""
        return False

    def cancelled(self, exc: BaseException) -> str | None:
        """What the database said when ``exc`` is its cancellation of the statement
        (PostgreSQL's ``statement_timeout`` or ``lock_timeout``, an operator's
        ``pg_cancel_backend``): not the database away, and likely cancelled again, so tried a
        few times only, then refused; None for anything else."""
        return None

    def corrupt(self, exc: BaseException) -> str | None:
        """What the database said when ``exc`` says its files are damaged (no retry helps:
        restore from a backup); None for anything else."""
        return None

    def unstorable(self, exc: BaseException) -> str | None:
        """What the database said when ``exc`` is its refusal of a value (a NUL byte in a
        text, a string past its column's length): the request's fault, not the master's;
        None for anything else."""
        return None

    @abc.abstractmethod
    def claim_scheduler(self) -> None:
        """Become the one master scheduling over this database, for as long as this storage
        stays open. Raises ConfigError if another live master holds it: two schedulers on
        one database would both start the same jobs."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release every connection (and the scheduler claim)."""


def iter_chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    """Split a long IN list so no statement exceeds the driver's parameter limits."""
    for i in range(0, len(items), size):
        yield items[i : i + size]
