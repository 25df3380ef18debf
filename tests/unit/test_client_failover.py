"""The SDK given several masters: it finds the leader among standbys and refusing addresses,
remembers it, follows only leaders it was configured with, and says what each master
answered when none leads. Real HTTP on loopback ports (tests/fake_masters.py)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from tests.fake_masters import FakeMaster, masters, refusing_url

from titan import errors
from titan.client import TitanClient


@pytest.fixture(autouse=True)
def isolated(clean_client_env: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TITAN_MASTER_RESTART_GRACE", "3")
    return clean_client_env


def test_a_standby_sends_the_call_to_the_leader_it_names_and_it_is_remembered() -> None:
    with masters("standby", "standby", "leader") as (a, b, c):
        b.leader = None  # knows no leader: it would be asked only if A named none
        with TitanClient(url=[a.url, b.url, c.url], token="t") as client:
            assert client.health()["master"] == c.url
            assert client.url == c.url and client.endpoint.urls == (a.url, b.url, c.url)
            # A's answer to the proof of the token named the leader: the token went
            # nowhere but to the master that proved it holds it.
            assert (a.seen(), b.seen(), c.seen()) == ([], [], ["/api/v1/health"])
            assert (len(a.proofs), b.proofs, len(c.proofs)) == (1, [], 1)
            client.health()  # straight to the leader found
            assert (len(a.proofs), a.seen(), len(c.seen())) == (1, [], 2)


def test_a_master_that_refuses_connections_is_passed_over() -> None:
    with masters("leader") as (leader,):
        down = refusing_url()
        with TitanClient(url=f"{down},{leader.url}") as client:
            start = time.monotonic()
            assert client.health()["master"] == leader.url
            assert time.monotonic() - start < 1.0  # no pause before trying the next one
            assert client.url == leader.url


def test_the_leader_named_only_in_the_header_is_followed() -> None:
    with masters("leader") as (leader,):
        standby = FakeMaster("standby", leader.url, leader_in_header_only=True)
        other = FakeMaster("standby", None)
        try:
            with TitanClient(url=[standby.url, other.url, leader.url]) as client:
                assert client.health()["master"] == leader.url
            assert other.seen() == []
        finally:
            standby.close()
            other.close()


def test_any_method_goes_again_after_a_standby_answered() -> None:
    """Nothing was applied by a standby: a POST without an Idempotency-Key is re-sent."""
    with masters("standby", "leader") as (standby, leader):
        with TitanClient(url=[standby.url, leader.url]) as client:
            reply = client.api("POST", "/jobs/7/cancel", json={"why": "test"})
        assert reply["master"] == leader.url
        assert standby.seen("POST") == ["/api/v1/jobs/7/cancel"]
        assert leader.requests == [("POST", "/api/v1/jobs/7/cancel", {"why": "test"})]


def test_a_hostile_standby_naming_an_unlisted_host_is_not_followed(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TITAN_MASTER_RESTART_GRACE", "0.3")
    with masters("leader", "leader") as (attacker, leader):
        liar = FakeMaster("standby", attacker.url)
        try:
            with TitanClient(url=[liar.url, leader.url], token="secret") as client:
                assert client.health()["master"] == leader.url
            assert attacker.requests == []  # never reached, so never saw the token

            with TitanClient(url=[liar.url], token="secret") as client, \
                    pytest.raises(errors.ConnectionFailed) as caught:
                client.health()
            assert attacker.requests == []
            message = str(caught.value)
            assert liar.url in message and attacker.url in message
            assert "not a configured master" in message
        finally:
            liar.close()


def test_when_no_master_leads_the_error_names_every_url(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TITAN_MASTER_RESTART_GRACE", "0.3")
    down = refusing_url()
    with masters("standby", "standby") as (a, b):
        a.leader, b.leader = None, "http://10.255.255.1:8765"
        with TitanClient(url=[down, a.url, b.url]) as client, \
                pytest.raises(errors.ConnectionFailed) as caught:
            client.health()
    message = str(caught.value)
    assert message.startswith(f"no Titan master leads at any of {down}, {a.url}, {b.url}")
    assert f"{down}: " in message and "refused" in message.lower()
    assert f"{a.url}: a standby that does not know the leader" in message
    assert f"{b.url}: a standby naming the leader http://10.255.255.1:8765" in message
    assert "addresses from arguments" in message


def test_standbys_naming_each_other_pause_between_rounds(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """An election in progress: no busy loop, one try per master per pause."""
    monkeypatch.setenv("TITAN_MASTER_RESTART_GRACE", "0.5")
    with masters("standby", "standby") as (a, b):
        a.leader, b.leader = b.url, a.url
        with TitanClient(url=[a.url, b.url]) as client, pytest.raises(errors.ConnectionFailed):
            client.health()
        # Backoff from 50 ms doubling: a handful of rounds in half a second, not hundreds.
        assert 1 <= len(a.seen()) <= 8 and abs(len(a.seen()) - len(b.seen())) <= 1


def test_one_master_fails_as_before(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TITAN_MASTER_RESTART_GRACE", "0.3")
    down = refusing_url()
    with TitanClient(url=down) as client, pytest.raises(errors.ConnectionFailed) as caught:
        client.health()
    assert str(caught.value).startswith(f"cannot reach the Titan master at {down}: ")


def test_the_next_call_finds_the_new_leader_when_the_old_one_dies() -> None:
    with masters("leader", "standby") as (old, new):
        with TitanClient(url=[old.url, new.url], token="t") as client:
            assert client.health()["master"] == old.url
            old.close()
            new.role = "leader"
            assert client.api("GET", "/dags/nightly")["master"] == new.url
            assert client.url == new.url
            assert new.seen() == ["/api/v1/dags/nightly"]


def test_a_long_poll_is_asked_again_of_the_new_leader() -> None:
    """A wait slice ends (408); meanwhile the leadership moved: the next slice finds it."""
    with masters("leader", "standby") as (old, new):
        def slice_ends_and_leadership_moves(m: FakeMaster, _req: dict[str, Any]) -> Any:
            m.role, new.role = "standby", "leader"
            m.leader = new.url
            return 408, {"error": {"code": "wait_timeout", "message": "slice over",
                                   "details": {}}}

        old.routes["GET /api/v1/jobs/%235/wait"] = slice_ends_and_leadership_moves
        new.routes["GET /api/v1/jobs/%235/wait"] = lambda m, req: (200, {"id": 5,
                                                                      "state": "COMPLETED"})
        with TitanClient(url=[old.url, new.url]) as client:
            assert client.wait_job(5, timeout=20)["state"] == "COMPLETED"
            assert client.url == new.url
        assert [p.split("?")[0] for p in old.seen()] == ["/api/v1/jobs/%235/wait"] * 2
        assert [p.split("?")[0] for p in new.seen()] == ["/api/v1/jobs/%235/wait"]


def test_jobs_get_every_master_through_the_environment(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The worker sets TITAN_MASTER_URLS (current first): the SDK in a job fails over."""
    with masters("standby", "leader") as (standby, leader):
        monkeypatch.setenv("TITAN_URL", standby.url)  # inherited from the worker: the list wins
        monkeypatch.setenv("TITAN_MASTER_URLS", f"{standby.url},{leader.url}")
        with TitanClient() as client:
            assert client.endpoint.source == "TITAN_MASTER_URLS"
            assert client.health()["master"] == leader.url


def test_a_frozen_master_is_passed_over_for_a_call_that_may_go_again() -> None:
    """A leader paused (a frozen VM) holds the request without a word, while a standby takes
    over: a PUT that may go again goes to the next master once the read times out, rather
    than failing (a QA pass). A POST without an idempotency key may not."""
    with masters("leader", "standby") as (frozen, new):
        def freeze(m: FakeMaster, _req: dict[str, Any]) -> Any:
            new.role, m.role, m.leader = "leader", "standby", new.url
            time.sleep(1.5)  # past the client's read timeout
            return 200, {"frozen": True}

        frozen.routes["PUT /api/v1/store/values/k"] = freeze
        new.routes["PUT /api/v1/store/values/k"] = lambda m, req: (200, {"key": "k"})
        with TitanClient(url=[frozen.url, new.url], token="t", timeout=0.5) as client:
            assert client.api("PUT", "/store/values/k", json={"value": "v"}) == {"key": "k"}
            assert client.url == new.url
    with masters("leader", "standby") as (frozen, new):
        frozen.routes["POST /api/v1/dags"] = lambda m, req: (time.sleep(1.5), (200, {}))[1]
        with TitanClient(url=[frozen.url, new.url], token="t", timeout=0.5) as client, \
                pytest.raises(errors.ConnectionFailed, match="did not answer in time"):
            client.api("POST", "/dags", json={"name": "x", "jobs": []})
        assert new.seen() == []
