"""The worker given several masters: its HTTP calls and downloads find the leader among
standbys and refusing addresses, its channel turns away from a standby that refuses the
upgrade, and its jobs learn every master. Real HTTP and WebSockets on loopback ports
(tests/fake_masters.py); the whole worker failing over is in
tests/integration/test_worker_daemon.py."""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http import HTTPStatus
from pathlib import Path
from typing import Any

import pytest
from tests.fake_masters import FakeMaster, masters, refusing_url
from websockets.http11 import Request, Response
from websockets.sync.server import Server, ServerConnection, serve

from titan import errors
from titan.worker.assignment import Assignment, job_env
from titan.worker.channel import ChannelIntake
from titan.worker.channel_wire import channel_master, channel_url
from titan.worker.connection import MasterConnection
from titan.worker.tls_failures import PERSIST_SECONDS, SLOW_SECONDS, TlsFailures

WAIT = 10.0


@pytest.fixture
def stop() -> Iterator[threading.Event]:
    event = threading.Event()
    yield event
    event.set()


def test_calls_go_to_the_leader_a_standby_names_and_stay_there(stop: threading.Event) -> None:
    with masters("standby", "standby", "leader") as (a, b, c):
        b.leader = None
        conn = MasterConnection([a.url, refusing_url(), b.url, c.url], "wt", stop)
        try:
            reply = conn.call("POST", "/workers/register", {"name": "w"})
            assert reply["master"] == c.url and conn.master_url == c.url
            assert conn.api_url == c.url + "/api/v1"
            assert conn.call("POST", "/workers/w-1/heartbeat", {})["master"] == c.url
            assert (len(a.proofs), a.seen(), b.proofs, b.seen()) == (1, [], [], [])
            assert c.requests == [("POST", "/api/v1/workers/register", {"name": "w"}),
                                  ("POST", "/api/v1/workers/w-1/heartbeat", {})]
        finally:
            conn.close()


def test_an_unknown_token_stops_a_new_worker_and_is_waited_out_by_one_that_was_answered(
        stop: threading.Event) -> None:
    # Anyone on a master's port can answer the proof "unknown token": taken as final, it
    # stopped every running worker during a master restart. Before any answer from a master
    # it is believed: a wrong token stops a new worker at once.
    with masters("leader") as (leader,):
        fresh = MasterConnection([leader.url], "not-a-token-it-knows", stop)
        try:
            with pytest.raises(errors.Unauthorized, match="does not know this token"):
                fresh.call("POST", "/workers/register", {})
        finally:
            fresh.close()
        conn = MasterConnection([leader.url], "wt", stop)
        try:
            assert conn.call("POST", "/workers/register", {})["master"] == leader.url
            leader.tokens = set()
            leader.drop_connections()
            threading.Timer(1.5, lambda: setattr(leader, "tokens", {"wt"})).start()
            assert conn.call("POST", "/workers/w-1/heartbeat", {})["master"] == leader.url
            assert len(leader.proofs) >= 3  # refused, then proven again
        finally:
            conn.close()


@pytest.mark.parametrize("order", ["leader first", "standby first"])
def test_an_unknown_token_stops_a_new_worker_given_the_leader_and_its_standbys(
        stop: threading.Event, order: str) -> None:
    # Given a leader and a standby, a worker with another cluster's token looped for ever,
    # saying the leader was "unreachable: a standby; the leader is at <itself>" (a fleet
    # QA pass). A round in which no other master could lead makes the leader's word final.
    with masters("leader", "standby") as (leader, standby):
        down = refusing_url()
        urls = [leader.url, standby.url, down] if order == "leader first" \
            else [down, standby.url, leader.url]
        conn = MasterConnection(urls, "another-clusters-token", stop)
        threading.Timer(10.0, stop.set).start()  # a loop again: Stopped, not a hang
        try:
            with pytest.raises(errors.Unauthorized, match="does not know this token"):
                conn.call("POST", "/workers/register", {})
            assert leader.requests == [] and standby.requests == []
        finally:
            conn.close()


def test_a_stranger_that_does_not_know_the_token_is_passed_over_for_the_leader(
        stop: threading.Event) -> None:
    # Anyone on a configured master's port can say "unknown token"; while another master
    # leads, it answers the worker, which never stops on the stranger's word.
    with masters("leader", "leader") as (stranger, leader):
        stranger.tokens = set()
        conn = MasterConnection([stranger.url, leader.url], "wt", stop)
        try:
            assert conn.call("POST", "/workers/register", {})["master"] == leader.url
        finally:
            conn.close()


def test_a_worker_given_only_a_standby_is_told_which_leader_to_add(
        stop: threading.Event, caplog: pytest.LogCaptureFixture) -> None:
    # It said "master <standby> unreachable (... the leader is at L)": as if the network
    # were down, and never that L was missing from its --master list.
    with masters("leader", "standby") as (leader, standby):
        conn = MasterConnection([standby.url], "wt", stop)
        threading.Timer(0.5, stop.set).start()
        try:
            with caplog.at_level("WARNING", logger="titan.worker"), \
                    pytest.raises(errors.ConnectionFailed, match="stopped"):
                conn.call("POST", "/workers/register", {})
        finally:
            conn.close()
        said = [r.getMessage() for r in caplog.records]
        assert said and all("unreachable" not in line for line in said), said
        assert f"master {standby.url} is a standby; the leader it names, {leader.url}, is " \
               f"not one of this worker's masters: add it (--master {leader.url}" in said[0]
        assert leader.requests == [] and leader.proofs == []  # never followed


def test_a_refused_master_is_passed_over_at_once(stop: threading.Event) -> None:
    with masters("leader") as (leader,):
        conn = MasterConnection([refusing_url(), leader.url], None, stop)
        try:
            assert conn.call("GET", "/workers")["master"] == leader.url
        finally:
            conn.close()


def test_an_unlisted_leader_is_not_followed(stop: threading.Event) -> None:
    with masters("leader", "leader") as (attacker, leader):
        liar = FakeMaster("standby", attacker.url)
        conn = MasterConnection([liar.url, leader.url], "wt", stop)
        try:
            assert conn.call("POST", "/workers/register", {})["master"] == leader.url
            assert attacker.requests == []
        finally:
            conn.close()
            liar.close()


def test_the_worker_waits_out_an_election_until_stopped(stop: threading.Event) -> None:
    """No master leads: the worker keeps asking (with backoff) until it is told to stop."""
    with masters("standby", "standby") as (a, b):
        a.leader, b.leader = b.url, None
        conn = MasterConnection([a.url, b.url], "wt", stop)
        threading.Timer(0.5, stop.set).start()
        try:
            with pytest.raises(errors.ConnectionFailed, match="stopped"):
                conn.call("POST", "/workers/w-1/heartbeat", {})
            # Each standby is asked for the proof (its refusal names no leader that leads).
            assert 1 <= len(a.proofs) <= 10 and abs(len(a.proofs) - len(b.proofs)) <= 1
        finally:
            conn.close()


def test_downloads_follow_the_leader(stop: threading.Event, tmp_path: Path) -> None:
    body = b"print('hi')\n"
    sha = hashlib.sha256(body).hexdigest()
    with masters("standby", "leader") as (standby, leader):
        leader.routes[f"GET /api/v1/blobs/{sha}"] = lambda m, req: (200, body)
        conn = MasterConnection([standby.url, leader.url], "wt", stop)
        try:
            assert conn.download(f"/blobs/{sha}", tmp_path / "s.py", expect_sha256=sha) == sha
            assert (tmp_path / "s.py").read_bytes() == body
            assert standby.seen() == [] and len(standby.proofs) == 1
        finally:
            conn.close()


def test_leads_asks_a_master_that_refused_the_channel(stop: threading.Event) -> None:
    with masters("standby", "leader") as (standby, leader):
        conn = MasterConnection([standby.url, leader.url], "wt", stop)
        try:
            assert conn.leads(leader.url) is True  # its refusal was its own answer
            assert conn.master_url == standby.url
            assert conn.leads(standby.url) is False  # a standby: turned to the leader
            assert conn.master_url == leader.url
            down = MasterConnection([refusing_url(), leader.url], "wt", stop)
            assert down.leads(down.master_url) is False and down.master_url == leader.url
            down.close()
        finally:
            conn.close()


def _channel(conn: MasterConnection, stopped: threading.Event, hard: threading.Event,
             failures: list[BaseException],
             following: Any = lambda master_url: None) -> ChannelIntake:
    return ChannelIntake(
        url=lambda: channel_url(conn.master_url, "w-1"), headers=dict, slots=2,
        supervisor=None,  # type: ignore[arg-type]  # no job is pushed here
        held=list, stopped=stopped, hard=hard, reattach=lambda: None,
        on_error=failures.append, leads=conn.leads, following=following)


def test_the_channel_turns_from_a_standby_that_refuses_the_upgrade(
        stop: threading.Event, caplog: pytest.LogCaptureFixture) -> None:
    hellos: list[dict[str, Any]] = []
    said_hello = threading.Event()

    def leader_channel(ws: ServerConnection) -> None:
        hellos.append(json.loads(ws.recv(timeout=WAIT)))
        said_hello.set()
        for _ in ws:  # until the worker goes
            pass

    stopped, hard = threading.Event(), threading.Event()
    failures: list[BaseException] = []
    server: Server
    with serve(leader_channel, "127.0.0.1", 0) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        leader_url = f"http://127.0.0.1:{server.socket.getsockname()[1]}"
        standby = FakeMaster("standby", leader_url)
        conn = MasterConnection([standby.url, leader_url], "wt", stop)
        followed: list[str] = []
        intake = _channel(conn, stopped, hard, failures, followed.append)
        try:
            with caplog.at_level(logging.INFO, logger="titan.worker"):
                intake.start()
                assert said_hello.wait(WAIT), (failures, standby.requests)
            assert hellos == [{"t": "hello", "credit": 2, "running": []}]
            assert failures == [] and conn.master_url == leader_url
            # The channel says whom it follows just after its hello is sent: a loaded box
            # could run this line between the two.
            deadline = time.monotonic() + WAIT
            while not followed and time.monotonic() < deadline:
                time.sleep(0.01)
            assert followed == [leader_url]
            # Said as what it is: a standby, not an unreachable master ("server rejected
            # WebSocket connection: HTTP 503").
            said = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
            assert said == [f"worker channel: master {standby.url} is not the leader (it "
                            "refused the channel: HTTP 403); looking for the leader; retrying"]
            # The upgrade refused, then the question that found the leader (asked, with the
            # worker's token, after the proof that the standby answered with the leader).
            assert standby.seen() == ["/api/v1/workers/w-1/channel"]
            assert len(standby.proofs) == 1
        finally:
            stopped.set()
            hard.set()
            intake.wake()
            conn.close()
            standby.close()


def test_a_refusal_from_the_leader_still_stops_the_worker(stop: threading.Event) -> None:
    with masters("leader") as (leader,):
        leader.routes["GET /api/v1/workers/w-1/channel"] = lambda m, req: (403, b"")
        conn = MasterConnection([leader.url], "wt", stop)
        stopped, hard = threading.Event(), threading.Event()
        failures: list[BaseException] = []
        intake = _channel(conn, stopped, hard, failures)
        try:
            intake.start()
            for _ in range(100):
                if failures:
                    break
                hard.wait(0.05)
            assert len(failures) == 1 and isinstance(failures[0], errors.Unauthorized)
        finally:
            stopped.set()
            hard.set()
            conn.close()


def test_a_refusal_from_a_master_that_took_the_lead_meanwhile_is_tried_again(
        stop: threading.Event) -> None:
    # A standby refused the upgrade (an older one, with 403), then took the lead before the
    # worker asked /health: the worker took the refusal for the leader's own and stopped, its
    # finished jobs unreported, and they ran again elsewhere (a failover QA pass).
    asked: list[str] = []
    said_hello = threading.Event()

    def process_request(connection: ServerConnection, request: Request) -> Response | None:
        asked.append(request.path)
        if request.path == "/api/v1/health":
            return connection.respond(HTTPStatus.OK, '{"status": "ok"}\n')
        if asked.count(request.path) == 1:
            return connection.respond(HTTPStatus.FORBIDDEN, "")
        return None

    def channel(ws: ServerConnection) -> None:
        ws.recv(timeout=WAIT)
        said_hello.set()
        for _ in ws:
            pass

    stopped, hard = threading.Event(), threading.Event()
    failures: list[BaseException] = []
    with serve(channel, "127.0.0.1", 0, process_request=process_request) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        # No token: this server answers one request per connection, as a WebSocket server
        # does, so it could not prove a token on the connection the request would then take.
        conn = MasterConnection([f"http://127.0.0.1:{server.socket.getsockname()[1]}"], None,
                                stop)
        intake = _channel(conn, stopped, hard, failures)
        try:
            intake.start()
            assert said_hello.wait(WAIT), (failures, asked)
            assert failures == []
            assert asked == ["/api/v1/workers/w-1/channel", "/api/v1/health",
                             "/api/v1/workers/w-1/channel"]
        finally:
            stopped.set()
            hard.set()
            intake.wake()
            conn.close()


def _frozen_master(accepted: list[socket.socket]) -> tuple[socket.socket, str]:
    """A master that froze after the handshake (SIGSTOP): its kernel holds the connection
    open, nothing reads or answers it, pings included."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            if accepted:  # frozen now: the kernel accepts, nobody answers
                accepted.append(conn)
                continue
            request = conn.recv(65536).decode("latin-1")
            key = next(line.split(":", 1)[1].strip() for line in request.split("\r\n")
                       if line.lower().startswith("sec-websocket-key:"))
            accept = base64.b64encode(hashlib.sha1(
                (key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()).decode()
            conn.sendall(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                          f"Connection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
                          ).encode())
            accepted.append(conn)  # and then nothing, ever

    threading.Thread(target=serve, daemon=True).start()
    return listener, f"http://127.0.0.1:{listener.getsockname()[1]}"


def test_a_leader_that_froze_is_left_once_its_pings_go_unanswered(
        stop: threading.Event) -> None:
    # A frozen leader keeps its connections open: with the websockets defaults (20 s + 20 s)
    # a worker stayed on it past the lease the new leader gave its jobs, which ran again.
    accepted: list[socket.socket] = []
    listener, frozen = _frozen_master(accepted)
    with masters("leader") as (leader,):
        conn = MasterConnection([frozen, leader.url], "wt", stop)
        stopped, hard = threading.Event(), threading.Event()
        failures: list[BaseException] = []
        intake = _channel(conn, stopped, hard, failures)
        intake.ping_seconds = 0.3
        try:
            intake.start()
            for _ in range(200):
                if conn.master_url == leader.url:
                    break
                hard.wait(0.05)
            assert conn.master_url == leader.url, (failures, accepted)
            assert failures == []
            assert ChannelIntake.ping_seconds == 5.0  # what a worker uses
        finally:
            stopped.set()
            hard.set()
            intake.wake()
            conn.close()
            listener.close()
            for sock in accepted:
                sock.close()


def test_channel_urls_map_back_to_their_master() -> None:
    for master in ("http://10.0.0.5:8765", "https://titan.example:443"):
        url = channel_url(master, "w-1")
        assert url.startswith(("ws://", "wss://")) and url.endswith("/api/v1/workers/w-1/channel")
        assert channel_master(url) == master


def test_jobs_get_every_master_the_one_in_use_first() -> None:
    a = Assignment.from_json({"id": 1, "attempt": 1, "filename": "a.py"})
    env = job_env(a, master_url="http://b:8765/", workspace=Path("/w"), base={},
                  master_urls=["http://b:8765", "http://a:8765", "http://c:8765"])
    assert env["TITAN_MASTER_URL"] == "http://b:8765"
    assert env["TITAN_MASTER_URLS"] == "http://b:8765,http://a:8765,http://c:8765"
    assert (env["TITAN_HOST"], env["TITAN_PORT"]) == ("b", "8765")
    # One master: the list is that master.
    env = job_env(a, master_url="http://b:8765", workspace=Path("/w"), base={})
    assert env["TITAN_MASTER_URLS"] == "http://b:8765"


def test_a_replay_lets_the_job_reach_every_master() -> None:
    """The replay's socket guard allows each of TITAN_MASTER_URLS (in a child process:
    the guard patches sockets for good)."""
    code = (
        "from titan.trace import netguard\n"
        "def refuse(host, port): raise ConnectionRefusedError(host)\n"
        "netguard.install(refuse)\n"
        "print(sorted(p for h, p in netguard._allowed if h == '127.0.0.1'))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("TITAN_")}
    env.update(TITAN_MASTER_URL="http://127.0.0.1:8001",
               TITAN_MASTER_URLS="http://127.0.0.1:8001,http://127.0.0.1:8002,127.0.0.1:8003")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, timeout=60, check=True).stdout
    assert out.strip() == "[8001, 8002, 8003]"


def test_a_tls_mistake_says_what_would_fix_it() -> None:
    # The worker retried an untrusted certificate for ever, saying only "master unreachable".
    from titan.worker.tls_failures import failure_hint

    verify = "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: self-signed"
    assert "TITAN_CA_FILE" in (failure_hint(verify, "https://m:9090") or "")
    closed = "Server disconnected without sending a response."
    assert failure_hint("Server disconnected without a reply", "http://m:9090") is not None
    assert failure_hint(closed, "https://m:9090") is None
    assert failure_hint("[Errno 111] Connection refused", "http://m:9090") is None
    # A plain-HTTP master that answered before and now drops a connection is an outage: no
    # "if the master serves HTTPS" (a fleet QA pass, after a network cut).
    from titan.worker.tls_failures import TlsFailures

    failures = TlsFailures()
    assert failures.hint("the master closed the connection without a reply", "http://m:9090")
    failures.heard("http://m:9090")
    assert failures.hint("the master closed the connection without a reply",
                         "http://m:9090") is None


def test_a_tls_mistake_stops_a_new_worker_and_is_tried_slowly_by_one_that_was_answered(
        stop: threading.Event, caplog: pytest.LogCaptureFixture) -> None:
    # https:// to a plain-HTTP master: the worker said OpenSSL's bare "WRONG_VERSION_NUMBER"
    # and tried every 2 s for ever. Before any answer it is a mistake, said as the CLI says
    # it; a worker that was answered (the master changed under it) keeps its jobs and tries
    # on, slowly once it has lasted, saying once that it is a configuration error.
    with masters("leader") as (leader,):
        url = leader.url.replace("http://", "https://")
        fresh = MasterConnection([url], "wt", stop)
        try:
            with pytest.raises(errors.ConnectionFailed,
                               match="does not speak TLS.*name it with http://"):
                fresh.call("POST", "/workers/register", {})
        finally:
            fresh.close()
        conn = MasterConnection([url], "wt", stop)
        conn._answered = True  # registered before the master changed
        conn.tls_failures = TlsFailures(clock=itertools.chain(
            [0.0], itertools.repeat(PERSIST_SECONDS)).__next__)  # the 2nd try: it has lasted
        threading.Timer(1.5, stop.set).start()
        try:
            with pytest.raises(errors.ConnectionFailed, match="stopped"):
                conn.call("POST", "/workers/w-1/heartbeat", {})
        finally:
            conn.close()
    said = caplog.text
    assert said.count("a configuration error, not an outage; trying every 30 s") == 1, said
    assert "does not speak TLS" in said and "name it with http://" in said


def test_tls_failures_that_last_are_tried_slowly_until_one_passes(
        caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    failures = TlsFailures(clock=lambda: now[0])
    assert failures.failed("fix it") is None
    now[0] = PERSIST_SECONDS - 1
    assert failures.failed("fix it") is None and caplog.text == ""
    now[0] = PERSIST_SECONDS
    assert failures.failed("fix it") == SLOW_SECONDS == failures.failed("fix it")
    assert caplog.text.count("fix it. Every try for 2 minutes has failed so") == 1
    failures.cleared()
    assert "TLS works again" in caplog.text
    now[0] += 10
    assert failures.failed("fix it") is None  # a new run of failures starts afresh
