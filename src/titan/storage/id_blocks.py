"""Job ids taken from the database's sequence ahead of time, in blocks (PostgreSQL).

A submission inserts its jobs and then needs their ids (for its attempts, its leases, its
answer). Asking the database for them — ``INSERT ... RETURNING`` for one job, a SELECT of the
DAG's ids for several — was a round trip of its own on the path of every submission, before
the jobs' attempts could even be written (issue 17). The leader instead takes ids from the
jobs table's own sequence a block at a time (one ``nextval`` per id, in one query) and writes
each job with its id: the inserts then need no answer and go with the commit
(:mod:`titan.storage.deferred`).

Safe with several masters: a sequence hands each value out once, whatever transactions do,
so two masters never hold the same id, and an insert that does not name its id still takes
the sequence's next. What it costs: ids taken but not used (a master that stops, a
transaction that fails) are skipped, at most one block per master start — as a sequence's
own cache does. Ids still grow with submission order on one leader, and a new leader's
block comes after every id handed out before it.
"""

from __future__ import annotations

import threading
from typing import Any

from sqlalchemy import Connection, Integer, bindparam, func, select

from titan.storage import compiled

#: The first block's size; each refill doubles it, up to :data:`MOST`.
FIRST = 16
MOST = 256


class IdBlocks:
    """Ids of one table's ``id`` sequence, taken ahead; shared by a storage's transactions."""

    def __init__(self, table: str) -> None:
        self._table = table
        self._free: list[int] = []  # the block's ids not handed out yet, the next one last
        self._size = FIRST
        self._lock = threading.Lock()

    def take(self, conn: Connection, n: int) -> list[int]:
        """``n`` unused ids, in increasing order; refills from the sequence on ``conn``
        when the block runs short."""
        with self._lock:
            if len(self._free) < n:
                fetched = self._fetch(conn, n - len(self._free) + self._size)
                self._size = min(self._size * 2, MOST)
                self._free = sorted(self._free + fetched, reverse=True)
            taken = self._free[-n:]
            del self._free[-n:]
        taken.reverse()
        return taken

    def _fetch(self, conn: Connection, n: int) -> list[int]:
        table = self._table
        rows = compiled.execute(
            conn, ("id_block", table),
            lambda: _block_query(table), {"n": n}).all()
        return [int(r[0]) for r in rows]


def _block_query(table: str) -> Any:
    sequence = func.pg_get_serial_sequence(table, "id")
    return select(func.nextval(sequence)).select_from(
        func.generate_series(1, bindparam("n", type_=Integer)))
