"""The storage interface's bookkeeping part: the master's settings, API tokens, ended
dashboard sessions and the idempotency keys of retried writes
(contract: tests/contract/test_storage.py)."""

from __future__ import annotations

import abc

from titan.storage.rows import Row


class MasterTransaction(abc.ABC):
    """What the master keeps about itself and its callers."""

    # -- meta ---------------------------------------------------------------------------------
    @abc.abstractmethod
    def get_meta(self, key: str) -> str | None:
        """The value stored under an internal settings key, or None."""

    @abc.abstractmethod
    def set_meta(self, key: str, value: str) -> None:
        """Store an internal settings key (insert or replace)."""

    # -- tokens -------------------------------------------------------------------------------
    @abc.abstractmethod
    def add_token(self, row: Row) -> None:
        """Insert a token row: id, token_hash (sha256 hex), role, name, created_at."""

    @abc.abstractmethod
    def token_by_hash(self, token_hash: str) -> Row | None:
        """The token row with that hash, revoked or not, or None."""

    @abc.abstractmethod
    def token_by_id(self, token_id: str) -> Row | None:
        """The token row with that id, revoked or not, or None."""

    @abc.abstractmethod
    def list_tokens(self) -> list[Row]:
        """All token rows (without hashes' meaning), oldest first."""

    @abc.abstractmethod
    def revoke_token(self, token_id: str, now: float) -> bool:
        """Mark a token revoked; False if there is no such live token."""

    # -- idempotency keys ---------------------------------------------------------------------
    @abc.abstractmethod
    def idempotent_result(self, key: str, *, next_run_of: str | None = None
                          ) -> tuple[str, str] | None:
        """(scope, result JSON) recorded under an Idempotency-Key, or None. ``next_run_of``:
        a DAG name the transaction is about to insert a run of, whose last run number may be
        read in the same statement (PostgreSQL: the insert then needs no answer)."""

    @abc.abstractmethod
    def record_idempotent(self, key: str, scope: str, result: str, now: float) -> None:
        """Record a write's result under its key (in the write's own transaction)."""

    @abc.abstractmethod
    def prune_idempotency(self, before: float) -> int:
        """Forget keys recorded before ``before``; how many went."""

    # -- dashboard sessions -------------------------------------------------------------------
    @abc.abstractmethod
    def end_session(self, session_id: str, expires_at: float, now: float) -> None:
        """Record a signed-out session (idempotent) and forget those expired before ``now``."""

    @abc.abstractmethod
    def session_ended(self, session_id: str) -> bool:
        """Whether this session was signed out."""
