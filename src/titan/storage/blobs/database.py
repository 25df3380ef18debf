"""Blobs in the Titan database itself (``TITAN_BLOB_STORE=database``, on PostgreSQL).

Each blob is rows of ``blob_chunks`` (sha256, seq, data), chunks of at most :data:`CHUNK`
bytes, all inserted in one transaction: a reader sees every chunk of a blob or none. Chunk 0
is inserted first with ``ON CONFLICT DO NOTHING``, which settles concurrent writers of the
same content: a writer finding it committed stops there (the blob is whole), one finding it
still uncommitted waits for that transaction and then either stops (it committed) or goes on
alone (it rolled back). No writer adds to another's chunks, so a blob never mixes two.

The store has an engine of its own on the same database, with a pool of its own: a large
upload or a slow download must not hold the connections the scheduler's group-commit writer
and readers need. Blob writes are not fenced by leadership: content-addressed and whole or
absent, a blob written by a master that just lost the lead harms nothing.
"""

from __future__ import annotations

from collections.abc import Generator, Iterable
from pathlib import Path
from typing import IO

from sqlalchemy import URL, create_engine, delete, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert

from titan.storage import schema as t
from titan.storage.base import iter_chunks
from titan.storage.blobs.base import (
    CHUNK,
    NamedFirstStore,
    check_database_id,
    check_sha256,
    missing,
)

_c = t.blob_chunks.c


class DatabaseBlobStore(NamedFirstStore):
    def __init__(self, url: URL, spool_dir: Path, *, chunk: int = CHUNK) -> None:
        super().__init__(spool_dir)
        # pool_pre_ping: a round trip per checkout is nothing beside a chunk of up to 1 MiB,
        # and it spares a download the connection a database restart left dead.
        self.engine = create_engine(url, pool_size=4, max_overflow=8, pool_pre_ping=True,
                                    hide_parameters=True)
        self.chunk = chunk
        self.description = f"database {url.render_as_string(hide_password=True)}"

    def size(self, sha256: str) -> int | None:
        check_sha256(sha256)
        with self.engine.connect() as conn:
            total = conn.execute(select(func.sum(func.length(_c.data)))
                                 .where(_c.sha256 == sha256)).scalar()
        return None if total is None else int(total)

    def present(self, shas: Iterable[str]) -> set[str]:
        wanted = sorted({check_sha256(sha) for sha in shas})
        found: set[str] = set()
        with self.engine.connect() as conn:
            for part in iter_chunks(wanted, 500):
                found.update(conn.execute(select(_c.sha256).where(
                    _c.seq == 0, _c.sha256.in_(part))).scalars())
        return found

    def read(self, sha256: str, start: int = 0, end: int | None = None) -> Generator[bytes, None, None]:
        return self._chunks(check_sha256(sha256), start, end)

    def _chunks(self, sha256: str, start: int, end: int | None) -> Generator[bytes, None, None]:
        with self.engine.connect() as conn:
            layout = conn.execute(select(_c.seq, func.length(_c.data))
                                  .where(_c.sha256 == sha256).order_by(_c.seq)).all()
        if not layout:
            raise missing(sha256)
        pos = 0
        for seq, n in layout:
            lo, hi = max(start - pos, 0), n if end is None else min(end - pos, n)
            pos += n
            if lo < hi:
                # A connection per chunk, held only for its query: a client downloading
                # slowly holds no pooled connection between chunks. A blob never changes,
                # so chunks read apart still make one blob.
                with self.engine.connect() as conn:
                    data: bytes = conn.execute(select(_c.data).where(
                        _c.sha256 == sha256, _c.seq == seq)).scalar_one()
                yield data if hi - lo == n else data[lo:hi]
            if end is not None and pos >= end:
                return

    def _store(self, sha256: str, size: int, body: IO[bytes]) -> None:
        with self.engine.begin() as conn:
            # RETURNING rather than rowcount, which the driver need not report for this.
            claim = pg_insert(t.blob_chunks).values(
                sha256=sha256, seq=0, data=body.read(self.chunk)
            ).on_conflict_do_nothing().returning(_c.seq)
            if conn.execute(claim).first() is None:
                return  # committed by another writer: whole already
            seq = 1
            while data := body.read(self.chunk):
                conn.execute(t.blob_chunks.insert(), {"sha256": sha256, "seq": seq, "data": data})
                seq += 1

    def _delete(self, sha256: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(delete(t.blob_chunks).where(_c.sha256 == sha256))

    def owner(self, claim: str) -> str:
        return claim  # the blobs are rows of the database itself: no other can hold them

    def users(self, database: str) -> set[str]:
        return {check_database_id(database)}  # rows of this database: no other uses them

    def close(self) -> None:
        self.engine.dispose()
