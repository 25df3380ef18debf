"""The run ledger's rules (titan/ledger.py) on rows in memory: what the content hash covers,
how the chain links, and how verification names each kind of tampering; the master's
per-run verdict cache (master/runs/ledger.py) and the offline check of an export."""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Iterator
from typing import Any

import pytest

from titan import ledger
from titan.cli.verify import _row
from titan.ledger_verify import verify
from titan.master.runs.ledger import LedgerChecks, row_status
from titan.master.runs.views import action_view
from titan.storage import schema as t

RUN = "run-1"


def row(seq: int, **kw: Any) -> dict[str, Any]:
    """An action row as storage hands it out (payloads canonical, JSON columns decoded)."""
    inputs, outputs = f'{{"q":{seq}}}', f'{{"a":"{seq * 2}"}}'
    out = {
        "run_id": RUN, "seq": seq, "id": f"a{seq}", "parent_id": None, "actor": "main",
        "channel": "tool", "name": "search", "ordinal": seq - 1, "inputs": inputs,
        "inputs_hash": hashlib.sha256(inputs.encode()).hexdigest(),
        "inputs_size": len(inputs), "inputs_blob": False, "outputs": outputs,
        "outputs_hash": hashlib.sha256(outputs.encode()).hexdigest(),
        "outputs_size": len(outputs), "outputs_blob": False, "error_type": None,
        "error_message": None, "outcome": "success", "model": "m", "input_tokens": 3,
        "output_tokens": 4, "cached_tokens": None, "reasoning_tokens": None,
        "cost_usd": 0.25, "cost_source": "table", "started_at": 1.7e9 + seq,
        "duration_ns": 1000, "tags": {"b": [1, 2.5], "a": "x"}, "replay_status": None,
        "recorded_at": 1.7e9 + 100, "pii": None,
    }
    out.update(kw)
    return out


def chained(n: int, start: int = 1) -> tuple[list[dict[str, Any]], str]:
    """``n`` actions, the first ``start - 1`` recorded before the ledger (no hashes)."""
    rows = [row(i) for i in range(1, n + 1)]
    head, first = ledger.extend(RUN, None, None, rows[start - 1:])
    assert first == start
    for r in rows[:start - 1]:
        r["chain_hash"] = None
    return rows, head


def check(rows: list[dict[str, Any]], count: int, head: str | None,
          start: int | None = 1, **kw: Any) -> dict[str, Any]:
    return verify(RUN, count, head, start, sorted(rows, key=lambda r: r["seq"]), **kw)


def broken(report: dict[str, Any]) -> tuple[str, int]:
    assert report["status"] == "broken", report
    return report["break"]["kind"], report["break"]["seq"]


def test_the_content_covers_every_recorded_column() -> None:
    columns = {c.name for c in t.actions.columns}
    assert set(ledger.CONTENT_FIELDS) | set(ledger.NOT_CONTENT) == columns
    assert not set(ledger.CONTENT_FIELDS) & set(ledger.NOT_CONTENT)
    base = row(1)
    digest = ledger.content(base)
    for field in ledger.CONTENT_FIELDS:
        value = base[field]
        other = ("x" if value is None else value + 1 if isinstance(value, int | float)
                 else {"other": 1} if isinstance(value, dict) else value + "x")
        assert ledger.content(dict(base, **{field: other})) != digest, field


def test_the_content_is_one_spelling_of_the_values() -> None:
    a = row(1, cost_usd=1, tags={"a": "x", "b": [1, 2.5]}, pii={})
    b = row(1, cost_usd=1.0, tags={"b": [1, 2.5], "a": "x"}, pii=None)
    assert ledger.content(a) == ledger.content(b)  # 1 is stored as 1.0, {} as NULL
    assert ledger.content(a).startswith(b'["titan-ledger-v1","a1",null,"main","tool","search",0,')


def test_links_follow_the_documented_formula() -> None:
    rows, head = chained(3)
    prev = hashlib.sha256(f"titan-ledger-v1:{RUN}".encode()).hexdigest()
    for r in rows:
        text = ledger.content(r).decode()
        prev = hashlib.sha256(f"{prev}:{r['seq']}:{text}".encode()).hexdigest()
        assert r["chain_hash"] == prev
    assert head == prev


def test_an_intact_run_verifies() -> None:
    rows, head = chained(5)
    report = check(rows, 5, head)
    assert report["status"] == "verified" and report["break"] is None
    assert (report["checked"], report["verified_through"], report["head"]) == (5, 5, head)
    assert report["message"] == "5 actions verified"


def test_an_empty_run_verifies() -> None:
    assert check([], 0, None, None)["status"] == "verified"


def test_an_edited_field_is_named() -> None:
    rows, head = chained(5)
    rows[2]["cost_usd"] = 0.0
    assert broken(check(rows, 5, head)) == ("edited", 3)
    assert "no longer hashes to the chain hash" in check(rows, 5, head)["message"]


def test_an_edited_payload_is_named() -> None:
    rows, head = chained(5)
    rows[3]["outputs"] = '{"a":"forged"}'
    report = check(rows, 5, head)
    assert broken(report) == ("edited", 4) and "outputs" in report["message"]
    assert report["verified_through"] == 3


def test_a_rewritten_hash_breaks_the_next_link() -> None:
    rows, head = chained(5)
    rows[1]["cost_usd"] = 9.0
    rows[1]["chain_hash"] = ledger.link(rows[0]["chain_hash"], 2, ledger.content(rows[1]))
    # #2 hashes as it now is, but #3 was chained to what #2 was.
    assert broken(check(rows, 5, head)) == ("edited", 3)


def test_removed_hashes_are_named() -> None:
    rows, head = chained(4)
    rows[1]["chain_hash"] = None
    assert broken(check(rows, 4, head)) == ("edited", 2)


def test_a_deleted_action_is_named() -> None:
    rows, head = chained(6)
    del rows[2]
    report = check(rows, 6, head)
    assert broken(report) == ("deleted", 3) and "#3 is missing" in report["message"]


def test_the_deleted_last_actions_are_named() -> None:
    rows, head = chained(6)
    assert broken(check(rows[:4], 6, head)) == ("deleted", 5)
    # The count lowered too: the head no longer is the last action's hash.
    assert broken(check(rows[:4], 4, head)) == ("deleted", 5)


def test_a_lowered_count_and_a_run_emptied_are_named_as_what_they_are() -> None:
    rows, head = chained(6)
    # Every action still there and chained to the head: the run's count was changed.
    report = check(rows, 4, head)
    assert broken(report) == ("head", 5) and "action count was changed" in report["message"]
    report = check([], 6, head)
    assert broken(report) == ("deleted", 1) and "all 6" in report["message"]


def test_a_deletion_hidden_by_renumbering_is_named() -> None:
    rows, head = chained(6)
    del rows[2]
    for r in rows[2:]:
        r["seq"] -= 1
    assert broken(check(rows, 6, head)) == ("deleted", 3)


def test_an_action_inserted_at_the_end_is_named() -> None:
    rows, head = chained(4)
    rows.append(row(5, chain_hash="0" * 64))
    assert broken(check(rows, 4, head)) == ("inserted", 5)
    # Chained properly and counted, the head still ends where recording ended.
    rows[-1]["chain_hash"] = ledger.link(head, 5, ledger.content(rows[-1]))
    assert broken(check(rows, 5, head)) == ("inserted", 5)


def test_an_action_inserted_in_the_middle_is_named() -> None:
    rows, head = chained(5)
    for r in rows[2:]:
        r["seq"] += 1
    extra = row(3, id="forged", chain_hash="f" * 64)
    report = check([*rows, extra], 5, head)
    assert broken(report) == ("inserted", 3)
    assert "recorded as #3 now sits at #4" in report["message"]


def test_reordered_actions_are_named() -> None:
    rows, head = chained(6)
    rows[1]["seq"], rows[4]["seq"] = 5, 2
    report = check(rows, 6, head)
    assert broken(report) == ("reordered", 2)
    assert "recorded as #2 now sits at #5" in report["message"]
    rows, head = chained(6)
    rows[2]["seq"], rows[3]["seq"] = 4, 3  # neighbours
    assert broken(check(rows, 6, head)) == ("reordered", 3)


def test_a_changed_or_removed_head_is_named() -> None:
    rows, head = chained(3)
    assert broken(check(rows, 3, "0" * 64))[0] == "deleted"  # the head says more came
    assert broken(check(rows, 3, None)) == ("head", 3)
    assert broken(check(rows, 3, None, None)) == ("head", 1)  # rows chained, run says not


def test_a_run_recorded_before_the_ledger_is_unchained() -> None:
    rows = [dict(row(i), chain_hash=None) for i in range(1, 4)]
    report = check(rows, 3, None, None)
    assert report["status"] == "unchained" and report["verified_through"] is None
    assert broken(check(rows[:2], 3, None, None)) == ("deleted", 3)


def test_a_claim_to_predate_the_ledger_is_held_to_the_runs_creation_and_the_actions_start(
        ) -> None:
    # Hashes and head removed and recorded_at moved back before the ledger (all plain
    # columns): the run passed as "recorded before the ledger existed". Its creation time,
    # and each action's own start, say otherwise.
    since = 1.7e9 + 50
    rows = [dict(row(i), chain_hash=None, recorded_at=1e9) for i in range(1, 4)]
    report = check(rows, 3, None, None, chained_since=since, created=1.7e9 + 60)
    assert broken(report) == ("edited", 1)
    assert "says it was recorded at 2001-09-09 01:46:40 UTC, before the ledger existed, but " \
        "its run was created after it" in report["message"]
    report = check(rows, 3, None, None, chained_since=since, created=1.7e9)
    assert broken(report) == ("edited", 1) and "before its run was created" in report["message"]
    report = check(rows, 3, None, None, chained_since=since, created=None)  # an old export
    assert broken(report) == ("edited", 1) and "over a day before it started" in report["message"]
    # What holds together is still only a claim: said so, never as fact.
    rows = [dict(row(i), chain_hash=None, recorded_at=1.7e9 + 10 + i) for i in range(1, 4)]
    report = check(rows, 3, None, None, chained_since=since, created=1.7e9)
    assert report["status"] == "unchained"
    assert report["message"] == ("its 3 actions claim to predate the ledger (recorded_at "
                                 "2023-11-14 22:13:31 UTC to 2023-11-14 22:13:33 UTC); this "
                                 "cannot be verified")


def test_a_chain_that_starts_after_the_upgrade_verifies_from_there() -> None:
    rows, head = chained(6, start=4)
    report = check(rows, 6, head, 4)
    assert report["status"] == "verified" and report["chained_from"] == 4
    assert (report["checked"], report["unchained"]) == (3, 3)
    assert "the 3 before are not chained: they claim to predate the ledger (recorded_at " \
        "2023-11-14 22:15:00 UTC), which cannot be verified" in report["message"]
    rows[0]["name"] = "unprotected"  # before the chain: not covered
    assert check(rows, 6, head, 4)["status"] == "verified"
    rows[4]["name"] = "protected"
    assert broken(check(rows, 6, head, 4)) == ("edited", 5)


def test_a_walk_can_stop_and_resume() -> None:
    rows, head = chained(10)
    first = check(rows, 10, head, limit=4)
    assert first["status"] == "partial" and first["verified_through"] == 4
    rest = [r for r in rows if r["seq"] > 4]
    report = check(rest, 10, head, resume=(4, first["last_hash"]))
    assert report["status"] == "verified" and report["checked"] == 10
    assert check(rest, 10, head, resume=(4, "0" * 64))["status"] == "broken"


def test_rows_say_how_far_their_run_holds() -> None:
    rows, head = chained(6, start=2)
    rows[3]["name"] = "x"
    verdict = check(rows, 6, head, 2)
    assert [row_status(verdict, s) for s in range(1, 7)] == [
        "unchained", "verified", "verified", "broken", "broken", "broken"]
    assert row_status(None, 1) == "unchecked"
    assert row_status(check(rows, 6, head, 2, limit=2), 3) == "unchecked"


class FakeTx:
    """What LedgerChecks reads: a run's actions by seq, and its row."""

    def __init__(self, rows: list[dict[str, Any]], run: dict[str, Any]) -> None:
        self.rows, self.run, self.read = rows, run, 0

    def iter_actions(self, run_id: str, batch: int = 1000, after: int = 0) -> Iterator[Any]:
        for r in self.rows:
            if r["seq"] > after:
                self.read += 1
                yield r

    def get_run(self, run_id: str) -> dict[str, Any]:
        return self.run

    def chained_since(self) -> float | None:
        return None  # a database as old as its ledger


def run_row(rows: list[dict[str, Any]], head: str) -> dict[str, Any]:
    return {"id": RUN, "action_count": len(rows), "chain_head": head, "chain_start": 1}


def test_the_ledger_page_checks_a_run_once_then_only_what_it_gained() -> None:
    rows, head = chained(8)
    checks = LedgerChecks(budget=1000)
    tx = FakeTx(rows[:5], run_row(rows[:5], rows[4]["chain_hash"]))
    assert checks.verdicts(tx, [tx.run])[RUN]["status"] == "verified"  # type: ignore[arg-type]
    assert tx.read == 5
    checks.verdicts(tx, [tx.run])  # type: ignore[arg-type]
    assert tx.read == 5  # the same head and count: the verdict stands
    tx.rows, tx.run = rows, run_row(rows, head)
    verdict = checks.verdicts(tx, [tx.run])[RUN]  # type: ignore[arg-type]
    assert verdict is not None and verdict["status"] == "verified" and verdict["checked"] == 8
    assert tx.read == 8  # only the three new ones were read


def test_the_ledger_page_walks_within_its_budget_and_goes_on_next_time() -> None:
    rows, head = chained(10)
    checks = LedgerChecks(budget=4)
    tx = FakeTx(rows, run_row(rows, head))
    seen = []
    for _ in range(3):
        verdict = checks.verdicts(tx, [tx.run])[RUN]  # type: ignore[arg-type]
        assert verdict is not None
        seen.append((verdict["status"], verdict["through"]))
    assert seen == [("partial", 4), ("partial", 8), ("verified", 10)]


def test_the_ledger_page_sees_tampering_once_its_verdict_is_old() -> None:
    rows, head = chained(4)
    checks = LedgerChecks(ttl=0.0)
    tx = FakeTx(rows, run_row(rows, head))
    checks.verdicts(tx, [tx.run])  # type: ignore[arg-type]
    rows[1]["name"] = "forged"
    verdict = checks.verdicts(tx, [tx.run])[RUN]  # type: ignore[arg-type]
    assert verdict is not None and verdict["break"]["seq"] == 2


@pytest.mark.parametrize("outcome", ["success", "error"])
def test_an_exported_action_verifies_offline(outcome: str) -> None:
    rows, head = chained(3)
    if outcome == "error":
        rows = [row(i, outcome="error", outputs=None, outputs_hash=None, outputs_size=0,
                    error_type="Boom", error_message="it broke", pii={"error": {"email": 1}})
                for i in range(1, 4)]
        head, _ = ledger.extend(RUN, None, None, rows)
    exported = [_row(copy.deepcopy(action_view(r, ())), {}) for r in rows]
    assert check(exported, 3, head)["status"] == "verified"
    exported[1]["outputs"] = exported[1]["outputs"] and '{"a":"9"}'
    exported[1]["error_message"] = "edited"
    assert broken(check(exported, 3, head)) == ("edited", 2)
