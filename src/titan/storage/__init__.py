"""Durable state: one interface (:mod:`titan.storage.base`), picked from a URL here."""

from __future__ import annotations

from titan.errors import ConfigError
from titan.storage.base import Row, Storage, Transaction


def open_storage(url: str) -> Storage:
    """Open (and migrate) the database at ``url``: ``sqlite:///path`` or ``postgresql://…``."""
    from titan.storage import dialects

    if url.startswith("sqlite:"):
        storage = dialects.sqlite_storage(url)
    elif url.startswith(("postgresql", "postgres:")):
        storage = dialects.postgres_storage(url)
    else:
        raise ConfigError(
            f"unsupported database URL {url!r}: use sqlite:///path/titan.db or "
            "postgresql+psycopg://user@host/db"
        )
    storage.migrate()
    return storage


__all__ = ["Row", "Storage", "Transaction", "open_storage"]
