"""Job and DAG ids taken from the database's sequences ahead of time, in blocks, and the
run numbers of the DAG names a leader has written (PostgreSQL).

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

A DAG's run number (the next of its name) came back from its insert the same way. The leader
is the only writer of DAGs, so once it has written a name it knows that name's last run:
:class:`RunNumbers` keeps the last run of the names it wrote lately, and the next run of one of
them is written without asking (a research agent's ``PLAN``, ``ITER1``, ... are the same names
run after run). A name it has not written yet is still numbered by the database. Should a
transaction fail, every number it handed out is forgotten, in case the database never got it.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
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


class RunNumbers:
    """The last run number of the DAG names this leader wrote lately (at most ``most``)."""

    def __init__(self, most: int = 4096) -> None:
        self._last: OrderedDict[str, int] = OrderedDict()
        self._most = most
        self._lock = threading.Lock()

    def next(self, name: str) -> int | None:
        """The next run of ``name``, taken; None for a name not known here."""
        with self._lock:
            last = self._last.get(name)
            if last is None:
                return None
            self._last[name] = last + 1
            self._last.move_to_end(name)
            return last + 1

    def knows(self, name: str) -> bool:
        with self._lock:
            return name in self._last

    def note(self, name: str, run: int) -> None:
        """``name``'s run ``run`` was written (numbered by the database)."""
        with self._lock:
            self._last[name] = run
            self._last.move_to_end(name)
            while len(self._last) > self._most:
                self._last.popitem(last=False)

    def forget(self) -> None:
        """A transaction failed: what it numbered may not be in the database."""
        with self._lock:
            self._last.clear()


class Numbering:
    """What a PostgreSQL storage numbers ahead for its write transactions."""

    def __init__(self) -> None:
        self.job_ids = IdBlocks("jobs")
        self.dag_ids = IdBlocks("dags")
        self.dag_runs = RunNumbers()
