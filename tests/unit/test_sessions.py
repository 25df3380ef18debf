"""Dashboard session cookies: which survive a restart of the master, and which end with it."""

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


def test_a_session_over_https_outlives_the_process_and_one_over_http_does_not() -> None:
    engine = _Engine()
    first, restarted = _master(engine), _master(engine)
    _, tls = asyncio.run(sessions.login(first, "tt_x", secure=True))
    _, plain = asyncio.run(sessions.login(first, "tt_x", secure=False))
    for cookie in (tls, plain):
        assert sessions._verified(first, cookie) is not None
    assert sessions._verified(restarted, tls) is not None  # same database secret
    assert sessions._verified(restarted, plain) is None  # signed with the old process's key


def test_the_binding_cannot_be_stripped_from_a_cookie() -> None:
    engine = _Engine()
    first, restarted = _master(engine), _master(engine)
    _, plain = asyncio.run(sessions.login(first, "tt_x", secure=False))
    token_id, session_id, expires, mac = plain.split(".")
    # Claiming the session was signed in over HTTPS changes the key its MAC is checked with.
    stripped = ".".join([token_id, session_id[len(sessions.PROCESS_BOUND):], expires, mac])
    assert sessions._verified(first, stripped) is None
    assert sessions._verified(restarted, stripped) is None
