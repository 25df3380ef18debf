"""SQL for deleting named files: every version of a name or a store key (``DELETE
/files/{name}``, ``DELETE /artifacts``), and the old versions retention may delete (part of
:class:`SQLTransaction`).

A file's *current* versions are the newest of its name (what ``GET /files/{name}`` serves)
and the newest published under its store key (what ``GET /artifacts?key=`` serves). Retention
deletes only versions that are neither, and checks that again in the transaction that deletes
them: a version that became current since it was chosen (a newer one deleted meanwhile) stays.
The blobs the deleted rows named are the blob collection's to delete, once nothing names them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, and_, delete, or_, select

from titan.formats import file_name_forms
from titan.storage import schema as t
from titan.storage.base import Row, iter_chunks

_f = t.files.c


def _old_version() -> Any:
    """Neither the newest of its name nor the newest published under its store key."""
    newer = t.files.alias("newer")
    newer_key = t.files.alias("newer_key")
    return and_(
        select(newer.c.id).where(newer.c.name == _f.name, newer.c.id > _f.id).exists(),
        or_(_f.store_key.is_(None),
            select(newer_key.c.id).where(newer_key.c.store_key == _f.store_key,
                                         newer_key.c.id > _f.id).exists()))


class FilesSQL:
    conn: Connection

    def file_versions(self, *, name: str | None = None,
                      store_key: str | None = None) -> list[Row]:
        q = select(_f.id, _f.name, _f.sha256, _f.size, _f.store_key)
        if name is not None:  # every form of the name: composed or not (formats.file_name)
            q = q.where(_f.name.in_(file_name_forms(name)))
        if store_key is not None:
            q = q.where(_f.store_key == store_key)
        return [dict(r._mapping) for r in self.conn.execute(q.order_by(_f.id))]

    def delete_files(self, ids: Sequence[int], *, old_only: bool = False) -> list[Row]:
        gone: list[Row] = []
        for chunk in iter_chunks(list(ids), 500):
            where = [_f.id.in_(chunk)]
            if old_only:
                where.append(_old_version())
            rows = [dict(r._mapping) for r in self.conn.execute(
                select(_f.id, _f.name, _f.size).where(*where).order_by(_f.id))]
            if rows:
                self.conn.execute(delete(t.files).where(_f.id.in_([r["id"] for r in rows])))
            gone.extend(rows)
        return gone

    def prunable_files(self, *, before: float | None = None, orphaned: bool = False,
                       after: int = 0, limit: int = 500) -> list[int]:
        why = []
        if before is not None:
            why.append(_f.created_at < before)
        if orphaned:
            why.append(and_(_f.dag_id.isnot(None),
                            ~select(t.dags.c.id).where(t.dags.c.id == _f.dag_id).exists()))
        if not why:
            return []
        q = (select(_f.id).where(_f.id > after, or_(*why), _old_version())
             .order_by(_f.id).limit(limit))
        return [int(r[0]) for r in self.conn.execute(q)]
