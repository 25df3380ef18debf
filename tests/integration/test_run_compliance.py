"""Seed 004's compliance metadata and PII redaction against a real `titan up`: values that
match a pattern are replaced before anything is stored (the database file never holds them),
counted on the action and the run, and the stored hash is the stored text's; who started a
run, its retention class and its PII flags are in the run's JSON, its actions' and the
exports; a replay never serves a redacted output and compares redacted inputs honestly."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration import test_runs_api as runs_api
from tests.integration.harness import Cluster, isolated_cluster
from tests.integration.test_cli import on_terminal
from tests.integration.test_replay_sdk import replay, run_script, write
from tests.integration.test_runs_api import call, error, ok
from titan.trace.canonical import digest, dumps

EMAIL, CARD, SSN = "jane.doe@example.com", "4111 1111 1111 1111", "123-45-6789"
KEY = "sk-proj-" + "Q7x" * 10
PATTERNS = "# custom patterns for this test\nemployee_id = EMP-\\d{6}\n"


@pytest.fixture(scope="module")
def cl(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    root = tmp_path_factory.mktemp("compliance")
    (root / "pii.txt").write_text(PATTERNS)
    c = isolated_cluster(root, env={"TITAN_PII_PATTERNS": "default,ipv4",
                                    "TITAN_PII_PATTERNS_FILE": str(root / "pii.txt")}, slots=2)
    try:
        yield c
    finally:
        c.stop()


tokens = runs_api.tokens  # a viewer's, an operator's and a worker's token, on this cluster


def action(i: int, **fields: Any) -> dict[str, Any]:
    return {"id": f"a{i}", "name": "lookup", "channel": "tool", "started_at": time.time(),
            **fields}


def test_matches_are_redacted_before_storage_and_counted(cl: Cluster) -> None:
    ok(cl, "POST", "/runs", {"id": "pii-1", "agent_id": "support"}, status=201)
    reply = ok(cl, "POST", "/runs/pii-1/actions", {"actions": [
        action(0, inputs={"to": EMAIL, "card": CARD, "not_a_card": "4111 1111 1111 1112",
                          "staff": "EMP-004217", "host": "10.1.2.3", "n": 4111111111111111},
               outputs={"ssn": SSN, "key": KEY}),
        action(1, inputs={"q": "nothing to see"}, outputs=["fine"],
               error={"type": "ValueError", "message": f"no account for {EMAIL}"}),
        # Clock readings and random draws are Titan's own values: never scanned.
        {"id": "a2", "name": "now", "channel": "clock", "started_at": time.time(),
         "inputs": {}, "outputs": "call 415-555-0100"},
    ]})
    assert reply["accepted"] == 3
    first = ok(cl, "GET", "/runs/pii-1/actions/1")
    assert first["inputs"] == {
        "to": "[REDACTED:email]", "card": "[REDACTED:credit_card]",
        "not_a_card": "4111 1111 1111 1112",  # fails the Luhn check: not a card
        "staff": "[REDACTED:employee_id]", "host": "[REDACTED:ipv4]",
        "n": 4111111111111111}  # numbers are never scanned
    assert first["outputs"] == {"ssn": "[REDACTED:us_ssn]", "key": "[REDACTED:api_key]"}
    assert first["pii"] == {"email": 1, "credit_card": 1, "employee_id": 1, "ipv4": 1,
                            "us_ssn": 1, "api_key": 1}
    assert first["pii_fields"] == {
        "inputs": {"email": 1, "credit_card": 1, "employee_id": 1, "ipv4": 1},
        "outputs": {"us_ssn": 1, "api_key": 1}}
    # The stored hash is the hash of the stored (redacted) canonical text.
    assert first["inputs_hash"] == digest(dumps(first["inputs"]))
    assert first["outputs_hash"] == digest(dumps(first["outputs"]))
    second = ok(cl, "GET", "/runs/pii-1/actions/2")
    assert second["error"] == {"type": "ValueError", "message": "no account for [REDACTED:email]"}
    assert second["pii_fields"] == {"error": {"email": 1}}
    clock = ok(cl, "GET", "/runs/pii-1/actions/3")
    assert clock["outputs"] == "call 415-555-0100" and clock["pii"] == {}
    run = ok(cl, "GET", "/runs/pii-1")
    assert run["pii"] == {"email": 2, "credit_card": 1, "employee_id": 1, "ipv4": 1,
                          "us_ssn": 1, "api_key": 1}
    listed = ok(cl, "GET", "/runs/pii-1/actions")["actions"]
    assert [a["pii"] for a in listed][1:] == [{"email": 1}, {}]
    # Nothing of the originals reached the database: not its file, not its search.
    assert ok(cl, "GET", "/runs/pii-1/actions", params={"q": "jane.doe"})["matched"] == 0
    db = cl.data / "titan.db"
    stored = b"".join(p.read_bytes() for p in (db, db.with_name("titan.db-wal")) if p.exists())
    for value in (EMAIL, SSN, KEY, "EMP-004217", "10.1.2.3"):
        assert value.encode() not in stored, value


def test_a_dashboard_session_cookie_is_redacted_as_titan_tokens_are(cl: Cluster) -> None:
    # An action whose inputs held a session cookie (a tool that was handed the browser's
    # headers) stored it as is, for every viewer to read: it reads what its token reads.
    import httpx

    from tests.integration.harness import sign_in

    with httpx.Client(base_url=cl.url, timeout=30) as s:
        sign_in(s, cl.admin_token)
        cookie = s.cookies["titan_session"]
    ok(cl, "POST", "/runs", {"id": "pii-cookie", "agent_id": "support"}, status=201)
    ok(cl, "POST", "/runs/pii-cookie/actions", {"actions": [action(0, inputs={
        "headers": f"Cookie: titan_session={cookie}; theme=dark", "raw": cookie})]})
    stored = ok(cl, "GET", "/runs/pii-cookie/actions/1")
    assert stored["inputs"] == {"headers": "Cookie: titan_session=[REDACTED:api_key]; theme=dark",
                                "raw": "[REDACTED:api_key]"}
    assert stored["pii"] == {"api_key": 2}
    db = cl.data / "titan.db"
    kept = b"".join(p.read_bytes() for p in (db, db.with_name("titan.db-wal")) if p.exists())
    assert cookie.encode() not in kept


def test_a_resent_batch_counts_its_pii_once_and_a_run_error_is_redacted(cl: Cluster) -> None:
    ok(cl, "POST", "/runs", {"id": "pii-2", "agent_id": "support"}, status=201)
    body = {"actions": [action(0, inputs={"to": EMAIL})]}
    ok(cl, "POST", "/runs/pii-2/actions", body)
    assert ok(cl, "POST", "/runs/pii-2/actions", body)["duplicates"] == 1
    ended = ok(cl, "PATCH", "/runs/pii-2", {"status": "failed",
                                            "error": f"KeyError: {EMAIL} unknown"})
    assert ended["error"] == "KeyError: [REDACTED:email] unknown"
    assert ok(cl, "GET", "/runs/pii-2")["pii"] == {"email": 2}


def test_tags_and_the_otlp_attributes_copied_into_them_are_redacted(cl: Cluster) -> None:
    # An OpenLLMetry span's unread attributes went into tags.otel.attributes as sent: whole
    # prompts, the user's email, the provider key of an instrumented HTTP client's header.
    def kv(key: str, value: str) -> dict[str, Any]:
        return {"key": key, "value": {"stringValue": value}}

    trace, now = "6a0c8a7e1d3b4c5a6e7f8091a2b3c4d7", time.time_ns()
    attrs = {"traceloop.span.kind": "workflow",
             "traceloop.entity.input": json.dumps({"question": f"I am {EMAIL}, card {CARD}"}),
             "user.email": EMAIL, "http.request.header.authorization": f"Bearer {KEY}",
             "http.request.header.x-api-key": "a-key-no-pattern-knows", "session.id": "s-9"}
    ok(cl, "POST", "/otlp/v1/traces", {"resourceSpans": [{
        "resource": {"attributes": [kv("service.name", "pii-bot")]},
        "scopeSpans": [{"scope": {"name": "qa"}, "spans": [{
            "traceId": trace, "spanId": "7000000000000001", "name": "workflow", "kind": 1,
            "startTimeUnixNano": str(now - 10**9), "endTimeUnixNano": str(now),
            "attributes": [kv(k, v) for k, v in attrs.items()]}]}]}]})
    [span] = ok(cl, "GET", f"/runs/otel-{trace}/actions")["actions"]
    otel = span["tags"]["otel"]
    # OpenLLMetry's entity input is the span's inputs (read as JSON), redacted there; the
    # attributes left over go into tags, redacted alike.
    assert span["inputs"] == {"question": "I am [REDACTED:email], card [REDACTED:credit_card]"}
    assert otel["attributes"] == {"traceloop.span.kind": "workflow",
                                  "user.email": "[REDACTED:email]", "session.id": "s-9"}
    # Credentials by name never go in, whatever their format; that they came is said.
    assert otel["attributes_dropped"] == ["http.request.header.authorization",
                                          "http.request.header.x-api-key"]
    assert span["pii_fields"] == {"inputs": {"email": 1, "credit_card": 1}, "tags": {"email": 1}}
    # An SDK's tags are recorded content alike.
    ok(cl, "POST", "/runs", {"id": "pii-tags", "agent_id": "support"}, status=201)
    ok(cl, "POST", "/runs/pii-tags/actions", {"actions": [
        action(0, inputs={}, tags={"customer": EMAIL, "plan": "pro"})]})
    tagged = ok(cl, "GET", "/runs/pii-tags/actions/1")
    assert tagged["tags"] == {"customer": "[REDACTED:email]", "plan": "pro"}
    assert ok(cl, "GET", "/runs/pii-tags")["pii"] == {"email": 1}
    db = cl.data / "titan.db"
    stored = b"".join(p.read_bytes() for p in (db, db.with_name("titan.db-wal")) if p.exists())
    for value in (EMAIL, KEY, CARD, "a-key-no-pattern-knows"):
        assert value.encode() not in stored, value


def test_who_started_a_run_and_its_retention_class(cl: Cluster, tokens: dict[str, str],
                                                   tmp_path: Path) -> None:
    admin = ok(cl, "POST", "/runs", {"id": "who-admin"}, status=201)
    assert admin["started_by"]["role"] == "admin" and admin["retention_class"] == "standard"
    assert admin["started_by_label"] == "admin token 'admin (titan up)'"
    op = ok(cl, "POST", "/runs", {"id": "who-op", "retention_class": "legal_hold"},
            status=201, token=tokens["operator"])
    assert op["started_by"]["name"] == "runs-operator" and op["retention_class"] == "legal_hold"
    # A run a job opens names the job, its DAG and the worker that ran it.
    script = cl.script("opener.py", """
        from titan import TitanClient
        TitanClient().api("POST", "/runs", json={"id": "who-job", "agent_id": "from-a-job"})
    """)
    client = cl.client()
    from titan import TitanJob

    dag = client.submit_dag("OPENER", [TitanJob(job_id="opener", filename=script)])
    assert client.wait_dag(dag["ref"], timeout=60)["status"] == "COMPLETED"
    by = ok(cl, "GET", "/runs/who-job")["started_by"]
    assert by["role"] == "job" and by["job_id"] == "opener" and by["dag"] == "OPENER"
    assert by["worker"] and by["attempt"] == 1
    # A DAG that names a new run starts it: the submitter is who started it.
    client.submit_dag("STAGED", [TitanJob(job_id="noop", filename=script)],
                      agent_run_id="who-stage")
    assert ok(cl, "GET", "/runs/who-stage")["started_by"]["name"] == "admin (titan up)"


def test_retention_class_rules(cl: Cluster, tokens: dict[str, str]) -> None:
    err = error(cl, "POST", "/runs", {"id": "bad-class", "retention_class": "forever"},
                status=400)
    assert "retention_class: must be one of standard, extended, legal_hold, got 'forever'" \
        in err["message"]
    assert err["details"]["errors"][0]["field"] == "retention_class"
    ok(cl, "POST", "/runs", {"id": "cls", "retention_class": "legal_hold"}, status=201)
    # An operator may not lift a legal hold; an admin may; a viewer changes nothing.
    error(cl, "PATCH", "/runs/cls", {"retention_class": "standard"}, status=403,
          token=tokens["operator"])
    error(cl, "PATCH", "/runs/cls", {"retention_class": "extended"}, status=403,
          token=tokens["viewer"])
    assert ok(cl, "PATCH", "/runs/cls", {"retention_class": "extended"})[
        "retention_class"] == "extended"
    assert ok(cl, "PATCH", "/runs/cls", {"retention_class": "standard"},
              token=tokens["operator"])["retention_class"] == "standard"
    # Retention spares the classes that must outlive it.
    for run_id, klass in (("old-std", "standard"), ("old-ext", "extended")):
        ok(cl, "POST", "/runs", {"id": run_id, "retention_class": klass,
                                 "started_at": time.time() - 200 * 86400}, status=201)
        ok(cl, "PATCH", f"/runs/{run_id}", {"status": "completed"})
    pruned = ok(cl, "POST", "/runs/prune", {"older_than": "100d", "dry_run": True})
    assert "old-std" in pruned["run_ids"] and "old-ext" not in pruned["run_ids"]
    # `titan runs prune` on a terminal says how many would go and asks; "no" keeps them.
    asked = on_terminal(cl, "runs", "prune", "--older-than", "100d", answer=b"no\n")
    assert asked.returncode == 1 and "nothing deleted" in asked.stderr, asked
    assert f"delete {pruned['pruned']} finished run(s) started more than 100d ago, with " \
        "their actions? [y/N]" in asked.stderr, asked.stderr
    assert ok(cl, "GET", "/runs/old-std")["id"] == "old-std"


def test_exports_carry_compliance_metadata(cl: Cluster) -> None:
    status, text = call(cl, "GET", "/runs/export",
                        params={"format": "jsonl", "actions": "true", "q": "pii-1"})
    assert status == 200
    lines = [json.loads(line) for line in text.splitlines() if line] if isinstance(
        text, str) else []
    run = next(x for x in lines if x["type"] == "run")
    assert run["started_by"]["role"] == "admin" and run["retention_class"] == "standard"
    assert run["pii"]["email"] == 2 and run["archived_at"] is None
    first = next(x for x in lines if x["type"] == "action" and x["seq"] == 1)
    assert first["pii"]["email"] == 1 and EMAIL not in text
    status, text = call(cl, "GET", "/runs/export", params={"format": "csv", "q": "pii-1",
                                                           "actions": "false"})
    (row,) = list(csv.DictReader(io.StringIO(text)))
    assert row["retention_class"] == "standard" and json.loads(row["pii"])["us_ssn"] == 1
    assert json.loads(row["started_by"])["role"] == "admin"
    # With its actions (the default), each action's row carries the run's metadata too.
    status, text = call(cl, "GET", "/runs/export", params={"format": "csv", "q": "pii-1"})
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) > 1 and all(r["run_retention_class"] == "standard" for r in rows)
    assert all(json.loads(r["run_pii"])["us_ssn"] == 1 for r in rows)
    assert json.loads(rows[0]["pii"])["email"] == 1 and EMAIL not in text


LOOKUP = """
import titan

@titan.tool
def lookup(user: str) -> dict:
    return {"email": "jane.doe@example.com", "plan": "pro"}

@titan.tool
def greet(email: str) -> str:
    return "hello"

with titan.trace.run("pii-agent") as run:
    print(run.id, flush=True)
    found = lookup("jane")
    greet(found["email"])
"""


def test_a_replay_never_serves_a_redacted_output(cl: Cluster, tmp_path: Path) -> None:
    run_id = run_script(cl, write(tmp_path, "agent.py", LOOKUP))
    recorded = ok(cl, "GET", f"/runs/{run_id}/actions")["actions"]
    assert [(a["name"], a["pii_fields"]) for a in recorded] == [
        ("lookup", {"outputs": {"email": 1}}), ("greet", {"inputs": {"email": 1}})]
    # Strict: the redacted output stops the replay there, said as such.
    report = replay(cl, run_id)
    kinds = [d["kind"] for d in report["divergences"]]
    assert kinds == ["redacted"] and report["stopped"], report
    assert "redacted" in report["divergences"][0]["message"].lower()
    # Lenient with live calls: lookup runs live, and greet's live inputs, redacted the way
    # the master redacted the recorded ones, match them: served, no divergence.
    report = replay(cl, run_id, mode="lenient", allow_live=True)
    assert report["divergence_count"] == 0 and report["match_rate"] == 1.0, report
    actions = ok(cl, "GET", f"/runs/{report['run_id']}/actions")["actions"]
    assert [(a["name"], a["replay_status"]) for a in actions] == [
        ("lookup", "live"), ("greet", "served")]


def test_a_bad_custom_pattern_stops_the_master_with_its_name(tmp_path: Path) -> None:
    (tmp_path / "bad.txt").write_text("ok_one = A\\d+\nslow = (a+)+b\n")
    env = {k: v for k, v in Cluster(tmp_path).env.items() if not k.startswith("TITAN_PII")}
    done = subprocess.run(
        [sys.executable, "-m", "titan", "master", "--port", "0", "--data-dir",
         str(tmp_path / "data")], env=dict(env, TITAN_PII_PATTERNS_FILE=str(tmp_path / "bad.txt")),
        capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "PII pattern 'slow' nests unbounded repeats" in done.stderr + done.stdout


def test_runs_past_the_archive_age_are_archived_not_deleted(make_cluster: Any) -> None:
    """The master archives at start and hourly; runs recorded as started 100 days ago are
    past TITAN_RUN_ARCHIVE_DAYS (90) the moment a master starts, so a restart is the sweep."""
    c: Cluster = make_cluster().start_master()
    old = time.time() - 100 * 86400
    for run_id, started, end in (("aged", old, True), ("aged-running", old, False),
                                 ("recent", time.time() - 3600, True)):
        ok(c, "POST", "/runs", {"id": run_id, "agent_id": "arch", "started_at": started},
           status=201)
        ok(c, "POST", f"/runs/{run_id}/actions", {"actions": [
            action(0, started_at=started + 1, inputs={"i": run_id})]})
        if end:
            ok(c, "PATCH", f"/runs/{run_id}", {"status": "completed"})
    assert {r["id"] for r in ok(c, "GET", "/runs")["runs"]} == {"aged", "aged-running",
                                                                "recent"}
    c.kill_master()
    c.start_master()
    listed = ok(c, "GET", "/runs")
    assert {r["id"] for r in listed["runs"]} == {"aged-running", "recent"}  # running: kept
    assert [r["id"] for r in ok(c, "GET", "/runs", params={"archived": "true"})["runs"]] == [
        "aged"]
    assert len(ok(c, "GET", "/runs", params={"archived": "all"})["runs"]) == 3
    error(c, "GET", "/runs", params={"archived": "maybe"}, status=400)
    # Still openable by id, with its actions, and marked.
    run = ok(c, "GET", "/runs/aged")
    assert run["archived"] and run["archived_at"] > old and run["action_count"] == 1
    assert ok(c, "GET", "/runs/aged/actions/1")["inputs"] == {"i": "aged"}
    # Exported when asked for (not by default), with its actions.
    _, text = call(c, "GET", "/runs/export", params={"format": "jsonl", "actions": "true"})
    assert '"id":"aged"' not in text
    _, text = call(c, "GET", "/runs/export", params={"format": "jsonl", "actions": "true",
                                                     "archived": "all"})
    lines = [json.loads(line) for line in text.splitlines()]
    aged = next(x for x in lines if x["type"] == "run" and x["id"] == "aged")
    assert aged["archived_at"] == run["archived_at"]
    assert any(x["type"] == "action" and x["run_id"] == "aged" for x in lines)


def test_archiving_by_hand_api_and_cli(make_cluster: Any) -> None:
    c: Cluster = make_cluster().start_master()
    viewer = ok(c, "POST", "/tokens", {"role": "viewer", "name": "v"}, status=201)["token"]
    for run_id in ("keep-1", "keep-2"):
        ok(c, "POST", "/runs", {"id": run_id}, status=201)
    # Running: hidden, it would drop out of the registry and the intercepts while it runs.
    error(c, "POST", "/runs/keep-1/archive", status=409)
    for run_id in ("keep-1", "keep-2"):
        ok(c, "PATCH", f"/runs/{run_id}", {"status": "completed"})
    error(c, "POST", "/runs/keep-1/archive", status=403, token=viewer)
    error(c, "POST", "/runs/ghost/archive", status=404)
    assert ok(c, "POST", "/runs/keep-1/archive")["archived"] is True
    assert ok(c, "POST", "/runs/keep-1/archive")["archived"] is True  # idempotent
    assert [r["id"] for r in ok(c, "GET", "/runs")["runs"]] == ["keep-2"]
    assert ok(c, "POST", "/runs/keep-1/unarchive")["archived"] is False
    env = dict(c.env, TITAN_URL=c.url, TITAN_TOKEN=c.admin_token)

    def titan(*args: str) -> str:
        done = subprocess.run([sys.executable, "-m", "titan", *args], env=env,
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    assert titan("runs", "archive", "keep-1", "keep-2") == (
        "run keep-1: archived\nrun keep-2: archived\n")
    assert "keep-" not in titan("runs", "list")
    listed = titan("runs", "list", "--archived", "true")
    assert "keep-1" in listed and "(archived)" in listed
    exported = titan("runs", "export", "--archived", "all", "--format", "jsonl")
    assert {line["id"] for line in map(json.loads, exported.splitlines())
            if line["type"] == "run"} == {"keep-1", "keep-2"}
    assert "retention" in titan("runs", "retention", "keep-1", "extended")
    shown = titan("runs", "show", "keep-1")
    assert "extended" in shown and "admin token" in shown
    # Said as what was done, as archive says it ("not archived" read as a refusal).
    assert titan("runs", "unarchive", "keep-2") == "run keep-2: unarchived\n"
    assert "keep-2" in titan("runs", "list")
    # --json where scripts read the answer.
    assert [r["archived"] for r in json.loads(titan("runs", "archive", "keep-2", "--json"))] \
        == [True]
    assert json.loads(titan("runs", "retention", "keep-2", "standard", "--json"))[
        "retention_class"] == "standard"
    dry = json.loads(titan("runs", "prune", "--older-than", "1h", "--dry-run", "--json"))
    assert dry["dry_run"] is True and dry["pruned"] == 0
    # A prune's export never replaces an earlier one: it is the only copy of what it deleted.
    earlier = Path(c.root) / "earlier.jsonl"
    earlier.write_text("{}\n")
    refused = subprocess.run([sys.executable, "-m", "titan", "runs", "prune", "--older-than",
                              "1h", "--export-to", str(earlier)], env=env,
                             capture_output=True, text=True, timeout=60)
    assert refused.returncode != 0 and "exists: name a new file" in refused.stderr
    assert earlier.read_text() == "{}\n"
