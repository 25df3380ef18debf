"""A batch of actions appended to a run: prepared off the event loop, stored in one commit.

:func:`prepare_batch` validates, redacts and canonicalises a batch in a pool thread; then
:func:`append_batch`, in the writer's transaction, numbers the actions not recorded before,
chains them and adds them to the run's totals, merges the PII they held into the run and
checks its budget. The run service runs both, then publishes what was recorded.
"""

from __future__ import annotations

from typing import Any

from titan import ledger
from titan.errors import NotFound, ValidationFailed
from titan.master.runs import compliance
from titan.master.runs import ingest as action_input
from titan.master.runs.budgets import check_budget
from titan.redaction import Redactor, merge
from titan.storage.base import Row, Transaction
from titan.storage.blobs import BlobStore

INLINE_BYTES = ledger.INLINE_BYTES  # inputs/outputs larger than this go to the blob store


def prepare_batch(body: Any, now: float, redactor: Redactor | None,
                  store: BlobStore) -> list[Row]:
    """Validate and canonicalise a batch (off the event loop: a 10,000-action batch is
    tens of milliseconds of work); oversized payloads are written to the blob store. The
    ledger's content hashes too, off the writer thread, which only links them."""
    rows = action_input.parse_actions(body)
    for r in rows:
        blobs = []
        texts = compliance.redact_action(redactor, r)  # before anything is hashed
        for side in ("inputs", "outputs"):
            cols, data = action_input.payload(r[side], INLINE_BYTES, texts[side])
            if side == "outputs" and r["outputs"] is None and r["outcome"] != "success":
                cols.update(text=None, hash=None, size=0)
            r[side], r[f"{side}_hash"] = cols["text"], cols["hash"]
            r[f"{side}_size"], r[f"{side}_blob"] = cols["size"], cols["blob"]
            if data is not None:
                blobs.append((store.write_bytes(data), len(data)))
        r["_blobs"] = blobs
        r["recorded_at"] = now
        if r["ordinal"] is not None:
            r["_content"] = ledger.content(r)
    return rows


def append_batch(tx: Transaction, run_id: str, rows: list[Row],
                 now: float) -> tuple[Row, Row, list[Row], int]:
    """Append the prepared ``rows`` to the run (those already recorded are left out); the run
    before and after, the actions appended and the seq of the first."""
    run = tx.get_run(run_id)
    if run is None:
        raise NotFound(f"no agent run {run_id!r}; create it first with POST /api/v1/runs")
    before = dict(run)
    # Copies: the writer may run this again alone if a neighbour in its batch failed.
    known = tx.known_action_ids(run_id, [r["id"] for r in rows])
    fresh = [dict(r) for r in rows if r["id"] not in known]
    if any(r["ordinal"] is None for r in fresh):
        fill_ordinals(tx, run_id, fresh)
    for r in fresh:
        for sha, size in r["_blobs"]:
            tx.add_blob(sha, size, now)
    result = tx.insert_actions(run_id, fresh, now, run)
    after = tx.get_run(run_id)
    assert after is not None
    found = compliance.batch_pii(fresh)
    if found:  # the run row is locked by the insert: no lost update
        after["pii"] = merge(dict(after.get("pii") or {}), found)
        tx.update_run(run_id, {"pii": after["pii"]})
    check_budget(tx, after, now)
    return before, after, fresh, result.get("first_seq") or 0


def fill_ordinals(tx: Transaction, run_id: str, rows: list[Row]) -> None:
    """Number actions sent without an ordinal after the run's existing ones of the same key
    (only clients that do not number their own calls pay for this scan)."""
    counts: dict[tuple[str, str, str], int] = {}
    for a in tx.iter_actions(run_id):
        key = (a["actor"], a["channel"], a["name"])
        counts[key] = max(counts.get(key, 0), a["ordinal"] + 1)
    for r in rows:
        key = (r["actor"], r["channel"], r["name"])
        if r["ordinal"] is None:
            r["ordinal"] = ordinal = counts.get(key, 0)
            if ordinal > action_input.MAX_ORDINAL:
                raise ValidationFailed(
                    f"invalid action batch: the action {r['name']!r} of {r['actor']!r} has no "
                    f"ordinal, and the next is past {action_input.MAX_ORDINAL}")
        counts[key] = max(counts.get(key, 0), r["ordinal"] + 1)
