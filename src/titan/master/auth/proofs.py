"""The master's side of :mod:`titan.master_proof`: the key a token reference stands for.

Job tokens, evaluation agents' tokens and worker credentials are MACs under the master's secret, so their key is
recomputed from the reference's public part. Stored tokens are found by the hash of their
hash, over the live tokens read from the database: read again on a miss, at most every
:data:`REREAD_SECONDS` (the route needs no token, so a stream of made-up references must
not become a stream of database reads), and at once after a token is created.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from titan import master_proof

REREAD_SECONDS = 0.5


class ProofKeys:
    def __init__(self, engine: Any) -> None:
        self._engine = engine
        self._stored: dict[str, str] = {}
        self._read_at = float("-inf")
        self._lock = asyncio.Lock()

    def token_created(self) -> None:
        """A new token may be used at once: the next miss reads the tokens again."""
        self._read_at = float("-inf")

    async def digest(self, ref: str) -> str | None:
        """The SHA-256 of the token ``ref`` names, None for no token this master issued."""
        if ref.startswith(("tj.", "ta.")):
            kind, job, attempt = (ref.split(".") + ["", ""])[:3]
            if not (job.isdigit() and attempt.isdigit()) or ref.count(".") != 2:
                return None
            tokens = self._engine.job_tokens
            issue = tokens.issue if kind == "tj" else tokens.issue_agent
            return master_proof.token_hash(issue(int(job), int(attempt)))
        if ref.startswith("tw."):
            _, token_id, worker_id = (ref.split(".", 2) + ["", ""])[:3]
            if not token_id or not worker_id:
                return None
            return master_proof.token_hash(
                self._engine.worker_credentials.issue(token_id, worker_id))
        found = self._stored.get(ref)
        if found is None and time.monotonic() - self._read_at >= REREAD_SECONDS:
            async with self._lock:
                if time.monotonic() - self._read_at >= REREAD_SECONDS:
                    rows = await self._engine.read(lambda tx: tx.list_tokens())
                    # Revoked ones too: the master proves it issued the token, and the
                    # request that follows gets its own refusal ("revoked"), which a
                    # worker stops on (a refused proof is retried: anyone can refuse one).
                    self._stored = {master_proof.stored_ref(r["token_hash"]): r["token_hash"]
                                    for r in rows}
                    self._read_at = time.monotonic()
            found = self._stored.get(ref)
        return found
