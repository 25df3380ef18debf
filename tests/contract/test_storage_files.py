"""Deleting named files in storage, on SQLite and PostgreSQL alike: every version of a name or
store key, and the old versions retention may delete (neither the newest of their name nor
the newest published under their key; stored before a cutoff, or published by a DAG run
since pruned), checked again when they are deleted."""

from __future__ import annotations

from tests.contract import test_storage as base
from titan.storage import Storage
from titan.storage.base import Transaction

storage = base.storage  # the parametrised SQLite/PostgreSQL fixture (emptied per test)


def add(tx: Transaction, name: str, at: float, key: str | None = None,
        dag_id: int | None = None, size: int = 10) -> int:
    return tx.add_file({"name": name, "sha256": "a" * 64, "size": size, "store_key": key,
                        "dag_id": dag_id, "job": None, "created_at": at})


def test_versions_and_what_retention_may_delete(storage: Storage) -> None:
    with storage.transaction() as tx:
        tx.add_blob("a" * 64, 10, 1.0)
        kept_dag = tx.insert_dag(base.dag_row("etl", 2))
        gone_dag = tx.insert_dag(base.dag_row("etl", 1))
        r1 = add(tx, "report.md", 10.0, key="r:1", dag_id=kept_dag)
        r2 = add(tx, "report.md", 20.0, dag_id=gone_dag, size=20)
        r3 = add(tx, "report.md", 30.0, key="r:1", dag_id=kept_dag)  # newest of both
        notes = add(tx, "notes.txt", 5.0)  # alone: the newest of its name
        # Old under its key, but the newest of its name: GET /files/model.bin serves it.
        model = add(tx, "model.bin", 1.0, key="m", dag_id=gone_dag)
        other = add(tx, "other.bin", 2.0, key="m")
        # The newest of its name, not under its key (another artifact's name reused it).
        add(tx, "x.bin", 3.0, key="k1")
        k2 = add(tx, "x.bin", 4.0, key="k2")
    with storage.transaction() as tx:
        assert [r["id"] for r in tx.file_versions(name="report.md")] == [r1, r2, r3]
        assert [r["id"] for r in tx.file_versions(store_key="r:1")] == [r1, r3]
        assert tx.file_versions(name="nope") == []
        first = tx.file_versions(name="report.md")[0]
        assert (first["sha256"], first["size"], first["store_key"]) == ("a" * 64, 10, "r:1")
        # Only report.md's first two are old versions; x.bin's first is the newest under k1.
        assert tx.prunable_files(before=100.0) == [r1, r2]
        assert tx.prunable_files(before=15.0) == [r1]
        assert tx.prunable_files(before=100.0, after=r1) == [r2]
        assert tx.prunable_files(before=100.0, limit=1) == [r1]
        assert tx.prunable_files() == []  # neither reason given: nothing
        assert tx.prunable_files(orphaned=True) == []  # every DAG still there
        tx.delete_dags([gone_dag])
    with storage.transaction() as tx:
        # r2's run is gone; model.bin's too, but it is the newest of its name.
        assert tx.prunable_files(orphaned=True) == [r2]
        assert tx.prunable_files(orphaned=True, before=15.0) == [r1, r2]
        # Checked again when deleted: the newest stays whatever the ids given.
        assert tx.delete_files([r1, r3, notes, model, other, k2], old_only=True) == [
            {"id": r1, "name": "report.md", "size": 10}]
    with storage.transaction() as tx:
        assert [r["id"] for r in tx.file_versions(name="report.md")] == [r2, r3]
        assert [r["id"] for r in tx.delete_files([r3])] == [r3]
    with storage.transaction() as tx:
        # The version left is the newest now: retention no longer may delete it.
        assert tx.latest_file(name="report.md")["id"] == r2
        assert tx.delete_files([r2], old_only=True) == []
        assert tx.latest_file(store_key="r:1") is None
        assert tx.delete_files([]) == []


def test_many_versions_go_in_chunks(storage: Storage) -> None:
    with storage.transaction() as tx:
        tx.add_blob("a" * 64, 10, 1.0)
        ids = [add(tx, "log.txt", float(i)) for i in range(1, 1202)]
    with storage.transaction() as tx:
        assert tx.prunable_files(before=1e9, limit=2000) == ids[:-1]
        assert len(tx.delete_files(ids, old_only=True)) == 1200
    with storage.transaction() as tx:
        assert [r["id"] for r in tx.file_versions(name="log.txt")] == [ids[-1]]


def test_deleting_a_value_leaves_the_set_of_its_key(storage: Storage) -> None:
    with storage.transaction() as tx:
        tx.store_put("k", "v", 1.0)
        tx.store_sadd("k", "member", 1.0)
        assert tx.store_delete_value("k") is True
        assert tx.store_delete_value("k") is False
        assert tx.store_get("k") is None and tx.store_smembers("k") == ["member"]


def test_a_name_stored_decomposed_is_found_by_either_form(storage: Storage) -> None:
    # Names are stored composed (NFC) since uploads compose them; one stored before, as macOS
    # wrote it ('cafe\u0301.txt'), still resolves, by either form, and is one file with the
    # composed versions that followed it. No migration rewrites it.
    composed, decomposed = "caf\u00e9.txt", "cafe\u0301.txt"
    with storage.transaction() as tx:
        tx.add_blob("a" * 64, 10, 1.0)
        old = add(tx, decomposed, 1.0, key="c")
        new = add(tx, composed, 2.0)
        add(tx, "cafe.txt", 3.0)  # no accent: another name
    with storage.transaction() as tx:
        for name in (composed, decomposed):
            newest = tx.latest_file(name=name)
            assert newest is not None and newest["id"] == new
            assert [r["id"] for r in tx.file_versions(name=name)] == [old, new]
        only_old = tx.latest_file(name=composed, sha256="a" * 64)
        assert only_old is not None and only_old["id"] == new
        assert tx.latest_file(store_key="c")["id"] == old  # type: ignore[index]


def test_each_version_keeps_who_stored_it(storage: Storage) -> None:
    with storage.transaction() as tx:
        tx.add_blob("a" * 64, 10, 1.0)
        before = add(tx, "notes.txt", 1.0)  # as stored before migration 28: nobody recorded
        by_ci = tx.add_file({"name": "notes.txt", "sha256": "a" * 64, "size": 10,
                             "store_key": "n", "dag_id": None, "job": None, "created_at": 2.0,
                             "created_by": "ci-bot"})
    with storage.transaction() as tx:
        assert [(f["id"], f["created_by"]) for f in tx.list_files()] == [
            (by_ci, "ci-bot"), (before, None)]
        assert tx.latest_file(store_key="n")["created_by"] == "ci-bot"  # type: ignore[index]


def test_the_newest_file_of_many_store_keys_at_once(storage: Storage) -> None:
    with storage.transaction() as tx:
        tx.add_blob("a" * 64, 10, 1.0)
        add(tx, "old.txt", 1.0, key="k1")
        newest = add(tx, "new.txt", 2.0, key="k1")
        other = add(tx, "b.txt", 3.0, key="k2")
        add(tx, "plain.txt", 4.0)
    with storage.transaction() as tx:
        found = tx.latest_files_by_key(["k1", "k2", "k3"] + [f"x{i}" for i in range(1200)])
        assert {k: (r["id"], r["name"]) for k, r in found.items()} == {
            "k1": (newest, "new.txt"), "k2": (other, "b.txt")}
        assert found["k1"] == tx.latest_file(store_key="k1")
        assert tx.latest_files_by_key([]) == {}
