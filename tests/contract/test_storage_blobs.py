"""What blob garbage collection asks of storage, on SQLite and PostgreSQL: when a blob was
last stored or used, which recorded blobs are stale, every name the database holds (driven by
``storage/blob_refs.py``'s own list, so a reference added there is tested here), and
forgetting only what is still stale."""

from __future__ import annotations

import hashlib
import itertools
import json
from typing import Any

import pytest
import sqlalchemy as sa

from tests.contract import test_storage as base
from titan.storage import Storage, blob_refs
from titan.storage import schema as t
from titan.storage.blob_refs import REFERENCES, Mentioned, Named

storage = base.storage  # the parametrised SQLite/PostgreSQL fixture (emptied per test)
_n = itertools.count(1)


def name() -> str:
    return hashlib.sha256(f"blob {next(_n)}".encode()).hexdigest()


def test_a_blob_counts_as_used_when_stored_again_or_vouched_for(storage: Storage) -> None:
    a, b, old = name(), name(), name()
    with storage.transaction() as tx:
        tx.add_blob(a, 10, 1000.0)
        tx.add_blob(b, 20, 1000.0)
        # A blob recorded before used_at existed: its creation is its last use.
        tx.conn.execute(t.blobs.insert().values(sha256=old, size=5, created_at=500.0))  # type: ignore[attr-defined]
    with storage.transaction() as tx:
        assert dict(tx.stale_blobs(1001.0)) == {a: 10, b: 20, old: 5}
        assert dict(tx.stale_blobs(999.0)) == {old: 5}
        tx.add_blob(a, 10, 1030.0)  # within a minute of its last use: not written again
    with storage.transaction() as tx:
        assert a in dict(tx.stale_blobs(1001.0))
        tx.add_blob(a, 10, 2000.0)
        assert tx.use_blobs([b, old, name()], 3000.0) == {b, old}
    with storage.transaction() as tx:
        assert dict(tx.stale_blobs(1999.0)) == {}
        assert dict(tx.stale_blobs(2001.0)) == {a: 10}
        assert dict(tx.stale_blobs(3001.0)) == {a: 10, b: 20, old: 5}
        assert tx.blobs_present([a, b, old]) == {a, b, old}


def test_stale_blobs_come_a_page_at_a_time(storage: Storage,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(blob_refs, "PAGE", 2)
    names = sorted(name() for _ in range(5))
    with storage.transaction() as tx:
        for i, sha in enumerate(names):
            tx.add_blob(sha, i, 100.0)
    with storage.transaction() as tx:
        assert list(tx.stale_blobs(200.0)) == [(sha, i) for i, sha in enumerate(names)]


def test_only_blobs_still_stale_are_forgotten(storage: Storage) -> None:
    a, b, c = name(), name(), name()
    with storage.transaction() as tx:
        for sha in (a, b, c):
            tx.add_blob(sha, 7, 100.0)
        tx.add_blob(b, 7, 500.0)  # used again since the collection chose it
    with storage.transaction() as tx:
        assert tx.delete_blobs([a, b, name()], before=200.0) == [(a, 7)]
    with storage.transaction() as tx:
        assert tx.blobs_present([a, b, c]) == {b, c}


# -- every reference ----------------------------------------------------------------------

def _filled(table: sa.Table, values: dict[str, Any], parents: dict[str, Any]) -> dict[str, Any]:
    """``values``, with what the table's other required columns need (parents for foreign
    keys, a fresh value for anything else)."""
    row = dict(values)
    key = list(table.primary_key.columns)
    for c in table.columns:
        if c.key in row or c.nullable or c.default is not None \
                or c.server_default is not None:
            continue
        if c.primary_key and len(key) == 1 and isinstance(c.type, sa.Integer):
            continue  # assigned by the database
        fk = next(iter(c.foreign_keys), None)
        n = next(_n)
        if fk is not None:
            row[c.key] = parents[fk.column.table.name]
        elif isinstance(c.type, sa.Boolean):
            row[c.key] = False
        elif isinstance(c.type, sa.Integer):
            row[c.key] = n
        elif isinstance(c.type, sa.Float):
            row[c.key] = float(n)
        else:
            row[c.key] = f"v{n}"
    return row


def _references(storage: Storage) -> set[str]:
    with storage.read_transaction() as tx:
        return set(tx.blob_references())


def test_every_reference_the_list_names_is_found(storage: Storage,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    kept: set[str] = set()
    not_kept: set[str] = set()
    with storage.transaction() as tx:
        conn = tx.conn  # type: ignore[attr-defined]
        parents: dict[str, Any] = {"agent_runs": "run-parent", "evaluations": "eval-parent"}
        conn.execute(t.agent_runs.insert().values(_filled(t.agent_runs, {"id": "run-parent"},
                                                          parents)))
        conn.execute(t.evaluations.insert().values(
            _filled(t.evaluations, {"id": "eval-parent"}, parents)))
        parents["dags"] = conn.execute(t.dags.insert().values(_filled(t.dags, {}, parents))
                                       .returning(t.dags.c.id)).scalar_one()

        def insert(table: sa.Table, values: dict[str, Any]) -> None:
            conn.execute(table.insert().values(_filled(table, values, parents)))

        for ref in REFERENCES:
            table = ref.column.table
            for _ in range(3):  # more rows than a page holds, below
                sha = name()
                if isinstance(ref, Named):
                    if table is t.files:
                        tx.add_blob(sha, 1, 1.0)
                    insert(table, {ref.column.key: sha,
                                   **({ref.when.key: True} if ref.when is not None else {})})
                    kept.add(sha)
                    if ref.when is not None:  # the same column, on a row where it is no blob
                        other = name()
                        insert(table, {ref.column.key: other, ref.when.key: False})
                        not_kept.add(other)
                else:
                    assert isinstance(ref, Mentioned)
                    insert(table, {ref.column.key: json.dumps(
                        {"deep": ["x", {"under": f"sha256:{sha}"}]})})
                    kept.add(sha)
        # Where no reference is read: a log line, an inline payload's hash.
        not_kept.add(stray := name())
        insert(t.actions, {"inputs": json.dumps({"x": stray}), "inputs_hash": stray,
                           "inputs_blob": False})
    found = _references(storage)
    assert kept <= found, f"references not found: {sorted(kept - found)[:3]}"
    assert not found & not_kept
    # Page by page along each primary key (one column or several), the same names.
    monkeypatch.setattr(blob_refs, "PAGE", 2)
    monkeypatch.setattr(blob_refs, "TEXT_PAGE", 2)
    assert _references(storage) == found
