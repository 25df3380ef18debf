"""The security log: who made or revoked a token, and which requests were refused for their
credential, on the ``titan.audit`` logger.

A token minted with a stolen session, or a script trying tokens, left no line anywhere: after
the fact nobody could tell who made an admin token, nor that anything had been refused. Token
changes are logged one line each, naming the token (never its secret), its role and name, and
the principal that made it, how (a bearer token or a dashboard session) and from which address.
Refusals (401) are logged at most once a minute per client address, the line naming what was
refused and how many refusals since the last line, so a flood of bad tokens is a line a minute,
not a disk filled.
"""

from __future__ import annotations

import logging
import time

from titan.master.auth.tokens import Principal

log = logging.getLogger("titan.audit")

#: Seconds between two lines about the refusals of one client address.
REFUSAL_LINE_EVERY = 60.0
#: Client addresses whose refusals are being counted at once (oldest forgotten first).
MAX_COUNTED = 10_000


def who(p: Principal, via_session: bool) -> str:
    """A principal as the log names it: role, token name and id, how it came."""
    name = f" {p.name!r}" if p.name else ""
    token = f" ({p.token_id})" if p.token_id else ""
    return f"{p.role}{name}{token} via {'a dashboard session' if via_session else 'a token'}"


def token_created(p: Principal, via_session: bool, address: str, token_id: str, role: str,
                  name: str) -> None:
    log.warning("token %s (role %s, name %r) created by %s from %s", token_id, role, name,
                who(p, via_session), address)


def token_revoked(p: Principal, via_session: bool, address: str, token_id: str) -> None:
    log.warning("token %s revoked by %s from %s", token_id, who(p, via_session), address)


class Refusals:
    """Counts 401s per client address and logs them as the module says."""

    def __init__(self, every: float = REFUSAL_LINE_EVERY) -> None:
        self.every = every
        # address -> (when its last line was logged, refusals since that line)
        self._seen: dict[str, tuple[float, int]] = {}

    def refused(self, address: str, what: str, reason: str) -> None:
        now = time.monotonic()
        last, since = self._seen.get(address, (float("-inf"), 0))
        if now - last < self.every:
            self._seen[address] = (last, since + 1)
            return
        more = f" ({since} more since the last line)" if since else ""
        log.warning("refused %s from %s: %s%s", what, address, reason, more)
        self._seen.pop(address, None)  # re-inserted last: the dict stays oldest first
        self._seen[address] = (now, 0)
        if len(self._seen) > MAX_COUNTED:
            del self._seen[next(iter(self._seen))]
