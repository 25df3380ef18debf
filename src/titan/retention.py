"""Retention classes: how long a run's recording must be kept, named once for every layer.

A run carries one class from its creation (``titan.trace.run(..., retention_class=...)``,
``POST /api/v1/runs``); the SDK checks it before anything is sent, the master before anything
is stored, and retention obeys it. Archiving (after ``TITAN_RUN_ARCHIVE_DAYS``) deletes
nothing, so it applies to every class; deletion (``TITAN_RUN_RETENTION``, ``titan runs
prune``) takes only the classes in :data:`DELETABLE`. A leaf: it imports nothing of Titan.
"""

from __future__ import annotations

#: Every class with what it means (the API's error message and docs/api.md list them).
RETENTION_CLASSES: dict[str, str] = {
    "standard": "archived after TITAN_RUN_ARCHIVE_DAYS, deleted by retention when configured",
    "extended": "archived like standard, never deleted by retention (audit evidence)",
    "legal_hold": "never deleted by retention; only an admin may lift the hold",
}
DEFAULT_CLASS = "standard"
#: The classes retention may delete (runs recorded before classes existed count as standard).
DELETABLE: tuple[str, ...] = ("standard",)


def retention_problem(value: object) -> str | None:
    """What is wrong with a retention class (None when nothing is)."""
    if isinstance(value, str) and value in RETENTION_CLASSES:
        return None
    return (f"retention_class must be one of {', '.join(RETENTION_CLASSES)}, got "
            f"{str(value)[:60]!r}")
