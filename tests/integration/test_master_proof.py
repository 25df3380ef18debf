"""Over plain HTTP a client's token goes only to a server that proved it is the master.

While a master is down, another local user could bind its port and collect the tokens that
clients and retrying workers send. Here a program holds a port ("the squatter") and records
every byte it receives: the SDK, the CLI and a worker pointed at it send no token and say
why; the real master proves each kind of token, and refuses to prove one it does not know
without the token being sent."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.integration.harness import Cluster, shared_cluster
from titan import TitanClient, TitanJob, errors, master_proof
from titan.client.master_check import connect_proven, prove
from titan.evals.proxy_client import Proxy

cluster = shared_cluster()


class Squatter:
    """A TCP server on a free port that answers every request with ``reply`` and keeps
    what it was sent."""

    def __init__(self, reply: bytes) -> None:
        self.reply = reply
        self.received = bytearray()
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._talk, args=(conn,), daemon=True).start()

    def _talk(self, conn: socket.socket) -> None:
        conn.settimeout(5)
        with conn:
            data = b""
            try:
                while True:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    self.received += chunk
                    data += chunk
                    while b"\r\n\r\n" in data:  # one reply per request head
                        _, _, data = data.partition(b"\r\n\r\n")
                        conn.sendall(self.reply)
            except OSError:
                return

    def close(self) -> None:
        self.server.close()


def reply(status: str, body: dict[str, object]) -> bytes:
    content = json.dumps(body).encode()
    return (f"HTTP/1.1 {status}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(content)}\r\n\r\n").encode() + content


@pytest.fixture(params=["not-found", "fake-proof", "ok-everything"])
def squatter(request: pytest.FixtureRequest) -> Iterator[Squatter]:
    answers = {"not-found": reply("404 Not Found", {"detail": "Not Found"}),
               "fake-proof": reply("200 OK", {"proof": "0" * 64}),
               "ok-everything": reply("200 OK", {"status": "ok", "value": "x"})}
    s = Squatter(answers[request.param])
    yield s
    s.close()


def test_the_sdk_sends_no_token_to_a_server_that_cannot_prove_it_is_the_master(
        cluster: Cluster, squatter: Squatter) -> None:
    token = cluster.admin_token
    client = TitanClient(url=squatter.url, token=token, timeout=5)
    started = time.monotonic()
    with pytest.raises(errors.ConnectionFailed) as caught:
        client.store_get("anything")
    assert "did not prove it is the Titan master" in str(caught.value)
    assert "the token was not sent" in str(caught.value)
    assert time.monotonic() - started < 60
    assert squatter.received, "the client asked nothing"
    assert token.encode() not in squatter.received
    assert b"/api/v1/master-proof?nonce=" in squatter.received
    # The reference it sent cannot be turned back into a proof.
    assert master_proof.token_hash(token).encode() not in squatter.received


def test_a_master_older_than_the_client_is_named_as_such(cluster: Cluster) -> None:
    """An upgraded client before its master: a Titan 404 on the proof says to upgrade the
    master first, and still sends no token."""
    s = Squatter(reply("404 Not Found", {"error": {"code": "not_found",
                                                   "message": "no route /master-proof"}}))
    try:
        client = TitanClient(url=s.url, token=cluster.admin_token, timeout=5)
        with pytest.raises(errors.ConnectionFailed, match="older than this client.*upgrade "
                                                          "the master first"):
            client.store_get("anything")
        assert cluster.admin_token.encode() not in s.received
    finally:
        s.close()


def test_a_master_that_froze_is_passed_over_in_seconds_not_a_read_timeout(
        cluster: Cluster) -> None:
    """A leader paused (SIGSTOP, a frozen VM): the kernel still accepts connections for it,
    and nothing answers. The proof waited the read timeout (60 s) on each new connection, so
    `titan status` given the leader and its standby took a minute, long after the standby
    had taken over (a fleet QA pass). The proof is bounded as a connection is (5 s)."""
    frozen = socket.create_server(("127.0.0.1", 0), backlog=8)  # listens, never accepts
    try:
        url = f"http://127.0.0.1:{frozen.getsockname()[1]}"
        client = TitanClient(url=[url, cluster.url], token=cluster.admin_token)
        started = time.monotonic()
        client.store_put("past-the-frozen-one", "reached")
        took = time.monotonic() - started
        assert client.store_get("past-the-frozen-one") == "reached"
        assert took < 20, f"{took:.1f} s before the next master was asked"
        cli = subprocess.run(
            [sys.executable, "-m", "titan", "store", "get", "past-the-frozen-one",
             "--master", f"{url},{cluster.url}"], capture_output=True, text=True,
            timeout=60, env={**cluster.env, "TITAN_TOKEN": cluster.admin_token})
        assert cli.returncode == 0 and cli.stdout.strip() == "reached", cli.stderr
    finally:
        frozen.close()


def test_the_cli_and_a_worker_send_no_token_either(cluster: Cluster) -> None:
    s = Squatter(reply("404 Not Found", {"detail": "Not Found"}))
    try:
        token = cluster.admin_token
        env = dict(cluster.env, TITAN_URL=s.url, TITAN_TOKEN=token,
                   TITAN_MASTER_RESTART_GRACE="2")
        out = subprocess.run([sys.executable, "-m", "titan", "status"], env=env,
                             capture_output=True, text=True, timeout=60)
        assert out.returncode != 0 and "did not prove" in out.stderr, out.stderr
        # A worker keeps retrying (the master may be coming back) and never sends it.
        worker = subprocess.Popen(
            [sys.executable, "-m", "titan", "worker", "--master", s.url, "--slots", "1"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            time.sleep(4)
        finally:
            worker.kill()
            log = worker.communicate(timeout=10)[0].decode(errors="replace")
        assert s.received, log
        assert token.encode() not in s.received, log
        # The channel's own path: a refused proof is an error of the connection.
        with pytest.raises(ConnectionError, match="did not prove"):
            connect_proven(s.url.replace("http", "ws") + "/api/v1/workers/w/channel",
                           token, 5)
        assert token.encode() not in s.received
    finally:
        s.close()


def raw_proof(cluster: Cluster, ref: str, nonce: str) -> httpx.Response:
    return httpx.get(f"{cluster.url}/api/v1/master-proof",
                     params={"nonce": nonce, "ref": ref}, timeout=10)


def test_the_master_proves_each_kind_of_token_it_issued(cluster: Cluster) -> None:
    nonce = master_proof.new_nonce()
    admin = cluster.admin_token
    answer = raw_proof(cluster, master_proof.token_ref(admin), nonce)
    assert answer.status_code == 200
    assert master_proof.proves(admin, nonce, answer.json()["proof"])
    assert not master_proof.proves(admin, master_proof.new_nonce(), answer.json()["proof"])
    # A token made a moment ago is proven at once.
    made = cluster.api("POST", "/tokens", {"role": "viewer", "name": "fresh"})
    answer = raw_proof(cluster, master_proof.token_ref(made["token"]), nonce)
    assert master_proof.proves(made["token"], nonce, answer.json()["proof"])
    assert isinstance(TitanClient(url=cluster.url, token=made["token"]).list_dags(), list)
    # A job's token: the SDK inside the job proves its master before writing to the store.
    client = cluster.client()
    script = cluster.script("proof_job.py", "from titan import TitanClient\n"
                                            "TitanClient().store_put('proof-job', 'written')\n")
    dag = client.submit_dag("proof-job", [TitanJob(job_id="write", filename=script)])
    done = client.wait_dag(dag["id"], timeout=60)
    assert done["status"] == "COMPLETED", done
    assert client.store_get("proof-job") == "written"
    # A worker credential: a MAC the master recomputes from its public part.
    worker_token = (cluster.data / "worker.token").read_text().strip()
    registered = cluster.api("POST", "/workers/register", {
        "name": "proof-probe", "capabilities": ["PROOF_PROBE"], "slots": 1},
        token=worker_token)
    credential = registered["credential"]
    answer = raw_proof(cluster, master_proof.token_ref(credential), nonce)
    assert master_proof.proves(credential, nonce, answer.json()["proof"])
    assert not credential.endswith(master_proof.token_ref(credential))


def test_an_unknown_token_is_refused_without_being_sent(cluster: Cluster) -> None:
    nonce = master_proof.new_nonce()
    answer = raw_proof(cluster, master_proof.token_ref("tt_made_up"), nonce)
    assert answer.status_code == 401
    for ref, n in (("th.x", "nothex"), ("", nonce), ("tj.a.b", nonce), ("tj.1.2.3", nonce),
                   ("tw.only", nonce)):
        assert raw_proof(cluster, ref, n).status_code in (400, 401), ref
    # A client that has not reached its master yet believes it (a wrong token is said at
    # once); the token is not sent.
    with pytest.raises(errors.Unauthorized, match="does not know this token"):
        TitanClient(url=cluster.url, token="tt_made_up").store_get("x")
    # A revoked token is proven (the master issued it): its request gets the master's own
    # refusal, at once, which a worker stops on.
    made = cluster.api("POST", "/tokens", {"role": "viewer", "name": "soon-revoked"})
    cluster.api("DELETE", f"/tokens/{made['id']}")
    answer = raw_proof(cluster, master_proof.token_ref(made["token"]), nonce)
    assert master_proof.proves(made["token"], nonce, answer.json()["proof"])
    with pytest.raises(errors.Unauthorized, match="revoked"):
        TitanClient(url=cluster.url, token=made["token"]).list_dags()


def test_a_listener_that_says_unknown_token_stops_nothing(
        cluster: Cluster, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TITAN_MASTER_RESTART_GRACE", "2")
    # A fake 401 to the proof was passed on as the master's: workers stopped for good, and a
    # client given two masters gave up instead of trying the leader after it.
    fake = Squatter(reply("401 Unauthorized", {"error": {
        "code": "unauthorized", "message": "x", "details": {}}}))
    try:
        token = cluster.admin_token
        client = TitanClient(url=[fake.url, cluster.url], token=token, timeout=10)
        client.store_put("proof-next", "reached")
        assert client.store_get("proof-next") == "reached" and client.url == cluster.url
        assert token.encode() not in fake.received
        # An evaluation agent's tool proxy asks for the proof too (it sent the run's token
        # to whatever listened).
        proxy = Proxy(f"{fake.url}/api/v1/runs/run-x/tools", "tr_" + "s" * 32, timeout=5)
        with pytest.raises(errors.Unauthorized, match="it was not sent"):
            proxy.call("lookup", {"id": 1})
        assert b"Bearer" not in fake.received and b"tr_sss" not in fake.received
        # A worker given it first among its masters turns to the next, and serves.
        env = dict(cluster.env, TITAN_TOKEN=(cluster.data / "worker.token").read_text().strip())
        worker = subprocess.Popen(
            [sys.executable, "-m", "titan", "worker", "--master", fake.url, "--master",
             cluster.url, "--slots", "1", "--capabilities", "PROOF_TWO"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 30
            while not any("PROOF_TWO" in w.get("capabilities", []) and w["state"] == "live"
                          for w in cluster.live_workers()):
                assert worker.poll() is None and time.monotonic() < deadline
                time.sleep(0.2)
        finally:
            worker.kill()
            log = worker.communicate(timeout=10)[0].decode(errors="replace")
        assert b"Bearer" not in fake.received, log
    finally:
        fake.close()


def test_a_nul_in_a_key_or_reference_is_the_callers_error_not_an_impostor(
        cluster: Cluster) -> None:
    """``store_get("nul\\x00k")`` raised "did not prove it is the Titan master ... trying to
    collect tokens" after 2 s of retries: the proof request carried the path, the master
    refused its NUL (400), and the refusal read as an impostor's (a QA pass)."""
    client = TitanClient(url=cluster.url, token=cluster.admin_token)
    calls = {
        "store_get": lambda: client.store_get("nul\x00k"),
        "store_put": lambda: client.store_put("nul\x00k", "v"),
        "store_wait": lambda: client.store_wait("nul\x00k", timeout=1),
        "store_smembers": lambda: client.store_smembers("nul\x00k"),
        "get_job": lambda: client.get_job("a\x00b"),
        "get_dag": lambda: client.get_dag("a\x00b"),
        "wait": lambda: client.wait("a\x00b", timeout=1),
        "fetch_logs": lambda: client.fetch_logs("a\x00b"),
        "cancel": lambda: client.cancel("a\x00b"),
        "list_dags": lambda: client.list_dags(name="a\x00b"),
    }
    for name, call in calls.items():
        started = time.monotonic()
        with pytest.raises(errors.ValidationFailed, match=r"NUL character \(U\+0000\)"):
            call()
        assert time.monotonic() - started < 0.5, name  # refused before sending: no retries
    # The proof itself never carries a NUL, so a path that holds one (sent by hand) gets the
    # master's own refusal, not an impostor's verdict.
    with socket.create_connection(("127.0.0.1", cluster.port), timeout=10) as sock:
        assert prove(sock, f"127.0.0.1:{cluster.port}".encode(), cluster.admin_token,
                     f"{cluster.url}/api/v1/store/values/nul%00k") is None
    answer = httpx.get(f"{cluster.url}/api/v1/store/values/nul%00k", timeout=10,
                       headers={"Authorization": f"Bearer {cluster.admin_token}"})
    assert answer.status_code == 400 and "NUL" in answer.json()["error"]["message"]
