"""The storage contract of agent telemetry — runs, agents and actions — on SQLite and
PostgreSQL alike (the ``storage`` fixture of the main contract suite), and migration 3."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from tests.conftest import fresh_postgres_database
from tests.contract import test_storage as base
from titan.storage import Storage, open_storage
from titan.storage import schema as t
from titan.storage.base import ActionQuery, RunQuery, Transaction
from titan.storage.migrations import LATEST, MIGRATIONS

storage = base.storage  # the parametrised SQLite/PostgreSQL fixture (emptied per test)
dag_row, job_row = base.dag_row, base.job_row

T0 = 1_700_000_000.0
NOW = T0 + 10_000


def run_row(run_id: str, started: float = T0, status: str = "running",
            agent: str | None = None, **extra: Any) -> dict[str, Any]:
    return {"id": run_id, "created_at": started, "started_at": started, "status": status,
            "agent_id": agent, **extra}


def action(action_id: str, *, name: str = "call", actor: str = "main", channel: str = "tool",
           outcome: str = "success", cost: float | None = None, started: float = T0,
           duration_ns: int = 1_000_000, inputs: str = '{"q":1}',
           outputs: str | None = '{"a":2}', error: str | None = None,
           tokens: tuple[int | None, int | None] = (None, None), tags: Any = None,
           ordinal: int = 0) -> dict[str, Any]:
    """An action row as the master hands it to insert_actions (payloads already canonical)."""
    return {
        "id": action_id, "parent_id": None, "actor": actor, "channel": channel, "name": name,
        "ordinal": ordinal, "inputs": inputs, "inputs_hash": "1" * 64,
        "inputs_size": len(inputs.encode()), "inputs_blob": False,
        "outputs": outputs, "outputs_hash": None if outputs is None else "2" * 64,
        "outputs_size": 0 if outputs is None else len(outputs.encode()), "outputs_blob": False,
        "error_type": "Error" if error else None, "error_message": error, "outcome": outcome,
        "model": None, "input_tokens": tokens[0], "output_tokens": tokens[1],
        "cached_tokens": None, "reasoning_tokens": None, "cost_usd": cost, "cost_source": None,
        "started_at": started, "duration_ns": duration_ns, "tags": tags,
    }


def run_ids(tx: Transaction, q: RunQuery, limit: int = 1000, offset: int = 0) -> list[str]:
    rows, total = tx.list_runs(q, limit, offset)
    if offset == 0 and len(rows) < limit:
        assert total == len(rows), (q, total, rows)
    return [r["id"] for r in rows]


def seqs(tx: Transaction, run_id: str, q: ActionQuery, limit: int = 1000,
         offset: int = 0) -> tuple[list[int], int]:
    rows, matched = tx.list_actions(run_id, q, limit, offset)
    return [a["seq"] for a in rows], matched


# ------------------------------------------------------------------------------ runs


def test_create_run_is_idempotent_and_leaves_the_row_alone(storage: Storage) -> None:
    with storage.transaction() as tx:
        assert tx.create_run(run_row("r1", agent="bot", tags=["a", "ü"], budget_usd=2.5,
                                     agent_version="1.0")) is True
        assert tx.create_run(run_row("r1", started=T0 + 99, status="failed", agent="other",
                                     tags={"x": 1}, budget_usd=9.0)) is False
        assert tx.create_run(run_row("r2")) is True
    with storage.transaction() as tx:
        assert tx.create_run(run_row("r1", agent="third")) is False
        r1, r2 = tx.get_run("r1"), tx.get_run("r2")
        assert tx.get_run("nope") is None
    assert r1 is not None and r2 is not None
    assert (r1["status"], r1["agent_id"], r1["agent_version"]) == ("running", "bot", "1.0")
    assert r1["started_at"] == T0 and r1["created_at"] == T0
    assert r1["tags"] == ["a", "ü"] and r1["budget_usd"] == 2.5
    # A new run starts with empty totals.
    for key in ("action_count", "success_count", "error_count", "blocked_count",
                "replayed_count"):
        assert r2[key] == 0, key
    assert r2["cost_usd"] == 0.0 and r2["blocked"] is False and r2["tags"] is None
    assert r2["ended_at"] is None and r2["over_budget_at"] is None
    assert r2["last_action_at"] is None


def test_update_run(storage: Storage) -> None:
    with storage.transaction() as tx:
        tx.create_run(run_row("r1", agent="bot"))
        tx.create_run(run_row("r2", agent="bot"))
        tx.update_run("r1", {"status": "failed", "ended_at": T0 + 5, "error": "boom ✗",
                             "tags": {"team": "x", "n": [1, 2]}, "blocked": True,
                             "over_budget_at": T0 + 3, "budget_usd": 0.5})
        tx.update_run("ghost", {"status": "completed"})  # no such run: nothing happens
    with storage.transaction() as tx:
        r1, r2 = tx.get_run("r1"), tx.get_run("r2")
        assert tx.get_run("ghost") is None
    assert r1 is not None and r2 is not None
    assert r1["status"] == "failed" and r1["ended_at"] == T0 + 5 and r1["error"] == "boom ✗"
    assert r1["tags"] == {"team": "x", "n": [1, 2]}
    assert r1["blocked"] is True and r1["over_budget_at"] == T0 + 3 and r1["budget_usd"] == 0.5
    assert r2["status"] == "running" and r2["blocked"] is False and r2["ended_at"] is None
    with storage.transaction() as tx:
        tx.update_run("r1", {"tags": None, "blocked": False})
        r1 = tx.get_run("r1")
    assert r1 is not None and r1["tags"] is None and r1["blocked"] is False


def test_ensure_agent_run(storage: Storage) -> None:
    with storage.transaction() as tx:
        assert tx.ensure_agent_run("R_1", T0, "R") is True
        assert tx.ensure_agent_run("R_1", T0 + 5, "other") is False
        tx.create_run(run_row("made", started=T0 - 100, status="completed", agent="a"))
        assert tx.ensure_agent_run("made", T0 + 5) is False
    with storage.transaction() as tx:
        r, made = tx.get_run("R_1"), tx.get_run("made")
    assert r is not None and made is not None
    assert (r["status"], r["started_at"], r["created_at"], r["agent_id"]) == (
        "running", T0, T0, "R")
    assert (made["status"], made["started_at"], made["agent_id"]) == ("completed", T0 - 100, "a")


def test_get_agent_run_reads_the_row_its_stages_point_at(storage: Storage) -> None:
    with storage.transaction() as tx:
        tx.ensure_agent_run("R_1", T0, "R")
        tx.create_run(run_row("done", status="failed", agent="b", error="boom"))
    with storage.transaction() as tx:
        row, done = tx.get_agent_run("R_1"), tx.get_agent_run("done")
        assert tx.get_agent_run("ghost") is None
        assert tx.get_agent_run("r_1") is None  # ids are case-sensitive on both databases
    assert row is not None and done is not None
    assert (row["id"], row["created_at"], row["status"], row["agent_id"]) == (
        "R_1", T0, "running", "R")
    assert (done["status"], done["error"]) == ("failed", "boom")


def test_replays_of_lists_a_runs_replays_newest_first(storage: Storage) -> None:
    with storage.transaction() as tx:
        tx.create_run(run_row("orig"))
        tx.create_run(run_row("other"))
        for i, started in enumerate((T0 + 30, T0 + 10, T0 + 20)):
            tx.create_run(run_row(f"rp{i}", started=started, replay_of="orig"))
        tx.create_run(run_row("rp_other", replay_of="other"))
    with storage.transaction() as tx:
        assert [r["id"] for r in tx.replays_of("orig", 10)] == ["rp0", "rp2", "rp1"]
        assert [r["id"] for r in tx.replays_of("orig", 2)] == ["rp0", "rp2"]
        assert [r["id"] for r in tx.replays_of("other", 10)] == ["rp_other"]
        assert tx.replays_of("rp0", 10) == [] and tx.replays_of("ghost", 10) == []
        first = tx.replays_of("orig", 1)[0]
    assert first["replay_of"] == "orig" and first == tx_run(storage, "rp0")


def tx_run(storage: Storage, run_id: str) -> dict[str, Any] | None:
    with storage.transaction() as tx:
        return tx.get_run(run_id)


def test_recorded_actions_serve_an_actor_and_its_sub_actors_in_order(storage: Storage) -> None:
    with storage.transaction() as tx:
        tx.create_run(run_row("r"))
        tx.create_run(run_row("other"))
        tx.insert_actions("r", [
            action("a1", actor="main"), action("a2", actor="main/sub"),
            action("a3", actor="mainly"),  # a sibling whose name starts alike: not a sub-actor
            action("a4", actor="main/sub/deep"), action("a5", actor="helper"),
            action("a6", actor="main"), action("a7", actor="m_in/x"),  # '_' is no wildcard
            action("a8", actor="m%n/y"),
        ], NOW)
        tx.insert_actions("other", [action("o1", actor="main")], NOW)
    with storage.transaction() as tx:
        def ids(actor: str, after: int = 0, limit: int = 100) -> list[str]:
            return [a["id"] for a in tx.recorded_actions("r", actor, after, limit)]

        assert ids("main") == ["a1", "a2", "a4", "a6"]
        assert ids("main", after=2) == ["a4", "a6"]
        assert ids("main", limit=2) == ["a1", "a2"]
        assert ids("main/sub") == ["a2", "a4"]
        assert ids("m_in") == ["a7"] and ids("m%n") == ["a8"]
        assert ids("ghost") == [] and ids("main", after=8) == []
        served = tx.recorded_actions("r", "main", 0, 1)[0]
        assert served == tx.get_action("r", 1)


def _filter_fixture(tx: Transaction) -> None:
    for run_id, agent, status, started, cost in (
        ("lit_a", "alpha", "completed", T0 + 10, 0.5),
        ("litXa", "alpha-2", "running", T0 + 20, 0.0),
        ("pct%b", "beta", "failed", T0 + 30, 1.5),
        ("pctYb", "beta", "cancelled", T0 + 40, 3.0),
        ("plain", None, "completed", T0 + 50, 2.0),
    ):
        assert tx.create_run(run_row(run_id, started, status, agent))
        tx.update_run(run_id, {"cost_usd": cost})


def test_list_runs_filters(storage: Storage) -> None:
    with storage.transaction() as tx:
        _filter_fixture(tx)
    with storage.transaction() as tx:
        assert run_ids(tx, RunQuery()) == ["plain", "pctYb", "pct%b", "litXa", "lit_a"]
        assert run_ids(tx, RunQuery(statuses=("completed", "failed"))) == [
            "plain", "pct%b", "lit_a"]
        assert run_ids(tx, RunQuery(statuses=("running",))) == ["litXa"]
        # min_cost is inclusive
        assert run_ids(tx, RunQuery(min_cost=1.5)) == ["plain", "pctYb", "pct%b"]
        assert run_ids(tx, RunQuery(min_cost=0.0)) == run_ids(tx, RunQuery())
        assert run_ids(tx, RunQuery(min_cost=100.0)) == []
        # since is inclusive, before exclusive
        assert run_ids(tx, RunQuery(since=T0 + 20)) == ["plain", "pctYb", "pct%b", "litXa"]
        assert run_ids(tx, RunQuery(before=T0 + 30)) == ["litXa", "lit_a"]
        assert run_ids(tx, RunQuery(since=T0 + 20, before=T0 + 40)) == ["pct%b", "litXa"]
        # agent is exact, not a substring
        assert run_ids(tx, RunQuery(agent="alpha")) == ["lit_a"]
        assert run_ids(tx, RunQuery(agent="beta")) == ["pctYb", "pct%b"]
        assert run_ids(tx, RunQuery(agent="alp")) == []
        # search: a substring of the id or the agent; '%' and '_' are literal
        assert run_ids(tx, RunQuery(search="lit")) == ["litXa", "lit_a"]
        assert run_ids(tx, RunQuery(search="t_a")) == ["lit_a"]
        assert run_ids(tx, RunQuery(search="_")) == ["lit_a"]
        assert run_ids(tx, RunQuery(search="t%b")) == ["pct%b"]
        assert run_ids(tx, RunQuery(search="%")) == ["pct%b"]
        assert run_ids(tx, RunQuery(search="a-2")) == ["litXa"]  # via its agent
        assert run_ids(tx, RunQuery(search="et")) == ["pctYb", "pct%b"]  # agent beta
        assert run_ids(tx, RunQuery(search="\\")) == []
        assert run_ids(tx, RunQuery(search="nothing")) == []
        # ids
        assert run_ids(tx, RunQuery(ids=("plain", "lit_a", "missing"))) == ["plain", "lit_a"]
        assert run_ids(tx, RunQuery(ids=())) == []
        # everything at once
        assert run_ids(tx, RunQuery(statuses=("completed", "running", "failed"), min_cost=0.1,
                                    since=T0, before=T0 + 60, search="l")) == ["plain", "lit_a"]
        rows, total = tx.list_runs(RunQuery(statuses=("completed",)), 1, 0)
        assert total == 2 and [r["id"] for r in rows] == ["plain"]


def test_list_runs_sorts_by_cost_duration_and_start(storage: Storage) -> None:
    with storage.transaction() as tx:
        _filter_fixture(tx)
        # Ended runs last from start to end; the running one (litXa) up to now: the longest.
        for run_id, ended in (("lit_a", T0 + 15), ("pct%b", T0 + 130), ("pctYb", T0 + 70),
                              ("plain", T0 + 51)):
            tx.update_run(run_id, {"ended_at": ended})
        tx.update_run("pct%b", {"cost_usd": 3.0})  # ties pctYb: the newer first
    with storage.transaction() as tx:
        assert run_ids(tx, RunQuery(sort="recent")) == run_ids(tx, RunQuery())
        assert run_ids(tx, RunQuery(sort="oldest")) == ["lit_a", "litXa", "pct%b", "pctYb",
                                                        "plain"]
        assert run_ids(tx, RunQuery(sort="cost")) == ["pctYb", "pct%b", "plain", "lit_a",
                                                      "litXa"]
        assert run_ids(tx, RunQuery(sort="duration")) == ["litXa", "pct%b", "pctYb", "lit_a",
                                                          "plain"]
        # Sorting composes with the filters and pages without overlap.
        assert run_ids(tx, RunQuery(sort="cost", agent="beta")) == ["pctYb", "pct%b"]
        pages = [r for off in (0, 2, 4)
                 for r in run_ids(tx, RunQuery(sort="duration"), limit=2, offset=off)]
        assert pages == ["litXa", "pct%b", "pctYb", "lit_a", "plain"]


def test_list_runs_orders_by_start_and_pages(storage: Storage) -> None:
    started = {f"r{i:02d}": T0 + i // 3 for i in range(12)}  # ties of three
    with storage.transaction() as tx:
        for run_id, ts in sorted(started.items(), key=lambda kv: kv[0][::-1]):  # mixed order
            tx.create_run(run_row(run_id, ts))
    expected = sorted(started, key=lambda r: (started[r], r), reverse=True)
    with storage.transaction() as tx:
        pages = []
        for offset in (0, 5, 10):
            rows, total = tx.list_runs(RunQuery(), 5, offset)
            assert total == 12
            pages.extend(r["id"] for r in rows)
        assert pages == expected
        assert tx.list_runs(RunQuery(), 5, 12) == ([], 12)
        assert tx.list_runs(RunQuery(), 5, 100) == ([], 12)


@pytest.mark.parametrize("batch", [1, 4, 7, 23, 500])
def test_iter_runs_yields_the_list_order_across_pages(storage: Storage, batch: int) -> None:
    with storage.transaction() as tx:
        for i in range(23):
            tx.create_run(run_row(f"run-{i:02d}", T0 + i // 4, ("running", "completed")[i % 2],
                                  agent=("a", "b")[i % 3 == 0]))
            # Costs and durations with ties, so each order leans on its tie-breakers.
            tx.update_run(f"run-{i:02d}", {"cost_usd": (i * 7) % 5 * 0.25,
                                           "ended_at": None if i % 2 == 0 else T0 + i // 4
                                           + (i * 3) % 4})
    with storage.transaction() as tx:
        # An export follows the page's order (the Runs page sorted by cost exported newest
        # first, a file in another order than the page it came from).
        for q in (RunQuery(), RunQuery(statuses=("completed",)), RunQuery(agent="a"),
                  RunQuery(search="run-1"), RunQuery(agent="nobody"),
                  *(RunQuery(sort=s) for s in ("oldest", "cost", "duration")),
                  RunQuery(sort="cost", statuses=("completed",)),
                  RunQuery(sort="duration", agent="a")):
            listed, total = tx.list_runs(q, 1000, 0)
            got = list(tx.iter_runs(q, batch=batch))
            assert got == listed, q
            assert len(got) == total


# ------------------------------------------------------------------------------ actions


def test_insert_actions_numbers_and_counts(storage: Storage) -> None:
    with storage.transaction() as tx:
        tx.create_run(run_row("r"))
        tx.create_run(run_row("other"))
        first = tx.insert_actions("r", [
            action("a1", outcome="success", cost=0.1, started=T0, duration_ns=2_000_000_000),
            action("a2", outcome="error", cost=None, started=T0 + 5, duration_ns=0,
                   error="bad"),
            action("a3", outcome="blocked", cost=0.25, started=T0 + 1,
                   duration_ns=10_000_000_000),
        ], NOW)
    assert first["first_seq"] == 1 and first["action_count"] == 3
    assert first["cost_usd"] == pytest.approx(0.35)
    with storage.transaction() as tx:
        r = tx.get_run("r")
        assert r is not None
        assert (r["action_count"], r["success_count"], r["error_count"], r["blocked_count"],
                r["replayed_count"]) == (3, 1, 1, 1, 0)
        assert r["cost_usd"] == pytest.approx(0.35)
        assert r["last_action_at"] == pytest.approx(T0 + 11)
        # A later batch, in a later transaction, continues the numbering; an action that
        # ended earlier does not move last_action_at back.
        second = tx.insert_actions("r", [
            action("a4", outcome="replayed", cost=0.05, started=T0 + 2, duration_ns=0),
            action("a5", outcome="success", cost=1.0, started=T0 + 3),
        ], NOW + 1)
        assert second["first_seq"] == 4 and second["action_count"] == 5
        assert second["cost_usd"] == pytest.approx(1.4)
        assert tx.insert_actions("r", [], NOW + 2)["first_seq"] is None
        # Numbering is per run.
        assert tx.insert_actions("other", [action("a1")], NOW)["first_seq"] == 1
    with storage.transaction() as tx:
        r = tx.get_run("r")
        assert r is not None
        assert r["last_action_at"] == pytest.approx(T0 + 11)
        third = tx.insert_actions("r", [action("a6", started=T0 + 20,
                                               duration_ns=500_000_000)], NOW + 3)
        assert third["first_seq"] == 6
    with storage.transaction() as tx:
        r = tx.get_run("r")
        rows, matched = tx.list_actions("r", ActionQuery(), 100)
        other = tx.get_run("other")
    assert r is not None and other is not None
    assert (r["action_count"], r["success_count"], r["error_count"], r["blocked_count"],
            r["replayed_count"]) == (6, 3, 1, 1, 1)
    assert r["cost_usd"] == pytest.approx(1.4)
    assert r["last_action_at"] == pytest.approx(T0 + 20.5)
    assert matched == 6
    assert [(a["seq"], a["id"]) for a in rows] == [(i, f"a{i}") for i in range(1, 7)]
    assert [a["recorded_at"] for a in rows] == [NOW, NOW, NOW, NOW + 1, NOW + 1, NOW + 3]
    assert other["action_count"] == 1 and other["success_count"] == 1


def test_llm_calls_of_unknown_price_are_counted_and_backfilled(storage: Storage) -> None:
    """An LLM call with no cost (a model in no price list) makes the run's cost a lower
    bound; a tool call without one costs nothing and is not counted."""
    with storage.transaction() as tx:
        tx.create_run(run_row("priced"))
        tx.create_run(run_row("unpriced"))
        tx.insert_actions("priced", [action("a1", channel="llm", cost=0.5),
                                     action("a2", channel="tool")], NOW)
        tx.insert_actions("unpriced", [action("b1", channel="llm"),
                                       action("b2", channel="llm", cost=0.25)], NOW)
        tx.insert_actions("unpriced", [action("b3", channel="llm")], NOW + 1)
        priced, unpriced = tx.get_run("priced"), tx.get_run("unpriced")
    assert priced is not None and unpriced is not None
    assert (priced["unpriced_calls"], priced["cost_usd"]) == (0, 0.5)
    assert (unpriced["unpriced_calls"], unpriced["cost_usd"]) == (2, 0.25)
    # A database from before the count learns it from the recorded actions.
    with storage.transaction() as tx:
        conn = tx.conn  # type: ignore[attr-defined]
        conn.execute(sa.update(t.agent_runs).values(unpriced_calls=0))
        conn.execute(sa.delete(t.schema_migrations).where(t.schema_migrations.c.version == 19))
    assert storage.migrate() == LATEST
    with storage.transaction() as tx:
        priced, unpriced = tx.get_run("priced"), tx.get_run("unpriced")
    assert priced is not None and unpriced is not None
    assert (priced["unpriced_calls"], unpriced["unpriced_calls"]) == (0, 2)


def test_known_action_ids(storage: Storage) -> None:
    with storage.transaction() as tx:
        tx.create_run(run_row("r1"))
        tx.create_run(run_row("r2"))
        tx.insert_actions("r1", [action("a1"), action("a2")], NOW)
        tx.insert_actions("r2", [action("a3"), action("a1")], NOW)  # ids are per run
    with storage.transaction() as tx:
        assert tx.known_action_ids("r1", ["a1", "a3", "zz"]) == {"a1"}
        assert tx.known_action_ids("r2", ["a1", "a3"]) == {"a1", "a3"}
        assert tx.known_action_ids("r1", []) == set()
        assert tx.known_action_ids("ghost", ["a1"]) == set()
        many = [f"x{i}" for i in range(1200)] + ["a2"]  # past one IN list's chunk
        assert tx.known_action_ids("r1", many) == {"a2"}


def _actions_fixture(tx: Transaction) -> None:
    tx.create_run(run_row("r"))
    tx.insert_actions("r", [
        action("x1", name="search_web", actor="PLAN/planner", channel="tool",
               inputs='{"query":"cats 100%"}', outputs='{"hits":3}'),
        action("x2", name="complete", actor="PLAN/planner", channel="llm",
               inputs='{"prompt":"hello"}', outputs='{"text":"needle here"}'),
        action("x3", name="complete", actor="ITER1/worker", channel="llm", outcome="error",
               outputs=None, error="rate limited"),
    ], NOW)
    tx.insert_actions("r", [
        action("x4", name="fetch", actor="ITER1/worker", channel="tool", outcome="blocked",
               inputs='{"url":"x_y"}'),
        action("x5", name="now", actor="main", channel="clock", outcome="replayed",
               inputs='{"t":"xzy"}'),
        action("x6", name="complete", actor="ITER1/worker", channel="llm",
               inputs='"' + "é" * 300 + '"', outputs='"' + "o" * 50 + '"'),
    ], NOW)


def test_a_search_finds_values_their_json_escapes(storage: Storage) -> None:
    # Inputs and outputs are stored as JSON: a Windows path, a quote or a line break in a value
    # is escaped there, and searching for it as people read it found nothing.
    import json

    with storage.transaction() as tx:
        tx.create_run(run_row("esc"))
        tx.insert_actions("esc", [
            action("e1", name="read_file", actor="main", channel="tool",
                   inputs=json.dumps({"path": "C:\\Users\\ada\\notes.txt"}),
                   outputs=json.dumps({"text": 'she said "hi"\nthen left'})),
            action("e2", name="other", actor="main", channel="tool",
                   inputs='{"q":"plain"}', outputs='{"n":1}'),
        ], NOW)
    with storage.transaction() as tx:
        assert seqs(tx, "esc", ActionQuery(search="C:\\Users\\ada")) == ([1], 1)
        assert seqs(tx, "esc", ActionQuery(search='said "hi"')) == ([1], 1)
        assert seqs(tx, "esc", ActionQuery(search='"q":"plain"')) == ([2], 1)  # as stored
        assert seqs(tx, "esc", ActionQuery(search="plain")) == ([2], 1)


def test_a_search_finds_text_a_value_holds_as_json_of_its_own(storage: Storage) -> None:
    # A value often holds JSON text of its own: an LLM's tool call carries its arguments as a
    # JSON string, a tool returns an HTTP body. Whatever wrote that text may have escaped
    # letters past ASCII (Python's json.dumps: Z\u00fcrich), slashes (PHP's: https:\/\/)
    # and quotes, and the master's canonical JSON escapes its quotes and backslashes again:
    # searching for what the dashboard shows found none of it.
    import json

    from titan.trace.canonical import dumps

    arguments = json.dumps({"city": "Zürich", "greeting": 'say "Grüße"'})
    body = '{"url":"https:\\/\\/example.com\\/a\\/b","emoji":"\\ud83c\\udf89"}'
    with storage.transaction() as tx:
        tx.create_run(run_row("nested"))
        tx.insert_actions("nested", [
            action("n1", name="complete", channel="llm", inputs=dumps({"prompt": "weather?"}),
                   outputs=dumps({"tool_calls": [{"function": {
                       "name": "weather", "arguments": arguments}}]})),
            action("n2", name="fetch", inputs=dumps({"page": 2}),
                   outputs=dumps({"status": 200, "body": body})),
            action("n3", name="plain", inputs=dumps({"city": "Zürich"}),
                   outputs=dumps({"ok": True})),
        ], NOW)
    with storage.transaction() as tx:
        def found(text: str) -> list[int]:
            return seqs(tx, "nested", ActionQuery(search=text))[0]

        # letters past ASCII its text escaped, in either case
        assert found("Zürich") == [1, 3]
        assert found("ZÜRICH") == [1, 3]
        assert found("zürich") == [1, 3]
        assert found("Grüße") == [1]
        assert found("🎉") == [2]
        # quotes its text escaped, and the master's JSON escaped again
        assert found('say "Grüße"') == [1]
        # slashes its text escaped
        assert found("example.com/a/b") == [2]
        # keys, bare, quoted, and with their values as the dashboard shows them
        assert found("greeting") == [1]
        assert found('"greeting"') == [1]
        assert found('"city": "Zürich"') == [1, 3]
        assert found('"city":"Zürich"') == [1, 3]
        assert found("nowhere") == []


def test_list_actions_filters_and_matched(storage: Storage) -> None:
    with storage.transaction() as tx:
        _actions_fixture(tx)
        tx.create_run(run_row("empty"))
    with storage.transaction() as tx:
        assert seqs(tx, "r", ActionQuery()) == ([1, 2, 3, 4, 5, 6], 6)
        assert seqs(tx, "r", ActionQuery(outcomes=("error", "blocked"))) == ([3, 4], 2)
        assert seqs(tx, "r", ActionQuery(outcomes=("success",))) == ([1, 2, 6], 3)
        # search: name, actor, inputs, outputs, error message; '%' and '_' literal
        assert seqs(tx, "r", ActionQuery(search="search_")) == ([1], 1)
        assert seqs(tx, "r", ActionQuery(search="needle")) == ([2], 1)
        assert seqs(tx, "r", ActionQuery(search="100%")) == ([1], 1)
        assert seqs(tx, "r", ActionQuery(search="x_y")) == ([4], 1)
        assert seqs(tx, "r", ActionQuery(search="rate lim")) == ([3], 1)
        # in either case, on both backends (PostgreSQL's LIKE told case apart, SQLite's not)
        assert seqs(tx, "r", ActionQuery(search="RATE LIM")) == ([3], 1)
        assert seqs(tx, "r", ActionQuery(search="Needle")) == ([2], 1)
        assert seqs(tx, "r", ActionQuery(search="iter1")) == ([3, 4, 6], 3)
        assert seqs(tx, "r", ActionQuery(search="ITER1")) == ([3, 4, 6], 3)
        assert seqs(tx, "r", ActionQuery(search="éé")) == ([6], 1)
        # letters past ASCII too (SQLite's lower() folded ASCII only; PostgreSQL's ILIKE all)
        assert seqs(tx, "r", ActionQuery(search="ÉÉ")) == ([6], 1)
        assert seqs(tx, "r", ActionQuery(search="nowhere")) == ([], 0)
        # actor and channel are exact
        assert seqs(tx, "r", ActionQuery(actor="ITER1/worker")) == ([3, 4, 6], 3)
        assert seqs(tx, "r", ActionQuery(actor="ITER1")) == ([], 0)
        assert seqs(tx, "r", ActionQuery(channel="llm")) == ([2, 3, 6], 3)
        assert seqs(tx, "r", ActionQuery(outcomes=("success",), channel="llm")) == ([2, 6], 2)
        # ids: those actions of the run (what the OTLP receiver asks after a restart)
        assert seqs(tx, "r", ActionQuery(ids=("x5", "x2", "nope"))) == ([2, 5], 2)
        assert seqs(tx, "r", ActionQuery(ids=())) == ([], 0)
        assert seqs(tx, "empty", ActionQuery(ids=("x2",))) == ([], 0)
        # after: only later seqs
        assert seqs(tx, "r", ActionQuery(after=3))[0] == [4, 5, 6]
        assert seqs(tx, "r", ActionQuery(after=3, channel="llm"))[0] == [6]
        assert seqs(tx, "r", ActionQuery(after=6))[0] == []
        # a page, and the count of all that match
        assert seqs(tx, "r", ActionQuery(), limit=2, offset=2) == ([3, 4], 6)
        assert seqs(tx, "r", ActionQuery(channel="llm"), limit=1, offset=1) == ([3], 3)
        assert seqs(tx, "r", ActionQuery(), limit=2, offset=10) == ([], 6)
        assert seqs(tx, "empty", ActionQuery()) == ([], 0)
        assert seqs(tx, "ghost", ActionQuery()) == ([], 0)


def test_list_actions_preview_cuts_payloads(storage: Storage) -> None:
    with storage.transaction() as tx:
        _actions_fixture(tx)
    with storage.transaction() as tx:
        full, _ = tx.list_actions("r", ActionQuery(), 100)
        cut, _ = tx.list_actions("r", ActionQuery(), 100, 0, preview=10)
    assert [a["inputs"] for a in full][5] == '"' + "é" * 300 + '"'
    by_seq = {a["seq"]: a for a in cut}
    # Characters, not bytes (é is two bytes).
    assert by_seq[6]["inputs"] == '"' + "é" * 9
    assert by_seq[6]["outputs"] == '"' + "o" * 9
    assert by_seq[6]["inputs_size"] == len(('"' + "é" * 300 + '"').encode())
    assert by_seq[3]["outputs"] is None and by_seq[3]["error_message"] == "rate limit"
    # How long the message was, in characters, for the page to say what its preview left out.
    assert by_seq[3]["error_length"] == len("rate limited") and by_seq[1]["error_length"] is None
    assert by_seq[1]["inputs"] == '{"query":"'
    assert by_seq[2]["outputs"] == '{"text":"n'
    for a, b in zip(full, cut, strict=True):  # the rest of each row is the same
        for key in a:
            if key not in ("inputs", "outputs", "error_message"):
                assert a[key] == b[key], key
            else:
                assert a[key] is None or a[key].startswith(b[key]), key


def test_iter_actions_and_get_action(storage: Storage) -> None:
    with storage.transaction() as tx:
        tx.create_run(run_row("r"))
        tx.create_run(run_row("other"))
        tx.insert_actions("r", [action(f"a{i}", tags={"i": i}, ordinal=i) for i in range(4)], NOW)
        tx.insert_actions("r", [action(f"a{i}", tags=["t"]) for i in range(4, 7)], NOW)
        tx.insert_actions("other", [action("o1")], NOW)
    with storage.transaction() as tx:
        for batch in (1, 3, 7, 1000):
            rows = list(tx.iter_actions("r", batch=batch))
            assert [a["seq"] for a in rows] == list(range(1, 8)), batch
            assert rows == [tx.get_action("r", s) for s in range(1, 8)]
        listed, _ = tx.list_actions("r", ActionQuery(), 100)
        assert list(tx.iter_actions("r", batch=2)) == listed
        assert list(tx.iter_actions("ghost")) == []
        a = tx.get_action("r", 3)
        assert tx.get_action("r", 99) is None
        assert tx.get_action("ghost", 1) is None
        assert [x["id"] for x in tx.iter_actions("other")] == ["o1"]
    assert a is not None
    assert (a["run_id"], a["seq"], a["id"], a["ordinal"]) == ("r", 3, "a2", 2)
    assert a["tags"] == {"i": 2} and a["inputs_blob"] is False and a["outputs_blob"] is False
    assert a["inputs"] == '{"q":1}' and a["outputs"] == '{"a":2}' and a["recorded_at"] == NOW
    assert a["duration_ns"] == 1_000_000


def test_action_breakdown(storage: Storage) -> None:
    with storage.transaction() as tx:
        tx.create_run(run_row("r"))
        tx.create_run(run_row("empty"))
        tx.insert_actions("r", [
            action("1", actor="PLAN/a", channel="llm", cost=0.1, duration_ns=100,
                   tokens=(10, 5)),
            action("2", actor="PLAN/a", channel="llm", cost=None, duration_ns=50),
            action("3", actor="PLAN/a", channel="tool", cost=0.2, duration_ns=1,
                   tokens=(3, None)),
            action("4", actor="ITER1/b", channel="llm", cost=0.3, duration_ns=7_000_000_000_000,
                   tokens=(1, 1)),
        ], NOW)
    with storage.transaction() as tx:
        rows = tx.action_breakdown("r")
        assert tx.action_breakdown("empty") == []
    assert [(r["actor"], r["channel"]) for r in rows] == [
        ("ITER1/b", "llm"), ("PLAN/a", "llm"), ("PLAN/a", "tool")]
    expected = [(1, 0.3, 7_000_000_000_000, 1, 1), (2, 0.1, 150, 10, 5), (1, 0.2, 1, 3, 0)]
    for r, (n, cost, duration, tin, tout) in zip(rows, expected, strict=True):
        assert r["actions"] == n and r["cost_usd"] == pytest.approx(cost)
        assert r["duration_ns"] == duration
        assert (r["input_tokens"], r["output_tokens"]) == (tin, tout)
        assert set(r) == {"actor", "channel", "actions", "cost_usd", "duration_ns",
                          "input_tokens", "output_tokens", "unpriced_calls"}
    # The LLM call of no known price is counted in its own row alone.
    assert [r["unpriced_calls"] for r in rows] == [0, 1, 0]


def test_token_counts_up_to_ingests_bound_are_stored(storage: Storage) -> None:
    # PostgreSQL's INTEGER stopped at 2^31-1: a 3e9-token action failed its whole batch
    # with a 500 (its COPY), while ingestion allows 10^15 and SQLite stored it.
    big = action("big", channel="llm", tokens=(3_000_000_000, 10**15))
    big.update(cached_tokens=2**31, reasoning_tokens=10**15)
    with storage.transaction() as tx:
        tx.create_run(run_row("r"))
        tx.insert_actions("r", [action("before"), big, action("after")], NOW)
    with storage.transaction() as tx:
        rows, matched = tx.list_actions("r", ActionQuery(), 10)
        [llm] = [r for r in tx.action_breakdown("r") if r["channel"] == "llm"]
    assert matched == 3
    stored = rows[1]
    assert (stored["input_tokens"], stored["output_tokens"], stored["cached_tokens"],
            stored["reasoning_tokens"]) == (3_000_000_000, 10**15, 2**31, 10**15)
    assert (llm["input_tokens"], llm["output_tokens"]) == (3_000_000_000, 10**15)


def test_an_ordinal_numbered_past_the_bound_is_refused(storage: Storage) -> None:
    from titan.errors import ValidationFailed
    from titan.master.runs.actions import fill_ordinals
    from titan.master.runs.ingest import MAX_ORDINAL

    with storage.transaction() as tx:
        tx.create_run(run_row("r"))
        tx.insert_actions("r", [action("last", ordinal=MAX_ORDINAL)], NOW)
    with storage.transaction() as tx, pytest.raises(ValidationFailed, match="no ordinal"):
        fill_ordinals(tx, "r", [{**action("next"), "ordinal": None}])


# ------------------------------------------------------------------------------ the registry


def _outcomes(run_id: str, blocked: int, replayed: int, success: int,
              start: float) -> list[dict[str, Any]]:
    outcomes = ["blocked"] * blocked + ["replayed"] * replayed + ["success"] * success
    return [action(f"{run_id}-{i}", outcome=o, started=start, duration_ns=0)
            for i, o in enumerate(outcomes)]


def test_intercepts(storage: Storage) -> None:
    with storage.transaction() as tx:
        tx.create_run(run_row("failed", T0 + 1, "failed"))
        tx.update_run("failed", {"ended_at": T0 + 100})
        tx.create_run(run_row("over", T0 + 2))
        tx.update_run("over", {"over_budget_at": T0 + 2.5, "blocked": True})
        tx.create_run(run_row("busy", T0 + 3))  # 2 of 10 blocked or replayed: 20%
        tx.insert_actions("busy", _outcomes("busy", 1, 1, 8, T0 + 3), NOW)
        tx.create_run(run_row("calm", T0 + 4))  # 1 of 10: 10%
        tx.insert_actions("calm", _outcomes("calm", 1, 0, 9, T0 + 4), NOW)
        tx.create_run(run_row("fine", T0 + 5, "completed"))
        tx.insert_actions("fine", _outcomes("fine", 0, 0, 3, T0 + 5), NOW)
        tx.create_run(run_row("idle", T0 + 6))  # no actions at all: never an intercept
        tx.create_run(run_row("unblocked", T0 + 7))  # once over budget, still listed
        tx.update_run("unblocked", {"over_budget_at": T0 + 7})

    def ids(since: float | None, rate: float, limit: int = 50) -> list[str]:
        with storage.transaction() as tx:
            return [r["id"] for r in tx.intercepts(since, rate, limit)]

    # most recent first: ended_at, else last action, else start
    assert ids(None, 0.2) == ["failed", "unblocked", "busy", "over"]
    assert ids(None, 0.1) == ["failed", "unblocked", "calm", "busy", "over"]
    assert ids(None, 0.5) == ["failed", "unblocked", "over"]
    assert ids(T0 + 2, 0.2) == ["unblocked", "busy", "over"]
    assert ids(T0 + 3.5, 0.2) == ["unblocked"]
    assert ids(None, 0.2, limit=2) == ["failed", "unblocked"]
    with storage.transaction() as tx:
        (row,) = [r for r in tx.intercepts(None, 0.2, 50) if r["id"] == "over"]
    assert row["blocked"] is True and row["tags"] is None


def test_finished_runs_before_skips_running_runs(storage: Storage) -> None:
    with storage.transaction() as tx:
        tx.create_run(run_row("old_done", T0, "completed"))
        tx.update_run("old_done", {"ended_at": T0 + 10})
        tx.create_run(run_row("old_failed", T0 + 1, "failed"))
        tx.insert_actions("old_failed", [action("a", started=T0 + 20, duration_ns=0)], NOW)
        tx.create_run(run_row("old_cancelled", T0 + 5, "cancelled"))
        tx.create_run(run_row("a_tie", T0 + 5, "completed"))  # same start: by id
        tx.create_run(run_row("old_running", T0 - 1000))
        tx.insert_actions("old_running", [action("a", started=T0 - 999)], NOW)
        tx.create_run(run_row("new_done", T0 + 1000, "completed"))
        tx.update_run("new_done", {"ended_at": T0 + 1010})
        tx.create_run(run_row("ended_late", T0 - 500, "completed"))  # what counts is the start
        tx.update_run("ended_late", {"ended_at": T0 + 2000})
    with storage.transaction() as tx:
        assert tx.finished_runs_before(T0 + 500, 100) == [
            "ended_late", "old_done", "old_failed", "a_tie", "old_cancelled"]
        assert tx.finished_runs_before(T0 + 500, 2) == ["ended_late", "old_done"]
        assert tx.finished_runs_before(T0, 100) == ["ended_late"]  # strictly before
        assert tx.finished_runs_before(T0 + 5000, 100) == [
            "ended_late", "old_done", "old_failed", "a_tie", "old_cancelled", "new_done"]
        assert tx.finished_runs_before(T0 - 2000, 100) == []
        among = ["new_done", "old_running", "old_done", "ghost"]
        assert tx.finished_runs_before(T0 + 5000, 100, among) == ["old_done", "new_done"]
        assert tx.finished_runs_before(T0 + 500, 100, among) == ["old_done"]
        assert tx.finished_runs_before(T0 + 5000, 100, []) == []


def test_runs_still_in_use_are_neither_pruned_nor_archived(storage: Storage) -> None:
    """A finished run whose stage still runs (PATCHed completed, or ended "crashed:" while its
    driver was only cut off), and one a running replay reads, are still in use: prune and
    the archive sweep pass them by until the stage or the replay ends (QA)."""
    with storage.transaction() as tx:
        for run_id in ("staged", "replayed", "free"):
            tx.create_run(run_row(run_id, T0, "completed"))
        tx.ensure_agent_run("staged", T0)
        stage = tx.insert_dag(base.dag_row("STAGE", 1, "staged"))  # WAITING
        tx.create_run(dict(run_row("replayed-replay-1", T0 + 1), replay_of="replayed"))
    with storage.transaction() as tx:
        assert tx.finished_runs_before(T0 + 500, 100) == ["free"]
        # An export of what a prune would delete (`titan runs prune --export-to`) agrees.
        prunable = RunQuery(before=T0 + 500, archived=None, prunable=True)
        assert [r["id"] for r in tx.iter_runs(prunable)] == ["free"]
        assert tx.archivable_runs(T0 + 500, 100) == ["free"]
        assert tx.unsettled_runs(["free", "staged", "replayed", "replayed-replay-1"]) == [
            "staged", "replayed", "replayed-replay-1"]
        tx.update_dags({stage: {"status": "COMPLETED"}})
        tx.update_run("replayed-replay-1", {"status": "completed"})
    with storage.transaction() as tx:
        assert sorted(tx.finished_runs_before(T0 + 500, 100)) == [
            "free", "replayed", "replayed-replay-1", "staged"]
        assert sorted(r["id"] for r in tx.iter_runs(prunable)) == [
            "free", "replayed", "replayed-replay-1", "staged"]
        tx.update_run("free", {"retention_class": "extended"})
        assert "free" not in {r["id"] for r in tx.iter_runs(prunable)}


def test_finished_runs_before_among_a_long_list(storage: Storage) -> None:
    """`titan runs prune --export-to` passes the id of every run it exported: a retention
    window of a busy fleet is tens of thousands of ids, more than one statement may bind."""
    with storage.transaction() as tx:
        tx.create_run(run_row("old-1", T0, "completed"))
        tx.create_run(run_row("old-2", T0 + 1, "failed"))
        tx.create_run(run_row("old-3", T0 + 2, "completed"))
    among = [f"gone-{i}" for i in range(70_000)] + ["old-2", "old-1"]
    with storage.transaction() as tx:
        assert tx.finished_runs_before(T0 + 100, 1000, among) == ["old-1", "old-2"]


def test_delete_runs_removes_actions_and_detaches_dags(storage: Storage) -> None:
    with storage.transaction() as tx:
        for run_id in ("r1", "r2"):
            tx.create_run(run_row(run_id, status="completed"))
            tx.insert_actions(run_id, [action("a1"), action("a2", outcome="error")], NOW)
        d1 = tx.insert_dag(dag_row("r1_PLAN", 1, "r1"))
        d1b = tx.insert_dag(dag_row("r1_ITER1", 1, "r1"))
        d2 = tx.insert_dag(dag_row("r2_PLAN", 1, "r2"))
        loose = tx.insert_dag(dag_row("loose", 1))
        jobs = tx.insert_jobs([job_row(d1, "plan"), job_row(d1b, "it"), job_row(d2, "plan2")])
    with storage.transaction() as tx:
        assert tx.delete_runs(["r1", "ghost"]) == 1
        assert tx.delete_runs([]) == 0
    with storage.transaction() as tx:
        assert tx.get_run("r1") is None
        assert tx.list_actions("r1", ActionQuery(), 100) == ([], 0)
        assert tx.get_action("r1", 1) is None
        assert tx.known_action_ids("r1", ["a1", "a2"]) == set()
        assert list(tx.iter_actions("r1")) == []
        assert tx.action_breakdown("r1") == []
        # its DAGs and their jobs stay, no longer grouped under the run
        for dag_id in (d1, d1b):
            dag = tx.get_dag(dag_id)
            assert dag is not None and dag["agent_run_id"] is None
        assert tx.list_dags(agent_run_id="r1") == ([], 0)
        assert tx.get_job(jobs[0]) is not None and tx.get_job(jobs[1]) is not None
        loose_dag = tx.get_dag(loose)
        assert loose_dag is not None and loose_dag["agent_run_id"] is None
        # the other run is untouched
        r2 = tx.get_run("r2")
        assert r2 is not None and r2["action_count"] == 2
        assert tx.list_actions("r2", ActionQuery(), 100)[1] == 2
        d2_row = tx.get_dag(d2)
        assert d2_row is not None and d2_row["agent_run_id"] == "r2"
        # the id is free again, with no actions left behind
        assert tx.create_run(run_row("r1")) is True
        assert tx.insert_actions("r1", [action("a1")], NOW)["first_seq"] == 1
    with storage.transaction() as tx:
        many = [f"bulk-{i:03d}" for i in range(250)]  # more than one chunk of deletes
        for run_id in many:
            tx.create_run(run_row(run_id, status="completed"))
        tx.insert_actions(many[-1], [action("z")], NOW)
        tx.insert_dag(dag_row("bulk", 1, many[-1]))
    with storage.transaction() as tx:
        assert tx.delete_runs(many) == 250
        assert tx.list_runs(RunQuery(search="bulk-"), 10, 0) == ([], 0)
        bulk = tx.find_dag("bulk")
        assert bulk is not None and bulk["agent_run_id"] is None


def test_run_scripts_distinct_and_sorted(storage: Storage) -> None:
    def job(dag_id: int, job_id: str, filename: str, sha: str | None) -> dict[str, Any]:
        return dict(job_row(dag_id, job_id), filename=filename, script_sha256=sha)

    with storage.transaction() as tx:
        tx.create_run(run_row("r1"))
        tx.create_run(run_row("r2"))
        tx.create_run(run_row("none"))
        d1 = tx.insert_dag(dag_row("r1_PLAN", 1, "r1"))
        d2 = tx.insert_dag(dag_row("r1_ITER1", 1, "r1"))
        d3 = tx.insert_dag(dag_row("r2_PLAN", 1, "r2"))
        tx.insert_jobs([job(d1, "p", "b.py", "2" * 64), job(d1, "q", "a.py", "1" * 64),
                        job(d1, "nosha", "c.py", None)])
        tx.insert_jobs([job(d2, "p", "a.py", "1" * 64), job(d2, "q", "a.py", "4" * 64),
                        job(d2, "r", "b.py", "2" * 64)])
        tx.insert_jobs([job(d3, "z", "z.py", "3" * 64)])
    with storage.transaction() as tx:
        assert tx.run_scripts("r1") == [("a.py", "1" * 64), ("a.py", "4" * 64),
                                        ("b.py", "2" * 64)]
        assert tx.run_scripts("r2") == [("z.py", "3" * 64)]
        assert tx.run_scripts("none") == []
        assert tx.run_scripts("ghost") == []


# ------------------------------------------------------------------------------ agents


def test_set_agent_budget_upserts(storage: Storage) -> None:
    with storage.transaction() as tx:
        assert tx.get_agent("bot") is None
        tx.set_agent_budget("bot", 5.0, T0)
        tx.set_agent_budget("other", 1.0, T0)
    with storage.transaction() as tx:
        assert tx.get_agent("bot") == {"id": "bot", "budget_usd": 5.0, "created_at": T0}
        tx.set_agent_budget("bot", 7.5, T0 + 9)
    with storage.transaction() as tx:  # a second set keeps when the agent was first seen
        assert tx.get_agent("bot") == {"id": "bot", "budget_usd": 7.5, "created_at": T0}
        tx.set_agent_budget("bot", None, T0 + 10)
    with storage.transaction() as tx:
        assert tx.get_agent("bot") == {"id": "bot", "budget_usd": None, "created_at": T0}
        assert tx.get_agent("other") == {"id": "other", "budget_usd": 1.0, "created_at": T0}
        assert tx.get_agent("nobody") is None


def test_agent_runs_series_oldest_first(storage: Storage) -> None:
    with storage.transaction() as tx:
        for run_id, offset, status in (("b1", 3, "completed"), ("b2", 1, "failed"),
                                       ("b3", 5, "running"), ("b4", 2, "completed"),
                                       ("b5", 4, "cancelled")):
            tx.create_run(run_row(run_id, T0 + offset, status, agent="bot"))
        tx.create_run(run_row("o1", T0 + 10, agent="other"))
        tx.insert_actions("b5", [action("1", cost=0.5), action("2", outcome="error"),
                                 action("3", cost=0.25)], NOW)
        tx.update_run("b1", {"ended_at": T0 + 30})
    with storage.transaction() as tx:
        latest = tx.agent_runs_series("bot", 3)
        everything = tx.agent_runs_series("bot", 100)
        assert tx.agent_runs_series("nobody", 10) == []
    assert [r["id"] for r in latest] == ["b1", "b5", "b3"]
    assert [r["id"] for r in everything] == ["b2", "b4", "b1", "b5", "b3"]
    assert all(set(r) == {"id", "status", "started_at", "ended_at", "cost_usd",
                          "unpriced_calls", "action_count", "success_count"}
               for r in everything)
    b1, b5 = everything[2], everything[3]
    assert (b1["status"], b1["started_at"], b1["ended_at"]) == ("completed", T0 + 3, T0 + 30)
    assert (b5["action_count"], b5["success_count"]) == (3, 2)
    assert b5["cost_usd"] == pytest.approx(0.75)


def test_agent_ids(storage: Storage) -> None:
    with storage.transaction() as tx:
        for i, agent in enumerate(("beta", "alpha", "alpha_2", "alphaz2", "gamma%", "alpha",
                                   None)):
            tx.create_run(run_row(f"r{i}", agent=agent))
    with storage.transaction() as tx:
        everything = tx.agent_ids("", 100)
        assert sorted(everything) == everything
        assert set(everything) == {"alpha", "alpha_2", "alphaz2", "beta", "gamma%"}
        assert tx.agent_ids("a_2", 10) == ["alpha_2"]
        assert tx.agent_ids("%", 10) == ["gamma%"]
        assert set(tx.agent_ids("ph", 10)) == {"alpha", "alpha_2", "alphaz2"}
        assert tx.agent_ids("et", 10) == ["beta"]
        # Either case, on PostgreSQL too (its LIKE is case-sensitive): the agent field asks
        # with what the user typed (GET /agents?q=).
        assert tx.agent_ids("BET", 10) == ["beta"]
        assert len(tx.agent_ids("", 2)) == 2
        assert tx.agent_ids("nope", 10) == []


# ------------------------------------------------------------------------------ migration 3


def _version_2_metadata() -> sa.MetaData:
    """The schema as version 2 had it: agent_runs with two columns, no agents nor actions."""
    md = sa.MetaData()
    sa.Table("agent_runs", md, sa.Column("id", sa.String(200), primary_key=True),
             sa.Column("created_at", sa.Float, nullable=False))
    for table in t.metadata.sorted_tables:
        if table.name not in ("agent_runs", "agents", "actions"):
            table.to_metadata(md)
    return md


@pytest.fixture(params=["sqlite", "postgres"])
def empty_database(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'v2.db'}"
    else:
        with fresh_postgres_database("titan_mig") as url:
            yield url


def test_a_version_2_database_migrates_to_3_and_keeps_its_runs(empty_database: str) -> None:
    url = empty_database
    md = _version_2_metadata()
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        md.create_all(conn)
        conn.execute(t.schema_migrations.insert(),
                     [{"version": v, "name": name, "applied_at": 1.0}
                      for v, name, _ in MIGRATIONS if v <= 2])
        conn.execute(md.tables["agent_runs"].insert(),
                     [{"id": "OLD_1", "created_at": T0}, {"id": "OLD_2", "created_at": T0 + 5}])
        # Finished: a run with a stage still waiting is not prunable (it is in use).
        conn.execute(md.tables["dags"].insert(),
                     dict(dag_row("OLD_1_PLAN", 1, "OLD_1"), status="COMPLETED"))
    engine.dispose()

    s = open_storage(url)
    try:
        assert s.migrate() == LATEST >= 3
        with s.transaction() as tx:
            conn = tx.conn  # type: ignore[attr-defined]
            versions = sorted(r[0] for r in conn.execute(sa.select(t.schema_migrations.c.version)))
            insp = sa.inspect(conn)
            for table in (t.agent_runs, t.agents, t.actions):
                assert {c["name"] for c in insp.get_columns(table.name)} == {
                    c.name for c in table.columns}, table.name
            run_indexes = {i["name"] for i in insp.get_indexes("agent_runs")}
            assert {"ix_agent_runs_started", "ix_agent_runs_agent"} <= run_indexes
            old = tx.get_run("OLD_1")
            listed = run_ids(tx, RunQuery(statuses=("completed",)))
            dag = tx.find_dag("OLD_1_PLAN")
        assert versions == list(range(1, LATEST + 1))
        assert old is not None
        assert (old["status"], old["created_at"], old["started_at"]) == ("completed", T0, T0)
        assert old["ended_at"] is None and old["agent_id"] is None and old["tags"] is None
        assert old["cost_usd"] == 0.0 and old["action_count"] == 0
        assert old["blocked"] is False and old["over_budget_at"] is None
        assert listed == ["OLD_2", "OLD_1"]
        assert dag is not None and dag["agent_run_id"] == "OLD_1"
        # The migrated tables work like fresh ones.
        with s.transaction() as tx:
            assert tx.insert_actions("OLD_1", [action("a", cost=0.5)], NOW)["first_seq"] == 1
            assert tx.ensure_agent_run("NEW_1", T0 + 50, "NEW") is True
            tx.set_agent_budget("NEW", 1.0, T0)
            assert tx.finished_runs_before(T0 + 10, 10) == ["OLD_1", "OLD_2"]
            assert tx.finished_runs_before(T0 + 100, 10, ["OLD_2", "NEW_1"]) == ["OLD_2"]
        with s.transaction() as tx:
            old, new = tx.get_run("OLD_1"), tx.get_run("NEW_1")
            assert tx.get_agent("NEW") == {"id": "NEW", "budget_usd": 1.0, "created_at": T0}
        assert old is not None and old["action_count"] == 1 and old["cost_usd"] == 0.5
        assert new is not None and new["status"] == "running" and new["blocked"] is False
    finally:
        s.close()
