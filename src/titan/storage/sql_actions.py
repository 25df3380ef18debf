"""SQL for a run's actions (part of :class:`SQLTransaction`, over the runs' SQL): a batch
appended, numbered after the run's last action, chained (:mod:`titan.storage.sql_ledger`) and
added to the run's totals in one transaction; and the actions read back, filtered, paged and
summed by actor.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from typing import Any

from sqlalchemy import and_, bindparam, func, or_, select, text
from sqlalchemy import case as sql_case

from titan.storage import compiled, deferred
from titan.storage import schema as t
from titan.storage.base import ActionQuery, Row, iter_chunks
from titan.storage.rows import json_column
from titan.storage.sql_ledger import chain_batch
from titan.storage.sql_runs import RunsSQL, like

_OUTCOME_COUNTER = {"success": "success_count", "error": "error_count",
                    "blocked": "blocked_count", "replayed": "replayed_count"}
# Columns of the action list: everything but the full payloads' tails (previews are cut by
# the caller's query when they are long).
ACTION_ROW_KEYS = tuple(c.key for c in t.actions.columns)


_KNOWN_IDS_PG = text("SELECT a.id FROM unnest(CAST(:ids AS VARCHAR[])) AS u(id) "
                     "JOIN actions a ON a.run_id = :run_id AND a.id = u.id")
_COPY_ACTIONS = "COPY actions ({}) FROM STDIN".format(", ".join(ACTION_ROW_KEYS))


_KEY_COLON = re.compile(r'"\s*:\s*')
_COMMA_KEY = re.compile(r',\s*"')


def json_forms(text: str) -> list[str]:
    """The spellings of searched ``text`` to look for in inputs and outputs, stored as
    canonical JSON: as typed (the JSON as stored, keys' quotes and all); as a string value
    holds it (quotes, backslashes and line breaks escaped); and as part of JSON text that a
    value holds as a string of its own (an LLM tool call's arguments, an HTTP body), which
    another encoder wrote — letters past ASCII as ``\\uXXXX`` (Python's ``json.dumps``),
    slashes as ``\\/`` (PHP's), quotes escaped inside its strings — and the canonical JSON
    around it escaped again. Text spanning a key and its value is looked for compact
    (``"k":"v"``, the canonical form) and spaced (``"k": "v"``, as the dashboard shows it and
    ``json.dumps`` writes it). A letter written ``\\uXXXX`` has no case the database can
    fold: it is looked for in lower and upper case too."""
    typed = [text]
    if '"' in text:
        compact = _COMMA_KEY.sub(',"', _KEY_COLON.sub('":', text))
        typed += [compact, _COMMA_KEY.sub(', "', compact.replace('":', '": '))]
    forms: dict[str, None] = {}
    for each in typed:
        forms[each] = forms[_in_string(each)] = None
        cases = (each,) if each.isascii() else (each, each.lower(), each.upper())
        for n, case in enumerate(cases):
            for inner in (case, _in_string(case)):  # spanning its structure, or in a string
                # A case made here is needed only written \uXXXX: the database folds the rest.
                spellings = [_past_ascii(inner)] + ([inner] if n == 0 else [])
                for spelled in spellings + [s.replace("/", "\\/") for s in spellings]:
                    forms[_in_string(spelled)] = None
    return list(forms)


def _in_string(text: str) -> str:
    """``text`` as a JSON string holds it, without its quotes."""
    return json.dumps(text, ensure_ascii=False)[1:-1]


def _past_ascii(text: str) -> str:
    """``text`` with its letters past ASCII written ``\\uXXXX``, as ``json.dumps`` does."""
    return text if text.isascii() else "".join(
        c if c.isascii() else json.dumps(c)[1:-1] for c in text)


def _copy_actions(conn: Any, rows: list[Row]) -> None:
    """PostgreSQL: append action rows with COPY, in the caller's transaction. A batch of
    actions is the master's largest write; COPY takes it about three times as fast as a
    multi-row INSERT (the issue 17 measurement: 20.6k against 6.9k rows/s)."""
    deferred.send(conn)  # COPY goes around SQLAlchemy, and its hook: what is queued goes first
    raw = conn.connection.driver_connection  # the psycopg connection under this transaction
    with raw.cursor() as cur, cur.copy(_COPY_ACTIONS) as copy:
        for r in rows:
            copy.write_row([r.get(k) for k in ACTION_ROW_KEYS])


def _action_out(row: Any) -> Row:
    out = dict(row._mapping)
    where = f"action {out.get('run_id')}#{out.get('seq')}"
    out["tags"] = json_column(out.get("tags"), f"the tags of {where}")
    out["pii"] = json_column(out.get("pii"), f"the PII counts of {where}")
    out["inputs_blob"] = bool(out["inputs_blob"])
    out["outputs_blob"] = bool(out["outputs_blob"])
    return out


class ActionsSQL(RunsSQL):
    # -- actions ------------------------------------------------------------------------------
    def known_action_ids(self, run_id: str, ids: Sequence[str]) -> set[str]:
        found: set[str] = set()
        if self.conn.dialect.name == "postgresql":
            # One array parameter joined as a set, not `id = ANY(:ids)`: PostgreSQL hashes an
            # IN list only when it is a constant, so with a parameter each of the run's rows
            # was compared with every id of the batch (140 ms for 1,000 ids against a
            # 30,000-action run: ingestion stalled near 7,000 actions/s); the join hashes the
            # batch whatever plan the young table's statistics give.
            rows = self.conn.execute(_KNOWN_IDS_PG, {"ids": list(ids), "run_id": run_id})
            return {r[0] for r in rows}
        for chunk in iter_chunks(list(ids), 500):
            rows = self.conn.execute(select(t.actions.c.id).where(
                t.actions.c.run_id == run_id, t.actions.c.id.in_(chunk)))
            found.update(r[0] for r in rows)
        return found

    def insert_actions(self, run_id: str, rows: Sequence[Row], now: float,
                       run: Row | None = None) -> Row:
        """Append actions to a run, numbering them after its last one, and add them to the
        run's totals. Returns the run's new totals and the first seq given out."""
        if not rows:
            return {"first_seq": None}
        counts = {"action_count": len(rows)}
        for r in rows:
            key = _OUTCOME_COUNTER[r["outcome"]]
            counts[key] = counts.get(key, 0) + 1
        cost = sum(r["cost_usd"] or 0.0 for r in rows)
        unpriced = sum(1 for r in rows if r["channel"] == "llm" and r["cost_usd"] is None)
        if unpriced:
            counts["unpriced_calls"] = unpriced
        last = max(r["started_at"] + r["duration_ns"] / 1e9 for r in rows)
        c = t.agent_runs.c
        values: dict[str, Any] = {k: getattr(c, k) + v for k, v in counts.items()}
        values["cost_usd"] = c.cost_usd + cost
        values["last_action_at"] = func.max(func.coalesce(c.last_action_at, 0.0), last) \
            if self.conn.dialect.name == "sqlite" else \
            func.greatest(func.coalesce(c.last_action_at, 0.0), last)
        encoded, total = chain_batch(self.conn, run_id, rows, now, values,
                                     run or self.get_run(run_id), self.get_run)
        first = encoded[0]["seq"]
        for row in encoded:
            row["tags"] = json.dumps(row["tags"]) if row.get("tags") is not None else None
            row["pii"] = json.dumps(row["pii"]) if row.get("pii") else None
        if self.conn.dialect.name == "postgresql":
            _copy_actions(self.conn, encoded)
        else:
            compiled.execute(
                self.conn, "insert_actions",
                lambda: t.actions.insert().values({k: bindparam(k) for k in ACTION_ROW_KEYS}),
                [{k: r.get(k) for k in ACTION_ROW_KEYS} for r in encoded])
        return {"first_seq": first, "action_count": int(total[0]), "cost_usd": float(total[1])}

    def _action_conditions(self, run_id: str, q: ActionQuery) -> list[Any]:
        a = t.actions.c
        conds: list[Any] = [a.run_id == run_id]
        if q.outcomes:
            conds.append(a.outcome.in_(list(q.outcomes)))
        if q.search:
            pattern = like(q.search)
            found = [a.name.ilike(pattern, escape="\\"), a.actor.ilike(pattern, escape="\\"),
                     a.error_message.ilike(pattern, escape="\\")]
            for form in json_forms(q.search):
                found += [a.inputs.ilike(like(form), escape="\\"),
                          a.outputs.ilike(like(form), escape="\\")]
            conds.append(or_(*found))
        if q.actor:
            conds.append(a.actor == q.actor)
        if q.channel:
            conds.append(a.channel == q.channel)
        if q.ids is not None:
            conds.append(a.id.in_(list(q.ids)))
        return conds

    def list_actions(self, run_id: str, q: ActionQuery, limit: int,
                     offset: int = 0, preview: int = 0) -> tuple[list[Row], int]:
        """Actions in seq order, and how many match. ``preview`` > 0 cuts inputs, outputs and
        the error message to that many characters in the database (a page of a long run ships
        no payloads)."""
        a = t.actions.c
        conds = self._action_conditions(run_id, q)
        matched = self.conn.execute(
            select(func.count()).select_from(t.actions).where(*conds)).scalar_one()
        if q.after is not None:
            conds.append(a.seq > q.after)
        cols: list[Any] = list(t.actions.columns)
        if preview:
            cols = [func.substr(col, 1, preview).label(col.key)
                    if col.key in ("inputs", "outputs", "error_message") else col
                    for col in cols]
            # How long the error was, so that its preview can say what it leaves out (the
            # payloads' sizes are columns of their own).
            cols.append(func.length(a.error_message).label("error_length"))
        rows = self.conn.execute(select(*cols).where(*conds).order_by(a.seq)
                                 .limit(limit).offset(offset))
        return [_action_out(r) for r in rows], int(matched)

    def iter_actions(self, run_id: str, batch: int = 1000, after: int = 0) -> Iterator[Row]:
        a = t.actions.c
        while True:
            # Fetched whole before anything is made of them: a row that fails to convert
            # must not leave the cursor open (it pinned a pooled SQLite connection's read
            # snapshot: later reads on it saw the database as it was).
            rows = [_action_out(r) for r in self.conn.execute(
                select(t.actions).where(a.run_id == run_id, a.seq > after)
                .order_by(a.seq).limit(batch)).all()]
            yield from rows
            if len(rows) < batch:
                return
            after = rows[-1]["seq"]

    def recorded_actions(self, run_id: str, actor: str, after: int, limit: int) -> list[Row]:
        a = t.actions.c
        rows = self.conn.execute(
            select(t.actions).where(a.run_id == run_id, a.seq > after, or_(
                a.actor == actor, a.actor.like(like(actor + "/")[1:], escape="\\")))
            .order_by(a.seq).limit(limit))
        return [_action_out(r) for r in rows]

    def get_action(self, run_id: str, seq: int) -> Row | None:
        row = self.conn.execute(select(t.actions).where(
            t.actions.c.run_id == run_id, t.actions.c.seq == seq)).first()
        return _action_out(row) if row else None

    def action_breakdown(self, run_id: str) -> list[Row]:
        """Per actor and channel: action count, cost, time, errors — the run's cost by actor
        and (actors being ``STAGE/job``) by stage."""
        a = t.actions.c
        rows = self.conn.execute(
            select(a.actor, a.channel, func.count(), func.sum(a.cost_usd),
                   func.sum(a.duration_ns),
                   func.sum(func.coalesce(a.input_tokens, 0)),
                   func.sum(func.coalesce(a.output_tokens, 0)),
                   # LLM calls of no known price, as the run's unpriced_calls counts them: a
                   # row's cost is then a lower bound, not what it cost.
                   func.sum(sql_case((and_(a.channel == "llm", a.cost_usd.is_(None)), 1), else_=0)))
            .where(a.run_id == run_id).group_by(a.actor, a.channel).order_by(a.actor, a.channel))
        return [{"actor": r[0], "channel": r[1], "actions": int(r[2]),
                 "cost_usd": float(r[3] or 0.0), "duration_ns": int(r[4] or 0),
                 "input_tokens": int(r[5] or 0), "output_tokens": int(r[6] or 0),
                 "unpriced_calls": int(r[7] or 0)}
                for r in rows]
