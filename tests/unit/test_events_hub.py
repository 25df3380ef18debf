"""The events hub's guarded waits: a long-poll whose credential ends stops at once."""

from __future__ import annotations

import asyncio

import pytest

from titan.errors import Unauthorized
from titan.master import events
from titan.master.events import EventHub


class Credential:
    """A credential that can be revoked: its guard raises what a request would get."""

    def __init__(self) -> None:
        self.live = True
        self.checks = 0

    async def guard(self) -> None:
        self.checks += 1
        if not self.live:
            raise Unauthorized("unknown or revoked token")


def test_a_guarded_wait_ends_at_the_first_check_that_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    # A token revoked on another master is not announced here: the periodic check finds it.
    monkeypatch.setattr(events, "GUARD_SECONDS", 0.01)

    async def main() -> None:
        hub, cred = EventHub(), Credential()
        waiter = hub.waiter(("store", "k"))
        waiting = asyncio.ensure_future(hub.until(waiter, timeout=60, guard=cred.guard))
        while cred.checks < 3:  # checked again and again while it holds
            await asyncio.sleep(0.01)
        assert not waiting.done()
        cred.live = False
        with pytest.raises(Unauthorized):
            await waiting

    asyncio.run(main())


def test_a_revocation_here_is_checked_before_a_value_published_after_it() -> None:
    async def main() -> None:
        hub, cred, other = EventHub(), Credential(), Credential()
        mine, theirs = hub.waiter(("store", "k")), hub.waiter(("store", "k"))
        waiting = asyncio.ensure_future(hub.until(mine, timeout=60, guard=cred.guard))
        untouched = asyncio.ensure_future(hub.until(theirs, timeout=60, guard=other.guard))
        await asyncio.sleep(0)  # both parked
        cred.live = False
        hub.revoked()
        hub.notify(("store", "k"), "written after the revocation")
        with pytest.raises(Unauthorized):
            await waiting
        await untouched  # a credential still live gets its value
        assert theirs.result() == "written after the revocation"

    asyncio.run(main())


def test_a_guarded_wait_still_times_out() -> None:
    async def main() -> None:
        hub, cred = EventHub(), Credential()
        with pytest.raises(TimeoutError):
            await hub.until(hub.waiter(("job", 1)), timeout=0, guard=cred.guard)

    asyncio.run(main())
