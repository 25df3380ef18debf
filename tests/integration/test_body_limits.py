"""Bodies are authenticated and bounded before they are read (issue 15 item 3).

Raw sockets, so the test controls what is sent and can see the answer arrive while most of
the announced body was never sent. The figures (20 concurrent 300 MB bodies, RSS and
/health latency) are measured by bench/body_limits.py, not asserted here.
"""

from __future__ import annotations

import hashlib
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.harness import Cluster, sign_in
from tests.integration.raw_http import answer, head
from titan.errors import PayloadTooLarge
from titan_sdk import TitanJob

LIMIT = 1 << 20
UPLOAD_LIMIT = 2 << 20


@pytest.fixture(scope="module")
def cl(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster(tmp_path_factory.mktemp("limits"), env={
        "TITAN_MAX_BODY_BYTES": str(LIMIT), "TITAN_MAX_UPLOAD_BYTES": str(UPLOAD_LIMIT)})
    try:
        yield c.start_master()
    finally:
        c.stop()


def announce(cl: Cluster, method: str, path: str, length: int, token: str | None = None,
             port: int | None = None, sent: bytes = b"{" * 1024) -> tuple[int, str, float]:
    """Announce ``length`` bytes, send only ``sent``, and wait for the verdict."""
    headers = {"Content-Type": "application/json", "Content-Length": str(length)}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port or cl.port)) as sock:
        sock.sendall(head(method, path, headers) + sent)
        status, text = answer(sock)
    return status, text, time.monotonic() - started


HUGE = 300 * 1024 * 1024


@pytest.mark.parametrize("token", [None, "tt_not-a-real-token", "tj.1.1.forged",
                                   "tw.tok-x.w-1.0000"])
def test_a_body_without_a_valid_credential_is_refused_before_it_is_read(
        cl: Cluster, token: str | None) -> None:
    for method, path in (("PUT", "/api/v1/store/values/k"), ("POST", "/api/v1/dags"),
                         ("PUT", "/api/v1/blobs/" + "0" * 64), ("POST", "/api/v1/workers/w/report"),
                         ("POST", "/api/v1/runs/r/tools/t"), ("POST", "/api/v1/runs/r/actions")):
        status, text, took = announce(cl, method, path, HUGE, token)
        assert status == 401, (method, path, text)
        assert "connection: close" in text and '"unauthorized"' in text
        assert took < 5, took  # answered while 299 MB were never sent


def test_a_body_over_the_limit_is_413_at_once(cl: Cluster) -> None:
    status, text, _ = announce(cl, "PUT", "/api/v1/store/values/k", LIMIT + 1, cl.admin_token)
    assert status == 413 and '"payload_too_large"' in text and f'"limit":{LIMIT}' in text
    status, text, _ = announce(cl, "PUT", "/api/v1/blobs/" + "0" * 64, UPLOAD_LIMIT + 1,
                               cl.admin_token)
    assert status == 413 and "uploads here are limited" in text
    # An upload may be bigger than a JSON body.
    blob = b"x" * (LIMIT + 10)
    sha = hashlib.sha256(blob).hexdigest()
    assert cl.api("GET", "/health")  # (the cluster still serves)
    with socket.create_connection(("127.0.0.1", cl.port)) as sock:
        sock.sendall(head("PUT", f"/api/v1/blobs/{sha}", {
            "Authorization": f"Bearer {cl.admin_token}", "Content-Length": str(len(blob))}) + blob)
        assert answer(sock)[0] == 201


def test_the_sdk_reads_the_refusal_sent_while_it_writes_the_body(cl: Cluster,
                                                                  tmp_path: Path) -> None:
    # The master answers 413 from the headers and closes; the SDK wrote on into the closed
    # connection, took the reset for a restart, sent the body again and again for the whole
    # restart grace (60 s) and raised ConnectionFailed "Connection reset by peer".
    client = cl.client()
    script = cl.script("noop.py", "pass\n")
    for size in (LIMIT + 1, 3 * LIMIT, 16 * LIMIT):
        started = time.monotonic()
        with pytest.raises(PayloadTooLarge, match=f"limited to {LIMIT:,} bytes"):
            client.submit_dag("too-big", [TitanJob("j", script, env={"BIG": "x" * size})])
        with pytest.raises(PayloadTooLarge, match=f"limited to {LIMIT:,} bytes"):
            client.store_put("too-big", "x" * size)
        assert time.monotonic() - started < 10, (size, time.monotonic() - started)
    assert client.list_dags(name="too-big") == [] and client.store_get("too-big") is None
    big = tmp_path / "big.bin"  # an upload, streamed from the file: the same
    big.write_bytes(b"\0" * (3 * UPLOAD_LIMIT))
    started = time.monotonic()
    with pytest.raises(PayloadTooLarge, match="uploads here are limited"):
        client.upload_file(big)
    assert time.monotonic() - started < 10
    client.store_put("after-refusals", "ok")  # the connections left are sound
    assert client.store_get("after-refusals") == "ok"


@pytest.mark.parametrize(("method", "path", "limit"), [
    ("POST", "/api/v1/dags", LIMIT), ("PUT", "/api/v1/blobs/" + "0" * 64, UPLOAD_LIMIT)])
def test_a_chunked_body_is_cut_off_as_it_crosses_the_limit(
        cl: Cluster, method: str, path: str, limit: int) -> None:
    chunk = b"[" + b" " * 65534 + b"\n"
    framed = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
    sent = 0
    with socket.create_connection(("127.0.0.1", cl.port)) as sock:
        sock.sendall(head(method, path, {
            "Authorization": f"Bearer {cl.admin_token}", "Content-Type": "application/json",
            "Transfer-Encoding": "chunked"}))

        def stream() -> None:  # until the master hangs up (or 64 MiB: it never did)
            nonlocal sent
            try:
                for _ in range(1024):
                    sock.sendall(framed)
                    sent += len(framed)
            except OSError:
                pass

        sender = threading.Thread(target=stream)
        sender.start()
        status, text = answer(sock, timeout=30)
        sender.join(timeout=30)
    assert status == 413 and "connection: close" in text and '"payload_too_large"' in text
    # Cut off near the limit, not after the whole stream (the kernel buffers some in flight).
    assert limit < sent < limit + 16 * 1024 * 1024, sent
    assert not list((cl.data / "blobs" / "tmp").iterdir())  # a cut-off upload leaves nothing


def test_public_routes_and_sign_in_take_small_bodies_only(cl: Cluster) -> None:
    status, text, _ = announce(cl, "POST", "/login", 1 << 20, port=cl.dashboard_port,
                               sent=b"token=x")
    assert status == 413
    status, _, _ = announce(cl, "GET", "/api/v1/health", 17 * 1024)
    assert status == 413


def test_valid_bodies_pass_and_each_credential_kind_still_works(cl: Cluster, tmp_path: Path) -> None:
    client = cl.client()
    client.store_put("limits:ok", "v" * (LIMIT // 2))
    assert client.store_get("limits:ok") == "v" * (LIMIT // 2)
    # A session cookie (the dashboard) may send bodies; the CSRF check still applies after.
    import httpx

    with httpx.Client(base_url=cl.url, timeout=30) as s:
        key = sign_in(s, cl.admin_token)
        url = "/api/v1/store/values/limits:cookie"
        assert s.put(url, json={"value": "x"}).status_code == 403  # no write key
        assert s.put(url, json={"value": "x"}, headers={"X-CSRF-Token": key}).status_code == 200


def test_worker_credentials_and_job_tokens_may_send_bodies(cl: Cluster) -> None:
    from tests.integration.test_api_contract import call
    from titan import TitanJob

    worker_token = (cl.data / "worker.token").read_text().strip()
    status, reg = call(cl, "POST", "/workers/register", {
        "name": "limits", "capabilities": ["NOTHING_RUNS_HERE"], "slots": 1}, token=worker_token)
    assert status == 200 and reg["credential"].startswith("tw."), reg
    status, beat = call(cl, "POST", f"/workers/{reg['worker_id']}/heartbeat", {"running": []},
                        token=reg["credential"])
    assert status == 200, beat
    # A job's own token (tj.) writes to the store from inside the job.
    cl.add_worker()
    script = cl.script("limits_job.py", f"""
        from titan import TitanClient
        TitanClient().store_put("limits:job", "j" * {LIMIT // 2})
    """)
    client = cl.client()
    dag = client.submit_dag("limits", [TitanJob(job_id="writer", filename=script)])
    assert client.wait_dag(dag["id"], timeout=60)["status"] == "COMPLETED"
    assert client.store_get("limits:job") == "j" * (LIMIT // 2)


def test_a_foreign_host_is_refused_and_its_body_never_received(cl: Cluster) -> None:
    with socket.create_connection(("127.0.0.1", cl.port)) as sock:
        sock.sendall(head("PUT", "/api/v1/store/values/k", {
            "Host": "evil.example", "Content-Length": str(HUGE)}).replace(
                b"Host: 127.0.0.1\r\n", b"") + b"{")
        status, text = answer(sock)
    assert status == 400 and "connection: close" in text and '"bad_host"' in text


def test_two_host_lines_are_refused_whichever_comes_first(cl: Cluster) -> None:
    # RFC 9112 section 3.2: parsers and proxies disagree on which of two Host lines counts.
    for extra in ("evil.example", "127.0.0.1"):
        with socket.create_connection(("127.0.0.1", cl.port)) as sock:
            sock.sendall(head("GET", "/api/v1/health", {"Host": extra}))
            status, text = answer(sock)
        assert status == 400 and '"bad_host"' in text and "one host header" in text
