"""The agent-run API against a real `titan up`: opening runs, ingesting batches of actions
(all or nothing, resends deduplicated), large payloads, the registry's filters and the export
agreeing with each other, roles, budgets (per run and per agent), ending runs, retention."""

from __future__ import annotations

import asyncio
import csv
import hashlib
import io
import json
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.harness import Cluster, isolated_cluster
from titan import TitanJob

NOW = time.time()
HOUR, DAY = 3600.0, 86400.0


@pytest.fixture(scope="module")
def cl(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = isolated_cluster(tmp_path_factory.mktemp("runs-api"), slots=2)
    try:
        yield c
    finally:
        c.stop()


@pytest.fixture(scope="module")
def tokens(cl: Cluster) -> dict[str, str]:
    """A token of each role but admin (whose token the cluster has)."""
    out = {}
    for role in ("viewer", "operator", "worker"):
        status, body = call(cl, "POST", "/tokens", {"role": role, "name": f"runs-{role}"})
        assert status == 201, body
        out[role] = body["token"]
    return out


def call(cl: Cluster, method: str, path: str, body: Any = None, *, token: str | None = "admin",
         params: dict[str, Any] | None = None, content: bytes | None = None) -> tuple[int, Any]:
    """One request; (status, decoded JSON body or the text when it is not JSON)."""
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {cl.admin_token if token == 'admin' else token}"
    if content is None and body is not None:
        content = json.dumps(body).encode()
    r = httpx.request(method, f"{cl.url}/api/v1{path}", content=content, headers=headers,
                      params=params, timeout=60)
    try:
        return r.status_code, r.json()
    except ValueError:
        return r.status_code, r.text


def ok(cl: Cluster, method: str, path: str, body: Any = None, *, status: int = 200,
       **kw: Any) -> Any:
    got, reply = call(cl, method, path, body, **kw)
    assert got == status, (method, path, got, reply)
    return reply


def error(cl: Cluster, method: str, path: str, body: Any = None, *, status: int,
          code: str | None = None, **kw: Any) -> dict[str, Any]:
    got, reply = call(cl, method, path, body, **kw)
    assert got == status, (method, path, got, reply)
    assert isinstance(reply, dict) and set(reply) == {"error"}, reply
    err = reply["error"]
    assert set(err) == {"code", "message", "details"} and err["message"], err
    if code is not None:
        assert err["code"] == code, err
    return err


def fields_of(err: dict[str, Any]) -> list[tuple[int | None, str]]:
    return [(e["index"], e["field"]) for e in err["details"]["errors"]]


def act(action_id: str | None, **kw: Any) -> dict[str, Any]:
    a: dict[str, Any] = {"name": "lookup", "started_at": NOW, "duration_ns": 1_000_000, **kw}
    if action_id is not None:
        a["id"] = action_id
    return a


def new_run(cl: Cluster, run_id: str, **fields: Any) -> dict[str, Any]:
    return ok(cl, "POST", "/runs", {"id": run_id, **fields}, status=201)


def ingest(cl: Cluster, run_id: str, actions: list[dict[str, Any]], **kw: Any) -> dict[str, Any]:
    return ok(cl, "POST", f"/runs/{run_id}/actions", {"actions": actions}, **kw)


def get_run(cl: Cluster, run_id: str) -> dict[str, Any]:
    return ok(cl, "GET", f"/runs/{run_id}")


def list_actions(cl: Cluster, run_id: str, **params: Any) -> dict[str, Any]:
    return ok(cl, "GET", f"/runs/{run_id}/actions", params={"limit": 1000, **params})


# ------------------------------------------------------------------------------ opening runs


def test_post_runs_is_idempotent_by_id(cl: Cluster) -> None:
    status, first = call(cl, "POST", "/runs", {"id": "open-1", "agent_id": "opener",
                                               "tags": ["a", "b"]})
    assert status == 201, first
    assert first["id"] == "open-1" and first["status"] == "running"
    assert first["agent_id"] == "opener" and first["tags"] == ["a", "b"]
    assert first["action_count"] == 0 and first["cost_usd"] == 0 and first["ended_at"] is None
    assert abs(first["started_at"] - time.time()) < 60
    status, again = call(cl, "POST", "/runs", {"id": "open-1", "agent_id": "someone-else",
                                               "started_at": NOW - DAY})
    assert status == 200, again
    assert again["agent_id"] == "opener" and again["started_at"] == first["started_at"]
    assert again["tags"] == ["a", "b"]
    assert get_run(cl, "open-1")["started_at"] == first["started_at"]
    # started_at may be given (a run reported after the fact); an id may be left to the master
    past = new_run(cl, "open-2", started_at=NOW - 3 * DAY)
    assert past["started_at"] == NOW - 3 * DAY
    made = ok(cl, "POST", "/runs", {"agent_id": "opener"}, status=201)
    assert made["id"].startswith("run-") and get_run(cl, made["id"])["agent_id"] == "opener"


@pytest.mark.parametrize(("body", "field"), [
    ({"id": "has space"}, "id"),
    ({"id": "x" * 201}, "id"),
    ({"id": "bad-field-1", "colour": "red"}, "colour"),
    ({"id": "bad-budget-1", "budget_usd": -1}, "budget_usd"),
    ({"id": "bad-budget-2", "budget_usd": "ten"}, "budget_usd"),
    ({"id": "bad-start-1", "started_at": "yesterday"}, "started_at"),
    ({"id": "bad-start-2", "started_at": 12.0}, "started_at"),
    ({"id": "bad-status-1", "status": "completed"}, "status"),
    ({"id": "bad-tags-1", "tags": 5}, "tags"),
    ({"id": "bad-agent-1", "agent_id": 7}, "agent_id"),
    ({"id": "export"}, "id"),  # GET /runs/export is the export: the run could not be read
    ({"id": "intercepts"}, "id"),
])
def test_post_runs_refuses_bad_fields(cl: Cluster, body: dict[str, Any], field: str) -> None:
    err = error(cl, "POST", "/runs", body, status=400, code="invalid_request")
    assert field in [f for _, f in fields_of(err)], err
    if isinstance(body.get("id"), str) and " " not in body["id"] and len(body["id"]) <= 200 \
            and body["id"] not in ("export", "intercepts"):
        error(cl, "GET", f"/runs/{body['id']}", status=404, code="not_found")


def test_post_runs_needs_an_object(cl: Cluster) -> None:
    error(cl, "POST", "/runs", [{"id": "in-a-list"}], status=400)
    error(cl, "POST", "/runs", content=b"{not json", status=400)
    error(cl, "GET", "/runs/in-a-list", status=404)


# ------------------------------------------------------------------------------ ingesting


def test_a_batch_is_accepted_and_a_resend_is_not_counted_twice(cl: Cluster) -> None:
    new_run(cl, "ing-1", agent_id="ingester")
    batch = [act("a1", cost_usd=0.1, outcome="success", channel="llm", model="m",
                 usage={"input_tokens": 10, "output_tokens": 3}),
             act("a2", cost_usd=0.2, error="timed out", channel="tool"),
             act("a3", outputs={"n": 1})]
    first = ingest(cl, "ing-1", batch)
    assert (first["accepted"], first["duplicates"], first["first_seq"]) == (3, 0, 1)
    assert first["run"]["action_count"] == 3
    assert first["run"]["cost_usd"] == pytest.approx(0.3)
    assert first["run"]["blocked"] is False
    again = ingest(cl, "ing-1", batch)
    assert (again["accepted"], again["duplicates"], again["first_seq"]) == (0, 3, None)
    assert again["run"]["action_count"] == 3
    assert again["run"]["cost_usd"] == pytest.approx(0.3)
    run = get_run(cl, "ing-1")
    assert (run["action_count"], run["success_count"], run["error_count"]) == (3, 2, 1)
    assert run["cost_usd"] == pytest.approx(0.3) and run["success_rate"] == pytest.approx(0.6667)
    # half resent, half new: only the new half counts, numbered after the first batch
    mixed = ingest(cl, "ing-1", [batch[2], act("a4", cost_usd=0.05), batch[0],
                                 act("a5", outcome="replayed")])
    assert (mixed["accepted"], mixed["duplicates"], mixed["first_seq"]) == (2, 2, 4)
    page = list_actions(cl, "ing-1")
    assert page["matched"] == 5
    assert [(a["seq"], a["id"]) for a in page["actions"]] == [
        (1, "a1"), (2, "a2"), (3, "a3"), (4, "a4"), (5, "a5")]
    a1, a2 = page["actions"][0], page["actions"][1]
    assert a1["usage"] == {"input_tokens": 10, "output_tokens": 3} and a1["model"] == "m"
    assert a2["outcome"] == "error" and a2["error"] == {"type": "Error", "message": "timed out"}
    run = get_run(cl, "ing-1")
    assert (run["action_count"], run["replayed_count"]) == (5, 1)
    assert run["cost_usd"] == pytest.approx(0.35)
    assert run["by_channel"] and sum(c["actions"] for c in run["by_channel"]) == 5
    assert run["tokens"] == {"input": 10, "output": 3}


def test_seed_004s_example_action_is_taken_as_written(cl: Cluster) -> None:
    """Seed 004 shows an action as {"action", "inputs", "outputs", "duration_ns", "outcome"}:
    posted as it is, it was refused (no name, no started_at). "action" is the name's other
    spelling, and an action without a start began its duration before it was received."""
    new_run(cl, "seed4-example")
    example = {
        "action": "call_llm",
        "inputs": {"prompt": "What is 2+2?", "model": "gpt-4o", "max_tokens": 100},
        "outputs": {"response": "2 + 2 equals 4.", "tokens": 15, "cost_usd": 0.0008},
        "duration_ns": 523000000,
        "outcome": "success",
    }
    before = time.time()
    assert ingest(cl, "seed4-example", [example])["accepted"] == 1
    [got] = list_actions(cl, "seed4-example")["actions"]
    assert got["name"] == "call_llm" and got["outcome"] == "success"
    # ... and reads back in it: a client comparing what it posted with what it reads finds
    # its "action" (there was only "name").
    assert {k: got[k] for k in example} == example
    assert got["duration_ns"] == 523000000
    assert before - 0.523 - 1 <= got["started_at"] <= time.time() - 0.5
    whole = ok(cl, "GET", f"/runs/seed4-example/actions/{got['seq']}")
    assert {k: whole[k] for k in example} == example
    exported = json.loads(export(cl, "json", {"run": "seed4-example"}, actions=True))
    assert {k: exported["runs"][0]["actions"][0][k] for k in example} == example
    # Its model and cost are where the seed puts them, in its inputs and outputs: the run
    # costs what its call did (it showed $0).
    assert got["model"] == "gpt-4o" and got["cost_usd"] == pytest.approx(0.0008)
    assert get_run(cl, "seed4-example")["cost_usd"] == pytest.approx(0.0008)
    # Both spellings agreeing is the same action.
    assert ingest(cl, "seed4-example", [{**example, "name": "call_llm"}])["accepted"] == 1
    # Only in the seed's shape: an action of Titan's own (named by "name") that returned a
    # price is a tool's answer, not spend; and a cost or model given outright wins.
    new_run(cl, "seed4-shapes")
    tool = {k: v for k, v in example.items() if k != "action"}
    assert ingest(cl, "seed4-shapes", [{**tool, "name": "quote_price"},
                                       {**example, "model": "gpt-4o-mini", "cost_usd": 0.5}]
                  )["accepted"] == 2
    quote, stated = list_actions(cl, "seed4-shapes")["actions"]
    assert (quote["model"], quote["cost_usd"]) == (None, None)
    assert (stated["model"], stated["cost_usd"]) == ("gpt-4o-mini", pytest.approx(0.5))


def _bad_batches() -> list[tuple[str, Any, list[tuple[int | None, str]] | None]]:
    fine = act("fine-1")
    return [
        ("missing name", {"actions": [fine, {"id": "x1", "started_at": NOW}]}, [(1, "name")]),
        ("unknown field", {"actions": [fine, act("x1", colour="red")]}, [(1, "colour")]),
        ("bad outcome", {"actions": [fine, act("x1", outcome="maybe")]}, [(1, "outcome")]),
        ("negative cost", {"actions": [fine, act("x1", cost_usd=-0.01)]}, [(1, "cost_usd")]),
        ("bad usage key", {"actions": [fine, act("x1", usage={"tokens": 3})]},
         [(1, "usage.tokens")]),
        ("usage not an int", {"actions": [fine, act("x1", usage={"input_tokens": 1.5})]},
         [(1, "usage.input_tokens")]),
        ("started_at a string", {"actions": [fine, act("x1", started_at="now")]},
         [(1, "started_at")]),
        ("name and action differ", {"actions": [fine, act("x1", action="other")]},
         [(1, "action")]),
        ("action not a string", {"actions": [fine, {"action": 5, "started_at": NOW}]},
         [(1, "action")]),
        ("seed-shaped price negative", {"actions": [fine, {"action": "call_llm", "outputs": {
            "cost_usd": -1}}]}, [(1, "outputs.cost_usd")]),
        ("started_at far future", {"actions": [fine, act("x1", started_at=NOW + 3 * DAY)]},
         [(1, "started_at")]),
        ("bad channel", {"actions": [fine, act("x1", channel="radio")]}, [(1, "channel")]),
        ("bad id", {"actions": [fine, act("has/slash")]}, [(1, "id")]),
        ("duplicate id", {"actions": [fine, act("fine-1")]}, [(1, "id")]),
        ("not an object", {"actions": [fine, "lookup"]}, [(1, "")]),
        ("several problems", {"actions": [act("y1", outcome="?"), fine,
                                          act("y2", cost_usd=-1, name="")]},
         [(0, "outcome"), (2, "name"), (2, "cost_usd")]),
        ("actions not a list", {"actions": {"0": fine}}, None),
        ("a bare list", [fine], None),
        ("empty list", {"actions": []}, None),
        ("too many", {"actions": [act(f"m{i}") for i in range(10_001)]}, None),
    ]


def test_bad_batches_are_rejected_whole_and_store_nothing(cl: Cluster) -> None:
    new_run(cl, "bad-1")
    ingest(cl, "bad-1", [act("kept")])
    for what, body, expected in _bad_batches():
        err = error(cl, "POST", "/runs/bad-1/actions", body, status=400, code="invalid_request")
        if expected is not None:
            got = fields_of(err)
            assert sorted(got, key=str) == sorted(expected, key=str), (what, err)
    err = error(cl, "POST", "/runs/bad-1/actions", content=b'{"actions": [', status=400)
    assert "JSON" in err["message"]
    run = get_run(cl, "bad-1")
    assert run["action_count"] == 1 and run["cost_usd"] == 0
    assert [a["id"] for a in list_actions(cl, "bad-1")["actions"]] == ["kept"]
    # the valid actions of the refused batches were never stored: sent alone, they are new
    again = ingest(cl, "bad-1", [act("fine-1"), act("x1")])
    assert (again["accepted"], again["duplicates"], again["first_seq"]) == (2, 0, 2)
    # exactly 10,000 is allowed
    big = ingest(cl, "bad-1", [act(f"m{i}", cost_usd=0.0001) for i in range(10_000)])
    assert (big["accepted"], big["first_seq"]) == (10_000, 4)
    run = get_run(cl, "bad-1")
    assert run["action_count"] == 10_003 and run["cost_usd"] == pytest.approx(1.0)


def test_unknown_runs_are_404(cl: Cluster) -> None:
    error(cl, "POST", "/runs/no-such-run/actions", {"actions": [act("a")]}, status=404,
          code="not_found")
    error(cl, "GET", "/runs/no-such-run", status=404, code="not_found")
    error(cl, "GET", "/runs/no-such-run/actions", status=404, code="not_found")
    error(cl, "PATCH", "/runs/no-such-run", {"status": "completed"}, status=404,
          code="not_found")
    new_run(cl, "known-1")
    error(cl, "GET", "/runs/known-1/actions/1", status=404, code="not_found")
    ingest(cl, "known-1", [act("a")])
    assert ok(cl, "GET", "/runs/known-1/actions/1")["id"] == "a"
    error(cl, "GET", "/runs/known-1/actions/2", status=404, code="not_found")
    error(cl, "GET", "/agents/no-such-agent", status=404, code="not_found")


def test_list_actions_filters(cl: Cluster) -> None:
    new_run(cl, "la-1")
    ingest(cl, "la-1", [
        act("s1", name="search_web", actor="PLAN/planner", channel="tool",
            inputs={"q": "cats 100%"}, outputs={"hits": 3}),
        act("s2", name="complete", actor="PLAN/planner", channel="llm",
            inputs={"prompt": "hi"}, outputs={"text": "needle"}),
        act("s3", name="complete", actor="ITER1/w", channel="llm", error="rate limited"),
        act("s4", name="fetch", actor="ITER1/w", channel="tool", outcome="blocked"),
    ])

    def seqs(**params: Any) -> tuple[list[int], int]:
        page = list_actions(cl, "la-1", **params)
        return [a["seq"] for a in page["actions"]], page["matched"]

    assert seqs() == ([1, 2, 3, 4], 4)
    assert seqs(outcome="error,blocked") == ([3, 4], 2)
    assert seqs(outcome=["error", "blocked"]) == ([3, 4], 2)
    assert seqs(q="needle") == ([2], 1)
    assert seqs(q="100%") == ([1], 1)
    assert seqs(q="rate lim") == ([3], 1)
    assert seqs(actor="ITER1/w") == ([3, 4], 2)
    assert seqs(channel="llm") == ([2, 3], 2)
    assert seqs(after=2)[0] == [3, 4]
    assert seqs(limit=1, offset=1) == ([2], 4)
    page = list_actions(cl, "la-1")
    # No DAG of the run is PLAN or ITER1: an actor's first part is no stage of it, for each
    # action as for the run's cost by stage (test_telemetry_sdk has a run's real stages).
    assert [a["stage"] for a in page["actions"]] == [None] * 4
    assert [r["stage"] for r in ok(cl, "GET", "/runs/la-1")["by_stage"]] == [None]
    error(cl, "GET", "/runs/la-1/actions", params={"outcome": "maybe"}, status=400)
    error(cl, "GET", "/runs/la-1/actions", params={"limit": 0}, status=400)


def test_a_search_finds_what_json_text_inside_a_value_escaped(cl: Cluster) -> None:
    # An LLM's tool call carries its arguments as JSON text that json.dumps wrote (Zürich as
    # Z\u00fcrich), a PHP service's body escapes its slashes: the master stores them inside
    # its own JSON, escaped again, and a search for what the page shows found nothing.
    new_run(cl, "nest-1")
    ingest(cl, "nest-1", [
        act("n1", name="complete", channel="llm", inputs={"prompt": "weather?"},
            outputs={"tool_calls": [{"function": {"name": "weather", "arguments": json.dumps(
                {"city": "Zürich", "note": 'say "hi"'})}}]}),
        act("n2", name="fetch", channel="tool", inputs={"page": 2},
            outputs={"body": '{"next":"https:\\/\\/example.com\\/p\\/3"}'}),
        act("n3", name="plain", channel="tool", inputs={"city": "Zürich"}, outputs={"n": 1}),
    ])

    def found(q: str) -> list[int]:
        return [a["seq"] for a in list_actions(cl, "nest-1", q=q)["actions"]]

    assert found("zürich") == [1, 3]
    assert found('say "hi"') == [1]
    assert found("example.com/p/3") == [2]
    assert found("note") == [1]
    assert found('"city": "Zürich"') == [1, 3]
    assert found("Zurich") == []


def test_ordinals_left_out_are_numbered_per_actor_channel_and_name(cl: Cluster) -> None:
    new_run(cl, "ord-1")
    ingest(cl, "ord-1", [act("o1", name="n"), act("o2", name="n"), act("o3", name="m")])
    ingest(cl, "ord-1", [act("o4", name="n"), act("o5", name="n", ordinal=7),
                         act("o6", name="n"), act("o7", name="n", actor="other"),
                         act("o8", name="n", channel="llm"), act("o9", name="m")])
    got = {a["id"]: a["ordinal"] for a in list_actions(cl, "ord-1")["actions"]}
    assert got == {"o1": 0, "o2": 1, "o3": 0, "o4": 2, "o5": 7, "o6": 8, "o7": 0, "o8": 0,
                   "o9": 1}


def test_large_payloads_go_to_the_blob_store(cl: Cluster) -> None:
    new_run(cl, "blob-1")
    doc = {"doc": "x" * 70_000}
    answer = {"text": "é" * 40_000}  # 80,000 bytes: over the inline limit too
    medium = {"prompt": "m" * 1_000}
    ingest(cl, "blob-1", [act("big", inputs=doc, outputs=answer), act("mid", inputs=medium)])
    page = list_actions(cl, "blob-1")
    big, mid = page["actions"]
    assert big["inputs_complete"] is False and isinstance(big["inputs"], str)
    assert big["inputs"].startswith('{"doc":"xxx') and len(big["inputs"]) <= 400
    assert big["outputs_complete"] is False and isinstance(big["outputs"], str)
    text = json.dumps(doc, separators=(",", ":"))
    assert big["inputs_size"] == len(text.encode())
    blob = cl.data / "blobs" / big["inputs_hash"][:2] / big["inputs_hash"]
    assert blob.is_file() and json.loads(blob.read_text()) == doc
    # a page's preview cuts a medium payload too; preview=0 sends it whole
    assert mid["inputs_complete"] is False and len(mid["inputs"]) == 400
    whole = list_actions(cl, "blob-1", preview=0)["actions"]
    assert whole[1]["inputs"] == medium and whole[1]["inputs_complete"] is True
    assert whole[0]["inputs_complete"] is False  # a blob's column holds a preview only
    # one action, read alone, comes whole from the blob store
    full = ok(cl, "GET", "/runs/blob-1/actions/1")
    assert full["inputs"] == doc and full["inputs_complete"] is True
    assert full["outputs"] == answer and full["outputs_complete"] is True
    assert ok(cl, "GET", "/runs/blob-1/actions/2")["inputs"] == medium
    # An export carries every payload whole (it was the row's 2,000-character preview: a
    # compliance export lost the record, and the CSV did not even say so).
    for fmt in ("jsonl", "json", "csv"):
        text = export(cl, fmt, {"q": "blob-1"}, actions=True)
        if fmt == "jsonl":
            rows = [json.loads(line) for line in text.splitlines()][1:]
        elif fmt == "json":
            rows = json.loads(text)["runs"][0]["actions"]
        else:
            rows = [dict(r, inputs=json.loads(r["inputs"]), outputs=json.loads(r["outputs"] or
                                                                                "null"),
                         inputs_complete=r["inputs_complete"] == "True")
                    for r in csv.DictReader(io.StringIO(text))]
        assert [r["inputs"] for r in rows] == [doc, medium], fmt
        assert rows[0]["outputs"] == answer and rows[0]["inputs_complete"] is True, fmt


def test_batches_sharing_a_commit_with_failing_requests_are_all_stored(cl: Cluster) -> None:
    """The master commits concurrent writes together and, when one of them fails (an unknown
    run, a conflict), retries each alone: the valid batches must all land, once each."""
    new_run(cl, "conc-1")
    new_run(cl, "conc-ended")
    ok(cl, "PATCH", "/runs/conc-ended", {"status": "completed"})
    n = 150

    async def send_all() -> list[tuple[str, int]]:
        headers = {"Authorization": f"Bearer {cl.admin_token}"}
        async with httpx.AsyncClient(base_url=f"{cl.url}/api/v1", headers=headers, timeout=60,
                                     limits=httpx.Limits(max_connections=40)) as c:
            async def one(kind: str, method: str, path: str, body: Any) -> tuple[str, int]:
                try:
                    return kind, (await c.request(method, path, json=body)).status_code
                except httpx.TransportError:  # the server dropped the connection
                    return kind, 0

            requests = []
            for i in range(n):
                requests += [
                    one("ok", "POST", "/runs/conc-1/actions",
                        {"actions": [act(f"c{i}-{k}", cost_usd=0.001) for k in range(2)]}),
                    one("missing", "POST", "/runs/conc-missing/actions",
                        {"actions": [act("m")]}),
                    one("conflict", "PATCH", "/runs/conc-ended", {"status": "failed"}),
                ]
            return list(await asyncio.gather(*requests))

    by_kind: dict[str, Counter[int]] = {}
    for kind, status in asyncio.run(send_all()):
        by_kind.setdefault(kind, Counter())[status] += 1
    assert by_kind == {"ok": Counter({200: n}), "missing": Counter({404: n}),
                       "conflict": Counter({409: n})}, by_kind
    run = get_run(cl, "conc-1")
    assert run["action_count"] == 2 * n and run["cost_usd"] == pytest.approx(0.002 * n)
    page = list_actions(cl, "conc-1")
    assert [a["seq"] for a in page["actions"]] == list(range(1, 2 * n + 1))


# ------------------------------------------------------------------------------ roles


def test_roles(cl: Cluster, tokens: dict[str, str]) -> None:
    new_run(cl, "roles-1", agent_id="roles-agent")
    ingest(cl, "roles-1", [act("r1")])
    # A worker token leases and reports only: it reads no run (issue 15 item 4).
    for path in ("/runs", "/runs/roles-1", "/runs/roles-1/actions", "/runs/roles-1/actions/1",
                 "/runs/intercepts", "/runs/export", "/agents/roles-agent"):
        error(cl, "GET", path, token=tokens["worker"], status=403, code="forbidden")
    for role in ("viewer", "worker"):
        token = tokens[role]
        if role == "viewer":
            assert ok(cl, "GET", "/runs", token=token)["total"] >= 1
            assert ok(cl, "GET", "/runs/roles-1", token=token)["id"] == "roles-1"
            assert ok(cl, "GET", "/runs/roles-1/actions", token=token)["matched"] == 1
            assert ok(cl, "GET", "/runs/roles-1/actions/1", token=token)["id"] == "r1"
            ok(cl, "GET", "/runs/intercepts", token=token)
            ok(cl, "GET", "/runs/export", params={"q": "roles-1"}, token=token)
            assert ok(cl, "GET", "/agents/roles-agent", token=token)["runs"] == 1
        error(cl, "POST", "/runs", {"id": f"roles-{role}"}, token=token, status=403,
              code="forbidden")
        error(cl, "POST", "/runs/roles-1/actions", {"actions": [act(f"by-{role}")]},
              token=token, status=403, code="forbidden")
        error(cl, "PATCH", "/runs/roles-1", {"status": "completed"}, token=token, status=403)
        error(cl, "PATCH", "/runs/roles-1", {"budget_usd": 5}, token=token, status=403)
        err = error(cl, "PATCH", "/agents/roles-agent", {"budget_usd": 5}, token=token,
                    status=403)
        assert "may not archive runs or set an agent's budget" in err["message"], err
        error(cl, "POST", "/runs/prune", {"older_than": "1d", "dry_run": True}, token=token,
              status=403)
        error(cl, "GET", f"/runs/roles-{role}", status=404)
    for token in (None, "tt_not-a-token"):
        error(cl, "GET", "/runs", token=token, status=401, code="unauthorized")
        error(cl, "POST", "/runs/roles-1/actions", {"actions": [act("anon")]}, token=token,
              status=401)
    # An operator records, ends runs and sets budgets, but retention is the admin's.
    operator = tokens["operator"]
    ok(cl, "POST", "/runs", {"id": "roles-op", "budget_usd": 1.0}, token=operator, status=201)
    ingest(cl, "roles-1", [act("by-operator")], token=operator)
    assert ok(cl, "PATCH", "/runs/roles-op", {"budget_usd": 2.0},
              token=operator)["budget_usd"] == 2.0
    assert ok(cl, "PATCH", "/agents/roles-agent", {"budget_usd": 3.0},
              token=operator)["budget_usd"] == 3.0
    error(cl, "POST", "/runs/prune", {"older_than": "1d", "dry_run": True}, token=operator,
          status=403, code="forbidden")
    assert get_run(cl, "roles-1")["action_count"] == 2


PROBE = """
    import json, os, sys, time, urllib.error, urllib.request

    def send(method, path, body):
        req = urllib.request.Request(
            os.environ["TITAN_MASTER_URL"] + "/api/v1" + path, data=json.dumps(body).encode(),
            method=method, headers={"Authorization": "Bearer " + os.environ["TITAN_TOKEN"],
                                    "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status
        except urllib.error.HTTPError as e:
            return e.code

    own, other = os.environ["TITAN_AGENT_RUN_ID"], sys.argv[1]
    batch = {"actions": [{"id": "from-job", "name": "probe", "started_at": time.time()}]}
    print("own", send("POST", f"/runs/{own}/actions", batch))
    print("other", send("POST", f"/runs/{other}/actions", batch))
    print("patch-own", send("PATCH", f"/runs/{own}", {"tags": ["from-job"]}))
    print("patch-other", send("PATCH", f"/runs/{other}", {"status": "failed", "error": "job"}))
    print("budget-own", send("PATCH", f"/runs/{own}", {"budget_usd": 100}))
    # A stage submitted into another run would give its jobs that run (their tokens write
    # into their DAG's run): refused. A new run, and then more stages of it, are the job's
    # own (an orchestrator running as a job).
    stage = {"jobs": [{"job_id": "s", "filename": "probe.py", "script_sha256": sys.argv[2]}]}
    print("stage-other", send("POST", "/dags", {"name": "SNEAK", "agent_run_id": other, **stage}))
    new = own + "-sub"
    print("stage-new", send("POST", "/dags", {"name": "SUB1", "agent_run_id": new, **stage}))
    print("stage-again", send("POST", "/dags", {"name": "SUB2", "agent_run_id": new, **stage}))
    # "Creating" an existing run filled in its labels and raised its class: another's run
    # could be put on legal hold, out of retention's reach. Its own, and one it made, it may.
    print("create-other", send("POST", "/runs", {"id": other, "retention_class": "legal_hold",
                                                "tags": {"pwn": "1"}}))
    print("create-own", send("POST", "/runs", {"id": own}))
    print("create-new", send("POST", "/runs", {"id": own + "-made"}))
    print("create-new-again", send("POST", "/runs", {"id": own + "-made", "tags": {"a": "b"}}))
"""


def test_a_job_token_writes_only_into_its_own_run(cl: Cluster) -> None:
    new_run(cl, "victim-1")
    client = cl.client()
    script = cl.script("probe.py", PROBE)
    sha = hashlib.sha256(Path(script).read_bytes()).hexdigest()
    client.submit_dag("JOBRUN_1_PROBE", [TitanJob("probe", script, args=["victim-1", sha])],
                      agent_run_id="JOBRUN_1")
    assert client.wait_dag("JOBRUN_1_PROBE", timeout=60)["status"] == "COMPLETED"
    logs = client.fetch_logs("JOBRUN_1_PROBE/probe")
    assert "own 200" in logs and "other 403" in logs, logs
    assert [a["id"] for a in list_actions(cl, "JOBRUN_1")["actions"]] == ["from-job"]
    assert "patch-own 200" in logs and get_run(cl, "JOBRUN_1")["tags"] == ["from-job"], logs
    assert "budget-own 403" in logs, logs  # budgets are a person's decision
    victim = get_run(cl, "victim-1")
    assert victim["action_count"] == 0
    # Nor may it end (or otherwise change) another run.
    assert "patch-other 403" in logs, logs
    assert victim["status"] == "running" and victim["error"] is None
    # Nor add a stage to it, whose jobs would have written into it.
    assert "stage-other 403" in logs, logs
    assert client.list_dags(agent_run_id="victim-1") == []
    assert "stage-new 201" in logs and "stage-again 201" in logs, logs
    assert "create-other 403" in logs, logs
    victim = get_run(cl, "victim-1")
    assert victim["retention_class"] == "standard" and not victim["tags"], victim
    assert "create-own 200" in logs and "create-new 201" in logs, logs
    assert "create-new-again 200" in logs and get_run(cl, "JOBRUN_1-made")["tags"] == {"a": "b"}


OPENER = """
    import titan
    from titan import trace

    @titan.tool
    def lookup(q):
        return q.upper()

    with trace.run("nightly-etl", run_id="job-opened-1"):
        lookup("a"); lookup("b")
        with trace.action("load") as a:
            a.outputs = {"rows": 3}
    print("delivered", trace.flush(30))
"""

INTRUDER = PROBE.split("own, other =")[0] + """
    other = sys.argv[1]
    batch = {"actions": [{"id": "intruder", "name": "probe", "started_at": time.time()}]}
    print("write-other", send("POST", f"/runs/{other}/actions", batch))
    print("create-other", send("POST", "/runs", {"id": other, "tags": {"pwn": "1"}}))
    print("patch-other", send("PATCH", f"/runs/{other}", {"status": "failed"}))
    print("alive-other", send("POST", "/runs/alive", {"runs": [other]}))
"""


def test_a_job_records_into_a_run_it_opened_and_not_into_another_jobs(cl: Cluster) -> None:
    # `with trace.run(...)` inside a job (here one with an agent run of its own): the job's
    # token could open and end the run, but every action was refused and the run stayed empty.
    client = cl.client()
    client.submit_dag("OPENER", [TitanJob("open", cl.script("opener.py", OPENER))],
                      agent_run_id="OPENER_RUN")
    assert client.wait_dag("OPENER", timeout=60)["status"] == "COMPLETED"
    assert "delivered True" in client.fetch_logs("OPENER/open"), client.fetch_logs("OPENER/open")
    run = get_run(cl, "job-opened-1")
    assert (run["status"], run["action_count"]) == ("completed", 3), run
    # Another job may not write into it, reopen it, end it or keep it alive: what a job may
    # write into is its own agent run and the runs it started, no more.
    client.submit_dag("INTRUDER", [TitanJob("probe", cl.script("intruder.py", INTRUDER),
                                            args=["job-opened-1"])])
    assert client.wait_dag("INTRUDER", timeout=60)["status"] == "COMPLETED"
    logs = client.fetch_logs("INTRUDER/probe")
    for what in ("write-other", "create-other", "patch-other", "alive-other"):
        assert f"{what} 403" in logs, logs
    run = get_run(cl, "job-opened-1")
    assert (run["status"], run["action_count"], run["tags"]) == ("completed", 3, None), run
    assert "intruder" not in [a["id"] for a in list_actions(cl, "job-opened-1")["actions"]]


FORGER = PROBE.split("own, other =")[0] + """
    own, other = os.environ["TITAN_AGENT_RUN_ID"], sys.argv[1]
    print("create-replay-of-other", send("POST", "/runs", {"id": own + "-fake",
                                                           "replay_of": other}))
    print("patch-replay-of-other", send("PATCH", f"/runs/{own}", {"replay_of": other}))
    op = {"run": own + "-fake2", "create": {"replay_of": other}}
    print("batch-replay-of-other", send("POST", "/runs/batch", {"ops": [op]}))
    made = own + "-made"
    print("create-made", send("POST", "/runs", {"id": made}))
    print("replay-of-made", send("POST", "/runs", {"id": own + "-again", "replay_of": made}))
"""


SQUATTER = PROBE.split("own, other =")[0] + """
    from titan import TitanClient

    run = sys.argv[1]
    print("claim", send("POST", "/runs", {"id": run}), flush=True)
    TitanClient().store_wait(run + "/go", timeout=60)
    forged = {"actions": [{"id": "forged", "name": "load", "started_at": time.time()}]}
    print("forge", send("POST", f"/runs/{run}/actions", forged), flush=True)
"""


def test_a_person_does_not_record_into_a_run_a_job_opened_first(cl: Cluster) -> None:
    # A run id a person's process chooses (trace.run(run_id="etl-2026-12-01")) can be guessed:
    # a job that opened it first had the person's POST /runs answered 200, and went on writing
    # into the run the person's recording went to (it started it), or ended it.
    run_id = "etl-2026-12-01"
    client = cl.client()
    client.submit_dag("SQUAT", [TitanJob("s", cl.script("squat.py", SQUATTER), args=[run_id])])
    deadline = time.time() + 60
    while "claim" not in client.fetch_logs("SQUAT/s") and time.time() < deadline:
        time.sleep(0.1)
    said = error(cl, "POST", "/runs", {"id": run_id, "agent_id": "etl"}, status=409,
                 code="conflict")
    assert "opened by job s of DAG-SQUAT#1" in said["message"], said
    assert call(cl, "POST", "/runs/batch", {"ops": [{"run": run_id, "create": {}}]})[1][
        "error"]["code"] == "conflict"
    client.store_put(run_id + "/go", "1")
    assert client.wait("SQUAT/s", timeout=60)["state"] == "COMPLETED"
    assert "claim 201" in client.fetch_logs("SQUAT/s")
    run = get_run(cl, run_id)
    assert run["agent_id"] != "etl" and run["started_by"]["role"] == "job", run


def test_a_job_may_not_make_a_run_a_replay_of_another_jobs(cl: Cluster) -> None:
    # A run's replays are listed with it, compared with it (match rate, divergences) and, while
    # one runs, keep it from retention: a job naming another's run in `replay_of` forged a
    # replay of it, or kept it past retention for as long as its fake replay stayed running.
    new_run(cl, "replayed-1", started_at=NOW - 3 * DAY)
    ok(cl, "PATCH", "/runs/replayed-1", {"status": "completed", "ended_at": NOW - 2 * DAY})
    client = cl.client()
    client.submit_dag("FORGER", [TitanJob("probe", cl.script("forger.py", FORGER),
                                          args=["replayed-1"])], agent_run_id="FORGER_RUN")
    assert client.wait_dag("FORGER", timeout=60)["status"] == "COMPLETED"
    logs = client.fetch_logs("FORGER/probe")
    for what in ("create-replay-of-other", "patch-replay-of-other"):
        assert f"{what} 403" in logs, logs
    assert "batch-replay-of-other 200" in logs, logs  # a batch answers each op's error in it
    # A run it started is its own to replay in its own way.
    assert "create-made 201" in logs and "replay-of-made 201" in logs, logs
    assert get_run(cl, "FORGER_RUN-again")["replay_of"] == "FORGER_RUN-made"
    assert ok(cl, "GET", "/runs/replayed-1/replays")["replays"] == []
    for run_id in ("FORGER_RUN", "FORGER_RUN-fake", "FORGER_RUN-fake2"):
        got, _ = call(cl, "GET", f"/runs/{run_id}")
        assert got == 404 or get_run(cl, run_id)["replay_of"] is None, run_id
    pruned = ok(cl, "POST", "/runs/prune", {"older_than": "1d", "run_ids": ["replayed-1"]})
    assert pruned["run_ids"] == ["replayed-1"], pruned


# ------------------------------------------------------------------------------ ending runs


def test_ending_a_run(cl: Cluster) -> None:
    new_run(cl, "end-1")
    done = ok(cl, "PATCH", "/runs/end-1", {"status": "completed"})
    assert done["status"] == "completed" and done["ended_at"] is not None
    assert abs(done["ended_at"] - time.time()) < 60
    run = get_run(cl, "end-1")
    assert run["status"] == "completed" and run["ended_at"] == done["ended_at"]
    for other in ("failed", "cancelled"):
        error(cl, "PATCH", "/runs/end-1", {"status": other}, status=409, code="run_ended")
    assert get_run(cl, "end-1")["status"] == "completed"
    # an explicit end time and error; a failed run is an intercept
    new_run(cl, "end-2", started_at=NOW - 120)
    failed = ok(cl, "PATCH", "/runs/end-2", {"status": "failed", "ended_at": NOW - 60,
                                             "error": "tool crashed"})
    assert (failed["status"], failed["ended_at"], failed["error"]) == (
        "failed", NOW - 60, "tool crashed")
    assert failed["duration_s"] == pytest.approx(60, abs=0.01)
    listed = ok(cl, "GET", "/runs/intercepts", params={"limit": 500})["intercepts"]
    (row,) = [r for r in listed if r["id"] == "end-2"]
    assert "failed: tool crashed" in row["reasons"]
    # "ended": the master decides from what it knows (no stages here: from the actions)
    new_run(cl, "end-3")
    ingest(cl, "end-3", [act("e", error="boom")])
    assert ok(cl, "PATCH", "/runs/end-3", {"status": "ended"})["status"] == "failed"
    new_run(cl, "end-4")
    ingest(cl, "end-4", [act("e")])
    assert ok(cl, "PATCH", "/runs/end-4", {"status": "ended"})["status"] == "completed"
    for body, field in (({"status": "bogus"}, "status"), ({"id": "x"}, "id"),
                        ({"ended_at": "later"}, "ended_at")):
        err = error(cl, "PATCH", "/runs/end-4", body, status=400, code="invalid_request")
        assert field in [f for _, f in fields_of(err)]


def test_an_end_says_how_a_run_without_stages_ends(cl: Cluster) -> None:
    # A `trace.run` block left normally says "ended" (its stages decide, waited for), and
    # that a run without stages ends completed: one whose every action errored (handled by
    # the block) was failed by the actions' rule, where the block had always ended it so.
    new_run(cl, "stageless-1")
    ingest(cl, "stageless-1", [act("e", error="boom")])
    done = ok(cl, "PATCH", "/runs/stageless-1",
              {"status": "ended", "without_stages": "completed"})
    assert (done["status"], done["error"]) == ("completed", None)
    new_run(cl, "stageless-2")
    ingest(cl, "stageless-2", [act("e")])
    assert ok(cl, "PATCH", "/runs/stageless-2", {"status": "ended", "without_stages": "failed"}
              )["status"] == "failed"
    # A run with stages ends as its last stage did, whatever the end says of none.
    client = cl.client()
    fails = cl.script("stageless_fails.py", "raise SystemExit(4)\n")
    client.submit_dag("STAGED_1_ONLY", [TitanJob(job_id="f", filename=fails)],
                      agent_run_id="STAGED_1")
    assert client.wait_dag("STAGED_1_ONLY", timeout=60)["status"] == "FAILED"
    ended = ok(cl, "PATCH", "/runs/STAGED_1", {"status": "ended", "without_stages": "completed"})
    assert ended["status"] == "failed", ended
    assert ended["error"].startswith("its last stage STAGED_1_ONLY ended FAILED"), ended
    new_run(cl, "stageless-3")
    for body in ({"without_stages": "completed"},  # says nothing without "ended"
                 {"status": "completed", "without_stages": "completed"},
                 {"status": "ended", "without_stages": "cancelled"},
                 {"status": "ended", "without_stages": True}):
        err = error(cl, "PATCH", "/runs/stageless-3", body, status=400, code="invalid_request")
        assert "without_stages" in [f for _, f in fields_of(err)], (body, err)
    assert get_run(cl, "stageless-3")["status"] == "running"
    error(cl, "POST", "/runs", {"id": "stageless-4", "agent_id": "t",
                                "without_stages": "completed"}, status=400)


def test_a_long_error_is_bounded_in_lists_and_whole_on_its_own(cl: Cluster) -> None:
    # A run's error and an action's may be 100,000 characters: every list carried each whole
    # (a page of 50 runs, 5 MB; the Runs page's intercepts said each in full).
    said = "Boom: " + "y" * 99_000
    shown = said[:2000] + f"\n… {len(said) - 2000:,} more characters"
    new_run(cl, "long-err")
    ingest(cl, "long-err", [act("le", error=said)])
    assert ok(cl, "PATCH", "/runs/long-err", {"status": "failed", "error": said})["error"] == said
    assert get_run(cl, "long-err")["error"] == said
    (listed,) = ok(cl, "GET", "/runs", params={"q": "long-err"})["runs"]
    assert listed["error"] == shown
    (row,) = [r for r in ok(cl, "GET", "/runs/intercepts", params={"limit": 500})["intercepts"]
              if r["id"] == "long-err"]
    assert row["error"] == shown and row["reasons"][0] == "failed: " + shown
    # The Runs page (its JSON twin and its HTML) lists what the API lists.
    headers = {"Authorization": f"Bearer {cl.admin_token}"}
    page = httpx.get(f"http://127.0.0.1:{cl.dashboard_port}/runs.json?q=long-err",
                     headers=headers, timeout=60).json()
    assert [r["error"] for r in page["runs"]] == [shown]
    html = httpx.get(f"http://127.0.0.1:{cl.dashboard_port}/runs?q=long-err", headers=headers,
                     timeout=60).text
    assert len(html) < 50_000 and "97,006 more characters" in html
    run_html = httpx.get(f"http://127.0.0.1:{cl.dashboard_port}/runs/long-err",
                         headers=headers, timeout=60).text
    assert "97,006 more characters" in run_html and "y" * 2001 not in run_html
    # An action's error: a page of actions shows its preview and says how much more there is.
    (a,) = list_actions(cl, "long-err")["actions"]
    assert a["error"]["message"] == said[:400] + f"\n… {len(said) - 400:,} more characters"
    assert list_actions(cl, "long-err", preview=0)["actions"][0]["error"]["message"] == said
    assert ok(cl, "GET", "/runs/long-err/actions/1")["error"]["message"] == said


def test_a_driver_job_ending_its_own_run_settles_it_at_once(cl: Cluster) -> None:
    # A driver that runs as the only job of a stage of its run (a replay's driver, an
    # orchestrator job) and says "ended": its own DAG is not a stage to wait for, so the run
    # is settled in that PATCH's commit — not later, after the DAG the client waits on, where
    # `titan replay` read it back still "running".
    script = cl.script("ender.py", """
        import os, time
        from titan import TitanClient
        client = TitanClient()
        run = os.environ["TITAN_AGENT_RUN_ID"]
        client.api("POST", f"/runs/{run}/actions", json={"actions": [
            {"id": "a1", "name": "step", "started_at": time.time(), "duration_ns": 1}]})
        print(client.api("PATCH", f"/runs/{run}", json={"status": "ended"})["status"])
    """)
    client = cl.client()
    client.submit_dag("ender", [TitanJob(job_id="drive", filename=script)],
                      agent_run_id="ends-itself")
    dag = client.wait_dag("ender", timeout=60)
    assert dag["status"] == "COMPLETED", client.fetch_logs("ender/drive")
    assert "completed" in client.fetch_logs("ender/drive")
    run = get_run(cl, "ends-itself")
    assert run["status"] == "completed" and run["ended_at"] is not None


def test_a_run_whose_last_stage_is_partial_ends_failed_saying_why(cl: Cluster) -> None:
    # Its last stage had one job fail beside one that completed (PARTIAL): the run was
    # "completed" on /runs, green, and missing from Critical intercepts, while /agents said
    # PARTIAL. sdk.md: "completed, unless its last stage failed" (seed 004: failed runs are
    # those that "encountered errors").
    cl.script("ok.py", 'print("ok")')
    cl.script("fail.py", 'raise SystemExit("boom")')
    driver = cl.script("partial_driver.py", """
        from titan_sdk import TitanClient, TitanJob
        c = TitanClient(); rid = "partial-last"
        c.submit_dag(f"{rid}_PLAN", [TitanJob(job_id="plan", filename="ok.py")],
                     agent_run_id=rid, wait=True)
        c.submit_dag(f"{rid}_ITER1", [TitanJob(job_id="w1", filename="ok.py"),
                                      TitanJob(job_id="w2", filename="fail.py")],
                     agent_run_id=rid, wait=True)
    """)
    env = dict(cl.env, TITAN_HOST="127.0.0.1", TITAN_PORT=str(cl.port),
               TITAN_TOKEN=cl.admin_token)
    done = subprocess.run([sys.executable, driver], env=env, cwd=cl.scripts,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    why = "its last stage partial-last_ITER1 ended PARTIAL: 1 of 2 jobs failed"
    deadline = time.time() + 30
    while (run := get_run(cl, "partial-last"))["status"] == "running" \
            and time.time() < deadline:
        time.sleep(0.05)
    assert (run["status"], run["error"]) == ("failed", why), run
    listed = ok(cl, "GET", "/runs/intercepts", params={"limit": 500})["intercepts"]
    (row,) = [r for r in listed if r["id"] == "partial-last"]
    assert f"failed: {why}" in row["reasons"]
    assert "partial-last" in [r["id"] for r in ok(
        cl, "GET", "/runs", params={"status": "failed", "limit": 500})["runs"]]
    # The stages view agrees: the run failed, its last stage is the PARTIAL one.
    staged = cl.client().agent_run("partial-last")
    assert staged["status"] == "FAILED"
    assert [s["status"] for s in staged["stages"]] == ["COMPLETED", "PARTIAL"]
    shown = subprocess.run([sys.executable, "-m", "titan", "runs", "show", "partial-last"],
                           env=env, capture_output=True, text=True, timeout=60)
    assert f"status  failed ({why})" in shown.stdout, shown.stdout + shown.stderr


def test_a_run_driven_again_ends_with_its_new_end_and_only_its_error(cl: Cluster) -> None:
    # One agent run driven by two processes in turn (an orchestrator resumed): the first's last
    # stage failed, the second's completed. The run was "completed" with the first end's
    # error ("its last stage ..._ITER1 ended FAILED"), a red "Failed:" under a green badge.
    cl.script("ok.py", 'print("ok")')
    cl.script("fail.py", 'raise SystemExit("boom")')
    driver = cl.script("resumed_driver.py", """
        import sys
        from titan_sdk import TitanClient, TitanJob
        rid, stage, script, *more = sys.argv[1:]
        c = TitanClient()
        c.submit_dag(f"{rid}_{stage}", [TitanJob(job_id="j", filename=script)],
                     agent_run_id=rid, wait=True)
        if "note" in more:  # an error its driver records before it ends
            c.api("PATCH", f"/runs/{rid}", json={"error": "the sources ran out"})
        if "raise" in more:
            raise ValueError("no synthesis")
    """)
    env = dict(cl.env, TITAN_HOST="127.0.0.1", TITAN_PORT=str(cl.port),
               TITAN_TOKEN=cl.admin_token)

    def drive(rid: str, stage: str, script: str, *more: str) -> dict[str, Any]:
        subprocess.run([sys.executable, driver, rid, stage, script, *more], env=env,
                       cwd=cl.scripts, capture_output=True, text=True, timeout=120)
        deadline = time.time() + 30
        while (run := get_run(cl, rid))["status"] == "running" and time.time() < deadline:
            time.sleep(0.05)
        return run

    run = drive("resumed", "ITER1", "fail.py")
    assert (run["status"], run["error"]) == (
        "failed", "its last stage resumed_ITER1 ended FAILED: 1 of 1 job failed"), run
    run = drive("resumed", "SYNTH", "ok.py")
    assert (run["status"], run["error"]) == ("completed", None), run
    # A driver's own failure (an uncaught exception) is an end like another: the next
    # driver's end replaces it, and its failed last stage says why it failed.
    run = drive("resumed-2", "PLAN", "ok.py", "raise")
    assert (run["status"], run["error"]) == ("failed", "ValueError: no synthesis"), run
    run = drive("resumed-2", "ITER1", "fail.py")
    assert (run["status"], run["error"]) == (
        "failed", "its last stage resumed-2_ITER1 ended FAILED: 1 of 1 job failed"), run
    # An error the driver recorded while the run ran is why it failed, not its stage's.
    run = drive("resumed-2", "ITER2", "fail.py", "note")
    assert (run["status"], run["error"]) == ("failed", "the sources ran out"), run
    # Opened again by hand, a run no longer has the error of the end it left.
    assert ok(cl, "PATCH", "/runs/resumed-2", {"status": "running"})["error"] is None
    assert ok(cl, "PATCH", "/runs/resumed-2", {"status": "completed"})["error"] is None


# ------------------------------------------------------------------------------ budgets


def test_a_run_budget_blocks_and_raising_it_releases(cl: Cluster, tokens: dict[str, str]) -> None:
    new_run(cl, "bud-1")
    patched = ok(cl, "PATCH", "/runs/bud-1", {"budget_usd": 0.01})
    assert patched["budget_usd"] == 0.01 and patched["blocked"] is False
    under = ingest(cl, "bud-1", [act("c1", cost_usd=0.006)])
    assert under["run"]["blocked"] is False and under["run"]["over_budget_at"] is None
    over = ingest(cl, "bud-1", [act("c2", cost_usd=0.006)])
    assert over["run"]["blocked"] is True and over["run"]["over_budget_at"] is not None
    assert over["run"]["budget_usd"] == 0.01 and over["run"]["cost_usd"] == pytest.approx(0.012)
    run = get_run(cl, "bud-1")
    assert run["blocked"] is True and run["over_budget"] is True
    for params in ({"limit": 500}, {"limit": 500, "window": "1h"}):
        listed = ok(cl, "GET", "/runs/intercepts", params=params)["intercepts"]
        (row,) = [r for r in listed if r["id"] == "bud-1"]
        assert any(r.startswith("over budget") for r in row["reasons"]), row
    error(cl, "PATCH", "/runs/bud-1", {"budget_usd": 1.0}, token=tokens["viewer"], status=403)
    assert get_run(cl, "bud-1")["blocked"] is True
    for bad in (-1, "a lot", True):
        err = error(cl, "PATCH", "/runs/bud-1", {"budget_usd": bad}, status=400)
        assert "budget_usd" in [f for _, f in fields_of(err)]
    raised = ok(cl, "PATCH", "/runs/bud-1", {"budget_usd": 1.0})
    assert raised["blocked"] is False and raised["budget_usd"] == 1.0
    assert get_run(cl, "bud-1")["blocked"] is False
    more = ingest(cl, "bud-1", [act("c3", cost_usd=0.5)])
    assert more["run"]["blocked"] is False
    lowered = ok(cl, "PATCH", "/runs/bud-1", {"budget_usd": 0.1})
    assert lowered["blocked"] is True
    assert ok(cl, "PATCH", "/runs/bud-1", {"budget_usd": None})["blocked"] is False


def test_a_run_is_dated_no_later_than_tomorrow_and_ends_after_it_started(cl: Cluster) -> None:
    # A run dated 2099 sat first in the registry for good, in every "last 24 hours" view,
    # and ended (with the master's clock) before it started.
    future = time.time() + 40 * 365 * 86_400
    err = error(cl, "POST", "/runs", {"id": "dated-future", "started_at": future}, status=400)
    assert "between 2000 and tomorrow" in err["message"], err
    err = error(cl, "POST", "/runs", {"id": "dated-inverted", "started_at": NOW,
                                      "ended_at": NOW - 60}, status=400)
    assert "ended_at" in err["message"], err
    ahead = time.time() + 3600  # a client whose clock runs an hour ahead
    new_run(cl, "dated-ahead", started_at=ahead)
    error(cl, "PATCH", "/runs/dated-ahead", {"ended_at": ahead - 10}, status=400)
    run = ok(cl, "PATCH", "/runs/dated-ahead", {"status": "completed"})
    assert run["ended_at"] >= run["started_at"] == ahead and run["duration_s"] == 0


def test_an_agents_totals_and_trend_leave_its_replays_out(cl: Cluster) -> None:
    # A replay's calls are served ("replayed"), not successes of the agent's: counted, they
    # put a 0 % point on the agent's chart for every replay of a flawless run.
    new_run(cl, "as-1", agent_id="statbot")
    ingest(cl, "as-1", [act(None), act(None)])
    new_run(cl, "as-1-replay", agent_id="statbot", replay_of="as-1")
    ingest(cl, "as-1-replay", [act(None, outcome="replayed"), act(None, outcome="replayed")])
    agent = ok(cl, "GET", "/agents/statbot")
    assert (agent["runs"], agent["action_count"], agent["success_rate"]) == (1, 2, 1.0), agent
    assert [p["run_id"] for p in agent["series"]] == ["as-1"]
    assert get_run(cl, "as-1-replay")["success_rate"] == 1.0  # its own card: the replay worked


def test_an_agent_budget_applies_to_its_runs_without_their_own(cl: Cluster) -> None:
    new_run(cl, "ab-1", agent_id="budgetbot")
    new_run(cl, "ab-2", agent_id="budgetbot")
    new_run(cl, "ab-3", agent_id="budgetbot", budget_usd=5.0)
    new_run(cl, "ab-4", agent_id="otherbot")
    for run_id in ("ab-1", "ab-2", "ab-3", "ab-4"):
        assert ingest(cl, run_id, [act("x", cost_usd=0.05)])["run"]["blocked"] is False
    agent = ok(cl, "PATCH", "/agents/budgetbot", {"budget_usd": 0.01})
    assert agent["agent_id"] == "budgetbot" and agent["budget_usd"] == 0.01
    assert agent["runs"] == 3 and agent["cost_usd"] == pytest.approx(0.15)
    assert [p["run_id"] for p in agent["series"]] and len(agent["series"]) == 3
    for run_id in ("ab-1", "ab-2"):
        run = get_run(cl, run_id)
        assert run["blocked"] is True and run["over_budget"] is True, run
        assert run["budget_usd"] == 0.01 and run["run_budget_usd"] is None
    own = get_run(cl, "ab-3")
    assert own["blocked"] is False and own["budget_usd"] == 5.0
    assert get_run(cl, "ab-4")["blocked"] is False
    listed = {r["id"] for r in ok(cl, "GET", "/runs", params={"agent": "budgetbot"})["runs"]
              if r["blocked"]}
    assert listed == {"ab-1", "ab-2"}
    # Seed 004 says "Filter by agent_id": that name filters as agent does, list and export.
    by_id = ok(cl, "GET", "/runs", params={"agent_id": "budgetbot"})["runs"]
    assert {r["id"] for r in by_id} == {"ab-1", "ab-2", "ab-3"}
    exported = export(cl, "jsonl", {"agent_id": "otherbot"})
    assert [json.loads(line)["id"] for line in exported.splitlines()] == ["ab-4"]
    # Named runs alone (`titan runs export RUN...`), in the list's order; one that does not
    # exist is a 404 before any byte, not a file that silently lacks it.
    named = export(cl, "jsonl", {"run": ["ab-4", "ab-1", "ab-4"]})
    assert [json.loads(line)["id"] for line in named.splitlines()] == ["ab-4", "ab-1"]
    gone = error(cl, "GET", "/runs/export", params={"run": ["ab-1", "no-such-run"]},
                 status=404)
    assert "no-such-run" in gone["message"]
    error(cl, "GET", "/runs/export", params={"run": ["x" * 201]}, status=400,
          code="invalid_request")
    error(cl, "GET", "/runs", params={"agent": "budgetbot", "agent_id": "otherbot"},
          status=400, code="invalid_request")
    intercepts = {r["id"] for r in ok(cl, "GET", "/runs/intercepts",
                                       params={"limit": 500})["intercepts"]}
    assert {"ab-1", "ab-2"} <= intercepts and "ab-3" not in intercepts
    # a new run of the agent gets the budget too
    new_run(cl, "ab-5", agent_id="budgetbot")
    assert ingest(cl, "ab-5", [act("x", cost_usd=0.05)])["run"]["blocked"] is True
    assert ok(cl, "GET", "/agents/budgetbot")["budget_usd"] == 0.01
    for bad in ({"budget": 1}, {"budget_usd": -1}, {"budget_usd": True}, [0.5],
                {"budget_usd": 1, "x": 2}):
        error(cl, "PATCH", "/agents/budgetbot", bad, status=400, code="invalid_request")
    cleared = ok(cl, "PATCH", "/agents/budgetbot", {"budget_usd": None})
    assert cleared["budget_usd"] is None
    for run_id in ("ab-1", "ab-2", "ab-5"):
        assert get_run(cl, run_id)["blocked"] is False, run_id
    # an agent that no run names yet may get a budget ahead of its first run
    assert ok(cl, "PATCH", "/agents/futurebot", {"budget_usd": 2.0})["budget_usd"] == 2.0
    assert ok(cl, "GET", "/agents/futurebot")["runs"] == 0


# ------------------------------------------------------------------------------ registry, export

AGENTS = ("fx40alpha", "fx40beta", "fx40gamma")
STATUSES = ("running", "completed", "failed", "cancelled")
AGES_H = (0.5, 5, 30, 100, 300, 1000, 2000)
OUTCOMES = ("success", "success", "error", "blocked", "replayed")


@pytest.fixture(scope="module")
def fleet(cl: Cluster) -> dict[str, dict[str, Any]]:
    """40 runs of three agents, every status, costs 0 to 0.1, started 30 minutes to 83 days
    ago, with 0 to 4 actions each."""
    runs: dict[str, dict[str, Any]] = {}
    for i in range(40):
        run_id = f"fx40-{i:02d}"
        started = NOW - (AGES_H[i % 7] + i * 0.01) * HOUR
        spec = {"id": run_id, "agent": AGENTS[i % 3], "status": STATUSES[i % 4],
                "started": started, "actions": i % 5, "unit": 0.005 * (i % 6)}
        new_run(cl, run_id, agent_id=spec["agent"], started_at=started)
        if spec["actions"]:
            ingest(cl, run_id, [act(f"{run_id}-a{j}", cost_usd=spec["unit"],
                                    outcome=OUTCOMES[(i + j) % 5], started_at=started + j,
                                    inputs={"j": j, "run": run_id})
                                for j in range(spec["actions"])])
        if spec["status"] != "running":
            ok(cl, "PATCH", f"/runs/{run_id}",
               {"status": spec["status"], "ended_at": started + 60})
        spec["cost"] = spec["unit"] * spec["actions"]
        runs[run_id] = spec
    return runs


def expected_ids(fleet: dict[str, dict[str, Any]], *, status: str | None = None,
                 min_cost: float | None = None, window_h: float | None = None,
                 agent: str | None = None, q: str = "fx40") -> list[str]:
    now = time.time()
    picked = [r for r in fleet.values()
              if (status is None or r["status"] in status.split(","))
              and (min_cost is None or r["cost"] >= min_cost)
              and (window_h is None or r["started"] >= now - window_h * HOUR)
              and (agent is None or r["agent"] == agent)
              and (q in r["id"] or q in r["agent"])]
    return [r["id"] for r in sorted(picked, key=lambda r: r["started"], reverse=True)]


FILTERS: list[dict[str, Any]] = [
    {},
    {"status": "failed"},
    {"status": "completed,cancelled"},
    {"min_cost": 0.0475},
    {"window": "7d"},
    {"window": "24h"},
    {"agent": "fx40beta"},
    {"agent": "fx40beta", "status": "running"},
    {"q": "fx40-1"},
    {"q": "gamma"},
    {"min_cost": 0.0175, "window": "30d", "status": "completed,failed"},
]
_WINDOW_H = {"7d": 168, "24h": 24, "30d": 720}


def _query(f: dict[str, Any]) -> dict[str, Any]:
    return {"q": "fx40", **f}


def _expected(fleet: dict[str, dict[str, Any]], f: dict[str, Any]) -> list[str]:
    f = _query(f)
    return expected_ids(fleet, status=f.get("status"), min_cost=f.get("min_cost"),
                        window_h=_WINDOW_H.get(f.get("window", "")), agent=f.get("agent"),
                        q=f["q"])


def export(cl: Cluster, fmt: str, params: dict[str, Any], actions: bool | None = False) -> str:
    """``actions=None`` leaves the parameter out: the API's default (every action)."""
    query = {**params, "format": fmt}
    if actions is not None:
        query["actions"] = str(actions).lower()
    r = httpx.get(f"{cl.url}/api/v1/runs/export", params=query, timeout=60,
                  headers={"Authorization": f"Bearer {cl.admin_token}"})
    assert r.status_code == 200, r.text
    assert "attachment" in r.headers["content-disposition"]
    assert r.headers["content-disposition"].rstrip('"').endswith(f".{fmt}")
    return r.text


def test_an_exports_format_is_taken_in_any_case(cl: Cluster) -> None:
    # Seed 004 names the formats "CSV, JSON, JSONL"; status and window were taken in any case
    # (FAILED is failed), the format alone was a 400.
    new_run(cl, "fmt-case", agent_id="fmt-agent")
    ingest(cl, "fmt-case", [act("fc1")])
    for fmt, first in (("CSV", "run_id,"), ("Json", '{"runs":'), ("JSONL", '{"type":"run"')):
        r = httpx.get(f"{cl.url}/api/v1/runs/export", params={"format": fmt, "q": "fmt-case"},
                      headers={"Authorization": f"Bearer {cl.admin_token}"}, timeout=60)
        assert r.status_code == 200, r.text
        assert r.text.startswith(first), r.text[:200]
        assert r.headers["content-disposition"].rstrip('"').endswith("." + fmt.lower())


def test_a_csv_export_keeps_formulas_as_text(cl: Cluster) -> None:
    # Any writer (a job token too) names agents, runs and actions: a cell a spreadsheet
    # would run as a formula is written with a leading quote.
    formula = '=HYPERLINK("http://evil.example/","x")'
    new_run(cl, "csv-formula", agent_id="csv-agent", tags=[formula])
    ingest(cl, "csv-formula", [act("f1", name="@SUM(A1)", error=formula)])
    text = export(cl, "csv", {"q": "csv-formula"}, actions=True)
    (row,) = csv.DictReader(io.StringIO(text))
    assert row["name"] == "'@SUM(A1)" and row["error_message"] == "'" + formula
    assert row["run_id"] == "csv-formula" and not any(v.startswith("=") for v in row.values())
    (run,) = csv.DictReader(io.StringIO(export(cl, "csv", {"q": "csv-formula"})))
    assert run["id"] == "csv-formula" and not any(v.startswith("=") for v in run.values())


def test_a_csv_export_writes_inputs_and_outputs_as_json(cl: Cluster) -> None:
    # Scalars were written bare: the string "123" and the number 123 read the same, and the
    # string "-5" came out as '-5 (the formula guard).
    new_run(cl, "csv-scalars", agent_id="csv-agent")
    ingest(cl, "csv-scalars", [act("s1", inputs="123", outputs=123),
                               act("s2", inputs="null", outputs=None),
                               act("s3", inputs="-5", outputs=-5)])
    rows = list(csv.DictReader(io.StringIO(export(cl, "csv", {"q": "csv-scalars"},
                                                   actions=True))))
    assert [(r["inputs"], r["outputs"]) for r in rows] == [
        ('"123"', "123"), ('"null"', ""), ('"-5"', "-5")]
    assert [json.loads(r["inputs"]) for r in rows] == ["123", "null", "-5"]
    (run,) = csv.DictReader(io.StringIO(export(cl, "csv", {"q": "csv-scalars"})))
    assert run["replay_of"] == ""
    # Every time in ISO 8601, when chaining began too (it was epoch seconds among them).
    assert run["ledger_since"].endswith("Z") and run["ledger_since"] <= run["started_at"], run
    assert rows[0]["run_ledger_since"] == run["ledger_since"]


@pytest.mark.parametrize("f", FILTERS, ids=[json.dumps(f) for f in FILTERS])
def test_registry_filters_and_export_agree(cl: Cluster, fleet: dict[str, dict[str, Any]],
                                           f: dict[str, Any]) -> None:
    params = _query(f)
    want = _expected(fleet, f)
    listed = ok(cl, "GET", "/runs", params={**params, "limit": 1000})
    assert [r["id"] for r in listed["runs"]] == want
    assert listed["total"] == len(want)
    registry = {r["id"]: r for r in listed["runs"]}
    for r in listed["runs"]:
        spec = fleet[r["id"]]
        assert (r["agent_id"], r["status"], r["action_count"]) == (
            spec["agent"], spec["status"], spec["actions"])
        assert r["cost_usd"] == pytest.approx(spec["cost"])
    counts = {i: registry[i]["action_count"] for i in want}

    # CSV, one row a run
    rows = list(csv.DictReader(io.StringIO(export(cl, "csv", params))))
    assert [row["id"] for row in rows] == want
    assert {row["id"]: int(row["action_count"]) for row in rows} == counts
    assert all(row["status"] == registry[row["id"]]["status"] for row in rows)
    # CSV with actions, asked or by default (seed 004: "includes runs and all actions"): one
    # row an action carrying its run's columns, and one row for a run with no action.
    by_run = {row["id"]: row for row in csv.DictReader(io.StringIO(export(cl, "csv", params)))}
    for asked in (True, None):
        rows = list(csv.DictReader(io.StringIO(export(cl, "csv", params, actions=asked))))
        per_run = Counter(row["run_id"] for row in rows if row["seq"])
        assert dict(per_run) == {i: n for i, n in counts.items() if n}
        assert list(dict.fromkeys(row["run_id"] for row in rows)) == want
        assert [row["run_id"] for row in rows if not row["seq"]] == [
            i for i in want if not counts[i]]
        for row in rows:
            run = by_run[row["run_id"]]
            assert row["agent_id"] == fleet[row["run_id"]]["agent"]
            assert (row["run_status"], row["run_cost_usd"], row["run_started_at"],
                    row["run_action_count"], row["agent_version"], row["run_chain_head"]) == (
                run["status"], run["cost_usd"], run["started_at"], run["action_count"],
                run["agent_version"], run["chain_head"])
            if row["seq"]:
                assert row["id"] == f"{row['run_id']}-a{int(row['seq']) - 1}"
            else:
                assert row["id"] == row["name"] == row["outcome"] == ""
    # JSON
    doc = json.loads(export(cl, "json", params))
    assert [r["id"] for r in doc["runs"]] == want
    for r in doc["runs"]:
        assert "actions" not in r
        mine = registry[r["id"]]
        assert r["ledger_since"] is not None  # the export's own: when chaining began
        assert r["created_at"] >= r["ledger_since"]  # and the run's, made since
        assert {k: v for k, v in r.items()
                if k not in ("duration_s", "ledger_since", "created_at")} == {
            k: v for k, v in mine.items() if k != "duration_s"}
    for asked in (True, None):
        doc = json.loads(export(cl, "json", params, actions=asked))
        assert [r["id"] for r in doc["runs"]] == want
        for r in doc["runs"]:
            assert [a["seq"] for a in r["actions"]] == list(range(1, counts[r["id"]] + 1))
            assert all(a["inputs"] == {"j": a["seq"] - 1, "run": r["id"]} for a in r["actions"])
    # JSON Lines
    lines = [json.loads(line) for line in export(cl, "jsonl", params).splitlines()]
    assert {line["type"] for line in lines} <= {"run"}
    assert [line["id"] for line in lines] == want
    assert {line["id"]: line["action_count"] for line in lines} == counts
    lines = [json.loads(line) for line in export(cl, "jsonl", params, actions=None).splitlines()]
    asked = [json.loads(line) for line in export(cl, "jsonl", params, actions=True).splitlines()]
    # The same lines (a running run's duration_s grows between the two reads).
    assert [(x["type"], x["id"]) for x in asked] == [(x["type"], x["id"]) for x in lines]
    assert {line["type"] for line in lines} <= {"run", "action"}
    assert [line["id"] for line in lines if line["type"] == "run"] == want
    current = None
    seen: Counter[str] = Counter()
    for line in lines:
        if line["type"] == "run":
            current = line["id"]
        else:  # each action follows its run's line
            assert line["run_id"] == current
            seen[current] += 1
            assert line["seq"] == seen[current]
    assert dict(seen) == {i: n for i, n in counts.items() if n}


def test_a_repeated_filter_means_all_its_values(cl: Cluster,
                                                fleet: dict[str, dict[str, Any]]) -> None:
    # ?status=a&status=b is ?status=a,b (dashboard.md): the API kept only the last one, so a
    # scripted export silently left out the runs the others matched.
    want = _expected(fleet, {"status": "completed,cancelled"})
    params = [("q", "fx40"), ("status", "completed"), ("status", "cancelled"), ("limit", 1000)]
    listed = ok(cl, "GET", "/runs", params=params)
    assert [r["id"] for r in listed["runs"]] == want and listed["total"] == len(want)
    assert {r["status"] for r in listed["runs"]} == {"completed", "cancelled"}
    r = httpx.get(f"{cl.url}/api/v1/runs/export", params=[*params[:3], ("format", "jsonl")],
                  headers={"Authorization": f"Bearer {cl.admin_token}"}, timeout=60)
    lines = [json.loads(line) for line in r.text.splitlines()]
    assert [line["id"] for line in lines if line["type"] == "run"] == want
    error(cl, "GET", "/runs", params=[("status", "completed"), ("status", "bogus")], status=400)
    # In any case: jobs' and DAGs' states are upper case everywhere else (`--status FAILED`
    # was refused).
    upper = ok(cl, "GET", "/runs", params=[("q", "fx40"), ("status", "COMPLETED,Cancelled"),
                                           ("limit", 1000)])
    assert [r["id"] for r in upper["runs"]] == want


def test_an_export_follows_the_lists_sort(cl: Cluster, fleet: dict[str, dict[str, Any]]) -> None:
    # The Runs page sorted by cost exported its runs newest first: a file in another order
    # than the page it came from (a QA pass on seed 004's "filter, sort by cost, Export").
    for sort in ("cost", "duration", "oldest", "recent"):
        params = {"q": "fx40", "status": "completed,failed", "sort": sort}
        listed = [r["id"] for r in ok(cl, "GET", "/runs", params={**params, "limit": 1000})["runs"]]
        assert len(listed) > 10
        for fmt in ("jsonl", "json", "csv"):
            text = export(cl, fmt, params)
            got = ([json.loads(line)["id"] for line in text.splitlines()] if fmt == "jsonl"
                   else [r["id"] for r in json.loads(text)["runs"]] if fmt == "json"
                   else [r["id"] for r in csv.DictReader(io.StringIO(text))])
            assert got == listed, (sort, fmt)
    by_cost = [r["id"] for r in ok(cl, "GET", "/runs", params={"q": "fx40", "sort": "cost",
                                                                "limit": 1000})["runs"]]
    assert by_cost != _expected(fleet, {})  # the sort is not newest first in disguise


def test_registry_pages(cl: Cluster, fleet: dict[str, dict[str, Any]]) -> None:
    want = _expected(fleet, {})
    assert len(want) == 40
    got: list[str] = []
    for offset in range(0, 42, 7):
        page = ok(cl, "GET", "/runs", params={"q": "fx40", "limit": 7, "offset": offset})
        assert page["total"] == 40 and page["limit"] == 7 and page["offset"] == offset
        got.extend(r["id"] for r in page["runs"])
    assert got == want
    assert ok(cl, "GET", "/runs", params={"q": "fx40", "offset": 40})["runs"] == []


def test_registry_refuses_bad_filters(cl: Cluster) -> None:
    for params in ({"status": "sleeping"}, {"min_cost": -1}, {"window": "7x"},
                   {"window": "-3d"}, {"limit": 0}, {"limit": 1001}, {"offset": -1},
                   {"min_cost": "cheap"}, {"sort": "size"}):
        error(cl, "GET", "/runs", params=params, status=400, code="invalid_request")
    for params in ({"format": "xml"}, {"status": "sleeping"}, {"window": "soon"},
                   {"sort": "bogus"}):  # the sort: 200, while the list said 400
        error(cl, "GET", "/runs/export", params=params, status=400, code="invalid_request")
    for cost in ("nan", "inf", "1e309", "2e9"):  # matched nothing: a silently empty export
        for path in ("/runs", "/runs/export"):
            err = error(cl, "GET", path, params={"min_cost": cost}, status=400)
            assert "from 0 to 1e9" in err["message"], err
    error(cl, "GET", "/runs/intercepts", params={"window": "7x"}, status=400)
    for bad in ("nanh", "infd", "1e3d", "99999999999999999999d", "0h", "-5h"):
        error(cl, "GET", "/runs", params={"window": bad}, status=400)
    assert ok(cl, "GET", "/runs", params={"window": "24H"})["total"] >= 0  # any case


def test_the_seeds_words_for_a_window_and_an_order_are_taken(
        cl: Cluster, fleet: dict[str, dict[str, Any]]) -> None:
    # Seed 004 labels the windows "24 hours", "7 days", "30 days", "All time" and says "Sort
    # by recency", "Sort by cost (descending)": each was a 400 (window=ALL too, although a
    # window was taken "in any case"). They are Titan's 24h/7d/30d/all and recent/cost, on
    # the list, its export, the intercepts and the Runs page.
    ids = lambda params: [r["id"] for r in ok(cl, "GET", "/runs", params={  # noqa: E731
        "q": "fx40", "limit": 1000, **params})["runs"]]
    for worded, short in (("24 hours", "24h"), ("7 days", "7d"), ("30days", "30d"),
                          ("All time", "all"), ("ALL", "all"), ("all_time", "all")):
        assert ids({"window": worded}) == ids({"window": short}) == _expected(
            fleet, {"window": short} if short in _WINDOW_H else {}), worded
        assert ok(cl, "GET", "/runs/intercepts", params={"window": worded})["total"] >= 0
    assert len(ids({"window": "7 days"})) < len(ids({"window": "All time"}))
    assert ids({"window": "90 Minutes"}) == ids({"window": "90m"}) != []
    for worded, short in (("recency", "recent"), ("-cost", "cost"), ("cost_desc", "cost"),
                          ("COST", "cost"), ("duration_desc", "duration")):
        assert ids({"sort": worded}) == ids({"sort": short}), worded
        text = export(cl, "jsonl", {"q": "fx40", "sort": worded, "window": "7 days"})
        assert [json.loads(line)["id"] for line in text.splitlines()] == ids(
            {"sort": short, "window": "7d"}), worded
    for params in ({"window": "7 weeks"}, {"window": "24 parsecs"}, {"window": "hours"},
                   {"sort": "cost_asc"}, {"sort": "+cost"}):
        error(cl, "GET", "/runs", params=params, status=400, code="invalid_request")
    # The Runs page applies them and shows them in its own words, which its form's
    # selects and its export links then carry.
    page = httpx.get(f"{cl.url}/runs.json", timeout=60, params={
        "q": "fx40", "window": "7 days", "sort": "recency", "limit": 500},
        headers={"Authorization": f"Bearer {cl.admin_token}"})
    assert page.status_code == 200, page.text
    assert [r["id"] for r in page.json()["runs"]] == ids({"window": "7d"})
    assert (page.json()["filters"]["window"], page.json()["filters"]["sort"]) == ("7d", "recent")
    assert all("window=7d" in link["href"] for link in page.json()["export"])


def test_titan_runs_filters_by_agent_id_in_the_seeds_words(
        cl: Cluster, fleet: dict[str, dict[str, Any]]) -> None:
    # Seed 004 says "Filter by agent_id" and the API takes ?agent_id=, but `titan runs list
    # --agent-id` was an argparse error ("unrecognized arguments"), and the seed's "7 days"
    # and "recency" were the master's 400.
    env = dict(cl.env, TITAN_HOST="127.0.0.1", TITAN_PORT=str(cl.port),
               TITAN_TOKEN=cl.admin_token)
    want = _expected(fleet, {"agent": "fx40beta", "window": "7d"})
    assert want
    listed = subprocess.run(
        [sys.executable, "-m", "titan", "runs", "list", "--agent-id", "fx40beta", "--window",
         "7 days", "--sort", "recency", "--q", "fx40", "--limit", "1000", "--json"],
        env=env, capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0, listed.stderr
    assert [r["id"] for r in json.loads(listed.stdout)["runs"]] == want
    exported = subprocess.run(
        [sys.executable, "-m", "titan", "runs", "export", "--agent-id", "fx40beta", "--window",
         "7 days", "--q", "fx40", "--no-actions", "--format", "jsonl"],
        env=env, capture_output=True, text=True, timeout=60)
    assert exported.returncode == 0, exported.stderr
    assert [json.loads(line)["id"] for line in exported.stdout.splitlines()] == want


# ------------------------------------------------------------------------------ retention
# Last in the module: pruning without run_ids deletes every old finished run of the cluster.


def test_prune_deletes_old_finished_runs_only(cl: Cluster, tokens: dict[str, str]) -> None:
    old = {}
    for run_id, status in (("old-done", "completed"), ("old-failed", "failed"),
                           ("old-cancelled", "cancelled")):
        new_run(cl, run_id, started_at=NOW - 3 * DAY)
        ingest(cl, run_id, [act(f"{run_id}-{j}", started_at=NOW - 3 * DAY + j)
                            for j in range(3)])
        ok(cl, "PATCH", f"/runs/{run_id}", {"status": status, "ended_at": NOW - 3 * DAY + 60})
        old[run_id] = status
    new_run(cl, "old-running", started_at=NOW - 3 * DAY)  # never ended: kept
    ingest(cl, "old-running", [act("r", started_at=NOW - 3 * DAY)])
    new_run(cl, "new-done", started_at=NOW - HOUR)
    ok(cl, "PATCH", "/runs/new-done", {"status": "completed"})
    # an old run with a stage: the stage stays when the run goes
    new_run(cl, "OLDSTAGE_1", started_at=NOW - 3 * DAY)
    client = cl.client()
    script = cl.script("noop.py", "print('ok')\n")
    stage = client.submit_dag("OLDSTAGE_1_PLAN", [TitanJob("plan", script)],
                              agent_run_id="OLDSTAGE_1")
    assert stage["agent_run_id"] == "OLDSTAGE_1"
    assert client.wait_dag(stage["id"], timeout=60)["status"] == "COMPLETED"
    ok(cl, "PATCH", "/runs/OLDSTAGE_1", {"status": "completed", "ended_at": NOW - 2 * DAY})
    old["OLDSTAGE_1"] = "completed"

    for token in (tokens["viewer"], tokens["operator"]):
        error(cl, "POST", "/runs/prune", {"older_than": "1d"}, token=token, status=403)
    for bad in ({}, {"older_than": "all"}, {"older_than": "1x"}, {"older_than": 5},
                {"older_than": "1d", "run_ids": "old-done"}, ["1d"],
                # "3m" read as minutes deleted almost every run of someone who meant months.
                {"older_than": "3m"}, {"older_than": "30m"}, {"older_than": "nand"},
                # A typo or a non-boolean deleted for real.
                {"older_than": "1d", "dryRun": True}, {"older_than": "1d", "dry_run": 0}):
        error(cl, "POST", "/runs/prune", bad, status=400, code="invalid_request")
    said = error(cl, "POST", "/runs/prune", {"older_than": "3m"}, status=400)["message"]
    assert "hours or days" in said and "minutes or months?" in said, said

    dry = ok(cl, "POST", "/runs/prune", {"older_than": "1d", "dry_run": True})
    assert dry["dry_run"] is True and dry["pruned"] == len(dry["run_ids"])
    assert abs(dry["before"] - (time.time() - DAY)) < 120
    assert set(old) <= set(dry["run_ids"])
    assert not {"old-running", "new-done"} & set(dry["run_ids"])
    for run_id in old:  # a dry run deletes nothing
        assert get_run(cl, run_id)["id"] == run_id

    # run_ids narrows a prune to those runs (what an export just saved)
    nothing = ok(cl, "POST", "/runs/prune", {"older_than": "1d", "run_ids": []})
    assert (nothing["pruned"], nothing["run_ids"]) == (0, [])
    only = ok(cl, "POST", "/runs/prune", {"older_than": "1d",
                                          "run_ids": ["old-done", "old-running", "new-done"]})
    assert only["run_ids"] == ["old-done"] and only["pruned"] == 1
    error(cl, "GET", "/runs/old-done", status=404)
    assert get_run(cl, "old-failed")["action_count"] == 3

    done = ok(cl, "POST", "/runs/prune", {"older_than": "1d"})
    assert done["dry_run"] is False
    assert set(done["run_ids"]) == set(dry["run_ids"]) - {"old-done"}
    for run_id in old:
        error(cl, "GET", f"/runs/{run_id}", status=404, code="not_found")
        error(cl, "GET", f"/runs/{run_id}/actions", status=404, code="not_found")
        error(cl, "GET", f"/runs/{run_id}/actions/1", status=404, code="not_found")
    for run_id in ("old-running", "new-done"):
        assert get_run(cl, run_id)["id"] == run_id
    dag = ok(cl, "GET", f"/dags/{stage['id']}")
    assert dag["status"] == "COMPLETED" and dag["agent_run_id"] is None
    assert get_run(cl, "old-running")["action_count"] == 1
    assert ok(cl, "POST", "/runs/prune", {"older_than": "1d", "dry_run": True})["run_ids"] == []
    # their actions went with them: the same ids start again from nothing
    new_run(cl, "old-failed", started_at=NOW - 3 * DAY)
    again = ingest(cl, "old-failed", [act("old-failed-0", started_at=NOW - 3 * DAY)])
    assert (again["accepted"], again["duplicates"], again["first_seq"]) == (1, 0, 1)
    assert list_actions(cl, "old-failed")["matched"] == 1


def test_an_agent_whose_id_holds_a_slash_is_read_and_budgeted(cl: Cluster) -> None:
    # sdk.md's own example names an agent "research bot/v2": its page worked, but the API
    # answered a bare 404 and `titan runs budget --agent` could not set its budget.
    new_run(cl, "slash-1", agent_id="research bot/v2")
    agent = ok(cl, "GET", "/agents/research%20bot%2Fv2")
    assert agent["agent_id"] == "research bot/v2" and agent["runs"] == 1
    env = dict(cl.env, TITAN_HOST="127.0.0.1", TITAN_PORT=str(cl.port),
               TITAN_TOKEN=cl.admin_token)
    done = subprocess.run([sys.executable, "-m", "titan", "runs", "budget", "--agent",
                           "research bot/v2", "2.5"], env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert ok(cl, "GET", "/agents/research%20bot%2Fv2")["budget_usd"] == 2.5
    assert get_run(cl, "slash-1")["budget_usd"] == 2.5


def test_runs_batch_applies_several_runs_work_in_order_and_stops_at_a_refusal(
        cl: Cluster, tokens: dict[str, str]) -> None:
    # Four requests a run, one after another, held the SDK to ~70 runs a second: a script
    # recording many short runs lost most of them at exit. One request carries them now.
    act = {"name": "search", "channel": "tool", "started_at": NOW, "inputs": {"q": 1}}
    ops = [{"run": "multi-1", "create": {"agent_id": "multi", "watched": True}},
           {"run": "multi-1", "actions": [dict(act, id="m1a"), dict(act, id="m1b")]},
           {"run": "multi-1", "update": {"status": "completed"}},
           {"run": "multi-2", "create": {"agent_id": "multi"}},
           {"run": "multi-2", "actions": [dict(act, id="m2a", channel="nope")]},
           {"run": "multi-2", "update": {"status": "completed"}}]
    status, body = call(cl, "POST", "/runs/batch", {"ops": ops})
    assert status == 200, body
    # The refused op is named as its own route names it, and nothing after it is applied.
    assert body["applied"] == 4 and len(body["results"]) == 4, body
    assert body["error"]["index"] == 4 and body["error"]["status"] == 400
    assert "actions[0].channel" in body["error"]["message"]
    assert body["results"][1]["accepted"] == 2 and body["results"][0]["created"] is True
    one, two = get_run(cl, "multi-1"), get_run(cl, "multi-2")
    assert (one["status"], one["action_count"]) == ("completed", 2)
    assert (two["status"], two["action_count"]) == ("running", 0)
    # Resent from the refused op on, corrected: applied as the per-run routes would.
    status, body = call(cl, "POST", "/runs/batch", {"ops": [
        {"run": "multi-2", "actions": [dict(act, id="m2a")]},
        {"run": "multi-2", "update": {"status": "completed"}}]})
    assert (status, body["applied"]) == (200, 2) and "error" not in body
    assert get_run(cl, "multi-2")["status"] == "completed"
    # The same rules: a viewer may not write, an imported trace's id is the OTLP receiver's,
    # the shape is checked before anything is applied.
    status, _ = call(cl, "POST", "/runs/batch", {"ops": ops[:1]}, token=tokens["viewer"])
    assert status == 403
    status, body = call(cl, "POST", "/runs/batch", {"ops": [
        {"run": "otel-" + "a" * 32, "create": {"agent_id": "x"}}]})
    assert status == 200 and body["applied"] == 0 and body["error"]["status"] == 400
    for bad in ({"ops": []}, {"ops": [{"run": "x"}]}, {"ops": [{"run": "x", "create": {},
                                                                 "update": {}}]},
                {"ops": [{"run": "x", "create": {}}] * 1001}, {"runs": []}):
        status, _ = call(cl, "POST", "/runs/batch", bad)
        assert status == 400, bad


def test_runs_batch_refuses_hostile_bodies_whole_and_stores_nothing(
        cl: Cluster, tokens: dict[str, str]) -> None:
    """The batch route reads its body by hand: the strict parse and its own limits hold, and
    a body refused as a whole applies none of its ops."""
    create = {"run": "hostile-1", "create": {"agent_id": "hostile"}}
    act = {"name": "x", "channel": "tool", "started_at": NOW}
    too_many = [{"run": "hostile-1", "actions": [dict(act, id=f"h{i}-{j}") for j in range(5_001)]}
                for i in range(2)]
    bodies: list[bytes] = [
        json.dumps({"ops": [create, *too_many]}).encode(),  # 10,002 actions in all
        b'{"ops": [' + json.dumps(create).encode() + b', ' + b"[" * 3000 + b"]" * 3000 + b"]}",
        b'{"ops": [{"run": "hostile-1", "create": {"agent_id": "\xff\xfe"}}]}',  # not UTF-8
        b'{"ops": [{"run": "hostile-1", "create": {"budget_usd": NaN}}]}',
        json.dumps({"ops": [create, {"run": 7, "update": {"status": "completed"}}]}).encode(),
        json.dumps({"ops": [create, {"run": "", "update": {}}]}).encode(),
    ]
    for content in bodies:
        status, reply = call(cl, "POST", "/runs/batch", content=content)
        assert status == 400, (content[:80], reply)
        assert set(reply) == {"error"}, reply
    status, _ = call(cl, "GET", "/runs/hostile-1")
    assert status == 404  # nothing of any of them was applied
    # An id its own route refuses (past its length, a path) is refused as that op, by name.
    for bad in ("x" * 5000, "../etc"):
        status, reply = call(cl, "POST", "/runs/batch", {"ops": [
            {"run": bad, "create": {"agent_id": "hostile"}}]})
        assert status == 200 and reply["applied"] == 0, reply
        assert reply["error"]["status"] == 400 and reply["error"]["index"] == 0, reply
    # POST /runs's "watched" is a boolean or nothing: "yes" is refused, and no run is made.
    status, reply = call(cl, "POST", "/runs", {"id": "watched-bad", "watched": "yes"})
    assert status == 400 and "watched" in json.dumps(reply), reply
    assert call(cl, "GET", "/runs/watched-bad")[0] == 404
    # A forged job token is refused before any op.
    status, reply = call(cl, "POST", "/runs/batch", {"ops": [create]}, token="tj.1.1.bad")
    assert status == 401, reply
