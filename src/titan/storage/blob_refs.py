"""Every place the database names a blob: the one list blob garbage collection keeps blobs by.

A blob is deleted (``master/blob_gc.py``) only when none of :data:`REFERENCES` names it, so a
column that comes to hold a blob's sha256 must be added here in the same change, or live
data goes. ``tests/unit/test_blob_refs.py`` fails on a text column, or one whose name says
``sha``/``hash``, that is in neither this list nor :data:`NOT_REFERENCES`.

Two kinds of reference:

- :class:`Named`: the column holds a blob's sha256 itself (where its ``when`` column is true);
- :class:`Mentioned`: a text column (JSON, or a user's string) in which *any* sha256-shaped
  string (64 lowercase hex digits) keeps the blob of that name. Conservative on purpose: a
  job's environment, a schedule's jobs, a run's recorded code hold blob names at depths and
  under keys that change with the features that write them, and a hash that names no blob
  keeps nothing.

What is not in the database is the collector's to protect, not this list's: a blob uploaded a
moment ago and not yet named (its grace period), a write in flight that named one
(``master/scheduling/blob_holds.py``), a store write whose row is not committed yet
(``storage/blobs/gate.py``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Column, Connection, Table, literal, or_, select, tuple_

from titan.storage import schema as t

#: What a blob's name looks like inside a text.
SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class Named:
    """A column holding a blob's sha256 (on rows where ``when``, a boolean column, is true)."""

    column: Column[Any]
    why: str
    when: Column[Any] | None = None


@dataclass(frozen=True)
class Mentioned:
    """A text column in which any sha256-shaped string names a blob to keep."""

    column: Column[Any]
    why: str


REFERENCES: tuple[Named | Mentioned, ...] = (
    Named(t.jobs.c.script_sha256, "a job's script, or an archive job's pinned project zip: "
                                  "fetched by the worker that runs it, and by any retry, "
                                  "however old the job"),
    Mentioned(t.jobs.c.env, "a job's environment: the agent script a coding evaluation's job "
                            "fetches (TITAN_EVAL_AGENT), a replay's settings (TITAN_REPLAY)"),
    Mentioned(t.jobs.c.args, "a job's arguments: a blob's name handed to the script"),
    Named(t.files.c.sha256, "a named file: uploaded (PUT /files), a project archive, or an "
                            "artifact published under a store key (publish_artifact)"),
    Named(t.actions.c.inputs_hash, "a recorded action's inputs past the inline limit: the "
                                   "column keeps a preview, the blob the whole value",
          when=t.actions.c.inputs_blob),
    Named(t.actions.c.outputs_hash, "a recorded action's outputs past the inline limit",
          when=t.actions.c.outputs_blob),
    Mentioned(t.agent_runs.c.code, "a run's recorded code (driver script and files), which "
                                   "a replay lays out again"),
    Mentioned(t.agent_runs.c.replay, "a replay's settings: the outputs it overrides, stored "
                                     "as blobs"),
    Mentioned(t.schedules.c.jobs, "the jobs a schedule submits at each tick, their scripts"),
    Mentioned(t.evaluations.c.agent, "an evaluation's agent: its script (script_sha256)"),
    Mentioned(t.eval_runs.c.agent, "the agent an evaluation run used, which a re-run uses "
                                   "again"),
    Mentioned(t.eval_tasks.c.seed, "an evaluation task as loaded"),
    Mentioned(t.meta.c.value, "the master's own records: the blob store mark the leader "
                              "leaves (master/blob_mark.py)"),
    Mentioned(t.store_values.c.value, "TitanStore values: a job may share a blob's name "
                                      "there for another to fetch"),
    Mentioned(t.store_sets.c.member, "TitanStore set members, likewise"),
)

#: Text and hash columns that name no blob, and why (each checked against the schema).
NOT_REFERENCES: dict[str, str] = {
    **dict.fromkeys(("blobs.sha256", "blob_chunks.sha256"), "the blob store's own record"),
    **dict.fromkeys(("actions.inputs", "actions.outputs", "actions.error_message",
                     "actions.tags", "actions.pii", "agent_runs.error", "agent_runs.tags",
                     "agent_runs.started_by", "agent_runs.pii", "eval_runs.error_detail",
                     "eval_runs.final_response", "eval_runs.messages",
                     "eval_runs.raw_response", "eval_runs.soft_warnings", "eval_runs.world",
                     "eval_runs.by_source", "eval_runs.judge", "eval_runs.criteria",
                     "eval_runs.coding", "eval_calls.ops", "eval_calls.violations",
                     "eval_calls.state", "log_lines.line"),
                    "what was recorded or said: history, which nothing fetches a blob by "
                    "(a payload's own blob is its *_hash column's)"),
    **dict.fromkeys(("actions.inputs_hash", "actions.outputs_hash"),
                    "a payload's hash, a blob's name only where *_blob is true (above)"),
    **dict.fromkeys(("actions.chain_hash", "agent_runs.chain_head"), "the run ledger's chain"),
    **dict.fromkeys(("eval_runs.token_hash", "tokens.token_hash"), "a token's hash"),
    **dict.fromkeys(("jobs.parents", "jobs.hitl_message", "jobs.decision_comment", "jobs.decisions",
                     "jobs.service", "jobs.service_status", "jobs.reason", "jobs.error",
                     "attempts.error", "schedule_fires.error", "evaluations.description",
                     "workers.capabilities"),
                    "names, settings and messages of the scheduler and evaluations"),
    "idempotency_keys.result": "a write's answer, repeated to a client that sends it again; "
                               "it names what that write stored, which its own row keeps",
}

#: Rows read per query: pages of large texts (store values, recorded code) are smaller.
PAGE = 5000
TEXT_PAGE = 200


def referenced(conn: Connection) -> Iterator[str]:
    """Every blob name the database holds (a name as often as it is found), table by table,
    a page at a time along each table's primary key: the scan never holds a table whole."""
    tables: dict[Table, list[Named | Mentioned]] = {}
    for ref in REFERENCES:
        tables.setdefault(ref.column.table, []).append(ref)
    for table, refs in tables.items():
        yield from _scan(conn, table, refs)


def _scan(conn: Connection, table: Table, refs: list[Named | Mentioned]) -> Iterator[str]:
    key = list(table.primary_key.columns)
    wanted = {c.key: c for c in [*key, *(r.column for r in refs),
                                 *(r.when for r in refs if isinstance(r, Named) and r.when is not None)]}
    page = TEXT_PAGE if any(isinstance(r, Mentioned) for r in refs) else PAGE
    where = []
    whens = [r.when for r in refs if isinstance(r, Named)]
    if whens and all(w is not None for w in whens) and len(whens) == len(refs):
        where.append(or_(*[w.is_(True) for w in whens if w is not None]))
    last: tuple[Any, ...] | None = None
    while True:
        q = select(*wanted.values()).where(*where).order_by(*key).limit(page)
        if last is not None:
            q = q.where(tuple_(*key) > tuple_(*(literal(v) for v in last))) if len(key) > 1 \
                else q.where(key[0] > last[0])
        rows = [r._mapping for r in conn.execute(q)]
        for row in rows:
            for ref in refs:
                value = row[ref.column.key]
                if not value:
                    continue
                if isinstance(ref, Named):
                    if ref.when is None or row[ref.when.key]:
                        yield str(value)
                else:
                    yield from SHA256.findall(str(value))
        if len(rows) < page:
            return
        last = tuple(rows[-1][c.key] for c in key)
