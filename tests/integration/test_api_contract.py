"""The API's contract with real processes: TitanStore, artifacts, bad input, security,
agent runs. Each test talks to a `titan up` cluster through the SDK, the CLI or raw HTTP."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import stat
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from tests.integration.harness import Cluster, shared_cluster
from titan.errors import InvalidDAG, PayloadTooLarge, ValidationFailed, WaitTimeout
from titan_sdk import TitanClient, TitanJob

cluster = shared_cluster()  # one `titan up` for the module (see harness.py)
MakeCluster = Callable[..., Cluster]


def call(c: Cluster, method: str, path: str, body: Any = None, *, token: str | None = "admin",
         raw_body: bytes | None = None, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    """One HTTP request exactly as given (no path normalisation); (status, decoded body).
    ``path`` is under /api/v1 unless it names another /api route (seed 003's /api/projects)."""
    conn = http.client.HTTPConnection("127.0.0.1", c.port, timeout=30)
    hdrs = {"Content-Type": "application/json"}
    if token is not None:
        hdrs["Authorization"] = f"Bearer {c.admin_token if token == 'admin' else token}"
    hdrs.update(headers or {})
    data = raw_body if raw_body is not None else (None if body is None else json.dumps(body).encode())
    try:
        conn.request(method, path if path.startswith("/api/") else f"/api/v1{path}", body=data,
                     headers=hdrs)
        resp = conn.getresponse()
        payload = resp.read()
    finally:
        conn.close()
    try:
        return resp.status, json.loads(payload) if payload else None
    except ValueError:
        return resp.status, payload


def assert_error(status: int, body: Any, expected: int, code: str | None = None) -> dict[str, Any]:
    assert status == expected, (status, body)
    assert isinstance(body, dict) and set(body) == {"error"}, body
    err = body["error"]
    assert set(err) == {"code", "message", "details"}, err
    assert isinstance(err["message"], str) and err["message"]
    assert isinstance(err["details"], dict)
    if code is not None:
        assert err["code"] == code, err
    return err


def run_python(c: Cluster, source: str, *, env: dict[str, str] | None = None) -> str:
    out = subprocess.run([sys.executable, "-c", source], env=dict(c.env, **(env or {})),
                         capture_output=True, text=True, timeout=60, cwd=c.root)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


# ------------------------------------------------------------------------------ TitanStore

INCREMENTER = """
    from titan import TitanClient

    client = TitanClient()
    for _ in range(25):
        client.store_incr("hits")
"""


def test_store_values_sets_counters(cluster: Cluster) -> None:
    client = cluster.client()
    key = "ключ / 🔑 #1 ?a=b&c %2F"
    client.store_put(key, "значение ✓ 世界 🚀")
    assert client.store_get(key) == "значение ✓ 世界 🚀"
    assert key in client.store_keys("ключ")
    big = "x€" * 25_000 + "🚀" * 6_000  # ~100 kB of mixed-width UTF-8
    client.store_put("big", big)
    assert client.store_get("big") == big
    client.store_put("empty", "")
    assert client.store_get("empty") == ""
    assert client.store_get("no such key") is None
    assert client.store_sadd("tags", "α") == 1
    assert client.store_sadd("tags", "α") == 0
    assert client.store_sadd("tags", "β") == 1
    assert client.store_smembers("tags") == {"α", "β"}
    assert client.store_smembers("no such set") == set()
    assert client.store_delete(key) is True
    assert client.store_get(key) is None
    assert client.store_delete(key) is False
    # Keys URL normalisation would eat (a segment of dots) are keys like any other.
    assert client.store_incr("..") == 1 and client.store_incr("..", by=2) == 3
    for odd in (".", ".."):
        client.store_put(odd, f"v{odd}")
        assert client.store_get(odd) == f"v{odd}", odd
        assert client.store_sadd(f"{odd}/", "m") == 1 and client.store_smembers(f"{odd}/") \
            == {"m"}
    assert {".", ".."} <= set(client.store_keys(""))
    # A control character (a CR or LF forged lines wherever a key was shown or logged) is a
    # clear 400 on every write, an artifact's key included; reading and deleting such a key
    # (one stored before) still answer (a hostile QA pass).
    for odd, char in (("a\nb", "U+000A at position 1"), ("\r\nX: y", "U+000D at position 0"),
                      ("bell\x07", "U+0007"), ("c1\x85", "U+0085"), ("del\x7f", "U+007F")):
        path = quote(odd, safe="")
        for method, route, payload in (("PUT", f"/store/values/{path}", {"value": "v"}),
                                       ("POST", f"/store/incr/{path}", {}),
                                       ("POST", f"/store/sets/{path}", {"member": "m"})):
            status, body = call(cluster, method, route, payload)
            error = assert_error(status, body, 400, "invalid_request")
            assert char in error["message"] and "control character" in error["message"], body
            assert error["details"]["field"] == "key", body
        with pytest.raises(ValidationFailed, match="control character"):
            client.store_put(odd, "v")
        # One sentence for every refusal of a key: what is wrong, then the rule.
        assert error["message"] == f"store key {odd!r} holds a control character ({char}" \
            f"{'' if 'position' in char else ' at position ' + str(len(odd) - 1)}): keys are " \
            "1 to 1024 characters without control characters (U+0000–U+001F, U+007F–U+009F)"
        assert call(cluster, "GET", f"/store/values/{path}") == (200, {"key": odd,
                                                                     "value": None})
        assert call(cluster, "DELETE", f"/store/values/{path}")[1]["deleted"] is False
    for method in ("GET", "PUT"):  # a key too long, said the same way (a NUL: no URL holds one)
        status, body = call(cluster, method, f"/store/values/{'k' * 1025}",
                            {"value": "v"} if method == "PUT" else None)
        message = assert_error(status, body, 400, "invalid_request")["message"]
        assert message == f"store key {'k' * 100!r}… has 1025 characters: keys are 1 to 1024 " \
            "characters without control characters (U+0000–U+001F, U+007F–U+009F)", body
    status, body = call(cluster, "POST", "/artifacts?key=k%0D%0AX%3A%20y&name=a.txt",
                        raw_body=b"x")
    assert "control character" in assert_error(status, body, 400, "invalid_request")["message"]
    # A set is one key however many members it has (a key that holds a value and a set,
    # written before one kind per key, is paged in test_store_kinds.py).
    for m in ("x", "y", "z"):
        client.store_sadd("members", m)
    status, body = call(cluster, "GET", "/store?prefix=members&limit=5")
    assert [(k["key"], k["kind"]) for k in body["keys"]] == [("members", "set")]
    assert body["next"] is None  # nothing follows: no empty last page to ask for


def test_store_keys_are_listed_past_a_page(cluster: Cluster,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    # `titan store keys` printed the first 1,000 keys and said nothing of the rest; the API
    # had no way past 10,000.
    client = cluster.client()
    names = [f"page/{i:03d}" for i in range(25)]
    for name in names:
        client.store_put(name, "v")
    client.store_sadd("page/007/", "member")  # a set among the values: listed as a key
    names.insert(8, "page/007/")
    status, body = call(cluster, "GET", "/store?prefix=page/&limit=10&after=page/019")
    assert [k["key"] for k in body["keys"]] == names[21:] and body["next"] is None
    monkeypatch.setattr("titan.client.store.KEYS_PAGE", 4)
    assert list(client.iter_store_keys("page/")) == names
    assert client.store_keys("page/", limit=None) == names
    assert client.store_keys("page/", limit=6) == names[:6]
    # A negative limit gave [] without a word: refused, by the SDK and by the API.
    assert client.store_keys("page/", limit=0) == []
    for limit in (-1, 1.5, True):
        with pytest.raises(ValidationFailed, match="limit must be a whole number >= 0"):
            client.store_keys("page/", limit=limit)  # type: ignore[arg-type]
    status, body = call(cluster, "GET", "/store?prefix=page/&limit=-1")
    assert status == 400 and "limit" in json.dumps(body), body
    # A percent-escape that is not UTF-8 names no key (it was read as the key U+FFFD).
    for path in ("/store/values/%FF", "/store?prefix=%FF", "/runs?agent_id=%C3"):
        status, body = call(cluster, "GET", path)
        assert "UTF-8" in assert_error(status, body, 400, "invalid_request")["message"], path
    # A file name with a line break matched no route: a bare 404 where other control
    # characters get the name's 400 (a QA pass).
    for method in ("PUT", "GET"):
        status, body = call(cluster, method, "/files/x%0Ay")
        error = assert_error(status, body, 400, "invalid_request")
        assert error["details"] == {"field": "name", "name": "x\ny"}, body
    status, body = call(cluster, "GET", "/store/values/%EF%BF%BD")  # U+FFFD itself is a key
    assert status == 200 and body == {"key": "\ufffd", "value": None}

    script = cluster.script("incr.py", INCREMENTER)
    dag = client.submit_dag("counters", [TitanJob(job_id=f"inc{i}", filename=script)
                                         for i in range(4)])
    assert client.wait_dag(dag["id"], timeout=60)["status"] == "COMPLETED"
    assert client.store_get("hits") == "100"
    assert client.store_incr("hits", by=-1) == 99
    # An attempt the job never had is a 404 as plain text too (it was an empty 200).
    status, _ = call(cluster, "GET", "/jobs/counters/inc0/logs.txt?attempt=5")
    assert status == 404
    assert call(cluster, "GET", "/jobs/counters/inc0/logs.txt?attempt=1")[0] == 200
    # A long log streams out a page at a time, every line once and in order.
    chatty = cluster.script("chatty.py", "for i in range(12_345):\n    print(f'line {i}')\n")
    client.submit_job(TitanJob(job_id="chatty", filename=chatty))
    assert client.wait("chatty", timeout=60)["state"] == "COMPLETED"
    with urllib.request.urlopen(urllib.request.Request(
            f"{cluster.url}/api/v1/jobs/chatty/logs.txt",
            headers={"Authorization": f"Bearer {cluster.admin_token}"}), timeout=60) as r:
        assert r.headers["Content-Type"].startswith("text/plain")
        assert r.read().decode() == "".join(f"line {i}\n" for i in range(12_345))


def test_store_value_limit(cluster: Cluster) -> None:
    client = cluster.client()
    limit = 16 * 1024 * 1024  # the documented default
    with pytest.raises(PayloadTooLarge):
        client.store_put("huge", "x" * (limit + 1))
    with pytest.raises(PayloadTooLarge):
        client.store_sadd("huge-set", "€" * (limit // 3 + 1))
    assert client.store_get("huge") is None
    assert client.store_smembers("huge-set") == set()
    with pytest.raises(ValidationFailed):
        client.api("PUT", "/store/values/k", json={"value": 42})
    # Bytes that were not UTF-8, read as text: refused before sending, in titan.errors.
    for key, value in (("k", "abc\udcff"), ("\udcff", "v")):
        with pytest.raises(ValidationFailed, match="not UTF-8"):
            client.store_put(key, value)
    status, body = call(cluster, "PUT", f"/store/values/{'k' * 1025}", {"value": "v"})
    assert_error(status, body, 400)


def test_store_wait(cluster: Cluster) -> None:
    client = cluster.client()
    got: list[str] = []
    errors: list[BaseException] = []

    def waiter() -> None:
        try:
            got.append(client.store_wait("signal ✓", timeout=60))
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    thread = threading.Thread(target=waiter)
    thread.start()
    thread.join(0.5)
    assert thread.is_alive() and not got, "store_wait returned before the key was written"
    # Another process writes the key: the waiter wakes on the write itself.
    run_python(cluster, f"""
from titan import TitanClient
TitanClient(host="127.0.0.1", port={cluster.port}).store_put("signal ✓", "go ✓")
""")
    thread.join(30)
    assert not thread.is_alive() and not errors, errors
    assert got == ["go ✓"]
    assert client.store_wait("signal ✓", timeout=1) == "go ✓"  # already set: at once
    with pytest.raises(WaitTimeout):
        client.store_wait("never set", timeout=0.5)


# ------------------------------------------------------------------------------ artifacts

PUBLISHER = """
    from titan import TitanClient

    with open("out.txt", "w") as f:
        f.write("made inside the job ✓\\n")
    TitanClient().publish_artifact("k", "out.txt")
"""


def test_artifacts_from_inside_a_job(cluster: Cluster, tmp_path: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    client = cluster.client()
    client.submit_job(TitanJob(job_id="publisher", filename=cluster.script("pub.py", PUBLISHER)))
    job = client.wait("publisher", timeout=60)
    assert job["state"] == "COMPLETED", client.fetch_logs("publisher")
    saved = client.get_artifact("k", tmp_path / "saved.txt")
    assert Path(saved).read_text() == "made inside the job ✓\n"
    assert client.store_get("k") == "out.txt"
    fetched = client.fetch_artifact("out.txt", tmp_path / "fetched.txt")
    assert Path(fetched).read_text() == "made inside the job ✓\n"
    (tmp_path / "dir").mkdir()
    assert Path(client.get_artifact("k", tmp_path / "dir")) == tmp_path / "dir" / "out.txt"
    # A trailing slash names a folder, made when missing: "downloads/" wrote a FILE called
    # downloads. Relative, as a script would write it, and through fetch_artifact too.
    monkeypatch.chdir(tmp_path)
    assert client.get_artifact("k", "downloads/") == str(tmp_path / "downloads" / "out.txt")
    assert (tmp_path / "downloads" / "out.txt").read_text() == "made inside the job ✓\n"
    nested = client.fetch_artifact("out.txt", str(tmp_path / "a" / "b") + os.sep)
    assert nested == str(tmp_path / "a" / "b" / "out.txt") and Path(nested).is_file()
    with pytest.raises(ValidationFailed, match="ends in a slash, which names a folder"):
        client.get_artifact("k", "saved.txt/")
    assert (tmp_path / "saved.txt").read_text() == "made inside the job ✓\n"
    files = client.api("GET", "/files", params={"dag_id": job["dag_id"]})["files"]
    assert [(f["name"], f["key"]) for f in files] == [("out.txt", "k")]

    local = tmp_path / "weights.bin"
    local.write_bytes(os.urandom(300_000))
    uploaded = client.upload_file(local)
    assert uploaded["sha256"] == hashlib.sha256(local.read_bytes()).hexdigest()
    # PUT /files answers the file object GET /files lists (api.md showed four of its fields).
    assert sorted(uploaded) == sorted(["id", "name", "sha256", "size", "key", "dag_id",
                                       "job_id", "created_at", "created_by"]), uploaded
    assert uploaded["key"] is uploaded["dag_id"] is uploaded["job_id"] is None
    back = client.fetch_artifact("weights.bin", tmp_path / "back.bin")
    assert Path(back).read_bytes() == local.read_bytes()
    # Listed a page at a time, newest first: a full page says where the next starts.
    newest = client.api("GET", "/files", params={"limit": 1})
    assert newest["files"] == [uploaded]
    older = client.api("GET", "/files", params={"limit": 1, "before": newest["next"]})
    assert [f["name"] for f in older["files"]] == ["out.txt"] and older["next"] is not None
    last = client.api("GET", "/files", params={"before": older["next"]})
    assert [f["name"] for f in last["files"] if f["name"] in ("out.txt", "weights.bin")] == []
    assert last["next"] is None


def test_file_names_with_path_traversal_are_refused(make_cluster: MakeCluster) -> None:
    cluster = make_cluster().up()  # its own: that nothing at all was stored is checked
    client = cluster.client()
    for name in ("../x", "a/b", "..", ".", "a\\b", "../../etc/passwd", "x\x00y", ""):
        segment = quote(name, safe="")
        status, body = call(cluster, "PUT", f"/files/{segment}", raw_body=b"evil")
        assert_error(status, body, 400)
        status, body = call(cluster, "GET", f"/files/{segment}")
        # GET /files/ is the list's path with a '/' added: 404 naming it (docs/api.md, Paths).
        assert_error(status, body, 404 if name == "" else 400)
        status, body = call(cluster, "POST", f"/artifacts?key=k&name={segment}", raw_body=b"evil")
        assert_error(status, body, 400)
        with pytest.raises(ValidationFailed):
            client.fetch_artifact(name)
    assert client.api("GET", "/files")["files"] == []
    assert client.store_get("k") is None
    assert not list((cluster.root).glob("**/x")) and not (cluster.data / "blobs" / "x").exists()


# ------------------------------------------------------------------------------ bad input


def good_job(sha: str, job_id: str = "a", **fields: Any) -> dict[str, Any]:
    return {"job_id": job_id, "filename": "a.py", "script_sha256": sha, **fields}


def test_bad_dags_are_refused_whole(make_cluster: MakeCluster) -> None:
    # A cluster of its own: that nothing at all was stored is checked against an empty one.
    cluster = make_cluster().up()
    client = cluster.client()
    script = b"print('ok')\n"
    sha = hashlib.sha256(script).hexdigest()
    status, _ = call(cluster, "PUT", f"/blobs/{sha}", raw_body=script)
    assert status == 201
    before = client.api("GET", "/dags")

    cases: list[tuple[str, dict[str, Any], str | None]] = [
        ("cycle", {"name": "bad", "jobs": [good_job(sha, "a", parents=["c"]),
                                           good_job(sha, "b", parents=["a"]),
                                           good_job(sha, "c", parents=["b"])]}, "a|b|c"),
        ("self-cycle", {"name": "bad", "jobs": [good_job(sha, "a", parents=["a"])]}, "a"),
        ("unknown parent", {"name": "bad", "jobs": [good_job(sha, "a"),
                                                    good_job(sha, "b", parents=["ghost"])]}, "b"),
        ("duplicate id", {"name": "bad", "jobs": [good_job(sha, "a"), good_job(sha, "b"),
                                                  good_job(sha, "a")]}, "a"),
        ("empty filename", {"name": "bad", "jobs": [good_job(sha, "a"),
                                                    good_job(sha, "b", filename="")]}, "b"),
        ("absolute filename", {"name": "bad", "jobs": [good_job(sha, "a", filename="/etc/x.py")]}, "a"),
        ("string priority", {"name": "bad", "jobs": [good_job(sha, "a", priority="high")]}, "a"),
        ("float priority", {"name": "bad", "jobs": [good_job(sha, "a", priority=1.5)]}, "a"),
        ("bool priority", {"name": "bad", "jobs": [good_job(sha, "a", priority=True)]}, "a"),
        ("parents not a list", {"name": "bad", "jobs": [good_job(sha, "a", parents="b")]}, "a"),
        ("negative delay", {"name": "bad", "jobs": [good_job(sha, "a", delay=-1)]}, "a"),
        ("string delay", {"name": "bad", "jobs": [good_job(sha, "a", delay="soon")]}, "a"),
        ("negative retries", {"name": "bad", "jobs": [good_job(sha, "a", retries=-1)]}, "a"),
        ("float retries", {"name": "bad", "jobs": [good_job(sha, "a", retries=1.5)]}, "a"),
        ("string retries", {"name": "bad", "jobs": [good_job(sha, "a", retries="3")]}, "a"),
        ("huge retries", {"name": "bad", "jobs": [good_job(sha, "a", retries=10**6)]}, "a"),
        ("bad timeout", {"name": "bad", "jobs": [good_job(sha, "a", timeout=0)]}, "a"),
        ("bad args", {"name": "bad", "jobs": [good_job(sha, "a", args="x y")]}, "a"),
        ("huge timeout", {"name": "bad", "jobs": [good_job(sha, "a", timeout=1e308)]}, "a"),
        ("huge max wait", {"name": "bad", "jobs": [good_job(sha, "a", job_type="APPROVAL",
                                                           max_wait_seconds=1e308)]}, "a"),
        ("parents an object", {"name": "bad", "jobs": [good_job(sha, "a", parents={})]}, "a"),
        ("env a list", {"name": "bad", "jobs": [good_job(sha, "a", env=[])]}, "a"),
        ("env empty name", {"name": "bad", "jobs": [good_job(sha, "a", env={"": "x"})]}, "a"),
        ("env name with =", {"name": "bad", "jobs": [good_job(sha, "a", env={"A=B": "x"})]}, "a"),
        ("env NUL value", {"name": "bad", "jobs": [good_job(sha, "a", env={"A": "\x00"})]}, "a"),
        ("affinity a string", {"name": "bad", "jobs": [good_job(sha, "a", affinity="false")]},
         "a"),
        ("is_archive a string", {"name": "bad", "jobs": [good_job(sha, "a", is_archive="yes")]},
         "a"),
        ("bad job id", {"name": "bad", "jobs": [good_job(sha, "a/b")]}, None),
        ("script not uploaded", {"name": "bad", "jobs": [
            good_job(sha, "a"), good_job(hashlib.sha256(b"never sent").hexdigest(), "b")]}, "b"),
        ("empty DAG", {"name": "bad", "jobs": []}, None),
        ("no jobs field", {"name": "bad"}, None),
        ("jobs not a list", {"name": "bad", "jobs": {"a": 1}}, None),
        ("empty name", {"name": "", "jobs": [good_job(sha)]}, None),
        ("name with slash", {"name": "a/b", "jobs": [good_job(sha)]}, None),
        ("name with a C1 control", {"name": "a\u0085b", "jobs": [good_job(sha)]}, None),
        ("job id with a line separator", {"name": "ok", "jobs": [good_job(sha, "a\u2028b")]},
         None),
    ]
    for what, body, job_id in cases:
        status, reply = call(cluster, "POST", "/dags", body)
        err = assert_error(status, reply, 400, "invalid_dag")
        if job_id is not None:
            assert err["details"].get("job_id") in job_id.split("|"), (what, err)
            assert repr(err["details"]["job_id"]) in err["message"], (what, err)

    for raw in (b"{not json", b"", b"[1, 2]", b'"a string"'):
        status, reply = call(cluster, "POST", "/dags", raw_body=raw)
        assert_error(status, reply, 400, "invalid_request")
    nan_delay = b'{"name": "bad", "jobs": [{"job_id": "a", "filename": "a.py", "delay": NaN, ' + (
        f'"script_sha256": "{sha}"}}]}}'.encode())
    # Refused by the strict JSON parser every body goes through, naming the field by path.
    err = assert_error(*call(cluster, "POST", "/dags", raw_body=nan_delay), 400)
    assert err["details"]["field"] == "jobs[0].delay"
    assert_error(*call(cluster, "POST", "/dags", {"name": "bad", "agent_run_id": "",
                                                  "jobs": [good_job(sha)]}), 400)
    # A run id the runs API would refuse, or one URLs cannot carry, could never be read back.
    for run_id in ("q?x=1", "..", "a b", "x" * 201):
        err = assert_error(*call(cluster, "POST", "/dags", {
            "name": "bad", "agent_run_id": run_id, "jobs": [good_job(sha)]}), 400)
        assert err["details"]["field"] == "agent_run_id", err
    status, reply = call(cluster, "POST", "/dags", raw_body=b"{not json",
                         headers={"Content-Type": "text/plain"})
    assert_error(status, reply, 415, "unsupported_media_type")  # said before it is read
    status, reply = call(cluster, "POST", "/dags", raw_body=b"{not json")
    assert_error(status, reply, 400)

    # The SDK raises the same hierarchy.
    a = cluster.script("a.py", "print('a')\n")
    with pytest.raises(InvalidDAG) as info:
        client.submit_dag("bad", [TitanJob(job_id="a", filename=a, parents=["b"]),
                                  TitanJob(job_id="b", filename=a, parents=["a"])])
    assert info.value.details["job_id"] in ("a", "b")
    with pytest.raises(InvalidDAG):
        client.submit_dag("bad", [])
    assert client.api("GET", "/dags") == before
    assert client.api("GET", "/dags")["total"] == 0
    assert client.agent_runs() == []

    # A good DAG after all the bad ones goes through, as run 1.
    status, reply = call(cluster, "POST", "/dags", {"name": "bad", "jobs": [good_job(sha)]})
    assert status == 201 and reply["run"] == 1, reply
    assert client.wait_dag(reply["id"], timeout=60)["status"] == "COMPLETED"


def test_a_bad_parameter_is_named_as_a_user_reads_it(cluster: Cluster) -> None:
    # `titan status --limit 5000` printed "query.limit: Input should be less than or equal
    # to 1000".
    status, body = call(cluster, "GET", "/dags?limit=5000")
    assert_error(status, body, 400)
    assert body["error"]["message"] == ("invalid request: the query parameter 'limit' must be "
                                        "less than or equal to 1000 (got '5000')")


def test_unknown_objects_are_404(cluster: Cluster) -> None:
    for method, path in [("GET", "/jobs/nope"), ("GET", "/jobs/999999"),
                         ("GET", "/jobs/nodag/nope"), ("GET", "/jobs/nope/logs"),
                         ("GET", "/jobs/nope/wait?timeout=0"), ("POST", "/jobs/nope/cancel"),
                         ("POST", "/jobs/nope/retry"), ("GET", "/dags/nope"),
                         ("GET", "/dags/DAG-nope#3"), ("GET", "/dags/424242"),
                         ("GET", "/dags/nope/wait?timeout=0"), ("POST", "/dags/nope/cancel"),
                         ("GET", "/agent-runs/nope"), ("GET", "/files/nope.txt"),
                         ("GET", "/artifacts?key=nope"), ("GET", "/blobs/" + "0" * 64),
                         ("GET", "/no/such/route")]:
        status, body = call(cluster, method, path.replace("#", "%23"))
        assert_error(status, body, 404, "not_found" if "route" not in path else None)
    client = cluster.client()
    from titan.errors import NotFound

    for fn in (lambda: client.get_job("nope"), lambda: client.get_dag("nope"),
               lambda: client.wait("nope", timeout=1), lambda: client.cancel("nope"),
               lambda: client.fetch_logs("nope"), lambda: client.agent_run("nope")):
        with pytest.raises(NotFound):
            fn()


def test_malformed_worker_calls_are_400_and_change_nothing(cluster: Cluster) -> None:
    token = (cluster.data / "worker.token").read_text().strip()
    status, reg = call(cluster, "POST", "/workers/register",
                       {"name": "probe", "capabilities": ["PROBE"], "slots": 1}, token=token)
    assert status == 200
    wid, credential = reg["worker_id"], reg["credential"]
    before = cluster.api("GET", "/workers")["workers"]
    cases = [
        ("/workers/register", {"slots": "four"}), ("/workers/register", {"slots": 0}),
        ("/workers/register", {"capabilities": "GENERAL"}),
        ("/workers/register", {"capabilities": [None]}),
        ("/workers/register", {"worker_id": 5}),
        ("/workers/register", {"running": [{"id": "x", "attempt": 1}]}),
        (f"/workers/{wid}/poll", {"free_slots": "x"}),
        (f"/workers/{wid}/poll", {"free_slots": 1, "wait": "long"}),
        (f"/workers/{wid}/heartbeat", {"running": [{}]}),
        (f"/workers/{wid}/heartbeat", {"running": 5}),
        (f"/workers/{wid}/report", {"logs": 5}),
        (f"/workers/{wid}/report", {"logs": [{"id": 1}]}),
        (f"/workers/{wid}/report", {"results": [{"id": 1, "attempt": 1, "exit_code": "x"}]}),
        (f"/workers/{wid}/report", {"results": ["done"]}),
    ]
    for path, body in cases:
        who = token if path == "/workers/register" else credential
        assert_error(*call(cluster, "POST", path, body, token=who), 400, "invalid_request")
    after = cluster.api("GET", "/workers")["workers"]
    assert [(w["id"], w["capabilities"], w["slots"]) for w in after] == [
        (w["id"], w["capabilities"], w["slots"]) for w in before]


def test_a_job_error_of_megabytes_is_kept_bounded(cluster: Cluster) -> None:
    # A worker speaking the HTTP API (any language) reported a 3 MB error: the master stored
    # it whole, and every read of the job carried it twice (its error and its attempt's),
    # every read of its DAG once per such job.
    token = (cluster.data / "worker.token").read_text().strip()
    status, reg = call(cluster, "POST", "/workers/register",
                       {"name": "verbose", "capabilities": ["VERBOSE"], "slots": 1}, token=token)
    assert status == 200, reg
    wid, credential = reg["worker_id"], reg["credential"]
    script = cluster.scripts / "verbose.py"
    script.write_text("print('never run here')\n")
    cluster.client().submit_dag("long-error", [
        TitanJob(job_id="loud", filename=str(script), requirement="VERBOSE")])
    status, polled = call(cluster, "POST", f"/workers/{wid}/poll",
                          {"free_slots": 1, "wait": 10}, token=credential)
    assert status == 200 and len(polled["jobs"]) == 1, polled
    job = polled["jobs"][0]
    said = "Traceback (most recent call last):\n" + "x" * 3_000_000
    status, reply = call(cluster, "POST", f"/workers/{wid}/report", {"results": [
        {"id": job["id"], "attempt": job["attempt"], "exit_code": 1, "error": said,
         "elapsed": 0.1}]}, token=credential)
    assert status == 200 and reply == {"rejected": []}, reply
    shown = said[:2000] + f"\n… {len(said) - 2000:,} more characters"
    got = cluster.api("GET", f"/jobs/{quote('long-error#1/loud', safe='')}")
    assert got["state"] == "FAILED"
    assert got["error"] == shown
    assert [a["error"] for a in got["attempts"]] == [shown]
    dag = cluster.api("GET", f"/dags/{quote('long-error#1', safe='')}")
    assert len(json.dumps(dag)) < 20_000


# ------------------------------------------------------------------------------ security


def concrete(path: str) -> str:
    """An OpenAPI path with its parameters filled in."""
    out = []
    for part in path.split("/"):
        if part.startswith("{"):
            out.append("0" * 64 if "sha" in part else "x")
        else:
            out.append(part)
    return "/".join(out)


def test_every_route_but_health_needs_a_token(cluster: Cluster) -> None:
    spec = cluster.client().api("GET", "/openapi.json")
    checked = 0
    for path, methods in spec["paths"].items():
        assert path.startswith("/api/"), path
        for method in methods:
            route = concrete(path.removeprefix("/api/v1"))
            for token in (None, "tt_not-a-real-token", "tj.1.1.forged"):
                status, body = call(cluster, method.upper(), route, {}, token=token)
                if path == "/api/v1/health":
                    assert status == 200
                elif path == "/api/v1/master-proof":  # asked before a token is sent
                    assert_error(status, body, 400, "invalid_request")
                else:
                    assert_error(status, body, 401, "unauthorized")
            checked += 1
    assert checked >= 30, spec["paths"].keys()
    status, body = call(cluster, "GET", "/dags", headers={"Authorization": "Basic abc"}, token=None)
    assert_error(status, body, 401, "unauthorized")
    # The API's own description is public, by decision (docs/api.md, docs/security.md): it is
    # the same for every Titan of this version and holds no data.
    status, spec = call(cluster, "GET", "/openapi.json", token=None)
    assert status == 200 and spec["info"]["title"]
    assert set(spec["paths"]) == set(cluster.client().api("GET", "/openapi.json")["paths"])
    status, page = call(cluster, "GET", "/docs", token=None)
    assert status == 200
    for path in ("/docs/oauth2-redirect", "/redoc", "/openapi.yaml"):
        assert call(cluster, "GET", path, token=None)[0] in (401, 404), path


TOKEN_KEEPER = """
    import os
    from pathlib import Path

    Path(os.environ["KEEP_TOKEN_IN"]).write_text(os.environ["TITAN_TOKEN"])
"""


def test_what_every_route_answers_a_stale_job_token_is_described(cluster: Cluster,
                                                                  tmp_path: Path) -> None:
    # Every route answers 409 stale_attempt to a job token whose attempt ended, reads
    # included, and any may be answered 503 with Retry-After: the description declared 409
    # on writes only and 503 nowhere, so a generated client met both undescribed.
    kept = tmp_path / "job.token"
    client = cluster.client()
    client.submit_job(TitanJob(job_id="token-keeper", filename=cluster.script(
        "token_keeper.py", TOKEN_KEEPER), env={"KEEP_TOKEN_IN": str(kept)}))
    assert client.wait("token-keeper", timeout=60)["state"] == "COMPLETED"
    stale = kept.read_text()
    spec = cluster.client().api("GET", "/openapi.json")
    reads = 0
    for path, methods in spec["paths"].items():
        for method, op in methods.items():
            if path == "/api/v1/health":
                assert "Retry-After" in op["responses"]["503"]["headers"]
                continue
            assert "Retry-After" in op["responses"]["503"]["headers"], (method, path)
            if path == "/api/v1/master-proof":  # asked before any token is sent
                continue
            assert "409" in op["responses"], (method, path)
            if method == "get" and "/wait" not in path:
                status, body = call(cluster, "GET", concrete(path.removeprefix("/api/v1")),
                                    token=stale)
                assert_error(status, body, 409, "stale_attempt")
                reads += 1
    assert reads >= 30


def test_roles(cluster: Cluster, tmp_path: Path) -> None:
    admin = cluster.client()
    script = cluster.script("ok.py", "print('ok')\n")
    dag_body = lambda sha: {"name": "roles", "jobs": [good_job(sha, filename="ok.py")]}  # noqa: E731
    sha = hashlib.sha256(Path(script).read_bytes()).hexdigest()
    assert call(cluster, "PUT", f"/blobs/{sha}", raw_body=Path(script).read_bytes())[0] == 201

    # The CLI creates a viewer token with the admin token.
    out = subprocess.run([sys.executable, "-m", "titan", "token", "create", "--role", "viewer",
                          "--host", "127.0.0.1", "--port", str(cluster.port),
                          "--token", cluster.admin_token],
                         env=cluster.env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    viewer = out.stdout.strip().splitlines()[-1]
    assert call(cluster, "GET", "/dags", token=viewer)[0] == 200
    assert_error(*call(cluster, "POST", "/dags", dag_body(sha), token=viewer), 403, "forbidden")
    assert_error(*call(cluster, "PUT", "/store/values/k", {"value": "v"}, token=viewer), 403)
    assert_error(*call(cluster, "POST", "/tokens", {"role": "admin"}, token=viewer), 403)
    assert_error(*call(cluster, "POST", "/workers/register", {"capabilities": ["GENERAL"]},
                       token=viewer), 403)
    # A viewer may not mint tokens through the CLI either.
    out = subprocess.run([sys.executable, "-m", "titan", "token", "create", "--role", "admin",
                          "--host", "127.0.0.1", "--port", str(cluster.port), "--token", viewer],
                         env=cluster.env, capture_output=True, text=True, timeout=60)
    assert out.returncode != 0

    # A worker token registers; the credential it gets back polls, but nothing submits or
    # writes the store.
    worker = admin.create_token("worker", "test worker")["token"]
    status, reg = call(cluster, "POST", "/workers/register",
                       {"name": "probe", "capabilities": ["NOTHING_RUNS_HERE"], "slots": 1},
                       token=worker)
    assert status == 200, reg
    status, polled = call(cluster, "POST", f"/workers/{reg['worker_id']}/poll",
                          {"free_slots": 1, "wait": 0}, token=reg["credential"])
    assert status == 200 and polled == {"jobs": [], "cancel": []}, polled
    assert call(cluster, "POST", f"/workers/{reg['worker_id']}/deregister", {},
                token=reg["credential"])[0] == 200
    assert_error(*call(cluster, "POST", "/dags", dag_body(sha), token=worker), 403, "forbidden")
    assert_error(*call(cluster, "PUT", "/store/values/k", {"value": "v"}, token=worker), 403)
    assert_error(*call(cluster, "GET", "/tokens", token=worker), 403)

    # An operator submits; revoked, its token is refused at once.
    created = admin.create_token("operator", "ci")
    operator = TitanClient(host="127.0.0.1", port=cluster.port, token=created["token"])
    try:
        dag = operator.submit_dag("roles", [TitanJob(job_id="a", filename=script)])
        assert operator.wait_dag(dag["id"], timeout=60)["status"] == "COMPLETED"
        assert_error(*call(cluster, "GET", "/tokens", token=created["token"]), 403)
        assert admin.revoke_token(created["id"]) is True
        assert_error(*call(cluster, "GET", "/dags", token=created["token"]), 401, "unauthorized")
        assert_error(*call(cluster, "POST", "/dags", dag_body(sha), token=created["token"]), 401)
    finally:
        operator.close()
    revoked = [t for t in admin.list_tokens() if t["id"] == created["id"]]
    assert revoked and revoked[0]["revoked_at"] is not None
    assert all("token" not in t and "token_hash" not in t for t in admin.list_tokens())
    assert_error(*call(cluster, "DELETE", "/tokens/tok-nope"), 404)
    assert_error(*call(cluster, "POST", "/tokens", {"role": "root"}), 400)


def test_tokens_made_and_revoked_say_who_on_the_security_log(cluster: Cluster) -> None:
    # A token minted with a stolen session left no trace anywhere (a security QA pass).
    admin = cluster.client()
    created = admin.create_token("viewer", "audit-probe")
    listed = {t["id"]: t for t in admin.list_tokens()}
    assert listed[created["id"]]["created_by"].startswith("admin ")
    assert listed[created["id"]]["created_by"].endswith(" via a token")
    assert admin.revoke_token(created["id"]) is True
    log = cluster.log()
    assert (f"token {created['id']} (role viewer, name 'audit-probe') created by admin "
            in log), log[-2000:]
    assert f"token {created['id']} revoked by admin " in log
    assert created["token"] not in log


def test_the_last_admin_token_is_kept(make_cluster: MakeCluster) -> None:
    """Revoked, no one could mint or revoke a token again (and a restart kept serving the
    revoked admin.token): refused until another admin token exists."""
    cl = make_cluster().up()  # its own: its admin token is revoked
    first = [t["id"] for t in cl.client().list_tokens()
             if t["role"] == "admin" and not t["revoked_at"]]
    assert len(first) == 1
    assert_error(*call(cl, "DELETE", f"/tokens/{first[0]}"), 409, "last_admin_token")
    spare = cl.client().create_token("admin", "spare-admin")
    assert call(cl, "DELETE", f"/tokens/{first[0]}", token=spare["token"])[0] == 200
    assert_error(*call(cl, "DELETE", f"/tokens/{spare['id']}", token=spare["token"]), 409,
                 "last_admin_token")
    # Rotated as docs/security.md says: restarted with the revoked admin.token in place, the
    # master says to delete it (a CLI reading the file got a bare 401); deleted, a new one.
    revoked = cl.admin_token
    cl.stop()
    cl.start_master()
    assert "admin.token holds a revoked token: delete the file" in cl.log(), cl.log()
    assert_error(*call(cl, "GET", "/tokens"), 401)
    cl.stop()
    (cl.data / "admin.token").unlink()
    cl.start_master()
    assert cl.admin_token != revoked
    assert call(cl, "GET", "/tokens")[0] == 200


def test_host_header_and_token_file(cluster: Cluster) -> None:
    # A loopback name with a port that is not one is refused too: the dashboard echoes the
    # Host header into its Content-Security-Policy.
    for host in ("evil.example.com", "evil.example.com:80", f"evil.example.com:{cluster.port}",
                 "127.0.0.1:evil", "127.0.0.1:5100 *; script-src *"):
        status, body = call(cluster, "GET", "/dags", headers={"Host": host})
        assert_error(status, body, 400)
        status, body = call(cluster, "GET", "/health", headers={"Host": host}, token=None)
        assert_error(status, body, 400)
    for host in (f"127.0.0.1:{cluster.port}", f"localhost:{cluster.port}"):
        assert call(cluster, "GET", "/dags", headers={"Host": host})[0] == 200
    for name in ("admin.token", "worker.token"):
        mode = stat.S_IMODE((cluster.data / name).stat().st_mode)
        assert mode == 0o600, f"{name} has mode {oct(mode)}"


# ------------------------------------------------------------------------------ agent runs

STAGE = """
    import os, sys

    print("agent run:", os.environ.get("TITAN_AGENT_RUN_ID") or "-")
    sys.exit(int(sys.argv[1]) if len(sys.argv) > 1 else 0)
"""


def test_agent_run_stages(cluster: Cluster) -> None:
    client = cluster.client()
    script = cluster.script("stage.py", STAGE)
    run = "RESEARCH_abc123"
    plan = client.submit_dag(f"{run}_PLAN", [TitanJob(job_id="plan", filename=script)],
                             agent_run_id=run)
    assert plan["agent_run_id"] == run
    assert client.wait_dag(plan["id"], timeout=60)["status"] == "COMPLETED"
    assert "agent run: RESEARCH_abc123" in client.fetch_logs(f"{run}_PLAN/plan")
    iter1 = client.submit_dag(f"{run}_ITER1", [
        TitanJob(job_id="search_ok", filename=script),
        TitanJob(job_id="search_bad", filename=script, args=["3"]),
    ], agent_run_id=run)
    assert client.wait_dag(iter1["id"], timeout=60)["status"] in ("PARTIAL", "FAILED")
    synth = client.submit_dag(f"{run}_SYNTH", [TitanJob(job_id="synth", filename=script)],
                              agent_run_id=run)
    assert client.wait_dag(synth["id"], timeout=60)["status"] == "COMPLETED"
    # A DAG outside any agent run: its jobs see no agent run id.
    # submit_job waits as submit_dag does: the finished one-job DAG comes back.
    loner = client.submit_job(TitanJob(job_id="loner", filename=script), wait=True, timeout=60)
    assert loner["status"] == "COMPLETED" and loner["name"] == "loner"
    assert loner["jobs"][0]["state"] == "COMPLETED"
    assert "agent run: -" in client.fetch_logs("loner")

    view = cluster.api("GET", f"/agent-runs/{run}")
    assert view["id"] == run
    stages = view["stages"]
    assert [s["label"] for s in stages] == ["PLAN", "ITER1", "SYNTH"]
    assert [s["dag_id"] for s in stages] == [plan["id"], iter1["id"], synth["id"]]
    assert stages[0]["status"] == "COMPLETED" and stages[2]["status"] == "COMPLETED"
    assert stages[1]["status"] == "PARTIAL"
    assert stages[1]["counts"]["COMPLETED"] == 1 and stages[1]["counts"]["FAILED"] == 1
    # Its driver (this process) lives and may submit another stage: running, as /runs says.
    assert view["status"] == "RUNNING"
    assert cluster.api("GET", f"/runs/{run}")["status"] == "running"
    listed = cluster.api("GET", "/agent-runs")
    assert [r["id"] for r in listed["agent_runs"]] == [run] and listed["total"] == 1
    assert client.agent_run(run)["stages"] == stages
    assert [d["id"] for d in client.list_dags(agent_run_id=run)] == [
        synth["id"], iter1["id"], plan["id"]]
    # The orchestrator submits the failed stage again and it succeeds: the run has recovered.
    # Its status counts each stage's latest run (it stayed PARTIAL for good); the failed run
    # stays listed, as the stage's history.
    again = client.submit_dag(f"{run}_ITER1", [TitanJob(job_id="search_ok", filename=script)],
                              agent_run_id=run)
    assert client.wait_dag(again["id"], timeout=60)["status"] == "COMPLETED"
    view = cluster.api("GET", f"/agent-runs/{run}")
    assert [(s["label"], s["run"], s["status"]) for s in view["stages"]] == [
        ("PLAN", 1, "COMPLETED"), ("ITER1", 1, "PARTIAL"), ("SYNTH", 1, "COMPLETED"),
        ("ITER1", 2, "COMPLETED")]
    assert view["status"] == "RUNNING"
    # Its driver says it is done: it ends with its last stage, the ITER1 that recovered.
    cluster.api("PATCH", f"/runs/{run}", {"status": "ended"})
    assert cluster.api("GET", f"/runs/{run}")["status"] == "completed"
    assert cluster.api("GET", f"/agent-runs/{run}")["status"] == "COMPLETED"


def test_small_contract_details(cluster: Cluster) -> None:
    # A run may name no agent (docs/api.md: agent_id optional, as a stage's run or one a
    # trace opened); a report's exit_code bound is int32's (2147483648 was said, and taken);
    # a job reference whose run is no number names itself in details.ref as other reference
    # errors do (details were {}).
    status, run = call(cluster, "POST", "/runs", {})
    assert status == 201 and run["agent_id"] is None, run
    worker = cluster.live_workers()[0]["id"]
    for code, expected in ((2**31, 400), (2**31 - 1, 200), (-2**31, 200)):
        status, body = call(cluster, "POST", f"/workers/{worker}/report", {
            "logs": [], "results": [{"id": 10**9, "attempt": 1, "exit_code": code,
                                     "error": None}]})
        assert status == expected, (code, body)
    assert "between -2147483648 and 2147483647, got 2147483648" in \
        call(cluster, "POST", f"/workers/{worker}/report", {"logs": [], "results": [
            {"id": 10**9, "attempt": 1, "exit_code": 2**31, "error": None}]})[1]["error"]["message"]
    status, body = call(cluster, "GET", "/jobs/qa1%23x/a")
    assert status == 400 and body["error"]["details"] == {"ref": "qa1#x/a"}, body
    status, body = call(cluster, "GET", "/dags/qa1%23x")
    assert status == 400 and body["error"]["details"] == {"ref": "qa1#x"}, body
