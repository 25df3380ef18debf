"""Bad input gets a 4xx naming the field, never a 5xx (issue 15, items 6 and 11): ids and
offsets past 64 bits, file names a header cannot carry, lone surrogates, JSON nested too deep,
non-finite numbers, and job fields the API does not know. Each case against a real `titan up`."""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, unquote

import pytest

from tests.integration.harness import Cluster, isolated_cluster

BIG = 2**63  # one past the largest id the database can hold
NOW = time.time()


@pytest.fixture(scope="module")
def cl(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = isolated_cluster(tmp_path_factory.mktemp("bad-input"), slots=1)
    try:
        yield c
    finally:
        c.stop()


def send(c: Cluster, method: str, path: str, body: bytes | None = None,
         content_type: str = "application/json") -> tuple[int, dict[str, str], bytes]:
    """One request with exactly these bytes; (status, headers, raw reply)."""
    conn = http.client.HTTPConnection("127.0.0.1", c.port, timeout=30)
    try:
        conn.request(method, f"/api/v1{path}", body=body,
                     headers={"Authorization": f"Bearer {c.admin_token}",
                              "Content-Type": content_type})
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read()
    finally:
        conn.close()


def refused(c: Cluster, method: str, path: str, body: bytes | None = None, *,
            status: int = 400, mentions: str = "") -> dict[str, Any]:
    got, _, raw = send(c, method, path, body)
    reply = json.loads(raw)
    assert got == status, (method, path, got, reply)
    assert set(reply) == {"error"} and set(reply["error"]) == {"code", "message", "details"}
    assert mentions in reply["error"]["message"], reply
    return dict(reply["error"])


def ok(c: Cluster, method: str, path: str, body: Any = None, status: int = 200) -> Any:
    got, _, raw = send(c, method, path, None if body is None else json.dumps(body).encode())
    assert got == status, (method, path, got, raw[:500])
    return json.loads(raw)


def submit_one(c: Cluster, name: str, **job: Any) -> tuple[int, Any]:
    sha = _upload_script(c)
    body = {"name": name, "jobs": [{"job_id": "a", "filename": "a.py", "script_sha256": sha,
                                     **job}]}
    got, _, raw = send(c, "POST", "/dags", json.dumps(body).encode())
    return got, json.loads(raw)


def _sha(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def _upload_script(c: Cluster) -> str:
    data = b"print('hi')\n"
    got, _, raw = send(c, "PUT", "/blobs/" + _sha(data), data, "application/octet-stream")
    assert got == 201, raw
    return _sha(data)


# ------------------------------------------------------------------ integers past 64 bits

@pytest.mark.parametrize("path, field", [
    (f"/dags?offset={BIG}", "offset"),
    (f"/runs?offset={BIG}", "offset"),
    (f"/files?dag_id={BIG}", "dag_id"),
    (f"/files?dag_id=-{BIG + 1}", "dag_id"),
])
def test_query_integers_past_64_bits_are_a_400_naming_the_parameter(cl: Cluster, path: str,
                                                                    field: str) -> None:
    err = refused(cl, "GET", path, mentions=field)
    assert err["code"] == "invalid_request"


def test_log_after_and_action_seq_past_64_bits_are_a_400(cl: Cluster) -> None:
    got, reply = submit_one(cl, "logs-big")
    assert got == 201, reply
    ref = "logs-big/a"
    refused(cl, "GET", f"/jobs/{ref}/logs?after={BIG}", mentions="after")
    refused(cl, "GET", f"/jobs/{ref}/logs?attempt={BIG}", mentions="attempt")
    ok(cl, "POST", "/runs", {"id": "seq-big"}, 201)
    refused(cl, "GET", f"/runs/seq-big/actions?after={BIG}", mentions="after")
    refused(cl, "GET", f"/runs/seq-big/actions/{BIG}", mentions="seq")


@pytest.mark.parametrize("what", ["jobs", "dags"])
def test_job_and_dag_ids_past_64_bits_are_not_found(cl: Cluster, what: str) -> None:
    for number in (BIG, 10**40):
        for path in (f"/{what}/{number}", f"/{what}/{number}/wait?timeout=0"):
            err = refused(cl, "GET", path, status=404, mentions=str(number))
            assert err["code"] == "not_found"
    refused(cl, "POST", f"/{what}/{BIG}/cancel", status=404)
    refused(cl, "GET", f"/dags/x%23{BIG}", status=404)


INT4 = 3_000_000_000  # within 64 bits, past PostgreSQL's INTEGER ids and sequence numbers


@pytest.fixture(params=["sqlite", "postgres"])
def either(request: pytest.FixtureRequest, cl: Cluster) -> Cluster:
    if request.param == "sqlite":
        return cl
    url = request.getfixturevalue("postgres_url")
    return request.getfixturevalue("make_cluster")(database_url=url).up(slots=1)


def test_ids_and_seqs_past_32_bits_name_nothing_on_either_database(either: Cluster) -> None:
    # PostgreSQL's INTEGER columns refused 3e9 in the query: a 400 unstorable_value where
    # SQLite answered 404 or an empty page.
    c = either
    got, reply = submit_one(c, "refs-32")
    assert got == 201, reply
    ok(c, "POST", "/runs", {"id": "refs-32"}, 201)
    for path in (f"/jobs/{INT4}", f"/jobs/%23{INT4}", f"/dags/{INT4}", f"/dags/%23{INT4}",
                 f"/dags/refs-32%23{INT4}", f"/dags/{INT4}/wait?timeout=0",
                 f"/jobs/refs-32%2Fa/logs?attempt={INT4}", f"/runs/refs-32/actions/{INT4}"):
        assert refused(c, "GET", path, status=404)["code"] == "not_found", path
    refused(c, "POST", f"/jobs/{INT4}/cancel", status=404)
    assert ok(c, "GET", f"/files?dag_id={INT4}") == {"files": [], "next": None}
    # before every file: all of them
    assert ok(c, "GET", f"/files?before={INT4}") == ok(c, "GET", "/files")
    # up to 2^63-1, as every integer parameter (it was a 400 past 2^62)
    assert ok(c, "GET", f"/files?before={BIG - 1}") == ok(c, "GET", "/files")
    assert ok(c, "GET", f"/jobs/refs-32%2Fa/logs?after={INT4}")["lines"] == []
    assert ok(c, "GET", f"/runs/refs-32/actions?after={INT4}")["actions"] == []
    assert ok(c, "GET", f"/runs/refs-32/recording?actor=main&after={INT4}")["actions"] == []


# ------------------------------------------------------------------ file names in headers

@pytest.mark.parametrize("name", ["résumé-日本語.txt", "emoji-\U0001f680.bin", "tab\tname"])
def test_a_file_named_outside_latin1_downloads_with_an_rfc5987_filename(cl: Cluster,
                                                                       name: str) -> None:
    data = ("content of " + name).encode()
    got, _, raw = send(cl, "PUT", "/files/" + quote(name, safe=""), data,
                       "application/octet-stream")
    if "\t" in name:  # a control character: refused at upload, so never stored
        assert got == 400 and "name" in json.loads(raw)["error"]["message"], raw
        return
    assert got == 201, raw
    got, headers, body = send(cl, "GET", "/files/" + quote(name, safe=""))
    assert got == 200 and body == data
    assert headers["content-disposition"] == f"attachment; filename*=utf-8''{quote(name)}"
    assert unquote(headers["x-titan-filename"]) == name
    # The same through an artifact, and the SDK saves it under its own name.
    key = "artifact-" + _sha(name.encode())[:8]
    got, _, raw = send(cl, "POST", f"/artifacts?key={key}&name={quote(name, safe='')}", data,
                       "application/octet-stream")
    assert got == 201, raw
    got, headers, body = send(cl, "GET", f"/artifacts?key={key}")
    assert got == 200 and body == data and unquote(headers["x-titan-filename"]) == name


@pytest.mark.parametrize("name", ["a\rb.txt", "a\nX-Evil: 1", "bell\x07", "del\x7f"])
def test_control_characters_in_file_and_artifact_names_are_refused_at_upload(
        cl: Cluster, name: str) -> None:
    encoded = quote(name, safe="")
    # A newline too: it matched no route (a bare 404) before the route took any text.
    refused(cl, "PUT", f"/files/{encoded}", b"x", mentions="name")
    refused(cl, "POST", f"/artifacts?key=ctl&name={encoded}", b"x", mentions="name")
    files = ok(cl, "GET", "/files?limit=10000")["files"]
    assert all(f["name"] != name for f in files)


@pytest.mark.parametrize("char", ["\u202e", "\u202a", "\u2066", "\u2069", "\u200e", "\u200f"])
def test_text_direction_controls_in_file_and_artifact_names_are_refused_at_upload(
        cl: Cluster, char: str) -> None:
    # "\u202eexe.txt" shows as "txt.exe" (a hostile QA pass): which character, and where.
    encoded = quote(f"report{char}exe.txt", safe="")
    for method, path in (("PUT", f"/files/{encoded}"),
                         ("POST", f"/artifacts?key=bidi&name={encoded}")):
        error = refused(cl, method, path, b"x", mentions=f"U+{ord(char):04X} at position 6")
        assert error["details"]["field"] == "name" and "direction" in error["message"]
    # Right-to-left text itself is a name like any other.
    got, _, raw = send(cl, "PUT", "/files/" + quote("שלום.txt", safe=""), b"x")
    assert got == 201, raw


@pytest.mark.parametrize("char", ["\u200b", "\ufeff", "\u2028", "\u2029", "\u00ad",
                                  "\u2060"])
def test_invisible_characters_in_file_and_artifact_names_are_refused_at_upload(
        cl: Cluster, char: str) -> None:
    # 'a\u200bb.txt' and 'ab.txt' read alike, yet were stored as two files (a QA pass).
    encoded = quote(f"ab{char}c.txt", safe="")
    for method, path in (("PUT", f"/files/{encoded}"),
                         ("POST", f"/artifacts?key=hidden&name={encoded}")):
        error = refused(cl, method, path, b"x", mentions=f"U+{ord(char):04X}")
        assert "at position 2, which shows as nothing" in error["message"]
        assert error["details"]["field"] == "name"
    # The joiners spell words (Persian, emoji sequences): a name like any other.
    for name in ("\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645.txt",
                 "family-\U0001f468\u200d\U0001f469.png"):
        got, _, raw = send(cl, "PUT", "/files/" + quote(name, safe=""), b"x")
        assert got == 201 and json.loads(raw)["name"] == name, raw


def test_a_file_name_written_decomposed_is_one_file_with_its_composed_form(
        cl: Cluster) -> None:
    # macOS hands out 'cafe\u0301.txt'; 'caf\u00e9.txt' reads the same: one file, stored
    # composed (NFC), found by either form. They were two files.
    composed, decomposed = "caf\u00e9-nfc.txt", "cafe\u0301-nfc.txt"
    got, _, raw = send(cl, "PUT", "/files/" + quote(decomposed, safe=""), b"first")
    assert got == 201 and json.loads(raw)["name"] == composed, raw
    got, _, raw = send(cl, "POST", f"/artifacts?key=nfc&name={quote(composed, safe='')}",
                       b"second")
    assert got == 201 and json.loads(raw)["name"] == composed, raw
    for name in (composed, decomposed):
        got, headers, body = send(cl, "GET", "/files/" + quote(name, safe=""))
        assert got == 200 and body == b"second"
        assert unquote(headers["x-titan-filename"]) == composed
    assert ok(cl, "GET", "/store/values/nfc")["value"] == composed
    names = [f["name"] for f in ok(cl, "GET", "/files?limit=10000")["files"]]
    assert names.count(composed) == 2 and decomposed not in names
    # Deleting by either form deletes every version.
    deleted = ok(cl, "DELETE", "/files/" + quote(decomposed, safe="") + "?keep_latest=true")
    assert deleted["deleted"] == 1 and deleted["kept"] == 1


# ------------------------------------------------------------------ lone surrogates

LONE = b'"lone \\ud800 surrogate"'


@pytest.mark.parametrize("method, path, body, field", [
    ("PUT", "/store/values/k1", b'{"value": ' + LONE + b"}", "value"),
    ("POST", "/store/sets/s1", b'{"member": ' + LONE + b"}", "member"),
    ("POST", "/dags", b'{"name": ' + LONE + b', "jobs": []}', "name"),
    ("POST", "/runs/sur-run/actions",
     b'{"actions": [{"name": "x", "started_at": 1, "inputs": {"q": ' + LONE + b"}}]}",
     "actions[0].inputs.q"),
    ("PUT", "/store/values/k2", b'{"value": "x", ' + LONE + b": 1}", "body"),
    ("PUT", "/store/values/k3", b'{"value": "\\udc00\\ud800"}', "value"),
])
def test_a_lone_surrogate_is_a_400_naming_the_field(cl: Cluster, method: str, path: str,
                                                   body: bytes, field: str) -> None:
    send(cl, "POST", "/runs", json.dumps({"id": "sur-run"}).encode())
    err = refused(cl, method, path, body, mentions=field)
    assert "surrogate" in err["message"]


def test_a_surrogate_pair_is_one_character_and_fine(cl: Cluster) -> None:
    ok(cl, "PUT", "/store/values/pair", {"value": "rocket \U0001f680"})
    got, _, raw = send(cl, "PUT", "/store/values/pair2", b'{"value": "\\ud83d\\ude80"}')
    assert got == 200 and json.loads(raw)["value"] == "\U0001f680"


def test_raw_surrogate_bytes_are_not_utf8_and_refused(cl: Cluster) -> None:
    refused(cl, "PUT", "/store/values/raw", b'{"value": "\xed\xa0\x80"}', mentions="UTF-8")


# ------------------------------------------------------------------ nesting, numbers

def test_json_nested_3000_deep_in_an_action_batch_is_a_400(cl: Cluster) -> None:
    ok(cl, "POST", "/runs", {"id": "deep-run"}, 201)
    deep = b'{"actions": [{"name": "x", "inputs": ' + b"[" * 3000 + b"]" * 3000 + b"}]}"
    err = refused(cl, "POST", "/runs/deep-run/actions", deep, mentions="nested")
    assert err["details"]["max_depth"] >= 32
    # Just past the documented limit is refused the same way, and under it is accepted.
    limit = err["details"]["max_depth"]
    over = {"actions": [{"name": "x", "started_at": NOW, "inputs": _nest(limit)}]}
    refused(cl, "POST", "/runs/deep-run/actions", json.dumps(over).encode(), mentions="nested")
    under = {"actions": [{"name": "x", "started_at": NOW, "inputs": _nest(limit - 3)}]}
    assert ok(cl, "POST", "/runs/deep-run/actions", under)["accepted"] == 1
    refused(cl, "PUT", "/store/values/deep", b"[" * 3000 + b"]" * 3000, mentions="nested")


def test_a_big_dag_is_validated_as_a_small_one(cl: Cluster) -> None:
    """Past 2,000 jobs a DAG is validated on a thread (off the event loop): the same answers."""
    sha = _upload_script(cl)

    def jobs(n: int, cycle: bool) -> list[dict[str, Any]]:
        out = [{"job_id": f"j{i}", "filename": "a.py", "script_sha256": sha,
                "requirement": "BIG_NOWHERE", "parents": [f"j{i - 1}"] if i else []}
               for i in range(n)]
        if cycle:
            out[0]["parents"] = [f"j{n - 1}"]
        return out
    err = refused(cl, "POST", "/dags", json.dumps({"name": "big-cycle",
                                                   "jobs": jobs(2_500, True)}).encode(),
                  mentions="cycle in dependencies")
    assert err["code"] == "invalid_dag" and err["details"]["cycle_length"] == 2_500
    dag = ok(cl, "POST", "/dags", {"name": "big-fine", "jobs": jobs(2_500, False)}, 201)
    assert dag["job_count"] == 2_500
    ok(cl, "POST", f"/dags/{quote(dag['ref'], safe='')}/cancel")


def _nest(depth: int) -> Any:
    value: Any = "leaf"
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize("literal", [b"Infinity", b"-Infinity", b"NaN", b"1e999", b"-1e400"])
def test_a_non_finite_cost_is_refused_and_the_run_cost_stays_a_number(cl: Cluster,
                                                                      literal: bytes) -> None:
    run = "inf-" + _sha(literal)[:8]
    ok(cl, "POST", "/runs", {"id": run}, 201)
    ok(cl, "POST", f"/runs/{run}/actions",
       {"actions": [{"name": "x", "cost_usd": 0.25, "started_at": NOW}]})
    batch = b'{"actions": [{"name": "y", "started_at": 1, "cost_usd": ' + literal + b"}]}"
    refused(cl, "POST", f"/runs/{run}/actions", batch, mentions="actions[0].cost_usd")
    assert ok(cl, "GET", f"/runs/{run}")["cost_usd"] == pytest.approx(0.25)


def test_integers_past_64_bits_in_a_body_are_refused(cl: Cluster) -> None:
    refused(cl, "POST", "/store/incr/counter", json.dumps({"by": BIG}).encode(), mentions="by")
    refused(cl, "POST", "/store/incr/counter", json.dumps({"by": -BIG - 1}).encode(),
            mentions="by")
    assert ok(cl, "POST", "/store/incr/counter", {"by": BIG - 1})["value"] == BIG - 1
    # Past 64 unsigned bits too (a fast parser reads those as floats, silently).
    for huge in (10**30, -(10**30), 2**64):
        refused(cl, "POST", "/store/incr/counter", json.dumps({"by": huge}).encode(),
                mentions="by")
    # A float that large is a float, and is taken.
    ok(cl, "POST", "/runs", {"id": "big-float"}, 201)
    batch = {"actions": [{"name": "x", "started_at": NOW, "inputs": {"n": 1e30, "m": -2e19}}]}
    assert ok(cl, "POST", "/runs/big-float/actions", batch)["accepted"] == 1


def test_a_job_field_past_64_bits_names_the_job_and_its_pipeline_line(
        cl: Cluster, tmp_path: Any) -> None:
    """``timeout: 99999999999999999999`` was refused as "invalid JSON body: jobs[1].timeout:
    is an integer outside the signed 64-bit range": no job named, and a pipeline's error
    without the file:line every other refusal of a job of it has."""
    from titan.errors import PipelineError

    sha = _upload_script(cl)
    body = {"name": "huge-field", "jobs": [
        {"job_id": "first", "filename": "a.py", "script_sha256": sha},
        {"job_id": "second", "filename": "a.py", "script_sha256": sha, "timeout": 10**30}]}
    err = refused(cl, "POST", "/dags", json.dumps(body).encode(),
                  mentions="jobs[1].timeout (job 'second'): is an integer outside")
    assert err["details"] == {"field": "jobs[1].timeout", "job_id": "second"}, err
    (tmp_path / "a.py").write_text("print('a')\n")
    (tmp_path / "pipe.yaml").write_text(
        "name: huge-field\njobs:\n  - id: first\n    file: a.py\n  - id: second\n"
        "    file: a.py\n    delay: 99999999999999999999\n")
    with pytest.raises(PipelineError) as got:
        cl.client().submit_yaml(str(tmp_path / "pipe.yaml"))
    assert str(got.value).startswith(f"{tmp_path / 'pipe.yaml'}:7: invalid JSON body: "
                                     "jobs[1].delay (job 'second'): "), got.value
    assert ok(cl, "GET", "/dags?name=huge-field")["total"] == 0  # nothing stored


@pytest.mark.parametrize("method, path, body, field", [
    # Each parser kept the last: a proxy or a log reading the first saw a viewer's token.
    ("POST", "/tokens", b'{"role": "viewer", "name": "dup", "role": "admin"}', "role"),
    ("POST", "/store/incr/dup-counter", b'{"by": 1, "by": 1000}', "by"),
    ("PUT", "/store/values/dup", b'{"value": "a:b", "value": "\\u003a"}', "value"),
    ("POST", "/dags", b'{"name": "dup-dag", "jobs": [{"job_id": "a", "delay": 0, '
                      b'"delay": 3600}]}', "jobs[0].delay"),
    ("POST", "/runs/dup-run/actions", b'{"actions": [{"name": "search", "started_at": 1, '
                                      b'"inputs": {"q": 1, "\\u0071": 2}}]}',
     "actions[0].inputs.q"),
])
def test_a_key_sent_twice_in_one_object_is_a_400_naming_it(cl: Cluster, method: str,
                                                           path: str, body: bytes,
                                                           field: str) -> None:
    send(cl, "POST", "/runs", json.dumps({"id": "dup-run"}).encode())
    err = refused(cl, method, path, body, mentions="more than once")
    assert err["code"] == "invalid_request" and err["details"]["field"] == field, err
    tokens = ok(cl, "GET", "/tokens")["tokens"]
    assert not [t for t in tokens if t["name"] == "dup"]  # nothing was made of it
    assert ok(cl, "GET", "/store/values/dup-counter")["value"] is None


def test_colons_and_escapes_in_strings_are_not_taken_for_repeated_keys(cl: Cluster) -> None:
    body = b'{"value": "http://h:1/a?b=c:d \\u003a \\\\u003a", "\\u003a": null}'
    refused(cl, "PUT", "/store/values/colons", body, mentions="unknown field ':'")
    got, _, raw = send(cl, "PUT", "/store/values/colons",
                       b'{"value": "http://h:1/a?b=c:d \\u003a \\\\u003a"}')
    assert got == 200 and json.loads(raw)["value"] == "http://h:1/a?b=c:d : \\u003a"


@pytest.mark.parametrize("method, path, body, field", [
    ("GET", "/dags?limit=0", None, "limit"),
    ("GET", "/files?dag_id=x", None, "dag_id"),
    ("GET", "/runs/r/actions/-1", None, "seq"),
    ("GET", "/dags?status=bogus", None, "status"),
    ("PUT", "/store/values/f", b"[1]", "body"),
    ("PUT", "/store/values/f", b'{"value": 5}', "value"),
    ("PUT", "/store/values/f", b'{"value": "a\\u0000b"}', "value"),
    ("POST", "/store/sets/f", b'{"member": null}', "member"),
    ("POST", "/store/incr/f", b'{"by": "1"}', "by"),
])
def test_every_400_names_its_field(cl: Cluster, method: str, path: str, body: bytes | None,
                                   field: str) -> None:
    # These said what was wrong in words only (details {} or FastAPI's list of errors): a
    # client reading details.field, as docs/api.md has every 400 give it, found nothing.
    assert refused(cl, method, path, body)["details"]["field"] == field


def test_a_misspelt_field_of_a_runs_code_is_refused_not_dropped(cl: Cluster) -> None:
    # {"drvier": ...} was answered 200 and dropped: the run had no driver, and its replay
    # failed long after, saying nothing of this request.
    ok(cl, "POST", "/runs", {"id": "code-typo"}, 201)
    driver = {"path": "/w/main.py", "args": [], "cwd": "/w"}
    block = {"first": "code-typo", "agent": "a", "n": 0}
    for body, field in (({"files": {}, "drvier": driver}, "drvier"),
                        ({"files": {}, "driver": {**driver, "argv": []}}, "driver.argv"),
                        ({"files": {}, "block": {**block, "procss": "p"}}, "block.procss")):
        err = refused(cl, "PUT", "/runs/code-typo/code", json.dumps(body).encode(),
                      mentions="unknown field")
        assert err["details"]["field"] == field, err
    assert ok(cl, "PUT", "/runs/code-typo/code", {"files": {}, "block": block})["run_id"] \
        == "code-typo"


@pytest.mark.parametrize("method, path, body, field", [
    ("POST", "/dags/prune", {"older_than": "30d", "dryrun": True}, "dryrun"),
    ("PATCH", "/agents/typo-agent", {"budget_usd": 5, "bugdet": 1}, "bugdet"),
    ("PUT", "/evaluations/typo-eval", {"agent": {}, "descripton": "x"}, "descripton"),
])
def test_an_unknown_field_is_named_in_details(cl: Cluster, method: str, path: str,
                                              body: dict[str, Any], field: str) -> None:
    # Refused, but said as "the body must be {...}" (or in words only) with details {}: the
    # field a client or a form should point at was nowhere in the reply.
    err = refused(cl, method, path, json.dumps(body).encode(), mentions=repr(field))
    assert err["details"]["field"] == field, err


def test_a_body_that_is_not_json_is_a_400(cl: Cluster) -> None:
    refused(cl, "PUT", "/store/values/bad", b"{not json", mentions="JSON")
    refused(cl, "POST", "/runs/deep-run/actions", b"{not json", mentions="JSON")


# ------------------------------------------------------------------ item 11: unknown fields

def test_an_unknown_job_field_is_refused_with_the_close_match(cl: Cluster) -> None:
    got, reply = submit_one(cl, "typo-dag", parent=["a"])
    assert got == 400, reply
    err = reply["error"]
    assert err["code"] == "invalid_dag"
    assert "'parent'" in err["message"] and "did you mean 'parents'?" in err["message"]
    assert err["details"]["field"] == "parent" and err["details"]["job_id"] == "a"
    assert ok(cl, "GET", "/dags?name=typo-dag")["total"] == 0  # nothing stored
    got, reply = submit_one(cl, "typo-dag", depends_on=["x"])
    assert got == 400 and "did you mean 'parents'?" in reply["error"]["message"], reply
    got, reply = submit_one(cl, "typo-dag", colour="red")
    assert got == 400 and "'colour'" in reply["error"]["message"], reply


def test_what_no_process_can_be_given_is_refused_at_submit_in_the_sdk_s_words(
        cl: Cluster) -> None:
    """A NUL in an argument: a subprocess or .sh job failed at run time ('embedded null
    byte'), a forked one got an argv no program can have. Refused at submit, as env's were,
    and TitanJob says the same before sending."""
    from titan.client import TitanJob
    from titan.errors import ValidationFailed

    for field, value in [("args", ["ok", "a\x00b"]), ("env", {"A": "x\x00y"}),
                         ("env", {"A=B": "x"}), ("env", {"A\x00": "x"})]:
        got, reply = submit_one(cl, "nul-dag", **{field: value})
        assert got == 400, reply
        err = reply["error"]
        assert err["code"] == "invalid_dag" and err["details"]["field"] == field, err
        with pytest.raises(ValidationFailed) as sdk:
            TitanJob("a", "a.py", **{field: value})
        assert str(sdk.value) == err["message"] and sdk.value.details["field"] == field
    assert "args[1] 'a\\x00b' holds a NUL character" in submit_one(
        cl, "nul-dag", args=["ok", "a\x00b"])[1]["error"]["message"]
    assert ok(cl, "GET", "/dags?name=nul-dag")["total"] == 0  # nothing stored


def test_a_shell_script_on_the_fork_runner_is_refused_at_submit_in_the_sdk_s_words(
        cl: Cluster) -> None:
    """``runner="fork"`` runs the file as Python in the zygote: a ``.sh`` was accepted, then
    FAILED on the worker with a SyntaxError on its first shell line. The master and TitanJob
    refuse it, naming runner; a .sh on the other runners, and fork on a file with no suffix
    (Python by the user's word), are still accepted."""
    from titan.client import TitanJob
    from titan.errors import ValidationFailed

    sha = _upload_script(cl)
    body = {"name": "fork-sh", "jobs": [{"job_id": "a", "filename": "s.sh",
                                         "script_sha256": sha, "runner": "fork"}]}
    err = refused(cl, "POST", "/dags", json.dumps(body).encode(), mentions="shell script")
    assert err["code"] == "invalid_dag" and err["details"] == {"job_id": "a", "field": "runner"}
    assert "'subprocess'" in err["message"]  # says what to do instead
    with pytest.raises(ValidationFailed) as sdk:
        TitanJob("a", "s.sh", runner="fork")
    assert str(sdk.value) == err["message"] and sdk.value.details["field"] == "runner"
    assert ok(cl, "GET", "/dags?name=fork-sh")["total"] == 0  # nothing stored
    for filename, runner in [("s.sh", "subprocess"), ("s.sh", "auto"), ("tool", "fork")]:
        TitanJob("a", filename, runner=runner)
        body["jobs"][0].update(filename=filename, runner=runner)
        ok(cl, "POST", "/dags", body, status=201)


def test_an_unknown_dag_field_is_refused(cl: Cluster) -> None:
    sha = _upload_script(cl)
    body = {"name": "typo-top", "job": [], "jobs": [{"job_id": "a", "filename": "a.py",
                                                      "script_sha256": sha}]}
    got, _, raw = send(cl, "POST", "/dags", json.dumps(body).encode())
    err = json.loads(raw)["error"]
    assert got == 400 and "'job'" in err["message"] and "did you mean 'jobs'?" in err["message"]


def test_every_field_the_sdk_sends_is_accepted(cl: Cluster, tmp_path: Any) -> None:
    from titan.client import TitanClient, TitanJob

    script = tmp_path / "ok.py"
    script.write_text("print('fine')\n")
    job = TitanJob(job_id="all", filename=str(script), args=["1"], priority=2, delay=0,
                   retries=1, timeout=60, env={"A": "1"}, hitl_message="go?",
                   max_wait_seconds=60)
    payload = job.to_payload("0" * 64)
    assert set(payload) <= _job_fields(), set(payload) - _job_fields()
    client = TitanClient(host="127.0.0.1", port=cl.port, token=cl.admin_token)
    try:
        dag = client.submit_dag("sdk-fields", [job])
    finally:
        client.close()
    assert dag is not None


def _job_fields() -> set[str]:
    from titan.master.scheduling.validation import JOB_FIELDS

    return set(JOB_FIELDS)


def test_refs_in_other_scripts_digits_and_the_dashboard_past_64_bits(cl: Cluster) -> None:
    # '²'.isdigit() is true but int('²') fails: such a ref is a name, not an id.
    refused(cl, "GET", "/jobs/" + quote("²"), status=404)
    refused(cl, "GET", "/dags/" + quote("x#²"), status=400, mentions="run")
    conn = http.client.HTTPConnection("127.0.0.1", cl.port, timeout=30)
    try:
        conn.request("GET", f"/jobs/{BIG}.json",
                     headers={"Authorization": f"Bearer {cl.admin_token}"})
        resp = conn.getresponse()
        assert resp.status == 404, resp.read()
    finally:
        conn.close()


def test_json_sent_as_a_form_is_told_to_say_it_is_json(cl: Cluster) -> None:
    # `curl -d '{"value": "x"}'` sends a form: the answer said "Input should be a valid
    # dictionary" of a body that was one.
    for content_type in ("application/x-www-form-urlencoded", "text/plain"):
        got, _, raw = send(cl, "PUT", "/store/values/k", b'{"value": "x"}', content_type)
        reply = json.loads(raw)["error"]
        assert got == 415 and reply["code"] == "unsupported_media_type", reply
        assert "Content-Type: application/json" in reply["message"] and content_type in \
            reply["message"]


#: The write routes that take no body (docs/api.md: a body there is refused).
NO_BODY = {"/workers/{worker_id}/deregister", "/jobs/{ref}/cancel", "/jobs/{ref}/retry",
           "/dags/{ref}/retry", "/dags/{ref}/cancel", "/runs/{run_id}/archive",
           "/runs/{run_id}/unarchive", "/schedules/{name}/pause", "/schedules/{name}/resume",
           "/schedules/{name}/run", "/sign-in-codes"}


def test_every_json_body_is_described_and_refused_as_another_type(cl: Cluster) -> None:
    # The action routes read their body by hand: they took `text/plain` (a type a browser
    # sends cross-site unasked) and dropped an unknown top-level field, and the description
    # said they took no body at all.
    spec = ok(cl, "GET", "/openapi.json")
    bodiless = set()
    for path, item in spec["paths"].items():
        for method, op in item.items():
            if method not in ("post", "put", "patch"):
                continue
            if "requestBody" not in op:
                bodiless.add(path.removeprefix("/api/v1"))
            elif "application/json" in op["requestBody"]["content"]:
                assert {"413", "415"} <= set(op["responses"]), (method, path)
    assert bodiless == NO_BODY
    ok(cl, "POST", "/runs", {"id": "typed-run"}, 201)
    actions = {"actions": [{"name": "x", "started_at": NOW}]}
    batch = {"ops": [{"run": "typed-run", "actions": [{"name": "y", "started_at": NOW}]}]}
    for path, body in (("/runs/typed-run/actions", actions), ("/runs/batch", batch)):
        for content_type in ("text/plain", "application/x-www-form-urlencoded"):
            got, _, raw = send(cl, "POST", path, json.dumps(body).encode(), content_type)
            assert got == 415, (path, content_type, raw)
            assert json.loads(raw)["error"]["code"] == "unsupported_media_type"
        err = refused(cl, "POST", path, json.dumps({**body, "actoins": []}).encode(),
                      mentions="unknown field 'actoins'")
        assert err["details"]["field"] == "actoins"
    assert ok(cl, "GET", "/runs/typed-run")["action_count"] == 0  # nothing was taken
    assert ok(cl, "POST", "/runs/typed-run/actions", actions)["accepted"] == 1
    assert ok(cl, "POST", "/runs/batch", batch)["applied"] == 1


def test_an_upper_case_blob_name_is_told_to_write_it_in_lower_case(cl: Cluster) -> None:
    # 'E3B0…' (as some tools print a digest) was "is not a sha256 hex digest": true of
    # neither the digest nor what to do. A blob's name has one spelling (a path, an object
    # key, an ETag), so it is refused, saying which.
    empty = _sha(b"")
    upper = empty.upper()
    for method, body in (("GET", None), ("PUT", b"")):
        error = refused(cl, method, f"/blobs/{upper}", body, mentions="lower-case hex only")
        assert repr(empty) in error["message"], error
    refused(cl, "GET", "/blobs/xyz", mentions="is not a sha256: 64 lower-case hex")
    got, reply = submit_one(cl, "upper-sha", script_sha256=upper)
    assert got == 400 and "lower-case hex only" in reply["error"]["message"], reply
    assert repr(empty) in reply["error"]["message"], reply
