"""The run ledger against a real `titan up`: recorded batches verify through the API and
`titan runs verify`; an edit in the database is named by both; an anchored head catches a
chain rewritten whole; exports carry the chain and verify offline; the Activity Ledger page
lists, filters and pages actions across runs with each row's chain status."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

import httpx
import pytest

from tests.integration.harness import Cluster, isolated_cluster
from titan import ledger

HOSTILE = "<script>alert('ledger')</script>"


def action(i: int, **kw: Any) -> dict[str, Any]:
    return {"id": f"a{i}", "name": "call_llm" if i % 2 else "web_search", "actor": "main",
            "channel": "llm" if i % 2 else "tool", "started_at": time.time() + i * 1e-3,
            "duration_ns": 1_000_000 + i, "inputs": {"q": f"question {i}", "n": i / 3},
            "outputs": {"a": [i, "ü"]}, "cost_usd": 0.001 * i, "usage": {"input_tokens": i},
            **kw}


@pytest.fixture(scope="module")
def cl(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = isolated_cluster(tmp_path_factory.mktemp("ledger"), slots=1)
    try:
        for run_id, agent in (("lg-a", "alpha"), ("lg-b", "beta"), ("lg-tamper", "alpha"),
                              ("lg-rewrite", "beta")):
            c.api("POST", "/runs", {"id": run_id, "agent_id": agent})
            c.api("POST", f"/runs/{run_id}/actions", {"actions": [
                action(0, inputs={"email": "ada@example.com"}),  # redacted, then hashed
                action(1, error={"type": "Boom", "message": "it broke"}, outputs=None),
                action(2, tags={"k": [1, 2.5]}, ordinal=7),
                {"id": "no-ordinal", "name": HOSTILE, "started_at": time.time()}]})
            # A line or paragraph separator (common in a model's text) is legal JSON in an
            # export's line: verify read it as a line break and called the file not JSON.
            c.api("POST", f"/runs/{run_id}/actions", {"actions": [action(i, outputs={
                "a": [i, "ü"], "said": "one\u2028two\u2029three\x85four"}) for i in range(3, 6)]})
        yield c
    finally:
        c.stop()


def titan(cl: Cluster, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(cl.env, TITAN_HOST="127.0.0.1", TITAN_PORT=str(cl.port),
               TITAN_TOKEN=cl.admin_token)
    return subprocess.run([sys.executable, "-m", "titan", *args], env=env, cwd=cl.root,
                          capture_output=True, text=True, timeout=60)


def db(cl: Cluster, statement: str, *params: Any) -> None:
    """Tamper with the master's database behind its back, as someone with the file would."""
    with sqlite3.connect(cl.data / "titan.db") as conn:
        conn.execute(statement, params)


def page(cl: Cluster, path: str = "/ledger.json", **params: Any) -> Any:
    with httpx.Client(base_url=cl.url, timeout=30,
                      headers={"Authorization": f"Bearer {cl.admin_token}"}) as http:
        r = http.get(path, params=params)
        r.raise_for_status()
        return r.json() if path.endswith(".json") else r.text


def test_recorded_batches_verify(cl: Cluster) -> None:
    v = cl.api("GET", "/runs/lg-a/verify")
    assert (v["status"], v["actions"], v["checked"], v["break"]) == ("verified", 7, 7, None)
    run = cl.api("GET", "/runs/lg-a")
    assert v["head"] == run["chain_head"] and run["chain_start"] == 1
    last = cl.api("GET", "/runs/lg-a/actions/7")
    assert last["chain_hash"] == v["head"]
    out = titan(cl, "runs", "verify", "lg-a")
    assert out.returncode == 0, out.stderr
    assert "lg-a: ok — 7 actions verified" in out.stdout and f"7:{v['head']}" in out.stdout
    printed = json.loads(titan(cl, "runs", "verify", "lg-a", "--json").stdout)
    assert printed["head"] == v["head"]
    assert titan(cl, "runs", "verify", "lg-a", "--anchor", f"7:{v['head']}").returncode == 0
    gone = titan(cl, "runs", "verify", "lg-a", "--anchor", f"99:{v['head']}")
    assert gone.returncode == 3 and "no chained action #99" in gone.stdout


def test_an_edit_in_the_database_is_named(cl: Cluster) -> None:
    db(cl, "UPDATE actions SET cost_usd = 0 WHERE run_id = 'lg-tamper' AND seq = 3")
    v = cl.api("GET", "/runs/lg-tamper/verify")
    assert v["status"] == "broken" and v["verified_through"] == 2
    assert (v["break"]["kind"], v["break"]["seq"], v["break"]["action_id"]) == (
        "edited", 3, "a2")
    out = titan(cl, "runs", "verify", "lg-tamper")
    assert out.returncode == 3 and "lg-tamper: BROKEN — action #3 was edited" in out.stdout
    # The verdict the API reached is the one the Activity Ledger shows from now on.
    rows = page(cl, run="lg-tamper")["actions"]
    assert {a["seq"]: a["chain"] for a in rows} == {
        7: "broken", 6: "broken", 5: "broken", 4: "broken", 3: "broken", 2: "verified",
        1: "verified"}


def test_an_anchor_catches_a_chain_rewritten_whole(cl: Cluster) -> None:
    anchored = cl.api("GET", "/runs/lg-rewrite/verify")["head"]
    # Someone who can write the database edits #2 and recomputes every hash after it and
    # the run's head: the chain is consistent again, which only the anchor can contradict.
    db(cl, "UPDATE actions SET error_message = 'all fine' WHERE run_id = 'lg-rewrite' "
           "AND seq = 2")
    conn = sqlite3.connect(cl.data / "titan.db")
    conn.row_factory = sqlite3.Row
    rows = [dict(r) for r in conn.execute(
        "SELECT * FROM actions WHERE run_id = 'lg-rewrite' ORDER BY seq")]
    for r in rows:
        r["tags"] = json.loads(r["tags"]) if r["tags"] else None
        r["pii"] = json.loads(r["pii"]) if r["pii"] else None
    head, _ = ledger.extend("lg-rewrite", None, None, rows)
    with conn:
        for r in rows:
            conn.execute("UPDATE actions SET chain_hash = ? WHERE run_id = 'lg-rewrite' AND "
                         "seq = ?", (r["chain_hash"], r["seq"]))
        conn.execute("UPDATE agent_runs SET chain_head = ? WHERE id = 'lg-rewrite'", (head,))
    conn.close()
    assert cl.api("GET", "/runs/lg-rewrite/verify")["status"] == "verified"
    out = titan(cl, "runs", "verify", "lg-rewrite", "--anchor", f"7:{anchored}")
    assert out.returncode == 3 and "not the anchored one" in out.stdout


def test_exports_carry_the_chain_and_verify_offline(cl: Cluster, tmp_path: Path) -> None:
    # Seed 004: an export includes runs and all actions, without being asked (JSONL); the
    # --actions that once asked for them is still accepted (JSON).
    for fmt, asked in (("jsonl", []), ("json", ["--actions"])):
        path = tmp_path / f"runs.{fmt}"
        out = titan(cl, "runs", "export", "--format", fmt, *asked, "--agent", "beta",
                    "-o", str(path))
        assert out.returncode == 0, out.stderr
        if fmt == "jsonl":
            lines = [json.loads(x) for x in path.read_text().split("\n") if x]
            run = next(x for x in lines if x["type"] == "run" and x["id"] == "lg-b")
            assert run["chain_head"] == cl.api("GET", "/runs/lg-b")["chain_head"]
            acts = [x for x in lines if x["type"] == "action" and x["run_id"] == "lg-b"]
            assert all(len(a["chain_hash"]) == 64 for a in acts)
        offline = titan(cl, "runs", "verify", "--export", str(path), "--json")
        verdicts = {v["run_id"]: v for v in json.loads(offline.stdout)["runs"]}
        assert verdicts["lg-b"]["status"] == "verified", verdicts
        assert verdicts["lg-rewrite"]["status"] == "verified"  # consistent, as rewritten
        path.write_text(path.read_text().replace('"question 4"', '"question four"'))
        edited = titan(cl, "runs", "verify", "--export", str(path))
        assert edited.returncode == 3 and "lg-b: BROKEN — action #6 was edited" in edited.stdout
    csv = httpx.get(f"{cl.url}/api/v1/runs/export", params={"format": "csv", "actions": "true"},
                    headers={"Authorization": f"Bearer {cl.admin_token}"}).text
    assert csv.splitlines()[0].endswith(",pii,chain_hash")
    assert csv.splitlines()[0].startswith("run_id,agent_id,agent_version,run_replay_of,")
    # --no-actions: the runs alone.
    alone = tmp_path / "alone.jsonl"
    assert titan(cl, "runs", "export", "--no-actions", "--agent", "beta",
                 "-o", str(alone)).returncode == 0
    kinds = {json.loads(x)["type"] for x in alone.read_text().split("\n") if x}
    assert kinds == {"run"}

    # Lines moved in the file are no tampering; seq values swapped are, and read as such.
    path = tmp_path / "again.jsonl"
    assert titan(cl, "runs", "export", "--format", "jsonl", "--actions", "--agent", "beta",
                 "-o", str(path)).returncode == 0
    lines = [x for x in path.read_text().split("\n") if x]  # a line ends at \n only
    path.write_text("\n".join([lines[0], *reversed(lines[1:])]) + "\n\n")
    shuffled = titan(cl, "runs", "verify", "--export", str(path))
    assert shuffled.returncode == 0, shuffled.stdout + shuffled.stderr
    items = [json.loads(x) for x in lines]
    by_seq = {x["seq"]: i for i, x in enumerate(items)
              if x["type"] == "action" and x["run_id"] == "lg-b"}
    items[by_seq[2]]["seq"], items[by_seq[5]]["seq"] = 5, 2
    path.write_text("".join(json.dumps(x) + "\n" for x in items))
    swapped = titan(cl, "runs", "verify", "--export", str(path))
    assert swapped.returncode == 3 and "reordered" in swapped.stdout, swapped.stdout
    # A seq met twice reads as such (it read "action #3–#1 is missing").
    items = [json.loads(x) for x in lines]
    items[by_seq[3]]["seq"] = 2
    path.write_text("".join(json.dumps(x) + "\n" for x in items))
    twice = titan(cl, "runs", "verify", "--export", str(path))
    assert twice.returncode == 3 and "action #2 appears twice" in twice.stdout, twice.stdout
    # Every hash and the head stripped, then an edit: the export says when its master began
    # chaining, so the edit does not pass as data recorded before the ledger existed.
    items = [json.loads(x) for x in lines]
    for x in items:
        if x.get("id") == "lg-b" or x.get("run_id") == "lg-b":
            x.update({"chain_head": None, "chain_start": None} if x["type"] == "run"
                     else {"chain_hash": None})
        if x["type"] == "action" and x["run_id"] == "lg-b" and x["seq"] == 1:
            x["outputs"] = {"doctored": True}
    path.write_text("".join(json.dumps(x) + "\n" for x in items))
    stripped = titan(cl, "runs", "verify", "--export", str(path))
    assert stripped.returncode == 3 and "lg-b: BROKEN — action #1 has no chain hash" \
        in stripped.stdout, stripped.stdout
    for x in items:
        x.pop("ledger_since", None)
    path.write_text("".join(json.dumps(x) + "\n" for x in items))
    unknown = titan(cl, "runs", "verify", "--export", str(path))
    assert unknown.returncode == 4 and "ledger_since" in unknown.stdout, unknown.stdout
    for anchor in ("0:" + "a" * 64, "2:" + "z" * 64, "2:abc"):
        out = titan(cl, "runs", "verify", "lg-b", "--anchor", anchor)
        assert out.returncode == 1 and "--anchor must be SEQ:HASH" in out.stderr, out.stderr
    # A pretty-printed JSON export is JSON too.
    pretty = tmp_path / "pretty.json"
    assert titan(cl, "runs", "export", "--format", "json", "--actions", "--agent", "beta",
                 "-o", str(pretty)).returncode == 0
    pretty.write_text(json.dumps(json.loads(pretty.read_text()), indent=2))
    assert titan(cl, "runs", "verify", "--export", str(pretty)).returncode == 0
    # What is no export is said so, and an export emptied of its runs does not pass.
    bad = tmp_path / "bad"
    for content, said in (("", "holds no run"), (csv, "not JSON"), ('{"runs": null}', "not an export"),
                          ("[1, 2]", "not an export"), ("\n".join(lines[1:]), "run line is not in the file")):
        bad.write_text(content)
        out = titan(cl, "runs", "verify", "--export", str(bad))
        assert out.returncode == 1 and said in out.stderr and "Traceback" not in out.stderr, \
            (content[:40], out.stderr)
    for where, said in ((tmp_path / "missing", "no such file"), (tmp_path, "directory")):
        out = titan(cl, "runs", "verify", "--export", str(where))
        assert out.returncode == 1 and said in out.stderr, out.stderr
    out = titan(cl, "runs", "export", "-o", str(tmp_path / "no" / "dir.json"))
    assert out.returncode == 1 and "no directory" in out.stderr and "Traceback" not in out.stderr
    # A run id is one path segment: '../agents/beta' names no run, and sets no agent's budget.
    before = cl.api("GET", "/agents/beta")["budget_usd"]
    out = titan(cl, "runs", "budget", "../agents/beta", "7")
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
    assert cl.api("GET", "/agents/beta")["budget_usd"] == before
    for bad in ("nan", "inf", "-1"):
        out = titan(cl, "runs", "budget", "lg-b", bad)
        assert out.returncode == 1 and "budget must be" in out.stderr, out.stderr


def test_the_activity_ledger_lists_filters_and_pages(cl: Cluster) -> None:
    everything = page(cl, limit=500)
    rows = everything["actions"]
    assert len(rows) == 28 and everything["older"] is None
    assert [a["started_at"] for a in rows] == sorted((a["started_at"] for a in rows),
                                                     reverse=True)
    assert {a["chain"] for a in rows if a["run_id"] in ("lg-a", "lg-b")} == {"verified"}
    assert set(everything["runs"]) == {"lg-a", "lg-b", "lg-tamper", "lg-rewrite"}
    assert {a["run_id"] for a in page(cl, agent="beta")["actions"]} == {"lg-b", "lg-rewrite"}
    errors = page(cl, outcome="error", run="lg-a")["actions"]
    assert [(a["seq"], a["error_type"]) for a in errors] == [(2, "Boom")]
    # In any case, as the Runs page takes statuses and the API outcomes (ERROR was a 400).
    upper = page(cl, outcome="ERROR,Blocked", run="lg-a")
    assert upper["actions"] == errors and upper["filters"]["outcome"] == "error,blocked"
    assert 'value="error" checked' in page(cl, "/ledger", outcome="ERROR")
    assert len(page(cl, name="call_llm", actor="main", agent="alpha")["actions"]) == 6
    assert all(a["cost_usd"] >= 0.004 for a in page(cl, min_cost="0.004")["actions"])
    assert page(cl, **{"from": "2000-01-01T00:00", "to": "2000-01-02T00:00"})["actions"] == []
    # Keyset pages: older, then back newer, cover the same rows in the same order.
    first = page(cl, limit=10)
    second = page(cl, **_params(first["older"]["href"]))
    assert [a["cursor"] for a in first["actions"] + second["actions"]] == \
        [a["cursor"] for a in rows[:20]]
    back = page(cl, **_params(second["newer"]["href"]))
    assert [a["cursor"] for a in back["actions"]] == [a["cursor"] for a in rows[:10]]
    for bad in ({"before": "yesterday"}, {"min_cost": "-1"}, {"from": "soon"},
                {"outcome": "weird"}, {"window": "forever"}, {"before": "1,2"},
                {"before": "nan,1,run"}, {"after": "1,-1,run"}, {"min_cost": "inf"}):
        r = httpx.get(f"{cl.url}/ledger.json", params=bad,
                      headers={"Authorization": f"Bearer {cl.admin_token}"})
        assert r.status_code == 400, (bad, r.text)
    # The Runs page's words for the same bound: the ledger wrote "from 0 to 1e+09".
    r = httpx.get(f"{cl.url}/ledger.json", params={"min_cost": "2e9"},
                  headers={"Authorization": f"Bearer {cl.admin_token}"})
    assert r.json()["error"]["message"] == "min_cost must be a number of USD from 0 to 1e9, " \
        "got '2e9'"
    # From after To (the two swapped) read "No action matches these filters": said instead.
    r = httpx.get(f"{cl.url}/ledger.json", params={"from": "2030-01-02T00:00",
                                                   "to": "2030-01-01T00:00"},
                  headers={"Authorization": f"Bearer {cl.admin_token}"})
    assert r.status_code == 400 and r.json()["error"] == {
        "code": "invalid_request", "details": {"field": "to"},
        "message": "to (2030-01-01T00:00) is before from (2030-01-02T00:00): swap them"}, r.text
    same = {"from": "2030-01-01T00:00", "to": "2030-01-01T00:00"}  # one second: allowed
    assert page(cl, **same)["actions"] == []


def _params(href: str) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(href).query))


def test_the_pages_link_the_ledger_and_escape_what_agents_wrote(cl: Cluster) -> None:
    run_page = page(cl, "/runs/lg-a")
    assert 'href="/ledger?run=lg-a"' in run_page and "View in Activity Ledger" in run_page
    html = page(cl, "/ledger", run="lg-a")
    assert HOSTILE not in html and "&lt;script&gt;alert(" in html
    assert 'aria-current="page">Activity Ledger</a>' in html
    assert f'href="/runs/{quote("lg-a")}"' in html


def test_a_payload_in_the_blob_store_and_a_stripped_chain_are_checked(cl: Cluster) -> None:
    # An edited blob file, or a row's blob flag set by hand over an edited payload, passed
    # verification (a payload in the store was taken on trust); so did a run whose chain
    # hashes and head were removed, read as "recorded before the ledger existed".
    for run_id in ("lg-blobfile", "lg-blobflag", "lg-strip"):
        cl.api("POST", "/runs", {"id": run_id, "agent_id": "gamma"})
        big = {"q": "x" * 300_000, "run": run_id}  # a blob of its own (content-addressed)
        cl.api("POST", f"/runs/{run_id}/actions", {"actions": [
            action(0), action(1, inputs=big), action(2)]})
        assert cl.api("GET", f"/runs/{run_id}/verify")["status"] == "verified"
    sha = cl.api("GET", "/runs/lg-blobfile/actions/2")["inputs_hash"]
    (stored,) = [p for p in (cl.data / "blobs").rglob(sha)]
    stored.chmod(0o600)
    stored.write_text(json.dumps({"q": "y" * 300_000}))
    out = titan(cl, "runs", "verify", "lg-blobfile")
    assert out.returncode == 3 and "#2 was edited: its inputs in the blob store no longer " \
        "match" in out.stdout, out.stdout

    db(cl, "UPDATE actions SET inputs = '{\"i\":99}', inputs_blob = 1 WHERE run_id = "
           "'lg-blobflag' AND seq = 3")
    out = titan(cl, "runs", "verify", "lg-blobflag")
    assert out.returncode == 3 and "#3 was edited: its inputs are not in the blob store" \
        in out.stdout, out.stdout

    anchor = cl.api("GET", "/runs/lg-strip/verify")["head"]
    db(cl, "UPDATE actions SET chain_hash = NULL WHERE run_id = 'lg-strip'")
    db(cl, "UPDATE actions SET outputs = '{\"o\":\"evil\"}', outputs_hash = NULL "
           "WHERE run_id = 'lg-strip' AND seq = 3")
    db(cl, "UPDATE agent_runs SET chain_head = NULL, chain_start = NULL WHERE id = 'lg-strip'")
    out = titan(cl, "runs", "verify", "lg-strip")
    assert out.returncode == 3 and "action #1 has no chain hash though it was recorded " \
        "after the ledger existed" in out.stdout, out.stdout
    out = titan(cl, "runs", "verify", "lg-strip", "--anchor", f"3:{anchor}")
    assert out.returncode == 3


def test_an_edit_dressed_as_data_from_before_the_ledger_is_caught(cl: Cluster,
                                                                 tmp_path: Path) -> None:
    # Hashes, head and start removed and every recorded_at moved back to 2001 (plain
    # columns all): the edited run passed as "recorded before the ledger existed", said as
    # fact. The run was created after the ledger existed, and its actions started long after
    # they say they were recorded.
    cl.api("POST", "/runs", {"id": "lg-preledger", "agent_id": "epsilon"})
    cl.api("POST", "/runs/lg-preledger/actions", {"actions": [action(i) for i in range(3)]})
    db(cl, "UPDATE actions SET outputs = '{\"a\":\"FORGED\"}', outputs_hash = NULL, "
           "chain_hash = NULL, recorded_at = 1000000000 WHERE run_id = 'lg-preledger'")
    db(cl, "UPDATE agent_runs SET chain_head = NULL, chain_start = NULL "
           "WHERE id = 'lg-preledger'")
    out = titan(cl, "runs", "verify", "lg-preledger")
    assert out.returncode == 3 and "lg-preledger: BROKEN — action #1 has no chain hash and " \
        "says it was recorded at 2001-09-09 01:46:40 UTC, before the ledger existed, but its " \
        "run was created after it" in out.stdout, out.stdout
    path = tmp_path / "epsilon.jsonl"
    assert titan(cl, "runs", "export", "--format", "jsonl", "--actions", "--agent", "epsilon",
                 "-o", str(path)).returncode == 0
    out = titan(cl, "runs", "verify", "--export", str(path))
    assert out.returncode == 3 and "its run was created after it" in out.stdout, out.stdout
    # An export from before runs carried created_at: the actions' own start says it.
    lines = [json.loads(x) for x in path.read_text().split("\n") if x]
    for line in lines:
        line.pop("created_at", None)
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    out = titan(cl, "runs", "verify", "--export", str(path))
    assert out.returncode == 3 and "over a day before it started" in out.stdout, out.stdout
    # The run's creation and every start moved back too: nothing left contradicts the claim,
    # which is said as a claim that cannot be verified (exit 4), never as verified.
    db(cl, "UPDATE agent_runs SET created_at = 999999000 WHERE id = 'lg-preledger'")
    db(cl, "UPDATE actions SET started_at = 999999999 WHERE run_id = 'lg-preledger'")
    out = titan(cl, "runs", "verify", "lg-preledger")
    assert out.returncode == 4 and "lg-preledger: not chained — its 3 actions claim to " \
        "predate the ledger (recorded_at 2001-09-09 01:46:40 UTC); this cannot be verified" \
        in out.stdout, out.stdout


def test_an_exports_derived_copies_are_held_to_the_hashed_fields(cl: Cluster,
                                                                  tmp_path: Path) -> None:
    # duration_ms, pii and stage sit beside the hashed duration_ns, pii_fields and actor:
    # edited in the file, they verified ok, and a reader of the file read the edit.
    path = tmp_path / "derived.json"
    assert titan(cl, "runs", "export", "--format", "json", "--actions", "--agent", "alpha",
                 "-o", str(path)).returncode == 0
    original = json.loads(path.read_text())
    for field, value, said in (("duration_ms", 99999, "duration_ms"),
                               ("pii", {"email": 2}, "pii counts"),
                               ("stage", "EVIL", "stage"),
                               ("action", "transfer_funds", "action")):
        data = json.loads(json.dumps(original))
        (run,) = [r for r in data["runs"] if r["id"] == "lg-a"]
        run["actions"][0][field] = value
        path.write_text(json.dumps(data))
        out = titan(cl, "runs", "verify", "--export", str(path))
        assert out.returncode == 3 and f"#1 was edited: its {said}" in out.stdout, out.stdout


def test_only_a_payload_past_the_inline_limit_may_be_an_unchecked_preview(
        cl: Cluster, tmp_path: Path) -> None:
    # An export's payload rewritten, then marked a preview (outputs_complete false, or the
    # key removed): it verified ok. A payload whose chained size is within the inline limit
    # was never a preview: it is checked whatever the flag says. A real preview (a blob the
    # master could not read) is not checked, and the verdict says how many were not.
    cl.api("POST", "/runs", {"id": "lg-preview", "agent_id": "delta"})
    cl.api("POST", "/runs/lg-preview/actions", {"actions": [
        action(0), action(1, inputs={"q": "p" * 100_000, "run": "lg-preview"}), action(2)]})
    path = tmp_path / "delta.json"
    assert titan(cl, "runs", "export", "--format", "json", "--actions", "--agent", "delta",
                 "-o", str(path)).returncode == 0
    original = json.loads(path.read_text())
    [run] = original["runs"]
    assert run["actions"][1]["inputs_size"] > ledger.INLINE_BYTES
    assert titan(cl, "runs", "verify", "--export", str(path)).returncode == 0
    for unmark in (lambda a: a.update(outputs_complete=False),
                   lambda a: a.pop("outputs_complete"),
                   lambda a: a.update(outputs_complete="yes")):
        data = json.loads(json.dumps(original))
        edited = data["runs"][0]["actions"][0]
        edited["outputs"] = {"a": "I transferred $1,000,000 to account 666"}
        unmark(edited)
        path.write_text(json.dumps(data))
        out = titan(cl, "runs", "verify", "--export", str(path))
        assert out.returncode == 3 and "lg-preview: BROKEN — action #1 was edited: its " \
            "outputs no longer match" in out.stdout, out.stdout
    # A payload shown where none was recorded (a failed call's outputs) is an edit too.
    alpha = tmp_path / "alpha.json"
    assert titan(cl, "runs", "export", "--format", "json", "--actions", "--agent", "alpha",
                 "-o", str(alpha)).returncode == 0
    data = json.loads(alpha.read_text())
    (lg_a,) = [r for r in data["runs"] if r["id"] == "lg-a"]
    assert (lg_a["actions"][1]["outputs_hash"], lg_a["actions"][1]["outputs"]) == (None, None)
    lg_a["actions"][1].update(outputs={"text": "fine"}, outputs_complete=False)
    alpha.write_text(json.dumps(data))
    out = titan(cl, "runs", "verify", "--export", str(alpha))
    assert out.returncode == 3 and "lg-a: BROKEN — action #2 was edited" in out.stdout, out.stdout
    # A blob the exporting master could not read: a preview, not checked, and counted.
    sha = run["actions"][1]["inputs_hash"]
    (stored,) = [p for p in (cl.data / "blobs").rglob(sha)]
    stored.unlink()
    assert titan(cl, "runs", "export", "--format", "json", "--actions", "--agent", "delta",
                 "-o", str(path)).returncode == 0
    assert json.loads(path.read_text())["runs"][0]["actions"][1]["inputs_complete"] is False
    out = titan(cl, "runs", "verify", "--export", str(path))
    assert out.returncode == 0 and "lg-preview: ok — 3 actions verified; 1 payload not " \
        "checked" in out.stdout, out.stdout
    verdict = json.loads(titan(cl, "runs", "verify", "--export", str(path), "--json").stdout)
    assert verdict["runs"][0]["payloads_unchecked"] == 1


SWAPS: tuple[Any, ...] = (None, True, 7, -1, 1.5, "x", [], [1], {}, {"a": 1}, {"outputs": 1})


def test_any_field_of_an_export_swapped_for_another_type_is_an_edit(cl: Cluster,
                                                                    tmp_path: Path) -> None:
    # pii_fields {"outputs": 1} (or a string) made verify fail with a traceback in
    # redaction.merge; so did a usage or an error that was not an object, a started_at
    # that was text, a JSONL action whose run_id was a list. Every field of every action
    # (and the run's ledger fields), swapped for a value of another type, is that action
    # (or run) edited: exit 3, never a traceback.
    from titan.cli.verify import verify_export

    path = tmp_path / "alpha.json"
    assert titan(cl, "runs", "export", "--format", "json", "--actions", "--agent", "alpha",
                 "-o", str(path)).returncode == 0
    original = json.loads(path.read_text())
    (index,) = [i for i, r in enumerate(original["runs"]) if r["id"] == "lg-a"]
    lg_a = original["runs"][index]
    assert any(a["pii_fields"] for a in lg_a["actions"])  # #1's email was redacted
    same = {(k, json.dumps(v)) for k, v in (("usage", {}), ("error", None),
                                            ("pii_fields", {}))}
    tried = 0
    for i, act in enumerate(lg_a["actions"]):
        for key in act:
            for value in SWAPS:
                if value == act[key] and type(value) is type(act[key]) or (
                        value in (None, {}) and act[key] in (None, {})
                        and (key, json.dumps(act[key])) in same):
                    continue  # the same value, or one the content reads the same
                data = json.loads(json.dumps(original))
                data["runs"][index]["actions"][i][key] = value
                path.write_text(json.dumps(data))
                verdict = {v["run_id"]: v for v in verify_export(path)}
                v = verdict.get("lg-a") or next(v for v in verdict.values() if "run " in
                                                v["run_id"])
                if key in ("inputs_complete", "outputs_complete"):  # small: checked anyway
                    assert v["status"] == "verified", (key, value, v)
                else:
                    assert v["status"] == "broken", (key, value, v)
                tried += 1
    for key in ("id", "action_count", "chain_head", "chain_start", "ledger_since"):
        for value in SWAPS:
            if key == "ledger_since" and type(value) in (type(None), int, float) \
                    or value == lg_a[key] and type(value) is type(lg_a[key]):
                continue  # a time (unchained, or none: an older export); the same value
            data = json.loads(json.dumps(original))
            data["runs"][index][key] = value
            path.write_text(json.dumps(data))
            assert any(v["status"] == "broken" for v in verify_export(path)), (key, value)
    assert tried > 200
    # Through the command, both formats: said, exit 3.
    for bad in ({"outputs": 1}, "x"):
        data = json.loads(json.dumps(original))
        data["runs"][index]["actions"][2]["pii_fields"] = bad
        path.write_text(json.dumps(data))
        out = titan(cl, "runs", "verify", "--export", str(path))
        assert out.returncode == 3 and "lg-a: BROKEN — action #3 was edited: its pii_fields " \
            "are not counts by field" in out.stdout and not out.stderr, out.stdout + out.stderr
    jsonl = tmp_path / "alpha.jsonl"
    assert titan(cl, "runs", "export", "--format", "jsonl", "--actions", "--agent", "alpha",
                 "-o", str(jsonl)).returncode == 0
    lines = [json.loads(x) for x in jsonl.read_text().split("\n") if x]
    for line in lines:
        if line["type"] == "action" and line["run_id"] == "lg-a" and line["seq"] == 2:
            line["usage"] = [1]
    jsonl.write_text("".join(json.dumps(x) + "\n" for x in lines))
    out = titan(cl, "runs", "verify", "--export", str(jsonl))
    assert out.returncode == 3 and "action #2 was edited: its usage" in out.stdout, out.stdout
    lines[-1]["run_id"] = ["lg-a"]
    jsonl.write_text("".join(json.dumps(x) + "\n" for x in lines))
    out = titan(cl, "runs", "verify", "--export", str(jsonl))
    assert out.returncode in (1, 3) and "Traceback" not in out.stderr, out.stderr


# Last: it adds runs, which the listings above count.
def test_a_json_column_that_no_longer_parses_is_an_edit_not_a_500(cl: Cluster) -> None:
    """Tags or PII counts edited into text that is not JSON: verify named nothing (a 500),
    the run's actions and every export holding it failed too, and the failed export left
    its pooled reader on an old snapshot (later reads missed new runs)."""
    cl.api("POST", "/runs", {"id": "lg-garbled", "agent_id": "garbled-agent"})
    cl.api("POST", "/runs/lg-garbled/actions", {"actions": [action(i) for i in range(4)]})
    db(cl, "UPDATE actions SET tags = 'not json' WHERE run_id = 'lg-garbled' AND seq = 2")
    db(cl, "UPDATE actions SET pii = '{oops' WHERE run_id = 'lg-garbled' AND seq = 4")
    v = cl.api("GET", "/runs/lg-garbled/verify")
    assert v["status"] == "broken" and (v["break"]["kind"], v["break"]["seq"]) == ("edited", 2)
    actions = cl.api("GET", "/runs/lg-garbled/actions")["actions"]
    assert [a["seq"] for a in actions] == [1, 2, 3, 4]
    with httpx.Client(base_url=cl.url, timeout=30,
                      headers={"Authorization": f"Bearer {cl.admin_token}"}) as http:
        for fmt in ("jsonl", "json", "csv"):
            r = http.get("/api/v1/runs/export", params={"format": fmt, "actions": "true",
                                                        "agent": "garbled-agent"})
            assert r.status_code == 200 and "lg-garbled" in r.text, (fmt, r.text[-500:])
    # A run's own JSON columns edited by hand read as nothing: its page, the registry and
    # the dashboard's Runs page answered 500 (every run of it).
    db(cl, "UPDATE agent_runs SET started_by = 'oops', code = '[1]', pii = '{' "
           "WHERE id = 'lg-garbled'")
    db(cl, "UPDATE actions SET pii = '{\"inputs\": 5}' WHERE run_id = 'lg-garbled' AND seq = 1")
    assert cl.api("GET", "/runs/lg-garbled")["id"] == "lg-garbled"
    assert len(cl.api("GET", "/runs/lg-garbled/actions")["actions"]) == 4
    assert [r["id"] for r in cl.api("GET", "/runs?agent=garbled-agent")["runs"]] == ["lg-garbled"]
    assert page(cl, "/runs", agent="garbled-agent").count('data-run-id="lg-garbled"') >= 1
    cl.api("POST", "/runs", {"id": "lg-after-garbled", "agent_id": "garbled-agent"})
    for _ in range(8):  # every pooled reader sees it
        found = cl.api("GET", "/runs?agent=garbled-agent")["runs"]
        assert {r["id"] for r in found} == {"lg-garbled", "lg-after-garbled"}
