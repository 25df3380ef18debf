"""How storage hands rows out: plain dicts, JSON columns already decoded."""

from __future__ import annotations

import json
import logging
from typing import Any

Row = dict[str, Any]

log = logging.getLogger("titan.storage")


def json_column(text: str | None, where: str,
                expect: type | tuple[type, ...] | None = None) -> Any:
    """A JSON column's value (None when empty), for a row that may have been edited in the
    database by hand: every read of the run failed with a 500 on one such row.

    Without ``expect`` (an action's, which the run ledger hashes) text that does not parse
    is handed out as that text, a string where the column only ever holds objects and
    arrays: the ledger then finds the action edited, its content no longer hashing as
    recorded. With ``expect`` (a run's columns, which no hash covers) a value that does not
    parse, or is not of that type, reads as None."""
    if not text:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        log.warning("%s does not hold JSON (edited in the database?): %.80r", where, text)
        return text if expect is None else None
    if expect is not None and not isinstance(value, expect):
        log.warning("%s holds a %s, not the %s it should (edited in the database?)", where,
                    type(value).__name__, getattr(expect, "__name__", expect))
        return None
    return value
