"""SQL for the blobs the database recorded: stored, vouched for, and what garbage collection
may delete (part of :class:`SQLTransaction`; what names a blob is :mod:`.blob_refs`)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from sqlalchemy import Connection, delete, func, select, update

from titan.storage import blob_refs
from titan.storage import schema as t
from titan.storage.base import iter_chunks

_b = t.blobs.c
#: A blob used within this many seconds is not written again when it is used again: one
#: write a minute at most for a blob named over and over (an agent's payloads, a script).
TOUCH_EVERY = 60.0


def _used() -> Any:
    return func.coalesce(_b.used_at, _b.created_at)


class BlobsSQL:
    conn: Connection
    insert: Any

    def blobs_present(self, shas: Iterable[str]) -> set[str]:
        found: set[str] = set()
        for chunk in iter_chunks(list(shas), 500):
            rows = self.conn.execute(select(_b.sha256).where(_b.sha256.in_(chunk)))
            found.update(r[0] for r in rows)
        return found

    def add_blob(self, sha256: str, size: int, now: float) -> None:
        stmt = self.insert(t.blobs).values(sha256=sha256, size=size, created_at=now, used_at=now)
        self.conn.execute(stmt.on_conflict_do_update(
            index_elements=["sha256"], set_={"used_at": stmt.excluded.used_at},
            where=_used() < stmt.excluded.used_at - TOUCH_EVERY))

    def use_blobs(self, shas: Iterable[str], now: float) -> set[str]:
        wanted = sorted(set(shas))
        for chunk in iter_chunks(wanted, 500):
            self.conn.execute(update(t.blobs).where(_b.sha256.in_(chunk),
                                                    _used() < now - TOUCH_EVERY)
                              .values(used_at=now))
        return self.blobs_present(wanted)

    def stale_blobs(self, before: float) -> Iterator[tuple[str, int]]:
        last = ""
        while True:
            rows = self.conn.execute(
                select(_b.sha256, _b.size).where(_b.sha256 > last, _used() < before)
                .order_by(_b.sha256).limit(blob_refs.PAGE)).all()
            yield from ((r[0], int(r[1])) for r in rows)
            if len(rows) < blob_refs.PAGE:
                return
            last = rows[-1][0]

    def blob_references(self) -> Iterator[str]:
        return blob_refs.referenced(self.conn)

    def delete_blobs(self, shas: Iterable[str], before: float) -> list[tuple[str, int]]:
        gone: list[tuple[str, int]] = []
        for chunk in iter_chunks(sorted(set(shas)), 500):
            # Chosen and deleted in one transaction of the one writer: a blob stored or
            # vouched for since the collection began (its used_at moved) stays.
            rows = self.conn.execute(select(_b.sha256, _b.size)
                                     .where(_b.sha256.in_(chunk), _used() < before)).all()
            if rows:
                self.conn.execute(delete(t.blobs).where(_b.sha256.in_([r[0] for r in rows])))
                gone.extend((r[0], int(r[1])) for r in rows)
        return gone
