"""The storage contract of a run's compliance metadata and of archiving, on SQLite and
PostgreSQL alike: who started a run, its retention class, the PII counts of runs and
actions, archived runs left out of (and brought back into) the registry, and retention
sparing the classes that must outlive it (migration 9)."""

from __future__ import annotations

from tests.contract import test_storage as base
from tests.contract.test_storage_runs import NOW, T0, action, run_ids, run_row
from titan.storage import Storage
from titan.storage.base import ActionQuery, RunQuery

storage = base.storage  # the parametrised SQLite/PostgreSQL fixture (emptied per test)


def test_compliance_columns_round_trip(storage: Storage) -> None:
    by = {"role": "job", "job": 7, "attempt": 1, "job_id": "plan", "dag": "x", "dag_run": 2,
          "worker": "w-1"}
    with storage.transaction() as tx:
        tx.create_run(run_row("r1", started_by=by, retention_class="legal_hold",
                              pii={"email": 2}))
        tx.create_run(run_row("r2"))  # the defaults
        redacted = dict(action("a1"), pii={"inputs": {"email": 1}, "outputs": {"phone": 2}})
        tx.insert_actions("r1", [redacted, action("a2")], NOW)
        tx.update_run("r2", {"pii": {"api_key": 1}, "started_by": {"role": "admin"}})
    with storage.transaction() as tx:
        r1, r2 = tx.get_run("r1"), tx.get_run("r2")
        listed = {a["id"]: a["pii"] for a in tx.list_actions("r1", ActionQuery(), 10)[0]}
        iterated = {a["id"]: a["pii"] for a in tx.iter_actions("r1")}
        served = {a["id"]: a["pii"] for a in tx.recorded_actions("r1", "main", 0, 10)}
        one = tx.get_action("r1", 1)
    assert r1 is not None and r2 is not None and one is not None
    assert (r1["started_by"], r1["retention_class"], r1["pii"]) == (by, "legal_hold",
                                                                    {"email": 2})
    assert (r2["retention_class"], r2["pii"], r2["started_by"]) == (
        "standard", {"api_key": 1}, {"role": "admin"})
    assert r1["archived_at"] is None
    want = {"a1": {"inputs": {"email": 1}, "outputs": {"phone": 2}}, "a2": None}
    assert listed == iterated == served == want
    assert one["pii"] == want["a1"]


def test_archived_runs_leave_the_registry_and_come_back(storage: Storage) -> None:
    with storage.transaction() as tx:
        tx.create_run(run_row("old-done", T0, "completed"))
        tx.create_run(run_row("old-failed", T0 + 1, "failed"))
        tx.update_run("old-failed", {"ended_at": T0 + 2})
        tx.create_run(run_row("old-running", T0 - 50))  # still going: never archived
        tx.create_run(run_row("new-done", T0 + 1000, "completed"))
        tx.create_run(run_row("held", T0 + 2, "completed", retention_class="legal_hold"))
    with storage.transaction() as tx:
        # Oldest first, every class (archiving deletes nothing), strictly before.
        assert tx.archivable_runs(T0 + 500, 100) == ["old-done", "old-failed", "held"]
        assert tx.archivable_runs(T0 + 500, 2) == ["old-done", "old-failed"]
        assert tx.archivable_runs(T0, 100) == []
        assert tx.set_archived(["old-failed", "old-done", "ghost"], NOW) == [
            "old-failed", "old-done"]
        assert tx.set_archived(["old-done"], NOW + 5) == []  # already archived: kept
        assert tx.archivable_runs(T0 + 500, 100) == ["held"]
    with storage.transaction() as tx:
        assert run_ids(tx, RunQuery()) == ["new-done", "held", "old-running"]
        assert run_ids(tx, RunQuery(archived=True)) == ["old-failed", "old-done"]
        assert run_ids(tx, RunQuery(archived=None)) == [
            "new-done", "held", "old-failed", "old-done", "old-running"]
        assert run_ids(tx, RunQuery(archived=True, statuses=("failed",))) == ["old-failed"]
        # Asked for by id, a run is found archived or not (exports of chosen runs).
        assert sorted(r["id"] for r in tx.iter_runs(RunQuery(ids=("old-done", "held")))) == [
            "held", "old-done"]
        assert [r["id"] for r in tx.iter_runs(RunQuery(archived=True))] == [
            "old-failed", "old-done"]
        old = tx.get_run("old-done")
        assert old is not None and old["archived_at"] == NOW
        # Archived runs need no look: they are never intercepts.
        assert [r["id"] for r in tx.intercepts(None, 0.2, 10)] == []
        assert tx.set_archived(["old-done", "new-done"], None) == ["old-done"]
    with storage.transaction() as tx:
        assert run_ids(tx, RunQuery(archived=True)) == ["old-failed"]
        back = tx.get_run("old-done")
        assert back is not None and back["archived_at"] is None


def test_failed_archived_runs_are_no_intercepts(storage: Storage) -> None:
    with storage.transaction() as tx:
        tx.create_run(run_row("f1", T0, "failed"))
        tx.create_run(run_row("f2", T0 + 1, "failed"))
        tx.set_archived(["f1"], NOW)
    with storage.transaction() as tx:
        assert [r["id"] for r in tx.intercepts(None, 0.2, 10)] == ["f2"]


def test_retention_deletes_only_standard_runs(storage: Storage) -> None:
    with storage.transaction() as tx:
        tx.create_run(run_row("std", T0, "completed"))
        tx.create_run(run_row("ext", T0 + 1, "completed", retention_class="extended"))
        tx.create_run(run_row("hold", T0 + 2, "failed", retention_class="legal_hold"))
        tx.create_run(run_row("archived", T0 + 3, "completed"))
        tx.set_archived(["archived"], NOW)
    with storage.transaction() as tx:
        assert tx.finished_runs_before(T0 + 100, 100) == ["std", "archived"]
        assert tx.finished_runs_before(T0 + 100, 100, ["ext", "hold", "archived"]) == [
            "archived"]
