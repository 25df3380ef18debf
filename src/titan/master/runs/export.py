"""Exporting runs and all their actions (or, on request, the runs alone) as CSV, JSON or
JSON Lines.

Exports stream: runs are read a page at a time and written as they are read, so exporting a
million actions holds one page in memory, not the million. The columns are the ones the Runs
page shows, durations (latency) included, and each run's compliance metadata (who started
it, its retention class, the PII patterns redaction found, when it was archived) and its
ledger head; each action carries its chain hash, so an export can be verified away from
the master (``titan runs verify --export FILE``). JSON is one document (``{"runs": [...]}``, each run
with its ``actions``); JSONL is one object per line, ``{"type": "run", ...}`` then that run's
``{"type": "action", ...}`` lines; CSV is one table, one row per action carrying its run's
columns (:data:`CSV_COLUMNS`), and one row for a run that recorded no action. Without actions
each format holds the runs alone (CSV: one row per run, :data:`RUN_COLUMNS`). An action's inputs and outputs
are exported in full, those kept in the blob store included (read as they are written: an
export is for analysis and compliance, where a 2,000-character preview loses the record);
``inputs_complete``/``outputs_complete`` say false only where a blob could not be read.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any, Protocol

from titan.errors import ValidationFailed
from titan.formats import iso
from titan.master.runs.views import action_view, runs_view, stage_labels
from titan.storage.base import Row, RunQuery, Transaction

FORMATS = {"csv": "text/csv; charset=utf-8", "json": "application/json",
           "jsonl": "application/x-ndjson"}
RUN_COLUMNS = ("id", "agent_id", "agent_version", "replay_of", "status", "started_at",
               "ended_at", "duration_s", "action_count", "cost_usd", "unpriced_calls",
               "success_rate", "error_count", "blocked_count", "replayed_count", "budget_usd",
               "over_budget", "error", "code_version", "tags", "started_by", "retention_class",
               "pii", "archived_at", "chain_head", "chain_start", "ledger_since")
ACTION_COLUMNS = ("run_id", "agent_id", "seq", "id", "parent_id", "actor", "stage", "channel",
                  "name", "ordinal", "outcome", "started_at", "duration_ms", "cost_usd",
                  "cost_source", "model", "input_tokens", "output_tokens", "cached_tokens",
                  "reasoning_tokens", "error_type", "error_message", "inputs", "outputs",
                  "inputs_complete", "outputs_complete", "inputs_hash", "outputs_hash", "tags",
                  "pii", "chain_hash")
#: A run's columns on the rows of a CSV with actions, named as in the runs-only CSV but with
#: ``run_`` in front (an action has its own id, status-like outcome, started_at, cost, tags,
#: pii), except the agent's, which an action has not.
RUN_KEYS = {c: "run_id" if c == "id" else c if c in ("agent_id", "agent_version") else f"run_{c}"
            for c in RUN_COLUMNS}
#: Seed 004: an export "includes runs and all actions". In one CSV table that is a row per
#: action with its run's columns repeated, so each row stands alone in a spreadsheet (filter
#: on run_status, sum cost_usd by run_id); a run with no action still has its row, whose
#: action columns (seq first) are empty.
CSV_COLUMNS = (*RUN_KEYS.values(), *(c for c in ACTION_COLUMNS if c not in ("run_id", "agent_id")))


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, dict | list):
        value = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    if isinstance(value, str) and value[:1] in _FORMULA:
        # Any writer names agents and runs (a job token too): a cell a spreadsheet would
        # read as a formula (=HYPERLINK(...)) is kept as text, as OWASP advises.
        return "'" + value
    return value


_FORMULA = ("=", "+", "-", "@", "\t", "\r")


def _json_cell(value: Any) -> str:
    """An action's inputs or outputs in a CSV cell: always as JSON, so the string "123" and
    the number 123 (or "null" and null) stay apart; empty when there are none. A JSON value
    cannot start as a formula does but for a negative number, which a spreadsheet reads as
    the number it is: no guard."""
    return "" if value is None else json.dumps(value, ensure_ascii=False,
                                               separators=(",", ":"))


class _Reader(Protocol):
    def read_text(self, sha: str) -> str | None: ...


def _full(a: Row, blobs: _Reader | None, stages: frozenset[str]) -> Row:
    """The action as its view shows it, with the payloads kept in the blob store read back."""
    if blobs is not None:
        for side in ("inputs", "outputs"):
            if a[f"{side}_blob"] and a[f"{side}_hash"]:
                text = blobs.read_text(a[f"{side}_hash"])
                if text is not None:
                    a = dict(a, **{side: text, f"{side}_blob": False})
    return action_view(a, stages)


def _run_cells(run: Row) -> Row:
    # Every time a CSV cell holds is ISO 8601 (ledger_since was epoch seconds among them);
    # JSON and JSONL keep the number, which `titan runs verify --export` reads.
    row = dict(run, started_at=iso(run["started_at"]), ended_at=iso(run["ended_at"]),
               archived_at=iso(run["archived_at"]), ledger_since=iso(run.get("ledger_since")))
    return {k: _cell(row.get(k)) for k in RUN_COLUMNS}


def _action_row(v: Row) -> Row:
    usage = v["usage"]
    return {**v, "started_at": iso(v["started_at"]),
            "error_type": (v["error"] or {}).get("type"),
            "error_message": (v["error"] or {}).get("message"),
            **{k: usage.get(k) for k in ("input_tokens", "output_tokens", "cached_tokens",
                                         "reasoning_tokens")}}


def stream(open_tx: Callable[[], AbstractContextManager[Transaction]], q: RunQuery, fmt: str,
           with_actions: bool, blobs: _Reader | None = None) -> Iterator[bytes]:
    """The export as chunks of bytes (read in its own transaction, page by page); ``blobs``:
    where the payloads too large for their row are read from."""
    if fmt not in FORMATS:
        raise ValidationFailed(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    with open_tx() as tx:
        yield from _write(tx, q, fmt, with_actions, blobs)


def _runs(tx: Transaction, q: RunQuery) -> Iterator[Row]:
    # When this database began chaining, on each run, and when the run was created (the
    # master's clock): an action recorded since with no chain hash, or one of a run created
    # since, was stripped of it (titan.ledger_verify), which the file alone could not tell
    # from a run recorded before the ledger existed.
    since = {"ledger_since": tx.chained_since()}
    page: list[Row] = []
    for r in tx.iter_runs(q):
        page.append(r)
        if len(page) == 200:
            yield from _with_ledger(tx, page, since)
            page = []
    yield from _with_ledger(tx, page, since)


def _with_ledger(tx: Transaction, page: list[Row], since: Row) -> Iterator[Row]:
    for r, v in zip(page, runs_view(tx, page, whole_error=True), strict=True):
        yield dict(v, created_at=r["created_at"], **since)


def _csv(tx: Transaction, q: RunQuery, with_actions: bool,
         blobs: _Reader | None) -> Iterator[bytes]:
    buf = io.StringIO()
    own = [c for c in ACTION_COLUMNS if c not in ("run_id", "agent_id")]
    writer = csv.DictWriter(buf, fieldnames=CSV_COLUMNS if with_actions else RUN_COLUMNS,
                            extrasaction="ignore")
    writer.writeheader()
    for run in _runs(tx, q):
        cells = _run_cells(run)
        if not with_actions:
            writer.writerow(cells)
        else:
            of_run = {RUN_KEYS[k]: v for k, v in cells.items()}
            wrote = False
            stages = stage_labels(tx, run)
            for a in tx.iter_actions(run["id"]):
                row = _action_row(_full(a, blobs, stages))
                writer.writerow({**of_run, **{k: _cell(row.get(k)) for k in own},
                                 "inputs": _json_cell(row["inputs"]),
                                 "outputs": _json_cell(row["outputs"])})
                wrote = True
                if buf.tell() > 65_536:
                    yield _drain(buf)
            if not wrote:
                writer.writerow(of_run)  # the run alone: its action columns empty
        if buf.tell() > 65_536:
            yield _drain(buf)
    yield _drain(buf)


def _write(tx: Transaction, q: RunQuery, fmt: str, with_actions: bool,
           blobs: _Reader | None) -> Iterator[bytes]:
    if fmt == "csv":
        yield from _csv(tx, q, with_actions, blobs)
        return
    dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
    if fmt == "jsonl":
        for run in _runs(tx, q):
            yield (dumps({"type": "run", **run}) + "\n").encode()
            if with_actions:
                chunk = []
                stages = stage_labels(tx, run)
                for a in tx.iter_actions(run["id"]):
                    full = _full(a, blobs, stages)
                    chunk.append(dumps({"type": "action", "run_id": run["id"], **full}))
                    if len(chunk) == 500:
                        yield ("\n".join(chunk) + "\n").encode()
                        chunk = []
                if chunk:
                    yield ("\n".join(chunk) + "\n").encode()
        return
    yield b'{"runs":['
    first = True
    for run in _runs(tx, q):
        body = dumps(run)
        if with_actions:
            yield ((b"" if first else b",") + body[:-1].encode() + b',"actions":[')
            page: list[str] = []
            sep = ""
            stages = stage_labels(tx, run)
            for a in tx.iter_actions(run["id"]):
                page.append(dumps(_full(a, blobs, stages)))
                if len(page) == 500:
                    yield (sep + ",".join(page)).encode()
                    page, sep = [], ","
            yield (sep + ",".join(page) if page else "").encode() + b"]}"
        else:
            yield (b"" if first else b",") + body.encode()
        first = False
    yield b"]}\n"


def _drain(buf: io.StringIO) -> bytes:
    data = buf.getvalue().encode()
    buf.seek(0)
    buf.truncate()
    return data
