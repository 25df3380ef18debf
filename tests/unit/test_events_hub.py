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


def test_a_revocation_between_the_requests_check_and_its_wait_is_not_missed() -> None:
    # A request checked its credential, then read the state it waits on (an await); the
    # token was revoked meanwhile, and hub.revoked() found nothing parked to wake. The value
    # published within the next guard tick was handed to the revoked token (a flaky
    # test_live_events run under load): the wait checks the credential once as it parks.
    async def main() -> None:
        hub, cred = EventHub(), Credential()
        waiter = hub.waiter(("store", "k"))
        cred.live = False
        hub.revoked()  # before the request reached its wait
        waiting = asyncio.ensure_future(hub.until(waiter, timeout=60, guard=cred.guard))
        hub.notify(("store", "k"), "written after the revocation")
        with pytest.raises(Unauthorized):
            await waiting

    asyncio.run(main())


def test_a_credential_revoked_while_its_first_check_runs_is_checked_again() -> None:
    # The parking check awaits (a database read when the cache has forgotten the token): a
    # revocation landing during it must still wake the wait's guard.
    async def main() -> None:
        hub, cred = EventHub(), Credential()
        checking = asyncio.Event()

        first = True

        async def slow_guard() -> None:
            nonlocal first
            if first:  # the read, which found the token live before it was revoked
                first = False
                checking.set()
                await asyncio.sleep(0.01)
                return
            await cred.guard()

        waiter = hub.waiter(("store", "k"))
        waiting = asyncio.ensure_future(hub.until(waiter, timeout=60, guard=slow_guard))
        await checking.wait()
        cred.live = False
        hub.revoked()  # during the first check
        await asyncio.sleep(0.05)
        hub.notify(("store", "k"), "written after the revocation")
        with pytest.raises(Unauthorized):
            await waiting

    asyncio.run(main())


def test_a_guarded_wait_still_times_out() -> None:
    async def main() -> None:
        hub, cred = EventHub(), Credential()
        with pytest.raises(TimeoutError):
            await hub.until(hub.waiter(("job", 1)), timeout=0, guard=cred.guard)

    asyncio.run(main())
