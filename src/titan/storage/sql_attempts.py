"""SQL for a job's attempts and their log lines (part of :class:`SQLTransaction`)."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Any

from sqlalchemy import Connection, bindparam, func, select

from titan.storage import compiled
from titan.storage import schema as t
from titan.storage.base import Row


def _finish_attempt(keys: tuple[str, ...]) -> Any:
    a = t.attempts.c
    return t.attempts.update() \
        .where(a.job == bindparam("pk_job"), a.attempt == bindparam("pk_attempt")) \
        .values({k: bindparam("v_" + k) for k in keys})


class AttemptsSQL:
    conn: Connection
    insert: Any  # the dialect's insert() with ON CONFLICT support

    def insert_attempts(self, rows: Sequence[Row]) -> None:
        shapes: dict[tuple[str, ...], list[Row]] = {}
        for row in rows:
            shapes.setdefault(tuple(sorted(row)), []).append(row)
        for keys, same in shapes.items():
            compiled.write(
                self.conn, ("insert_attempt", keys),
                partial(self._insert_attempt, keys),
                same,
            )

    def _insert_attempt(self, keys: tuple[str, ...]) -> Any:
        return self.insert(t.attempts).values({k: bindparam(k) for k in keys}) \
            .on_conflict_do_nothing()

    def finish_attempts(self, outcomes: Sequence[tuple[int, int, Row]]) -> None:
        shapes: dict[tuple[str, ...], list[Row]] = {}
        for job, attempt, fields in outcomes:
            shapes.setdefault(tuple(sorted(fields)), []).append(
                {"pk_job": job, "pk_attempt": attempt,
                 **{"v_" + k: v for k, v in fields.items()}})
        for keys, params in shapes.items():
            compiled.write(
                self.conn, ("finish_attempt", keys),
                partial(_finish_attempt, keys),
                params,
            )

    def attempts_of(self, job: int) -> list[Row]:
        rows = compiled.execute(
            self.conn, "attempts_of",
            lambda: select(t.attempts).where(t.attempts.c.job == bindparam("j"))
            .order_by(t.attempts.c.attempt),
            {"j": job})
        return [dict(r._mapping) for r in rows]

    def add_log_lines(self, rows: Sequence[Row]) -> None:
        if rows:
            if any("continues" not in r for r in rows):
                rows = [{"continues": False, **r} for r in rows]
            cols = ("job", "attempt", "seq", "stream", "ts", "line", "continues")
            compiled.write(
                self.conn, "add_log_lines",
                lambda: self.insert(t.log_lines).values({k: bindparam(k) for k in cols})
                .on_conflict_do_nothing(),
                rows,
            )

    def log_lines(self, job: int, attempt: int, after: int = 0, limit: int = 10_000,
                  *, tail: bool = False, max_bytes: int | None = None) -> list[Row]:
        seq = t.log_lines.c.seq
        where = [t.log_lines.c.job == job, t.log_lines.c.attempt == attempt, seq > after]
        if max_bytes is not None:
            # The lines' sizes first, then only the lines that fit: a line is up to 64 KiB,
            # and reading `limit` of them whole to cut them after (or PostgreSQL's driver
            # holding the whole result) is the memory the cap is there to bound.
            # Stepped row by row and left at the first that does not fit: SQLite then reads
            # no further (a length() reads the whole line), so a page costs its own lines.
            sizes = self.conn.execute(
                select(seq, func.length(t.log_lines.c.line)).where(*where)
                .order_by(seq.desc() if tail else seq).limit(limit))
            total, last = 0, None
            with sizes:
                for n, size in sizes:
                    total += size or 0
                    if last is not None and total > max_bytes:
                        break
                    last = n
            if last is None:
                return []
            where.append(seq >= last if tail else seq <= last)
        rows = self.conn.execute(
            select(seq, t.log_lines.c.stream, t.log_lines.c.ts, t.log_lines.c.line,
                   t.log_lines.c.continues)
            .where(*where)
            .order_by(seq.desc() if tail else seq)
            .limit(limit)
        )
        # ``continues`` only where a line goes on in the next (rare): not on every line.
        out = [{"seq": r[0], "stream": r[1], "ts": r[2], "line": r[3], "continues": True}
               if r[4] else {"seq": r[0], "stream": r[1], "ts": r[2], "line": r[3]}
               for r in rows]
        return out[::-1] if tail else out
