"""The run ledger in storage, on SQLite and PostgreSQL alike: actions chained as they are
numbered, the chain verified after tampering with the database directly (each kind named),
runs from before the ledger, and the Activity Ledger's query across runs."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
import sqlalchemy as sa

from tests.contract import test_storage as base
from tests.contract.test_storage_runs import T0, run_row
from tests.contract.test_storage_runs import action as plain_action
from titan import ledger
from titan.master.runs.ledger import verify_run
from titan.storage import Storage
from titan.storage.base import LedgerQuery, Transaction

storage = base.storage  # the parametrised SQLite/PostgreSQL fixture (emptied per test)


def action(action_id: str, **kw: Any) -> dict[str, Any]:
    """An action with real payload hashes (verification checks payloads against them)."""
    a = plain_action(action_id, **kw)
    a["inputs_hash"] = hashlib.sha256(a["inputs"].encode()).hexdigest()
    if a["outputs"] is not None:
        a["outputs_hash"] = hashlib.sha256(a["outputs"].encode()).hexdigest()
    a["pii"] = None
    return a


def record(storage: Storage, run_id: str, n: int, **kw: Any) -> None:
    with storage.transaction() as tx:
        if tx.get_run(run_id) is None:
            tx.create_run(run_row(run_id, **kw))
        first = tx.get_run(run_id)["action_count"]  # type: ignore[index]
        tx.insert_actions(run_id, [
            action(f"{run_id}-{first + i}", started=T0 + first + i, cost=0.001 * (i % 3),
                   tags={"i": i, "f": 0.5} if i % 2 else None, tokens=(10, i))
            for i in range(n)], T0 + 1000)


def verdict(storage: Storage, run_id: str) -> dict[str, Any]:
    with storage.transaction() as tx:
        run = tx.get_run(run_id)
        assert run is not None
        return verify_run(tx, run)


def sql(storage: Storage, statement: str, **params: Any) -> None:
    with storage.transaction() as tx:
        tx.conn.execute(sa.text(statement), params)  # type: ignore[attr-defined]


def broken(storage: Storage, run_id: str) -> tuple[str, int]:
    v = verdict(storage, run_id)
    assert v["status"] == "broken", v
    return v["break"]["kind"], v["break"]["seq"]


def test_actions_are_chained_as_they_are_numbered(storage: Storage) -> None:
    record(storage, "r1", 3)
    record(storage, "r1", 2)  # a second batch goes on from the run's head
    with storage.transaction() as tx:
        run = tx.get_run("r1")
        rows = list(tx.iter_actions("r1"))
        assert [a["seq"] for a in tx.iter_actions("r1", after=3)] == [4, 5]
    assert run is not None and run["chain_start"] == 1
    prev = ledger.genesis("r1")
    for a in rows:
        prev = ledger.link(prev, a["seq"], ledger.content(a))  # what comes back hashes alike
        assert a["chain_hash"] == prev
    assert run["chain_head"] == prev
    v = verdict(storage, "r1")
    assert (v["status"], v["checked"], v["head"]) == ("verified", 5, prev)


def test_a_caller_may_hash_the_content_itself(storage: Storage) -> None:
    """The master hashes a batch off its writer thread: the same fields, the same hash."""
    rows = [action(f"p{i}") for i in range(3)]
    for r in rows:
        r["_content"] = ledger.content(dict(r, recorded_at=T0 + 5))
    with storage.transaction() as tx:
        tx.create_run(run_row("pre"))
        tx.insert_actions("pre", rows, T0 + 5)
    assert verdict(storage, "pre")["status"] == "verified"


def test_an_append_from_a_stale_read_of_the_run_links_after_the_latest(
        storage: Storage) -> None:
    """Two masters on one PostgreSQL database: the second to lock the run finds its count
    moved since it read the row, reads it again and numbers and links after the first."""
    record(storage, "r1", 2)
    with storage.transaction() as tx:
        stale = tx.get_run("r1")
    record(storage, "r1", 2)
    with storage.transaction() as tx:
        result = tx.insert_actions("r1", [action("late")], T0 + 2000, stale)
    assert result["first_seq"] == 5 and result["action_count"] == 5
    assert verdict(storage, "r1")["status"] == "verified"


def test_an_update_is_named(storage: Storage) -> None:
    record(storage, "r1", 5)
    sql(storage, "UPDATE actions SET cost_usd = 0 WHERE run_id = 'r1' AND seq = 3")
    assert broken(storage, "r1") == ("edited", 3)


def test_an_edited_payload_is_named(storage: Storage) -> None:
    record(storage, "r1", 5)
    sql(storage, """UPDATE actions SET outputs = '{"a":"forged"}' WHERE run_id = 'r1'
                    AND seq = 2""")
    assert broken(storage, "r1") == ("edited", 2)


def test_a_delete_is_named(storage: Storage) -> None:
    record(storage, "r1", 5)
    sql(storage, "DELETE FROM actions WHERE run_id = 'r1' AND seq = 2")
    assert broken(storage, "r1") == ("deleted", 2)
    sql(storage, "DELETE FROM actions WHERE run_id = 'r1' AND seq = 5")
    assert broken(storage, "r1") == ("deleted", 2)  # still the first


def test_deleting_the_last_actions_is_named(storage: Storage) -> None:
    record(storage, "r1", 5)
    sql(storage, "DELETE FROM actions WHERE run_id = 'r1' AND seq >= 4")
    assert broken(storage, "r1") == ("deleted", 4)
    sql(storage, "UPDATE agent_runs SET action_count = 3 WHERE id = 'r1'")
    assert broken(storage, "r1") == ("deleted", 4)  # the head says there was more


def test_an_insert_is_named(storage: Storage) -> None:
    record(storage, "r1", 3)
    with storage.transaction() as tx:
        extra = dict(action("forged"), run_id="r1", seq=4, recorded_at=T0 + 2000,
                     chain_hash="0" * 64)
        tx.conn.execute(sa.insert(base.schema.actions).values(  # type: ignore[attr-defined]
            **{k: v for k, v in extra.items() if k in base.schema.actions.c}))
    assert broken(storage, "r1") == ("inserted", 4)


def test_an_insert_between_recorded_actions_is_named(storage: Storage) -> None:
    record(storage, "r1", 4)
    # Make room at #2 (two steps: neither database checks a key only at commit).
    sql(storage, "UPDATE actions SET seq = seq + 100 WHERE run_id = 'r1' AND seq >= 2")
    sql(storage, "UPDATE actions SET seq = seq - 99 WHERE run_id = 'r1' AND seq >= 100")
    with storage.transaction() as tx:
        forged = dict(action("forged"), run_id="r1", seq=2, recorded_at=T0 + 1000,
                      chain_hash="f" * 64)
        tx.conn.execute(sa.insert(base.schema.actions).values(  # type: ignore[attr-defined]
            **{k: v for k, v in forged.items() if k in base.schema.actions.c}))
    v = verdict(storage, "r1")
    assert (v["break"]["kind"], v["break"]["seq"]) == ("inserted", 2)
    assert "recorded as #2 now sits at #3" in v["message"]


def test_swapped_actions_are_named(storage: Storage) -> None:
    record(storage, "r1", 6)
    sql(storage, "UPDATE actions SET seq = -1 WHERE run_id = 'r1' AND seq = 2")
    sql(storage, "UPDATE actions SET seq = 2 WHERE run_id = 'r1' AND seq = 5")
    sql(storage, "UPDATE actions SET seq = 5 WHERE run_id = 'r1' AND seq = -1")
    v = verdict(storage, "r1")
    assert (v["break"]["kind"], v["break"]["seq"]) == ("reordered", 2)
    assert "now sits at #5" in v["message"]


def test_a_changed_head_is_named(storage: Storage) -> None:
    record(storage, "r1", 3)
    sql(storage, "UPDATE agent_runs SET chain_head = :h WHERE id = 'r1'", h="0" * 64)
    assert broken(storage, "r1")[0] == "deleted"
    sql(storage, "UPDATE agent_runs SET chain_head = NULL, chain_start = NULL WHERE id = 'r1'")
    assert broken(storage, "r1") == ("head", 1)


def test_a_run_from_before_the_ledger_chains_from_its_next_action(storage: Storage) -> None:
    record(storage, "old", 3)
    # What migration 14 leaves of a run recorded before it: no hashes, no head.
    sql(storage, "UPDATE actions SET chain_hash = NULL")
    sql(storage, "UPDATE agent_runs SET chain_head = NULL, chain_start = NULL")
    v = verdict(storage, "old")
    assert (v["status"], v["unchained"], v["verified_through"]) == ("unchained", 3, None)
    record(storage, "old", 2)
    with storage.transaction() as tx:
        run = tx.get_run("old")
    assert run is not None and run["chain_start"] == 4
    v = verdict(storage, "old")
    assert (v["status"], v["chained_from"], v["checked"], v["unchained"]) == (
        "verified", 4, 2, 3)
    sql(storage, "UPDATE actions SET name = 'x' WHERE run_id = 'old' AND seq = 5")
    assert broken(storage, "old") == ("edited", 5)


# -- the Activity Ledger's query ---------------------------------------------------------------
def spread(tx: Transaction) -> None:
    """Three runs of two agents whose actions interleave in time."""
    for run_id, agent, offset in (("ra", "alpha", 0.0), ("rb", "beta", 0.5), ("rc", "alpha", 0.25)):
        tx.create_run(run_row(run_id, agent=agent))
        tx.insert_actions(run_id, [
            action(f"{run_id}{i}", started=T0 + i + offset, name=("search", "llm")[i % 2],
                   actor=("main", "main/critic")[i % 2], cost=0.5 if i == 3 else None,
                   outcome="error" if i == 4 else "success", error="boom" if i == 4 else None)
            for i in range(6)], T0 + 100)


def keys(page: dict[str, Any]) -> list[tuple[str, int]]:
    return [(a["run_id"], a["seq"]) for a in page["actions"]]


def test_the_ledger_lists_actions_across_runs_newest_first(storage: Storage) -> None:
    with storage.transaction() as tx:
        spread(tx)
        everything = tx.ledger_actions(LedgerQuery(), 100)
    rows = everything["actions"]
    assert len(rows) == 18 and everything["searched_to"] is None
    assert [a["started_at"] for a in rows] == sorted((a["started_at"] for a in rows),
                                                     reverse=True)
    assert keys(everything)[:3] == [("rb", 6), ("rc", 6), ("ra", 6)]
    assert rows[0]["agent_id"] == "beta" and rows[0]["name"] == "llm"


def test_the_ledger_pages_by_key_both_ways(storage: Storage) -> None:
    with storage.transaction() as tx:
        spread(tx)
        everything = keys(tx.ledger_actions(LedgerQuery(), 100))
        seen: list[tuple[str, int]] = []
        before = None
        while True:
            page = tx.ledger_actions(LedgerQuery(before=before), 5)["actions"]
            if not page:
                break
            seen += [(a["run_id"], a["seq"]) for a in page]
            before = (page[-1]["started_at"], page[-1]["run_id"], page[-1]["seq"])
        assert seen == everything
        last = tx.ledger_actions(LedgerQuery(), 100)["actions"][7]
        newer = tx.ledger_actions(
            LedgerQuery(after=(last["started_at"], last["run_id"], last["seq"])), 3)
        assert keys(newer) == everything[4:7]  # the three just above it, newest first


def test_the_ledger_filters(storage: Storage) -> None:
    def got(**q: Any) -> list[tuple[str, int]]:
        with storage.transaction() as tx:
            return keys(tx.ledger_actions(LedgerQuery(**q), 100))

    with storage.transaction() as tx:
        spread(tx)
    assert {r for r, _ in got(agent="alpha")} == {"ra", "rc"}
    assert got(run="rb") == [("rb", s) for s in range(6, 0, -1)]
    assert got(actor="main/critic", run="ra") == [("ra", 6), ("ra", 4), ("ra", 2)]
    assert got(name="llm", agent="beta") == [("rb", 6), ("rb", 4), ("rb", 2)]
    assert sorted(got(outcomes=("error",))) == [("ra", 5), ("rb", 5), ("rc", 5)]
    assert sorted(got(min_cost=0.1)) == [("ra", 4), ("rb", 4), ("rc", 4)]
    assert got(since=T0 + 5, until=T0 + 5.4) == [("rc", 6), ("ra", 6)]
    assert got(agent="nobody") == [] and got(run="nope") == []


def test_a_rare_filter_reads_a_bounded_part_of_the_index(storage: Storage) -> None:
    with storage.transaction() as tx:
        spread(tx)
        page = tx.ledger_actions(LedgerQuery(outcomes=("error",)), 10, scan=4)
        # The four newest entries hold one error; the walk stops there and says so.
        assert keys(page) == [("rb", 5)]
        stopped = page["searched_to"]
        assert stopped is not None
        rest = tx.ledger_actions(LedgerQuery(outcomes=("error",), before=stopped), 10, scan=4)
        assert keys(rest) == [("rc", 5), ("ra", 5)]
        # A full page, or a run named, needs no bound.
        assert tx.ledger_actions(LedgerQuery(), 3, scan=2)["searched_to"] is None
        assert tx.ledger_actions(LedgerQuery(run="ra", outcomes=("error",)), 10,
                                 scan=1)["searched_to"] is None


@pytest.mark.parametrize("n", [1, 1001])
def test_verification_reads_runs_longer_than_a_page(storage: Storage, n: int) -> None:
    record(storage, "long", n)
    assert verdict(storage, "long")["checked"] == n
