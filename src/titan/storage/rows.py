"""How storage hands rows out: plain dicts, JSON columns already decoded."""

from __future__ import annotations

import json
import logging
from typing import Any

Row = dict[str, Any]

log = logging.getLogger("titan.storage")


def json_column(text: str | None, where: str) -> Any:
    """A JSON column's value (None when empty). Text that does not parse — the row edited in
    the database by hand — is handed out as that text, a string, where the column only ever
    holds objects and arrays: the run ledger then finds the action edited (its content no
    longer hashes as recorded) and pages show it, rather than every read of the run failing
    with a 500."""
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        log.warning("%s does not hold JSON (edited in the database?): %.80r", where, text)
        return text
