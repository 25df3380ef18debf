"""Durable state: one interface (:mod:`titan.storage.base`), picked from a URL here."""

from __future__ import annotations

from titan.errors import ConfigError, statement_cancelled
from titan.storage.base import Row, Storage, Transaction


def open_storage(url: str) -> Storage:
    """Open (and migrate) the database at ``url``: ``sqlite:///path`` or ``postgresql://…``."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, DBAPIError

    from titan.storage import dialects

    if not url.startswith(("sqlite:", "postgresql", "postgres:")):
        raise ConfigError(
            f"unsupported database URL {url!r}: use sqlite:///path/titan.db or "
            "postgresql+psycopg://user@host/db"
        )
    try:
        # Opening can refuse the URL itself (sqlite://x.db, a malformed one): said in one
        # line like a refused connection, not as SQLAlchemy's traceback.
        storage = dialects.sqlite_storage(url) if url.startswith("sqlite:") \
            else dialects.postgres_storage(url)
        try:
            storage.migrate()
        except BaseException:  # refused (a newer schema, other masters): let its connections go
            storage.close()
            raise
    except (DBAPIError, ArgumentError) as exc:
        # The driver's first line says what is wrong (refused, no such role or database);
        # the URL is shown without its password, and the traceback is not the user's.
        try:
            shown = make_url(url).render_as_string(hide_password=True)
        except ArgumentError:
            shown = "the database URL"
        reason = cancelled_at_start(exc) or \
            str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise ConfigError(f"cannot open the database at {shown}: {reason}") from None
    return storage


def cancelled_at_start(exc: BaseException) -> str | None:
    """What to say of a statement the database cancelled while the master starts (a
    ``statement_timeout`` or ``lock_timeout`` on Titan's role or database): the database's
    words alone named neither the setting nor what to do. None for any other error."""
    orig = getattr(exc, "orig", None)
    if getattr(orig, "sqlstate", None) not in ("57014", "55P03"):
        return None
    said = str(orig).strip().splitlines()[0]
    return statement_cancelled(said).message.replace(
        "this request's statement", "a statement at start", 1).replace(
        "; nothing was applied.", ";", 1)


__all__ = ["Row", "Storage", "Transaction", "cancelled_at_start", "open_storage"]
