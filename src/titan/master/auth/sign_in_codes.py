"""One-time sign-in codes: what ``titan dashboard --open`` puts in the link it hands a
browser, in place of the token.

A browser is started with the link on its command line, which every local user reads
(``ps``, ``/proc/<pid>/cmdline``) for as long as that browser runs — often hours, when it was
not running before. With the token there, any local user could take it (an admin's, for
good). A code signs in once, within :data:`CODE_SECONDS` of being made, as the token it was
made for (revoked since: refused), and is worth nothing once the browser has used it, which
it does at once. Whoever reads it first could use it first — then the person's own sign-in
fails, so it is seen — where a token read there gave its reader the master silently.

Kept in this master's memory, by hash: a restart forgets them (ask again), and another
master of a standby group does not know them.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable

#: How long a code may wait for its browser.
CODE_SECONDS = 60.0
#: The most codes kept at once: making more drops the oldest (each is one HTTP call by a
#: dashboard-capable token, so this bounds memory, not who may sign in).
MAX_CODES = 1000
PREFIX = "sc_"


def _digest(code: str) -> str:
    return hashlib.sha256(code.encode("utf-8", "surrogatepass")).hexdigest()


class SignInCodes:
    """The codes this master made and that were not used yet: hash → (token id, deadline)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._codes: OrderedDict[str, tuple[str, float]] = OrderedDict()
        self._now = clock

    def issue(self, token_id: str) -> str:
        """A new code that signs in as the token ``token_id`` once."""
        now = self._now()
        while self._codes and (len(self._codes) >= MAX_CODES
                               or next(iter(self._codes.values()))[1] < now):
            self._codes.popitem(last=False)
        code = PREFIX + secrets.token_urlsafe(24)
        self._codes[_digest(code)] = (token_id, now + CODE_SECONDS)
        return code

    def redeem(self, code: str) -> str | None:
        """The token id ``code`` was made for, once; None for a code that is unknown, used
        or past its deadline."""
        found = self._codes.pop(_digest(code), None)
        if found is None or found[1] < self._now():
            return None
        return found[0]
