"""SQL for TitanStore keys and sets: values put, counted and deleted, set members added,
and keys listed a page at a time in the database's own order (part of :class:`SQLTransaction`)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, bindparam, delete, func, literal, select, union_all

from titan.errors import ValidationFailed
from titan.storage import compiled
from titan.storage import schema as t
from titan.storage.base import Row, iter_chunks

#: Keys per IN list: within every driver's parameter limit (SQLite's was 999).
CHUNK = 500
_INTEGER = re.compile(r"-?[0-9]+\Z")  # what a counter holds: ASCII digits, one sign


class StoreSQL:
    conn: Connection
    insert: Any  # the dialect's insert() with ON CONFLICT support

    def store_get(self, key: str) -> str | None:
        row = compiled.execute(
            self.conn, "store_get",
            lambda: select(t.store_values.c.value).where(t.store_values.c.key == bindparam("k")),
            {"k": key},
        ).first()
        return None if row is None else row[0]

    def store_put(self, key: str, value: str, now: float) -> None:
        def build() -> Any:
            stmt = self.insert(t.store_values).values(
                key=bindparam("k"), value=bindparam("v"), updated_at=bindparam("now"))
            return stmt.on_conflict_do_update(
                index_elements=["key"], set_={"value": stmt.excluded.value,
                                              "updated_at": stmt.excluded.updated_at})

        compiled.write(self.conn, "store_put", build, {"k": key, "v": value, "now": now})

    def store_delete(self, key: str) -> bool:
        a = self.conn.execute(delete(t.store_values).where(t.store_values.c.key == key)).rowcount
        b = self.conn.execute(delete(t.store_sets).where(t.store_sets.c.key == key)).rowcount
        return bool(a or b)

    def store_delete_value(self, key: str) -> bool:
        return bool(self.conn.execute(
            delete(t.store_values).where(t.store_values.c.key == key)).rowcount)

    def store_incr(self, key: str, by: int, now: float) -> int:
        # Make sure the row exists, then lock it: atomic even with several masters on PostgreSQL
        # (SQLite ignores FOR UPDATE; its single writer serialises instead).
        self.conn.execute(
            self.insert(t.store_values)
            .values(key=key, value="0", updated_at=now)
            .on_conflict_do_nothing()
        )
        current = self.conn.execute(
            select(t.store_values.c.value).where(t.store_values.c.key == key).with_for_update()
        ).scalar_one()
        if not _INTEGER.match(current):  # int() also reads "1_000", " 7" and "٣"
            raise ValidationFailed(
                f"store key {_quoted(key)} holds {current[:40]!r}, which is not an integer",
                details={"key": key},
            )
        value = int(current) + by
        if not -2**63 <= value < 2**63:
            raise ValidationFailed(f"store key {_quoted(key)} would pass the 64-bit counter range "
                                   f"({current} + {by})", details={"key": key})
        self.conn.execute(
            t.store_values.update()
            .where(t.store_values.c.key == key)
            .values(value=str(value), updated_at=now)
        )
        return value

    def store_sadd(self, key: str, member: str, now: float) -> int:
        result = self.conn.execute(
            self.insert(t.store_sets)
            .values(key=key, member=member, added_at=now)
            .on_conflict_do_nothing()
            .returning(t.store_sets.c.member)  # rowcount is unreliable here on psycopg
        )
        return 1 if result.first() is not None else 0

    def store_smembers(self, key: str) -> list[str]:
        rows = self.conn.execute(
            select(t.store_sets.c.member).where(t.store_sets.c.key == key).order_by(t.store_sets.c.member)
        )
        return [r[0] for r in rows]

    def store_values_cut(self, keys: Sequence[str], chars: int) -> dict[str, tuple[str, int]]:
        v = t.store_values.c
        found: dict[str, tuple[str, int]] = {}
        # Cut in the database: a page of 1,000 keys of 1 MiB each is not read whole. Both
        # dialects count characters (code points), as len() does; values hold no NUL.
        for chunk in iter_chunks(sorted(set(keys)), CHUNK):
            rows = self.conn.execute(select(v.key, func.substr(v.value, 1, chars),
                                            func.length(v.value)).where(v.key.in_(chunk)))
            found.update((r[0], (r[1] or "", int(r[2] or 0))) for r in rows)
        return found

    def store_members_cut(self, keys: Sequence[str],
                          limit: int) -> dict[str, tuple[list[str], int]]:
        st = t.store_sets.c
        found: dict[str, tuple[list[str], int]] = {}
        for chunk in iter_chunks(sorted(set(keys)), CHUNK):
            ranked = select(
                st.key, st.member,
                func.row_number().over(partition_by=st.key, order_by=st.member).label("n"),
                func.count().over(partition_by=st.key).label("size"),
            ).where(st.key.in_(chunk)).subquery()
            rows = self.conn.execute(
                select(ranked.c.key, ranked.c.member, ranked.c.size)
                .where(ranked.c.n <= limit).order_by(ranked.c.key, ranked.c.n))
            for key, member, size in rows:
                found.setdefault(key, ([], int(size)))[0].append(member)
        return found

    def store_kinds(self, key: str) -> tuple[str, ...]:
        v, st = t.store_values.c, t.store_sets.c
        held = compiled.execute(
            self.conn, "store_kinds",
            lambda: select(select(v.key).where(v.key == bindparam("k")).exists(),
                           select(st.key).where(st.key == bindparam("k")).exists()),
            {"k": key},
        ).one()
        return tuple(kind for kind, there in zip(("value", "set"), held, strict=True) if there)

    def store_keys(self, prefix: str, limit: int, after: str | None = None) -> list[Row]:
        # Prefix match by range rather than LIKE, so '%' and '_' in keys are not wildcards.
        # The range is the collation's (its index serves it); under a language's (a
        # PostgreSQL set up with en_US.UTF-8 or ICU's), which sets case aside until last,
        # "Results/b" lies between "results/" and "results/" + U+10FFFF: the leading
        # characters are compared too, which an equal collation compares exactly.
        def in_range(col: Any) -> Any:
            where = ((col >= prefix) & (col < prefix + "\U0010ffff")
                     & (func.substr(col, 1, len(prefix)) == prefix)) if prefix \
                else col.isnot(None)
            return where & (col > after) if after is not None else where

        # Ordered and merged by the database, in its own collation, as `after` compares: a
        # merge in Python (code points) disagreed with a PostgreSQL collation sorting "B"
        # before "a", and a page boundary skipped keys. Each side takes its first `limit`
        # keys along its index, then the two are merged.
        v, st = t.store_values.c, t.store_sets.c
        values = (select(v.key, literal("value").label("kind"), v.updated_at.label("at"))
                  .where(in_range(v.key)).order_by(v.key).limit(limit).subquery())
        # One row per set, not per member: a set of a million members is one key.
        sets = (select(st.key, literal("set").label("kind"), func.max(st.added_at).label("at"))
                .where(in_range(st.key)).group_by(st.key).order_by(st.key).limit(limit)
                .subquery())
        both = union_all(select(values), select(sets)).subquery()
        # A key written before the API kept one kind per key may hold a value and a set at
        # once: both are listed, the value first.
        rows = self.conn.execute(select(both.c.key, both.c.kind, both.c.at)
                                 .order_by(both.c.key, both.c.kind.desc()).limit(limit))
        return [{"key": r[0], "kind": r[1], "updated_at": r[2]} for r in rows]


#: How much of a key an error message quotes: a key may be 1,024 characters, and the message
#: is read in a terminal or a log line (the whole key stays in the error's details).
QUOTED_KEY = 80


def _quoted(key: str) -> str:
    """``key`` quoted for a message, one longer than :data:`QUOTED_KEY` cut to end in "…"."""
    return repr(key if len(key) <= QUOTED_KEY else key[:QUOTED_KEY - 1] + "…")
