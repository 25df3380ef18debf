"""Idempotency-Key against a real master: a write repeated after a lost reply applies once."""

from __future__ import annotations

import hashlib
import json
import urllib.error
import urllib.request
from typing import Any

from tests.integration.harness import Cluster


def post(c: Cluster, path: str, body: Any, key: str | None) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {c.admin_token}", "Content-Type": "application/json"}
    if key is not None:
        headers["Idempotency-Key"] = key
    req = urllib.request.Request(f"{c.url}/api/v1{path}", method="POST", headers=headers,
                                 data=json.dumps(body).encode())
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_repeated_keyed_writes_apply_once_even_across_a_restart(make_cluster: Any) -> None:
    c: Cluster = make_cluster()
    c.start_master()
    key = "incr-0123456789abcdef"
    assert post(c, "/store/incr/n", {"by": 5}, key) == (200, {"key": "n", "value": 5})
    assert post(c, "/store/incr/n", {"by": 5}, key) == (200, {"key": "n", "value": 5})
    assert post(c, "/store/sets/s", {"member": "a"}, "sadd-0123456789abcdef")[1]["added"] == 1
    c.kill_master()  # the key survives with the write it answers for
    c.start_master()
    assert post(c, "/store/incr/n", {"by": 5}, key)[1]["value"] == 5
    assert post(c, "/store/sets/s", {"member": "a"}, "sadd-0123456789abcdef")[1]["added"] == 1
    assert post(c, "/store/incr/n", {"by": 5}, None)[1]["value"] == 10  # no key: applied
    script = b"print('once')\n"
    sha = hashlib.sha256(script).hexdigest()
    urllib.request.urlopen(urllib.request.Request(
        f"{c.url}/api/v1/blobs/{sha}", method="PUT", data=script,
        headers={"Authorization": f"Bearer {c.admin_token}"}), timeout=30).close()
    dag = {"name": "once", "jobs": [{"job_id": "a", "filename": "a.py", "script_sha256": sha}]}
    first = post(c, "/dags", dag, "dag-0123456789abcdef")
    again = post(c, "/dags", dag, "dag-0123456789abcdef")
    assert first[0] == again[0] == 201 and first[1]["id"] == again[1]["id"]
    assert len(c.api("GET", "/dags")["dags"]) == 1
    status, body = post(c, "/store/incr/other", {}, key)  # the key named another request
    assert status == 400 and body["error"]["details"] == {"header": "Idempotency-Key"}
    status, body = post(c, "/store/incr/n", {}, "short")
    assert status == 400 and body["error"]["details"] == {"header": "Idempotency-Key"}


def test_a_key_answers_only_its_own_request_with_its_first_result(make_cluster: Any) -> None:
    # A publish replayed with another key, name and body answered a file never stored (the
    # first one's id beside the second one's name and digest); a key sent by another caller
    # answered with the first caller's result.
    import httpx

    c: Cluster = make_cluster()
    c.start_master()
    operator = c.api("POST", "/tokens", {"role": "operator", "name": "other"})["token"]
    key = {"Idempotency-Key": "publish-0123456789abcdef"}
    with httpx.Client(base_url=f"{c.url}/api/v1", timeout=30,
                      headers={"Authorization": f"Bearer {c.admin_token}"}) as api:
        def publish(query: str, body: bytes, **headers: str) -> httpx.Response:
            return api.post(f"/artifacts?{query}", content=body, headers={
                **key, "Content-Type": "application/octet-stream", **headers})

        first = publish("key=ak1&name=an1.txt", b"hello1")
        assert first.status_code == 201, first.text
        again = publish("key=ak1&name=an1.txt", b"hello1")
        assert (again.status_code, again.json()) == (201, first.json())  # as stored, whole
        for query, body in (("key=ak2&name=an2.txt", b"hello2"),
                            ("key=ak1&name=an1.txt", b"hello2"),  # the same but its content
                            ("key=ak1&name=other.txt", b"hello1")):
            r = publish(query, body)
            assert r.status_code == 400, (query, r.text)
            assert r.json()["error"]["details"] == {"header": "Idempotency-Key"}
        r = publish("key=ak1&name=an1.txt", b"hello1", Authorization=f"Bearer {operator}")
        assert r.status_code == 400 and "another caller" in r.json()["error"]["message"], r.text
        assert api.get("/artifacts", params={"key": "ak2"}).status_code == 404
        assert [f["name"] for f in api.get("/files").json()["files"]] == ["an1.txt"]

        counter = {"Idempotency-Key": "counter-0123456789abcdef"}
        assert api.post("/store/incr/n", json={"by": 2}, headers=counter).json()["value"] == 2
        r = api.post("/store/incr/n", json={"by": 3}, headers=counter)  # another body
        assert r.status_code == 400 and "other content" in r.json()["error"]["message"], r.text
        assert api.post("/store/incr/n", json={"by": 2}, headers=counter).json()["value"] == 2
