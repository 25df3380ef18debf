"""Dashboard session cookies: which survive a restart of the master, and which end with it;
the write key each session needs besides to change anything."""

from __future__ import annotations

import asyncio
import secrets
from types import SimpleNamespace
from typing import Any

from titan.master.auth import sessions


class _Engine:
    secret = secrets.token_hex(32)

    async def read(self, fn: Any) -> Any:
        return fn(SimpleNamespace(
            token_by_hash=lambda _h: {"id": 7, "role": "admin", "name": "admin",
                                      "revoked_at": None}))


def _master(engine: _Engine) -> Any:
    """A master process as the sessions see it: the database's secret, its own key."""
    return SimpleNamespace(engine=engine, process_key=secrets.token_bytes(32))


def test_a_lasting_session_outlives_the_process_and_a_bound_one_does_not() -> None:
    engine = _Engine()
    first, restarted = _master(engine), _master(engine)
    _, tls = asyncio.run(sessions.login(first, "tt_x", lasting=True))
    _, plain = asyncio.run(sessions.login(first, "tt_x", lasting=False))
    for cookie in (tls, plain):
        assert sessions._verified(first, cookie) is not None
    assert sessions._verified(restarted, tls) is not None  # same database secret
    assert sessions._verified(restarted, plain) is None  # signed with the old process's key


def test_the_binding_cannot_be_stripped_from_a_cookie() -> None:
    engine = _Engine()
    first, restarted = _master(engine), _master(engine)
    _, plain = asyncio.run(sessions.login(first, "tt_x", lasting=False))
    token_id, session_id, expires, mac = plain.split(".")
    # Claiming the session was signed in over HTTPS changes the key its MAC is checked with.
    stripped = ".".join([token_id, session_id[len(sessions.PROCESS_BOUND):], expires, mac])
    assert sessions._verified(first, stripped) is None
    assert sessions._verified(restarted, stripped) is None


def test_only_https_on_a_host_name_outlives_restarts() -> None:
    # Browsers send even a Secure cookie to http://127.0.0.1:<port> (loopback counts as a
    # secure context), where a squatter may listen while the master is down (a QA pass).
    lasting = sessions.outlives_restarts
    assert lasting("https", "titan.example.com") and lasting("https", "10.0.0.5")
    for host in ("127.0.0.1", "127.1.2.3", "localhost", "LOCALHOST", "app.localhost", "::1",
                 "[::1]", None, ""):
        assert not lasting("https", host), host
    assert not lasting("http", "titan.example.com")


def test_a_cookie_past_ascii_is_refused_not_a_crash() -> None:
    master = _master(_Engine())
    assert sessions._verified(master, "tok-1.p00.9999999999.\xe9abc") is None
    assert sessions._verified(master, "tok-1.p00.9999999999.\ud800") is None


def test_the_write_key_is_not_the_cookie_nor_derived_from_it_alone() -> None:
    # The cookie reaches every port of the host; the page it fetched carried a digest of it,
    # which changed anything (a QA pass minted an admin token). The write key is a MAC under
    # a key of its own: per session, per master secret, and per process for a bound session.
    import hashlib

    engine = _Engine()
    first, restarted = _master(engine), _master(engine)
    _, plain = asyncio.run(sessions.login(first, "tt_x", lasting=False))
    _, other = asyncio.run(sessions.login(first, "tt_x", lasting=False))
    _, tls = asyncio.run(sessions.login(first, "tt_x", lasting=True))
    key = sessions.write_key(first, plain)
    assert len(key) == 40 and key not in plain
    assert key != hashlib.sha256(b"titan-csrf:" + plain.encode()).hexdigest()[:40]
    assert key != sessions.write_key(first, other)  # another session, another key
    assert sessions.write_key(restarted, plain) != key  # ends with the process, as the cookie
    assert sessions.write_key(restarted, tls) == sessions.write_key(first, tls)
    elsewhere = _master(_Engine())
    elsewhere.engine.secret = secrets.token_hex(32)
    assert sessions.write_key(elsewhere, tls) != sessions.write_key(first, tls)
    assert sessions.write_key(first, "garbled") != sessions.write_key(first, "garbled2")
