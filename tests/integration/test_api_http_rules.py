"""The API's HTTP rules against a real `titan up`: write routes refuse fields they do not know
(a typo is an error, not silently lost), over raw HTTP."""

from __future__ import annotations

import time
from typing import Any

from tests.integration.harness import Cluster, shared_cluster
from tests.integration.test_api_contract import assert_error, call

cluster = shared_cluster(slots=1)


def _gate(c: Cluster, name: str) -> str:
    """A DAG of one approval gate, waiting for its decision; its job's reference."""
    call(c, "POST", "/dags", {"name": name, "jobs": [
        {"job_id": "gate", "job_type": "APPROVAL", "hitl_message": "ok?"}]})
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        status, job = call(c, "GET", f"/jobs/{name}/gate")
        if status == 200 and job["state"] == "WAITING_APPROVAL":
            return f"{name}/gate"
        time.sleep(0.1)
    raise AssertionError(f"the gate never waited: {job}")


def test_write_routes_refuse_fields_they_do_not_know(cluster: Cluster) -> None:
    ref = _gate(cluster, "typo-gate")
    worker_token = (cluster.data / "worker.token").read_text().strip()
    cases: list[tuple[str, str, dict[str, Any], str]] = [
        ("POST", f"/jobs/{ref}/approve", {"commnet": "why"}, "commnet"),
        ("POST", f"/jobs/{ref}/reject", {"comment": "no", "reason": "x"}, "reason"),
        ("POST", f"/jobs/{ref}/stop", {"grace_s": 1}, "grace_s"),
        ("POST", "/tokens", {"role": "viewer", "nmae": "ci-bot"}, "nmae"),
        ("POST", "/store/incr/typo-k", {"step": 10}, "step"),
        ("PUT", "/store/values/typo-k", {"value": "v", "ttl": 5}, "ttl"),
        ("POST", "/store/sets/typo-s", {"member": "m", "members": ["n"]}, "members"),
        ("POST", "/blobs/missing", {"sha256": [], "sha": []}, "sha"),
        ("POST", "/workers/register", {"name": "w", "slot": 2}, "slot"),
    ]
    for method, path, body, field in cases:
        who = worker_token if path == "/workers/register" else "admin"
        err = assert_error(*call(cluster, method, path, body, token=who), 400, "invalid_request")
        assert err["details"]["field"] == field, (path, err)
        assert f"unknown field {field!r}" in err["message"], err
    err = assert_error(*call(cluster, "POST", f"/jobs/{ref}/approve", {"commnet": "why"}), 400)
    assert "did you mean 'comment'" in err["message"], err
    # Nothing was done: the gate still waits, the counter and the set were never made.
    assert call(cluster, "GET", f"/jobs/{ref}")[1]["state"] == "WAITING_APPROVAL"
    assert call(cluster, "GET", "/store/values/typo-k")[1]["value"] is None
    assert call(cluster, "GET", "/store/sets/typo-s")[1]["members"] == []
    # A route that takes no body refuses one ({} and no body at all are fine).
    status, dag = call(cluster, "POST", "/dags", {"name": "typo-cancel", "jobs": [
        {"job_id": "g", "job_type": "APPROVAL"}]})
    assert status == 201
    err = assert_error(*call(cluster, "POST", "/dags/typo-cancel/cancel", {"force": True}), 400,
                       "invalid_request")
    assert err["details"]["field"] == "body" and "takes no body" in err["message"], err
    assert call(cluster, "POST", "/dags/typo-cancel/cancel", {})[0] == 200
    # What the SDK sends still goes: a comment, a grace, a counter's step, a token's name.
    status, job = call(cluster, "POST", f"/jobs/{ref}/approve", {"comment": "fine"})
    assert status == 200 and job["state"] == "APPROVED", job
    client = cluster.client()
    assert client.store_incr("typo-k2", by=10) == 10
    assert client.create_token("viewer", "ci-bot")["name"] == "ci-bot"


def test_token_names_are_checked_not_coerced(cluster: Cluster) -> None:
    for body, field in [({"role": "viewer", "name": 5}, "name"),
                        ({"role": "viewer", "name": "x" * 201}, "name"),
                        ({"role": "viewer", "name": "line\nbreak"}, "name"),
                        ({"role": "viewer", "name": "a\x00b"}, "name"),
                        ({"role": "viewer", "name": "\u202egnp.exe"}, "name"),
                        ({"role": "viewer", "name": "  "}, "name"),
                        ({"role": "ADMIN", "name": "x"}, "role"),
                        ({"name": "x"}, "role")]:
        err = assert_error(*call(cluster, "POST", "/tokens", body), 400, "invalid_request")
        assert err["details"]["field"] == field, (body, err)
    status, made = call(cluster, "POST", "/tokens", {"role": "viewer"})
    assert status == 201 and made["name"] == "viewer"
    status, made = call(cluster, "POST", "/tokens", {"role": "viewer", "name": "team/ci #2"})
    assert status == 201 and made["name"] == "team/ci #2"
